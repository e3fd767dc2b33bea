//! Deployment roots get the immutable attribute (`chattr +i`) unless
//! `OSTREE_SYSROOT_DEBUG=mutable-deployments`. A separate test binary, so
//! the process-wide setting of the other tests does not apply.

mod common;

use common::*;
use std::fs;
use std::process::Command;
use sysroot::DeployOptions;

fn chattr(flag: &str, p: &std::path::Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(p)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn deployments_are_immutable_and_still_collectable() {
    std::env::set_var("SYSROOT_TEST_IMMUTABLE", "1");
    std::env::remove_var("OSTREE_SYSROOT_DEBUG");
    let fx = setup();
    let probe = fx.tmp.path().join("probe");
    fs::create_dir(&probe).unwrap();
    let supported = chattr("+i", &probe);
    chattr("-i", &probe);
    let v1 = fx.commit("1");
    let o = DeployOptions {
        osname: Some(OS.into()),
        ..Default::default()
    };
    let mut sr = fx.load();
    let first = sr.deploy(&v1, &o).unwrap();
    let second = sr.deploy(&v1, &o).unwrap();
    let dir = fx.root.join(second.relpath());
    // /etc stays writable: the attribute covers the top directory only.
    fs::write(dir.join("etc/local.conf"), "x\n").unwrap();
    let top = fs::write(dir.join("stray-file"), "x");
    if supported {
        let e = top.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    } else {
        eprintln!(
            "filesystem under {} has no attributes; only removal is checked",
            fx.tmp.path().display()
        );
    }
    // Undeploy and cleanup clear the attribute before removing.
    sr.undeploy(1).unwrap();
    assert!(!fx.root.join(first.relpath()).exists());
    sr.undeploy(0).unwrap();
    assert!(!dir.exists());
}
