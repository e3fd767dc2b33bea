//! `plan`: the disks stage as a dry run. Each case checks the listing and
//! that the disk is byte-for-byte untouched; one case then runs the stage
//! and checks the plan told the truth.

use std::path::{Path, PathBuf};

use ignition_engine::plan::{plan_file, Action, Plan};
use ignition_engine::Stage::Disks;

use super::support::{blkid, sh, Rig};

fn plan_of(rig: &Rig, cfg: &str, devices: &[&str]) -> Plan {
    let p = rig.path("plan.ign");
    std::fs::write(&p, cfg).unwrap();
    let devs: Vec<PathBuf> = devices.iter().map(PathBuf::from).collect();
    plan_file(&p, &devs).unwrap()
}

fn image_bytes(dev: &str) -> Vec<u8> {
    std::fs::read(dev).unwrap()
}

fn steps(p: &Plan) -> Vec<(String, Action, bool)> {
    p.steps
        .iter()
        .map(|s| (s.path.clone(), s.action, s.data_loss.is_some()))
        .collect()
}

#[test]
fn plan_flags_data_loss_and_failures_without_writing() {
    let mut rig = Rig::new();
    let d = rig.disk(256);
    let other = rig.disk(16);
    sh(&format!(
        "sgdisk -n 1:0:+32M -c 1:root -n 2:0:+32M -c 2:var -n 3:0:+16M -c 3:scratch {d} && partx -u {d} \
         && mkfs.ext4 -q -L root {d}p1 && mkfs.ext4 -q -L var {d}p2"
    ));
    let before = image_bytes(&d);
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{
  "disks":[{{"device":"{d}","partitions":[
    {{"number":1,"label":"root","startMiB":1,"sizeMiB":32}},
    {{"number":2,"label":"var2","startMiB":33,"sizeMiB":48,"wipePartitionEntry":true}},
    {{"number":3,"shouldExist":false,"wipePartitionEntry":true}},
    {{"number":4,"label":"new","startMiB":90,"sizeMiB":16}}]}}],
  "filesystems":[
    {{"device":"{d}p1","format":"ext4","label":"root"}},
    {{"device":"{d}p2","format":"xfs","wipeFilesystem":true}},
    {{"device":"/dev/disk/by-partlabel/new","format":"ext4"}},
    {{"device":"{other}","format":"ext4"}}]}}}}"#
    );
    let p = plan_of(&rig, &cfg, &[&d]);
    let text = p.to_text();
    assert_eq!(
        steps(&p),
        [
            ("$.storage.disks.0.partitions.0".into(), Action::Keep, false),
            (
                "$.storage.disks.0.partitions.1".into(),
                Action::Recreate,
                true
            ),
            (
                "$.storage.disks.0.partitions.2".into(),
                Action::Delete,
                false
            ),
            (
                "$.storage.disks.0.partitions.3".into(),
                Action::Create,
                false
            ),
            ("$.storage.filesystems.0".into(), Action::Keep, false),
            // p2 is recreated at its old start: the old ext4 is still there
            // (sgdisk rewrites entries, not data), and wiped.
            ("$.storage.filesystems.1".into(), Action::Recreate, true),
            ("$.storage.filesystems.2".into(), Action::Create, false),
            ("$.storage.filesystems.3.device".into(), Action::Fail, false),
        ],
        "{text}"
    );
    assert!(
        text.contains("DATA LOSS: partition 2 holds ext4 signature label \"var\""),
        "{text}"
    );
    assert!(text.contains("is not one of the --devices given"), "{text}");
    assert!(p.fails() && p.data_loss());
    assert_eq!(image_bytes(&d), before, "plan wrote to the disk");

    // Filesystem-level loss, table wipe, and a refused reuse.
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{
  "filesystems":[{{"device":"{d}p1","format":"xfs","wipeFilesystem":true}},
                 {{"device":"{d}p2","format":"ext4","label":"other"}}]}}}}"#
    );
    let p = plan_of(&rig, &cfg, &[&d]);
    assert_eq!(
        steps(&p),
        [
            ("$.storage.filesystems.0".into(), Action::Recreate, true),
            ("$.storage.filesystems.1".into(), Action::Fail, false),
        ]
    );
    assert!(p.steps[1].detail.contains("found ext4, \"var\""));
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"disks":[{{"device":"{d}","wipeTable":true,"partitions":[{{"number":1,"sizeMiB":64}}]}}]}}}}"#
    );
    let p = plan_of(&rig, &cfg, &[&d]);
    assert_eq!(
        steps(&p),
        [
            (
                "$.storage.disks.0.wipeTable".into(),
                Action::WipeTable,
                true
            ),
            (
                "$.storage.disks.0.partitions.0".into(),
                Action::Create,
                false
            ),
        ]
    );
    let loss = p.steps[0].data_loss.clone().unwrap();
    assert!(
        loss.contains("partition 1 \"root\" (ext4") && loss.contains("partition 3 \"scratch\""),
        "{loss}"
    );
    assert!(
        p.steps[1]
            .detail
            .starts_with("start sector 2048, 131072 sectors (64 MiB)"),
        "{}",
        p.steps[1].detail
    );
    assert_eq!(image_bytes(&d), before, "plan wrote to the disk");
}

#[test]
fn plan_matches_what_the_stage_then_does() {
    let mut rig = Rig::new();
    let d = rig.disk(128);
    sh(&format!(
        "sgdisk -n 1:0:+32M -c 1:a {d} && partx -u {d} && mkfs.ext4 -q -L a {d}p1"
    ));
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{
  "disks":[{{"device":"{d}","partitions":[{{"number":1,"label":"a"}},{{"number":2,"label":"b","sizeMiB":0}}]}}],
  "filesystems":[{{"device":"{d}p1","format":"ext4","label":"a"}},{{"device":"{d}p2","format":"ext4","label":"b"}}]}}}}"#
    );
    let p = plan_of(&rig, &cfg, &[&d]);
    assert!(!p.fails() && !p.data_loss(), "{}", p.to_text());
    let create = &p.steps[1];
    assert_eq!(create.action, Action::Create);
    let (a_uuid, b_before) = (
        blkid(&format!("{d}p1")).2,
        Path::new(&format!("{d}p2")).exists(),
    );
    assert!(!b_before);
    rig.run(&cfg, &[Disks]).unwrap();
    // Kept: same filesystem; created where the plan said.
    assert_eq!(blkid(&format!("{d}p1")).2, a_uuid);
    let t = ignition_engine::gpt::read(Path::new(&d)).unwrap();
    let p2 = t.get(2).unwrap();
    assert!(
        create
            .detail
            .starts_with(&format!("start sector {}, {} sectors (", p2.start, p2.size)),
        "{}",
        create.detail
    );
    assert!(create.detail.ends_with("label \"b\""), "{}", create.detail);
    assert_eq!(blkid(&format!("{d}p2")).0, "ext4");
    // A second plan now keeps everything.
    let again = plan_of(&rig, &cfg, &[&d]);
    assert!(
        again.steps.iter().all(|s| s.action == Action::Keep),
        "{}",
        again.to_text()
    );
}

#[test]
fn plan_json_and_unlisted_devices() {
    let mut rig = Rig::new();
    let d = rig.disk(64);
    sh(&format!("mkfs.ext4 -q -L whole {d}"));
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"filesystems":[{{"device":"{d}","format":"xfs","wipeFilesystem":true}}]}}}}"#
    );
    let p = plan_of(&rig, &cfg, &[&d]);
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["steps"][0]["action"], "recreate");
    assert_eq!(json["steps"][0]["path"], "$.storage.filesystems.0");
    assert!(json["steps"][0]["dataLoss"]
        .as_str()
        .unwrap()
        .contains("ext4 signature label \"whole\""));
    // Unlisted device: nothing probed, a failing step.
    let p = plan_of(&rig, &cfg, &["/dev/null"]);
    assert_eq!(p.steps[0].action, Action::Fail);
}
