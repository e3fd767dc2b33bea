//! Stage 4: Butane's own checks on the source config (the `Validate` methods of
//! coreos/butane's schemas, base and variant), run before translation.

use serde_json::Value;

use crate::report::{path, Path, PathElem, Report, ReportExt};
use crate::util;

/// What the selected variant/version enables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    /// fcos 1.3+ / openshift: `boot_device`.
    pub boot_device: bool,
    /// fcos 1.6+: s390x layouts, CEX, mount path and reuse-by-label checks.
    pub fcos_1_6: bool,
    /// fcos 1.5+ / openshift 4.14+: `grub`.
    pub grub: bool,
    /// fcos and openshift: reserved-label partition number warning.
    pub reserved_labels: bool,
    /// openshift: `metadata` and `openshift` sections.
    pub openshift: bool,
}

fn k(p: &Path, key: &str) -> Path {
    let mut p = p.clone();
    p.push(PathElem::Key(key.into()));
    p
}

fn i(p: &Path, i: usize) -> Path {
    let mut p = p.clone();
    p.push(PathElem::Index(i));
    p
}

fn items<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn is_true(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool) == Some(true)
}

/// Runs every source check and returns the findings in upstream order.
pub fn validate(cfg: &Value, rules: Rules) -> Report {
    let mut r = Report::default();
    if rules.openshift {
        openshift_metadata(cfg, &mut r);
    }
    if rules.fcos_1_6 {
        fcos_config_checks(cfg, &mut r);
    }
    base(cfg, &mut r);
    if rules.boot_device {
        boot_device(cfg, rules, &mut r);
    }
    if rules.grub {
        for (n, u) in items(cfg, "/grub/users").iter().enumerate() {
            let p = path(&["grub", "users", &n.to_string()]);
            if u.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                r.err(k(&p, "name"), "field \"name\" is required");
            }
            if u.get("password_hash")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                r.err(
                    k(&p, "password_hash"),
                    "field \"password_hash\" is required",
                );
            }
        }
    }
    if rules.openshift {
        if let Some(t) = cfg
            .pointer("/openshift/kernel_type")
            .and_then(Value::as_str)
        {
            if !matches!(t, "" | "default" | "realtime") {
                r.err(
                    path(&["openshift", "kernel_type"]),
                    "must be empty, \"default\", or \"realtime\"",
                );
            }
        }
    }
    r
}

fn openshift_metadata(cfg: &Value, r: &mut Report) {
    if cfg
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        r.err(path(&["metadata", "name"]), "metadata.name is required");
    }
    let role = cfg
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .and_then(|l| l.get("machineconfiguration.openshift.io/role"))
        .and_then(Value::as_str);
    if role.is_none_or(str::is_empty) {
        r.err(
            path(&["metadata", "labels"]),
            "machineconfiguration.openshift.io/role label is required",
        );
    }
}

/// fcos 1.6 `Config.Validate`: mount unit paths and partitions reused by label.
fn fcos_config_checks(cfg: &Value, r: &mut Report) {
    for (n, fs) in items(cfg, "/storage/filesystems").iter().enumerate() {
        if !is_true(fs.get("with_mount_unit")) {
            continue;
        }
        if let Some(p) = fs.get("path").and_then(Value::as_str) {
            let ok = ["/etc", "/var"]
                .iter()
                .any(|pre| p == *pre || p.starts_with(&format!("{pre}/")));
            if !ok {
                r.err(
                    path(&["storage", "filesystems", &n.to_string(), "path"]),
                    "path must be under /etc or /var if with_mount_unit is true",
                );
            }
        }
    }
    for (d, disk) in items(cfg, "/storage/disks").iter().enumerate() {
        let device = disk
            .get("device")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if device == "/dev/disk/by-id/coreos-boot-disk" || is_true(disk.get("wipe_table")) {
            continue;
        }
        for (p, part) in items(disk, "/partitions").iter().enumerate() {
            let number = part.get("number").and_then(Value::as_i64).unwrap_or(0);
            if number == 0 && part.get("label").and_then(Value::as_str).is_some() {
                r.warning(
                    path(&["storage", "disks", &d.to_string(), "partitions", &p.to_string(), "number"]),
                    "partitions cannot be reused by label; number must be specified except on boot disk (/dev/disk/by-id/coreos-boot-disk) or when wipe_table is true",
                );
            }
        }
    }
}

fn resource(v: &Value, p: &Path, r: &mut Report) {
    let set: Vec<&str> = ["local", "inline", "source"]
        .into_iter()
        .filter(|f| v.get(*f).is_some())
        .collect();
    if set.len() > 1 {
        r.err(
            k(p, set[set.len() - 1]),
            "only one of the following can be set: inline, local, source",
        );
    }
}

fn base(cfg: &Value, r: &mut Report) {
    let ign = path(&["ignition", "config"]);
    for (n, m) in items(cfg, "/ignition/config/merge").iter().enumerate() {
        resource(m, &i(&k(&ign, "merge"), n), r);
    }
    if let Some(rep) = cfg.pointer("/ignition/config/replace") {
        resource(rep, &k(&ign, "replace"), r);
    }
    for (n, ca) in items(cfg, "/ignition/security/tls/certificate_authorities")
        .iter()
        .enumerate()
    {
        resource(
            ca,
            &path(&[
                "ignition",
                "security",
                "tls",
                "certificate_authorities",
                &n.to_string(),
            ]),
            r,
        );
    }
    for (n, d) in items(cfg, "/storage/directories").iter().enumerate() {
        if let Some(mode) = d.get("mode").and_then(Value::as_i64) {
            if util::is_decimal_mode_mistake(mode, true) {
                r.warning(
                    path(&["storage", "directories", &n.to_string(), "mode"]),
                    "unreasonable mode would be reasonable if specified in octal; remember to add a leading zero",
                );
            }
        }
    }
    for (n, f) in items(cfg, "/storage/files").iter().enumerate() {
        let p = path(&["storage", "files", &n.to_string()]);
        if let Some(mode) = f.get("mode").and_then(Value::as_i64) {
            if util::is_decimal_mode_mistake(mode, false) {
                r.warning(
                    k(&p, "mode"),
                    "unreasonable mode would be reasonable if specified in octal; remember to add a leading zero",
                );
            }
        }
        for (a, ap) in items(f, "/append").iter().enumerate() {
            resource(ap, &i(&k(&p, "append"), a), r);
        }
        if let Some(c) = f.get("contents") {
            resource(c, &k(&p, "contents"), r);
        }
    }
    for (n, fs) in items(cfg, "/storage/filesystems").iter().enumerate() {
        if !is_true(fs.get("with_mount_unit")) {
            continue;
        }
        let p = path(&["storage", "filesystems", &n.to_string()]);
        let format = fs.get("format").and_then(Value::as_str);
        if format.is_none_or(str::is_empty) {
            r.err(
                k(&p, "format"),
                "format is required if with_mount_unit is true",
            );
        } else if format != Some("swap")
            && fs
                .get("path")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            r.err(
                k(&p, "path"),
                "path is required if with_mount_unit is true and format is not swap",
            );
        }
    }
    for (n, l) in items(cfg, "/storage/luks").iter().enumerate() {
        if let Some(kf) = l.get("key_file") {
            resource(
                kf,
                &path(&["storage", "luks", &n.to_string(), "key_file"]),
                r,
            );
        }
    }
    for (n, t) in items(cfg, "/storage/trees").iter().enumerate() {
        if t.get("local")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            r.err(
                path(&["storage", "trees", &n.to_string()]),
                "local is required",
            );
        }
    }
    for (n, u) in items(cfg, "/systemd/units").iter().enumerate() {
        let p = path(&["systemd", "units", &n.to_string()]);
        if u.get("contents").is_some() && u.get("contents_local").is_some() {
            r.err(
                k(&p, "contents_local"),
                "only one of the following can be set: contents, contents_local",
            );
        }
        for (d, dr) in items(u, "/dropins").iter().enumerate() {
            if dr.get("contents").is_some() && dr.get("contents_local").is_some() {
                r.err(
                    k(&i(&k(&p, "dropins"), d), "contents_local"),
                    "only one of the following can be set: contents, contents_local",
                );
            }
        }
    }
}

fn boot_device(cfg: &Value, rules: Rules, r: &mut Report) {
    let Some(bd) = cfg.get("boot_device") else {
        return;
    };
    let bp = path(&["boot_device"]);
    let layout = bd.get("layout").and_then(Value::as_str);
    let devices = items(bd, "/mirror/devices");
    let luks = bd.get("luks");
    let lget = |f: &str| luks.and_then(|l| l.get(f));
    let cex = is_true(luks.and_then(|l| l.pointer("/cex/enabled")));
    let s390x = matches!(layout, Some("s390x-eckd" | "s390x-zfcp" | "s390x-virt"));
    // BootDevice.Validate
    if let Some(l) = layout {
        let valid = if rules.fcos_1_6 {
            matches!(l, "aarch64" | "ppc64le" | "x86_64") || s390x
        } else {
            matches!(l, "aarch64" | "ppc64le" | "x86_64")
        };
        if !valid {
            let list = if rules.fcos_1_6 {
                "aarch64, ppc64le, s390x-eckd, s390x-virt, s390x-zfcp, x86_64"
            } else {
                "aarch64, ppc64le, x86_64"
            };
            r.err(k(&bp, "layout"), format!("layout must be one of: {list}"));
        }
        if s390x && !devices.is_empty() {
            r.err(
                k(&bp, "layout"),
                "mirroring not supported on layouts: s390x-eckd, s390x-zfcp, s390x-virt",
            );
        }
        if matches!(l, "s390x-eckd" | "s390x-zfcp") {
            match lget("device").and_then(Value::as_str) {
                None => r.err(
                    k(&bp, "layout"),
                    "device is required for layouts: s390x-eckd, s390x-zfcp",
                ),
                Some(d) => {
                    let ok = if l == "s390x-eckd" {
                        d.len() == "/dev/dasda".len()
                            && d.starts_with("/dev/dasd")
                            && d.as_bytes()[9].is_ascii_lowercase()
                    } else {
                        d.len() == "/dev/sda".len()
                            && d.starts_with("/dev/sd")
                            && d.as_bytes()[7].is_ascii_lowercase()
                    };
                    if !ok {
                        r.err(
                            k(&bp, "layout"),
                            "device name must start with /dev/dasd on s390x-eckd layout or /dev/sd on s390x-zfcp layout",
                        );
                    }
                }
            }
        }
    }
    if cex {
        match layout {
            None => r.err(
                path(&["boot_device", "luks", "cex"]),
                "when using cex the targeted architecture must match s390x",
            ),
            Some(_) if !s390x => r.err(
                k(&bp, "layout"),
                "when using cex the targeted architecture must match s390x",
            ),
            _ => {}
        }
    }
    let mirror_err = |r: &mut Report| {
        if devices.len() == 1 {
            r.err(
                path(&["boot_device", "mirror", "devices"]),
                "mirroring requires at least two devices",
            );
        }
    };
    mirror_err(r);
    // BootDeviceLuks.Validate
    if cex
        && (is_true(lget("tpm2"))
            || lget("tang")
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty()))
    {
        r.err(k(&bp, "luks"), "cannot use cex with clevis");
    }
    // BootDeviceMirror.Validate: v0.23.0 reports the device count a second time.
    mirror_err(r);
}
