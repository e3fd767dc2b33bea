//! The progress counters of commit and local pull agree, once finished,
//! with what the operations report having done.

use ostree_repo::commit::{commit_with_progress, CommitOptions, TreeSource};
use ostree_repo::progress::{Phase, Progress};
use ostree_repo::pull::{pull_local_with_progress, PullLocalOptions};
use ostree_repo::{Repo, RepoMode};
use std::fs;
use std::path::Path;

/// 3 directories of 7 files of distinct sizes, plus a symlink; returns
/// (entries, regular file bytes).
fn make_tree(root: &Path) -> (u64, u64) {
    let mut bytes = 0;
    for d in 0..3 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..7 {
            let data = vec![(d * 7 + f) as u8; 1000 * (d * 7 + f) + 1];
            bytes += data.len() as u64;
            fs::write(dir.join(format!("f{f}")), data).unwrap();
        }
    }
    std::os::unix::fs::symlink("d0/f0", root.join("link")).unwrap();
    (22, bytes)
}

#[test]
fn counters_match_the_work_done() {
    let tmp = tempfile::tempdir().unwrap();
    let (entries, bytes) = make_tree(&tmp.path().join("tree"));
    let src = Repo::create(&tmp.path().join("src"), RepoMode::Archive).unwrap();
    let opts = CommitOptions {
        branch: Some("main".into()),
        ..Default::default()
    };
    let sources = [TreeSource::Dir(tmp.path().join("tree"))];
    let progress = Progress::default();
    let out = commit_with_progress(&src, &sources, &opts, &progress).unwrap();
    let s = progress.snapshot();
    assert_eq!(s.phase, Phase::Objects);
    assert_eq!(
        (s.scanned, s.requested, s.done),
        (entries, entries, entries)
    );
    assert_eq!(s.bytes, bytes);
    assert_eq!(out.content_written, entries);

    // The same Progress, reused: a second operation starts from zero.
    let dst = Repo::create(&tmp.path().join("dst"), RepoMode::BareUserOnly).unwrap();
    let pulled =
        pull_local_with_progress(&src, &dst, &[], &PullLocalOptions::default(), &progress).unwrap();
    let s = progress.snapshot();
    assert_eq!(s.phase, Phase::Objects);
    // One dirtree per directory: the root and d0..d2.
    assert_eq!(s.scanned, 4);
    let copied = pulled.metadata + pulled.content;
    assert_eq!((s.requested, s.done), (copied, copied));
    assert_eq!(s.bytes, pulled.content_bytes);
    assert_eq!(pulled.content_bytes, bytes);

    // Everything present: nothing requested, nothing done.
    pull_local_with_progress(&src, &dst, &[], &PullLocalOptions::default(), &progress).unwrap();
    let s = progress.snapshot();
    assert_eq!((s.scanned, s.requested, s.done, s.bytes), (4, 0, 0, 0));
}
