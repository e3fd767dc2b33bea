//! Collection-aware pulls from a repository the real `ostree` (Debian's
//! 2022.7, /usr/bin/ostree) made with a collection ID: commit bindings are
//! verified as upstream's `_ostree_repo_verify_bindings` does, a refused
//! commit moves no ref and publishes no object, and mirrors keep refs of
//! other collections in `refs/mirrors/`. The HTTP case is served by
//! upstream's own test web server (package `ostree-tests`).

use ostree_repo::fsck::{fsck, FsckOptions};
use ostree_repo::object::{self, Checksum, ObjectType};
use ostree_repo::pull::{pull_local, PullLocalOptions};
use ostree_repo::pull_http::{pull_http, HttpPullOptions};
use ostree_repo::{Repo, RepoMode};
use std::fs;
use std::path::Path;

mod common;
use common::{run, serve, OSTREE};

const SRC_COLLECTION: &str = "org.example.Src";

/// An archive repo of collection `org.example.Src`, written by the real
/// ostree: `good` (bound to its ref and collection), `foreign` (bound to
/// another collection) and `stolen` (a second name for `good`'s commit,
/// which its binding does not list); summary updated.
struct Source {
    path: std::path::PathBuf,
    good: Checksum,
    foreign: Checksum,
}

fn source(tmp: &Path) -> Source {
    let path = tmp.join("srv/src");
    fs::create_dir_all(&path).unwrap();
    let r = format!("--repo={}", path.display());
    let coll = format!("--collection-id={SRC_COLLECTION}");
    run(OSTREE, &[&r, "init", "--mode=archive", &coll]);
    let tree = tmp.join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/os-release"), "ID=test\n").unwrap();
    let t = format!("--tree=dir={}", tree.display());
    let hex = |s: String| object::from_hex(s.trim()).expect("commit checksum");
    let good = hex(run(OSTREE, &[&r, "commit", "-b", "good", &t, "-s", "good"]));
    let foreign = hex(run(
        OSTREE,
        &[
            &r,
            "commit",
            "-b",
            "foreign",
            &t,
            "-s",
            "foreign",
            "--add-metadata-string=ostree.collection-binding=org.example.Other",
        ],
    ));
    run(
        OSTREE,
        &[&r, "refs", "--create=stolen", &object::to_hex(&good)],
    );
    run(OSTREE, &[&r, "summary", "-u"]);
    Source {
        path,
        good,
        foreign,
    }
}

fn err_text<T: std::fmt::Debug>(r: ostree_repo::Result<T>) -> String {
    r.expect_err("the pull must be refused").to_string()
}

#[test]
fn local_pull_verifies_bindings_against_the_source_collection() {
    let tmp = tempfile::tempdir().unwrap();
    let src_info = source(tmp.path());
    let src = Repo::open(&src_info.path).unwrap();
    let dst = Repo::create(&tmp.path().join("dst"), RepoMode::BareUserOnly).unwrap();
    let opts = PullLocalOptions::default();

    pull_local(&src, &dst, &["good".into()], &opts).unwrap();
    assert_eq!(dst.read_ref(None, "good").unwrap(), Some(src_info.good));

    // Bound to another collection than the source's own.
    let e = err_text(pull_local(&src, &dst, &["foreign".into()], &opts));
    let hex = object::to_hex(&src_info.foreign);
    assert_eq!(
        e,
        format!(
            "Commit {hex}: Commit has collection ID ‘org.example.Other’ in collection binding metadata, while the remote it came from has collection ID ‘{SRC_COLLECTION}’"
        )
    );
    assert_eq!(dst.read_ref(None, "foreign").unwrap(), None);
    assert!(!dst.has_object(ObjectType::Commit, &src_info.foreign));

    // The right collection, but not the ref it was made for.
    let e = err_text(pull_local(&src, &dst, &["stolen".into()], &opts));
    assert!(
        e.ends_with("Commit has no requested ref ‘stolen’ in ref binding metadata (‘good’)"),
        "{e}"
    );
    assert_eq!(dst.read_ref(None, "stolen").unwrap(), None);

    let off = PullLocalOptions {
        disable_verify_bindings: true,
        ..Default::default()
    };
    pull_local(&src, &dst, &["foreign".into(), "stolen".into()], &off).unwrap();
    assert_eq!(
        dst.read_ref(None, "foreign").unwrap(),
        Some(src_info.foreign)
    );
    assert_eq!(dst.read_ref(None, "stolen").unwrap(), Some(src_info.good));
}

#[test]
fn http_pull_verifies_bindings_against_the_remote_collection_id() {
    let tmp = tempfile::tempdir().unwrap();
    let src_info = source(tmp.path());
    let url = format!("{}/src", serve(&tmp.path().join("srv")));
    let dst = Repo::create(&tmp.path().join("dst"), RepoMode::Archive).unwrap();
    let with_id = HttpPullOptions {
        remote: Some("origin".into()),
        collection_id: Some(SRC_COLLECTION.into()),
        ..Default::default()
    };

    pull_http(&dst, &url, &["good".into()], &with_id).unwrap();
    assert_eq!(
        dst.read_ref(Some("origin"), "good").unwrap(),
        Some(src_info.good)
    );

    let e = err_text(pull_http(&dst, &url, &["foreign".into()], &with_id));
    assert!(
        e.contains("while the remote it came from has collection ID ‘org.example.Src’"),
        "{e}"
    );
    assert_eq!(dst.read_ref(Some("origin"), "foreign").unwrap(), None);
    assert!(!dst.has_object(ObjectType::Commit, &src_info.foreign));
    // By checksum there is no ref to check, but the collection still is.
    let by_sum = [object::to_hex(&src_info.foreign)];
    let e = err_text(pull_http(&dst, &url, &by_sum, &with_id));
    assert!(
        e.contains("Commit has collection ID ‘org.example.Other’"),
        "{e}"
    );
    assert!(!dst.has_object(ObjectType::Commit, &src_info.foreign));

    // A remote without a configured collection ID checks only the ref
    // binding, as upstream.
    let without_id = HttpPullOptions {
        remote: Some("origin".into()),
        ..Default::default()
    };
    let e = err_text(pull_http(&dst, &url, &["stolen".into()], &without_id));
    assert!(e.contains("no requested ref ‘stolen’"), "{e}");
    pull_http(&dst, &url, &["foreign".into()], &without_id).unwrap();
    assert_eq!(
        dst.read_ref(Some("origin"), "foreign").unwrap(),
        Some(src_info.foreign)
    );
}

#[test]
fn mirror_pull_keeps_refs_of_another_collection_in_refs_mirrors() {
    let tmp = tempfile::tempdir().unwrap();
    let src_info = source(tmp.path());
    let src = Repo::open(&src_info.path).unwrap();
    let mirror = PullLocalOptions {
        mirror: true,
        ..Default::default()
    };

    let plain = Repo::create(&tmp.path().join("plain"), RepoMode::Archive).unwrap();
    pull_local(&src, &plain, &["good".into()], &mirror).unwrap();
    assert!(!plain.path().join("refs/heads/good").exists());
    let key = (SRC_COLLECTION.to_string(), "good".to_string());
    assert_eq!(
        plain.list_collection_refs().unwrap().get(&key),
        Some(&src_info.good)
    );

    // The destination's own collection is a local ref.
    let same = Repo::create_with(
        &tmp.path().join("same"),
        RepoMode::Archive,
        Some(SRC_COLLECTION),
    )
    .unwrap();
    pull_local(&src, &same, &["good".into()], &mirror).unwrap();
    assert_eq!(same.read_ref(None, "good").unwrap(), Some(src_info.good));
    assert!(!same
        .path()
        .join("refs/mirrors")
        .join(SRC_COLLECTION)
        .exists());
}

#[test]
fn fsck_verify_bindings_refuses_a_collection_ref_of_the_wrong_collection() {
    let tmp = tempfile::tempdir().unwrap();
    let src_info = source(tmp.path());
    let src = Repo::open(&src_info.path).unwrap();
    let dst = Repo::create(&tmp.path().join("dst"), RepoMode::Archive).unwrap();
    pull_local(&src, &dst, &["good".into()], &PullLocalOptions::default()).unwrap();
    let opts = FsckOptions {
        verify_bindings: true,
        ..Default::default()
    };
    fsck(&dst, &opts, &|_, _| {}).unwrap();

    dst.set_collection_ref("org.example.Other", "good", Some(&src_info.good))
        .unwrap();
    let e = fsck(&dst, &opts, &|_, _| {}).unwrap_err().to_string();
    assert!(
        e.ends_with("Commit has collection ID ‘org.example.Src’ in collection binding metadata, while the remote it came from has collection ID ‘org.example.Other’"),
        "{e}"
    );
    // Without the option the ref is only checked to exist.
    fsck(&dst, &FsckOptions::default(), &|_, _| {}).unwrap();
}
