//! Per-build release metadata (`builds/<version>/release.json`), as written by
//! coreos-assembler `generate-release-meta` (Go type: stream-metadata-go
//! `release.Release`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A whole `release.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Version, e.g. `33.20201201.3.0`.
    pub release: String,
    /// Stream it was released on.
    pub stream: String,
    /// `last-modified` (newer files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Per architecture.
    pub architectures: BTreeMap<String, ReleaseArch>,
    /// Keys this crate does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One architecture of a release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReleaseArch {
    /// OSTree commit (absent for OCI-imported builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Update container image.
    #[serde(rename = "oci-image", default, skip_serializing_if = "Option::is_none")]
    pub oci_image: Option<OciImage>,
    /// Artifacts and cloud images per platform (`aws`, `metal`, ...).
    #[serde(default)]
    pub media: BTreeMap<String, PlatformMedia>,
    /// Keys this crate does not interpret (e.g. `rhel-coreos-extensions`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Container image of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciImage {
    /// Floating tag.
    pub image: String,
    /// Image pinned by digest.
    #[serde(rename = "digest-ref")]
    pub digest_ref: String,
}

/// One platform's media.
///
/// Cloud image shapes differ per platform (AWS/Aliyun: region → `{image}`; IBM Cloud:
/// region → `{object,bucket,url}`; GCP: `{project,family,name}`; KubeVirt:
/// `{image,digest-ref}`); they are kept as JSON objects and projected generically
/// into stream metadata, so new platforms need no code.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlatformMedia {
    /// Downloadable artifacts per format (`raw.xz`, `iso`, `pxe`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<BTreeMap<String, ImageFormat>>,
    /// Per-region cloud images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<BTreeMap<String, Map<String, Value>>>,
    /// A single (global) cloud image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Map<String, Value>>,
    /// Keys this crate does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The files making up one format (a disk image, or kernel + initramfs + rootfs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageFormat {
    /// Disk image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Artifact>,
    /// PXE kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<Artifact>,
    /// PXE initramfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<Artifact>,
    /// PXE rootfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<Artifact>,
    /// Keys this crate does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One downloadable file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// URL.
    pub location: String,
    /// URL of the detached GPG signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// SHA-256 of the file as downloaded.
    pub sha256: String,
    /// SHA-256 after decompression.
    #[serde(
        rename = "uncompressed-sha256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub uncompressed_sha256: Option<String>,
    /// Keys this crate does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
