//! The Ignition schema as data: every Go struct of the spec, its fields in Go
//! declaration order, their JSON names, kinds, pointer-ness and the spec versions in
//! which they exist.
//!
//! The table for the latest version is generated together with the Rust types in
//! [`crate::types`] (one declaration), so the two cannot drift. Fields and structs
//! that existed only in older versions (e.g. 3.0.0's `FileContents`, or a link
//! `target` that was a plain string before 3.3.0) are listed in a small extra table
//! and are selected by [`fields_at`].

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::SpecVersion;

/// The kind of a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Go `string`.
    String,
    /// Go `int`.
    Int,
    /// Go `bool`.
    Bool,
    /// A named Go string type (e.g. `types.Device`); JSON string.
    NamedString(&'static str),
    /// A struct of this module's table, by Go name.
    Struct(&'static str),
    /// A Go slice of the element kind.
    List(&'static Ty),
    /// A named Go slice type (e.g. `types.HTTPHeaders`).
    NamedList(&'static str, &'static Ty),
}

impl Ty {
    /// The Go type as `reflect.Type.String()` prints it (used in decoder errors).
    pub fn go_name(&self) -> String {
        match self {
            Ty::String => "string".into(),
            Ty::Int => "int".into(),
            Ty::Bool => "bool".into(),
            Ty::NamedString(n) | Ty::Struct(n) | Ty::NamedList(n, _) => format!("types.{n}"),
            Ty::List(e) => format!("[]{}", e.go_name()),
        }
    }

    /// The element kind of a list, if this is one.
    pub fn elem(&self) -> Option<&'static Ty> {
        match self {
            Ty::List(e) | Ty::NamedList(_, e) => Some(e),
            _ => None,
        }
    }

    /// Whether the JSON form is a string.
    pub fn is_string(&self) -> bool {
        matches!(self, Ty::String | Ty::NamedString(_))
    }
}

/// One field of a struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The Rust field name in [`crate::types`] (snake_case of the JSON name).
    pub rust: &'static str,
    /// The JSON key (Go struct tag).
    pub json: &'static str,
    /// The value kind.
    pub ty: Ty,
    /// Whether Go declares the field as a pointer (`Option` in Rust).
    pub pointer: bool,
    /// Whether the Go tag has `omitempty`.
    pub omitempty: bool,
    /// First spec version with this field in this shape (kind, pointer-ness and
    /// `omitempty`); older shapes of the same JSON key are in [`LEGACY_FIELDS`].
    pub since: SpecVersion,
    /// First spec version without it (in this shape), if it ever changed.
    pub until: Option<SpecVersion>,
}

impl Field {
    /// Whether the field exists (in this shape) in `v`.
    pub fn exists_in(&self, v: SpecVersion) -> bool {
        v >= self.since && self.until.is_none_or(|u| v < u)
    }
}

/// One Go struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StructSchema {
    /// The Go type name (e.g. `File`).
    pub name: &'static str,
    /// Fields in Go declaration order (embedded `Node` fields first).
    pub fields: &'static [Field],
}

/// All structs of the latest version, in alphabetical order of Go name.
pub fn structs() -> &'static [StructSchema] {
    crate::types::STRUCTS
}

/// Looks up a struct of the latest version or one of the older-only structs.
pub fn struct_schema(name: &str) -> Option<&'static StructSchema> {
    structs()
        .iter()
        .chain(LEGACY_STRUCTS.iter())
        .find(|s| s.name == name)
}

/// The fields of struct `name` as they exist in spec `version`, in Go order.
/// Empty when the struct does not exist in that version.
pub fn fields_at(name: &str, version: SpecVersion) -> Vec<&'static Field> {
    cached_fields(name, version).to_vec()
}

/// [`fields_at`] without allocating: computed once per struct and version.
pub(crate) fn cached_fields(name: &str, version: SpecVersion) -> &'static [&'static Field] {
    type Table = HashMap<&'static str, Vec<Vec<&'static Field>>>;
    static TABLE: OnceLock<Table> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        structs()
            .iter()
            .chain(LEGACY_STRUCTS.iter())
            .map(|s| {
                let per_version = SpecVersion::ALL
                    .iter()
                    .map(|v| compute_fields(s, *v))
                    .collect();
                (s.name, per_version)
            })
            .collect()
    });
    let idx = SpecVersion::ALL
        .iter()
        .position(|v| *v == version)
        .unwrap_or(0);
    table
        .get(name)
        .and_then(|per_version| per_version.get(idx))
        .map_or(&[], Vec::as_slice)
}

fn compute_fields(s: &'static StructSchema, version: SpecVersion) -> Vec<&'static Field> {
    let mut out = Vec::with_capacity(s.fields.len());
    for f in s.fields {
        if f.exists_in(version) {
            out.push(f);
        } else if let Some((_, alt)) = LEGACY_FIELDS
            .iter()
            .find(|(sn, lf)| *sn == s.name && lf.json == f.json && lf.exists_in(version))
        {
            out.push(alt);
        }
    }
    out
}

/// The schema of a list's items: how items are keyed for duplicate detection and
/// merging (upstream `Key()`, `IgnoreDuplicates()`, `MergedKeys()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKeying {
    /// Items are not checked for duplicates and are concatenated on merge.
    IgnoreDuplicates,
    /// Items are keyed; lists with the same `shared` handle share one key space.
    Keyed {
        /// The shared key space name (`Node`, `KernelArgument`) or the field itself.
        handle: &'static str,
    },
}

/// How the list field `field` (JSON name) of struct `parent` is keyed.
pub fn list_keying(parent: &str, field: &'static str) -> ListKeying {
    match (parent, field) {
        ("File", "append")
        | ("Filesystem", "options")
        | ("Filesystem", "mountOptions")
        | ("Luks", "options")
        | ("Raid", "options") => ListKeying::IgnoreDuplicates,
        ("Storage", "files") | ("Storage", "directories") | ("Storage", "links") => {
            ListKeying::Keyed { handle: "Node" }
        }
        ("KernelArguments", "shouldExist") | ("KernelArguments", "shouldNotExist") => {
            ListKeying::Keyed {
                handle: "KernelArgument",
            }
        }
        (_, f) => ListKeying::Keyed { handle: f },
    }
}

macro_rules! legacy_field {
    ($rust:literal, $json:literal, $ty:expr, $ptr:literal, $omit:literal, $since:ident, $until:ident) => {
        Field {
            rust: $rust,
            json: $json,
            ty: $ty,
            pointer: $ptr,
            omitempty: $omit,
            since: SpecVersion::$since,
            until: Some(SpecVersion::$until),
        }
    };
}

const VERIFICATION: Ty = Ty::Struct("Verification");

/// Structs that exist only in older versions (`until` on every field).
pub static LEGACY_STRUCTS: &[StructSchema] = &[
    StructSchema {
        name: "CaReference",
        fields: &[
            legacy_field!("source", "source", Ty::String, false, false, V3_0_0, V3_1_0),
            legacy_field!(
                "verification",
                "verification",
                VERIFICATION,
                false,
                true,
                V3_0_0,
                V3_1_0
            ),
        ],
    },
    StructSchema {
        name: "ConfigReference",
        fields: &[
            legacy_field!("source", "source", Ty::String, true, true, V3_0_0, V3_1_0),
            legacy_field!(
                "verification",
                "verification",
                VERIFICATION,
                false,
                true,
                V3_0_0,
                V3_1_0
            ),
        ],
    },
    StructSchema {
        name: "Custom",
        fields: &[
            legacy_field!("config", "config", Ty::String, false, false, V3_2_0, V3_3_0),
            legacy_field!(
                "needs_network",
                "needsNetwork",
                Ty::Bool,
                true,
                true,
                V3_2_0,
                V3_3_0
            ),
            legacy_field!("pin", "pin", Ty::String, false, false, V3_2_0, V3_3_0),
        ],
    },
    StructSchema {
        name: "FileContents",
        fields: &[
            legacy_field!(
                "compression",
                "compression",
                Ty::String,
                true,
                true,
                V3_0_0,
                V3_1_0
            ),
            legacy_field!("source", "source", Ty::String, true, true, V3_0_0, V3_1_0),
            legacy_field!(
                "verification",
                "verification",
                VERIFICATION,
                false,
                true,
                V3_0_0,
                V3_1_0
            ),
        ],
    },
];

/// Older shapes of fields of latest-version structs: `(struct, field)`.
pub static LEGACY_FIELDS: &[(&str, Field)] = &[
    (
        "IgnitionConfig",
        legacy_field!(
            "merge",
            "merge",
            Ty::List(&Ty::Struct("ConfigReference")),
            false,
            true,
            V3_0_0,
            V3_1_0
        ),
    ),
    (
        "IgnitionConfig",
        legacy_field!(
            "replace",
            "replace",
            Ty::Struct("ConfigReference"),
            false,
            true,
            V3_0_0,
            V3_1_0
        ),
    ),
    (
        "TLS",
        legacy_field!(
            "certificate_authorities",
            "certificateAuthorities",
            Ty::List(&Ty::Struct("CaReference")),
            false,
            true,
            V3_0_0,
            V3_1_0
        ),
    ),
    (
        "File",
        legacy_field!(
            "append",
            "append",
            Ty::List(&Ty::Struct("FileContents")),
            false,
            true,
            V3_0_0,
            V3_1_0
        ),
    ),
    (
        "File",
        legacy_field!(
            "contents",
            "contents",
            Ty::Struct("FileContents"),
            false,
            true,
            V3_0_0,
            V3_1_0
        ),
    ),
    (
        "Clevis",
        legacy_field!(
            "custom",
            "custom",
            Ty::Struct("Custom"),
            true,
            true,
            V3_2_0,
            V3_3_0
        ),
    ),
    (
        "Luks",
        legacy_field!(
            "clevis",
            "clevis",
            Ty::Struct("Clevis"),
            true,
            true,
            V3_2_0,
            V3_3_0
        ),
    ),
    (
        "Raid",
        legacy_field!("level", "level", Ty::String, false, false, V3_0_0, V3_3_0),
    ),
    (
        "Link",
        legacy_field!("target", "target", Ty::String, false, false, V3_0_0, V3_3_0),
    ),
    (
        "Raid",
        legacy_field!(
            "devices",
            "devices",
            Ty::List(&Ty::NamedString("Device")),
            false,
            false,
            V3_0_0,
            V3_3_0
        ),
    ),
    (
        "Ignition",
        legacy_field!(
            "version",
            "version",
            Ty::String,
            false,
            true,
            V3_0_0,
            V3_4_0
        ),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_shapes() {
        let names = |s: &str, v| fields_at(s, v).iter().map(|f| f.json).collect::<Vec<_>>();
        assert_eq!(
            names("Ignition", SpecVersion::V3_0_0),
            ["config", "security", "timeouts", "version"]
        );
        assert!(names("Ignition", SpecVersion::V3_1_0).contains(&"proxy"));
        assert_eq!(names("Storage", SpecVersion::V3_1_0).len(), 6);
        assert_eq!(names("Storage", SpecVersion::V3_2_0).len(), 7);
        let target = fields_at("Link", SpecVersion::V3_2_0)
            .into_iter()
            .find(|f| f.json == "target")
            .unwrap();
        assert!(!target.pointer);
        assert_eq!(
            fields_at("File", SpecVersion::V3_0_0)[5].ty,
            Ty::Struct("FileContents")
        );
        assert_eq!(Ty::List(&Ty::Struct("File")).go_name(), "[]types.File");
        let version = |v| {
            *fields_at("Ignition", v)
                .iter()
                .find(|f| f.json == "version")
                .unwrap()
        };
        assert!(version(SpecVersion::V3_3_0).omitempty);
        assert!(!version(SpecVersion::V3_4_0).omitempty);
        // every field of every struct exists in the latest version or is legacy
        for st in structs() {
            assert_eq!(
                fields_at(st.name, SpecVersion::LATEST).len(),
                st.fields.len(),
                "{}",
                st.name
            );
        }
    }
}
