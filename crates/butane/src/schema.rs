//! The Butane schema, derived from the Ignition schema table of
//! `ignition_config::schema` (JSON names in Go struct order, with the spec
//! versions each field exists in): snake_case names, minus
//! `ignition.version`, plus Butane's sugar fields.
//!
//! Decoding against the selected version makes newer fields unused keys, as
//! in Butane, and the Go type names feed yaml.v3's error messages.

use ignition_config::schema::{fields_at, Field, Ty};
use ignition_config::SpecVersion;

/// The Ignition spec version for a 3.x minor number (6: 3.6.0-experimental,
/// whose field set is that of the 3.6.0 release).
pub fn spec_version(minor: u8) -> SpecVersion {
    match minor {
        0 => SpecVersion::V3_0_0,
        1 => SpecVersion::V3_1_0,
        2 => SpecVersion::V3_2_0,
        3 => SpecVersion::V3_3_0,
        4 => SpecVersion::V3_4_0,
        5 => SpecVersion::V3_5_0,
        _ => SpecVersion::V3_6_0,
    }
}

/// The fields of Ignition struct `name` in spec `3.<minor>`, in Go order.
pub fn ign_fields(name: &str, minor: u8) -> Vec<&'static Field> {
    fields_at(name, spec_version(minor))
}

/// Whether Butane treats Ignition struct `name` as a resource (`inline`/`local` sugar).
pub fn is_resource(name: &str) -> bool {
    matches!(
        name,
        "Resource" | "FileContents" | "ConfigReference" | "CaReference"
    )
}

/// camelCase JSON name to Butane's snake_case (coreos/butane config/util `Snake`).
pub fn snake(json: &str) -> String {
    // `MiB` is one word, and so is `Guid`.
    let json = json.replace("MiB", "Mib");
    let mut out = String::with_capacity(json.len() + 4);
    for c in json.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A Butane field type.
#[derive(Debug, Clone)]
pub enum BTy {
    /// Go `string`.
    Str,
    /// Go `int`.
    Int,
    /// Go `bool`.
    Bool,
    /// A struct: its Go type name (`v0_6.File`) and fields.
    Struct(BStruct),
    /// A slice.
    List(Box<BTy>),
    /// Go `map[string]string`.
    StrMap,
}

/// A Butane struct.
#[derive(Debug, Clone)]
pub struct BStruct {
    /// Qualified Go type name, as yaml.v3 prints it.
    pub go: String,
    /// Fields (order irrelevant for decoding).
    pub fields: Vec<(String, BTy)>,
}

impl BTy {
    /// The Go type name yaml.v3 prints in `cannot unmarshal ... into <T>`.
    pub fn go_name(&self) -> String {
        match self {
            BTy::Str => "string".into(),
            BTy::Int => "int".into(),
            BTy::Bool => "bool".into(),
            BTy::Struct(s) => s.go.clone(),
            BTy::List(inner) => format!("[]{}", inner.go_name()),
            BTy::StrMap => "map[string]string".into(),
        }
    }
}

/// What the selected variant/version adds on top of the base schema.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Ignition 3.x minor version of the target (6 = 3.6.0-experimental).
    pub minor: u8,
    /// Go package of the base schema (`v0_6`).
    pub base_pkg: String,
    /// Go package of the variant schema (`v1_6`).
    pub variant_pkg: String,
    /// Top-level fields the variant adds (name, type).
    pub top: Vec<(String, BTy)>,
}

/// Builds the Butane schema: Ignition fields of the target version in
/// snake_case, plus sugar.
pub fn butane_config(extras: &Extras) -> BTy {
    let mut root = match butane_struct("Config", extras) {
        BTy::Struct(s) => s,
        _ => unreachable!("Config is a struct"),
    };
    root.go = format!("{}.Config", extras.variant_pkg);
    root.fields.insert(0, ("variant".into(), BTy::Str));
    root.fields.insert(1, ("version".into(), BTy::Str));
    root.fields.extend(extras.top.iter().cloned());
    BTy::Struct(root)
}

fn butane_ty(ty: &Ty, extras: &Extras) -> BTy {
    match ty {
        Ty::String | Ty::NamedString(_) => BTy::Str,
        Ty::Int => BTy::Int,
        Ty::Bool => BTy::Bool,
        Ty::Struct(s) => butane_struct(s, extras),
        Ty::List(inner) | Ty::NamedList(_, inner) => BTy::List(Box::new(butane_ty(inner, extras))),
    }
}

fn butane_struct(name: &str, extras: &Extras) -> BTy {
    let mut fields: Vec<(String, BTy)> = ign_fields(name, extras.minor)
        .into_iter()
        .filter(|f| !(name == "Ignition" && f.json == "version"))
        .map(|f| (snake(f.json), butane_ty(&f.ty, extras)))
        .collect();
    let minor = extras.minor;
    let mut add = |field: &str, ty: BTy| fields.push((field.to_string(), ty));
    match name {
        // fcos 1.0 has `inline` on file contents only; 1.1+ on every resource.
        "FileContents" => add("inline", BTy::Str),
        "Resource" => {
            add("inline", BTy::Str);
            if minor >= 1 {
                add("local", BTy::Str);
            }
        }
        "Storage" if minor >= 1 => add(
            "trees",
            BTy::List(Box::new(BTy::Struct(BStruct {
                go: format!("{}.Tree", extras.base_pkg),
                fields: vec![("local".into(), BTy::Str), ("path".into(), BTy::Str)],
            }))),
        ),
        "Filesystem" if minor >= 1 => add("with_mount_unit", BTy::Bool),
        "Unit" | "Dropin" if minor >= 4 => add("contents_local", BTy::Str),
        "PasswdUser" if minor >= 4 => {
            add("ssh_authorized_keys_local", BTy::List(Box::new(BTy::Str)))
        }
        _ => {}
    }
    BTy::Struct(BStruct {
        go: format!("{}.{}", extras.base_pkg, name),
        fields,
    })
}

/// Helper for variant schemas: a struct in the variant package.
pub fn vstruct(extras: &Extras, go: &str, fields: Vec<(&str, BTy)>) -> BTy {
    BTy::Struct(BStruct {
        go: format!("{}.{go}", extras.variant_pkg),
        fields: fields
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_follows_the_target_version() {
        let extras = |minor: u8| Extras {
            minor,
            base_pkg: "v0_x".into(),
            variant_pkg: "v1_x".into(),
            top: vec![],
        };
        let has = |minor: u8, field: &str| match butane_config(&extras(minor)) {
            BTy::Struct(s) => s.fields.iter().any(|(n, _)| n == field),
            _ => false,
        };
        assert!(!has(2, "kernel_arguments"));
        assert!(has(3, "kernel_arguments"));
        let ign = match butane_config(&extras(5)) {
            BTy::Struct(s) => {
                s.fields
                    .into_iter()
                    .find(|(n, _)| n == "ignition")
                    .unwrap()
                    .1
            }
            _ => unreachable!(),
        };
        match ign {
            BTy::Struct(s) => assert!(!s.fields.iter().any(|(n, _)| n == "version")),
            _ => unreachable!(),
        }
    }

    #[test]
    fn snake_names() {
        assert_eq!(snake("sizeMiB"), "size_mib");
        assert_eq!(snake("typeGuid"), "type_guid");
        assert_eq!(snake("httpResponseHeaders"), "http_response_headers");
        assert_eq!(snake("sshAuthorizedKeys"), "ssh_authorized_keys");
    }
}
