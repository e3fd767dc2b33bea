//! Static deltas against the real `ostree` (/usr/bin/ostree, Debian package
//! `ostree`; HTTP via `ostree-trivial-httpd` from `ostree-tests`), both
//! ways: deltas the real tool generates (with bsdiff ops) applied by us, and
//! ours applied by it; offline and over HTTP. Over HTTP the loose objects
//! that only the delta carries are deleted from the server first, so a pull
//! can only succeed through the delta.

use ostree_repo::delta::{self, DeltaName, GenerateOptions};
use ostree_repo::object::{self, ObjectType};
use ostree_repo::pull_http::{pull_http, HttpPullOptions};
use ostree_repo::{Repo, RepoMode};
use std::fs;
use std::path::Path;

mod common;
use common::{run, HTTPD, OSTREE};

fn ostree(repo: &Path, args: &[&str]) -> String {
    let r = format!("--repo={}", repo.display());
    let mut a = vec![r.as_str()];
    a.extend_from_slice(args);
    run(OSTREE, &a)
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
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

/// Serves `dir` on 127.0.0.1, logging requests to `dir/httpd.log`; the
/// server exits once `dir` is deleted (`--autoexit`).
fn serve(dir: &Path) -> String {
    let portfile = dir.join("httpd-port");
    let log = dir.join("httpd.log");
    run(
        HTTPD,
        &[
            "--autoexit",
            "--daemonize",
            "-p",
            portfile.to_str().unwrap(),
            "--log-file",
            log.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    let port = fs::read_to_string(&portfile).expect("port file");
    format!("http://127.0.0.1:{}", port.trim())
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
    delta::generate(&repo, &opts_gen).unwrap();
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
