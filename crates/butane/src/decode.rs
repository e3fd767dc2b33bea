//! Decoding a YAML node tree into a schema-shaped JSON value, with yaml.v3's
//! type errors and vcontext's unused-key warnings.
//!
//! The result keeps Butane's snake_case keys, so YAML paths and value paths are
//! the same; unset (null) pointers are simply absent.

use serde_json::{Map, Value};

use crate::report::{Kind, Path, PathElem, Report};
use crate::scalar;
use crate::schema::BTy;
use crate::yaml::{Node, NodeKind};

/// Result of a decode: the value, yaml.v3's type errors, and the unused-key report.
pub struct Decoded {
    /// The decoded config (snake_case keys).
    pub value: Value,
    /// yaml.v3 `terrors`, in the order yaml.v3 finds them.
    pub type_errors: Vec<String>,
    /// Unused-key and tree-mismatch warnings.
    pub unused: Report,
}

/// Decodes `node` as `ty`.
pub fn decode(node: &Node, ty: &BTy) -> Decoded {
    let mut d = Decoder {
        type_errors: Vec::new(),
        unused: Report::default(),
    };
    let value = d.value(node, ty, &mut Vec::new()).unwrap_or(Value::Null);
    Decoded {
        value,
        type_errors: d.type_errors,
        unused: d.unused,
    }
}

/// yaml.v3's `TypeError` text for a list of terrors.
pub fn type_error_text(errors: &[String]) -> String {
    format!("yaml: unmarshal errors:\n  {}", errors.join("\n  "))
}

struct Decoder {
    type_errors: Vec<String>,
    unused: Report,
}

impl Decoder {
    fn terror(&mut self, node: &Node, ty: &BTy) {
        let tag = node.short_tag();
        let shown = match (&node.kind, tag) {
            (_, "!!seq" | "!!map") => String::new(),
            (NodeKind::Scalar { value, .. }, _) => {
                if value.chars().count() > 10 {
                    format!(" `{}...`", value.chars().take(7).collect::<String>())
                } else {
                    format!(" `{value}`")
                }
            }
            _ => String::new(),
        };
        self.type_errors.push(format!(
            "line {}: cannot unmarshal {tag}{shown} into {}",
            node.line,
            ty.go_name()
        ));
    }

    /// Returns None when yaml.v3 would leave the target untouched (null, or error).
    fn value(&mut self, node: &Node, ty: &BTy, path: &mut Path) -> Option<Value> {
        if node.is_null() {
            if matches!(ty, BTy::Struct(_)) {
                // vcontext cannot pair a struct with a non-mapping node.
                let p = crate::report::format_path(path);
                self.unused.entries.push(crate::report::entry(
                    Kind::Warning,
                    path.clone(),
                    node,
                    format!(
                        "context tree does not match content tree at {p}. Line and column reporting may be inconsistent. Unused keys may not be reported."
                    ),
                ));
            }
            return None;
        }
        match ty {
            BTy::Str => match &node.kind {
                NodeKind::Scalar { value, .. } => Some(Value::String(value.clone())),
                _ => {
                    self.terror(node, ty);
                    None
                }
            },
            BTy::Int => match &node.kind {
                NodeKind::Scalar { value, .. } => match scalar::to_int(value, node.short_tag()) {
                    Some(i) => Some(Value::from(i)),
                    None => {
                        self.terror(node, ty);
                        None
                    }
                },
                _ => {
                    self.terror(node, ty);
                    None
                }
            },
            BTy::Bool => match &node.kind {
                NodeKind::Scalar { value, .. } => match scalar::to_bool(value, node.short_tag()) {
                    Some(b) => Some(Value::Bool(b)),
                    None => {
                        self.terror(node, ty);
                        None
                    }
                },
                _ => {
                    self.terror(node, ty);
                    None
                }
            },
            BTy::List(inner) => match &node.kind {
                NodeKind::Seq(items) => {
                    let mut out = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        if item.is_null() {
                            continue;
                        }
                        path.push(PathElem::Index(i));
                        // yaml.v3 drops items that decode to nothing (nulls, errors).
                        if let Some(v) = self.value(item, inner, path) {
                            out.push(v);
                        }
                        path.pop();
                    }
                    Some(Value::Array(out))
                }
                _ => {
                    self.terror(node, ty);
                    None
                }
            },
            BTy::StrMap => {
                let NodeKind::Map(entries) = &node.kind else {
                    self.terror(node, ty);
                    return None;
                };
                if !self.unique_keys(entries) {
                    return None;
                }
                let mut out = Map::new();
                for (key, val) in entries {
                    path.push(PathElem::Key(key_text(key)));
                    if let Some(v) = self.value(val, &BTy::Str, path) {
                        out.insert(key_text(key), v);
                    }
                    path.pop();
                }
                Some(Value::Object(out))
            }
            BTy::Struct(s) => {
                let NodeKind::Map(entries) = &node.kind else {
                    self.terror(node, ty);
                    return None;
                };
                if !self.unique_keys(entries) {
                    return None;
                }
                let mut out = Map::new();
                let mut merge_nodes = Vec::new();
                for (key, val) in entries {
                    let name = key_text(key);
                    if name == "<<" && key.tag.is_none() {
                        merge_nodes.push(val);
                    }
                    match s.fields.iter().find(|(n, _)| *n == name) {
                        Some((_, fty)) => {
                            path.push(PathElem::Key(name.clone()));
                            if let Some(v) = self.value(val, fty, path) {
                                out.insert(name, v);
                            } else {
                                out.remove(&name);
                            }
                            path.pop();
                        }
                        None => {
                            let mut p = path.clone();
                            p.push(PathElem::Key(name.clone()));
                            self.unused.entries.push(crate::report::entry(
                                Kind::Warning,
                                p,
                                key,
                                format!("Unused key {name}"),
                            ));
                        }
                    }
                }
                // yaml.v3 applies `<<` merges after the mapping's own keys, which win.
                for m in merge_nodes {
                    let sources: Vec<&Node> = match &m.kind {
                        NodeKind::Map(_) => vec![m],
                        NodeKind::Seq(items) => items.iter().collect(),
                        _ => vec![],
                    };
                    for src in sources {
                        let mut quiet = Decoder {
                            type_errors: Vec::new(),
                            unused: Report::default(),
                        };
                        if let Some(Value::Object(merged)) = quiet.value(src, ty, &mut path.clone())
                        {
                            self.type_errors.extend(quiet.type_errors);
                            for (k, v) in merged {
                                let own = entries.iter().any(|(key, _)| key_text(key) == k);
                                if !own && !out.contains_key(&k) {
                                    out.insert(k, v);
                                }
                            }
                        }
                    }
                }
                Some(Value::Object(out))
            }
        }
    }

    /// yaml.v3 rejects a mapping with a repeated key and skips decoding it.
    fn unique_keys(&mut self, entries: &[(Node, Node)]) -> bool {
        let before = self.type_errors.len();
        for (i, (ki, _)) in entries.iter().enumerate() {
            for (kj, _) in &entries[i + 1..] {
                let same_kind =
                    std::mem::discriminant(&ki.kind) == std::mem::discriminant(&kj.kind);
                if same_kind && ki.scalar().is_some() && ki.scalar() == kj.scalar() {
                    self.type_errors.push(format!(
                        "line {}: mapping key {:?} already defined at line {}",
                        kj.line,
                        ki.scalar().unwrap_or_default(),
                        ki.line
                    ));
                }
            }
        }
        self.type_errors.len() == before
    }
}

fn key_text(key: &Node) -> String {
    key.scalar().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{butane_config, Extras};

    fn extras() -> Extras {
        Extras {
            minor: 5,
            base_pkg: "v0_6".into(),
            variant_pkg: "v1_6".into(),
            top: vec![],
        }
    }

    fn run(src: &str) -> Decoded {
        let node = crate::yaml::parse(src).unwrap().unwrap();
        decode(&node, &butane_config(&extras()))
    }

    #[test]
    fn type_errors_name_go_types() {
        let d = run("variant: fcos\nstorage:\n  files:\n    path: x\n");
        assert_eq!(
            d.type_errors,
            vec!["line 4: cannot unmarshal !!map into []v0_6.File"]
        );
        let d = run("storage:\n  files:\n    - path: /x\n      mode: rw-r--r--\n");
        assert_eq!(
            d.type_errors,
            vec!["line 4: cannot unmarshal !!str `rw-r--r--` into int"]
        );
    }

    #[test]
    fn duplicate_keys() {
        let d = run("storage:\n  files:\n    - path: /a\n      path: /b\n");
        assert_eq!(
            d.type_errors,
            vec!["line 4: mapping key \"path\" already defined at line 3"]
        );
    }

    #[test]
    fn unused_keys_and_merge_keys() {
        let d = run("a: &x {mode: 0644}\nstorage:\n  files:\n    - <<: *x\n      path: /b\n");
        let msgs: Vec<String> = d.unused.entries.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            vec![
                "warning at $.a, line 1 col 1: Unused key a",
                "warning at $.storage.files.0.<<, line 4 col 7: Unused key <<"
            ]
        );
        assert_eq!(d.value["storage"]["files"][0]["mode"], 420);
    }
}
