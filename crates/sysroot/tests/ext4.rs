//! The deployment scenarios of tests/deploy.rs on loop-mounted ext4 disk
//! images: the sysroot is the root of one filesystem and `/boot` a second
//! one, as on a real disk, so kernels are copied across filesystems and
//! `/boot` really goes through `FIFREEZE`/`FITHAW`. Afterwards the real
//! `ostree admin status` must print what ours prints, and `e2fsck -fn` must
//! find both unmounted filesystems clean.
//!
//! Needs root, loop devices, util-linux (`losetup`, `mount`), e2fsprogs
//! and the Debian `ostree` package; without them the tests fail rather
//! than skip, so a CI machine lacking them cannot pass silently.

mod common;

use common::scenarios;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd} (util-linux/e2fsprogs/ostree installed?): {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Two sparse ext4 images attached to loop devices and mounted at
/// `mnt` (sysroot) and `mnt/boot`. Dropping it unmounts and detaches
/// everything, also when a scenario panics.
struct Disk {
    dir: tempfile::TempDir,
    loops: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Disk {
    fn new() -> Disk {
        // SAFETY: no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "the ext4 tests need root for losetup and mount");
        assert!(
            Path::new("/dev/loop-control").exists(),
            "the ext4 tests need loop devices (/dev/loop-control is missing)"
        );
        let mut d = Disk {
            dir: tempfile::tempdir().unwrap(),
            loops: Vec::new(),
            mounts: Vec::new(),
        };
        let root = d.root();
        d.attach_and_mount("root.img", 192 << 20, &root);
        d.attach_and_mount("boot.img", 48 << 20, &root.join("boot"));
        d
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn attach_and_mount(&mut self, image: &str, size: u64, at: &Path) {
        let img = self.dir.path().join(image);
        // Sparse: only what the filesystem writes takes space.
        fs::File::create(&img).unwrap().set_len(size).unwrap();
        run("mkfs.ext4", &["-q", "-F", s(&img)]);
        let dev = run("losetup", &["--find", "--show", s(&img)])
            .trim()
            .to_string();
        self.loops.push(dev.clone());
        fs::create_dir_all(at).unwrap();
        run("mount", &["-t", "ext4", &dev, s(at)]);
        self.mounts.push(at.to_path_buf());
    }

    /// Unmounts and detaches; with `strict`, every step must succeed.
    fn release(&mut self, strict: bool) {
        while let Some(m) = self.mounts.pop() {
            let ok = Command::new("umount")
                .arg(&m)
                .status()
                .is_ok_and(|st| st.success());
            if !ok {
                // Never leave a mount behind, even a busy one.
                let _ = Command::new("umount").arg("-l").arg(&m).status();
                assert!(!strict, "umount {} failed", m.display());
            }
        }
        while let Some(l) = self.loops.pop() {
            let ok = Command::new("losetup")
                .args(["-d", &l])
                .status()
                .is_ok_and(|st| st.success());
            assert!(ok || !strict, "losetup -d {l} failed");
        }
    }

    /// Unmounts both filesystems and proves them clean with `e2fsck -fn`
    /// (forced full check, read-only: exit status 0 only if nothing is
    /// wrong).
    fn unmount_and_fsck(mut self) {
        self.release(true);
        for img in ["root.img", "boot.img"] {
            let p = self.dir.path().join(img);
            let out = Command::new("e2fsck")
                .args(["-fn", s(&p)])
                .output()
                .expect("running e2fsck (e2fsprogs)");
            assert!(
                out.status.success(),
                "e2fsck -fn {img}: {}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.release(false);
    }
}

/// Runs `scenario` on a fresh sysroot at the root of a mounted image, then
/// compares `ostree admin status` of the real ostree with ours, and fscks.
fn on_ext4(scenario: fn(&Fx)) {
    let disk = Disk::new();
    // The OS tree lives beside the images, not on them.
    let fx = setup_at(tempfile::tempdir_in(disk.dir.path()).unwrap(), disk.root());
    assert!(fx.root.join("lost+found").is_dir(), "not on the image");
    scenario(&fx);
    assert_real_status_agrees(&fx.root);
    drop(fx);
    disk.unmount_and_fsck();
}

fn assert_real_status_agrees(root: &Path) {
    let sr = sysroot::Sysroot::load_with(root, sysroot::BootedSource::None).unwrap();
    assert!(!sr.deployments().is_empty());
    let ours = sysroot::status::render_ostree(&sr.status().unwrap());
    let real = run(
        "ostree",
        &["admin", &format!("--sysroot={}", s(root)), "status"],
    );
    assert_eq!(real, ours, "real ostree admin status vs ours");
}

#[test]
fn deploy_rollback_cleanup_pin_on_ext4() {
    on_ext4(scenarios::rollback_cleanup_pin_cycles);
}

#[test]
fn etc_merge_corner_cases_on_ext4() {
    on_ext4(scenarios::etc_merge_through_deploy);
}

#[test]
fn kargs_on_ext4() {
    on_ext4(scenarios::kargs_replace_append_delete_and_edit_in_place);
}

/// A deploy killed while `/boot` is frozen: the watchdog must thaw it at
/// once (upstream's only thaws after its 30 s timeout). The child stops
/// inside the freeze through our `test-fifreeze-hold` debug hook.
#[test]
fn watchdog_thaws_boot_when_the_deployer_dies_frozen() {
    let disk = Disk::new();
    let fx = setup_at(tempfile::tempdir_in(disk.dir.path()).unwrap(), disk.root());
    let v1 = fx.commit("1");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "deploy_child", "--nocapture"])
        .env(CHILD_ENV, format!("{} {v1}", s(&fx.root)))
        .env(
            "OSTREE_SYSROOT_DEBUG",
            "mutable-deployments,test-fifreeze-hold",
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let boot = fx.root.join("boot");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let want = format!("frozen {}", boot.display());
    let mut seen = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        if l == want {
            break;
        }
        seen.push(l);
    }
    assert!(child.try_wait().unwrap().is_none(), "child ended: {seen:?}");
    // A write to the frozen /boot blocks ...
    let probe = boot.join("probe");
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        fs::write(&probe, "x").unwrap();
        tx.send(()).unwrap();
    });
    let blocked = rx
        .recv_timeout(std::time::Duration::from_millis(500))
        .is_err();
    // ... until the deployer dies and its watchdog thaws the filesystem.
    child.kill().unwrap();
    child.wait().unwrap();
    let thawed = rx.recv_timeout(std::time::Duration::from_secs(5)).is_ok();
    if !thawed {
        // Never leave a frozen filesystem behind.
        let _ = Command::new("fsfreeze").arg("-u").arg(&boot).status();
    }
    writer.join().unwrap();
    assert!(blocked, "/boot was not frozen (the hook did not freeze)");
    assert!(thawed, "/boot stayed frozen after the deployer was killed");
    drop(fx);
    disk.unmount_and_fsck();
}

const CHILD_ENV: &str = "SYSROOT_EXT4_DEPLOY_CHILD";

#[test]
#[ignore = "spawned by watchdog_thaws_boot_when_the_deployer_dies_frozen"]
fn deploy_child() {
    let arg = std::env::var(CHILD_ENV).expect("run via the parent test");
    let (root, rev) = arg.split_once(' ').unwrap();
    let mut sr = sysroot::Sysroot::load_with(Path::new(root), sysroot::BootedSource::None).unwrap();
    sr.deploy(rev, &scenarios::opts()).unwrap();
    panic!("the deploy returned although test-fifreeze-hold should hold it");
}
