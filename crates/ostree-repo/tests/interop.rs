//! Interoperability with the real `ostree` (Debian's 2022.7, /usr/bin/ostree):
//! golden bytes of every object type, our commits checked and checked out by
//! the real tool, its commits by us, and identical commit checksums.
//!
//! These tests require /usr/bin/ostree (apt package `ostree`) and fail
//! loudly without it: CI installs it, and a silent skip would hide breakage.

use ostree_repo::checkout::{CheckoutMode, CheckoutOptions};
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
            ostree_repo::commit::commit_dirs(&ours_repo, std::slice::from_ref(&tree), &opts("a/b")).unwrap();
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
        let ours2 = ostree_repo::commit::commit_dirs(&ours_repo, std::slice::from_ref(&tree), &o2).unwrap();
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
        let c = ostree_repo::commit::commit_dirs(&repo, std::slice::from_ref(&tree), &opts("x/y")).unwrap();
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
