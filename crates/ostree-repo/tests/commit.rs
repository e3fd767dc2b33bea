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

/// Waits until files changed so far are older than the stat cache's racy
/// margin, so that their checksums may be remembered.
fn age_past_racy_margin() {
    std::thread::sleep(std::time::Duration::from_millis(2300));
}

/// Commits `tree` without a parent, so the same tree gives the same commit.
fn commit_tree(repo: &Repo, tree: &Path) -> ostree_repo::commit::CommitOutcome {
    let o = CommitOptions {
        parent: Some(None),
        ..opts()
    };
    commit(repo, &[TreeSource::Dir(tree.to_path_buf())], &o).unwrap()
}

#[test]
fn the_stat_cache_skips_unchanged_files_and_sees_every_change() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    fs::write(tree.join("d0/empty"), b"").unwrap();
    std::os::unix::fs::symlink("f00", tree.join("d0/link")).unwrap();
    // Regular files and the symlink.
    let nfiles = 4 * 60 + 2;
    let cached = ostree_repo::commit::stat_cache_applies(tmp.path());
    // Hits are only expected where the cache is used at all; the checksums
    // must be right everywhere.
    let hits = |n: u64| if cached { n } else { 0 };
    age_past_racy_margin();
    let repo = Repo::create(&tmp.path().join("repo"), RepoMode::BareUser).unwrap();
    let cold = commit_tree(&repo, &tree);
    assert_eq!(cold.stat_cache_hits, 0);
    let warm = commit_tree(&repo, &tree);
    assert_eq!(warm.checksum, cold.checksum);
    assert_eq!(warm.stat_cache_hits, hits(nfiles));

    // Same size, mtime put back: only ctime tells. Then a mode change, an
    // owner-visible change that leaves the content alone.
    let a = tree.join("d1/f07");
    let old = fs::metadata(&a).unwrap();
    let mut data = fs::read(&a).unwrap();
    data[0] ^= 0xff;
    fs::write(&a, &data).unwrap();
    fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(old.modified().unwrap())
        .unwrap();
    assert_eq!(
        fs::metadata(&a).unwrap().modified().unwrap(),
        old.modified().unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tree.join("d2/f03"), fs::Permissions::from_mode(0o600)).unwrap();
    // A symlink pointing elsewhere, same target length.
    fs::remove_file(tree.join("d0/link")).unwrap();
    std::os::unix::fs::symlink("f01", tree.join("d0/link")).unwrap();
    age_past_racy_margin();
    let changed = commit_tree(&repo, &tree);
    let fresh = Repo::create(&tmp.path().join("fresh"), RepoMode::BareUser).unwrap();
    let expected = commit_tree(&fresh, &tree);
    assert_eq!(expected.stat_cache_hits, 0);
    assert_eq!(changed.checksum, expected.checksum);
    assert_ne!(changed.checksum, cold.checksum);
    assert_eq!(changed.stat_cache_hits, hits(nfiles - 3));
    let again = commit_tree(&repo, &tree);
    assert_eq!(again.checksum, expected.checksum);
    assert_eq!(again.stat_cache_hits, hits(nfiles));

    // A remembered object that is gone (pruned) is read and written again.
    let tree_obj = ostree_repo::commit::checksum_path(&tree.join("d3/f10"), false).unwrap();
    fs::remove_file(repo.object_path(ObjectType::File, &tree_obj)).unwrap();
    let repaired = commit_tree(&repo, &tree);
    assert_eq!(repaired.checksum, expected.checksum);
    assert_eq!(repaired.stat_cache_hits, hits(nfiles - 1));
    assert!(repo.has_object(ObjectType::File, &tree_obj));
    let report = fsck(&repo, &FsckOptions::default(), &|_, _| {}).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    // A damaged cache file is ignored, not believed.
    let cache = tmp
        .path()
        .join("repo/tmp/cache/ferrocore-commit-stat-cache");
    assert_eq!(cache.exists(), cached);
    if cached {
        let mut b = fs::read(&cache).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        fs::write(&cache, b).unwrap();
        let after = commit_tree(&repo, &tree);
        assert_eq!(after.checksum, expected.checksum);
        assert_eq!(after.stat_cache_hits, 0);
    }
}

#[test]
fn files_changed_just_before_the_commit_are_not_remembered() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    let repo = Repo::create(&tmp.path().join("repo"), RepoMode::Archive).unwrap();
    let first = commit_tree(&repo, &tree);
    // Within the coarse clock's tick a second change could keep the ctime
    // the first commit saw; so nothing that recent was remembered.
    let second = commit_tree(&repo, &tree);
    assert_eq!(second.checksum, first.checksum);
    assert_eq!(second.stat_cache_hits, 0);
}

#[test]
fn the_stat_cache_is_keyed_by_what_the_modifiers_make_of_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_tree(&tree);
    age_past_racy_margin();
    let cached = ostree_repo::commit::stat_cache_applies(tmp.path());
    let repo = Repo::create(&tmp.path().join("repo"), RepoMode::BareUser).unwrap();
    commit_tree(&repo, &tree);
    // Other ownership, or the file's xattrs dropped: other objects, so the
    // plain commit's entries must not answer. When the files already are
    // root's with mode 0644, the last two variants make the same objects
    // of them, so the second one's entries answer the third. Each
    // result must equal a commit with the same options into a fresh repo.
    let md = fs::metadata(tree.join("d0/f00")).unwrap();
    use std::os::unix::fs::MetadataExt;
    let canonical_already = (md.uid(), md.gid(), md.mode() & 0o7777) == (0, 0, 0o644);
    let hits_on_first_try = [0, 0, if canonical_already { 240 } else { 0 }];
    let variants = [
        CommitOptions {
            owner_uid: Some(1234),
            ..opts()
        },
        CommitOptions {
            canonical_permissions: true,
            ..opts()
        },
        CommitOptions {
            mode_ro_executables: true,
            no_xattrs: true,
            ..opts()
        },
    ];
    for (i, o) in variants.into_iter().enumerate() {
        let o = CommitOptions {
            parent: Some(None),
            ..o
        };
        let src = [TreeSource::Dir(tree.clone())];
        let first = commit(&repo, &src, &o).unwrap();
        let fresh =
            Repo::create(&tmp.path().join(format!("fresh{i}")), RepoMode::BareUser).unwrap();
        let expected = commit(&fresh, &src, &o).unwrap();
        assert_eq!(first.checksum, expected.checksum, "variant {i}");
        let again = commit(&repo, &src, &o).unwrap();
        assert_eq!(again.checksum, expected.checksum, "variant {i}");
        if cached {
            assert_eq!(first.stat_cache_hits, hits_on_first_try[i], "variant {i}");
            assert_eq!(again.stat_cache_hits, 240, "variant {i}");
        }
    }
}
