//! Ignition config specs 3.0.0 … 3.6.0 and 3.7.0-experimental: a typed model,
//! parsing with Go `encoding/json` semantics, validation with upstream's exact
//! messages and paths, translation up the version chain, and merging.
//!
//! # Public API
//!
//! * [`SpecVersion`]: the supported versions (`Display`/`FromStr` use the exact
//!   version strings; [`SpecVersion::LATEST`] is 3.7.0-experimental).
//! * [`types`]: the latest-version typed model ([`types::Config`] and every struct),
//!   serde `Serialize`/`Deserialize` with the JSON names, fields in Go order.
//! * [`schema`]: the schema as data (struct/field/kind/pointer/version ranges),
//!   generated from the same declaration as [`types`].
//! * [`parse`] / [`parse_exact`]: `config.Parse` (any supported version, translated
//!   up) and the same without translation.
//! * [`validate`] (all semantic rules), [`validate_duplicates`] and
//!   [`validate_semantics`] (the two passes separately, for Butane, which reports
//!   duplicates first).
//! * [`translate_up`], [`merge`].
//! * [`to_json`] / [`to_json_pretty`]: byte-for-byte what Butane's Go output
//!   (clarketm/json `Marshal` / `MarshalIndent(cfg, "", "  ")`) prints for the
//!   same config.
//!
//! # Behaviour worth knowing
//!
//! * [`parse`] validates a config at its own version, then translates it; reports
//!   carry line/column markers computed like vcontext does (value start for rule
//!   violations, key start for unused keys, Go's decoder offset for JSON errors).
//! * Report order is upstream's: every struct's rules in a pre-order walk, then
//!   duplicates, then unused keys (within one JSON object in document order, where
//!   upstream iterates a Go map).
//! * Translation keeps `clevis.tang[].advertisement` when going from 3.4 to 3.5+,
//!   where upstream's translator drops it (see [`translate_up`]).
//! * The 3.7.0-experimental virtiofs messages other than the label one could not
//!   be checked against upstream's texts (see [`msg`]); `file:`/`oem:` URLs are
//!   accepted in 3.7.0-experimental only.
//! * JSON nested deeper than 64 levels is syntax-checked (Go's 10000-level limit
//!   included) but not kept: no schema field is that deep.
//!
//! Reports ([`report`]) print like vcontext: `error at $.path, line L col C: msg`.
//!
//! ```
//! let (cfg, report) = ignition_config::parse(br#"{"ignition":{"version":"3.3.0"}}"#).unwrap();
//! assert_eq!(cfg.ignition.version, "3.7.0-experimental");
//! assert!(report.entries.is_empty());
//! ```

#![warn(missing_docs)]

mod decode;
mod json;
mod merge;
pub mod report;
pub mod schema;
mod translate;
pub mod types;
mod unit;
mod url;
mod validate;
mod version;

use std::fmt;

pub use merge::merge;
pub use translate::translate_up;
pub use validate::msg;
pub use validate::{validate_duplicates, validate_semantics};
pub use version::{SpecVersion, UnknownVersion};

use report::{Entry, Kind, Path, Report};

/// Why a config could not be parsed. Upstream's error texts via `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Empty input: `not a config (empty)`.
    Empty,
    /// `ignition.version` missing or not semver: `invalid config version (couldn't parse)`.
    InvalidVersion,
    /// A version this library does not accept (2.x, stale experimental, future):
    /// `unsupported config version`.
    UnknownVersion,
    /// JSON syntax or type errors, or validation errors (all in the report):
    /// `config is not valid`.
    Invalid(Report),
}

impl ParseError {
    /// The report behind an [`ParseError::Invalid`], if any.
    pub fn report(&self) -> Option<&Report> {
        match self {
            ParseError::Invalid(r) => Some(r),
            _ => None,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Empty => "not a config (empty)",
            ParseError::InvalidVersion => "invalid config version (couldn't parse)",
            ParseError::UnknownVersion => "unsupported config version",
            ParseError::Invalid(_) => "config is not valid",
        })
    }
}

impl std::error::Error for ParseError {}

fn decode_failure(msg: String, offset: usize, lines: &json::LineIndex) -> ParseError {
    ParseError::Invalid(Report {
        entries: vec![Entry {
            kind: Kind::Error,
            path: Path::root(),
            marker: Some(lines.marker(offset)),
            message: msg,
        }],
    })
}

/// Parses an Ignition config of any supported version without translating it:
/// returns its version, the config (in the latest model, holding only that
/// version's fields) and the report (warnings). Errors make it fail.
pub fn parse_exact(raw: &[u8]) -> Result<(SpecVersion, types::Config, Report), ParseError> {
    if raw.is_empty() {
        return Err(ParseError::Empty);
    }
    let lines = json::LineIndex::new(raw);
    let root = json::parse(raw).map_err(|e| decode_failure(e.msg, e.offset, &lines))?;
    let version_str = match decode::read_version(&root) {
        decode::VersionRead::Version(v) => v,
        decode::VersionRead::TypeError(e) => return Err(decode_failure(e.msg, e.offset, &lines)),
    };
    let semver = version::Semver::parse(&version_str).ok_or(ParseError::InvalidVersion)?;
    let version = SpecVersion::from_semver(&semver).ok_or(ParseError::UnknownVersion)?;
    let value =
        decode::decode(&root, version).map_err(|e| decode_failure(e.msg, e.offset, &lines))?;
    let mut cfg: types::Config = serde_json::from_value(value)
        .map_err(|e| decode_failure(format!("json: {e}"), 0, &lines))?;
    // The version string may differ from the canonical one (e.g. leading zeros
    // accepted by semver); upstream keeps what was written.
    cfg.ignition.version = version_str;
    let mut report = validate_semantics_at(&cfg, version);
    report.merge(validate_duplicates(&cfg));
    for e in &mut report.entries {
        e.marker = Some(decode::locate(&root, &e.path, &lines));
    }
    report.merge(decode::unused_keys(&root, version, &lines));
    if report.is_fatal() {
        return Err(ParseError::Invalid(report));
    }
    Ok((version, cfg, report))
}

/// Semantic validation without the version-string check (parse has done it).
fn validate_semantics_at(cfg: &types::Config, version: SpecVersion) -> Report {
    if cfg.ignition.version == version.as_str() {
        validate_semantics(cfg, version)
    } else {
        let mut c = cfg.clone();
        c.ignition.version = version.as_str().to_string();
        validate_semantics(&c, version)
    }
}

/// Parses like Ignition's `config.Parse`: any supported version, validated at
/// its own version, then translated up to [`SpecVersion::LATEST`].
pub fn parse(raw: &[u8]) -> Result<(types::Config, Report), ParseError> {
    let (version, cfg, report) = parse_exact(raw)?;
    Ok((translate_up(cfg, version, SpecVersion::LATEST), report))
}

/// Validates a typed config as spec `version`: semantic rules, then duplicates,
/// paths in JSON (camelCase) space, no line/column markers. Unused keys need the
/// raw JSON and are reported by [`parse`] only.
pub fn validate(cfg: &types::Config, version: SpecVersion) -> Report {
    let mut r = validate_semantics(cfg, version);
    r.merge(validate_duplicates(cfg));
    r
}

/// Go's `json.Marshal` escapes these characters even inside strings (HTML safety);
/// they never occur outside strings, so a textual pass is exact.
fn go_escape(s: String) -> String {
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s;
    }
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// Serializes `cfg` as Butane's Go code does with clarketm/json `Marshal` (key
/// order, omitempty including empty structs, HTML-safe escaping). Note that
/// Ignition's own cache file uses plain `encoding/json`, which keeps empty structs.
pub fn to_json(cfg: &types::Config) -> String {
    // Serializing plain data with string keys cannot fail.
    go_escape(serde_json::to_string(cfg).unwrap_or_default())
}

/// Serializes `cfg` as clarketm/json `MarshalIndent(cfg, "", "  ")` does.
pub fn to_json_pretty(cfg: &types::Config) -> String {
    go_escape(serde_json::to_string_pretty(cfg).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_marshal_output() {
        let mut c = types::Config::with_version(SpecVersion::V3_4_0);
        c.storage.files.push(types::File {
            path: "/a".into(),
            contents: types::Resource {
                source: Some("data:,<&>".into()),
                ..Default::default()
            },
            mode: Some(420),
            ..Default::default()
        });
        c.storage.disks.push(types::Disk::default());
        assert_eq!(
            to_json(&c),
            r#"{"ignition":{"version":"3.4.0"},"storage":{"disks":[{"device":""}],"files":[{"path":"/a","contents":{"source":"data:,\u003c\u0026\u003e"},"mode":420}]}}"#
        );
        assert!(to_json_pretty(&c)
            .starts_with("{\n  \"ignition\": {\n    \"version\": \"3.4.0\"\n  },"));
    }

    #[test]
    fn version_errors() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"{}").unwrap_err(), ParseError::InvalidVersion);
        assert_eq!(
            parse(br#"{"ignition":{"version":"2.2.0"}}"#).unwrap_err(),
            ParseError::UnknownVersion
        );
        let (v, _, _) = parse_exact(br#"{"Ignition":{"Version":"3.1.0"}}"#).unwrap();
        assert_eq!(v, SpecVersion::V3_1_0);
    }

    #[test]
    fn type_error_text_and_marker() {
        let raw = b"{\"ignition\":{\"version\":\"3.0.0\"},\"storage\":{\"files\":[{\"path\":\"/a\",\"mode\":\"0644\"}]}}";
        let e = parse(raw).unwrap_err();
        let r = e.report().unwrap();
        assert_eq!(
            r.entries[0].message,
            "json: cannot unmarshal string into Go struct field File.storage.files.mode of type int"
        );
        assert_eq!(
            r.entries[0].to_string().split(':').next().unwrap(),
            "error at line 1 col 79"
        );
    }

    #[test]
    fn markers_for_validation_and_unused() {
        let raw = b"{\"ignition\":{\"version\":\"3.3.0\"},\n\"storage\":{\"file\":[],\"files\":[{\"path\":\"a\"}]}}";
        let e = parse(raw).unwrap_err();
        let s = e.report().unwrap().to_string();
        assert!(
            s.contains("error at $.storage.files.0.path, line 2 col 39: path not absolute"),
            "{s}"
        );
        assert!(
            s.contains("warning at $.storage.file, line 2 col 12: unused key file"),
            "{s}"
        );
    }

    #[test]
    fn duplicate_keys_and_case() {
        let raw = br#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/a"}]},"Storage":{"disks":[{"device":"/dev/vda"}]}}"#;
        let (cfg, rep) = parse(raw).unwrap();
        assert_eq!(cfg.storage.files.len(), 1);
        assert_eq!(cfg.storage.disks.len(), 1);
        assert_eq!(rep.entries.len(), 1);
        assert_eq!(rep.entries[0].message, "unused key Storage");
        // Go's folding: the Kelvin sign matches `k`, long s matches `s`.
        let raw = "{\"ignition\":{\"version\":\"3.3.0\"},\"\u{212a}ernelArgument\u{17f}\":{\"shouldExist\":[\"a\"]}}";
        let (cfg, _) = parse(raw.as_bytes()).unwrap();
        assert_eq!(cfg.kernel_arguments.should_exist, ["a"]);
    }
}
