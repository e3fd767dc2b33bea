//! The deploy → rollback → cleanup → pin cycle on a loop-mounted ext4 disk
//! image with a separate ext4 `/boot` (so kernels are copied across
//! filesystems, as on a real disk). Runs in a private mount namespace
//! (`unshare -m`); needs root, util-linux and e2fsprogs.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use sysroot::{BootedSource, DeployOptions, Sysroot};

const ENV: &str = "SYSROOT_EXT4_CHILD";

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cycles_on_loop_mounted_ext4() {
    // SAFETY: no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (loop mounts)"
    );
    let t = tempfile::tempdir().unwrap();
    for (img, size) in [("root.img", "160M"), ("boot.img", "32M")] {
        let p = t.path().join(img);
        run("truncate", &["-s", size, p.to_str().unwrap()]);
        run("mkfs.ext4", &["-q", "-F", p.to_str().unwrap()]);
    }
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
        .env(ENV, t.path())
        .output()
        .expect("running unshare (util-linux)");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{log}");
    assert!(log.contains("1 passed"), "child did not run:\n{log}");
}

fn mount_images(base: &Path) -> std::path::PathBuf {
    let mnt = base.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    run(
        "mount",
        &[
            "-o",
            "loop",
            base.join("root.img").to_str().unwrap(),
            mnt.to_str().unwrap(),
        ],
    );
    fs::create_dir_all(mnt.join("boot")).unwrap();
    let boot = mnt.join("boot");
    run(
        "mount",
        &[
            "-o",
            "loop",
            base.join("boot.img").to_str().unwrap(),
            boot.to_str().unwrap(),
        ],
    );
    mnt
}

#[test]
#[ignore = "spawned by cycles_on_loop_mounted_ext4 inside unshare -m"]
fn child() {
    let base = std::path::PathBuf::from(std::env::var_os(ENV).expect("run via the parent test"));
    let mnt = mount_images(&base);
    let tmp = tempfile::Builder::new().tempdir_in(&base).unwrap();
    // Build the sysroot on the image: the fixture's tree lives beside it.
    let fx = setup_in(tmp);
    // Move the fresh sysroot onto the image root.
    for e in fs::read_dir(&fx.root).unwrap() {
        let e = e.unwrap();
        let dest = mnt.join(e.file_name());
        if e.file_name() == "boot" {
            continue;
        }
        run(
            "cp",
            &["-a", e.path().to_str().unwrap(), dest.to_str().unwrap()],
        );
    }
    let root = mnt.clone();
    let load = || Sysroot::load_with(&root, BootedSource::None).unwrap();
    let commit = |v: &str| {
        let repo = ostree_repo::Repo::open(&root.join("ostree/repo")).unwrap();
        let opts = ostree_repo::commit::CommitOptions {
            branch: Some(REF.into()),
            metadata: vec![(
                "version".into(),
                ostree_repo::gvariant::Value::Str(v.into()),
            )],
            bootable: true,
            ..Default::default()
        };
        ostree_repo::object::to_hex(
            &ostree_repo::commit::commit_dirs(&repo, std::slice::from_ref(&fx.tree), &opts)
                .unwrap(),
        )
    };
    let o = DeployOptions {
        osname: Some(OS.into()),
        refspec: Some(REF.into()),
        karg_replace: vec!["root=LABEL=root".into()],
        ..Default::default()
    };
    let v1 = commit("1");
    fs::write(fx.tree.join("usr/bin/sh"), "v2\n").unwrap();
    fs::write(fx.tree.join("usr/lib/modules/3.6.0/vmlinuz"), "kernel 2\n").unwrap();
    let v2 = commit("2");
    let mut sr = load();
    sr.deploy(&v1, &o).unwrap();
    sr.deploy(&v2, &o).unwrap();
    let csums = |sr: &Sysroot| {
        sr.deployments()
            .iter()
            .map(|d| d.csum.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(csums(&sr), [v2.clone(), v1.clone()]);
    // Two kernels, copied onto the separate /boot filesystem.
    let kdirs = fs::read_dir(mnt.join("boot/ostree")).unwrap().count();
    assert_eq!(kdirs, 2);
    sr.rollback().unwrap();
    assert_eq!(csums(&sr), [v1.clone(), v2.clone()]);
    sr.set_pinned(1, true).unwrap();
    sr.deploy(&v1, &o).unwrap();
    assert_eq!(csums(&sr), [v1.clone(), v1.clone(), v2.clone()]);
    sr.set_pinned(2, false).unwrap();
    sr.undeploy(2).unwrap();
    sr.cleanup().unwrap();
    assert_eq!(csums(&sr), [v1.clone(), v1.clone()]);
    assert_eq!(fs::read_dir(mnt.join("boot/ostree")).unwrap().count(), 1);
    let entries = fs::read_link(mnt.join("boot/loader")).unwrap();
    assert!(mnt
        .join("boot")
        .join(entries)
        .join("entries/ostree-2-testos.conf")
        .is_file());
    // The real sysroot on disk loads cleanly after remounting.
    run("umount", &[mnt.join("boot").to_str().unwrap()]);
    run("umount", &[mnt.to_str().unwrap()]);
    let mnt = mount_images(&base);
    let sr = Sysroot::load_with(&mnt, BootedSource::None).unwrap();
    assert_eq!(sr.deployments().len(), 2);
    assert!(sr.deployments().iter().all(|d| d.csum == v1));
}
