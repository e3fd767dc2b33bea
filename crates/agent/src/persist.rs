//! The agent's persistent state: one file, `state.json` in its var directory, with
//!
//! * the deny-list: releases never to be staged again on this node, by payload
//!   (Zincati keeps this in memory only, so a restarted Zincati re-applies a release
//!   that was rolled back, tracker#1938);
//! * the pending update: finalized before the last reboot, so the next start can
//!   tell success from rollback;
//! * the outbox: outcome reports not yet accepted by the update server.
//!
//! One file, so that a deny-list entry and the report about it are committed
//! together. It is written to a temporary sibling, fsynced, renamed over the old one,
//! and the directory fsynced, so a crash leaves the old or the new state.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cincinnati::OutcomeReport;
use crate::os::OsRelease;

/// Reads JSON from `path`; `Ok(None)` if the file does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes `value` as JSON via temp file + rename; `durable` adds the fsyncs.
pub(crate) fn write_json<T: Serialize>(
    path: &Path,
    value: &T,
    durable: bool,
) -> Result<(), String> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| format!("{}: {e}", path.display()))?;
    bytes.push(b'\n');
    write_file(path, &bytes, durable)
}

/// Replaces `path` with `bytes` via temp file + rename, so readers never see a
/// partial file.
pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_file(path, bytes, false)
}

fn write_file(path: &Path, bytes: &[u8], durable: bool) -> Result<(), String> {
    let ctx = |e: std::io::Error| format!("{}: {e}", path.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(ctx)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(ctx)?;
    f.write_all(bytes).map_err(ctx)?;
    if durable {
        f.sync_all().map_err(ctx)?;
    }
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ctx(e)
    })?;
    if durable {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(ctx)?;
    }
    Ok(())
}

/// Why a release is on the deny-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenyReason {
    /// Booted, then rolled back by the boot counter.
    RolledBack,
    /// Staging failed [`crate::agent::MAX_DEPLOY_ATTEMPTS`] times in a row.
    FailedToDeploy,
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DenyReason::RolledBack => "rolled back after boot",
            DenyReason::FailedToDeploy => "failed to deploy",
        })
    }
}

/// One deny-list entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denied {
    /// Release version.
    pub version: String,
    /// Why.
    pub reason: DenyReason,
    /// When it was added (unix seconds).
    pub since: i64,
}

/// The persisted agent state: deny-list, pending update, report outbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Store {
    /// Payload → entry.
    pub denied: BTreeMap<String, Denied>,
    /// Update finalized before the last reboot: (from, to).
    pub pending: Option<(OsRelease, OsRelease)>,
    /// The reboot into `pending` was started. Until then, an agent restarted
    /// without being booted into it owes that reboot; afterwards it must not
    /// reboot again (a boot that fell back would loop).
    #[serde(default)]
    pub reboot_started: bool,
    /// Reports to deliver.
    pub outbox: Vec<OutcomeReport>,
}

/// Where a [`Store`] lives.
#[derive(Debug, Clone)]
pub struct StorePath(PathBuf);

impl StorePath {
    /// The store file in var directory `dir`.
    pub fn new(dir: &Path) -> StorePath {
        StorePath(dir.join("state.json"))
    }

    /// Loads the store (empty if absent).
    pub fn load(&self) -> Result<Store, String> {
        Ok(read_json(&self.0)?.unwrap_or_default())
    }

    /// Saves the store durably.
    pub fn save(&self, s: &Store) -> Result<(), String> {
        write_json(&self.0, s, true)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.0
    }
}
