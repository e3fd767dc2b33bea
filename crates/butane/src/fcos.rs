//! fcos (and openshift) sugar: `boot_device` (LUKS and mirroring with the fixed
//! partition layout of coreos-assembler images), `grub.users`, and the
//! reserved-partition-label warning (coreos/butane config/fcos/v1_6/translate.go).

use serde_json::{json, Map, Value};

use crate::merge::{merge, Ts};
use crate::report::{path, Path, Report, ReportExt};
use crate::util;

const RESERVED_GUID: &str = "8DA63339-0007-60C0-C436-083AC8230908";
const BIOS_GUID: &str = "21686148-6449-6E6F-744E-656564454649";
const PREP_GUID: &str = "9E1A2D38-C612-4316-AA26-8B49521E5A8B";
const ESP_GUID: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

fn is_true(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool) == Some(true)
}

fn part(label: String, size: i64, guid: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("label".into(), Value::String(label));
    m.insert("sizeMiB".into(), Value::from(size));
    if let Some(g) = guid {
        m.insert("typeGuid".into(), Value::String(g.into()));
    }
    Value::Object(m)
}

/// Renders `boot_device` and merges the user's config over it.
pub fn boot_device(src: &Value, cfg: &mut Value, ts: &mut Ts) {
    let Some(bd) = src.get("boot_device") else {
        return;
    };
    let luks = bd.get("luks");
    let lget = |f: &str| luks.and_then(|l| l.get(f));
    let tang: Vec<Value> = lget("tang")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cex = is_true(luks.and_then(|l| l.pointer("/cex/enabled")));
    let want_luks = is_true(lget("tpm2")) || !tang.is_empty() || cex;
    let devices: Vec<String> = bd
        .pointer("/mirror/devices")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let want_mirror = !devices.is_empty();
    if !want_luks && !want_mirror {
        return;
    }
    let layout = bd.get("layout").and_then(Value::as_str).unwrap_or("x86_64");
    let (bios, efi, prep) = match layout {
        "x86_64" => (true, true, false),
        "aarch64" => (false, true, false),
        "ppc64le" => (false, false, true),
        _ => (false, false, false),
    };
    let mut rts = Ts::default();
    let mut disks = Vec::new();
    let mut filesystems = Vec::new();
    let mut raid = Vec::new();
    let bdp = path(&["boot_device"]);
    if want_mirror {
        for (i, device) in devices.iter().enumerate() {
            let n = i + 1;
            let mut parts = Vec::new();
            if bios {
                parts.push(part(format!("bios-{n}"), 1, Some(BIOS_GUID)));
            } else if prep {
                parts.push(part(format!("prep-{n}"), 4, Some(PREP_GUID)));
            } else {
                parts.push(part(format!("reserved-{n}"), 1, Some(RESERVED_GUID)));
            }
            if efi {
                parts.push(part(format!("esp-{n}"), 127, Some(ESP_GUID)));
            } else {
                parts.push(part(format!("reserved-{n}"), 1, Some(RESERVED_GUID)));
            }
            parts.push(part(format!("boot-{n}"), 384, None));
            parts.push(json!({"label": format!("root-{n}")}));
            let disk = json!({"device": device, "partitions": parts, "wipeTable": true});
            let yp = path(&["boot_device", "mirror", "devices", &i.to_string()]);
            rts.add_tree(&path(&["storage", "disks", &i.to_string()]), &yp, &disk);
            disks.push(disk);
            if efi {
                let fs = json!({
                    "device": format!("/dev/disk/by-partlabel/esp-{n}"),
                    "format": "vfat",
                    "label": format!("esp-{n}"),
                    "wipeFilesystem": true,
                });
                rts.add_tree(
                    &path(&["storage", "filesystems", &filesystems.len().to_string()]),
                    &yp,
                    &fs,
                );
                filesystems.push(fs);
            }
        }
        let devs = |prefix: &str| -> Vec<Value> {
            (1..=devices.len())
                .map(|n| Value::String(format!("/dev/disk/by-partlabel/{prefix}-{n}")))
                .collect()
        };
        raid.push(json!({"devices": devs("boot"), "level": "raid1", "name": "md-boot", "options": ["--metadata=1.0"]}));
        raid.push(json!({"devices": devs("root"), "level": "raid1", "name": "md-root"}));
        let mp = path(&["boot_device", "mirror"]);
        rts.add_tree(
            &path(&["storage", "raid"]),
            &mp,
            &Value::Array(raid.clone()),
        );
        let fs = json!({"device": "/dev/md/md-boot", "format": "ext4", "label": "boot", "wipeFilesystem": true});
        rts.add_tree(
            &path(&["storage", "filesystems", &filesystems.len().to_string()]),
            &mp,
            &fs,
        );
        filesystems.push(fs);
    }
    let mut luks_list = Vec::new();
    if want_luks {
        let ldev = lget("device").and_then(Value::as_str).unwrap_or_default();
        let device = match layout {
            "s390x-eckd" => format!("{ldev}2"),
            "s390x-zfcp" => format!("{ldev}4"),
            _ if want_mirror => "/dev/md/md-root".into(),
            _ => "/dev/disk/by-partlabel/root".into(),
        };
        let mut l = Map::new();
        let lp = path(&["boot_device", "luks"]);
        if cex {
            l.insert("cex".into(), json!({"enabled": true}));
        } else {
            let mut c = Map::new();
            if !tang.is_empty() {
                let t: Vec<Value> = tang
                    .iter()
                    .map(|t| {
                        let mut m = Map::new();
                        for (sk, jk) in [
                            ("advertisement", "advertisement"),
                            ("thumbprint", "thumbprint"),
                            ("url", "url"),
                        ] {
                            if let Some(v) = t.get(sk) {
                                m.insert(jk.into(), v.clone());
                            }
                        }
                        Value::Object(m)
                    })
                    .collect();
                c.insert("tang".into(), Value::Array(t));
            }
            if let Some(th) = lget("threshold") {
                c.insert("threshold".into(), th.clone());
            }
            if let Some(tpm) = lget("tpm2") {
                c.insert("tpm2".into(), tpm.clone());
            }
            l.insert("clevis".into(), Value::Object(c));
        }
        l.insert("device".into(), Value::String(device));
        if let Some(d) = lget("discard") {
            l.insert("discard".into(), d.clone());
        }
        l.insert("label".into(), json!("luks-root"));
        l.insert("name".into(), json!("root"));
        l.insert("wipeVolume".into(), json!(true));
        let lv = Value::Object(l);
        let jp = path(&["storage", "luks", "0"]);
        rts.add_tree(&jp, &lp, &lv);
        // Clevis and CEX fields map to their own YAML fields.
        let mut cj = jp.clone();
        cj.push(crate::report::PathElem::Key(
            if cex { "cex" } else { "clevis" }.into(),
        ));
        if let Some(sub) = lv.get(if cex { "cex" } else { "clevis" }) {
            let mut y = lp.clone();
            if cex {
                y.push(crate::report::PathElem::Key("cex".into()));
            }
            add_snake_tree(&mut rts, &cj, &y, sub);
        }
        let mut dj = jp.clone();
        dj.push(crate::report::PathElem::Key("discard".into()));
        let mut dy = lp.clone();
        dy.push(crate::report::PathElem::Key("discard".into()));
        rts.add(dj, dy);
        rts.add(path(&["storage", "luks"]), lp.clone());
        luks_list.push(lv);
    }
    let root_device = if want_luks {
        "/dev/mapper/root"
    } else {
        "/dev/md/md-root"
    };
    let fs =
        json!({"device": root_device, "format": "xfs", "label": "root", "wipeFilesystem": true});
    rts.add_tree(
        &path(&["storage", "filesystems", &filesystems.len().to_string()]),
        &bdp,
        &fs,
    );
    filesystems.push(fs);
    rts.add(path(&["storage", "filesystems"]), bdp.clone());
    rts.add(path(&["storage"]), bdp.clone());
    let mut storage = Map::new();
    if !disks.is_empty() {
        storage.insert("disks".into(), Value::Array(disks));
        rts.add(
            path(&["storage", "disks"]),
            path(&["boot_device", "mirror", "devices"]),
        );
    }
    storage.insert("filesystems".into(), Value::Array(filesystems));
    if !luks_list.is_empty() {
        storage.insert("luks".into(), Value::Array(luks_list));
    }
    if !raid.is_empty() {
        storage.insert("raid".into(), Value::Array(raid));
    }
    let rendered = json!({ "storage": storage });
    let (m, t) = merge(&rendered, &rts, cfg, ts);
    *cfg = m;
    *ts = t;
}

/// Records json→yaml for a subtree whose YAML keys are the snake_case JSON keys.
fn add_snake_tree(ts: &mut Ts, jp: &Path, yp: &Path, v: &Value) {
    ts.add(jp.clone(), yp.clone());
    match v {
        Value::Object(m) => {
            for (k, sub) in m {
                let mut j = jp.clone();
                j.push(crate::report::PathElem::Key(k.clone()));
                let mut y = yp.clone();
                y.push(crate::report::PathElem::Key(crate::schema::snake(k)));
                add_snake_tree(ts, &j, &y, sub);
            }
        }
        Value::Array(a) => {
            for (i, sub) in a.iter().enumerate() {
                let mut j = jp.clone();
                j.push(crate::report::PathElem::Index(i));
                let mut y = yp.clone();
                y.push(crate::report::PathElem::Index(i));
                add_snake_tree(ts, &j, &y, sub);
            }
        }
        _ => {}
    }
}

/// Warns about reserved partition labels with the wrong number on disks that
/// are not wiped (numbers are looked up in the translated config).
pub fn reserved_labels(cfg: &Value, ts: &Ts, r: &mut Report) {
    let Some(disks) = cfg.pointer("/storage/disks").and_then(Value::as_array) else {
        return;
    };
    for (d, disk) in disks.iter().enumerate() {
        if is_true(disk.get("wipeTable")) {
            continue;
        }
        let parts = disk
            .get("partitions")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for (p, part) in parts.iter().enumerate() {
            let Some(label) = part.get("label").and_then(Value::as_str) else {
                continue;
            };
            let number = part.get("number").and_then(Value::as_i64).unwrap_or(0);
            let want = match label {
                "BIOS-BOOT" | "PowerPC-PReP-boot" => 1,
                "EFI-SYSTEM" => 2,
                "boot" => 3,
                "root" => 4,
                _ => continue,
            };
            if number != want {
                let jp = path(&[
                    "storage",
                    "disks",
                    &d.to_string(),
                    "partitions",
                    &p.to_string(),
                    "label",
                ]);
                r.warning(
                    ts.lookup(&jp),
                    "incorrect partition number; a new partition will be created using reserved label",
                );
            }
        }
    }
}

/// Renders `grub.users` into `/boot/grub2/user.cfg` and merges the config over it.
pub fn grub(src: &Value, cfg: &mut Value, ts: &mut Ts) {
    let users = src
        .pointer("/grub/users")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if users.is_empty() {
        return;
    }
    let s = |u: &Value, k: &str| {
        u.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let names: Vec<String> = users.iter().map(|u| s(u, "name")).collect();
    let mut text = format!(
        "# Generated by Butane\n\nset superusers=\"{}\"\n",
        names.join(" ")
    );
    for u in users {
        text.push_str(&format!(
            "password_pbkdf2 {} {}\n",
            s(u, "name"),
            s(u, "password_hash")
        ));
    }
    let (url, comp) = util::make_data_url(text.as_bytes(), None);
    let mut res = Map::new();
    if let Some(c) = comp {
        res.insert("compression".into(), Value::String(c));
    }
    res.insert("source".into(), Value::String(url));
    let rendered = json!({"storage": {
        "files": [{"path": "/boot/grub2/user.cfg", "append": [Value::Object(res)]}],
        "filesystems": [{"device": "/dev/disk/by-label/boot", "format": "ext4", "path": "/boot"}],
    }});
    let mut rts = Ts::default();
    rts.add_tree(
        &path(&["storage"]),
        &path(&["grub", "users"]),
        &rendered["storage"],
    );
    let (m, t) = merge(&rendered, &rts, cfg, ts);
    *cfg = m;
    *ts = t;
}
