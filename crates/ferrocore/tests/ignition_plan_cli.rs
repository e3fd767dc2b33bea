//! `ferrocore ignition plan` end to end on a loop device: text and JSON
//! output, exit codes, and that nothing is written. Needs root and loop
//! devices (CI runs as root): it fails, never skips, without them.

use std::process::Command;

struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).output();
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn plan(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrocore"))
        .args(["ignition", "plan"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plan_text_json_and_exit_codes() {
    assert!(
        std::path::Path::new("/dev/loop-control").exists() && sh("id -u").trim() == "0",
        "this test needs root and loop devices"
    );
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("d.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let dev = Loop(
        sh(&format!("losetup -f -P --show {}", img.display()))
            .trim()
            .to_string(),
    );
    let d = dev.0.as_str();
    sh(&format!(
        "sgdisk -n 1:0:+16M -c 1:old {d} && partx -u {d} && mkfs.ext4 -q -L old {d}p1"
    ));
    let before = std::fs::read(d).unwrap();
    let cfg = t.path().join("c.ign");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"disks":[{{"device":"{d}","wipeTable":true,"partitions":[{{"label":"root","sizeMiB":0}}]}}],
"filesystems":[{{"device":"/dev/disk/by-partlabel/root","format":"ext4","label":"root","wipeFilesystem":true}}]}}}}"#
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();

    let (code, out, err) = plan(&[c, "--devices", d]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "wipe-table $.storage.disks.0.wipeTable  {d}: 1 partition entries removed"
        )),
        "{out}"
    );
    assert!(
        lines[1].contains("DATA LOSS: partition 1 \"old\" (ext4 signature label \"old\""),
        "{out}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "create     $.storage.disks.0.partitions.0  {d} #1: start sector 2048, "
        )),
        "{out}"
    );
    // The new partition starts where the old one did: its ext4 is still
    // there for the filesystem step (sgdisk rewrites entries, not data).
    assert!(lines[3].starts_with(&format!("recreate   $.storage.filesystems.0  /dev/disk/by-partlabel/root: wipefs, then ext4 label \"root\" (on new partition 1 on {d} (starting where old partition 1 did): old ext4 signature label \"old\"")), "{out}");
    assert!(
        lines[4]
            .contains("DATA LOSS: /dev/disk/by-partlabel/root holds ext4 signature label \"old\""),
        "{out}"
    );
    assert_eq!(lines[5], "3 steps, 2 destroying data, 0 failing");

    let (code, out, _) = plan(&[c, "--devices", d, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["steps"][0]["action"], "wipe-table");
    assert!(v["steps"][0]["dataLoss"].is_string());
    assert!(v["steps"][1].get("dataLoss").is_none());

    // A device outside --devices: the plan says the stage would fail, exit 1.
    let (code, out, _) = plan(&[c, "--devices", "/dev/null"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("FAIL       $.storage.disks.0.device"),
        "{out}"
    );
    // Bad usage and unreadable configs: exit 2.
    assert_eq!(plan(&[c]).0, 2);
    let (code, _, err) = plan(&["/nonexistent.ign", "--devices", d]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.ign"), "{err}");

    assert_eq!(std::fs::read(d).unwrap(), before, "plan wrote to the disk");
}
