//! Commit's scan hands files to the pool while it walks: a scan that fails
//! half-way must still leave nothing published, and the result must not
//! depend on which thread finished first.

use ostree_repo::commit::{commit, CommitOptions, TreeSource};
use ostree_repo::fsck::{fsck, FsckOptions};
use ostree_repo::{ObjectType, Repo, RepoMode};
use std::fs;
use std::path::Path;

/// 4 directories of 60 files of distinct contents and sizes.
fn make_tree(root: &Path) {
    for d in 0..4 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..60 {
            let n = d * 60 + f;
            let data: Vec<u8> = (0..(n * 997 + 1)).map(|i| (i * 31 + n) as u8).collect();
            fs::write(dir.join(format!("f{f:02}")), data).unwrap();
        }
    }
}

fn opts() -> CommitOptions {
    CommitOptions {
        branch: Some("main".into()),
        timestamp: Some(1_700_000_000),
        ..Default::default()
    }
}

#[test]
fn a_scan_that_fails_half_way_publishes_nothing_and_the_retry_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    // Sorted after d0/ and d1/: by the time the scan meets it, files are in
    // flight on the pool.
    let fifo = tree.join("d2/fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    for mode in [RepoMode::Archive, RepoMode::BareUser] {
        let path = tmp.path().join(format!("repo-{mode:?}"));
        let repo = Repo::create(&path, mode).unwrap();
        let err = commit(&repo, &[TreeSource::Dir(tree.clone())], &opts()).unwrap_err();
        assert!(
            err.to_string().contains("Unsupported file type") && err.to_string().contains("fifo"),
            "{err}"
        );
        assert_eq!(repo.resolve_rev("main", true).unwrap(), None);
        let published = repo
            .list_objects(&[ObjectType::File, ObjectType::DirTree, ObjectType::Commit])
            .unwrap();
        assert!(
            published.is_empty(),
            "{mode:?}: {} objects published",
            published.len()
        );
        let report = fsck(&repo, &FsckOptions::default(), &|_, _| {}).unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);

        fs::remove_file(&fifo).unwrap();
        let out = commit(&repo, &[TreeSource::Dir(tree.clone())], &opts()).unwrap();
        assert_eq!(repo.resolve_rev("main", true).unwrap(), Some(out.checksum));
        assert_eq!(out.content_written, 240);
        let report = fsck(&repo, &FsckOptions::default(), &|_, _| {}).unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!((report.commits, report.partial), (1, 0));
        // 240 files, 5 dirtrees, the commit and at least one dirmeta.
        assert!(report.objects >= 247, "{} objects", report.objects);
        // Put it back for the next mode.
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }
}

#[test]
fn the_same_tree_gives_the_same_commit_every_time() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    let mut seen = Vec::new();
    for i in 0..4 {
        let repo = Repo::create(&tmp.path().join(format!("r{i}")), RepoMode::BareUser).unwrap();
        let out = commit(&repo, &[TreeSource::Dir(tree.clone())], &opts()).unwrap();
        seen.push(out.checksum);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
}
