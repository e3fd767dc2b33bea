//! Tombstone commits against the real `ostree` (/usr/bin/ostree, Debian
//! package `ostree`): the same prune on two copies of one repository must
//! leave the same objects, tombstones byte for byte included, and each tool
//! must accept the other's result.

use ostree_repo::prune::{prune, PruneOptions};
use ostree_repo::Repo;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

const OSTREE: &str = "/usr/bin/ostree";

fn ostree(repo: &Path, args: &[&str]) -> String {
    assert!(Path::new(OSTREE).exists(), "{OSTREE} missing");
    let out = Command::new(OSTREE)
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file under `objects/` with its bytes.
fn objects(repo: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for d in fs::read_dir(repo.join("objects")).unwrap().flatten() {
        for f in fs::read_dir(d.path()).unwrap().flatten() {
            let name = format!(
                "{}/{}",
                d.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            out.insert(name, fs::read(f.path()).unwrap());
        }
    }
    out
}

#[test]
fn prune_leaves_the_same_tombstones_as_real_ostree() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    ostree(&a, &["init", "--mode=archive"]);
    let tree = tmp.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    for i in 0..4 {
        fs::write(tree.join("file"), format!("version {i}\n")).unwrap();
        let t = format!("--tree=dir={}", tree.display());
        ostree(&a, &["commit", "-b", "main", &t, "-s", &format!("c{i}")]);
    }
    ostree(&a, &["config", "set", "core.tombstone-commits", "true"]);
    let b = tmp.path().join("b");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap()
        .success());

    ostree(&a, &["prune", "--refs-only", "--depth=1"]);
    let repo = Repo::open(&b).unwrap();
    let st = prune(
        &repo,
        &PruneOptions {
            refs_only: true,
            depth: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(st.pruned > 0);
    let (oa, ob) = (objects(&a), objects(&b));
    assert_eq!(oa.keys().collect::<Vec<_>>(), ob.keys().collect::<Vec<_>>());
    let tombstones: Vec<_> = oa
        .keys()
        .filter(|k| k.ends_with(".tombstone-commit"))
        .collect();
    assert_eq!(tombstones.len(), 2, "{tombstones:?}");
    assert_eq!(oa, ob, "same bytes, tombstones included");

    // Each accepts the other's repository, and a second prune (ours on the
    // real tool's result) keeps tombstones: they are not prune candidates.
    ostree(&b, &["fsck"]);
    let ra = Repo::open(&a).unwrap();
    let st = prune(
        &ra,
        &PruneOptions {
            refs_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(st.pruned, 0);
    assert_eq!(objects(&a), oa);
}
