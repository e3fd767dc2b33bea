//! Static deltas against the real `ostree` (/usr/bin/ostree, Debian package
//! `ostree`; HTTP via `ostree-trivial-httpd` from `ostree-tests`), both
//! ways: deltas the real tool generates (with bsdiff ops) applied by us, and
//! ours (with bsdiff ops too) applied by it; offline and over HTTP. Over
//! HTTP the loose objects that only the delta carries are deleted from the
//! server first, so a pull can only succeed through the delta. Our bsdiff
//! patches are compared byte for byte with upstream's, and our pairing of
//! modified files with the real tool's.

use ostree_repo::delta::{self, DeltaName, GenerateOptions, PartSource};
use ostree_repo::object::{self, Checksum, ObjectType};
use ostree_repo::pull_http::{pull_http, HttpPullOptions};
use ostree_repo::{bsdiff, Repo, RepoMode};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

mod common;
use common::{noise, run, serve_logged as serve, OSTREE};

fn ostree(repo: &Path, args: &[&str]) -> String {
    let r = format!("--repo={}", repo.display());
    let mut a = vec![r.as_str()];
    a.extend_from_slice(args);
    run(OSTREE, &a)
}

/// Version 1 and 2 of a tree: 2 has a big file with a few bytes changed
/// (upstream then emits bsdiff ops), an edited text file, a new file, a
/// removed file, a changed symlink and an executable.
fn make_tree(root: &Path, version: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    let mut big = noise(200_000, 7);
    let mut text: String = (0..4000).map(|i| format!("line {i} of text\n")).collect();
    if version == 2 {
        big[5000..5016].copy_from_slice(b"0123456789abcdef");
        big.extend_from_slice(b"appended");
        text = text.replace("line 77 ", "LINE 77 ");
        fs::write(root.join("etc/new-file"), b"only in version 2\n").unwrap();
    } else {
        fs::write(root.join("etc/old-file"), b"only in version 1\n").unwrap();
    }
    fs::write(root.join("usr/big.bin"), &big).unwrap();
    fs::write(root.join("usr/text.txt"), text).unwrap();
    fs::write(
        root.join("usr/bin/tool"),
        format!("#!/bin/sh\necho {version}\n"),
    )
    .unwrap();
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(format!("target-{version}"), root.join("usr/link")).unwrap();
}

/// An archive repo (written by the real ostree) with two commits on `main`;
/// returns (previous, new) checksums.
fn two_commits(repo: &Path, tmp: &Path) -> (String, String) {
    ostree(repo, &["init", "--mode=archive"]);
    let t = tmp.join("tree");
    for v in [1, 2] {
        make_tree(&t, v);
        let tree = format!("--tree=dir={}", t.display());
        ostree(
            repo,
            &["commit", "-b", "main", &tree, "-s", &format!("v{v}")],
        );
    }
    let new = ostree(repo, &["rev-parse", "main"]).trim().to_string();
    let prev = ostree(repo, &["rev-parse", "main^"]).trim().to_string();
    (prev, new)
}

fn listing(repo: &Path, rev: &str) -> String {
    ostree(repo, &["ls", "-R", "-C", rev])
}

fn fsck_clean(repo: &Path) {
    let out = ostree(repo, &["fsck"]);
    assert!(out.contains("no errors found"), "{out}");
}

#[test]
fn real_bsdiff_delta_applies_offline_into_every_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (prev, new) = two_commits(&src, tmp.path());
    ostree(&src, &["static-delta", "generate", "main"]);
    let name = format!("{prev}-{new}");
    let show = ostree(&src, &["static-delta", "show", &name]);
    // The point of this test: upstream's delta uses bspatch and read sources.
    assert!(
        show.contains("bspatch=") && !show.contains("bspatch=0"),
        "{show}"
    );
    let src_repo = Repo::open(&src).unwrap();
    let dname = DeltaName::parse(&name).unwrap();
    for mode in [
        RepoMode::BareUser,
        RepoMode::BareUserOnly,
        RepoMode::Archive,
    ] {
        let dst_path = tmp.path().join(format!("dst-{mode:?}"));
        let dst = Repo::create(&dst_path, mode).unwrap();
        ostree_repo::pull::pull_local(
            &src_repo,
            &dst,
            std::slice::from_ref(&prev),
            &Default::default(),
        )
        .unwrap();
        let to = delta::apply_offline(&dst, &src.join(dname.relpath())).unwrap();
        assert_eq!(object::to_hex(&to), new);
        if mode == RepoMode::BareUserOnly {
            // Same tree, canonical permissions: compare only what both have.
            assert!(dst.has_object(ObjectType::Commit, &to));
        } else {
            assert_eq!(listing(&dst_path, &new), listing(&src, &new), "{mode:?}");
        }
        fsck_clean(&dst_path);
    }
}

#[test]
fn our_deltas_apply_with_real_ostree() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (prev, new) = two_commits(&src, tmp.path());
    let repo = Repo::open(&src).unwrap();
    let (p, n) = (
        object::from_hex(&prev).unwrap(),
        object::from_hex(&new).unwrap(),
    );
    for (from, inline) in [(Some(p), false), (None, false), (Some(p), true)] {
        let mut opts = GenerateOptions::new(from, n);
        opts.inline = inline;
        let st = delta::generate(&repo, &opts).unwrap();
        let name = st.name.to_string();
        // The real tool parses our superblock and parts (its `show` reads
        // parts from files only, so inline deltas are checked by applying).
        if !inline {
            let show = ostree(&src, &["static-delta", "show", &name]);
            assert!(show.contains(&format!("To: {new}")), "{show}");
            assert!(
                show.contains(&format!(
                    "Total Part Uncompressed Size: {} ",
                    st.uncompressed
                )),
                "{show}"
            );
        }
        let dst = tmp
            .path()
            .join(format!("real-dst-{}-{inline}", from.is_some()));
        ostree(&dst, &["init", "--mode=bare-user"]);
        if from.is_some() {
            ostree(&dst, &["pull-local", src.to_str().unwrap(), &prev]);
        }
        let dir = src.join(st.name.relpath());
        ostree(
            &dst,
            &["static-delta", "apply-offline", dir.to_str().unwrap()],
        );
        assert_eq!(listing(&dst, &new), listing(&src, &new));
        fsck_clean(&dst);
    }
    // And our own listing, index and deletion agree with the real tool.
    let mut ours: Vec<String> = delta::list(&repo)
        .unwrap()
        .iter()
        .map(|d| d.to_string())
        .collect();
    ours.sort();
    let mut real: Vec<String> = ostree(&src, &["static-delta", "list"])
        .lines()
        .map(str::to_string)
        .collect();
    real.sort();
    assert_eq!(ours, real);
}

/// Deletes from `repo` every loose object of `new` that `prev` lacks, so
/// only a delta can provide them.
fn strip_new_objects(repo: &Path, prev: &str, new: &str) -> usize {
    let r = Repo::open(repo).unwrap();
    let objs = |c: &str| -> std::collections::BTreeSet<(ObjectType, [u8; 32])> {
        let commit = r.load_commit(&object::from_hex(c).unwrap()).unwrap();
        let mut out = std::collections::BTreeSet::new();
        let mut stack = vec![(commit.root_tree, commit.root_meta)];
        while let Some((t, m)) = stack.pop() {
            out.insert((ObjectType::DirMeta, m));
            out.insert((ObjectType::DirTree, t));
            let tree = r.load_dirtree(&t).unwrap();
            out.extend(tree.files.iter().map(|(_, f)| (ObjectType::File, *f)));
            stack.extend(tree.dirs.iter().map(|(_, a, b)| (*a, *b)));
        }
        out
    };
    let old = objs(prev);
    let mut n = 0;
    for (ty, c) in objs(new).difference(&old) {
        fs::remove_file(r.object_path(*ty, c)).unwrap();
        n += 1;
    }
    n
}

#[test]
fn http_pull_through_deltas_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    let src = srv.join("repo");
    fs::create_dir_all(&srv).unwrap();
    let (prev, new) = two_commits(&src, tmp.path());
    let url = format!("{}/repo", serve(&srv));
    let opts = HttpPullOptions {
        remote: Some("origin".into()),
        ..Default::default()
    };

    // 1. Real delta (bsdiff), our pull.
    ostree(&src, &["static-delta", "generate", "main"]);
    ostree(&src, &["summary", "-u"]);
    let expected = listing(&src, &new);
    assert!(strip_new_objects(&src, &prev, &new) > 3);
    let dst_path = tmp.path().join("ours");
    let dst = Repo::create(&dst_path, RepoMode::BareUser).unwrap();
    pull_http(&dst, &url, &[format!("main@{prev}")], &opts).unwrap();
    // Without deltas the stripped objects are unreachable: the flag works.
    let no_deltas = HttpPullOptions {
        disable_static_deltas: true,
        ..opts.clone()
    };
    assert!(pull_http(&dst, &url, &["main".into()], &no_deltas).is_err());
    // A dry run reports the part without fetching it.
    let dry = HttpPullOptions {
        require_static_deltas: true,
        dry_run: true,
        ..opts.clone()
    };
    let st = pull_http(&dst, &url, &["main".into()], &dry).unwrap();
    assert_eq!(st.written.delta.needed_parts, 1);
    assert!(!dst.has_object(ObjectType::Commit, &object::from_hex(&new).unwrap()));
    pull_http(&dst, &url, &["main".into()], &opts).unwrap();
    assert_eq!(
        dst.read_ref(Some("origin"), "main")
            .unwrap()
            .map(|c| object::to_hex(&c)),
        Some(new.clone())
    );
    assert_eq!(listing(&dst_path, &new), expected);
    fsck_clean(&dst_path);

    // 2. Our delta, real pull, from a second served repository.
    let src = srv.join("repo2");
    let url = format!("{url}2");
    let (prev2, new2) = two_commits(&src, tmp.path());
    let repo = Repo::open(&src).unwrap();
    for d in delta::list(&repo).unwrap() {
        delta::delete(&repo, &d).unwrap();
    }
    let opts_gen = GenerateOptions::new(
        Some(object::from_hex(&prev2).unwrap()),
        object::from_hex(&new2).unwrap(),
    );
    let st = delta::generate(&repo, &opts_gen).unwrap();
    // big.bin, text.txt and usr/bin/tool changed a little: the real client
    // has to run our bspatch ops.
    assert_eq!(st.bsdiff, 3);
    drop(repo);
    let mut repo = Repo::open(&src).unwrap();
    ostree_repo::summary::regenerate(&mut repo, &[]).unwrap();
    // Objects stay on the server: the real client races its own object walk
    // against delta parts (it fetches a few objects loose even with its own
    // deltas), so the httpd log proves the delta path instead.
    let real = tmp.path().join("real");
    ostree(&real, &["init", "--mode=bare-user"]);
    ostree(
        &real,
        &["remote", "add", "--set=gpg-verify=false", "origin", &url],
    );
    ostree(&real, &["pull", "origin", &format!("main@{prev2}")]);
    ostree(&real, &["pull", "origin", "main"]);
    assert_eq!(ostree(&real, &["rev-parse", "origin:main"]).trim(), new2);
    assert_eq!(listing(&real, &new2), listing(&src, &new2));
    fsck_clean(&real);
    let log = fs::read_to_string(srv.join("httpd.log")).unwrap();
    let part = format!(
        "/repo2/{}/0",
        DeltaName::parse(&format!("{prev2}-{new2}"))
            .unwrap()
            .relpath()
    );
    assert!(log.contains(&part), "{part} not fetched:\n{log}");
}

// ------------------------------------------------------------------ bsdiff

/// The real ostree's stdout and stderr (it reports `static-delta generate`
/// statistics on stderr).
fn ostree_with_stderr(repo: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(common::OSTREE)
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .expect("spawn ostree");
    assert!(
        out.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn varint(ops: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0;
    for shift in (0..64).step_by(7) {
        let b = ops[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

/// An object a delta rebuilds from an object the client already has: by
/// `bspatch`, or by `write`s from the read source (upstream's rollsum).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rebuilt {
    to: Checksum,
    source: Checksum,
    /// The bsdiff patch; `None` for rollsum.
    patch: Option<Vec<u8>>,
}

/// Walks every part's bytecode and collects the objects rebuilt from a read
/// source.
fn rebuilt(repo_path: &Path, name: &DeltaName) -> BTreeSet<Rebuilt> {
    let repo = Repo::open(repo_path).unwrap();
    let (sb, _) = delta::read_superblock(&repo, name).unwrap();
    let dir = repo_path.join(name.relpath());
    let mut out = BTreeSet::new();
    for (i, h) in sb.parts.iter().enumerate() {
        let bytes = delta::part_bytes(&sb, i, &PartSource::Dir(&dir)).unwrap();
        let part = delta::open_part(&bytes, &h.checksum).unwrap();
        let (ops, blob) = (&part.ops, &part.blob);
        let mut objects = h.objects.iter();
        let (mut pos, mut source, mut current) = (0, None, None);
        let (mut used, mut patch) = (None, None);
        while pos < ops.len() {
            let op = ops[pos];
            pos += 1;
            match op {
                b'S' => {
                    let n = match objects.next() {
                        Some((t, _)) if t.is_meta() => 2,
                        _ => 4,
                    };
                    for _ in 0..n {
                        varint(ops, &mut pos);
                    }
                }
                b'o' => {
                    current = objects.next().map(|(_, c)| *c);
                    for _ in 0..3 {
                        varint(ops, &mut pos);
                    }
                }
                b'r' => {
                    let off = varint(ops, &mut pos) as usize;
                    source = Some(<Checksum>::try_from(&blob[off..off + 32]).unwrap());
                }
                b'R' => source = None,
                b'w' => {
                    varint(ops, &mut pos);
                    varint(ops, &mut pos);
                    used = used.or(source);
                }
                b'B' => {
                    let off = varint(ops, &mut pos) as usize;
                    let len = varint(ops, &mut pos) as usize;
                    used = Some(source.expect("bspatch with a read source"));
                    patch = Some(blob[off..off + len].to_vec());
                }
                b'c' => {
                    let to = current.take().expect("close after open");
                    if let Some(source) = used.take() {
                        out.insert(Rebuilt {
                            to,
                            source,
                            patch: patch.take(),
                        });
                    }
                }
                other => panic!("unknown opcode {other}"),
            }
        }
    }
    out
}

/// The objects a delta rebuilds with `bspatch`.
fn bspatches(repo_path: &Path, name: &DeltaName) -> BTreeSet<Rebuilt> {
    rebuilt(repo_path, name)
        .into_iter()
        .filter(|r| r.patch.is_some())
        .collect()
}

fn content(repo_path: &Path, c: &Checksum) -> Vec<u8> {
    use std::io::Read;
    let repo = Repo::open(repo_path).unwrap();
    let mut obj = repo.open_content(c).unwrap();
    let mut v = Vec::new();
    obj.payload.read_to_end(&mut v).unwrap();
    v
}

/// A ~1 MB binary file in version 1 and, with a few bytes changed, in
/// version 2, beside files that do not change.
fn write_big_tree(root: &Path, version: u32) -> Vec<u8> {
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    let mut big = noise(1_000_000, 11);
    if version == 2 {
        for at in [10, 400_000, 999_990] {
            big[at] ^= 0x5a;
        }
    }
    fs::write(root.join("usr/lib/big.so"), &big).unwrap();
    fs::write(root.join("usr/lib/README"), b"unchanged\n").unwrap();
    std::os::unix::fs::symlink("big.so", root.join("usr/lib/big.so.1")).unwrap();
    big
}

/// An archive repo written by us with two commits of [`write_big_tree`];
/// returns (previous, new, version 2 of the big file).
fn our_big_commits(repo_path: &Path, tmp: &Path) -> (Checksum, Checksum, Vec<u8>) {
    use ostree_repo::commit::{commit_dirs, CommitOptions};
    let repo = Repo::create(repo_path, RepoMode::Archive).unwrap();
    let tree = tmp.join("big-tree");
    let mut ids = Vec::new();
    let mut big = Vec::new();
    for v in [1, 2] {
        big = write_big_tree(&tree, v);
        let opts = CommitOptions {
            branch: Some("main".into()),
            subject: format!("v{v}"),
            ..Default::default()
        };
        ids.push(commit_dirs(&repo, std::slice::from_ref(&tree), &opts).unwrap());
    }
    (ids[0], ids[1], big)
}

#[test]
fn our_bsdiff_delta_is_small_and_the_real_ostree_applies_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (prev, new, big) = our_big_commits(&src, tmp.path());
    let (prev_hex, new_hex) = (object::to_hex(&prev), object::to_hex(&new));
    let repo = Repo::open(&src).unwrap();
    let name = format!("{prev_hex}-{new_hex}");
    let dname = DeltaName::parse(&name).unwrap();

    // Without bsdiff the changed file travels whole (it is noise: xz
    // cannot shrink it).
    let mut opts = GenerateOptions::new(Some(prev), new);
    opts.bsdiff = false;
    let whole = delta::generate(&repo, &opts).unwrap();
    assert_eq!((whole.modified, whole.bsdiff), (1, 0));
    assert!(whole.compressed > 1_000_000, "{whole:?}");
    let real_show = ostree(&src, &["static-delta", "show", &name]);
    assert!(real_show.contains("bspatch=0"), "{real_show}");

    let st = delta::generate(&repo, &GenerateOptions::new(Some(prev), new)).unwrap();
    // Three dirtrees (root, usr, usr/lib) and the file.
    assert_eq!((st.modified, st.bsdiff, st.objects), (1, 1, 4), "{st:?}");
    assert!(
        st.compressed * 50 < big.len() as u64,
        "part of {} bytes for a {}-byte file",
        st.compressed,
        big.len()
    );
    let ours_show = delta::show(&repo, &dname).unwrap();
    let real_show = ostree(&src, &["static-delta", "show", &name]);
    for show in [&ours_show, &real_show] {
        assert!(
            show.contains("open=1 write=0 setread=1 unsetread=1 close=1 bspatch=1"),
            "{show}"
        );
    }
    let patched = bspatches(&src, &dname);
    assert_eq!(patched.len(), 1);
    let p = patched.first().unwrap();
    assert_eq!(content(&src, &p.source), noise(1_000_000, 11));
    assert_eq!(content(&src, &p.to), big);

    // The real ostree applies it (bspatch needs a bare-user or bare repo
    // there) into a repo holding the old commit.
    let real = tmp.path().join("real");
    ostree(&real, &["init", "--mode=bare-user"]);
    ostree(&real, &["pull-local", src.to_str().unwrap(), &prev_hex]);
    let dir = src.join(dname.relpath());
    ostree(
        &real,
        &["static-delta", "apply-offline", dir.to_str().unwrap()],
    );
    fsck_clean(&real);
    assert_eq!(listing(&real, &new_hex), listing(&src, &new_hex));
    let co = tmp.path().join("checkout");
    ostree(&real, &["checkout", &new_hex, co.to_str().unwrap()]);
    assert_eq!(fs::read(co.join("usr/lib/big.so")).unwrap(), big);
    assert_eq!(
        fs::read_link(co.join("usr/lib/big.so.1")).unwrap(),
        Path::new("big.so")
    );

    // And so do we, into every kind of repo.
    for mode in [RepoMode::BareUser, RepoMode::Archive] {
        let dst_path = tmp.path().join(format!("ours-{mode:?}"));
        let dst = Repo::create(&dst_path, mode).unwrap();
        ostree_repo::pull::pull_local(
            &repo,
            &dst,
            std::slice::from_ref(&prev_hex),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(delta::apply_offline(&dst, &dir).unwrap(), new);
        assert_eq!(listing(&dst_path, &new_hex), listing(&src, &new_hex));
        fsck_clean(&dst_path);
    }
}

/// Two versions of a file that make bsdiff work: repetitive text, noise,
/// edits every 2500 bytes (insertions, flipped bytes, deletions), a block
/// copied from the start to the end, and a block the old version has twice
/// (matches of equal length: the search's tie-break shows).
fn hard_to_diff() -> (Vec<u8>, Vec<u8>) {
    let text: Vec<u8> = (0..6000u32)
        .flat_map(|i| format!("entry {} value {}\n", i % 700, i * 7 % 13).into_bytes())
        .collect();
    let twice = noise(3000, 4);
    let mut old = text.clone();
    // The new copy sorts between the old ones (0x10 < 0x20 < 0x30), so
    // the binary search ends between two matches of the same length.
    old.extend_from_slice(&twice);
    old.push(0x10);
    old.extend(noise(100_000, 3));
    old.extend_from_slice(&twice);
    old.push(0x30);
    old.extend_from_slice(&text[..50_000]);
    let mut new = Vec::new();
    for (n, chunk) in old.chunks(2500).enumerate() {
        new.extend_from_slice(chunk);
        match n % 4 {
            0 => new.extend_from_slice(b"INSERTED"),
            1 => *new.last_mut().unwrap() ^= 0x20,
            2 => new.truncate(new.len() - 5),
            _ => {}
        }
    }
    new.extend_from_slice(&old[1000..11_000]);
    new.extend_from_slice(&twice);
    new.push(0x20);
    new.extend(noise(2000, 5));
    (old, new)
}

#[test]
fn bsdiff_patches_match_upstreams_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (prev, new) = two_commits(&src, tmp.path());
    let (old_hard, new_hard) = hard_to_diff();
    let tree = tmp.path().join("hard");
    fs::create_dir_all(&tree).unwrap();
    // A second branch: the hard file, then its edited version.
    for data in [&old_hard, &new_hard] {
        fs::write(tree.join("hard.bin"), data).unwrap();
        let t = format!("--tree=dir={}", tree.display());
        ostree(&src, &["commit", "-b", "hard", &t]);
    }
    let hard_prev = ostree(&src, &["rev-parse", "hard^"]).trim().to_string();
    let hard_new = ostree(&src, &["rev-parse", "hard"]).trim().to_string();
    let names = [
        DeltaName::parse(&format!("{prev}-{new}")).unwrap(),
        DeltaName::parse(&format!("{hard_prev}-{hard_new}")).unwrap(),
    ];
    ostree(&src, &["static-delta", "generate", "main"]);
    ostree(&src, &["static-delta", "generate", "hard"]);
    let theirs: Vec<_> = names.iter().map(|n| bspatches(&src, n)).collect();
    // big.bin, text.txt and usr/bin/tool, then hard.bin: upstream pairs
    // and diffs them.
    assert_eq!(theirs[0].len(), 3, "{:?}", theirs[0]);
    assert_eq!(theirs[1].len(), 1, "{:?}", theirs[1]);
    for p in theirs.iter().flatten() {
        let (old, new) = (content(&src, &p.source), content(&src, &p.to));
        let patch = p.patch.as_deref().unwrap();
        assert_eq!(bsdiff::diff(&old, &new).unwrap(), patch);
        assert_eq!(bsdiff::patch(&old, patch, new.len() as u64).unwrap(), new);
    }
    let p = theirs[1].first().unwrap();
    assert_eq!(content(&src, &p.to), new_hard);
    let repo = Repo::open(&src).unwrap();
    for (n, t) in names.iter().zip(&theirs) {
        delta::generate(&repo, &GenerateOptions::new(n.from, n.to)).unwrap();
        assert_eq!(&bspatches(&src, n), t);
    }
}

/// Version 1 and 2 of a tree that exercises every pairing rule of
/// upstream's `_ostree_delta_compute_similar_objects`.
fn make_pairing_tree(root: &Path, v: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::remove_dir_all(root);
    for d in ["a", "x", "y", "lib", "etc"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let file = |rel: &str, size: usize, seed: u32| {
        let mut data = noise(size, seed);
        if v == 2 {
            data[size / 2] ^= 1;
        }
        fs::write(root.join(rel), data).unwrap();
    };
    // Same path, modified: paired.
    file("a/same.bin", 60_000, 1);
    // Same base name in another directory: paired.
    file(
        if v == 1 { "x/moved.bin" } else { "y/moved.bin" },
        50_000,
        2,
    );
    // Same stem before the first dot: paired in the fuzzy pass.
    file(
        if v == 1 {
            "lib/libfoo.so.1"
        } else {
            "lib/libfoo.so.2"
        },
        40_000,
        3,
    );
    // Different name: not paired.
    file(
        if v == 1 {
            "old-name.bin"
        } else {
            "new-name.bin"
        },
        30_000,
        4,
    );
    // Grew by more than 30%: not paired.
    let grows = noise(if v == 1 { 20_000 } else { 30_000 }, 5);
    fs::write(root.join("grows.bin"), grows).unwrap();
    // Grew by less than 30%: paired.
    let grows = noise(if v == 1 { 20_000 } else { 25_000 }, 6);
    fs::write(root.join("grows-less.bin"), grows).unwrap();
    // Compressed: never paired.
    file("etc/data.tar.xz", 20_000, 7);
    // Readable by its owner only: paired, but sent whole.
    file("etc/private.bin", 20_000, 8);
    fs::set_permissions(
        root.join("etc/private.bin"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // Empty before: never a source.
    let e: &[u8] = if v == 1 { b"" } else { b"now has content\n" };
    fs::write(root.join("etc/was-empty"), e).unwrap();
    // Dot files: the exact name pairs them.
    file(".hidden.cfg", 10_000, 9);
}

#[test]
fn bsdiff_pairing_matches_the_real_ostree() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    ostree(&src, &["init", "--mode=archive"]);
    let t = tmp.path().join("tree");
    for v in [1, 2] {
        make_pairing_tree(&t, v);
        let tree = format!("--tree=dir={}", t.display());
        ostree(
            &src,
            &["commit", "-b", "main", &tree, "-s", &format!("v{v}")],
        );
    }
    let prev = ostree(&src, &["rev-parse", "main^"]).trim().to_string();
    let new = ostree(&src, &["rev-parse", "main"]).trim().to_string();
    let dname = DeltaName::parse(&format!("{prev}-{new}")).unwrap();

    let (_, stats) = ostree_with_stderr(&src, &["static-delta", "generate", "main"]);
    let pairs = |r: BTreeSet<Rebuilt>| -> BTreeSet<(Checksum, Checksum)> {
        r.into_iter().map(|r| (r.to, r.source)).collect()
    };
    // Upstream rebuilds most of these with rollsum (its first choice when
    // half the content-defined chunks are unchanged), we with bsdiff; what
    // must agree is which old file each new one is rebuilt from.
    let theirs = pairs(rebuilt(&src, &dname));
    let repo = Repo::open(&src).unwrap();
    let st = delta::generate(&repo, &GenerateOptions::new(dname.from, dname.to)).unwrap();
    let ours = bspatches(&src, &dname);
    assert_eq!(pairs(ours.clone()), theirs);

    // same.bin, moved.bin, libfoo.so.2, grows-less.bin, .hidden.cfg and
    // private.bin are modified; all but private.bin are rebuilt from their
    // old version.
    assert!(stats.contains("modified: 6\n"), "{stats}");
    assert_eq!((st.modified, st.bsdiff), (6, 5), "{st:?}");
    let listing = listing(&src, &new);
    let name_of = |c: &Checksum| {
        let hex = object::to_hex(c);
        let line = listing.lines().find(|l| l.contains(&hex)).unwrap();
        line.rsplit('/').next().unwrap().to_string()
    };
    let names: BTreeSet<(String, String)> = ours
        .iter()
        .map(|p| (name_of(&p.to), p.source_name(&src, &prev)))
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(
            [
                (".hidden.cfg", ".hidden.cfg"),
                ("grows-less.bin", "grows-less.bin"),
                ("libfoo.so.2", "libfoo.so.1"),
                ("moved.bin", "moved.bin"),
                ("same.bin", "same.bin"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        )
    );
}

impl Rebuilt {
    /// The base name of the read source in commit `rev`.
    fn source_name(&self, repo: &Path, rev: &str) -> String {
        let hex = object::to_hex(&self.source);
        let listing = listing(repo, rev);
        let line = listing.lines().find(|l| l.contains(&hex)).unwrap();
        line.rsplit('/').next().unwrap().to_string()
    }
}

#[test]
fn bsdiff_only_when_enabled_from_a_commit_and_within_max_size() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (prev, new, big) = our_big_commits(&src, tmp.path());
    let repo = Repo::open(&src).unwrap();
    let count = |opts: &GenerateOptions| {
        let st = delta::generate(&repo, opts).unwrap();
        let show = delta::show(&repo, &st.name).unwrap();
        let real = ostree(&src, &["static-delta", "show", &st.name.to_string()]);
        let n = bspatches(&src, &st.name).len();
        assert_eq!(n, st.bsdiff);
        assert!(show.contains(&format!("bspatch={n}\n")), "{show}");
        assert!(real.contains(&format!("bspatch={n}\n")), "{real}");
        n
    };
    let mut opts = GenerateOptions::new(Some(prev), new);
    assert_eq!(count(&opts), 1);
    opts.bsdiff = false;
    assert_eq!(count(&opts), 0);
    // The limit is on old and new together.
    opts.bsdiff = true;
    opts.max_bsdiff_size = 2 * big.len() as u64;
    assert_eq!(count(&opts), 1);
    opts.max_bsdiff_size -= 1;
    assert_eq!(count(&opts), 0);
    // A delta from scratch has nothing to diff against.
    assert_eq!(count(&GenerateOptions::new(None, new)), 0);
}
