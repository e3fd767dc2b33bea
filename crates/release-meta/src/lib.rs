//! Fedora CoreOS release metadata, as published by release engineering and read by
//! the update service, installers and download pages.
//!
//! Every type here deserializes the real upstream files and serializes them back to
//! the same JSON value (unknown keys are carried along in `extra` maps), so ferrocore
//! can edit files produced by upstream tooling without losing anything:
//!
//! * [`index::ReleaseIndex`]: `prod/streams/<stream>/releases.json`, the append-only
//!   list of releases of a stream with their payloads (OSTree commit / OCI digest).
//! * [`release::Release`]: `builds/<version>/release.json`, one build's artifacts.
//! * [`updates::Updates`]: `updates/<stream>.json`, barriers, dead-ends and rollouts.
//! * [`stream::Stream`]: `streams/<stream>.json`, the public stream metadata,
//!   generated from release metadata by [`stream::Stream::from_releases`].
//! * [`graph::Graph`]: the Cincinnati update graph served by the update service.
//!
//! [`rollout_threshold`] is the rollout ramp shared by the release tooling (pause and
//! resume freeze/restart it) and the update server (which hides rollouts from clients
//! more wary than it). [`sign`] produces and checks detached ed25519 signatures, and
//! [`fsutil`] reads these files with errors naming the file and line, and writes them
//! atomically.

pub mod fsutil;
pub mod graph;
pub mod index;
pub mod release;
pub mod report;
pub mod sign;
pub mod stream;
pub mod time;
pub mod updates;

pub use graph::Graph;
pub use index::ReleaseIndex;
pub use release::Release;
pub use stream::Stream;
pub use updates::Updates;

use std::path::PathBuf;

/// Everything that can go wrong reading, editing, signing or writing metadata.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The underlying errors are part of the message rather than `#[source]`s, so
    // error chains (`{:#}`) do not print them twice.
    /// Reading or writing a file failed.
    #[error("{}: {err}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// A file is not valid JSON for its type; serde_json's message names line and column.
    #[error("{}: {err}", path.display())]
    Json {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error (with line and column).
        err: serde_json::Error,
    },
    /// An operation was refused because the metadata does not allow it.
    #[error("{0}")]
    Invalid(String),
    /// A key or signature is malformed, or a signature does not verify.
    #[error("signature: {0}")]
    Signature(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Share of the fleet (0.0–1.0) that may see a rollout at unix time `now`.
///
/// This is upstream's ramp (fedora-coreos-cincinnati `commons/src/policy.rs`): nothing
/// before `start_epoch`; then `start_value`, growing linearly to 1.0 over
/// `duration_minutes` (at least one minute); without a duration the value never grows
/// past `start_value`. A client sees the rollout iff its wariness is not above this.
pub fn rollout_threshold(
    start_epoch: i64,
    start_value: f64,
    duration_minutes: Option<u64>,
    now: i64,
) -> f64 {
    if now < start_epoch {
        return 0.0;
    }
    match duration_minutes {
        None => start_value,
        Some(minutes) => {
            let span = minutes.max(1).saturating_mul(60);
            let span = i64::try_from(span).unwrap_or(i64::MAX);
            let end = start_epoch.saturating_add(span);
            if now > end {
                1.0
            } else {
                let rate = (1.0 - start_value) / span as f64;
                start_value + rate * (now - start_epoch) as f64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rollout_threshold;

    #[test]
    fn ramp_start_middle_end() {
        // Real stable rollout of 44.20260707.3.1: 2880 minutes from 1784728800 at 0.0.
        let (start, d) = (1_784_728_800, Some(2880));
        assert_eq!(rollout_threshold(start, 0.0, d, start - 1), 0.0);
        assert_eq!(rollout_threshold(start, 0.0, d, start), 0.0);
        assert_eq!(rollout_threshold(start, 0.0, d, start + 1440 * 60), 0.5);
        assert_eq!(rollout_threshold(start, 0.0, d, start + 2880 * 60), 1.0);
        assert_eq!(rollout_threshold(start, 0.0, d, start + 2880 * 60 + 1), 1.0);
        // Partial start (tracker sample: 0.3) climbs from 0.3.
        let mid = rollout_threshold(0, 0.3, Some(100), 50 * 60);
        assert!((mid - 0.65).abs() < 1e-12, "{mid}");
        // No duration: frozen at the start value once started.
        assert_eq!(rollout_threshold(10, 0.25, None, 5), 0.0);
        assert_eq!(rollout_threshold(10, 0.25, None, 1_000_000), 0.25);
        // A zero duration counts as one minute, as upstream.
        assert_eq!(rollout_threshold(0, 0.0, Some(0), 30), 0.5);
    }
}
