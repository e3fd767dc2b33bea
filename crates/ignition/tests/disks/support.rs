//! A scratch rig for disk tests: sparse images on loop devices in a temp dir,
//! and a `Drop` that tears down whatever a test (or the stage) set up on
//! them, even when the test panics: mounts below the dir, device-mapper
//! volumes and md arrays named by the test, then the loop devices.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ignition_engine::{Options, Stage};

/// Runs of the real Ignition's disks stage take turns: without a systemd
/// manager, `run-real-ignition.sh` serves a stand-in at the one fixed path
/// /run/systemd/private and removes it when it ends, which would cut off a
/// concurrent run that found the socket already there.
pub fn real_ignition_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fails loudly (never skips) without root and loop devices: CI runs as root.
pub fn require_loop_devices() {
    super::common::require_root();
    assert!(
        Path::new("/dev/loop-control").exists(),
        "these tests need loop devices (/dev/loop-control missing)"
    );
    for tool in [
        "losetup",
        "sgdisk",
        "partx",
        "wipefs",
        "blkid",
        "mkfs.ext4",
        "mkfs.xfs",
        "mkfs.fat",
        "mkfs.btrfs",
        "mkswap",
        "mdadm",
        "cryptsetup",
        "udevadm",
    ] {
        assert!(
            Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success(),
            "{tool} is required (apt: util-linux mount gdisk e2fsprogs xfsprogs dosfstools btrfs-progs mdadm cryptsetup-bin udev)"
        );
    }
}

/// Whether the running kernel has md (software RAID).
pub fn kernel_has_md() -> bool {
    Path::new("/proc/mdstat").exists()
}

/// Whether the running kernel has device-mapper (needed to open LUKS).
pub fn kernel_has_dm() -> bool {
    std::fs::read_to_string("/proc/devices")
        .unwrap_or_default()
        .contains("device-mapper")
}

pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub loops: Vec<String>,
    /// md arrays (`/dev/md/NAME`) to stop on drop.
    pub md: Vec<String>,
    /// dm names to close on drop.
    pub dm: Vec<String>,
}

impl Rig {
    pub fn new() -> Rig {
        require_loop_devices();
        Rig {
            dir: tempfile::tempdir().unwrap(),
            loops: Vec::new(),
            md: Vec::new(),
            dm: Vec::new(),
        }
    }

    /// A fresh zeroed (sparse) disk of `mib` MiB with partition scanning on.
    pub fn disk(&mut self, mib: u64) -> String {
        let img = self
            .dir
            .path()
            .join(format!("disk{}.img", self.loops.len()));
        std::fs::File::create(&img)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let out = Command::new("losetup")
            .args(["-f", "-P", "--show"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.loops.push(dev.clone());
        dev
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Engine options for this rig (root `root/`, config `config.ign`).
    pub fn options(&self) -> Options {
        let mut o = super::common::options(
            &self.path("root"),
            &self.path("config.ign"),
            &self.path("work"),
        );
        o.device_timeout = Duration::from_secs(2);
        o
    }

    /// Writes the config and runs fetch then `stages`, stopping at the first error.
    pub fn run(&self, config: &str, stages: &[Stage]) -> Result<(), ignition_engine::Error> {
        std::fs::create_dir_all(self.path("root")).unwrap();
        std::fs::write(self.path("config.ign"), config).unwrap();
        let o = self.options();
        ignition_engine::run_stage(&o, Stage::Fetch)?;
        for s in stages {
            ignition_engine::run_stage(&o, *s)?;
        }
        Ok(())
    }

    /// Mounts `dev` read-only at `rel` for inspection (unmounted on drop).
    pub fn mount_ro(&self, dev: &str, rel: &str) -> PathBuf {
        let at = self.path(rel);
        std::fs::create_dir_all(&at).unwrap();
        sh(&format!("mount -o ro {dev} {}", at.display()));
        at
    }

    pub fn umount(&self, at: &Path) {
        sh(&format!("umount {}", at.display()));
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let base = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut mine: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&base))
            .collect();
        mine.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mine {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        for d in &self.dm {
            let _ = Command::new("cryptsetup").args(["close", d]).output();
        }
        for m in &self.md {
            let _ = Command::new("mdadm").args(["--stop", m]).output();
        }
        for l in &self.loops {
            let _ = Command::new("losetup").args(["-d", l]).output();
        }
    }
}

/// `blkid -p` of a device as (TYPE, LABEL, UUID); empty strings when absent.
pub fn blkid(dev: &str) -> (String, String, String) {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export", dev])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_string()
    };
    (get("TYPE"), get("LABEL"), get("UUID"))
}
