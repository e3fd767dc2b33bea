//! Release index (`prod/streams/<stream>/releases.json`): every release of a stream,
//! oldest first, with its update payload per architecture. Spec:
//! fedora-coreos-tracker `metadata/release-index/specifications.md`; writer semantics
//! from coreos-assembler `plume update-release-index`.

use crate::updates::FileMetadata;
use crate::{time, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A whole `releases.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReleaseIndex {
    /// Warning that the file is internal (kept as published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Releases oldest → newest; position = `age_index` in the update graph.
    pub releases: Vec<IndexRelease>,
    /// File-level metadata (`last-modified`).
    pub metadata: FileMetadata,
    /// Stream name.
    pub stream: String,
    /// Keys this crate does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One release of the index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexRelease {
    /// OSTree commits per architecture (absent for OCI-only builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commits: Option<Vec<IndexCommit>>,
    /// OCI images per architecture.
    #[serde(
        rename = "oci-images",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub oci_images: Option<Vec<IndexOciImage>>,
    /// Release version.
    pub version: String,
    /// URL of this build's `release.json`.
    pub metadata: String,
    /// Keys this crate does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// OSTree commit of one architecture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexCommit {
    /// `x86_64`, `aarch64`, ...
    pub architecture: String,
    /// OSTree commit checksum (64 hex).
    pub checksum: String,
}

/// OCI image of one architecture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexOciImage {
    /// `x86_64`, `aarch64`, ...
    pub architecture: String,
    /// Floating tag, e.g. `quay.io/fedora/fedora-coreos:stable`.
    pub image: String,
    /// Image pinned by digest; this is the graph payload for OCI clients.
    #[serde(rename = "digest-ref")]
    pub digest_ref: String,
}

/// What `ferrocore release add` puts into the index for one architecture.
#[derive(Clone, Debug, Default)]
pub struct ArchPayload {
    /// Architecture name.
    pub architecture: String,
    /// OSTree commit checksum, if the build has one.
    pub checksum: Option<String>,
    /// `(floating tag, digest-ref)` if the build has an OCI image.
    pub oci: Option<(String, String)>,
}

/// The conventional `release.json` URL of a build.
pub fn release_metadata_url(stream: &str, version: &str) -> String {
    format!("https://builds.coreos.fedoraproject.org/prod/streams/{stream}/builds/{version}/release.json")
}

impl IndexRelease {
    /// Whether `self` contains every payload of `older` (plume's re-upload rule).
    fn is_superset_of(&self, older: &IndexRelease) -> bool {
        let commits = self.commits.as_deref().unwrap_or_default();
        let images = self.oci_images.as_deref().unwrap_or_default();
        older
            .commits
            .as_deref()
            .unwrap_or_default()
            .iter()
            .all(|c| commits.contains(c))
            && older
                .oci_images
                .as_deref()
                .unwrap_or_default()
                .iter()
                .all(|i| images.contains(i))
    }
}

impl ReleaseIndex {
    /// An empty index for `stream`.
    pub fn new(stream: &str) -> Self {
        ReleaseIndex {
            note: Some("For use only by Fedora CoreOS internal tooling.  All other applications should obtain release info from stream metadata endpoints.".to_owned()),
            releases: Vec::new(),
            metadata: FileMetadata::default(),
            stream: stream.to_owned(),
            extra: Map::new(),
        }
    }

    /// Position (age index) of `version`.
    pub fn position(&self, version: &str) -> Option<usize> {
        self.releases.iter().position(|r| r.version == version)
    }

    /// Adds or extends a release with `plume update-release-index` semantics: a new
    /// version is appended (newest); an existing version may only be the last entry and
    /// only gain payloads — changing or dropping a published payload is refused, since
    /// nodes identify releases by payload.
    pub fn add(&mut self, release: IndexRelease) -> Result<()> {
        match self.position(&release.version) {
            None => self.releases.push(release),
            Some(p) if p + 1 == self.releases.len() => {
                if !release.is_superset_of(&self.releases[p]) {
                    return Err(Error::Invalid(format!(
                        "{}: release {} is already published with different payloads",
                        self.stream, release.version
                    )));
                }
                self.releases[p] = release;
            }
            Some(_) => {
                return Err(Error::Invalid(format!(
                    "{}: release {} exists and is not the newest release; the index is append-only",
                    self.stream, release.version
                )))
            }
        }
        Ok(())
    }

    /// Adds one architecture's payload of `version` (creating the release if new),
    /// through [`ReleaseIndex::add`]'s rules.
    pub fn add_arch(
        &mut self,
        version: &str,
        metadata_url: &str,
        arch: &ArchPayload,
    ) -> Result<()> {
        if arch.checksum.is_none() && arch.oci.is_none() {
            return Err(Error::Invalid(format!(
                "release {version} ({}): need an OSTree checksum or an OCI digest-ref",
                arch.architecture
            )));
        }
        let mut rel = match self.releases.last() {
            Some(last) if last.version == version => last.clone(),
            _ => IndexRelease {
                commits: None,
                oci_images: None,
                version: version.to_owned(),
                metadata: metadata_url.to_owned(),
                extra: Map::new(),
            },
        };
        if let Some(checksum) = &arch.checksum {
            let commits = rel.commits.get_or_insert_with(Vec::new);
            if !commits.iter().any(|c| c.architecture == arch.architecture) {
                commits.push(IndexCommit {
                    architecture: arch.architecture.clone(),
                    checksum: checksum.clone(),
                });
            } else if !commits.iter().any(|c| c.checksum == *checksum) {
                return Err(Error::Invalid(format!(
                    "release {version} already has a different {} commit",
                    arch.architecture
                )));
            }
        }
        if let Some((image, digest_ref)) = &arch.oci {
            if !digest_ref.contains("@sha256:") {
                return Err(Error::Invalid(format!(
                    "digest-ref '{digest_ref}' must pin a digest (repo@sha256:...)"
                )));
            }
            let images = rel.oci_images.get_or_insert_with(Vec::new);
            let new = IndexOciImage {
                architecture: arch.architecture.clone(),
                image: image.clone(),
                digest_ref: digest_ref.clone(),
            };
            match images.iter().find(|i| i.architecture == arch.architecture) {
                None => images.push(new),
                Some(old) if *old == new => {}
                Some(_) => {
                    return Err(Error::Invalid(format!(
                        "release {version} already has a different {} OCI image",
                        arch.architecture
                    )))
                }
            }
        }
        self.add(rel)
    }

    /// Copies `version` from `from` (e.g. testing) into this index (e.g. stable),
    /// rewriting the stream in its `release.json` URL and OCI floating tags.
    pub fn promote_from(&mut self, from: &ReleaseIndex, version: &str) -> Result<()> {
        let src = from
            .releases
            .iter()
            .find(|r| r.version == version)
            .ok_or_else(|| {
                Error::Invalid(format!("{}: no release {version} to promote", from.stream))
            })?;
        let mut rel = src.clone();
        let (old, new) = (&from.stream, &self.stream);
        rel.metadata = rel
            .metadata
            .replace(&format!("/streams/{old}/"), &format!("/streams/{new}/"));
        for img in rel.oci_images.iter_mut().flatten() {
            if let Some(repo) = img.image.strip_suffix(&format!(":{old}")) {
                img.image = format!("{repo}:{new}");
            }
        }
        self.add(rel)
    }

    /// Sets `metadata.last-modified` to `now`.
    pub fn touch(&mut self, now: i64) {
        self.metadata.last_modified = time::rfc3339_utc(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(a: &str, sum: &str) -> ArchPayload {
        ArchPayload {
            architecture: a.into(),
            checksum: Some(sum.into()),
            oci: None,
        }
    }

    #[test]
    fn add_is_append_only_and_superset_only() {
        let mut idx = ReleaseIndex::new("testing");
        let url = release_metadata_url("testing", "1");
        idx.add_arch("1", &url, &arch("x86_64", "aa")).unwrap();
        idx.add_arch("1", &url, &arch("aarch64", "bb")).unwrap();
        idx.add_arch("1", &url, &arch("x86_64", "aa")).unwrap();
        assert!(idx.add_arch("1", &url, &arch("x86_64", "cc")).is_err());
        idx.add_arch("2", &url, &arch("x86_64", "dd")).unwrap();
        assert!(idx.add_arch("1", &url, &arch("s390x", "ee")).is_err());
        assert_eq!(idx.releases.len(), 2);
        assert_eq!(idx.releases[0].commits.as_ref().unwrap().len(), 2);
        let bad = ArchPayload {
            architecture: "x86_64".into(),
            checksum: None,
            oci: Some(("q:testing".into(), "q:latest".into())),
        };
        assert!(idx.add_arch("3", &url, &bad).is_err());
    }

    #[test]
    fn promote_rewrites_stream() {
        let mut testing = ReleaseIndex::new("testing");
        let oci = ArchPayload {
            architecture: "x86_64".into(),
            checksum: Some("aa".into()),
            oci: Some((
                "quay.io/fedora/fedora-coreos:testing".into(),
                "quay.io/fedora/fedora-coreos@sha256:00".into(),
            )),
        };
        testing
            .add_arch("44.1", &release_metadata_url("testing", "44.1"), &oci)
            .unwrap();
        let mut stable = ReleaseIndex::new("stable");
        stable.promote_from(&testing, "44.1").unwrap();
        let r = &stable.releases[0];
        assert_eq!(r.metadata, release_metadata_url("stable", "44.1"));
        let img = &r.oci_images.as_ref().unwrap()[0];
        assert_eq!(img.image, "quay.io/fedora/fedora-coreos:stable");
        assert_eq!(img.digest_ref, "quay.io/fedora/fedora-coreos@sha256:00");
        assert!(stable.promote_from(&testing, "nope").is_err());
        // Promoting twice is idempotent (same payloads).
        stable.promote_from(&testing, "44.1").unwrap();
        assert_eq!(stable.releases.len(), 1);
    }
}
