//! HTTP pull against archive repositories written by the real `ostree`
//! (/usr/bin/ostree, Debian package `ostree`) and served by upstream's own
//! test web server (`ostree-trivial-httpd`, Debian package `ostree-tests`).
//! Both are required: a silent skip would hide breakage.

use ostree_repo::pull_http::{pull_http, HttpPullOptions};
use ostree_repo::{Repo, RepoMode};
use std::fs;
use std::path::Path;
use std::process::Command;

mod common;
use common::{noise, run, serve, OSTREE};

/// A source tree with a nested directory, an executable, a symlink, an
/// empty file, a file large enough to span several deflate blocks and an
/// incompressible one.
fn make_tree(root: &Path, variant: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc/empty.d")).unwrap();
    fs::write(
        root.join("usr/bin/tool"),
        format!("#!/bin/sh\necho {variant}\n"),
    )
    .unwrap();
    fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("etc/os-release"), format!("ID={variant}\n")).unwrap();
    fs::write(root.join("etc/empty"), b"").unwrap();
    let big: Vec<u8> = (0..300_000u32)
        .flat_map(|i| (i * 7919).to_le_bytes())
        .collect();
    fs::write(root.join("usr/big.bin"), big).unwrap();
    // Incompressible and over 1 MiB: the puller spools such bodies to a
    // temp file instead of holding them in memory.
    fs::write(root.join("usr/noise.bin"), noise(3 << 20, 7)).unwrap();
    std::os::unix::fs::symlink("bin/tool", root.join("usr/tool-link")).unwrap();
}

/// An archive repo committed by the real ostree with two commits on `main`
/// and one on `other`, served over HTTP.
fn served_repo(tmp: &Path) -> (String, String) {
    let srv = tmp.join("srv");
    let repo = srv.join("repo");
    let r = format!("--repo={}", repo.display());
    fs::create_dir_all(&repo).unwrap();
    run(OSTREE, &[&r, "init", "--mode=archive"]);
    for (i, (branch, variant)) in [("main", "one"), ("main", "two"), ("other", "three")]
        .iter()
        .enumerate()
    {
        let t = tmp.join(format!("tree{i}"));
        make_tree(&t, variant);
        let tree = format!("--tree=dir={}", t.display());
        run(OSTREE, &[&r, "commit", "-b", branch, &tree, "-s", variant]);
    }
    let url = serve(&srv);
    (format!("{url}/repo"), repo.display().to_string())
}

fn checkout_listing(repo: &str, rev: &str, dest: &Path) -> String {
    let r = format!("--repo={repo}");
    run(OSTREE, &[&r, "checkout", "-U", rev, dest.to_str().unwrap()]);
    let out = Command::new("find")
        .arg(".")
        .args(["-printf", "%p %y %m %s %l\n"])
        .current_dir(dest)
        .output()
        .unwrap();
    let mut lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    lines.sort();
    lines.join("\n")
}

#[test]
fn pull_from_real_archive_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, src) = served_repo(tmp.path());
    let dst_path = tmp.path().join("dst");
    let dst = Repo::create(&dst_path, RepoMode::BareUserOnly).unwrap();
    let opts = HttpPullOptions {
        depth: -1,
        remote: Some("origin".into()),
        ..Default::default()
    };
    // No summary on the server: refs come from refs/heads/.
    let stats = pull_http(&dst, &url, &["main".into()], &opts).unwrap();
    assert!(
        stats.written.content > 0 && stats.written.metadata > 0,
        "{stats:?}"
    );
    assert_eq!(stats.fetched_content, stats.written.content);
    let line = stats.status_line(0).unwrap();
    assert!(
        line.contains(" content objects fetched; ") && line.ends_with(" content written"),
        "{line}"
    );
    let head = run(OSTREE, &[&format!("--repo={src}"), "rev-parse", "main"]);
    let got = dst.read_ref(Some("origin"), "main").unwrap().unwrap();
    assert_eq!(ostree_repo::object::to_hex(&got), head.trim());
    // --depth=-1 brought the parent too.
    let parent = run(OSTREE, &[&format!("--repo={src}"), "rev-parse", "main^"]);
    assert!(dst.resolve_rev(parent.trim(), false).is_ok());
    assert!(!dst_path
        .join(format!("state/{}.commitpartial", head.trim()))
        .exists());

    // A ref the commit was not made for is refused (ref binding).
    fs::write(Path::new(&src).join("refs/heads/evil"), &head).unwrap();
    let err = pull_http(&dst, &url, &["evil".into()], &opts).unwrap_err();
    assert!(
        err.to_string()
            .contains("Commit has no requested ref ‘evil’ in ref binding metadata (‘main’)"),
        "{err}"
    );
    assert!(dst.read_ref(Some("origin"), "evil").unwrap().is_none());
    fs::remove_file(Path::new(&src).join("refs/heads/evil")).unwrap();

    // With a summary, pulling everything also brings `other`; objects
    // already present are not fetched again.
    run(OSTREE, &[&format!("--repo={src}"), "summary", "-u"]);
    let stats = pull_http(&dst, &url, &[], &opts).unwrap();
    assert!(dst.read_ref(Some("origin"), "other").unwrap().is_some());
    // Only the two files that differ in `other` (tool, os-release) are new.
    assert_eq!(
        stats.written.content, 2,
        "unchanged files were re-fetched: {stats:?}"
    );

    let d = dst_path.display().to_string();
    let fsck = run(OSTREE, &[&format!("--repo={d}"), "fsck"]);
    assert!(fsck.contains("no errors found"), "{fsck}");
    for rev in ["main", "other"] {
        let ours = checkout_listing(
            &d,
            &format!("origin:{rev}"),
            &tmp.path().join(format!("co-ours-{rev}")),
        );
        let theirs = checkout_listing(&src, rev, &tmp.path().join(format!("co-theirs-{rev}")));
        assert_eq!(ours, theirs);
        let diff = Command::new("diff")
            .arg("-r")
            .arg("--no-dereference")
            .arg(tmp.path().join(format!("co-ours-{rev}")))
            .arg(tmp.path().join(format!("co-theirs-{rev}")))
            .status()
            .unwrap();
        assert!(diff.success());
    }
}

/// Whether `p` is the root dirtree of `rev` in the repo at `src`.
fn tree_of(p: &Path, src: &str, rev: &str) -> bool {
    let show = run(
        OSTREE,
        &[&format!("--repo={src}"), "ls", "-C", "-d", rev, "/"],
    );
    let hex: String = p
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
        + p.file_stem().unwrap().to_str().unwrap();
    show.contains(&hex)
}

#[test]
fn corrupted_object_fails_and_moves_no_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, src) = served_repo(tmp.path());
    // Flip a byte in the middle of the biggest .filez: the stream still
    // inflates (or fails to), but its checksum cannot match.
    let mut biggest = (0, std::path::PathBuf::new());
    for d in fs::read_dir(Path::new(&src).join("objects")).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let len = fs::metadata(&p).unwrap().len();
            if p.extension().is_some_and(|e| e == "filez") && len > biggest.0 {
                biggest = (len, p);
            }
        }
    }
    let pristine_big = fs::read(&biggest.1).unwrap();
    let mut bytes = pristine_big.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&biggest.1, bytes).unwrap();

    let dst_path = tmp.path().join("dst");
    let dst = Repo::create(&dst_path, RepoMode::Archive).unwrap();
    let opts = HttpPullOptions {
        remote: Some("origin".into()),
        ..Default::default()
    };
    let err = pull_http(&dst, &url, &["main".into()], &opts).unwrap_err();
    assert!(err.to_string().contains("Corrupted file object"), "{err}");
    assert!(dst.read_ref(Some("origin"), "main").unwrap().is_none());
    assert!(dst.list_refs(None).unwrap().is_empty());
    // The corrupt object was never published.
    let rel = biggest.1.strip_prefix(&src).unwrap();
    assert!(!dst_path.join(rel).exists());

    // A well-formed object served under another object's name: the stream
    // decodes fine, only the checksum can catch it.
    let other = fs::read_dir(Path::new(&src).join("objects"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "filez") && *p != biggest.1)
        .unwrap();
    fs::copy(&other, &biggest.1).unwrap();
    let err = pull_http(&dst, &url, &["main".into()], &opts).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Corrupted file object; checksum expected="),
        "{err}"
    );
    assert!(dst.list_refs(None).unwrap().is_empty());

    // A corrupted dirtree is refused before anything below it is fetched.
    let dirtree = fs::read_dir(Path::new(&src).join("objects"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "dirtree") && tree_of(p, &src, "main"))
        .unwrap();
    let pristine_tree = fs::read(&dirtree).unwrap();
    let mut bytes = pristine_tree.clone();
    bytes.push(0);
    fs::write(&dirtree, bytes).unwrap();
    let err = pull_http(&dst, &url, &["main".into(), "other".into()], &opts).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Corrupted dirtree object; checksum expected="),
        "{err}"
    );
    assert!(dst.list_refs(None).unwrap().is_empty());

    // Once the server is repaired, a retry in the same process completes:
    // leftovers of the failed transactions are neither trusted nor needed.
    fs::write(&biggest.1, pristine_big).unwrap();
    fs::write(&dirtree, pristine_tree).unwrap();
    pull_http(&dst, &url, &["main".into(), "other".into()], &opts).unwrap();
    let fsck = run(OSTREE, &[&format!("--repo={}", dst_path.display()), "fsck"]);
    assert!(fsck.contains("no errors found"), "{fsck}");
    assert_eq!(dst.list_refs(None).unwrap().len(), 2);
}

/// Commits `a/x/f1`, `b/f2` and `c/d/f3` (whose content is `variant`) to
/// `main` of the archive repo at `repo` with the real ostree.
fn commit_nested(tmp: &Path, repo: &Path, variant: &str) {
    let t = tmp.join(format!("nested-{variant}"));
    for (p, body) in [("a/x/f1", "one"), ("b/f2", "two"), ("c/d/f3", variant)] {
        fs::create_dir_all(t.join(p).parent().unwrap()).unwrap();
        fs::write(t.join(p), body).unwrap();
    }
    let r = format!("--repo={}", repo.display());
    let tree = format!("--tree=dir={}", t.display());
    run(OSTREE, &[&r, "commit", "-b", "main", &tree, "-s", variant]);
}

#[test]
fn update_fetches_only_what_changed_unless_a_commit_is_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = tmp.path().join("srv");
    let src = srv.join("repo");
    fs::create_dir_all(&src).unwrap();
    run(
        OSTREE,
        &[
            &format!("--repo={}", src.display()),
            "init",
            "--mode=archive",
        ],
    );
    let url = format!("{}/repo", serve(&srv));
    let dst_path = tmp.path().join("dst");
    let dst = Repo::create(&dst_path, RepoMode::BareUser).unwrap();
    let opts = HttpPullOptions {
        remote: Some("origin".into()),
        ..Default::default()
    };
    commit_nested(tmp.path(), &src, "A");
    pull_http(&dst, &url, &["main".into()], &opts).unwrap();

    // Only c/d/f3 changed: the commit, the dirtrees of /, c and c/d and the
    // one file are fetched.
    commit_nested(tmp.path(), &src, "B");
    let stats = pull_http(&dst, &url, &["main".into()], &opts).unwrap();
    assert_eq!(
        (stats.fetched_metadata, stats.fetched_content),
        (4, 1),
        "{stats:?}"
    );
    let b = dst.read_ref(Some("origin"), "main").unwrap().unwrap();

    // An object lost from a stored subtree: once fsck has marked the commit
    // partial, the next pull walks stored subtrees again and repairs it.
    let f1 = dst
        .list_objects(&[ostree_repo::object::ObjectType::File])
        .unwrap()
        .into_iter()
        .map(|(c, _)| c)
        .find(|c| {
            let p = dst.object_path(ostree_repo::object::ObjectType::File, c);
            fs::read(p).is_ok_and(|body| body == b"one")
        })
        .expect("a/x/f1 stored as a plain file");
    fs::remove_file(dst.object_path(ostree_repo::object::ObjectType::File, &f1)).unwrap();
    let report =
        ostree_repo::fsck::fsck(&dst, &Default::default(), &|_: usize, _: usize| ()).unwrap();
    // Commit A shares a/x/f1, so it is marked partial too.
    assert_eq!(report.marked_partial.len(), 2);
    assert!(report.marked_partial.contains(&b));
    commit_nested(tmp.path(), &src, "C");
    let stats = pull_http(&dst, &url, &["main".into()], &opts).unwrap();
    assert_eq!(
        (stats.fetched_metadata, stats.fetched_content),
        (4, 2),
        "{stats:?}"
    );
    // The partial commits complete when pulled again.
    let partial: Vec<String> = report
        .marked_partial
        .iter()
        .map(ostree_repo::object::to_hex)
        .collect();
    pull_http(&dst, &url, &partial, &opts).unwrap();
    for c in &partial {
        assert!(!dst_path.join(format!("state/{c}.commitpartial")).exists());
    }
    let fsck = run(OSTREE, &[&format!("--repo={}", dst_path.display()), "fsck"]);
    assert!(fsck.contains("no errors found"), "{fsck}");
}
