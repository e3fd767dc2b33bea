//! The Ignition disks, mount, files and umount stages end to end on real
//! block devices: a ferrocore VM (Debian's kernel, with md and dm-crypt)
//! gets two blank virtio disks, and `ferrocore ignition run` lays out GPT
//! partitions, a RAID1 array over one partition of each disk, LUKS2 on the
//! array, ext4 inside it and xfs on a plain partition, then writes files onto
//! them. `ferrocore ignition plan` is checked before and after, and a second
//! run of the disks stage must keep everything (no data loss).
//!
//! Needs an image built by `ferrocore build image` (`FERROCORE_E2E_IMAGE`),
//! like `tests/e2e.rs`; `FERROCORE_E2E_WORKDIR` and `FERROCORE_E2E_PROFILE`
//! as there. Run: `cargo test -p ferrocore-vm --test disks -- --include-ignored`.

mod common;

use common::{boot_timeout, image, profile, LOGIN_BUTANE};
use ferrocore_vm::{Ssh, SshKey, Vm, VmOptions};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// mkfs, mdadm and cryptsetup (its PBKDF benchmark alone takes seconds) are
/// slow under TCG: a stage gets far more than ssh's default.
const STAGE_TIMEOUT: Duration = Duration::from_secs(600);

const LUKS_UUID: &str = "3f1a9c2e-5b7d-4e60-8a11-2c4d6e8f0a1b";
const EXT4_UUID: &str = "6e0b2a4c-8d1f-4a3b-9c5e-7f1a2b3c4d5e";
const XFS_UUID: &str = "0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f";
const SECRET: &str = "hello from raid1 + luks\n";
const NOTES: &str = "xfs scratch notes\n";

/// The layout. `wipe` is the first provisioning (wipeTable, wipeVolume,
/// wipeFilesystem all true); without it the same layout must be reused.
fn config(wipe: bool) -> String {
    let w = wipe;
    let raid_type = "A19D880F-05FC-4D3B-A006-743F0F84911E";
    serde_json::json!({
        "ignition": {"version": "3.3.0"},
        "storage": {
            "disks": [
                {"device": "/dev/disk/by-id/virtio-fcdisk-a", "wipeTable": w, "partitions": [
                    {"number": 1, "label": "raid-a", "sizeMiB": 512, "typeGuid": raid_type},
                    {"number": 2, "label": "scratch", "sizeMiB": 0}
                ]},
                {"device": "/dev/disk/by-id/virtio-fcdisk-b", "wipeTable": w, "partitions": [
                    {"number": 1, "label": "raid-b", "sizeMiB": 512, "typeGuid": raid_type}
                ]}
            ],
            "raid": [{"name": "data", "level": "raid1", "devices": [
                "/dev/disk/by-partlabel/raid-a", "/dev/disk/by-partlabel/raid-b"
            ]}],
            "luks": [{"name": "secure", "device": "/dev/md/data", "label": "crypt-data",
                "uuid": LUKS_UUID, "wipeVolume": w,
                "keyFile": {"source": "data:,disks-e2e-passphrase"}}],
            "filesystems": [
                {"device": "/dev/mapper/secure", "format": "ext4", "label": "securefs",
                 "uuid": EXT4_UUID, "wipeFilesystem": w, "path": "/var/lib/secure"},
                {"device": "/dev/disk/by-partlabel/scratch", "format": "xfs", "label": "scratch",
                 "uuid": XFS_UUID, "wipeFilesystem": w, "path": "/var/scratch"}
            ],
            "directories": [{"path": "/var/lib/secure/dir", "mode": 0o750}],
            "files": [
                {"path": "/var/lib/secure/dir/hello.txt", "mode": 0o640,
                 "contents": {"source": data_url(SECRET)}},
                {"path": "/var/scratch/notes.txt", "mode": 0o600,
                 "contents": {"source": data_url(NOTES)}}
            ]
        }
    })
    .to_string()
}

/// A `data:` URL of `s` (RFC 2397), percent-encoding all but alphanumerics.
fn data_url(s: &str) -> String {
    let mut u = String::from("data:,");
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            u.push(b as char);
        } else {
            u.push_str(&format!("%{b:02X}"));
        }
    }
    u
}

/// Writes `data` to `path` in the guest (as root), through ssh's stdin.
fn put(ssh: &Ssh, path: &str, data: &[u8]) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = ssh
        .command(&format!("sudo tee {path} >/dev/null"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "writing {path} in the guest: {status}");
}

/// Runs `cmd` in the guest; its stdout, or a panic with the details.
fn sh(ssh: &Ssh, cmd: &str) -> String {
    let o = ssh
        .run_timeout(cmd, STAGE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        o.success(),
        "`{cmd}` failed ({}): {}\nstdout: {}",
        o.status,
        o.stderr.trim(),
        o.stdout.trim()
    );
    o.stdout
}

/// Where the test keeps its files in the guest, and the target root.
const WORK: &str = "/var/tmp/disks-e2e";
const ROOT: &str = "/var/tmp/disks-e2e/root";

/// `ferrocore ignition run` of `stages` with config `cfg` (a file in WORK),
/// its state kept in WORK between calls, nothing taken from the booted
/// system's own Ignition setup.
fn ignition(ssh: &Ssh, cfg: &str, stages: &[&str]) -> f64 {
    let t = Instant::now();
    let stages: String = stages.iter().map(|s| format!(" --stage {s}")).collect();
    sh(
        ssh,
        &format!(
            "sudo ferrocore ignition run --platform file --config {WORK}/{cfg} --root {ROOT} \
             --config-cache {WORK}/config.json --state-file {WORK}/state \
             --neednet {WORK}/neednet --system-config-dir {WORK}/empty \
             --kernel-cmdline {WORK}/cmdline{stages}"
        ),
    );
    t.elapsed().as_secs_f64()
}

/// `ferrocore ignition plan --json` of `cfg` over both disks: (exit code, steps).
fn plan(ssh: &Ssh, cfg: &str) -> (i32, Vec<Value>) {
    let o = ssh
        .run_timeout(
            &format!(
                "sudo ferrocore ignition plan {WORK}/{cfg} --json --devices /dev/disk/by-id/virtio-fcdisk-a /dev/disk/by-id/virtio-fcdisk-b"
            ),
            STAGE_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let v: Value = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("plan of {cfg}: not JSON ({e}): {}{}", o.stdout, o.stderr));
    let steps = v["steps"].as_array().cloned().unwrap_or_default();
    (o.status.code().unwrap_or(-1), steps)
}

/// (config path, action) of every step, for readable assertions.
fn actions(steps: &[Value]) -> Vec<(String, String)> {
    steps
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap_or_default().to_string(),
                s["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn lossy(steps: &[Value]) -> Vec<String> {
    steps
        .iter()
        .filter(|s| s.get("dataLoss").is_some())
        .map(|s| s["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `blkid -p` of a guest device: (TYPE, LABEL, UUID).
fn blkid(ssh: &Ssh, dev: &str) -> (String, String, String) {
    let out = sh(ssh, &format!("sudo blkid -p -o export {dev}"));
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    (get("TYPE"), get("LABEL"), get("UUID"))
}

#[test]
#[ignore = "boots VMs: run by scripts/ci.d/e2e-vm.sh"]
fn raid1_luks_ext4_xfs_provisioned_mounted_and_reused() {
    let started = Instant::now();
    let (dir, key, ign) = setup("disks", "");

    let vm = Vm::start(vm_options(&dir, ign)).unwrap();
    eprintln!("disks: console {}", vm.log_path().display());
    let t = Instant::now();
    let ssh = vm
        .wait_ssh(&key, "core", boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "disks: boot -> ssh reachable in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    check(&ssh);
    loop_device_suite(&ssh);
    finish(vm, &ssh, &dir);
    eprintln!("disks: passed in {:.1} s", started.elapsed().as_secs_f64());
}

/// Powers the VM off and removes its overlay and disks (they are large).
fn finish(vm: Vm, ssh: &Ssh, dir: &std::path::Path) {
    let _ = ssh.run_timeout("sudo systemctl poweroff", Duration::from_secs(30));
    let _ = vm.wait_poweroff(Duration::from_secs(120));
    let overlay = vm.overlay().to_path_buf();
    drop(vm);
    for f in [overlay, dir.join("disk-a.raw"), dir.join("disk-b.raw")] {
        let _ = std::fs::remove_file(f);
    }
}

/// A VM of the image with two blank sparse 1 GiB disks carrying serials
/// (`/dev/disk/by-id/virtio-fcdisk-a`, `-b`). SeaBIOS boots only the first
/// disk it finds, scanning PCI slots in order: these sit in slots above the
/// image's (auto-assigned, lowest free).
fn vm_options(dir: &std::path::Path, ign: PathBuf) -> VmOptions {
    let mut o = VmOptions::new(image(), dir);
    o.ignition = Some(ign);
    o.profile = profile();
    // cryptsetup's Argon2 takes up to half the RAM; 512 MiB is tight.
    o.memory_mib = Some(1024);
    for (name, slot) in [("a", 0x10), ("b", 0x11)] {
        let disk = dir.join(format!("disk-{name}.raw"));
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        o.extra_args.extend(
            [
                "-drive".to_string(),
                format!(
                    "file={},if=none,id=fc{name},format=raw",
                    disk.display().to_string().replace(',', ",,")
                ),
                "-device".to_string(),
                format!("virtio-blk-pci,drive=fc{name},serial=fcdisk-{name},addr={slot:#x}"),
            ]
            .map(Into::into),
        );
    }
    o
}

/// A fresh work dir for one test and a login config with `extra` appended
/// (Butane, continuing `storage.files` of [`LOGIN_BUTANE`]).
fn setup(name: &str, extra: &str) -> (PathBuf, SshKey, PathBuf) {
    let dir = std::env::var_os("FERROCORE_E2E_WORKDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ferrocore-e2e"))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = SshKey::generate(&dir).unwrap();
    let src = LOGIN_BUTANE.replace("@KEY@", key.public()) + extra;
    let out = butane::translate(src.as_bytes(), &butane::Options::default())
        .unwrap_or_else(|e| panic!("Butane config does not translate: {}", e.message));
    let ign = dir.join("config.ign");
    std::fs::write(&ign, &out.bytes).unwrap();
    (dir, key, ign)
}

/// What a Fedora CoreOS user writes for data disks: RAID1 over a partition
/// of each disk, LUKS2 on the array, ext4 in it, xfs on a plain partition,
/// both mounted by Butane's generated mount units, files on both.
const FIRST_BOOT_STORAGE: &str = r#"    - path: /var/lib/data/hello.txt
      mode: 0640
      contents:
        inline: "written at first boot onto raid1 + luks\n"
    - path: /var/lib/plain/notes.txt
      contents:
        inline: "xfs notes\n"
  disks:
    - device: /dev/disk/by-id/virtio-fcdisk-a
      wipe_table: true
      partitions:
        - label: raid-a
          size_mib: 512
          type_guid: A19D880F-05FC-4D3B-A006-743F0F84911E
        - label: plain
          size_mib: 0
    - device: /dev/disk/by-id/virtio-fcdisk-b
      wipe_table: true
      partitions:
        - label: raid-b
          size_mib: 512
          type_guid: A19D880F-05FC-4D3B-A006-743F0F84911E
  raid:
    - name: data
      level: raid1
      devices:
        - /dev/disk/by-partlabel/raid-a
        - /dev/disk/by-partlabel/raid-b
  luks:
    - name: secret
      device: /dev/md/data
      wipe_volume: true
      key_file:
        inline: first-boot-passphrase
  filesystems:
    - device: /dev/mapper/secret
      format: ext4
      label: data
      wipe_filesystem: true
      path: /var/lib/data
      with_mount_unit: true
    - device: /dev/disk/by-partlabel/plain
      format: xfs
      label: plain
      wipe_filesystem: true
      path: /var/lib/plain
      with_mount_unit: true
"#;

/// The whole first boot as a user gets it: the initramfs runs Ignition's
/// disks, mount, files and umount stages (tools from the root, chrooted;
/// the root's udev for `/dev/disk/by-*`), the booted system mounts the new
/// filesystems with the generated units, and after a reboot the array is
/// assembled, the LUKS volume opened from `/etc/crypttab` and both mounted
/// again, with no second provisioning.
#[test]
#[ignore = "boots VMs: run by scripts/ci.d/e2e-vm.sh"]
fn first_boot_builds_raid_luks_and_filesystems_that_stay_mounted() {
    let started = Instant::now();
    let (dir, key, ign) = setup("first-boot-disks", FIRST_BOOT_STORAGE);
    let vm = Vm::start(vm_options(&dir, ign)).unwrap();
    eprintln!("first-boot-disks: console {}", vm.log_path().display());
    let ssh = vm
        .wait_ssh(&key, "core", boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    let console = |boot: u32| -> Vec<(f64, String)> {
        vm.console_of_boot(boot)
            .into_iter()
            .map(|l| (l.secs, l.text))
            .collect()
    };
    let at = |lines: &[(f64, String)], what: &str| -> Option<f64> {
        lines
            .iter()
            .find(|(_, t)| t.contains(what))
            .map(|(s, _)| *s)
    };
    let boot1 = console(1);
    for step in [
        "ferrocore-init: udev running",
        "ferrocore-init: ignition disks done",
        "ferrocore-init: ignition mount done",
        "ferrocore-init: ignition files done",
        "ferrocore-init: ignition umount done",
    ] {
        assert!(
            at(&boot1, step).is_some(),
            "no {step:?} on the first boot's console"
        );
    }
    if let (Some(a), Some(b)) = (
        at(&boot1, "ferrocore-init: ignition (platform"),
        at(&boot1, "ferrocore-init: ignition umount done"),
    ) {
        eprintln!(
            "figure: first-boot Ignition with disks in the initramfs: {:.1} s",
            b - a
        );
    }

    let mounted = |ssh: &Ssh| {
        let m = sh(
            ssh,
            "findmnt -n -o SOURCE,FSTYPE /var/lib/data; findmnt -n -o SOURCE,FSTYPE /var/lib/plain",
        );
        let lines: Vec<&str> = m.lines().map(str::trim).collect();
        assert_eq!(lines.len(), 2, "{m}");
        assert!(
            lines[0].ends_with("ext4") && lines[0].contains("secret"),
            "{m}"
        );
        assert!(lines[1].ends_with("xfs"), "{m}");
        assert_eq!(
            sh(
                ssh,
                "systemctl is-active var-lib-data.mount var-lib-plain.mount"
            )
            .trim(),
            "active\nactive"
        );
        assert_eq!(
            sh(ssh, "sudo cat /var/lib/data/hello.txt"),
            "written at first boot onto raid1 + luks\n"
        );
        assert_eq!(
            sh(ssh, "sudo stat -c %a /var/lib/data/hello.txt").trim(),
            "640"
        );
        assert_eq!(sh(ssh, "cat /var/lib/plain/notes.txt"), "xfs notes\n");
        let md = sh(ssh, "cat /proc/mdstat");
        assert!(md.contains("raid1") && md.contains("[2/2] [UU]"), "{md}");
        let st = sh(ssh, "sudo cryptsetup status secret");
        assert!(st.contains("type:    LUKS2"), "{st}");
    };
    mounted(&ssh);
    // The key and crypttab entry the files stage wrote for the next boots.
    let tab = sh(&ssh, "sudo cat /etc/crypttab");
    assert!(
        tab.lines()
            .any(|l| l.starts_with("secret UUID=") && l.contains("/etc/luks/secret")),
        "{tab}"
    );
    assert_eq!(sh(&ssh, "sudo stat -c %a /etc/luks/secret").trim(), "600");
    let uuid = blkid(&ssh, "/dev/disk/by-partlabel/plain").2;

    let _ = ssh.run_timeout("sudo systemctl reboot", Duration::from_secs(30));
    vm.wait_boot(2, boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    let ssh = vm
        .wait_ssh(&key, "core", boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    mounted(&ssh);
    assert_eq!(blkid(&ssh, "/dev/disk/by-partlabel/plain").2, uuid);
    assert!(
        at(&console(2), "ferrocore-init: ignition").is_none(),
        "Ignition ran again on the second boot"
    );
    finish(vm, &ssh, &dir);
    eprintln!(
        "first-boot-disks: passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The host's loop-device disk tests (`crates/ignition/tests/disks`, the
/// test binary named by `FERROCORE_E2E_IGNITION_DISK_TESTS`) run again in
/// the guest, whose kernel has md and dm-crypt: there the RAID1 and LUKS
/// cases take their full path (array and volume made, reused on a second
/// run) instead of the "no driver" failure path CI's host kernel allows.
fn loop_device_suite(ssh: &Ssh) {
    let bin = std::env::var_os("FERROCORE_E2E_IGNITION_DISK_TESTS").unwrap_or_else(|| {
        panic!("FERROCORE_E2E_IGNITION_DISK_TESTS is not set: the path of the ignition-engine `disks` test binary (cargo test -p ignition-engine --test disks --no-run; scripts/ci.d/e2e-vm.sh sets it)")
    });
    let data = std::fs::read(&bin)
        .unwrap_or_else(|e| panic!("{}: {e}", std::path::Path::new(&bin).display()));
    let t = Instant::now();
    put(ssh, "/var/tmp/ignition-disk-tests", &data);
    sh(
        ssh,
        "sudo chmod 755 /var/tmp/ignition-disk-tests && sudo modprobe -a loop md_mod raid1 dm_crypt",
    );
    // Both drivers present: the tests' full RAID1 and LUKS branches run.
    sh(
        ssh,
        "test -e /proc/mdstat && grep -q device-mapper /proc/devices",
    );
    // The side-by-side cases need the real Ignition, which the OS does not
    // ship; stage and plan cases need only the OS's tools. Scratch dirs go to
    // /var/tmp: /tmp is a symlink on an OSTree system, which Ignition rightly
    // refuses in mount paths.
    let out = sh(
        ssh,
        "cd /var/tmp && sudo TMPDIR=/var/tmp ./ignition-disk-tests stage:: plan:: --test-threads=1 2>&1",
    );
    for case in [
        "stage::raid1_over_two_loop_devices ... ok",
        "stage::luks_with_key_file ... ok",
        "stage::gpt_ext4_xfs_vfat_and_files_on_them ... ok",
    ] {
        assert!(out.contains(case), "no '{case}' in the guest's run:\n{out}");
    }
    assert!(out.contains("test result: ok."), "{out}");
    let summary = out
        .lines()
        .find(|l| l.starts_with("test result:"))
        .unwrap_or_default();
    eprintln!(
        "figure: loop-device disk tests in the guest (md + dm-crypt): {summary} ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
}

fn check(ssh: &Ssh) {
    // The configs and an empty system config dir / kernel command line, so
    // only the test's config counts.
    sh(
        ssh,
        &format!("sudo mkdir -p {WORK}/empty {ROOT} && sudo touch {WORK}/cmdline"),
    );
    put(ssh, &format!("{WORK}/wipe.ign"), config(true).as_bytes());
    put(ssh, &format!("{WORK}/keep.ign"), config(false).as_bytes());

    // 1. Plans on the blank disks: everything is created, nothing lost.
    for cfg in ["wipe.ign", "keep.ign"] {
        let (code, steps) = plan(ssh, cfg);
        assert_eq!(code, 0, "plan of {cfg} on blank disks fails: {steps:?}");
        assert!(
            lossy(&steps).is_empty(),
            "blank disks, yet data loss: {steps:?}"
        );
        let a = actions(&steps);
        let creates: Vec<&str> = a
            .iter()
            .filter(|(_, act)| act == "create")
            .map(|(p, _)| p.as_str())
            .collect();
        assert_eq!(
            creates,
            [
                "$.storage.disks.0.partitions.0",
                "$.storage.disks.0.partitions.1",
                "$.storage.disks.1.partitions.0",
                "$.storage.raid.0",
                "$.storage.luks.0",
                "$.storage.filesystems.0",
                "$.storage.filesystems.1"
            ],
            "{cfg}: {a:?}"
        );
    }

    // 2. First provisioning: disks, mount, files, umount.
    let t = ignition(ssh, "wipe.ign", &["fetch", "disks"]);
    eprintln!("figure: disks stage (first run) {t:.1} s");
    let t = ignition(ssh, "wipe.ign", &["mount", "files", "umount"]);
    eprintln!("figure: mount + files + umount stages {t:.1} s");

    // 3. What the guest's kernel and tools see.
    let mdstat = sh(ssh, "cat /proc/mdstat");
    let md_line = mdstat
        .lines()
        .find(|l| l.contains(" : active raid1 "))
        .unwrap_or_else(|| panic!("no active raid1 in /proc/mdstat:\n{mdstat}"));
    for m in ["vdb1[", "vdc1["] {
        assert!(md_line.contains(m), "raid1 without {m}: {mdstat}");
    }
    assert!(
        mdstat.contains("[2/2] [UU]"),
        "raid1 not both members up:\n{mdstat}"
    );
    let md_uuid = sh(ssh, "sudo mdadm --detail --export /dev/md/data");
    assert!(md_uuid.contains("MD_LEVEL=raid1"), "{md_uuid}");
    assert!(md_uuid.contains("MD_DEVICES=2"), "{md_uuid}");
    let status = sh(ssh, "sudo cryptsetup status secure");
    assert!(status.contains("type:    LUKS2"), "{status}");
    let backing = sh(ssh, "readlink -f /dev/md/data");
    assert!(
        status.contains(&format!("device:  {}", backing.trim())),
        "LUKS not over the array:\n{status}"
    );
    assert_eq!(
        blkid(ssh, "/dev/md/data"),
        ("crypto_LUKS".into(), "crypt-data".into(), LUKS_UUID.into())
    );
    assert_eq!(
        blkid(ssh, "/dev/mapper/secure"),
        ("ext4".into(), "securefs".into(), EXT4_UUID.into())
    );
    assert_eq!(
        blkid(ssh, "/dev/disk/by-partlabel/scratch"),
        ("xfs".into(), "scratch".into(), XFS_UUID.into())
    );
    for p in ["/dev/vdb1", "/dev/vdc1"] {
        assert_eq!(blkid(ssh, p).0, "linux_raid_member", "{p}");
    }
    let lsblk = sh(
        ssh,
        "lsblk -f -n -o NAME,FSTYPE,LABEL,UUID /dev/vdb /dev/vdc",
    );
    eprintln!("disks: lsblk -f\n{lsblk}");
    for want in [
        format!("crypto_LUKS crypt-data {LUKS_UUID}"),
        format!("ext4        securefs   {EXT4_UUID}"),
        format!("xfs         scratch    {XFS_UUID}"),
    ] {
        let words: Vec<&str> = want.split_whitespace().collect();
        assert!(
            lsblk
                .lines()
                .any(|l| l.split_whitespace().skip(1).eq(words.iter().copied())),
            "lsblk -f lacks {want:?}:\n{lsblk}"
        );
    }
    // umount left nothing mounted under the root.
    assert_eq!(
        sh(
            ssh,
            &format!("findmnt -rn -o TARGET | grep -c '^{ROOT}' || true")
        )
        .trim(),
        "0"
    );
    // The files stage persisted the LUKS key and a crypttab line.
    assert_eq!(
        sh(ssh, &format!("sudo cat {ROOT}/etc/crypttab")),
        format!("secure UUID={LUKS_UUID} /etc/luks/secure luks\n")
    );
    assert_eq!(
        sh(ssh, &format!("sudo stat -c '%a' {ROOT}/etc/luks/secure")).trim(),
        "600"
    );

    // 4. Mounted again (the mount stage of the reuse config): contents and
    //    modes as configured, then a file the config does not know about.
    ignition(ssh, "keep.ign", &["fetch", "mount"]);
    let files = sh(
        ssh,
        &format!(
            "cd {ROOT} && sudo stat -c '%n %a %F' var/lib/secure/dir var/lib/secure/dir/hello.txt var/scratch/notes.txt \
             && findmnt -n -o SOURCE,FSTYPE {ROOT}/var/lib/secure && findmnt -n -o FSTYPE {ROOT}/var/scratch"
        ),
    );
    assert_eq!(
        files,
        "var/lib/secure/dir 750 directory\nvar/lib/secure/dir/hello.txt 640 regular file\nvar/scratch/notes.txt 600 regular file\n/dev/mapper/secure ext4\nxfs\n"
    );
    assert_eq!(
        sh(
            ssh,
            &format!("sudo cat {ROOT}/var/lib/secure/dir/hello.txt")
        ),
        SECRET
    );
    assert_eq!(
        sh(ssh, &format!("sudo cat {ROOT}/var/scratch/notes.txt")),
        NOTES
    );
    sh(
        ssh,
        &format!(
            "echo kept | sudo tee {ROOT}/var/lib/secure/marker {ROOT}/var/scratch/marker >/dev/null && sync"
        ),
    );
    ignition(ssh, "keep.ign", &["umount"]);

    // 5. Plans now: the reuse config keeps every step; the wiping one
    //    reports what it would destroy.
    let (code, steps) = plan(ssh, "keep.ign");
    assert_eq!(code, 0, "{steps:?}");
    assert!(lossy(&steps).is_empty(), "{steps:?}");
    let a = actions(&steps);
    assert!(
        a.iter().all(|(_, act)| act == "keep"),
        "reuse config does not keep everything: {steps:#?}"
    );
    assert_eq!(a.len(), 7, "{a:?}");
    let (code, steps) = plan(ssh, "wipe.ign");
    assert_eq!(code, 0, "{steps:?}");
    let a = actions(&steps);
    assert_eq!(
        a[0],
        (
            "$.storage.disks.0.wipeTable".to_string(),
            "wipe-table".to_string()
        )
    );
    let lost = lossy(&steps);
    for p in ["$.storage.disks.0.wipeTable", "$.storage.disks.1.wipeTable"] {
        assert!(lost.iter().any(|l| l == p), "{p} not data loss: {steps:#?}");
    }

    // 6. The disks stage again, on the reuse config: array, volume and
    //    filesystems kept, the file written after provisioning still there.
    let md_before = sh(
        ssh,
        "sudo mdadm --detail --export /dev/md/data | grep '^MD_UUID='",
    );
    let t = ignition(ssh, "keep.ign", &["fetch", "disks", "mount"]);
    eprintln!("figure: disks + mount stages (reuse run) {t:.1} s");
    assert_eq!(
        sh(
            ssh,
            "sudo mdadm --detail --export /dev/md/data | grep '^MD_UUID='"
        ),
        md_before,
        "the array was recreated"
    );
    assert_eq!(
        sh(
            ssh,
            &format!("sudo cat {ROOT}/var/lib/secure/marker {ROOT}/var/scratch/marker {ROOT}/var/lib/secure/dir/hello.txt")
        ),
        format!("kept\nkept\n{SECRET}")
    );
    assert_eq!(
        blkid(ssh, "/dev/mapper/secure"),
        ("ext4".into(), "securefs".into(), EXT4_UUID.into())
    );
    ignition(ssh, "keep.ign", &["umount"]);
}

/// The first-boot config translates and asks for what the VM test checks
/// (no image needed, so a broken config shows up in every `cargo test`).
#[test]
fn the_first_boot_config_translates() {
    let src = LOGIN_BUTANE.replace("@KEY@", "ssh-ed25519 AAAA test") + FIRST_BOOT_STORAGE;
    let out = butane::translate(src.as_bytes(), &butane::Options::default())
        .unwrap_or_else(|e| panic!("{}", e.message));
    let v: Value = serde_json::from_slice(&out.bytes).unwrap();
    let units: Vec<&str> = v["systemd"]["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(units, ["var-lib-data.mount", "var-lib-plain.mount"]);
    assert_eq!(v["storage"]["luks"][0]["device"], "/dev/md/data");
    assert_eq!(v["storage"]["raid"][0]["level"], "raid1");
    assert_eq!(v["storage"]["filesystems"].as_array().unwrap().len(), 2);
}
