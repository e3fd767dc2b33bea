//! Test data built from the real fixtures.
//!
//! The fixtures carry the real updates metadata of stable, testing and next
//! (fedora-coreos-streams, 2026-07) but only an old real release index (stable up to
//! 33.20201214.3.1, with real checksums). So each stream's `releases.json` is:
//! the real index entries (stable only), then every newer release named in the real
//! updates metadata or stream metadata, in release order (by the YYYYMMDD field:
//! next's updates file lists 38.20230310.1.0 before the older 37.20230303.1.1).
//! Those added releases get labelled synthetic payloads for x86_64 and aarch64:
//! checksum = sha256("ferrocore-fixture:<version>:<arch>") and an OCI digest-ref
//! with the same digest, so graph *structure* comes from real metadata only.

#![allow(dead_code)]

use release_meta::index::{release_metadata_url, ArchPayload};
use release_meta::{fsutil, ReleaseIndex, Stream, Updates};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/update-stack/"
    ))
    .join(rel)
}

pub fn updates(stream: &str) -> Updates {
    fsutil::read_json(&fixture(&format!("updates/{stream}.json"))).unwrap()
}

fn date_key(version: &str) -> (u64, Vec<u64>) {
    let parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    (parts.get(1).copied().unwrap_or(0), parts)
}

pub fn synthetic_digest(version: &str, arch: &str) -> String {
    hex(&Sha256::digest(
        format!("ferrocore-fixture:{version}:{arch}").as_bytes(),
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The release index described in the module documentation.
pub fn index(stream: &str) -> ReleaseIndex {
    let mut idx = if stream == "stable" {
        fsutil::read_json(&fixture(
            "releases/releases-stable-index.stream-metadata-go-fixture.json",
        ))
        .unwrap()
    } else {
        ReleaseIndex::new(stream)
    };
    let newest_real = idx.releases.last().map(|r| date_key(&r.version));
    let stream_meta: Stream =
        fsutil::read_json(&fixture(&format!("streams/{stream}.json"))).unwrap();
    let mut versions: Vec<String> = updates(stream)
        .releases
        .iter()
        .map(|e| e.version.clone())
        .collect();
    versions.push(
        stream_meta.architectures["x86_64"].artifacts["metal"]
            .release
            .clone(),
    );
    versions.sort_by_key(|v| date_key(v));
    versions.dedup();
    for v in versions {
        if idx.position(&v).is_some() || newest_real.as_ref().is_some_and(|n| date_key(&v) <= *n) {
            continue;
        }
        for arch in ["x86_64", "aarch64"] {
            let d = synthetic_digest(&v, arch);
            let payload = ArchPayload {
                architecture: arch.into(),
                checksum: Some(d.clone()),
                oci: Some((
                    format!("quay.io/fedora/fedora-coreos:{stream}"),
                    format!("quay.io/fedora/fedora-coreos@sha256:{d}"),
                )),
            };
            idx.add_arch(&v, &release_metadata_url(stream, &v), &payload)
                .unwrap();
        }
    }
    idx
}

/// Lays out a data directory (bucket layout) with stable, testing and next.
pub fn data_dir(root: &Path) {
    for stream in ["stable", "testing", "next"] {
        let dir = root.join("prod/streams").join(stream);
        std::fs::create_dir_all(&dir).unwrap();
        fsutil::write_json(&dir.join("releases.json"), &index(stream)).unwrap();
        std::fs::create_dir_all(root.join("updates")).unwrap();
        std::fs::copy(
            fixture(&format!("updates/{stream}.json")),
            root.join("updates").join(format!("{stream}.json")),
        )
        .unwrap();
    }
}

/// Real stable rollout of 44.20260707.3.1: start and duration.
pub const STABLE_START: i64 = 1_784_728_800;
pub const STABLE_MINUTES: i64 = 2880;
