//! Side by side with the real Ignition 2.14 (Debian package `ignition`, run by
//! `shared/peers/run-real-ignition.sh`): every config under `tests/peer/` and
//! `shared/fixtures/ignition-peer/` is applied by both to identically seeded
//! roots, and the resulting trees must match (paths, kinds, modes, owners,
//! contents, link targets), with the recipe's masks.
//!
//! Needs root, the `ignition`, `passwd` and `systemd` packages, and
//! `python3-gi` (the D-Bus stand-in for template instances).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const OWN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer");

fn configs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in [
        PathBuf::from(OWN),
        Path::new(common::SHARED).join("fixtures/ignition-peer"),
    ] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "ign") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn prepare(root: &Path, cfg: &Path) {
    common::seed(root);
    let setup = cfg.with_extension("setup.sh");
    if setup.exists() {
        let st = Command::new("sh").arg(&setup).arg(root).status().unwrap();
        assert!(st.success(), "setup {} failed", setup.display());
    }
}

fn run_peer(cfg: &Path, root: &Path) -> (bool, String) {
    let script = Path::new(common::SHARED).join("peers/run-real-ignition.sh");
    let needs_bus = std::fs::read_to_string(cfg).unwrap().contains("@");
    let out = Command::new("sh")
        .arg(&script)
        .arg(cfg)
        .arg(root)
        .env("LIST", "0")
        .env("FAKE_BUS", if needs_bus { "1" } else { "" })
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn same_tree_as_real_ignition() {
    common::require_root();
    let bin = "/usr/lib/dracut/modules.d/30ignition/ignition";
    assert!(
        Path::new(bin).exists(),
        "the real Ignition is missing: apt-get install ignition"
    );
    let cfgs = configs();
    let succeeding = cfgs
        .iter()
        .filter(|c| {
            !c.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("fail-")
        })
        .count();
    assert!(
        succeeding >= 25,
        "only {succeeding} succeeding peer configs"
    );
    let mut failures = Vec::new();
    for cfg in &cfgs {
        let name = cfg.file_name().unwrap().to_string_lossy().into_owned();
        let t = tempfile::tempdir().unwrap();
        let (ours, peer) = (t.path().join("ours"), t.path().join("peer"));
        prepare(&ours, cfg);
        prepare(&peer, cfg);
        let (peer_ok, peer_err) = run_peer(cfg, &peer);
        let opts = common::options(&ours, cfg, &t.path().join("work"));
        let res = ignition_engine::run(&opts);
        // `fail-*` configs must fail in both (and leave the same partial tree),
        // all others must succeed in both.
        let expect_ok = !name.starts_with("fail-");
        if peer_ok != expect_ok || res.is_ok() != expect_ok {
            failures.push(format!(
                "{name}: peer ok={peer_ok} ours={res:?}\n  peer stderr: {peer_err}"
            ));
            continue;
        }
        let d = common::diff(&common::snapshot(&ours), &common::snapshot(&peer));
        if !d.is_empty() {
            failures.push(format!("{name}:\n  {}", d.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} configs differ:\n{}",
        failures.len(),
        cfgs.len(),
        failures.join("\n")
    );
}
