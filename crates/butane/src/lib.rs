//! Butane: translate a human-friendly YAML config into an Ignition config,
//! behaving like coreos/butane v0.23.0 down to its messages.
//!
//! The pipeline (see `ARCHITECTURE.md` and the Butane spec notes) runs these
//! stages and stops at the first one that reports an error:
//! variant/version sniff → typed YAML decode → unused keys → Butane
//! validation → translation and sugar → variant field filters → Ignition
//! validation of the result → output (Ignition JSON, or a MachineConfig for
//! `openshift`).
//!
//! ```
//! let out = butane::translate(b"variant: fcos\nversion: 1.6.0\n", &butane::Options::default()).unwrap();
//! assert_eq!(out.bytes, b"{\"ignition\":{\"version\":\"3.5.0\"}}\n");
//! ```

#![warn(missing_docs)]

mod decode;
mod fcos;
mod godeflate;
mod ignition;
mod merge;
mod openshift;
mod report;
mod scalar;
mod schema;
mod translate;
mod util;
mod validate;
mod variant;
mod yaml;

use serde_json::Value;

pub use ignition_config::report::{Entry, Kind, Marker, Path, PathElem, Report};

/// Translation options (the CLI flags that affect translation).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-d/--files-dir`, exactly as given (it appears in error messages).
    pub files_dir: Option<String>,
    /// `-p/--pretty`: indented JSON.
    pub pretty: bool,
    /// `-r/--raw`: Ignition JSON even for `openshift`.
    pub raw: bool,
}

/// A successful translation.
#[derive(Debug, Clone)]
pub struct Output {
    /// The serialized config, with the trailing newline the CLI prints.
    pub bytes: Vec<u8>,
    /// Warnings (and infos) found on the way.
    pub report: Report,
}

/// A failed translation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The text the CLI prints after `Error translating config: `.
    pub message: String,
    /// Entries found before the failing stage stopped the run.
    pub report: Report,
}

const SOURCE_INVALID: &str = "source config is invalid";
const GENERATED_INVALID: &str = "config generated was invalid";

fn fail(message: impl Into<String>, report: Report) -> Failure {
    Failure {
        message: message.into(),
        report,
    }
}

/// Translates a Butane config.
pub fn translate(input: &[u8], opts: &Options) -> Result<Output, Failure> {
    // Stage 1: sniff variant and version from the top-level mapping.
    let text = decode_utf8(input)
        .map_err(|e| fail(format!("Error unmarshaling yaml: {e}"), Report::default()))?;
    let root = yaml::parse(text)
        .map_err(|e| fail(format!("Error unmarshaling yaml: {e}"), Report::default()))?;
    let (variant, version) = sniff(root.as_ref())?;
    let v = variant::lookup(&variant, &version).map_err(|m| fail(m, Report::default()))?;
    let root = root.unwrap_or(yaml::Node {
        kind: yaml::NodeKind::Map(Vec::new()),
        line: 1,
        col: 1,
        tag: None,
    });

    // Stage 2 and 3: typed decode, then unused keys.
    let decoded = decode::decode(&root, &v.schema());
    if !decoded.type_errors.is_empty() {
        return Err(fail(
            decode::type_error_text(&decoded.type_errors),
            Report::default(),
        ));
    }
    let mut report = decoded.unused;
    let src = decoded.value;

    let finish = |mut r: Report, message: &str| {
        report::correlate(&mut r, &root);
        fail(message, r)
    };

    // Stage 4: Butane validation.
    let mut r = validate::validate(&src, v.rules());
    report::correlate(&mut r, &root);
    report.merge(r);
    if report.is_fatal() {
        return Err(finish(report, SOURCE_INVALID));
    }

    // Stage 5: translation and sugar.
    let ctx = translate::Ctx {
        minor: v.minor,
        files_dir: opts.files_dir.as_deref(),
        ign_version: v.ign_version,
    };
    let (mut cfg, mut ts, r) = translate::base(&src, &ctx);
    report.merge(r);
    if report.is_fatal() {
        return Err(finish(report, SOURCE_INVALID));
    }
    let mut r = Report::default();
    v.sugar(&src, &mut cfg, &mut ts, &mut r);
    report.merge(r);
    if report.is_fatal() {
        return Err(finish(report, SOURCE_INVALID));
    }

    // Stage 6: field filters.
    let r = v.filters(&src, &cfg, &ts, opts.raw);
    report.merge(r);
    if report.is_fatal() {
        return Err(finish(report, SOURCE_INVALID));
    }

    // Stage 7: Ignition validation of the generated config.
    let (cfg, r) = ignition::finish(&cfg, v.minor, v.ign_version);
    for e in r.entries {
        report.entries.push(Entry {
            kind: e.kind,
            path: ignition_config::report::Path(ts.lookup(&e.path.0)),
            marker: None,
            message: e.message,
        });
    }
    report::correlate(&mut report, &root);
    if report.is_fatal() {
        return Err(fail(GENERATED_INVALID, report));
    }

    // Stage 8: output.
    let bytes = if v.is_openshift() && !opts.raw {
        openshift::machine_config(&src, &cfg)
    } else {
        to_json(&cfg, opts.pretty)
    };
    Ok(Output { bytes, report })
}

/// The input as text, like libyaml's reader: a UTF-8 BOM is skipped and
/// malformed UTF-8 is an error.
fn decode_utf8(input: &[u8]) -> Result<&str, String> {
    let input = input.strip_prefix(b"\xef\xbb\xbf").unwrap_or(input);
    std::str::from_utf8(input).map_err(|e| {
        let msg = match e.error_len() {
            None => "incomplete UTF-8 octet sequence",
            Some(_) if matches!(input[e.valid_up_to()], 0xc2..=0xf4) => {
                "invalid trailing UTF-8 octet"
            }
            Some(_) => "invalid leading UTF-8 octet",
        };
        format!("yaml: {msg}")
    })
}

/// The first pass: only `variant` and `version` of the top-level mapping.
fn sniff(root: Option<&yaml::Node>) -> Result<(String, String), Failure> {
    let mut variant = String::new();
    let mut version = String::new();
    if let Some(yaml::Node {
        kind: yaml::NodeKind::Map(entries),
        ..
    }) = root
    {
        let mut errors = Vec::new();
        for (i, (k, _)) in entries.iter().enumerate() {
            for (k2, _) in &entries[i + 1..] {
                if k.scalar().is_some() && k.scalar() == k2.scalar() {
                    errors.push(format!(
                        "line {}: mapping key {:?} already defined at line {}",
                        k2.line,
                        k.scalar().unwrap_or_default(),
                        k.line
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(fail(
                format!(
                    "Error unmarshaling yaml: {}",
                    decode::type_error_text(&errors)
                ),
                Report::default(),
            ));
        }
        for (k, val) in entries {
            let text = || match &val.kind {
                yaml::NodeKind::Scalar { value, .. } if !val.is_null() => value.clone(),
                _ => String::new(),
            };
            match k.scalar() {
                Some("variant") => variant = text(),
                Some("version") => version = text(),
                _ => {}
            }
        }
    }
    if variant.is_empty() {
        return Err(fail(
            "error parsing variant; must be specified",
            Report::default(),
        ));
    }
    Ok((variant, version))
}

/// Serializes like Go's encoding/json: compact or 2-space indented, HTML-safe
/// escapes, and the trailing newline the CLI adds.
fn to_json(cfg: &Value, pretty: bool) -> Vec<u8> {
    let cfg = if cfg.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        cfg.clone()
    };
    let s = if pretty {
        serde_json::to_string_pretty(&cfg)
    } else {
        serde_json::to_string(&cfg)
    }
    .unwrap_or_default();
    // `<`, `>`, `&` and U+2028/9 only occur inside strings in JSON text.
    let s = s
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    let mut b = s.into_bytes();
    b.push(b'\n');
    b
}
