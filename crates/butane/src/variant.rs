//! The translator registry of Butane v0.23.0: which variant/version pairs
//! exist, their schema, their sugar, and their forbidden fields.

use serde_json::Value;

use crate::merge::Ts;
use crate::report::{path, Path, Report, ReportExt};
use crate::schema::{self, BTy, Extras};
use crate::validate::Rules;

/// The distribution a config targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Fedora CoreOS; the value is the spec minor version (1.x.0).
    Fcos(u8),
    /// Flatcar.
    Flatcar,
    /// RHEL for Edge.
    R4e,
    /// Fedora IoT.
    Fiot,
    /// OpenShift 4.x; the value is the minor version.
    Openshift(u8),
}

/// A resolved translator.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Which distribution.
    pub family: Family,
    /// Ignition 3.x minor version of the output (6 = 3.6.0-experimental).
    pub minor: u8,
    /// The Ignition version string emitted.
    pub ign_version: &'static str,
    base_pkg: &'static str,
    variant_pkg: String,
}

/// A parsed go-semver version.
struct Semver {
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
}

fn parse_semver(s: &str) -> Option<Semver> {
    let (core, _meta) = s.split_once('+').unwrap_or((s, ""));
    let (core, pre) = core.split_once('-').unwrap_or((core, ""));
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    let num = |p: &str| -> Option<u64> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    Some(Semver {
        major: num(parts[0])?,
        minor: num(parts[1])?,
        patch: num(parts[2])?,
        pre: pre.to_string(),
    })
}

const IGN: [&str; 7] = [
    "3.0.0",
    "3.1.0",
    "3.2.0",
    "3.3.0",
    "3.4.0",
    "3.5.0",
    "3.6.0-experimental",
];
const BASE: [&str; 7] = ["v0_1", "v0_2", "v0_3", "v0_4", "v0_5", "v0_6", "v0_7_exp"];

/// Finds the translator for `variant`/`version`, or the error text Butane prints.
pub fn lookup(variant: &str, version: &str) -> Result<Variant, String> {
    let v = parse_semver(version)
        .ok_or_else(|| "error parsing version; must be a valid semver".to_string())?;
    // rhcos 0.1.0 stays registered only to explain its removal.
    if variant == "rhcos" && (v.major, v.minor, v.patch, v.pre.as_str()) == (0, 1, 0, "") {
        return Err("rhcos variant has been removed; use openshift variant instead: https://coreos.github.io/butane/upgrading-openshift/".into());
    }
    let exp = v.pre == "experimental";
    let stable = v.pre.is_empty();
    let found = match (variant, v.major, v.minor, v.patch) {
        ("fcos", 1, m @ 0..=6, 0) if stable => {
            let minor = match m {
                0 => 0,
                1 => 1,
                2 | 3 => 2,
                n => n - 1,
            };
            let base = match m {
                0 => 0,
                1 => 1,
                2 | 3 => 2,
                n => n - 1,
            };
            Some((
                Family::Fcos(m as u8),
                minor as u8,
                base as usize,
                format!("v1_{m}"),
            ))
        }
        ("fcos", 1, 7, 0) if exp => Some((Family::Fcos(7), 6, 6usize, "v1_7_exp".into())),
        ("flatcar", 1, m @ 0..=1, 0) if stable => Some((
            Family::Flatcar,
            3 + m as u8,
            3 + m as usize,
            format!("v1_{m}"),
        )),
        ("r4e", 1, m @ 0..=1, 0) if stable => {
            Some((Family::R4e, 3 + m as u8, 3 + m as usize, format!("v1_{m}")))
        }
        ("flatcar", 1, 2, 0) if exp => Some((Family::Flatcar, 6, 6, "v1_2_exp".into())),
        ("r4e", 1, 2, 0) if exp => Some((Family::R4e, 6, 6, "v1_2_exp".into())),
        ("fiot", 1, 0, 0) if stable => Some((Family::Fiot, 4, 4usize, "v1_0".into())),
        ("fiot", 1, 1, 0) if exp => Some((Family::Fiot, 6, 6, "v1_1_exp".into())),
        ("openshift", 4, 19, 0) if exp => Some((Family::Openshift(19), 6, 6, "v4_19_exp".into())),
        ("openshift", 4, m @ 8..=18, 0) if stable => {
            let (minor, base) = if m >= 14 { (4, 4) } else { (2, 2) };
            Some((
                Family::Openshift(m as u8),
                minor,
                base as usize,
                format!("v4_{m}"),
            ))
        }
        _ => None,
    };
    let Some((family, minor, base, variant_pkg)) = found else {
        let pre = if v.pre.is_empty() {
            String::new()
        } else {
            format!("-{}", v.pre)
        };
        return Err(format!(
            "No translator exists for variant {variant} with version {}.{}.{}{pre}",
            v.major, v.minor, v.patch
        ));
    };
    Ok(Variant {
        family,
        minor,
        ign_version: IGN[minor as usize],
        base_pkg: BASE[base],
        variant_pkg,
    })
}

impl Variant {
    /// True for `openshift`.
    pub fn is_openshift(&self) -> bool {
        matches!(self.family, Family::Openshift(_))
    }

    /// The fcos spec version whose schema applies (openshift embeds fcos).
    fn fcos_level(&self) -> Option<u8> {
        match self.family {
            Family::Fcos(m) => Some(m),
            Family::Openshift(m) if m >= 19 => Some(7),
            Family::Openshift(m) if m >= 14 => Some(5),
            Family::Openshift(_) => Some(3),
            _ => None,
        }
    }

    /// The Butane schema of this translator.
    pub fn schema(&self) -> BTy {
        let mut extras = Extras {
            minor: self.minor,
            base_pkg: self.base_pkg.into(),
            variant_pkg: self.variant_pkg.clone(),
            top: Vec::new(),
        };
        let fcos = self.fcos_level().unwrap_or(0);
        if fcos >= 3 {
            let mut luks = vec![
                ("tang", BTy::List(Box::new(tang_schema(&extras)))),
                ("threshold", BTy::Int),
                ("tpm2", BTy::Bool),
            ];
            if fcos >= 5 {
                luks.push(("discard", BTy::Bool));
            }
            if fcos >= 6 {
                luks.push(("device", BTy::Str));
                luks.push((
                    "cex",
                    schema::vstruct(&extras, "BootDeviceLuksCex", vec![("enabled", BTy::Bool)]),
                ));
            }
            let bd = schema::vstruct(
                &extras,
                "BootDevice",
                vec![
                    ("layout", BTy::Str),
                    ("luks", schema::vstruct(&extras, "BootDeviceLuks", luks)),
                    (
                        "mirror",
                        schema::vstruct(
                            &extras,
                            "BootDeviceMirror",
                            vec![("devices", BTy::List(Box::new(BTy::Str)))],
                        ),
                    ),
                ],
            );
            extras.top.push(("boot_device".into(), bd));
        }
        let grub = match self.family {
            Family::Fcos(m) => m >= 5,
            Family::Openshift(m) => m >= 18,
            _ => false,
        };
        if grub {
            let user = schema::vstruct(
                &extras,
                "GrubUser",
                vec![("name", BTy::Str), ("password_hash", BTy::Str)],
            );
            let g = schema::vstruct(&extras, "Grub", vec![("users", BTy::List(Box::new(user)))]);
            extras.top.push(("grub".into(), g));
        }
        if self.is_openshift() {
            crate::openshift::schema_extras(&mut extras);
        }
        schema::butane_config(&extras)
    }

    /// Which source checks apply.
    pub fn rules(&self) -> Rules {
        let fcos = self.fcos_level();
        Rules {
            boot_device: fcos.is_some_and(|m| m >= 3),
            fcos_1_6: self.fcos_level().is_some_and(|m| m >= 6)
                && !matches!(self.family, Family::Openshift(m) if m < 19),
            grub: self.fcos_level().is_some_and(|m| m >= 5),
            reserved_labels: fcos.is_some(),
            openshift: self.is_openshift(),
        }
    }

    /// Variant sugar and translation-time checks (after the base translation).
    pub fn sugar(&self, src: &Value, cfg: &mut Value, ts: &mut Ts, r: &mut Report) {
        if self.rules().boot_device {
            crate::fcos::boot_device(src, cfg, ts);
        }
        if self.rules().reserved_labels {
            crate::fcos::reserved_labels(cfg, ts, r);
        }
        if self.rules().grub {
            crate::fcos::grub(src, cfg, ts);
        }
        match self.family {
            Family::R4e | Family::Fiot => forbid_edge(cfg, ts, r),
            Family::Openshift(m) => crate::openshift::translate(m, src, cfg, ts, r),
            _ => {}
        }
    }

    /// Stage 6: fields this variant forbids.
    pub fn filters(&self, src: &Value, cfg: &Value, ts: &Ts, raw: bool) -> Report {
        let mut r = Report::default();
        match self.family {
            Family::Flatcar => {
                // Flatcar 1.0/1.1 have no clevis; 1.2-exp has clevis but no CEX.
                let (field, msg) = if self.minor >= 6 {
                    (
                        "cex",
                        "cex is not currently supported on the target platform",
                    )
                } else {
                    ("clevis", "clevis is not supported in this spec version")
                };
                let luks = cfg.pointer("/storage/luks").and_then(Value::as_array);
                for (i, l) in luks.map_or(&[][..], Vec::as_slice).iter().enumerate() {
                    if l.get(field).is_some_and(non_empty) {
                        r.err(
                            ts.lookup(&path(&["storage", "luks", &i.to_string(), field])),
                            msg,
                        );
                    }
                }
            }
            Family::Openshift(m) => crate::openshift::filters(m, src, cfg, ts, raw, &mut r),
            _ => {}
        }
        r
    }
}

fn tang_schema(extras: &Extras) -> BTy {
    let mut fields = vec![("url", BTy::Str), ("thumbprint", BTy::Str)];
    if extras.minor >= 4 {
        fields.push(("advertisement", BTy::Str));
    }
    BTy::Struct(schema::BStruct {
        go: format!("{}.Tang", extras.base_pkg),
        fields: fields
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect(),
    })
}

/// True when a JSON value is not an empty struct or list.
pub fn non_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(m) => m.values().any(non_empty),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// r4e and fiot: the image builder owns kernel arguments and storage layout.
fn forbid_edge(cfg: &Value, ts: &Ts, r: &mut Report) {
    let checks: [(&[&str], &str); 5] = [
        (
            &["kernelArguments"],
            "kernel argument customization is not supported in this spec version",
        ),
        (
            &["storage", "disks"],
            "disk customization is not supported in this spec version",
        ),
        (
            &["storage", "filesystems"],
            "filesystem customization is not supported in this spec version",
        ),
        (
            &["storage", "luks"],
            "luks is not supported in this spec version",
        ),
        (
            &["storage", "raid"],
            "raid is not supported in this spec version",
        ),
    ];
    for (p, msg) in checks {
        let ptr = format!("/{}", p.join("/"));
        if cfg.pointer(&ptr).is_some_and(non_empty) {
            let jp: Path = path(p);
            r.err(ts.lookup(&jp), msg);
        }
    }
}
