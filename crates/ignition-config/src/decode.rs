//! Decoding the way Go's `encoding/json` fills Ignition's structs: case-insensitive
//! key matching, last duplicate wins (objects decoded into the existing value),
//! `null` leaves non-pointer fields alone, integer-only numbers, and Go's
//! `UnmarshalTypeError` texts. Also the unused-key pass (`ValidateUnusedKeys`),
//! which compares the raw JSON tree with the version's schema by exact key.

use serde_json::{Map, Value as J};

use crate::json::{LineIndex, Node, Value};
use crate::report::{Entry, Kind, Path, Report};
use crate::schema::{self, Field, Ty};
use crate::SpecVersion;

/// A Go `UnmarshalTypeError`: message and byte offset.
pub(crate) struct TypeError {
    pub msg: String,
    pub offset: usize,
}

struct Decoder {
    version: SpecVersion,
    err: Option<TypeError>,
    /// JSON field names from the root (Go's `errorContext.FieldStack`).
    stack: Vec<&'static str>,
}

/// Finds the field a JSON key decodes into (exact name first, then case-folded).
fn match_field<'f>(fields: &[&'f Field], key: &str) -> Option<&'f Field> {
    if let Some(f) = fields.iter().find(|f| f.json == key) {
        return Some(f);
    }
    let folded = fold(key);
    fields.iter().find(|f| fold(f.json) == folded).copied()
}

/// Go 1.21+ `foldName`: ASCII upper-cased, other runes `ToUpper(ToLower(r))`
/// (so the Kelvin sign matches `k` and long s matches `s`).
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_ascii_uppercase()
            } else {
                let l = c.to_lowercase().next().unwrap_or(c);
                l.to_uppercase().next().unwrap_or(l)
            }
        })
        .collect()
}

impl Decoder {
    fn type_error(&mut self, node: &Node, sname: &str, ty: &Ty) {
        if self.err.is_some() {
            return;
        }
        let (what, offset) = match &node.value {
            Value::Object(_) | Value::Array(_) => {
                (node.value.go_kind().to_string(), node.start + 1)
            }
            Value::Number(n) if matches!(ty, Ty::Int) => (format!("number {n}"), node.end),
            v => (v.go_kind().to_string(), node.end),
        };
        let msg = if self.stack.is_empty() {
            format!(
                "json: cannot unmarshal {what} into Go value of type {}",
                ty.go_name()
            )
        } else {
            format!(
                "json: cannot unmarshal {what} into Go struct field {sname}.{} of type {}",
                self.stack.join("."),
                ty.go_name()
            )
        };
        self.err = Some(TypeError { msg, offset });
    }

    /// Decodes `node` of kind `ty` (a field of struct `sname`) into `slot`.
    fn value(&mut self, node: &Node, ty: &Ty, pointer: bool, sname: &str, slot: &mut Option<J>) {
        if let Value::Null = node.value {
            // Go: null zeroes pointers, slices and maps, and leaves everything else.
            if pointer || ty.elem().is_some() {
                *slot = None;
            }
            return;
        }
        match ty {
            Ty::String | Ty::NamedString(_) => match &node.value {
                Value::String(s) => *slot = Some(J::String(s.clone())),
                _ => self.type_error(node, sname, ty),
            },
            Ty::Bool => match &node.value {
                Value::Bool(b) => *slot = Some(J::Bool(*b)),
                _ => self.type_error(node, sname, ty),
            },
            Ty::Int => match &node.value {
                Value::Number(n) => match n.parse::<i64>() {
                    Ok(i) => *slot = Some(J::from(i)),
                    Err(_) => self.type_error(node, sname, ty),
                },
                _ => self.type_error(node, sname, ty),
            },
            Ty::Struct(name) => match &node.value {
                Value::Object(_) => {
                    let mut obj = match slot.take() {
                        Some(J::Object(m)) => m,
                        _ => Map::new(),
                    };
                    self.object(node, name, &mut obj);
                    *slot = Some(J::Object(obj));
                }
                _ => self.type_error(node, sname, ty),
            },
            Ty::List(elem) | Ty::NamedList(_, elem) => match &node.value {
                Value::Array(items) => {
                    // Go reuses the existing slice's elements (observable with
                    // duplicate keys) and truncates to the new length.
                    let mut old = match slot.take() {
                        Some(J::Array(a)) => a,
                        _ => Vec::new(),
                    };
                    let mut out = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        let mut s = if i < old.len() {
                            Some(std::mem::take(&mut old[i]))
                        } else {
                            None
                        };
                        if let (Value::Null, Ty::Struct(_)) = (&item.value, elem) {
                            // null element of a struct list: zero value
                            s = Some(J::Object(Map::new()));
                        }
                        self.value(item, elem, false, sname, &mut s);
                        out.push(s.unwrap_or_else(|| zero(elem)));
                    }
                    *slot = Some(J::Array(out));
                }
                _ => self.type_error(node, sname, ty),
            },
        }
    }

    fn object(&mut self, node: &Node, sname: &'static str, obj: &mut Map<String, J>) {
        let Value::Object(members) = &node.value else {
            return;
        };
        let fields = schema::cached_fields(sname, self.version);
        for m in members {
            let Some(f) = match_field(fields, &m.key) else {
                continue;
            };
            self.stack.push(f.json);
            let mut slot = obj.remove(f.json);
            self.value(&m.value, &f.ty, f.pointer, sname, &mut slot);
            if let Some(v) = slot {
                obj.insert(f.json.to_string(), v);
            }
            self.stack.pop();
            if self.err.is_some() {
                return;
            }
        }
        // Non-pointer Go fields always hold a value; this matters for older
        // shapes mapped onto `Option` fields of the latest model (e.g. a 3.2 link
        // target, which translates to `Some("")`).
        for f in fields {
            if !f.pointer && !obj.contains_key(f.json) {
                match f.ty {
                    Ty::String => {
                        obj.insert(f.json.to_string(), J::String(String::new()));
                    }
                    Ty::Int => {
                        obj.insert(f.json.to_string(), J::from(0));
                    }
                    Ty::Bool => {
                        obj.insert(f.json.to_string(), J::Bool(false));
                    }
                    _ => {}
                }
            }
        }
    }
}

fn zero(ty: &Ty) -> J {
    match ty {
        Ty::String | Ty::NamedString(_) => J::String(String::new()),
        Ty::Int => J::from(0),
        Ty::Bool => J::Bool(false),
        Ty::Struct(_) => J::Object(Map::new()),
        Ty::List(_) | Ty::NamedList(..) => J::Array(Vec::new()),
    }
}

/// Decodes the whole document as struct `Config` of `version`.
pub(crate) fn decode(root: &Node, version: SpecVersion) -> Result<J, TypeError> {
    let mut d = Decoder {
        version,
        err: None,
        stack: Vec::new(),
    };
    let mut slot = None;
    d.value(root, &Ty::Struct("Config"), false, "", &mut slot);
    match d.err {
        Some(e) => Err(e),
        None => Ok(slot.unwrap_or_else(|| J::Object(Map::new()))),
    }
}

/// The outcome of reading `ignition.version` (upstream `GetConfigVersion`).
pub(crate) enum VersionRead {
    Version(String),
    TypeError(TypeError),
}

/// Reads `ignition.version` like upstream's `GetConfigVersion`, which decodes into
/// `versionStub struct { Ignition struct { Version string } }` (no JSON tags, so
/// keys match the Go field names case-insensitively); type errors name that stub.
pub(crate) fn read_version(root: &Node) -> VersionRead {
    let offset = |n: &Node| match n.value {
        Value::Object(_) | Value::Array(_) | Value::Deep(_) => n.start + 1,
        _ => n.end,
    };
    let mut version = String::new();
    let members = match &root.value {
        Value::Object(m) => m,
        Value::Null => return VersionRead::Version(version),
        other => {
            return VersionRead::TypeError(TypeError {
                msg: format!(
                    "json: cannot unmarshal {} into Go value of type util.versionStub",
                    other.go_kind()
                ),
                offset: offset(root),
            })
        }
    };
    for m in members.iter().filter(|m| fold(&m.key) == "IGNITION") {
        match &m.value.value {
            Value::Null => {}
            Value::Object(inner) => {
                for v in inner.iter().filter(|v| fold(&v.key) == "VERSION") {
                    match &v.value.value {
                        Value::Null => {}
                        Value::String(s) => version = s.clone(),
                        other => {
                            return VersionRead::TypeError(TypeError {
                                msg: format!(
                                    "json: cannot unmarshal {} into Go struct field .Ignition.Version of type string",
                                    other.go_kind()
                                ),
                                offset: offset(&v.value),
                            })
                        }
                    }
                }
            }
            other => {
                return VersionRead::TypeError(TypeError {
                    msg: format!(
                        "json: cannot unmarshal {} into Go struct field versionStub.Ignition of type struct {{ Version string }}",
                        other.go_kind()
                    ),
                    offset: offset(&m.value),
                })
            }
        }
    }
    VersionRead::Version(version)
}

/// `ValidateUnusedKeys`: keys of the raw tree that are not fields (exact name) of
/// the version's struct at that place, as warnings with the key's position.
pub(crate) fn unused_keys(root: &Node, version: SpecVersion, lines: &LineIndex) -> Report {
    let mut r = Report::new();
    walk_unused(
        Some(root),
        "Config",
        false,
        version,
        &Path::root(),
        lines,
        &mut r,
    );
    r
}

#[allow(clippy::too_many_arguments)]
fn walk_unused(
    node: Option<&Node>,
    sname: &str,
    pointer: bool,
    version: SpecVersion,
    p: &Path,
    lines: &LineIndex,
    r: &mut Report,
) {
    let Some(node) = node else { return };
    let members = match &node.value {
        Value::Object(m) => m,
        Value::Null if pointer => return,
        _ => {
            r.entries.push(Entry {
                kind: Kind::Warning,
                path: p.clone(),
                marker: Some(lines.marker(node.start)),
                message: format!(
                    "context tree does not match content tree at {p}. Line and column reporting may be inconsistent. Unused keys may not be reported."
                ),
            });
            return;
        }
    };
    let fields = schema::cached_fields(sname, version);
    let mut seen = std::collections::HashSet::new();
    // Go's tree keeps the last of duplicate keys; report each key once.
    for (i, m) in members.iter().enumerate() {
        if members[i + 1..].iter().any(|o| o.key == m.key) || !seen.insert(&m.key) {
            continue;
        }
        if !fields.iter().any(|f| f.json == m.key) {
            r.entries.push(Entry {
                kind: Kind::Warning,
                path: p.key(&m.key),
                marker: Some(lines.marker(m.key_start)),
                message: format!("unused key {}", m.key),
            });
        }
    }
    for f in fields {
        let child = node.get(f.json).map(|m| &m.value);
        match &f.ty {
            Ty::Struct(n) => walk_unused(child, n, f.pointer, version, &p.key(f.json), lines, r),
            t => {
                if let (
                    Some(Ty::Struct(n)),
                    Some(Node {
                        value: Value::Array(items),
                        ..
                    }),
                ) = (t.elem(), child)
                {
                    for (i, item) in items.iter().enumerate() {
                        walk_unused(
                            Some(item),
                            n,
                            false,
                            version,
                            &p.key(f.json).index(i),
                            lines,
                            r,
                        );
                    }
                }
            }
        }
    }
}

/// vcontext `Correlate`: the marker of the deepest node along `path` (its value start).
pub(crate) fn locate(root: &Node, path: &Path, lines: &LineIndex) -> crate::report::Marker {
    let mut node = root;
    for e in &path.0 {
        let next = match (e, &node.value) {
            (crate::report::PathElem::Key(k), Value::Object(_)) => node.get(k).map(|m| &m.value),
            (crate::report::PathElem::Index(i), Value::Array(items)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    lines.marker(node.start)
}
