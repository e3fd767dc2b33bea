//! Bridge to the Ignition config library: Butane's last check runs Ignition's
//! own validation on the generated config (duplicates first, then the
//! semantic rules, as coreos/butane config/util `Translate` does).

use serde_json::Value;

use ignition_config::report::{Entry, Kind, Report};

/// Types the generated config with Ignition's model and validates it as spec
/// `3.<minor>`. Returns the config as Ignition serializes it (Go field order,
/// `omitempty`, `version_str` as the version) and the report in JSON paths.
pub fn finish(cfg: &Value, minor: u8, version_str: &str) -> (Value, Report) {
    let version = crate::schema::spec_version(minor);
    let mut typed: ignition_config::types::Config = match serde_json::from_value(cfg.clone()) {
        Ok(c) => c,
        Err(e) => {
            // Our own output failed to fit Ignition's model: report, never panic.
            let mut r = Report::default();
            r.entries.push(Entry {
                kind: Kind::Error,
                path: ignition_config::report::Path::root(),
                marker: None,
                message: format!("generated config does not fit the Ignition schema: {e}"),
            });
            return (Value::Null, r);
        }
    };
    typed.ignition.version = version.as_str().to_string();
    let mut r = ignition_config::validate_duplicates(&typed);
    let mut semantic = ignition_config::validate_semantics(&typed, version);
    // Butane v0.23.0 vendors the Ignition 2.20 config library (spec 3.5.0).
    // Later Ignition releases warn about special mode bits in older specs;
    // 2.20 does not, so neither does Butane.
    semantic.entries.retain(|e| {
        !e.message
            .starts_with("setuid/setgid/sticky bits are not supported")
    });
    r.merge(semantic);
    partitions_removed_by_label(cfg, &mut r);
    typed.ignition.version = version_str.to_string();
    let out = serde_json::to_value(&typed).unwrap_or(Value::Null);
    (out, r)
}

/// Ignition 2.20's `Partition.Validate` also rejects `shouldExist: false`
/// together with a label; the library models a later release that dropped
/// the label from that rule.
fn partitions_removed_by_label(cfg: &Value, r: &mut Report) {
    use ignition_config::report::Path;
    let disks = cfg.pointer("/storage/disks").and_then(Value::as_array);
    for (d, disk) in disks.map_or(&[][..], Vec::as_slice).iter().enumerate() {
        let parts = disk.get("partitions").and_then(Value::as_array);
        for (p, part) in parts.map_or(&[][..], Vec::as_slice).iter().enumerate() {
            if part.get("shouldExist") != Some(&Value::Bool(false)) || part.get("label").is_none() {
                continue;
            }
            let path = Path::root()
                .key("storage")
                .key("disks")
                .index(d)
                .key("partitions")
                .index(p);
            let msg = "shouldExist specified false with other options also specified";
            if !r.entries.iter().any(|e| e.path == path && e.message == msg) {
                r.error(path, msg);
            }
        }
    }
}
