//! Ignition's config merge (coreos/ignition config/merge) on JSON values, with a
//! transcript: Butane needs to know, for every node of the merged config,
//! which input it came from so that errors found later in the merged config
//! point at the right YAML (coreos/butane base/util `MergeTranslatedConfigs`,
//! which uses Ignition's `MergeStructTranscribe` for the same reason).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::report::{Path, PathElem};

/// A translation set: Ignition JSON path → Butane YAML path.
#[derive(Debug, Clone, Default)]
pub struct Ts(pub HashMap<Path, Path>);

impl Ts {
    /// Records that `json` came from `yaml`.
    pub fn add(&mut self, json: Path, yaml: Path) {
        self.0.insert(json, yaml);
    }

    /// Records `yaml` as the source of `json` and of every node below it in `value`.
    pub fn add_tree(&mut self, json: &Path, yaml: &Path, value: &Value) {
        self.add(json.clone(), yaml.clone());
        match value {
            Value::Object(m) => {
                for (k, v) in m {
                    let mut p = json.clone();
                    p.push(PathElem::Key(k.clone()));
                    self.add_tree(&p, yaml, v);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    let mut p = json.clone();
                    p.push(PathElem::Index(i));
                    self.add_tree(&p, yaml, v);
                }
            }
            _ => {}
        }
    }

    /// Maps a JSON path to its YAML source: the longest recorded prefix, with
    /// the unrecorded rest converted to snake_case (Butane's fallback).
    pub fn lookup(&self, json: &Path) -> Path {
        for cut in (0..=json.len()).rev() {
            if let Some(y) = self.0.get(&json[..cut]) {
                let mut out = y.clone();
                out.extend(json[cut..].iter().map(|e| match e {
                    PathElem::Key(k) => PathElem::Key(crate::schema::snake(k)),
                    i => i.clone(),
                }));
                return out;
            }
        }
        json.iter()
            .map(|e| match e {
                PathElem::Key(k) => PathElem::Key(crate::schema::snake(k)),
                i => i.clone(),
            })
            .collect()
    }
}

/// Which input a merged node came from.
#[derive(Clone, Copy)]
enum Side {
    Parent,
    Child,
}

/// Merges `child` over `parent` and returns the merged config and its translations.
pub fn merge(parent: &Value, parent_ts: &Ts, child: &Value, child_ts: &Ts) -> (Value, Ts) {
    let mut origins = Vec::new();
    let merged = merge_value(
        parent,
        child,
        &mut Vec::new(),
        &mut Vec::new(),
        &mut Vec::new(),
        &mut origins,
    );
    let mut ts = Ts::default();
    for (result, side, src) in origins {
        let table = match side {
            Side::Parent => parent_ts,
            Side::Child => child_ts,
        };
        if let Some(y) = table.0.get(&src) {
            ts.add(result, y.clone());
        }
    }
    (merged, ts)
}

fn record_all(
    value: &Value,
    result: &mut Path,
    src: &mut Path,
    side: Side,
    out: &mut Vec<(Path, Side, Path)>,
) {
    out.push((result.clone(), side, src.clone()));
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                result.push(PathElem::Key(k.clone()));
                src.push(PathElem::Key(k.clone()));
                record_all(v, result, src, side, out);
                src.pop();
                result.pop();
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                result.push(PathElem::Index(i));
                src.push(PathElem::Index(i));
                record_all(v, result, src, side, out);
                src.pop();
                result.pop();
            }
        }
        _ => {}
    }
}

fn merge_value(
    parent: &Value,
    child: &Value,
    result: &mut Path,
    ppath: &mut Path,
    cpath: &mut Path,
    out: &mut Vec<(Path, Side, Path)>,
) -> Value {
    match (parent, child) {
        (Value::Object(p), Value::Object(c)) => {
            // Record the parent first so the child's translation of the container wins.
            out.push((result.clone(), Side::Parent, ppath.clone()));
            out.push((result.clone(), Side::Child, cpath.clone()));
            let mut m = Map::new();
            for (k, pv) in p {
                result.push(PathElem::Key(k.clone()));
                ppath.push(PathElem::Key(k.clone()));
                if let Some(cv) = c.get(k) {
                    cpath.push(PathElem::Key(k.clone()));
                    let v = if let (Value::Array(pa), Value::Array(ca)) = (pv, cv) {
                        merge_list(k, pa, ca, result, ppath, cpath, out)
                    } else {
                        merge_value(pv, cv, result, ppath, cpath, out)
                    };
                    m.insert(k.clone(), v);
                    cpath.pop();
                } else {
                    record_all(pv, result, ppath, Side::Parent, out);
                    m.insert(k.clone(), pv.clone());
                }
                ppath.pop();
                result.pop();
            }
            for (k, cv) in c {
                if p.contains_key(k) {
                    continue;
                }
                result.push(PathElem::Key(k.clone()));
                cpath.push(PathElem::Key(k.clone()));
                record_all(cv, result, cpath, Side::Child, out);
                m.insert(k.clone(), cv.clone());
                cpath.pop();
                result.pop();
            }
            Value::Object(m)
        }
        _ => {
            record_all(child, result, cpath, Side::Child, out);
            child.clone()
        }
    }
}

/// The merge key of a list item (Ignition `Key()` methods); None: not keyed.
fn item_key(list: &str, item: &Value) -> Option<String> {
    let s = |k: &str| item.get(k).map(|v| v.to_string());
    match list {
        "files" | "directories" | "links" => s("path"),
        "units" | "dropins" | "raid" | "luks" | "users" | "groups" | "httpHeaders" => s("name"),
        "disks" | "filesystems" => s("device"),
        "tang" => s("url"),
        "merge" | "certificateAuthorities" => s("source"),
        "partitions" => match item.get("number").and_then(Value::as_i64) {
            Some(n) if n != 0 => Some(format!("number:{n}")),
            _ => Some(format!("label:{}", s("label").unwrap_or_default())),
        },
        // IgnoreDuplicates lists are concatenated.
        "append" | "options" | "mountOptions" => None,
        _ => Some(item.to_string()),
    }
}

fn merge_list(
    name: &str,
    parent: &[Value],
    child: &[Value],
    result: &mut Path,
    ppath: &mut Path,
    cpath: &mut Path,
    out: &mut Vec<(Path, Side, Path)>,
) -> Value {
    out.push((result.clone(), Side::Parent, ppath.clone()));
    out.push((result.clone(), Side::Child, cpath.clone()));
    let mut items = Vec::new();
    let mut used = vec![false; child.len()];
    for (i, pv) in parent.iter().enumerate() {
        let key = item_key(name, pv);
        let matched = key.as_ref().and_then(|k| {
            child
                .iter()
                .enumerate()
                .find(|(j, cv)| !used[*j] && item_key(name, cv).as_ref() == Some(k))
                .map(|(j, _)| j)
        });
        result.push(PathElem::Index(items.len()));
        ppath.push(PathElem::Index(i));
        match matched {
            Some(j) => {
                used[j] = true;
                cpath.push(PathElem::Index(j));
                items.push(merge_value(pv, &child[j], result, ppath, cpath, out));
                cpath.pop();
            }
            None => {
                record_all(pv, result, ppath, Side::Parent, out);
                items.push(pv.clone());
            }
        }
        ppath.pop();
        result.pop();
    }
    for (j, cv) in child.iter().enumerate() {
        if used[j] {
            continue;
        }
        result.push(PathElem::Index(items.len()));
        cpath.push(PathElem::Index(j));
        record_all(cv, result, cpath, Side::Child, out);
        items.push(cv.clone());
        cpath.pop();
        result.pop();
    }
    Value::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::path;
    use serde_json::json;

    #[test]
    fn child_overrides_and_appends() {
        let parent =
            json!({"systemd": {"units": [{"name": "a.mount", "enabled": true, "contents": "x"}]}});
        let child = json!({"systemd": {"units": [{"name": "b.service"}, {"name": "a.mount", "enabled": false}]}});
        let mut pts = Ts::default();
        pts.add(
            path(&["systemd", "units", "0"]),
            path(&["storage", "filesystems", "0"]),
        );
        let mut cts = Ts::default();
        cts.add(
            path(&["systemd", "units", "0"]),
            path(&["systemd", "units", "0"]),
        );
        cts.add(
            path(&["systemd", "units", "1"]),
            path(&["systemd", "units", "1"]),
        );
        let (m, ts) = merge(&parent, &pts, &child, &cts);
        assert_eq!(
            m,
            json!({"systemd": {"units": [
                {"name": "a.mount", "enabled": false, "contents": "x"},
                {"name": "b.service"}
            ]}})
        );
        assert_eq!(
            ts.lookup(&path(&["systemd", "units", "1", "name"])),
            path(&["systemd", "units", "0", "name"])
        );
        assert_eq!(
            ts.lookup(&path(&["systemd", "units", "0"])),
            path(&["systemd", "units", "1"])
        );
    }
}
