//! Versions and the `meta.json` build record.

use crate::fsutil::write_atomic;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// One output file of a build, as recorded in `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// File name, relative to the directory holding `meta.json`.
    pub path: String,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl Artifact {
    /// Hashes the file `dir/name`.
    pub fn of(dir: &Path, name: &str) -> Result<Artifact> {
        let path = dir.join(name);
        let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        Ok(Artifact {
            path: name.into(),
            sha256: hex::encode(h.finalize()),
            size,
        })
    }
}

/// The build record written next to the artifacts (coreos-assembler's
/// `meta.json`, reduced to what ferrocore uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BuildMeta {
    /// OS name.
    pub name: String,
    /// Update stream.
    pub stream: String,
    /// Version, `PREFIX.YYYYMMDD.Z.N` (Z: the stream code).
    pub version: String,
    /// Commit checksum.
    pub ostree_commit: String,
    /// Ref the commit was written to.
    pub ostree_ref: String,
    /// Commit timestamp (the lock's `source-date-epoch`).
    pub ostree_timestamp: u64,
    /// Kernel version in the commit.
    pub kernel_version: String,
    /// Default kernel arguments.
    pub kernel_arguments: Vec<String>,
    /// Number of Debian packages installed.
    pub packages: usize,
    /// Output files by role (`kernel`, `initramfs`, `lockfile`).
    pub artifacts: BTreeMap<String, Artifact>,
}

impl BuildMeta {
    /// Writes `dir/meta.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self).expect("meta serializes");
        json.push(b'\n');
        write_atomic(&dir.join("meta.json"), &json, 0o644)
    }
}

/// `(year, month, day)` of a Unix timestamp (UTC).
fn civil(secs: u64) -> (i64, u32, u32) {
    let date = i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::MAX)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    (
        i64::from(date.year()),
        date.month().unsigned_abs().into(),
        date.day().unsigned_abs().into(),
    )
}

/// The version of a build, as Fedora CoreOS numbers them:
/// `PREFIX.YYYYMMDD.Z.N`, the date from `epoch`, `Z` the stream's code
/// (stable 3, testing 2, next 1; 0 for a stream of our own), and `N` one more
/// than the parent's when the parent has the same `PREFIX.YYYYMMDD.Z`, else
/// 0. The date comes from the lock, not the clock, so that rebuilding the
/// same inputs gives the same version; the stream code lets release tooling
/// (`ferrocore release rollout`, like `rollout.py`) catch a build rolled out
/// on the wrong stream.
pub fn version_for(prefix: &str, stream: &str, epoch: u64, parent_version: Option<&str>) -> String {
    let (y, m, d) = civil(epoch);
    let z = release_meta::updates::stream_code(stream).unwrap_or("0");
    let stem = format!("{prefix}.{y:04}{m:02}{d:02}.{z}");
    let n = parent_version
        .and_then(|v| {
            v.strip_prefix(&stem)?
                .strip_prefix('.')?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |n| n + 1);
    format!("{stem}.{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        // 2026-11-26T00:00:00Z
        let t = 1_795_651_200;
        let v = |prefix, stream, t, parent| version_for(prefix, stream, t, parent);
        assert_eq!(v("41", "stable", t, None), "41.20261126.3.0");
        assert_eq!(
            v("41", "stable", t + 86399, Some("41.20261126.3.0")),
            "41.20261126.3.1"
        );
        assert_eq!(
            v("41", "stable", t, Some("41.20261126.3.9")),
            "41.20261126.3.10"
        );
        assert_eq!(v("41", "testing", t, None), "41.20261126.2.0");
        // Another stream's, another day's or another prefix's parent: N restarts.
        assert_eq!(
            v("41", "testing", t, Some("41.20261126.3.4")),
            "41.20261126.2.0"
        );
        assert_eq!(
            v("41", "stable", t, Some("41.20261125.3.3")),
            "41.20261126.3.0"
        );
        assert_eq!(
            v("42", "stable", t, Some("41.20261126.3.3")),
            "42.20261126.3.0"
        );
        assert_eq!(v("41", "mine", 0, None), "41.19700101.0.0");
        assert_eq!(v("41", "stable", 951_782_400, None), "41.20000229.3.0");
        // Every stable version passes the release tooling's check.
        release_meta::updates::check_version("stable", &v("41", "stable", t, None)).unwrap();
    }

    #[test]
    fn artifact_and_meta() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("k"), b"abc").unwrap();
        let a = Artifact::of(d.path(), "k").unwrap();
        assert_eq!(
            a.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(a.size, 3);
        let m = BuildMeta {
            name: "f".into(),
            stream: "s".into(),
            version: "1.19700101.0".into(),
            ostree_commit: "c".into(),
            ostree_ref: "r".into(),
            ostree_timestamp: 0,
            kernel_version: "6".into(),
            kernel_arguments: vec![],
            packages: 1,
            artifacts: [("kernel".to_string(), a)].into(),
        };
        m.write(d.path()).unwrap();
        let back: BuildMeta =
            serde_json::from_slice(&std::fs::read(d.path().join("meta.json")).unwrap()).unwrap();
        assert_eq!(back, m);
        assert!(Artifact::of(d.path(), "missing").is_err());
    }
}
