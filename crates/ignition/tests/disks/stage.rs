//! The disks stage on loop devices: partitions, filesystems, files written
//! onto them through mount + files, reuse versus wipe, RAID, LUKS, and
//! failures naming the config path.

use ignition_engine::gpt;
use ignition_engine::Stage::{Disks, Files, Mount, Umount};

use super::support::{blkid, kernel_has_dm, kernel_has_md, sh, Rig};

const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

#[test]
fn gpt_ext4_xfs_vfat_and_files_on_them() {
    // (vfat gets no mount path: kernels without the vfat driver, like the
    // test VM's, can still make one with mkfs.fat.)
    let mut rig = Rig::new();
    let d = rig.disk(512);
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{
  "disks":[{{"device":"{d}","wipeTable":true,"partitions":[
    {{"number":1,"label":"efi","sizeMiB":32,"typeGuid":"{ESP}"}},
    {{"number":2,"label":"data","sizeMiB":320,"guid":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}},
    {{"label":"var","sizeMiB":0}}]}}],
  "filesystems":[
    {{"device":"{d}p1","format":"vfat","label":"EFI","uuid":"AB12-CD34"}},
    {{"device":"{d}p2","format":"xfs","label":"data","uuid":"11111111-2222-3333-4444-555555555555","path":"/srv"}},
    {{"device":"{d}p3","format":"ext4","label":"var","path":"/var","mountOptions":["noatime"]}}],
  "files":[
    {{"path":"/srv/hello.txt","mode":420,"contents":{{"source":"data:,on%20xfs%0A"}}}},
    {{"path":"/var/lib/app/state","contents":{{"source":"data:,on%20ext4"}}}}]}}}}"#
    );
    rig.run(&cfg, &[Disks, Mount, Files, Umount]).unwrap();

    let t = gpt::read(std::path::Path::new(&d)).unwrap();
    let rows: Vec<_> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.number,
                p.start,
                p.size,
                p.type_guid.as_str(),
                p.label.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, 2048, 65536, ESP, "efi"),
            (2, 67584, 655360, LINUX, "data"),
            // number 0 took the next free number; size 0 = up to the last usable sector.
            (3, 722944, 1048542 - 722944 + 1, LINUX, "var"),
        ]
    );
    assert_eq!(
        t.get(2).unwrap().guid,
        "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"
    );
    assert_eq!(
        blkid(&format!("{d}p1")),
        ("vfat".into(), "EFI".into(), "AB12-CD34".into())
    );
    assert_eq!(
        blkid(&format!("{d}p2")),
        (
            "xfs".into(),
            "data".into(),
            "11111111-2222-3333-4444-555555555555".into()
        )
    );
    assert_eq!(blkid(&format!("{d}p3")).0, "ext4");

    // The files went onto the new filesystems, not into the root directory.
    let root = rig.path("root");
    assert!(!root.join("srv/hello.txt").exists());
    let m = rig.mount_ro(&format!("{d}p2"), "m2");
    assert_eq!(
        std::fs::read_to_string(m.join("hello.txt")).unwrap(),
        "on xfs\n"
    );
    rig.umount(&m);
    let m = rig.mount_ro(&format!("{d}p3"), "m3");
    assert_eq!(
        std::fs::read_to_string(m.join("lib/app/state")).unwrap(),
        "on ext4"
    );
    rig.umount(&m);
}

fn ext4_config(d: &str, label: &str, wipe: bool) -> String {
    format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{
  "disks":[{{"device":"{d}","partitions":[{{"number":1,"label":"p","sizeMiB":64}}]}}],
  "filesystems":[{{"device":"{d}p1","format":"ext4","label":"{label}","wipeFilesystem":{wipe}}}]}}}}"#
    )
}

#[test]
fn existing_partition_and_filesystem_reused_unless_wiped() {
    let mut rig = Rig::new();
    let d = rig.disk(128);
    rig.run(&ext4_config(&d, "keep", false), &[Disks]).unwrap();
    let (_, _, uuid1) = blkid(&format!("{d}p1"));
    let guid1 = gpt::read(std::path::Path::new(&d))
        .unwrap()
        .get(1)
        .unwrap()
        .guid
        .clone();
    // Put data on it, then run the same config again: nothing is touched.
    let m = rig.path("m");
    std::fs::create_dir_all(&m).unwrap();
    sh(&format!(
        "mount {d}p1 {0} && echo precious > {0}/data && umount {0}",
        m.display()
    ));
    rig.run(&ext4_config(&d, "keep", false), &[Disks]).unwrap();
    assert_eq!(
        blkid(&format!("{d}p1")),
        ("ext4".into(), "keep".into(), uuid1.clone())
    );
    assert_eq!(
        gpt::read(std::path::Path::new(&d))
            .unwrap()
            .get(1)
            .unwrap()
            .guid,
        guid1
    );
    let at = rig.mount_ro(&format!("{d}p1"), "m");
    assert_eq!(
        std::fs::read_to_string(at.join("data")).unwrap(),
        "precious\n"
    );
    rig.umount(&at);

    // Another label without wipeFilesystem: refused, data intact.
    let e = rig
        .run(&ext4_config(&d, "other", false), &[Disks])
        .unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.storage.filesystems.0"), "{e}");
    assert!(
        e.message
            .contains("is not of the correct type, label, or UUID (found ext4, \"keep\""),
        "{e}"
    );
    assert_eq!(blkid(&format!("{d}p1")).2, uuid1);
    // The failure is recorded in the state file.
    let st = ignition_engine::State::load(&rig.options().state_file).unwrap();
    let f = st.failure.unwrap();
    assert_eq!(
        (f.stage.as_str(), f.path.as_deref()),
        ("disks", Some("$.storage.filesystems.0"))
    );

    // With wipeFilesystem: a new filesystem, the data is gone.
    rig.run(&ext4_config(&d, "other", true), &[Disks]).unwrap();
    let (ty, label, uuid2) = blkid(&format!("{d}p1"));
    assert_eq!((ty.as_str(), label.as_str()), ("ext4", "other"));
    assert_ne!(uuid2, uuid1);
    let at = rig.mount_ro(&format!("{d}p1"), "m");
    assert!(!at.join("data").exists());
    rig.umount(&at);
}

fn part_config(d: &str, part: &str) -> String {
    format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"disks":[{{"device":"{d}","partitions":[{{"number":1,"label":"a","sizeMiB":16}},{part}]}}]}}}}"#
    )
}

#[test]
fn partition_matching_rules_and_failures() {
    let mut rig = Rig::new();
    let d = rig.disk(128);
    let dp = std::path::Path::new(&d).to_path_buf();
    rig.run(
        &part_config(&d, r#"{"number":2,"label":"b","sizeMiB":16}"#),
        &[Disks],
    )
    .unwrap();
    let before = gpt::read(&dp).unwrap();
    assert_eq!(before.partitions.len(), 2);

    // Size mismatch without resize or wipePartitionEntry: upstream's error, at the partition.
    let e = rig
        .run(
            &part_config(&d, r#"{"number":2,"label":"b","sizeMiB":32}"#),
            &[Disks],
        )
        .unwrap_err();
    assert_eq!(
        e.path.as_deref(),
        Some("$.storage.disks.0.partitions.1"),
        "{e}"
    );
    assert_eq!(
        e.message,
        "Partition 2 didn't match: size did not match (specified 65536, got 32768)"
    );
    assert_eq!(gpt::read(&dp).unwrap(), before);

    // startMiB 0 means "where sgdisk would put it", which for an existing partition is where it is.
    rig.run(
        &part_config(&d, r#"{"number":2,"label":"b","startMiB":0,"sizeMiB":16}"#),
        &[Disks],
    )
    .unwrap();
    assert_eq!(gpt::read(&dp).unwrap(), before);

    // resize: same entry (GUID, start), new size.
    rig.run(
        &part_config(&d, r#"{"number":2,"label":"b","sizeMiB":32,"resize":true}"#),
        &[Disks],
    )
    .unwrap();
    let after = gpt::read(&dp).unwrap();
    let (b, a) = (before.get(2).unwrap(), after.get(2).unwrap());
    assert_eq!((a.start, a.size, &a.guid), (b.start, 65536, &b.guid));

    // Label mismatch with wipePartitionEntry: recreated (new GUID).
    rig.run(
        &part_config(
            &d,
            r#"{"number":2,"label":"c","sizeMiB":8,"wipePartitionEntry":true}"#,
        ),
        &[Disks],
    )
    .unwrap();
    let p = gpt::read(&dp).unwrap().get(2).unwrap().clone();
    assert_eq!((p.label.as_str(), p.size), ("c", 16384));
    assert_ne!(p.guid, b.guid);

    // shouldExist false: refused without wipePartitionEntry, deleted with it.
    let e = rig
        .run(
            &part_config(&d, r#"{"number":2,"shouldExist":false}"#),
            &[Disks],
        )
        .unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.storage.disks.0.partitions.1"));
    assert_eq!(
        e.message,
        "partition 2 exists but is specified as nonexistant and wipePartitionEntry is false"
    );
    rig.run(
        &part_config(
            &d,
            r#"{"number":2,"shouldExist":false,"wipePartitionEntry":true}"#,
        ),
        &[Disks],
    )
    .unwrap();
    assert!(gpt::read(&dp).unwrap().get(2).is_none());
    assert!(gpt::read(&dp).unwrap().get(1).is_some());

    // A partition that does not fit: sgdisk's refusal, at the disk.
    let e = rig
        .run(&part_config(&d, r#"{"number":2,"sizeMiB":4096}"#), &[Disks])
        .unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.storage.disks.0"), "{e}");
    assert!(
        e.message.contains("Failed to pretend to create partitions"),
        "{e}"
    );

    // A device that never appears: named, after the device timeout.
    let e = rig
        .run(
            r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"/dev/ferrocore-none","format":"ext4"}]}}"#,
            &[Disks],
        )
        .unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.storage.filesystems.0.device"));
    assert_eq!(
        e.message,
        "device \"/dev/ferrocore-none\" did not appear within 2s"
    );
}

#[test]
fn btrfs_swap_and_none() {
    let mut rig = Rig::new();
    let d = rig.disk(400);
    sh(&format!("sgdisk -n 1:0:+200M -n 2:0:+32M -n 3:0:+32M {d} && partx -u {d} && mkfs.ext4 -q -L old {d}p3"));
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"filesystems":[
  {{"device":"{d}p1","format":"btrfs","label":"b","uuid":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}},
  {{"device":"{d}p2","format":"swap","label":"sw","uuid":"12345678-9abc-def0-1234-56789abcdef0"}},
  {{"device":"{d}p3","format":"none","wipeFilesystem":true}}]}}}}"#
    );
    rig.run(&cfg, &[Disks, Mount, Umount]).unwrap();
    assert_eq!(
        blkid(&format!("{d}p1")),
        (
            "btrfs".into(),
            "b".into(),
            "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".into()
        )
    );
    assert_eq!(
        blkid(&format!("{d}p2")),
        (
            "swap".into(),
            "sw".into(),
            "12345678-9abc-def0-1234-56789abcdef0".into()
        )
    );
    assert_eq!(blkid(&format!("{d}p3")).0, "");
}

#[test]
fn raid1_over_two_loop_devices() {
    let mut rig = Rig::new();
    let a = rig.disk(64);
    let b = rig.disk(64);
    let name = format!("fc{}", std::process::id());
    rig.md.push(format!("/dev/md/{name}"));
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{
  "raid":[{{"name":"{name}","level":"raid1","devices":["{a}","{b}"],"options":["--metadata=1.2"]}}],
  "filesystems":[{{"device":"/dev/md/{name}","format":"ext4","label":"mirror"}}]}}}}"#
    );
    let res = rig.run(&cfg, &[Disks]);
    if kernel_has_md() {
        res.unwrap();
        assert_eq!(blkid(&format!("/dev/md/{name}")).1, "mirror");
        assert_eq!(blkid(&a).0, "linux_raid_member");
        assert_eq!(blkid(&b).0, "linux_raid_member");
        // A second run keeps the running array (mdadm --create would fail
        // on its busy members) and the filesystem on it.
        rig.run(&cfg, &[Disks]).unwrap();
        assert_eq!(blkid(&format!("/dev/md/{name}")).1, "mirror");
    } else {
        // This kernel has no md driver: the stage must fail at the array,
        // with mdadm's own words, before touching the filesystem.
        let e = res.unwrap_err();
        assert_eq!(e.path.as_deref(), Some("$.storage.raid.0"), "{e}");
        assert!(e.message.starts_with(&format!("mdadm failed: mdadm --create {name} --force --run --homehost any --level raid1 --raid-devices 2 --metadata=1.2 {a} {b}")), "{e}");
        let _ = std::fs::remove_file(format!("/dev/md/{name}"));
    }
}

#[test]
fn luks_with_key_file() {
    let mut rig = Rig::new();
    let d = rig.disk(64);
    let name = format!("fcluks{}", std::process::id());
    rig.dm.push(name.clone());
    let uuid = "5a1b2c3d-0000-4000-8000-00000000abcd";
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{
  "luks":[{{"name":"{name}","device":"{d}","label":"crypt","uuid":"{uuid}","keyFile":{{"source":"data:,s3cret-key"}}}}],
  "filesystems":[{{"device":"/dev/mapper/{name}","format":"ext4","label":"inside"}}]}}}}"#
    );
    let res = rig.run(&cfg, &[Disks]);
    // luksFormat is userspace only: the header is there either way.
    assert_eq!(
        blkid(&d),
        ("crypto_LUKS".into(), "crypt".into(), uuid.into())
    );
    sh(&format!(
        "printf s3cret-key | cryptsetup open --test-passphrase --key-file - {d}"
    ));
    let st = ignition_engine::State::load(&rig.options().state_file).unwrap();
    let keys = st.luks_persist_key_files.unwrap();
    assert_eq!(keys[&name], "data:;base64,czNjcmV0LWtleQ==");
    if kernel_has_dm() {
        res.unwrap();
        assert_eq!(blkid(&format!("/dev/mapper/{name}")).1, "inside");
        // Open already: a second run proves the key and keeps the volume.
        rig.run(&cfg, &[Disks]).unwrap();
        assert_eq!(blkid(&format!("/dev/mapper/{name}")).1, "inside");
    } else {
        let e = res.unwrap_err();
        assert_eq!(e.path.as_deref(), Some("$.storage.luks.0"), "{e}");
        assert!(
            e.message
                .starts_with("opening luks device: cryptsetup luksOpen"),
            "{e}"
        );
    }
    // The files stage persists the key and the crypttab line (0600, dir 0700).
    ignition_engine::run_stage(&rig.options(), Files).unwrap();
    let root = rig.path("root");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(
        std::fs::read(root.join("etc/luks").join(&name)).unwrap(),
        b"s3cret-key"
    );
    assert_eq!(
        (
            mode("etc/luks"),
            mode(&format!("etc/luks/{name}")),
            mode("etc/crypttab")
        ),
        (0o700, 0o600, 0o600)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/crypttab")).unwrap(),
        format!("{name} UUID={uuid} /etc/luks/{name} luks\n")
    );

    // Reuse rules: a different label is refused without wipeVolume.
    let other = cfg.replace(r#""label":"crypt""#, r#""label":"other""#);
    let e = rig.run(&other, &[Disks]).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.storage.luks.0"));
    assert!(
        e.message.contains(
            "could not be reused: volume label \"crypt\" doesn't match expected label \"other\""
        ),
        "{e}"
    );

    // Clevis is refused up front, naming the field.
    let clevis = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"luks":[{{"name":"x","device":"{d}","clevis":{{"tpm2":true}}}}]}}}}"#
    );
    let e = rig.run(&clevis, &[Disks]).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.storage.luks.0.clevis"));
    assert_eq!(
        e.message,
        "clevis is not supported by ferrocore (use keyFile)"
    );
    assert_eq!(blkid(&d).1, "crypt");
}

#[test]
fn mounted_partition_is_not_rewritten() {
    let mut rig = Rig::new();
    let d = rig.disk(64);
    sh(&format!(
        "sgdisk -n 1:0:+16M -c 1:busy {d} && partx -u {d} && mkfs.ext4 -q {d}p1"
    ));
    let m = rig.mount_ro(&format!("{d}p1"), "busy");
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"disks":[{{"device":"{d}","partitions":[{{"number":1,"label":"other","wipePartitionEntry":true}}]}}]}}}}"#
    );
    let e = rig.run(&cfg, &[Disks]).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.storage.disks.0.partitions.0"));
    assert_eq!(
        e.message,
        format!(
            "refusing to modify partition 1: {d}p1 is mounted at {}",
            m.display()
        )
    );
    assert_eq!(
        gpt::read(std::path::Path::new(&d))
            .unwrap()
            .get(1)
            .unwrap()
            .label,
        "busy"
    );
    rig.umount(&m);
}
