//! Config merging (upstream `config/merge/merge.go`), driven by the schema table:
//! * non-pointer primitives: the child's value, even when zero;
//! * pointers: the child's value when set, else the parent's;
//! * structs: merged field by field;
//! * lists marked IgnoreDuplicates: parent items then child items;
//! * keyed lists: a parent item whose key the child has in the same list is merged
//!   with it (at the parent's position); a parent item whose key the child has in a
//!   sibling list sharing the key space (files/directories/links,
//!   shouldExist/shouldNotExist) is dropped; other parent items stay; child items
//!   whose key the parent's list lacks are appended;
//! * an HTTP header in the child with no `value` deletes the parent's header.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value as J};

use crate::schema::{self, ListKeying, Ty};
use crate::types::Config;
use crate::validate::item_key;

/// Merges `child` onto `parent`. Both must be of the same (latest) version.
pub fn merge(parent: &Config, child: &Config) -> Config {
    let p = serde_json::to_value(parent).unwrap_or_default();
    let c = serde_json::to_value(child).unwrap_or_default();
    let merged = merge_struct(&p, &c, "Config");
    // The merged tree only contains values of the typed model, so this cannot fail.
    serde_json::from_value(J::Object(merged)).unwrap_or_default()
}

fn obj(v: Option<&J>) -> Map<String, J> {
    match v {
        Some(J::Object(m)) => m.clone(),
        _ => Map::new(),
    }
}

fn list(v: Option<&J>) -> &[J] {
    match v {
        Some(J::Array(a)) => a,
        _ => &[],
    }
}

fn merge_struct(parent: &J, child: &J, sname: &str) -> Map<String, J> {
    let mut out = Map::new();
    let Some(s) = schema::struct_schema(sname) else {
        return out;
    };
    // handle + key -> (field, index) over the child's keyed lists
    let mut child_keys: HashMap<(&str, String), (&str, usize)> = HashMap::new();
    for f in s.fields {
        let Some(elem) = f.ty.elem() else { continue };
        if let ListKeying::Keyed { handle } = schema::list_keying(sname, f.json) {
            for (i, item) in list(child.get(f.json)).iter().enumerate() {
                child_keys.insert((handle, item_key(item, elem)), (f.json, i));
            }
        }
    }
    for f in s.fields {
        let pv = parent.get(f.json);
        let cv = child.get(f.json);
        let result: Option<J> = match (&f.ty, f.pointer) {
            (Ty::Struct(n), false) => {
                let m = merge_struct(&J::Object(obj(pv)), &J::Object(obj(cv)), n);
                Some(J::Object(m))
            }
            (t, _) if t.elem().is_some() => {
                let elem = t.elem().unwrap_or(&Ty::String);
                let (pl, cl) = (list(pv), list(cv));
                if pl.len() + cl.len() == 0 {
                    None
                } else {
                    match schema::list_keying(sname, f.json) {
                        ListKeying::IgnoreDuplicates => {
                            Some(J::Array(pl.iter().chain(cl.iter()).cloned().collect()))
                        }
                        ListKeying::Keyed { handle } => Some(J::Array(merge_keyed(
                            pl,
                            cl,
                            elem,
                            handle,
                            f.json,
                            &child_keys,
                            sname == "Resource" && f.json == "httpHeaders",
                        ))),
                    }
                }
            }
            (_, true) => cv.or(pv).cloned(),
            (_, false) => cv.cloned(),
        };
        if let Some(v) = result {
            out.insert(f.json.to_string(), v);
        }
    }
    out
}

fn merge_keyed(
    parent: &[J],
    child: &[J],
    elem: &Ty,
    handle: &str,
    field: &str,
    child_keys: &HashMap<(&str, String), (&str, usize)>,
    headers: bool,
) -> Vec<J> {
    let mut out = Vec::with_capacity(parent.len() + child.len());
    let mut parent_keys = HashSet::new();
    for p in parent {
        let key = item_key(p, elem);
        parent_keys.insert(key.clone());
        match child_keys.get(&(handle, key)) {
            Some((cf, ci)) if *cf == field => {
                let c = &child[*ci];
                match elem {
                    Ty::Struct(n) => {
                        if headers && c.get("value").is_none() {
                            continue;
                        }
                        out.push(J::Object(merge_struct(p, c, n)));
                    }
                    _ => out.push(c.clone()),
                }
            }
            Some(_) => {} // replaced by an entry of a sibling list of the child
            None => out.push(p.clone()),
        }
    }
    for c in child {
        if !parent_keys.contains(&item_key(c, elem)) {
            out.push(c.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;
    use crate::SpecVersion;

    fn base() -> Config {
        Config::with_version(SpecVersion::LATEST)
    }

    #[test]
    fn primitives_pointers_and_keyed_lists() {
        let mut p = base();
        p.storage.filesystems.push(Filesystem {
            device: "/dev/a".into(),
            format: Some("ext4".into()),
            path: Some("/a".into()),
            options: vec!["-b".into()],
            ..Default::default()
        });
        p.storage.filesystems.push(Filesystem {
            device: "/dev/b".into(),
            ..Default::default()
        });
        let mut c = base();
        c.storage.filesystems.push(Filesystem {
            device: "/dev/a".into(),
            format: Some(String::new()),
            options: vec!["-b".into()],
            ..Default::default()
        });
        c.storage.filesystems.push(Filesystem {
            device: "/dev/c".into(),
            ..Default::default()
        });
        let m = merge(&p, &c);
        let fs = &m.storage.filesystems;
        assert_eq!(fs.len(), 3);
        assert_eq!(fs[0].device, "/dev/a");
        // a non-null pointer in the child wins even when empty
        assert_eq!(fs[0].format.as_deref(), Some(""));
        // null pointer in the child keeps the parent's
        assert_eq!(fs[0].path.as_deref(), Some("/a"));
        // IgnoreDuplicates: concatenated
        assert_eq!(fs[0].options, vec!["-b".to_string(), "-b".to_string()]);
        assert_eq!(fs[1].device, "/dev/b");
        assert_eq!(fs[2].device, "/dev/c");
    }

    #[test]
    fn non_pointer_child_wins_even_when_zero() {
        let mut p = base();
        p.storage.disks.push(Disk {
            device: "/dev/vda".into(),
            partitions: vec![Partition {
                label: Some("root".into()),
                number: 0,
                ..Default::default()
            }],
            ..Default::default()
        });
        let mut c = Config::default();
        c.ignition.version = String::new();
        let m = merge(&p, &c);
        assert_eq!(m.ignition.version, "");
        assert_eq!(m.storage.disks.len(), 1);
    }

    #[test]
    fn shared_node_key_space() {
        let mut p = base();
        p.storage.files.push(File {
            path: "/x".into(),
            ..Default::default()
        });
        p.storage.files.push(File {
            path: "/y".into(),
            mode: Some(0o600),
            ..Default::default()
        });
        let mut c = base();
        c.storage.directories.push(Directory {
            path: "/x".into(),
            ..Default::default()
        });
        c.storage.files.push(File {
            path: "/y".into(),
            overwrite: Some(true),
            ..Default::default()
        });
        let m = merge(&p, &c);
        assert_eq!(m.storage.files.len(), 1);
        assert_eq!(m.storage.files[0].path, "/y");
        assert_eq!(m.storage.files[0].mode, Some(0o600));
        assert_eq!(m.storage.files[0].overwrite, Some(true));
        assert_eq!(m.storage.directories.len(), 1);
    }

    #[test]
    fn kargs_and_headers() {
        let mut p = base();
        p.kernel_arguments.should_exist = vec!["quiet".into(), "a".into()];
        p.ignition.config.replace.source = Some("https://x/c.ign".into());
        p.ignition.config.replace.http_headers = vec![
            HTTPHeader {
                name: "A".into(),
                value: Some("1".into()),
            },
            HTTPHeader {
                name: "B".into(),
                value: Some("2".into()),
            },
        ];
        let mut c = base();
        c.kernel_arguments.should_not_exist = vec!["quiet".into()];
        c.ignition.config.replace.http_headers = vec![
            HTTPHeader {
                name: "A".into(),
                value: None,
            },
            HTTPHeader {
                name: "C".into(),
                value: Some("3".into()),
            },
        ];
        let m = merge(&p, &c);
        assert_eq!(m.kernel_arguments.should_exist, vec!["a".to_string()]);
        assert_eq!(
            m.kernel_arguments.should_not_exist,
            vec!["quiet".to_string()]
        );
        let names: Vec<_> = m
            .ignition
            .config
            .replace
            .http_headers
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(names, ["B", "C"]);
        assert_eq!(
            m.ignition.config.replace.source.as_deref(),
            Some("https://x/c.ign")
        );
    }

    #[test]
    fn append_is_concatenated() {
        let mut p = base();
        p.storage.files.push(File {
            path: "/f".into(),
            append: vec![Resource {
                source: Some("data:,a".into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        let c = p.clone();
        let m = merge(&p, &c);
        assert_eq!(m.storage.files[0].append.len(), 2);
    }
}
