//! Side by side with the real Ignition 2.14 (Debian package `ignition`, run
//! by shared/peers/run-real-ignition.sh): each case gets two fresh, equally
//! prepared loop disks, one per implementation, runs `fetch` + `disks`, then
//! compares the outcome (success/failure) and the disks: GPT entries
//! (number, start, size, type, name; partition GUIDs only where the config
//! sets them, else random) and what `blkid -p` finds on each partition and
//! whole disk (type, label; UUID only where the config sets it).

use std::path::Path;
use std::process::Command;

use ignition_engine::Stage::Disks;

use super::common::SHARED;
use super::support::{real_ignition_turn, sh, Rig};

struct Case {
    name: &'static str,
    sizes: &'static [u64],
    /// Shell run on both fresh disk sets before the stage (`$D0`, `$D1` set).
    setup: &'static str,
    /// The config, with `$D0`/`$D1` replaced by the disks.
    config: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "fresh-vfat-xfs-ext4-number0-size0",
        sizes: &[512],
        setup: "",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"$D0","wipeTable":true,"partitions":[
 {"number":1,"label":"efi","sizeMiB":32,"typeGuid":"C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
 {"number":2,"label":"data","sizeMiB":320},{"label":"rest","sizeMiB":0}]}],
 "filesystems":[{"device":"$D0p1","format":"vfat","label":"EFI","uuid":"AB12-CD34"},
 {"device":"$D0p2","format":"xfs","label":"data","uuid":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"},
 {"device":"$D0p3","format":"ext4","label":"rest"}]}}"#,
    },
    Case {
        name: "explicit-start-guid-btrfs-swap",
        sizes: &[400],
        setup: "",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"$D0","partitions":[
 {"number":1,"label":"swap","startMiB":4,"sizeMiB":16,"typeGuid":"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F","guid":"aaaaaaaa-1111-2222-3333-444444444444"},
 {"number":2,"label":"btr","startMiB":0,"sizeMiB":200},
 {"number":3,"label":"tail","startMiB":0,"sizeMiB":0}]}],
 "filesystems":[{"device":"$D0p1","format":"swap","label":"sw","uuid":"12345678-9abc-def0-1234-56789abcdef0"},
 {"device":"$D0p2","format":"btrfs","label":"b","uuid":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"},
 {"device":"$D0p3","format":"ext4","wipeFilesystem":true}]}}"#,
    },
    Case {
        name: "keep-existing-partition-and-fs-add-one",
        sizes: &[256],
        setup: "sgdisk -n 1:0:+64M -c 1:a -u 1:11111111-2222-3333-4444-000000000001 $D0 && partx -u $D0 && mkfs.ext4 -q -L keep -U 22222222-3333-4444-5555-000000000001 ${D0}p1",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"$D0","partitions":[
 {"number":1,"label":"a"},{"number":2,"label":"new","sizeMiB":32}]}],
 "filesystems":[{"device":"$D0p1","format":"ext4","label":"keep","uuid":"22222222-3333-4444-5555-000000000001"},
 {"device":"$D0p2","format":"ext4","label":"fresh","uuid":"33333333-4444-5555-6666-000000000001"}]}}"#,
    },
    Case {
        name: "resize-keeps-entry",
        sizes: &[256],
        setup: "sgdisk -n 1:0:+32M -c 1:r -u 1:11111111-2222-3333-4444-000000000002 $D0 && partx -u $D0 && mkfs.ext4 -q -L r -U 22222222-3333-4444-5555-000000000002 ${D0}p1",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"$D0","partitions":[
 {"number":1,"label":"r","sizeMiB":64,"resize":true}]}],
 "filesystems":[{"device":"$D0p1","format":"ext4","label":"r"}]}}"#,
    },
    Case {
        name: "recreate-with-wipePartitionEntry-and-wipeFilesystem",
        sizes: &[256],
        setup: "sgdisk -n 1:0:+32M -c 1:old $D0 && partx -u $D0 && mkfs.ext4 -q -L old ${D0}p1",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"$D0","partitions":[
 {"number":1,"label":"new","sizeMiB":48,"wipePartitionEntry":true}]}],
 "filesystems":[{"device":"$D0p1","format":"vfat","label":"NEW","uuid":"1234abcd","wipeFilesystem":true}]}}"#,
    },
    Case {
        name: "shouldExist-false-delete-and-absent",
        sizes: &[128],
        setup: "sgdisk -n 1:0:+16M -n 2:0:+16M -n 3:0:+16M $D0 && partx -u $D0",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"$D0","partitions":[
 {"number":2,"shouldExist":false,"wipePartitionEntry":true},{"number":4,"shouldExist":false}]}]}}"#,
    },
    Case {
        name: "fail-size-mismatch",
        sizes: &[128],
        setup: "sgdisk -n 1:0:+16M -c 1:x $D0 && partx -u $D0",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"$D0","partitions":[
 {"number":1,"label":"x","sizeMiB":32}]}]}}"#,
    },
    Case {
        name: "fail-existing-fs-other-label",
        sizes: &[128],
        setup: "sgdisk -n 1:0:+32M $D0 && partx -u $D0 && mkfs.ext4 -q -L x ${D0}p1",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"$D0p1","format":"ext4","label":"y"}]}}"#,
    },
    Case {
        name: "none-wipes-and-uuid-case-insensitive-reuse",
        sizes: &[128],
        setup: "sgdisk -n 1:0:+32M -n 2:0:+32M $D0 && partx -u $D0 && mkfs.ext4 -q -L gone ${D0}p1 && mkfs.ext4 -q -U 44444444-5555-6666-7777-000000000abc ${D0}p2",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"$D0p1","format":"none","wipeFilesystem":true},
 {"device":"$D0p2","format":"ext4","uuid":"44444444-5555-6666-7777-000000000ABC"}]}}"#,
    },
    Case {
        name: "vfat-volume-id-with-dash-reused",
        sizes: &[128],
        setup: "sgdisk -n 1:0:+32M $D0 && partx -u $D0 && mkfs.vfat -i AB12CD34 -n BOOT ${D0}p1 >/dev/null",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[{"device":"$D0p1","format":"vfat","label":"BOOT","uuid":"ab12-cd34"}]}}"#,
    },
    Case {
        name: "number0-partitions-fill-free-space",
        sizes: &[128],
        setup: "sgdisk -n 2:40M:+16M -c 2:mid $D0 && partx -u $D0",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"$D0","partitions":[
 {"label":"x","sizeMiB":16},{"label":"y","sizeMiB":0},{"number":2,"label":"mid"}]}]}}"#,
    },
    Case {
        // zap-all rewrites the table, not the data: the old ext4 is found again.
        name: "fail-wipeTable-leaves-old-fs-at-same-start",
        sizes: &[64],
        setup: "sgdisk -n 1:0:+16M -c 1:old $D0 && partx -u $D0 && mkfs.ext4 -q -L old ${D0}p1",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"disks":[{"device":"$D0","wipeTable":true,"partitions":[{"label":"root","sizeMiB":0}]}],
 "filesystems":[{"device":"$D0p1","format":"ext4","label":"root"}]}}"#,
    },
    Case {
        name: "luks-key-file-label-uuid",
        sizes: &[64],
        setup: "",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"luks":[{"name":"fcpeerluks","device":"$D0","label":"crypt","uuid":"5a1b2c3d-0000-4000-8000-00000000abcd","keyFile":{"source":"data:,s3cret"}}],
 "filesystems":[{"device":"/dev/mapper/fcpeerluks","format":"ext4","label":"inside"}]}}"#,
    },
    Case {
        name: "raid1-two-disks",
        sizes: &[64, 64],
        setup: "",
        config: r#"{"ignition":{"version":"3.3.0"},"storage":{"raid":[{"name":"fcpeermd","level":"raid1","devices":["$D0","$D1"]}],
 "filesystems":[{"device":"/dev/md/fcpeermd","format":"ext4","label":"mirror"}]}}"#,
    },
];

fn subst(text: &str, disks: &[String]) -> String {
    let mut t = text.to_string();
    for (i, d) in disks.iter().enumerate() {
        t = t
            .replace(&format!("${{D{i}}}"), d)
            .replace(&format!("$D{i}"), d);
    }
    t
}

/// The disks as the comparison sees them.
fn describe(disks: &[String], config: &str) -> Vec<String> {
    let cfg = config.to_lowercase();
    let known = |v: &str| {
        let v = v.to_lowercase();
        !v.is_empty() && (cfg.contains(&v) || cfg.contains(&v.replace('-', "")))
    };
    let mut out = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        let t = ignition_engine::gpt::read(Path::new(d)).unwrap();
        let (ty, label, uuid) = super::support::blkid(d);
        let uuid = if known(&uuid) {
            uuid
        } else {
            "<random>".into()
        };
        out.push(format!(
            "D{i}: gpt={} blkid=({ty},{label:?},{uuid})",
            t.present
        ));
        for p in &t.partitions {
            let guid = if known(&p.guid) {
                p.guid.clone()
            } else {
                "<random>".into()
            };
            let node = format!("{d}p{}", p.number);
            let (ty, label, uuid) = super::support::blkid(&node);
            let uuid = if uuid.is_empty() || known(&uuid) {
                uuid
            } else {
                "<random>".into()
            };
            out.push(format!(
                "D{i}p{} start={} size={} type={} name={:?} guid={guid} fs=({ty},{label:?},{uuid})",
                p.number, p.start, p.size, p.type_guid, p.label
            ));
        }
    }
    out
}

fn prepare(rig: &mut Rig, case: &Case) -> Vec<String> {
    let disks: Vec<String> = case.sizes.iter().map(|s| rig.disk(*s)).collect();
    if !case.setup.is_empty() {
        sh(&subst(case.setup, &disks));
    }
    disks
}

#[test]
fn same_disks_as_real_ignition() {
    let script = format!("{SHARED}/peers/run-real-ignition.sh");
    assert!(
        Path::new("/usr/lib/dracut/modules.d/30ignition/ignition").exists(),
        "the real Ignition is required (apt-get install ignition python3-gi)"
    );
    let mut report = Vec::new();
    let mut mismatches = Vec::new();
    let mut seen = Vec::new();
    let mut planned = 0;
    for case in CASES {
        // Theirs.
        let mut peer = Rig::new();
        peer.md.push("/dev/md/fcpeermd".into());
        peer.dm.push("fcpeerluks".into());
        let pd = prepare(&mut peer, case);
        let pcfg = subst(case.config, &pd);
        let cfg_path = peer.path("config.ign");
        std::fs::write(&cfg_path, &pcfg).unwrap();
        let turn = real_ignition_turn();
        let out = Command::new("sh")
            .arg(&script)
            .arg(&cfg_path)
            .arg(peer.path("root"))
            .arg("disks")
            .env("LIST", "0")
            .output()
            .unwrap();
        drop(turn);
        let peer_ok = out.status.success();
        let peer_disks = describe(&pd, &pcfg);
        // Stop the array (if the kernel made one) before removing the node
        // mdadm leaves behind when it cannot.
        drop(peer);
        let _ = std::fs::remove_file("/dev/md/fcpeermd");

        // Ours.
        let mut rig = Rig::new();
        rig.md.push("/dev/md/fcpeermd".into());
        rig.dm.push("fcpeerluks".into());
        let od = prepare(&mut rig, case);
        let ocfg = subst(case.config, &od);
        // The dry run first: it must predict the stage's outcome (except
        // where the kernel, not the config, decides: md and dm drivers).
        std::fs::write(rig.path("plan.ign"), &ocfg).unwrap();
        let devs: Vec<std::path::PathBuf> = od.iter().map(std::path::PathBuf::from).collect();
        let plan = ignition_engine::plan::plan_file(&rig.path("plan.ign"), &devs).unwrap();
        let res = rig.run(&ocfg, &[Disks]);
        let kernel_decides = case.name.starts_with("luks") || case.name.starts_with("raid");
        if !kernel_decides {
            planned += 1;
            if plan.fails() != res.is_err() {
                mismatches.push(format!(
                    "{}: plan predicted {} but the stage {}:\n{}",
                    case.name,
                    if plan.fails() { "failure" } else { "success" },
                    if res.is_err() { "failed" } else { "succeeded" },
                    plan.to_text()
                ));
            }
        }
        let our_disks = describe(&od, &ocfg);
        drop(rig);
        let _ = std::fs::remove_file("/dev/md/fcpeermd");

        let ours = match &res {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("failed at {}", e.path.as_deref().unwrap_or("-")),
        };
        let theirs = if peer_ok {
            "ok".to_string()
        } else {
            // Last error line of the real Ignition, to show it failed for the same reason.
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rfind(|l| l.starts_with("CRITICAL") || l.starts_with("ERROR"))
                .unwrap_or("");
            format!("failed: {}", last.chars().take(140).collect::<String>())
        };
        seen.extend(our_disks.iter().cloned());
        report.push(format!(
            "{:<52} ours: {ours}\n{:<52} real: {theirs}",
            case.name, ""
        ));
        if peer_ok != res.is_ok() {
            mismatches.push(format!(
                "{}: outcome differs: real {theirs} ({}), ours {ours} ({:?})",
                case.name,
                String::from_utf8_lossy(&out.stderr).trim(),
                res
            ));
        }
        if peer_disks != our_disks {
            mismatches.push(format!(
                "{}: disks differ\n  real: {peer_disks:#?}\n  ours: {our_disks:#?}",
                case.name
            ));
        }
    }
    // The comparison is only as good as what it sees: make sure it saw the
    // things the cases make.
    for want in [
        "fs=(xfs,\"data\",0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0)",
        "fs=(btrfs,\"b\",",
        "blkid=(crypto_LUKS,\"crypt\",5a1b2c3d",
        "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B name=\"efi\"",
        "guid=AAAAAAAA-1111-2222-3333-444444444444",
    ] {
        assert!(
            seen.iter().any(|l| l.contains(want)),
            "no disk showed {want}: {seen:#?}"
        );
    }
    eprintln!(
        "plan predicted the outcome of {planned} of them (the rest depend on kernel drivers)"
    );
    eprintln!(
        "{} disk configs compared with Ignition 2.14:\n{}",
        CASES.len(),
        report.join("\n")
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// A whole first boot minus the switch: disks, mount, files, umount, with
/// files, a directory and a link written onto the new ext4 and xfs, compared
/// file by file (and the root tree) with the real Ignition.
#[test]
fn full_run_files_on_new_filesystems_match_real_ignition() {
    use super::common::{diff, seed, snapshot};
    use ignition_engine::Stage::{Files, Mount, Umount};
    let config = r#"{"ignition":{"version":"3.3.0"},"storage":{
 "disks":[{"device":"$D0","wipeTable":true,"partitions":[{"number":1,"label":"data","sizeMiB":100},{"number":2,"label":"srv","sizeMiB":320}]}],
 "filesystems":[{"device":"$D0p1","format":"ext4","label":"data","path":"/var/lib/data","mountOptions":["noatime"]},
                {"device":"$D0p2","format":"xfs","label":"srv","path":"/srv"}],
 "files":[{"path":"/var/lib/data/a.txt","mode":416,"contents":{"source":"data:,alpha%0A"}},
          {"path":"/srv/www/index.html","contents":{"source":"data:;base64,PGgxPmhpPC9oMT4K"}},
          {"path":"/etc/motd","contents":{"source":"data:,root%20fs%0A"}}],
 "directories":[{"path":"/srv/cache","mode":488}],
 "links":[{"path":"/srv/current","target":"www"}]}}"#;
    let script = format!("{SHARED}/peers/run-real-ignition.sh");

    let mut peer = Rig::new();
    let pd = prepare(
        &mut peer,
        &Case {
            name: "full",
            sizes: &[512],
            setup: "",
            config,
        },
    );
    let pcfg = subst(config, &pd);
    std::fs::write(peer.path("config.ign"), &pcfg).unwrap();
    let turn = real_ignition_turn();
    let out = Command::new("sh")
        .arg(&script)
        .arg(peer.path("config.ign"))
        .arg(peer.path("root"))
        .args(["disks", "mount", "files", "umount"])
        .env("LIST", "0")
        .output()
        .unwrap();
    drop(turn);
    assert!(
        out.status.success(),
        "real ignition: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut rig = Rig::new();
    let od = prepare(
        &mut rig,
        &Case {
            name: "full",
            sizes: &[512],
            setup: "",
            config,
        },
    );
    seed(&rig.path("root"));
    rig.run(&subst(config, &od), &[Disks, Mount, Files, Umount])
        .unwrap();

    let mut diffs = diff(&snapshot(&rig.path("root")), &snapshot(&peer.path("root")));
    assert!(describe(&od, &subst(config, &od)) == describe(&pd, &pcfg));
    for (n, name) in [(1, "data"), (2, "srv")] {
        let o = rig.mount_ro(&format!("{}p{n}", od[0]), &format!("o{n}"));
        let p = peer.mount_ro(&format!("{}p{n}", pd[0]), &format!("p{n}"));
        let (os, ps) = (snapshot(&o), snapshot(&p));
        assert!(os.len() >= 2, "{name}: nothing on the filesystem: {os:?}");
        diffs.extend(diff(&os, &ps).into_iter().map(|d| format!("{name}: {d}")));
        rig.umount(&o);
        peer.umount(&p);
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
