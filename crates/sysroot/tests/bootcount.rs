//! Boot counting and automatic rollback, with the boot loader side played
//! by `systemd_boot_attempt` (systemd-boot's renaming and ordering rules).

mod common;

use common::*;
use std::fs;
use sysroot::bootcount::{systemd_boot_attempt, BootComplete, BootFailed};
use sysroot::{DeployOptions, Sysroot};

fn opts(tries: Option<u32>) -> DeployOptions {
    DeployOptions {
        osname: Some(OS.into()),
        refspec: Some(format!("testos:{REF}")),
        boot_tries: tries,
        ..Default::default()
    }
}

/// Powers on: the boot loader picks (and counts) an entry; returns the
/// sysroot as seen from the booted system.
fn boot(fx: &Fx) -> Sysroot {
    let e = systemd_boot_attempt(&fx.entries()).unwrap().unwrap();
    fx.load_booted(&fx.options_of(&e.file_name()))
}

#[test]
fn failing_deployment_loses_default_and_is_recorded() {
    let fx = setup();
    let v1 = fx.commit("1");
    fx.load().deploy(&v1, &opts(None)).unwrap();
    let mut sr = boot(&fx);
    assert_eq!(sr.booted_deployment().unwrap().csum, v1);
    assert_eq!(sr.boot_complete().unwrap(), BootComplete::Nothing);

    fs::write(fx.tree.join("usr/bin/sh"), "broken\n").unwrap();
    let v2 = fx.commit("2");
    sr.deploy(&v2, &opts(Some(2))).unwrap();
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos+2.conf"]
    );

    // Two attempts at v2, neither reaches boot-complete.
    let b = boot(&fx);
    assert_eq!(b.booted_deployment().unwrap().csum, v2);
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos+1-1.conf"]
    );
    let b = boot(&fx);
    assert_eq!(b.booted_deployment().unwrap().csum, v2);
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos+0-2.conf"]
    );
    assert_eq!(
        b.status().unwrap().deployments[0].boot_counter,
        Some([0, 2])
    );

    // Tries spent: the boot loader falls back to v1, whose boot completes.
    let mut b = boot(&fx);
    assert_eq!(b.booted_deployment().unwrap().csum, v1);
    match b.boot_complete().unwrap() {
        BootComplete::RolledBack { failed, default } => {
            assert_eq!(failed.csum, v2);
            assert_eq!(default.csum, v1);
        }
        other => panic!("expected rollback, got {other:?}"),
    }
    // v1 is the default in the boot configuration itself now.
    assert_eq!(b.deployments()[0].csum, v1);
    assert_eq!(b.deployments()[1].csum, v2);
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos.conf"]
    );
    let failed = b.failed_deployments().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].checksum.as_str(), failed[0].tries),
        (v2.as_str(), 2)
    );
    assert_eq!(failed[0].version.as_deref(), Some("2"));
    assert!(b.is_failed(&v2).unwrap());
    assert!(!b.is_failed(&v1).unwrap());
    let json = fs::read_to_string(fx.root.join(sysroot::bootcount::FAILURES_FILE)).unwrap();
    assert!(json.contains(&v2));
    let st = b.status().unwrap();
    assert!(st.deployments[1].failed && !st.deployments[0].failed);
    // The next power-on boots v1 without any counting.
    let again = boot(&fx);
    assert_eq!(again.booted_deployment().unwrap().csum, v1);
}

#[test]
fn successful_boot_is_marked_good_and_counter_survives_rewrites() {
    let fx = setup();
    let v1 = fx.commit("1");
    fx.load().deploy(&v1, &opts(None)).unwrap();
    let mut sr = boot(&fx);
    fs::write(fx.tree.join("usr/bin/sh"), "good\n").unwrap();
    let v2 = fx.commit("2");
    sr.deploy(&v2, &opts(Some(3))).unwrap();
    // A kargs edit before rebooting keeps the default's counter.
    sr.set_kargs(0, sysroot::KernelArgs::parse("quiet"))
        .unwrap();
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos+3.conf"]
    );

    let mut b = boot(&fx);
    assert_eq!(b.booted_deployment().unwrap().csum, v2);
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos+2-1.conf"]
    );
    // A failed health check now would reboot: the entry is on probation.
    match b.boot_failed().unwrap() {
        BootFailed::OnProbation(d) => assert_eq!(d.csum, v2),
        other => panic!("expected OnProbation, got {other:?}"),
    }
    match b.boot_complete().unwrap() {
        BootComplete::MarkedGood(d) => assert_eq!(d.csum, v2),
        other => panic!("expected MarkedGood, got {other:?}"),
    }
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos.conf"]
    );
    assert!(b.failed_deployments().unwrap().is_empty());
    // Marked good: later boots do not count.
    boot(&fx);
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos.conf"]
    );
    assert_eq!(b.boot_complete().unwrap(), BootComplete::Nothing);
    // Once marked good, a failed check has nothing to fall back to.
    match b.boot_failed().unwrap() {
        BootFailed::NotCounted(d) => assert_eq!(d.csum, v2),
        other => panic!("expected NotCounted, got {other:?}"),
    }
}

#[test]
fn tries_from_repo_config() {
    let fx = setup();
    let cfg = fx.root.join("ostree/repo/config");
    let mut c = fs::read_to_string(&cfg).unwrap();
    c.push_str("[sysroot]\nboot-counting-tries=4\n");
    fs::write(&cfg, c).unwrap();
    let v1 = fx.commit("1");
    fx.load().deploy(&v1, &opts(None)).unwrap();
    assert_eq!(fx.entry_names(), ["ostree-1-testos+4.conf"]);
    // --boot-tries 0 switches counting off for one deploy.
    fx.load().deploy(&v1, &opts(Some(0))).unwrap();
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos.conf"]
    );
    // A malformed value is reported with file, group and key.
    fs::write(
        &cfg,
        fs::read_to_string(&cfg).unwrap().replace("=4", "=four"),
    )
    .unwrap();
    let e = fx.load().deploy(&v1, &opts(None)).unwrap_err().to_string();
    assert!(
        e.contains("boot-counting-tries") && e.contains("four"),
        "{e}"
    );
}

#[test]
fn boot_complete_requires_a_booted_system() {
    let fx = setup();
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    sr.deploy(&v1, &opts(None)).unwrap();
    let e = sr.boot_complete().unwrap_err().to_string();
    assert!(e.contains("Not currently booted"), "{e}");
}
