//! prepare-root in a private mount namespace: the test binary re-executes
//! itself under `unshare -m` to run the (ignored) child test, which
//! prepares the root, switches into it and checks the result from inside.
//! Needs root (CAP_SYS_ADMIN) and util-linux `unshare`.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use sysroot::prepare_root::{prepare_root, switch_root, PrepareRootOptions};
use sysroot::DeployOptions;

const ENV: &str = "SYSROOT_PREPARE_ROOT_CHILD";

#[test]
fn prepare_root_in_mount_namespace() {
    // SAFETY: no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (mount namespaces)"
    );
    let fx = setup();
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    let d = sr
        .deploy(
            &v1,
            &DeployOptions {
                osname: Some(OS.into()),
                karg_replace: vec!["rw".into()],
                ..Default::default()
            },
        )
        .unwrap();
    let dir = fx.root.join(d.relpath());
    fs::write(dir.join("marker"), v1.as_bytes()).unwrap();
    let cmdline = format!(
        "BOOT_IMAGE=/vmlinuz {}",
        fx.options_of("ostree-1-testos.conf")
    );
    fs::write(fx.tmp.path().join("cmdline"), &cmdline).unwrap();

    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(&exe)
        .args([
            "--ignored",
            "--exact",
            "child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, fx.tmp.path())
        .output()
        .expect("running unshare (util-linux)");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{log}");
    assert!(log.contains("1 passed"), "child did not run:\n{log}");
    // Writes to /var landed in the stateroot's shared var, /etc in the
    // deployment; nothing leaked into the host's mount table.
    let var = fx.root.join("ostree/deploy/testos/var/written-in-child");
    assert_eq!(fs::read_to_string(var).unwrap(), "var");
    assert_eq!(
        fs::read_to_string(dir.join("etc/written-in-child")).unwrap(),
        "etc"
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&fx.root.to_string_lossy().to_string()));
}

/// Runs inside the namespace only (spawned by the test above).
#[test]
#[ignore = "spawned by prepare_root_in_mount_namespace inside unshare -m"]
fn child() {
    let base = std::path::PathBuf::from(std::env::var_os(ENV).expect("run via the parent test"));
    let sysroot = base.join("sysroot");
    let cmdline = fs::read_to_string(base.join("cmdline")).unwrap();
    let run = base.join("run");
    fs::create_dir_all(&run).unwrap();
    let p = prepare_root(&PrepareRootOptions {
        sysroot: sysroot.clone(),
        cmdline: Some(cmdline),
        run_dir: Some(run.clone()),
    })
    .unwrap();
    assert!(run.join("ostree-booted").exists());
    let csum = p
        .deployment
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split('.')
        .next()
        .unwrap()
        .to_string();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let usr_mp = format!("{}/usr", fs::canonicalize(&sysroot).unwrap().display());
    switch_root(&sysroot).unwrap();

    // `/` is the deployment.
    assert_eq!(fs::read_to_string("/marker").unwrap(), csum);
    assert!(fs::read_to_string("/etc/os-release")
        .unwrap()
        .contains("TestOS"));
    assert_eq!(
        fs::read_to_string("/usr/bin/sh").unwrap(),
        "an executable\n"
    );
    // `/usr` is read-only.
    let e = fs::write("/usr/bin/new", "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    // `/etc` and `/var` are writable; `/var` is the stateroot's.
    fs::write("/etc/written-in-child", "etc").unwrap();
    fs::write("/var/written-in-child", "var").unwrap();
    assert!(Path::new("/sysroot/ostree/deploy/testos/var/written-in-child").exists());
    // The physical root is reachable at /sysroot.
    assert!(Path::new("/sysroot/ostree/repo/config").is_file());
    assert!(Path::new("/sysroot/boot/loader/entries/ostree-1-testos.conf").is_file());
    // Mount table as seen before the switch (no /proc inside the new root).
    let usr = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(usr_mp.as_str()))
        .unwrap_or_else(|| panic!("{usr_mp} is not a mount point:\n{mounts}"));
    assert!(
        usr.split(' ').nth(5).unwrap().split(',').any(|o| o == "ro"),
        "{usr}"
    );
}
