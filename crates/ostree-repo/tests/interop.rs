//! Interoperability with the real `ostree` (Debian's 2022.7, /usr/bin/ostree):
//! golden bytes of every object type, our commits checked and checked out by
//! the real tool, its commits by us, and identical commit checksums.
//!
//! These tests require /usr/bin/ostree (apt package `ostree`) and fail
//! loudly without it: CI installs it, and a silent skip would hide breakage.

use ostree_repo::checkout::{CheckoutMode, CheckoutOptions, Overwrite};
use ostree_repo::commit::{CommitOptions, TreeSource};
use ostree_repo::gvariant::{self, Type, Value};
use ostree_repo::object::{self, Commit, DirMeta, DirTree, FileHeader, ObjectType};
use ostree_repo::{Repo, RepoMode};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const OSTREE: &str = "/usr/bin/ostree";

fn ostree(args: &[&str]) -> String {
    assert!(
        Path::new(OSTREE).exists(),
        "{OSTREE} is missing: install the Debian package `ostree` (these interop tests need the real tool)"
    );
    // Upstream only accepts `--repo=PATH` before the command name.
    let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if argv.len() >= 2 && argv[0] == "--repo" {
        let p = argv.remove(1);
        argv[0] = format!("--repo={p}");
    }
    let out = Command::new(OSTREE)
        .args(&argv)
        .output()
        .expect("run ostree");
    assert!(
        out.status.success(),
        "ostree {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and buffer.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// A tree exercising every kind of metadata ostree records.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("usr/etc")).unwrap();
    fs::create_dir_all(root.join("var/empty/deeper")).unwrap();
    fs::create_dir_all(root.join("private")).unwrap();
    fs::write(root.join("usr/etc/hello.conf"), "hello\n").unwrap();
    fs::write(root.join("usr/bin/hi"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("usr/bin/hi"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(root.join("usr/empty"), "").unwrap();
    fs::write(root.join("private/secret"), "s").unwrap();
    fs::set_permissions(
        root.join("private/secret"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(root.join("usr/with space ü"), "unicode name").unwrap();
    // > 64 KiB and incompressible-ish, to exercise streaming and deflate.
    let mut big = Vec::with_capacity(300_000);
    let mut x: u32 = 1;
    for _ in 0..300_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        big.push((x >> 16) as u8);
    }
    fs::write(root.join("usr/blob"), &big).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("usr/dangling")).unwrap();
    set_xattr(&root.join("usr/etc/hello.conf"), "user.foo", b"bar");
    set_xattr(&root.join("usr/etc/hello.conf"), "user.aaa", b"zzz");
    set_xattr(&root.join("usr/etc"), "user.dir", b"1");
    if is_root() {
        let c = CString::new(root.join("usr/etc/hello.conf").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid path.
        assert_eq!(unsafe { libc::lchown(c.as_ptr(), 1000, 1001) }, 0);
    }
}

fn all_objects(repo: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for d in fs::read_dir(repo.join("objects")).unwrap() {
        let d = d.unwrap();
        for e in fs::read_dir(d.path()).unwrap() {
            let e = e.unwrap();
            let name = format!(
                "{}{}",
                d.file_name().to_string_lossy(),
                e.file_name().to_string_lossy()
            );
            out.push((name, e.path()));
        }
    }
    out.sort();
    out
}

#[test]
fn golden_bytes_of_real_objects() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let repo = d.path().join("repo");
    let r = repo.to_str().unwrap();
    ostree(&["--repo", r, "init", "--mode=archive"]);
    ostree(&[
        "--repo",
        r,
        "commit",
        "-b",
        "test/ref",
        "--add-metadata-string",
        "version=42.1",
        "--add-metadata=ostree.num=uint64 7",
        "--add-detached-metadata-string=sig=x",
        "-s",
        "subj",
        "-m",
        "body",
        tree.to_str().unwrap(),
    ]);
    ostree(&[
        "--repo",
        r,
        "commit",
        "-b",
        "test/ref",
        "-s",
        "second",
        tree.to_str().unwrap(),
    ]);
    ostree(&["--repo", r, "summary", "-u"]);

    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, path) in all_objects(&repo) {
        let (hex, ext) = name.split_once('.').unwrap();
        let expected = object::from_hex(hex).unwrap();
        let bytes = fs::read(&path).unwrap();
        match ext {
            "commit" => {
                let c = Commit::from_bytes(&bytes).unwrap();
                assert_eq!(c.to_bytes(), bytes, "commit {hex} re-encodes identically");
                assert_eq!(object::metadata_checksum(&c.to_bytes()), expected);
                *seen.entry("commit").or_default() += 1;
            }
            "dirtree" => {
                let t = DirTree::from_bytes(&bytes).unwrap();
                assert_eq!(t.to_bytes(), bytes, "dirtree {hex}");
                assert_eq!(object::metadata_checksum(&t.to_bytes()), expected);
                *seen.entry("dirtree").or_default() += 1;
            }
            "dirmeta" => {
                let m = DirMeta::from_bytes(&bytes).unwrap();
                assert_eq!(m.to_bytes(), bytes, "dirmeta {hex}");
                assert_eq!(object::metadata_checksum(&m.to_bytes()), expected);
                *seen.entry("dirmeta").or_default() += 1;
            }
            "commitmeta" => {
                let t = Type::parse("a{sv}").unwrap();
                let v = gvariant::decode(&t, &bytes).unwrap();
                assert_eq!(v.to_bytes(), bytes, "commitmeta {hex}");
                *seen.entry("commitmeta").or_default() += 1;
            }
            "filez" => {
                let len = object::parse_lenprefix(bytes[..8].try_into().unwrap()).unwrap();
                let (h, size) = FileHeader::from_zlib_variant_bytes(&bytes[8..8 + len]).unwrap();
                assert_eq!(
                    h.to_zlib_header(size),
                    bytes[..8 + len],
                    "filez header {hex}"
                );
                let mut payload = Vec::new();
                if object::mode::is_reg(h.mode) {
                    use std::io::Read;
                    flate2::read::DeflateDecoder::new(&bytes[8 + len..])
                        .read_to_end(&mut payload)
                        .unwrap();
                } else {
                    // Symlinks: nothing at all after the header.
                    assert_eq!(bytes.len(), 8 + len);
                }
                assert_eq!(payload.len() as u64, size);
                assert_eq!(
                    object::content_checksum(&h, &payload),
                    expected,
                    "content {hex}"
                );
                *seen.entry("filez").or_default() += 1;
            }
            other => panic!("unexpected object type {other}"),
        }
    }
    assert_eq!(seen["commit"], 2);
    assert_eq!(seen["commitmeta"], 1);
    assert!(seen["dirtree"] >= 6, "{seen:?}");
    assert!(seen["dirmeta"] >= 3, "{seen:?}");
    assert_eq!(seen["filez"], 8, "{seen:?}");

    // The empty dirtree (var/empty/deeper) is the famous single NUL byte.
    assert!(repo
        .join("objects/6e/340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d.dirtree")
        .exists());

    let summary = fs::read(repo.join("summary")).unwrap();
    let t = Type::parse("(a(s(taya{sv}))a{sv})").unwrap();
    let v = gvariant::decode(&t, &summary).unwrap();
    assert_eq!(v.to_bytes(), summary, "summary re-encodes identically");
    let Value::Struct(m) = &v else { panic!() };
    let Value::Array(_, refs) = &m[0] else {
        panic!()
    };
    assert_eq!(refs.len(), 1);
}

fn opts(branch: &str) -> CommitOptions {
    CommitOptions {
        branch: Some(branch.into()),
        subject: "subj".into(),
        body: "body".into(),
        timestamp: Some(1_577_836_800),
        metadata: vec![("version".into(), Value::Str("1.0".into()))],
        ..Default::default()
    }
}

fn modes() -> Vec<RepoMode> {
    let mut m = vec![
        RepoMode::Archive,
        RepoMode::BareUser,
        RepoMode::BareUserOnly,
    ];
    if is_root() {
        m.push(RepoMode::Bare);
    }
    m
}

fn mode_arg(m: RepoMode) -> &'static str {
    match m {
        RepoMode::Archive => "archive",
        RepoMode::Bare => "bare",
        RepoMode::BareUser => "bare-user",
        RepoMode::BareUserOnly => "bare-user-only",
    }
}

#[test]
fn same_tree_same_commit_checksum_in_every_mode() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    for m in modes() {
        let theirs = d.path().join(format!("real-{}", mode_arg(m)));
        let t = theirs.to_str().unwrap();
        ostree(&["--repo", t, "init", "--mode", mode_arg(m)]);
        let real = ostree(&[
            "--repo",
            t,
            "commit",
            "-b",
            "a/b",
            "-s",
            "subj",
            "-m",
            "body",
            "--add-metadata-string",
            "version=1.0",
            "--timestamp=@1577836800",
            tree.to_str().unwrap(),
        ]);
        let ours_repo = Repo::create(&d.path().join(format!("ours-{}", mode_arg(m))), m).unwrap();
        let ours =
            ostree_repo::commit::commit_dirs(&ours_repo, std::slice::from_ref(&tree), &opts("a/b"))
                .unwrap();
        assert_eq!(object::to_hex(&ours), real.trim(), "mode {m:?}");
        // Second commit on top: the parent link must match too.
        let real2 = ostree(&[
            "--repo",
            t,
            "commit",
            "-b",
            "a/b",
            "-s",
            "2",
            "--timestamp=@1577836801",
            "--canonical-permissions",
            tree.to_str().unwrap(),
        ]);
        let o2 = CommitOptions {
            subject: "2".into(),
            body: String::new(),
            metadata: vec![],
            timestamp: Some(1_577_836_801),
            canonical_permissions: true,
            ..opts("a/b")
        };
        let ours2 =
            ostree_repo::commit::commit_dirs(&ours_repo, std::slice::from_ref(&tree), &o2).unwrap();
        assert_eq!(
            object::to_hex(&ours2),
            real2.trim(),
            "mode {m:?} second commit"
        );
    }
}

#[derive(Debug, PartialEq)]
enum Node {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
        xattrs: Vec<(String, Vec<u8>)>,
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        data: Vec<u8>,
        xattrs: Vec<(String, Vec<u8>)>,
    },
    Link {
        target: PathBuf,
        uid: u32,
        gid: u32,
    },
}

fn user_xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let out = Command::new("getfattr")
        .args(["-h", "-d", "-e", "hex", "-m", "^user\\."])
        .arg(p)
        .output()
        .expect("getfattr (apt package attr)");
    let mut v: Vec<(String, Vec<u8>)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                hex::decode(v.trim_start_matches("0x")).unwrap(),
            )
        })
        // user.ostreemeta is repository bookkeeping, never part of a tree.
        .filter(|(k, _)| k != "user.ostreemeta")
        .collect();
    v.sort();
    v
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let node = if md.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            Node::Dir {
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                xattrs: user_xattrs(&p),
            }
        } else if md.file_type().is_symlink() {
            Node::Link {
                target: fs::read_link(&p).unwrap(),
                uid: md.uid(),
                gid: md.gid(),
            }
        } else {
            Node::File {
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                data: fs::read(&p).unwrap(),
                xattrs: user_xattrs(&p),
            }
        };
        out.insert(rel, node);
    }
    out
}

fn assert_same_trees(a: &Path, b: &Path, what: &str) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    assert_eq!(
        sa.keys().collect::<Vec<_>>(),
        sb.keys().collect::<Vec<_>>(),
        "{what}: paths"
    );
    for (k, va) in &sa {
        assert_eq!(va, &sb[k], "{what}: {}", k.display());
    }
}

#[test]
fn our_commits_pass_real_fsck_and_checkout_identically() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    for m in modes() {
        let path = d.path().join(format!("ours-{}", mode_arg(m)));
        let repo = Repo::create(&path, m).unwrap();
        let c = ostree_repo::commit::commit_dirs(&repo, std::slice::from_ref(&tree), &opts("x/y"))
            .unwrap();
        let p = path.to_str().unwrap();
        let fsck = ostree(&["--repo", p, "fsck"]);
        assert!(
            fsck.contains("object fsck of 1 commits completed successfully - no errors found."),
            "{fsck}"
        );
        // Real checkout vs our checkout of the same commit, same flags.
        let user = m != RepoMode::Bare && m != RepoMode::Archive || !is_root();
        let real_co = d.path().join(format!("real-co-{}", mode_arg(m)));
        let mut args = vec!["--repo", p, "checkout"];
        if user {
            args.push("-U");
        }
        let rc = real_co.to_str().unwrap().to_string();
        args.extend(["x/y", rc.as_str()]);
        ostree(&args);
        let our_co = d.path().join(format!("our-co-{}", mode_arg(m)));
        let copts = CheckoutOptions {
            mode: if user {
                CheckoutMode::User
            } else {
                CheckoutMode::None
            },
            ..Default::default()
        };
        ostree_repo::checkout::checkout(&repo, &c, &our_co, &copts).unwrap();
        assert_same_trees(&real_co, &our_co, &format!("checkout of our {m:?} commit"));
        if !user && m == RepoMode::Archive {
            // A full-metadata checkout as root reproduces the source exactly
            // (owners, suid, xattrs) apart from the root directory itself.
            let mut src = snapshot(&tree);
            let mut co = snapshot(&our_co);
            src.remove(Path::new(""));
            co.remove(Path::new(""));
            assert_eq!(src, co, "archive round trip");
        }
    }
}

#[test]
fn real_commits_pass_our_fsck_and_checkout() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    for m in modes() {
        let path = d.path().join(format!("real-{}", mode_arg(m)));
        let p = path.to_str().unwrap();
        ostree(&["--repo", p, "init", "--mode", mode_arg(m)]);
        ostree(&[
            "--repo",
            p,
            "commit",
            "-b",
            "r",
            "-s",
            "s",
            tree.to_str().unwrap(),
        ]);
        ostree(&[
            "--repo",
            p,
            "commit",
            "-b",
            "r",
            "-s",
            "s2",
            tree.to_str().unwrap(),
        ]);
        let repo = Repo::open(&path).unwrap();
        let report = ostree_repo::fsck::fsck(&repo, &Default::default(), &|_, _| {}).unwrap();
        assert!(report.errors.is_empty(), "{m:?}: {:?}", report.errors);
        assert_eq!(report.commits, 2);
        let user = m != RepoMode::Bare && m != RepoMode::Archive || !is_root();
        let c = repo.resolve_rev("r", false).unwrap().unwrap();
        let our_co = d.path().join(format!("our-co-{}", mode_arg(m)));
        let copts = CheckoutOptions {
            mode: if user {
                CheckoutMode::User
            } else {
                CheckoutMode::None
            },
            ..Default::default()
        };
        ostree_repo::checkout::checkout(&repo, &c, &our_co, &copts).unwrap();
        let real_co = d.path().join(format!("real-co-{}", mode_arg(m)));
        let rc = real_co.to_str().unwrap().to_string();
        let mut args = vec!["--repo", p, "checkout"];
        if user {
            args.push("-U");
        }
        args.extend(["r", rc.as_str()]);
        ostree(&args);
        assert_same_trees(&real_co, &our_co, &format!("checkout of real {m:?} commit"));
    }
}

#[test]
fn fsck_detects_corruption_in_real_repo() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let path = d.path().join("repo");
    let p = path.to_str().unwrap();
    ostree(&["--repo", p, "init", "--mode", "archive"]);
    ostree(&["--repo", p, "commit", "-b", "r", tree.to_str().unwrap()]);
    let repo = Repo::open(&path).unwrap();
    let c = repo.resolve_rev("r", false).unwrap().unwrap();
    let cm = repo.load_commit(&c).unwrap();
    let t = repo.load_dirtree(&cm.root_tree).unwrap();
    let (_, usr_tree, _) = t.dirs.iter().find(|(n, ..)| n == "usr").unwrap().clone();
    let usr = repo.load_dirtree(&usr_tree).unwrap();
    let (_, blob) = usr.files.iter().find(|(n, _)| n == "blob").unwrap().clone();
    // Flip one byte of the compressed payload.
    let objp = repo.object_path(ObjectType::File, &blob);
    let mut bytes = fs::read(&objp).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    fs::write(&objp, &bytes).unwrap();
    let report = ostree_repo::fsck::fsck(&repo, &Default::default(), &|_, _| {}).unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    // Truncate a dirtree: checksum mismatch reported in upstream's words.
    let tp = repo.object_path(ObjectType::DirTree, &usr_tree);
    fs::write(&tp, b"").unwrap();
    let report = ostree_repo::fsck::fsck(
        &repo,
        &ostree_repo::fsck::FsckOptions {
            all: true,
            delete: false,
            ..Default::default()
        },
        &|_, _| {},
    )
    .unwrap();
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("Corrupted dirtree object; checksum expected")),
        "{:?}",
        report.errors
    );
}

#[test]
fn tree_sources_overlay_like_upstream() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    let b = d.path().join("b");
    fs::create_dir_all(a.join("etc")).unwrap();
    fs::create_dir_all(b.join("etc")).unwrap();
    fs::write(a.join("etc/one"), "1").unwrap();
    fs::write(a.join("etc/two"), "2").unwrap();
    fs::write(b.join("etc/two"), "two").unwrap();
    fs::write(b.join("three"), "3").unwrap();
    let path = d.path().join("repo");
    let p = path.to_str().unwrap();
    ostree(&["--repo", p, "init", "--mode", "bare-user"]);
    let ta = format!("--tree=dir={}", a.display());
    let tb = format!("--tree=dir={}", b.display());
    let real = ostree(&[
        "--repo",
        p,
        "commit",
        "--orphan",
        "--timestamp=@0",
        &ta,
        &tb,
    ]);
    let repo = Repo::open(&path).unwrap();
    let o = CommitOptions {
        orphan: true,
        timestamp: Some(0),
        ..Default::default()
    };
    let ours =
        ostree_repo::commit::commit(&repo, &[TreeSource::Dir(a), TreeSource::Dir(b)], &o).unwrap();
    assert_eq!(object::to_hex(&ours.checksum), real.trim());
}

#[test]
fn our_pull_local_and_summary_are_read_by_real_ostree() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    // Source made by the real tool, with two commits of history.
    let src_path = d.path().join("src");
    let s = src_path.to_str().unwrap();
    ostree(&["--repo", s, "init", "--mode", "archive"]);
    ostree(&[
        "--repo",
        s,
        "commit",
        "-b",
        "os/x",
        "--add-metadata-string=version=1",
        tree.to_str().unwrap(),
    ]);
    fs::write(tree.join("usr/new"), "new").unwrap();
    let head = ostree(&[
        "--repo",
        s,
        "commit",
        "-b",
        "os/x",
        "--add-metadata-string=version=2",
        tree.to_str().unwrap(),
    ]);
    for m in modes() {
        let dst_path = d.path().join(format!("dst-{}", mode_arg(m)));
        let dst = Repo::create(&dst_path, m).unwrap();
        let src = Repo::open(&src_path).unwrap();
        let opts = ostree_repo::pull::PullLocalOptions {
            depth: -1,
            ..Default::default()
        };
        let r = ostree_repo::pull::pull_local(&src, &dst, &["os/x".to_string()], &opts);
        if m == RepoMode::BareUserOnly {
            // The tree has a setuid file: refused, exactly like the real tool.
            let e = r.unwrap_err().to_string();
            assert!(e.contains("invalid mode 0104755 with bits 04000"), "{e}");
            continue;
        }
        r.unwrap();
        let p = dst_path.to_str().unwrap();
        let fsck = ostree(&["--repo", p, "fsck"]);
        assert!(
            fsck.contains("object fsck of 2 commits completed successfully"),
            "{m:?}: {fsck}"
        );
        assert_eq!(ostree(&["--repo", p, "rev-parse", "os/x"]), head);
    }
    // Our summary, read back by the real `summary --view`.
    let mut ours = Repo::open(&d.path().join("dst-archive")).unwrap();
    ostree_repo::summary::regenerate(&mut ours, &[("custom".into(), Value::Str("v".into()))])
        .unwrap();
    let view = ostree(&[
        "--repo",
        d.path().join("dst-archive").to_str().unwrap(),
        "summary",
        "--view",
    ]);
    assert!(view.contains("* os/x"), "{view}");
    assert!(view.contains(head.trim()), "{view}");
    assert!(
        view.contains("Version (ostree.commit.version): 2"),
        "{view}"
    );
    assert!(
        view.contains("Repository Mode (ostree.summary.mode): archive-z2"),
        "{view}"
    );
    assert!(view.contains("custom: 'v'"), "{view}");
}

#[test]
fn real_ostree_verifies_our_signatures_and_we_verify_its() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let path = d.path().join("repo");
    let p = path.to_str().unwrap();
    ostree(&["--repo", p, "init", "--mode", "archive"]);
    let c = ostree(&["--repo", p, "commit", "-b", "s", tree.to_str().unwrap()]);
    let c = c.trim();
    let repo = Repo::open(&path).unwrap();
    let commit = object::from_hex(c).unwrap();
    use ostree_repo::sign::{sign_commit, verify_commit, SignEngine};
    // Debian's 2022.7 has only the dummy engine (no libsodium): exchange
    // dummy signatures both ways through the shared detached metadata.
    sign_commit(&repo, &commit, SignEngine::Dummy, "ours").unwrap();
    let out = Command::new(OSTREE)
        .args([
            &format!("--repo={p}"),
            "sign",
            "--sign-type=dummy",
            "--verify",
            c,
            "ours",
        ])
        .env("OSTREE_DUMMY_SIGN_ENABLED", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(OSTREE)
        .args([
            &format!("--repo={p}"),
            "sign",
            "--sign-type=dummy",
            c,
            "theirs",
        ])
        .env("OSTREE_DUMMY_SIGN_ENABLED", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = ["theirs".to_string()];
    assert_eq!(
        verify_commit(&repo, &commit, SignEngine::Dummy, &keys).unwrap(),
        Some("theirs".into())
    );
    assert_eq!(
        verify_commit(&repo, &commit, SignEngine::Dummy, &["nope".into()]).unwrap(),
        None
    );
    // Both signatures are kept (signing appends), readable by the real tool.
    let shown = ostree(&[
        "--repo",
        p,
        "show",
        c,
        "--print-detached-metadata-key=ostree.sign.dummy",
    ]);
    assert!(
        shown.contains("0x6f, 0x75, 0x72, 0x73") && shown.contains("0x74, 0x68, 0x65"),
        "{shown}"
    );
}

#[test]
fn repo_lock_excludes_real_prune_during_our_transaction() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("repo");
    let repo = Repo::create(&path, RepoMode::Archive).unwrap();
    let tx = repo.begin().unwrap();
    let mut prune = Command::new(OSTREE)
        .args([
            &format!("--repo={}", path.display()),
            "prune",
            "--refs-only",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run ostree prune");
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(
        prune.try_wait().unwrap().is_none(),
        "real prune must wait for our shared repo lock"
    );
    drop(tx);
    assert!(prune.wait().unwrap().success());
}

/// A minimal static-file HTTP/1.1 server (GET only, `Connection: close`),
/// enough for libostree's curl fetcher; returns the port.
fn serve_dir(root: PathBuf) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let root = root.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    return;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok() && line.trim() != "" {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let file = root.join(path.trim_start_matches('/'));
                let ok = !path.contains("..") && file.is_file();
                let body = if ok {
                    fs::read(&file).unwrap_or_default()
                } else {
                    Vec::new()
                };
                let status = if ok { "200 OK" } else { "404 Not Found" };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            });
        }
    });
    port
}

#[test]
fn real_ostree_pulls_our_archive_repo_over_http() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let served = d.path().join("srv");
    let mut ours = Repo::create(&served.join("repo"), RepoMode::Archive).unwrap();
    let first = ostree_repo::commit::commit_dirs(&ours, std::slice::from_ref(&tree), &opts("os/x"))
        .unwrap();
    fs::write(tree.join("usr/extra"), "second commit").unwrap();
    let o2 = CommitOptions {
        timestamp: Some(1_577_836_900),
        ..opts("os/x")
    };
    let second = ostree_repo::commit::commit_dirs(&ours, std::slice::from_ref(&tree), &o2).unwrap();
    ostree_repo::summary::regenerate(&mut ours, &[]).unwrap();
    let port = serve_dir(served);
    for m in modes() {
        let client = d.path().join(format!("client-{}", mode_arg(m)));
        let c = client.to_str().unwrap();
        ostree(&["--repo", c, "init", "--mode", mode_arg(m)]);
        ostree(&[
            "--repo",
            c,
            "remote",
            "add",
            "--no-gpg-verify",
            "origin",
            &format!("http://127.0.0.1:{port}/repo"),
        ]);
        if m == RepoMode::BareUserOnly {
            // setuid content cannot enter a bare-user-only repo (as upstream).
            continue;
        }
        ostree(&["--repo", c, "pull", "--depth=1", "origin", "os/x"]);
        let fsck = ostree(&["--repo", c, "fsck"]);
        assert!(
            fsck.contains("object fsck of 2 commits completed successfully"),
            "{m:?}: {fsck}"
        );
        assert_eq!(
            ostree(&["--repo", c, "rev-parse", "origin:os/x"]).trim(),
            object::to_hex(&second)
        );
        assert_eq!(
            ostree(&["--repo", c, "rev-parse", "origin:os/x^"]).trim(),
            object::to_hex(&first)
        );
        // What the real tool checks out equals our own checkout.
        let theirs = d.path().join(format!("co-real-{}", mode_arg(m)));
        ostree(&[
            "--repo",
            c,
            "checkout",
            "-U",
            "origin:os/x",
            theirs.to_str().unwrap(),
        ]);
        let mine = d.path().join(format!("co-ours-{}", mode_arg(m)));
        let copts = CheckoutOptions {
            mode: CheckoutMode::User,
            ..Default::default()
        };
        ostree_repo::checkout::checkout(&ours, &second, &mine, &copts).unwrap();
        assert_same_trees(&theirs, &mine, &format!("HTTP pull into {m:?}"));
    }
}

fn object_names(repo: &Path) -> Vec<String> {
    all_objects(repo).into_iter().map(|(n, _)| n).collect()
}

#[test]
fn prune_deletes_exactly_what_real_prune_deletes() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let a = d.path().join("a");
    let repo = Repo::create(&a, RepoMode::Archive).unwrap();
    for i in 0..3 {
        fs::write(tree.join("usr/counter"), format!("{i}")).unwrap();
        let o = CommitOptions {
            timestamp: Some(1_600_000_000 + i),
            ..opts("main")
        };
        ostree_repo::commit::commit_dirs(&repo, std::slice::from_ref(&tree), &o).unwrap();
    }
    let side = CommitOptions {
        orphan: true,
        branch: None,
        ..opts("x")
    };
    ostree_repo::commit::commit_dirs(&repo, std::slice::from_ref(&tree), &side).unwrap();
    let b = d.path().join("b");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap();
    assert!(status.success());
    for (args, depth, refs_only) in [
        (vec!["--refs-only", "--depth=1"], 1, true),
        (vec!["--refs-only"], -1, true),
        (vec![], -1, false),
    ] {
        let popts = ostree_repo::prune::PruneOptions {
            refs_only,
            depth,
            ..Default::default()
        };
        let ours = ostree_repo::prune::prune(&repo, &popts).unwrap();
        let mut argv = vec![format!("--repo={}", b.display()), "prune".to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let real = Command::new(OSTREE).args(&argv).output().unwrap();
        assert!(real.status.success());
        assert_eq!(object_names(&a), object_names(&b), "after prune {args:?}");
        let text = String::from_utf8_lossy(&real.stdout);
        if ours.pruned > 0 {
            assert!(
                text.contains(&format!("Deleted {} objects", ours.pruned)),
                "{text} vs {ours:?}"
            );
        }
        ostree(&["--repo", a.to_str().unwrap(), "fsck"]);
    }
}

#[test]
fn checkout_subpath_and_union_match_real_checkout() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let path = d.path().join("repo");
    let repo = Repo::create(&path, RepoMode::BareUser).unwrap();
    let c =
        ostree_repo::commit::commit_dirs(&repo, std::slice::from_ref(&tree), &opts("m")).unwrap();
    let p = path.to_str().unwrap();
    let real = d.path().join("real");
    let mine = d.path().join("mine");
    ostree(&[
        "--repo",
        p,
        "checkout",
        "-U",
        "--subpath=/usr/etc",
        "m",
        real.to_str().unwrap(),
    ]);
    let sub = CheckoutOptions {
        mode: CheckoutMode::User,
        subpath: Some("/usr/etc".into()),
        ..Default::default()
    };
    ostree_repo::checkout::checkout(&repo, &c, &mine, &sub).unwrap();
    assert_same_trees(&real, &mine, "--subpath");
    // --union over an existing tree: files replaced, extra files kept.
    for dir in [&real, &mine] {
        // Replace, never write through: the checkout is hardlinked to the repo.
        fs::remove_file(dir.join("hello.conf")).unwrap();
        fs::write(dir.join("hello.conf"), "local edit").unwrap();
        fs::write(dir.join("local-only"), "kept").unwrap();
    }
    ostree(&[
        "--repo",
        p,
        "checkout",
        "-U",
        "--union",
        "--subpath=/usr/etc",
        "m",
        real.to_str().unwrap(),
    ]);
    let union = CheckoutOptions {
        overwrite: Overwrite::UnionFiles,
        ..sub.clone()
    };
    ostree_repo::checkout::checkout(&repo, &c, &mine, &union).unwrap();
    assert_same_trees(&real, &mine, "--union");
    assert_eq!(
        fs::read_to_string(mine.join("hello.conf")).unwrap(),
        "hello\n"
    );
    // Without --union an existing destination is an error for both.
    assert!(ostree_repo::checkout::checkout(&repo, &c, &mine, &sub).is_err());
    // -C copies (link count 1), default -U on bare-user hardlinks.
    let copied = d.path().join("copied");
    let copy = CheckoutOptions {
        mode: CheckoutMode::User,
        force_copy: true,
        ..Default::default()
    };
    ostree_repo::checkout::checkout(&repo, &c, &copied, &copy).unwrap();
    assert_eq!(fs::metadata(copied.join("usr/blob")).unwrap().nlink(), 1);
    let linked = d.path().join("linked");
    let link = CheckoutOptions {
        mode: CheckoutMode::User,
        require_hardlinks: true,
        ..Default::default()
    };
    ostree_repo::checkout::checkout(&repo, &c, &linked, &link).unwrap();
    assert!(fs::metadata(linked.join("usr/blob")).unwrap().nlink() > 1);
}

#[test]
fn diff_matches_real_diff() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let path = d.path().join("repo");
    let repo = Repo::create(&path, RepoMode::BareUser).unwrap();
    let a =
        ostree_repo::commit::commit_dirs(&repo, std::slice::from_ref(&tree), &opts("m")).unwrap();
    fs::remove_file(tree.join("usr/empty")).unwrap();
    fs::remove_file(tree.join("usr/etc/hello.conf")).unwrap();
    fs::write(tree.join("usr/etc/hello.conf"), "changed").unwrap();
    fs::create_dir_all(tree.join("new/sub")).unwrap();
    fs::write(tree.join("new/sub/leaf"), "leaf").unwrap();
    fs::set_permissions(tree.join("usr/bin"), fs::Permissions::from_mode(0o700)).unwrap();
    let b =
        ostree_repo::commit::commit_dirs(&repo, std::slice::from_ref(&tree), &opts("m")).unwrap();
    let p = path.to_str().unwrap();
    let sorted = |s: String| {
        let mut v: Vec<String> = s.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let print = |x: &ostree_repo::diff::Diff| {
        let mut v = Vec::new();
        for (t, l) in [("M", &x.modified), ("D", &x.removed), ("A", &x.added)] {
            v.extend(l.iter().map(|p| format!("{t}    {p}")));
        }
        v.sort();
        v
    };
    use ostree_repo::diff::{diff, DiffOptions, Side};
    let ours = diff(
        &repo,
        &Side::Commit(a),
        &Side::Commit(b),
        &DiffOptions::default(),
    )
    .unwrap();
    let real = ostree(&[
        "--repo",
        p,
        "diff",
        &object::to_hex(&a),
        &object::to_hex(&b),
    ]);
    assert_eq!(print(&ours), sorted(real));
    assert!(
        ours.added.contains(&"/new/sub/leaf".to_string()),
        "{ours:?}"
    );
    // Commit against the directory itself: identical, then with a uid override.
    let dir = format!("{}/", tree.display());
    let ours = diff(
        &repo,
        &Side::Commit(b),
        &Side::Dir(tree.clone()),
        &DiffOptions::default(),
    )
    .unwrap();
    assert_eq!(ours, ostree_repo::diff::Diff::default());
    assert_eq!(
        ostree(&["--repo", p, "diff", &object::to_hex(&b), &dir]),
        ""
    );
    let o = DiffOptions {
        owner_uid: Some(4242),
        ..Default::default()
    };
    let ours = diff(&repo, &Side::Commit(b), &Side::Dir(tree.clone()), &o).unwrap();
    let real = ostree(&[
        "--repo",
        p,
        "diff",
        "--owner-uid=4242",
        &object::to_hex(&b),
        &dir,
    ]);
    assert_eq!(print(&ours), sorted(real));
    assert!(ours.modified.contains(&"/usr/etc/hello.conf".to_string()));
}
