//! The `openshift` variant: MachineConfig metadata, `openshift.*` settings,
//! the MCO's restrictions, FIPS LUKS ciphers, and MachineConfig YAML output
//! (coreos/butane config/openshift/v4_18).

use serde_json::{json, Map, Value};

use crate::merge::Ts;
use crate::report::{path, Report, ReportExt};
use crate::schema::{vstruct, BTy, Extras};

/// Adds `metadata` and `openshift` to the schema.
pub fn schema_extras(extras: &mut Extras) {
    let metadata = vstruct(
        extras,
        "Metadata",
        vec![("name", BTy::Str), ("labels", BTy::StrMap)],
    );
    let openshift = vstruct(
        extras,
        "OpenShift",
        vec![
            ("extensions", BTy::List(Box::new(BTy::Str))),
            ("fips", BTy::Bool),
            ("kernel_arguments", BTy::List(Box::new(BTy::Str))),
            ("kernel_type", BTy::Str),
        ],
    );
    extras.top.push(("metadata".into(), metadata));
    extras.top.push(("openshift".into(), openshift));
}

fn items<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Translation-time MCO checks and FIPS cipher options.
pub fn translate(_minor: u8, src: &Value, cfg: &mut Value, ts: &Ts, r: &mut Report) {
    for (i, u) in items(cfg, "/passwd/users").iter().enumerate() {
        if u.get("name").and_then(Value::as_str) != Some("core") {
            r.err(
                ts.lookup(&path(&["passwd", "users", &i.to_string(), "name"])),
                "users other than \"core\" are not supported in this spec version",
            );
        }
    }
    for (i, fs) in items(cfg, "/storage/filesystems").iter().enumerate() {
        match fs.get("format").and_then(Value::as_str) {
            Some("btrfs") => r.err(
                ts.lookup(&path(&["storage", "filesystems", &i.to_string(), "format"])),
                "btrfs is not supported in this spec version",
            ),
            Some("none") => r.err(
                ts.lookup(&path(&["storage", "filesystems", &i.to_string(), "format"])),
                "format \"none\" is not supported in this spec version",
            ),
            _ => {}
        }
    }
    for (i, f) in items(cfg, "/storage/files").iter().enumerate() {
        if let Some(s) = f.pointer("/contents/source").and_then(Value::as_str) {
            if !s.starts_with("data:") {
                r.err(
                    ts.lookup(&path(&[
                        "storage",
                        "files",
                        &i.to_string(),
                        "contents",
                        "source",
                    ])),
                    "file contents source must be data URL in this spec version",
                );
            }
        }
        if let Some(m) = f.get("mode").and_then(Value::as_i64) {
            if m & 0o7000 != 0 {
                r.err(
                    ts.lookup(&path(&["storage", "files", &i.to_string(), "mode"])),
                    "special mode bits are not supported in this spec version",
                );
            }
        }
    }
    if src.pointer("/openshift/fips").and_then(Value::as_bool) == Some(true) {
        if let Some(luks) = cfg
            .pointer_mut("/storage/luks")
            .and_then(Value::as_array_mut)
        {
            for l in luks {
                let opts = l
                    .as_object_mut()
                    .expect("luks entries are objects")
                    .entry("options")
                    .or_insert_with(|| json!([]));
                let has = opts.as_array().is_some_and(|o| {
                    o.iter().any(|x| {
                        let s = x.as_str().unwrap_or_default();
                        s == "--cipher" || s == "-c" || s.starts_with("--cipher=")
                    })
                });
                if !has {
                    if let Some(a) = opts.as_array_mut() {
                        a.push(json!("--cipher"));
                        a.push(json!("aes-cbc-essiv:sha256"));
                    }
                }
            }
        }
    }
}

/// Stage 6 for openshift: fields the MCO does not support, and raw-mode elisions.
pub fn filters(minor: u8, src: &Value, cfg: &Value, ts: &Ts, raw: bool, r: &mut Report) {
    let non_empty = crate::variant::non_empty;
    if minor >= 14 && cfg.get("kernelArguments").is_some_and(non_empty) {
        r.err(
            ts.lookup(&path(&["kernelArguments"])),
            "this section cannot be used for kernel arguments in this spec version; use openshift.kernel_arguments instead",
        );
    }
    if cfg.pointer("/passwd/groups").is_some_and(non_empty) {
        r.err(
            ts.lookup(&path(&["passwd", "groups"])),
            "groups are not supported in this spec version",
        );
    }
    for (i, u) in items(cfg, "/passwd/users").iter().enumerate() {
        if let Some(m) = u.as_object() {
            for (k, v) in m {
                let allowed =
                    k == "name" || k == "sshAuthorizedKeys" || (k == "passwordHash" && minor >= 13);
                if !allowed && non_empty(v) {
                    r.err(
                        ts.lookup(&path(&["passwd", "users", &i.to_string(), k])),
                        "fields other than \"name\", \"ssh_authorized_keys\", and \"password_hash\" (4.13.0+) are not supported in this spec version",
                    );
                }
            }
        }
    }
    if cfg.pointer("/storage/directories").is_some_and(non_empty) {
        r.err(
            ts.lookup(&path(&["storage", "directories"])),
            "directories are not supported in this spec version",
        );
    }
    for (i, f) in items(cfg, "/storage/files").iter().enumerate() {
        if f.get("append").is_some_and(non_empty) {
            r.err(
                ts.lookup(&path(&["storage", "files", &i.to_string(), "append"])),
                "appending to files is not supported in this spec version",
            );
        }
        if f.pointer("/contents/httpHeaders").is_some_and(non_empty) {
            r.err(
                ts.lookup(&path(&[
                    "storage",
                    "files",
                    &i.to_string(),
                    "contents",
                    "httpHeaders",
                ])),
                "file HTTP headers are not supported in this spec version",
            );
        }
        if minor <= 9 {
            let c = f.pointer("/contents/compression").and_then(Value::as_str);
            if c.is_some_and(|c| !c.is_empty()) {
                r.err(
                    ts.lookup(&path(&[
                        "storage",
                        "files",
                        &i.to_string(),
                        "contents",
                        "compression",
                    ])),
                    "file compression is not supported in this spec version",
                );
            }
        }
    }
    if cfg.pointer("/storage/links").is_some_and(non_empty) {
        r.err(
            ts.lookup(&path(&["storage", "links"])),
            "links are not supported in this spec version",
        );
    }
    if raw {
        if let Some(o) = src.get("openshift").and_then(Value::as_object) {
            for f in ["kernel_arguments", "extensions", "fips", "kernel_type"] {
                let set = match o.get(f) {
                    Some(Value::Bool(b)) => *b,
                    Some(Value::String(s)) => !s.is_empty(),
                    Some(v) => non_empty(v),
                    None => false,
                };
                if set {
                    r.warning(path(&["openshift", f]), "field ignored in raw mode");
                }
            }
        }
    }
}

/// The MachineConfig wrapper, as YAML with sorted keys (sigs.k8s.io/yaml).
pub fn machine_config(src: &Value, ign: &Value) -> Vec<u8> {
    let mut spec = Map::new();
    spec.insert("config".into(), ign.clone());
    let o = src.get("openshift");
    let get = |k: &str| o.and_then(|o| o.get(k));
    if let Some(v) = get("extensions").filter(|v| crate::variant::non_empty(v)) {
        spec.insert("extensions".into(), v.clone());
    }
    if get("fips").and_then(Value::as_bool) == Some(true) {
        spec.insert("fips".into(), json!(true));
    }
    if let Some(v) = get("kernel_arguments").filter(|v| crate::variant::non_empty(v)) {
        spec.insert("kernelArguments".into(), v.clone());
    }
    if let Some(v) = get("kernel_type")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        spec.insert("kernelType".into(), json!(v));
    }
    let mut metadata = Map::new();
    if let Some(l) = src
        .pointer("/metadata/labels")
        .filter(|v| crate::variant::non_empty(v))
    {
        metadata.insert("labels".into(), l.clone());
    }
    if let Some(n) = src.pointer("/metadata/name") {
        metadata.insert("name".into(), n.clone());
    }
    let mc = json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": metadata,
        "spec": spec,
    });
    let mut out = String::from("# Generated by Butane; do not edit\n");
    emit_map(&mc, 0, &mut out);
    out.into_bytes()
}

fn emit_map(v: &Value, indent: usize, out: &mut String) {
    let Some(m) = v.as_object() else { return };
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for k in keys {
        out.push_str(&" ".repeat(indent));
        out.push_str(&scalar_text(k, indent));
        out.push(':');
        emit_value(&m[k], indent, out);
    }
}

/// Emits the value after `key:` or `- `.
fn emit_value(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if m.is_empty() => out.push_str(" {}\n"),
        Value::Object(_) => {
            out.push('\n');
            emit_map(v, indent + 2, out);
        }
        Value::Array(a) if a.is_empty() => out.push_str(" []\n"),
        Value::Array(a) => {
            out.push('\n');
            for item in a {
                out.push_str(&" ".repeat(indent + 2));
                out.push('-');
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // first key on the dash line, the rest aligned under it
                        let mut inner = String::new();
                        emit_map(item, indent + 4, &mut inner);
                        out.push(' ');
                        out.push_str(inner.trim_start());
                    }
                    _ => emit_value(item, indent + 2, out),
                }
            }
        }
        Value::String(s) => {
            out.push(' ');
            out.push_str(&scalar_text(s, indent));
            out.push('\n');
        }
        other => {
            out.push(' ');
            out.push_str(&other.to_string());
            out.push('\n');
        }
    }
}

fn scalar_text(s: &str, indent: usize) -> String {
    if s.contains('\n') && !s.contains('\r') && s.chars().all(|c| c == '\n' || !c.is_control()) {
        let chomp = if s.ends_with('\n') { "" } else { "-" };
        let body = s.strip_suffix('\n').unwrap_or(s);
        let pad = " ".repeat(indent + 2);
        let lead = if body.starts_with(' ') { "2" } else { "" };
        let mut out = format!("|{lead}{chomp}");
        for line in body.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad);
                out.push_str(line);
            }
        }
        return out;
    }
    let plain_ok = !s.is_empty()
        && !s.starts_with(|c: char| " ?:,[]{}#&*!|>'\"%@`~".contains(c))
        && !(s.starts_with('-') && (s.len() == 1 || s[1..].starts_with(' ')))
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && s.chars().all(|c| !c.is_control())
        && crate::scalar::resolve(s) == crate::scalar::Resolved::Str
        && !matches!(
            s,
            "y" | "Y"
                | "yes"
                | "Yes"
                | "YES"
                | "n"
                | "N"
                | "no"
                | "No"
                | "NO"
                | "on"
                | "On"
                | "ON"
                | "off"
                | "Off"
                | "OFF"
        );
    if plain_ok {
        s.to_string()
    } else if !s.is_empty() && s.chars().all(|c| !c.is_control()) {
        // go-yaml prefers single quotes when no escape is needed.
        format!("'{}'", s.replace('\'', "''"))
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}
