//! `manifest.toml`: what the OS is made of (the config directory's input).
//!
//! Paths inside the manifest (overlay, units) are relative to the config
//! directory, so that `os/` can be moved or copied as a unit.

use crate::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// File name of the manifest inside the config directory.
pub const MANIFEST_FILE: &str = "manifest.toml";

/// The parsed and validated `manifest.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// OS name, used in commit subjects and artifact names (`ferrocore`).
    pub name: String,
    /// Update stream (`stable`, `testing`, ...).
    pub stream: String,
    /// First component of versions (`41` in `41.20261126.3.0`).
    pub version_prefix: String,
    /// Default ref the commit goes to (`ferrocore/x86_64/stable`).
    pub ostree_ref: String,
    /// Debian suite (`bookworm`).
    pub suite: String,
    /// mmdebstrap variant used when resolving the lock (`minbase`, ...).
    pub variant: String,
    /// Debian architecture (`amd64`).
    pub architecture: String,
    /// Packages asked for; the lockfile closes this set under dependencies.
    pub packages: Vec<String>,
    /// Files copied over the tree before post-processing (absolute path).
    pub overlay: Option<PathBuf>,
    /// Unit files installed into `/usr/lib/systemd/system` (absolute paths).
    pub units: Vec<PathBuf>,
    /// Units enabled as `systemctl enable` would (from their `[Install]`).
    pub enable: Vec<String>,
    /// Default kernel arguments of the OS.
    pub kernel_arguments: Vec<String>,
    /// Whether the running `ferrocore` binary goes to `/usr/bin/ferrocore`.
    pub install_ferrocore: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    name: String,
    stream: String,
    version_prefix: String,
    #[serde(rename = "ref")]
    ostree_ref: String,
    debian: RawDebian,
    #[serde(default)]
    overlay: Option<String>,
    #[serde(default)]
    units: Vec<String>,
    #[serde(default)]
    enable: Vec<String>,
    #[serde(default)]
    kernel_arguments: Vec<String>,
    #[serde(default)]
    install_ferrocore: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDebian {
    suite: String,
    #[serde(default = "default_variant")]
    variant: String,
    #[serde(default = "default_arch")]
    architecture: String,
    packages: Vec<String>,
}

fn default_variant() -> String {
    "minbase".into()
}

fn default_arch() -> String {
    "amd64".into()
}

/// The variants whose package set mmdebstrap derives from the suite alone
/// (`custom`/`extract` would make the lock depend on nothing but `packages`).
const VARIANTS: &[&str] = &[
    "essential",
    "apt",
    "required",
    "minbase",
    "buildd",
    "important",
    "debootstrap",
    "standard",
];

/// Debian policy §5.6.1: lowercase letters, digits, `+ - .`, at least two
/// characters, starting with an alphanumeric.
pub fn valid_package_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(c))
}

impl Manifest {
    /// Reads `DIR/manifest.toml`.
    pub fn load(config_dir: &Path) -> Result<Manifest> {
        let path = config_dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Manifest::parse(&text, config_dir, &path)
    }

    /// Parses manifest text; `config_dir` anchors relative paths, `file`
    /// names the source in errors.
    pub fn parse(text: &str, config_dir: &Path, file: &Path) -> Result<Manifest> {
        let bad = |key: &str, msg: String| Error::Config {
            file: file.to_path_buf(),
            message: format!("{key}: {msg}"),
        };
        let raw: Raw = toml::from_str(text).map_err(|e| Error::Config {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
        for (key, v) in [
            ("name", &raw.name),
            ("stream", &raw.stream),
            ("debian.suite", &raw.debian.suite),
        ] {
            if v.is_empty() || !v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
                return Err(bad(key, format!("{v:?} must be non-empty [A-Za-z0-9-]")));
            }
        }
        if raw.version_prefix.is_empty() || !raw.version_prefix.bytes().all(|c| c.is_ascii_digit())
        {
            return Err(bad(
                "version-prefix",
                format!("{:?} must be a decimal number", raw.version_prefix),
            ));
        }
        ostree_repo::validate_ref(&raw.ostree_ref).map_err(|e| bad("ref", e.to_string()))?;
        if !VARIANTS.contains(&raw.debian.variant.as_str()) {
            return Err(bad(
                "debian.variant",
                format!(
                    "{:?} is not one of {}",
                    raw.debian.variant,
                    VARIANTS.join(", ")
                ),
            ));
        }
        if raw.debian.architecture != "amd64" {
            return Err(bad(
                "debian.architecture",
                format!("{:?}: only amd64 is supported", raw.debian.architecture),
            ));
        }
        if raw.debian.packages.is_empty() {
            return Err(bad("debian.packages", "must not be empty".into()));
        }
        let mut packages = raw.debian.packages.clone();
        for (i, p) in packages.iter().enumerate() {
            if !valid_package_name(p) {
                return Err(bad(
                    &format!("debian.packages[{i}]"),
                    format!("{p:?} is not a Debian package name"),
                ));
            }
        }
        packages.sort();
        packages.dedup();
        let overlay = match raw.overlay {
            Some(o) => {
                let p = relative(config_dir, &o).map_err(|m| bad("overlay", m))?;
                if !p.is_dir() {
                    return Err(bad(
                        "overlay",
                        format!("{} is not a directory", p.display()),
                    ));
                }
                Some(p)
            }
            None => None,
        };
        let mut units = Vec::new();
        for (i, u) in raw.units.iter().enumerate() {
            let key = format!("units[{i}]");
            let p = relative(config_dir, u).map_err(|m| bad(&key, m))?;
            if !p.is_file() {
                return Err(bad(&key, format!("{} is not a file", p.display())));
            }
            units.push(p);
        }
        for (i, u) in raw.enable.iter().enumerate() {
            if u.contains('/') || !u.contains('.') {
                return Err(bad(
                    &format!("enable[{i}]"),
                    format!("{u:?} is not a unit name (like ssh.service)"),
                ));
            }
        }
        for (i, k) in raw.kernel_arguments.iter().enumerate() {
            if k.is_empty() || k.chars().any(char::is_whitespace) {
                return Err(bad(
                    &format!("kernel-arguments[{i}]"),
                    format!("{k:?} must be one non-empty word"),
                ));
            }
        }
        Ok(Manifest {
            name: raw.name,
            stream: raw.stream,
            version_prefix: raw.version_prefix,
            ostree_ref: raw.ostree_ref,
            suite: raw.debian.suite,
            variant: raw.debian.variant,
            architecture: raw.debian.architecture,
            packages,
            overlay,
            units,
            enable: raw.enable,
            kernel_arguments: raw.kernel_arguments,
            install_ferrocore: raw.install_ferrocore,
        })
    }

    /// Digest of everything that decides the resolved package set; the lock
    /// records it so that a build notices a manifest edited after locking.
    pub fn package_inputs_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [&self.suite, &self.variant, &self.architecture] {
            h.update(part.as_bytes());
            h.update(b"\n");
        }
        for p in &self.packages {
            h.update(p.as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }
}

/// Resolves a manifest path, refusing absolute paths and `..` so the config
/// directory stays self-contained.
fn relative(dir: &Path, p: &str) -> std::result::Result<PathBuf, String> {
    let rel = Path::new(p);
    if p.is_empty()
        || rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "{p:?} must be a relative path inside the config directory"
        ));
    }
    Ok(dir.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("overlay")).unwrap();
        std::fs::create_dir(d.path().join("units")).unwrap();
        std::fs::write(d.path().join("units/a.service"), "[Service]\n").unwrap();
        d
    }

    const GOOD: &str = r#"
name = "ferrocore"
stream = "stable"
version-prefix = "41"
ref = "ferrocore/x86_64/stable"
overlay = "overlay"
units = ["units/a.service"]
enable = ["a.service"]
kernel-arguments = ["console=ttyS0,115200"]
[debian]
suite = "bookworm"
packages = ["systemd-sysv", "linux-image-amd64", "systemd-sysv"]
"#;

    fn parse(d: &tempfile::TempDir, text: &str) -> Result<Manifest> {
        Manifest::parse(text, d.path(), &d.path().join(MANIFEST_FILE))
    }

    #[test]
    fn parses_and_normalizes() {
        let d = setup();
        let m = parse(&d, GOOD).unwrap();
        assert_eq!(m.packages, ["linux-image-amd64", "systemd-sysv"]);
        assert_eq!(m.variant, "minbase");
        assert_eq!(m.units, [d.path().join("units/a.service")]);
        assert_eq!(m.overlay, Some(d.path().join("overlay")));
        assert!(!m.install_ferrocore);
    }

    fn err(d: &tempfile::TempDir, text: &str) -> String {
        parse(d, text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_and_key() {
        let d = setup();
        let e = err(&d, &GOOD.replace("\"41\"", "\"4a\""));
        assert!(
            e.contains("manifest.toml") && e.contains("version-prefix"),
            "{e}"
        );
        let e = err(
            &d,
            &GOOD.replace("\"systemd-sysv\", \"linux", "\"Bad_Name\", \"linux"),
        );
        assert!(
            e.contains("debian.packages[0]") && e.contains("Bad_Name"),
            "{e}"
        );
        let e = err(
            &d,
            &GOOD.replace("units/a.service", "units/missing.service"),
        );
        assert!(e.contains("units[0]"), "{e}");
        let e = err(&d, &GOOD.replace("\"overlay\"", "\"../etc\""));
        assert!(e.contains("overlay") && e.contains("relative"), "{e}");
        let e = err(&d, &GOOD.replace("suite = ", "colour = \"x\"\nsuite = "));
        assert!(e.contains("colour") && e.contains("manifest.toml"), "{e}");
        let e = err(&d, &GOOD.replace("ref = ", "#"));
        assert!(e.contains("ref"), "{e}");
        let e = err(&d, &GOOD.replace("ttyS0,115200", "a b"));
        assert!(e.contains("kernel-arguments[0]"), "{e}");
    }

    #[test]
    fn digest_tracks_package_inputs_only() {
        let d = setup();
        let a = parse(&d, GOOD).unwrap();
        let b = parse(&d, &GOOD.replace("console=ttyS0,115200", "quiet")).unwrap();
        assert_eq!(a.package_inputs_digest(), b.package_inputs_digest());
        let c = parse(&d, &GOOD.replace("\"systemd-sysv\"]", "\"podman\"]")).unwrap();
        assert_ne!(a.package_inputs_digest(), c.package_inputs_digest());
    }

    #[test]
    fn package_names() {
        assert!(valid_package_name("libc6"));
        assert!(valid_package_name("g++"));
        assert!(!valid_package_name("a"));
        assert!(!valid_package_name("-x"));
        assert!(!valid_package_name("Foo"));
        assert!(!valid_package_name("a b"));
    }
}
