//! Stream metadata (`streams/<stream>.json`): the public, stable description of the
//! newest artifacts of a stream, read by coreos-installer and the download page.
//! Go type: stream-metadata-go `stream.Stream`; generated from release metadata as
//! `fedora-coreos-stream-generator` does (stream-metadata-go `release/translate.go`).

use crate::release::{ImageFormat, Release};
use crate::{time, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Generator string ferrocore stamps into `metadata.generator`.
pub const GENERATOR: &str = concat!("ferrocore-release ", env!("CARGO_PKG_VERSION"));

/// A whole `streams/<stream>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stream {
    /// Stream name.
    pub stream: String,
    /// `last-modified` and `generator`.
    pub metadata: StreamMetadata,
    /// Per architecture.
    pub architectures: BTreeMap<String, StreamArch>,
    /// Keys this crate does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `metadata` object of stream metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamMetadata {
    /// RFC 3339 UTC.
    #[serde(rename = "last-modified")]
    pub last_modified: String,
    /// Tool that wrote the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// Keys this crate does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One architecture of a stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamArch {
    /// Artifacts per platform.
    #[serde(default)]
    pub artifacts: BTreeMap<String, PlatformArtifacts>,
    /// Cloud images per platform; shapes vary per platform (see
    /// [`crate::release::PlatformMedia`]), each carries the `release` it comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<BTreeMap<String, Map<String, Value>>>,
    /// Keys this crate does not interpret (e.g. `rhel-coreos-extensions`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Artifacts of one platform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlatformArtifacts {
    /// Release these artifacts come from.
    pub release: String,
    /// Files per format.
    pub formats: BTreeMap<String, ImageFormat>,
}

impl Stream {
    /// Builds stream metadata for `stream` from release metadata, oldest first: each
    /// platform of each architecture shows the newest release that provides it (so an
    /// architecture or platform missing from a build keeps its previous artifacts).
    pub fn from_releases(stream: &str, releases: &[Release], now: i64) -> Result<Stream> {
        if releases.is_empty() {
            return Err(Error::Invalid(
                "stream metadata needs at least one release".into(),
            ));
        }
        let mut architectures: BTreeMap<String, StreamArch> = BTreeMap::new();
        for rel in releases {
            if rel.stream != stream {
                return Err(Error::Invalid(format!(
                    "release {} belongs to stream '{}', not '{stream}'",
                    rel.release, rel.stream
                )));
            }
            for (arch, rarch) in &rel.architectures {
                let sarch = architectures.entry(arch.clone()).or_default();
                for (platform, media) in &rarch.media {
                    if let Some(formats) = &media.artifacts {
                        sarch.artifacts.insert(
                            platform.clone(),
                            PlatformArtifacts {
                                release: rel.release.clone(),
                                formats: formats.clone(),
                            },
                        );
                    }
                    if let Some(img) = project_images(&rel.release, media) {
                        sarch
                            .images
                            .get_or_insert_with(BTreeMap::new)
                            .insert(platform.clone(), img);
                    }
                }
            }
        }
        Ok(Stream {
            stream: stream.to_owned(),
            metadata: StreamMetadata {
                last_modified: time::rfc3339_utc(now),
                generator: Some(GENERATOR.to_owned()),
                extra: Map::new(),
            },
            architectures,
            extra: Map::new(),
        })
    }
}

/// Release media cloud images → stream images, each stamped with the release.
fn project_images(
    release: &str,
    media: &crate::release::PlatformMedia,
) -> Option<Map<String, Value>> {
    let stamp = |obj: &Map<String, Value>| {
        let mut out = Map::new();
        out.insert("release".into(), Value::String(release.to_owned()));
        out.extend(obj.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    };
    if let Some(regions) = &media.images {
        let regions: Map<String, Value> = regions
            .iter()
            .map(|(r, obj)| (r.clone(), Value::Object(stamp(obj))))
            .collect();
        let mut out = Map::new();
        out.insert("regions".into(), Value::Object(regions));
        return Some(out);
    }
    media.image.as_ref().map(stamp)
}
