//! Automatic rollback with boot counting.
//!
//! A new default entry is written as `ostree-N-OS+T.conf` (T tries). The
//! boot loader ([`systemd_boot_attempt`] implements systemd-boot's rules)
//! renames it to `+LEFT-DONE` before each attempt and sorts entries whose
//! tries are spent (`+0-D`) after all others, so the previous deployment
//! boots once the new one has failed T times. A successful boot runs
//! [`Sysroot::boot_complete`] (after `boot-complete.target`): it strips the
//! counter; or, when it finds itself booted into a fallback while the
//! default is spent, it records the failure in
//! `/ostree/failed-deployments.json` and makes the booted deployment the
//! default again, so `status` and the update agent agree with reality.

use crate::bls::{BootEntry, EntryName};
use crate::deployment::Deployment;
use crate::fsutil::{self, io_at};
use crate::sysroot::vercmp;
use crate::{Error, Result, Sysroot};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::Path;

/// Where failures are recorded, relative to the sysroot.
pub const FAILURES_FILE: &str = "ostree/failed-deployments.json";

/// A deployment that used up its boot tries without reaching `boot-complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedDeployment {
    /// Stateroot.
    pub osname: String,
    /// Commit checksum: what an update agent must not deploy again.
    pub checksum: String,
    /// Commit `version` metadata, if any.
    pub version: Option<String>,
    /// Boot attempts made.
    pub tries: u32,
    /// When the failure was recorded (seconds since the epoch).
    pub recorded_at: u64,
}

/// Outcome of [`Sysroot::boot_complete`].
#[derive(Debug, Clone, PartialEq)]
pub enum BootComplete {
    /// The booted entry was being counted and is now marked good.
    MarkedGood(Deployment),
    /// The default had spent its tries; it was recorded as failed and the
    /// booted deployment is the default again.
    RolledBack {
        /// The deployment that failed.
        failed: Deployment,
        /// The new default (the booted one).
        default: Deployment,
    },
    /// Nothing to do (the booted entry was not counted).
    Nothing,
}

/// Outcome of [`Sysroot::boot_failed`].
#[derive(Debug, Clone, PartialEq)]
pub enum BootFailed {
    /// The booted deployment is on probation (its entry is counted): a
    /// reboot spends one of its tries, and once they are spent the boot
    /// loader falls back to the previous deployment.
    OnProbation(Deployment),
    /// The booted deployment was already marked good: rebooting would boot
    /// it again, so there is nothing to fall back to automatically.
    NotCounted(Deployment),
}

fn entries_sorted(dir: &Path) -> Result<Vec<(EntryName, String)>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(io_at("reading", dir))? {
        let e = e.map_err(io_at("reading", dir))?;
        let f = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = EntryName::parse(&f) {
            let t = fs::read_to_string(e.path()).map_err(io_at("reading", &e.path()))?;
            let be = BootEntry::parse(&t, &f)?;
            v.push((n, be.get("version").unwrap_or("").to_string()));
        }
    }
    // systemd-boot: spent entries last, then newest version first.
    v.sort_by(|a, b| {
        a.0.is_bad()
            .cmp(&b.0.is_bad())
            .then_with(|| vercmp(&b.1, &a.1))
            .then_with(|| b.0.stem.cmp(&a.0.stem))
    });
    Ok(v)
}

/// The entry systemd-boot would boot from `entries` (a
/// `/boot/loader/entries` directory), without changing anything.
pub fn systemd_boot_default(entries: &Path) -> Result<Option<EntryName>> {
    Ok(entries_sorted(entries)?.into_iter().next().map(|(n, _)| n))
}

/// What systemd-boot does at power-on: pick the default entry and, if it is
/// counted, rename it to spend one try (`+L-D` -> `+(L-1)-(D+1)`). Returns
/// the entry as named for this boot.
pub fn systemd_boot_attempt(entries: &Path) -> Result<Option<EntryName>> {
    let Some(n) = systemd_boot_default(entries)? else {
        return Ok(None);
    };
    let Some((left, done)) = n.counter else {
        return Ok(Some(n));
    };
    if left == 0 {
        // Only spent entries remain: systemd-boot still boots the best one.
        return Ok(Some(n));
    }
    let next = EntryName {
        stem: n.stem.clone(),
        counter: Some((left - 1, done + 1)),
    };
    let (from, to) = (entries.join(n.file_name()), entries.join(next.file_name()));
    fs::rename(&from, &to).map_err(io_at("renaming", &from))?;
    fsutil::fsync_dir(entries)?;
    Ok(Some(next))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Sysroot {
    /// Recorded boot failures, oldest first.
    pub fn failed_deployments(&self) -> Result<Vec<FailedDeployment>> {
        let p = self.path.join(FAILURES_FILE);
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Corrupt(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
        }
    }

    /// Whether commit `csum` has failed to boot before.
    pub fn is_failed(&self, csum: &str) -> Result<bool> {
        Ok(self
            .failed_deployments()?
            .iter()
            .any(|f| f.checksum == csum))
    }

    fn record_failure(&self, d: &Deployment, tries: u32) -> Result<()> {
        let mut v = self.failed_deployments()?;
        v.retain(|f| !(f.checksum == d.csum && f.osname == d.osname));
        v.push(FailedDeployment {
            osname: d.osname.clone(),
            checksum: d.csum.clone(),
            version: crate::deploy::commit_version(self, &d.csum),
            tries,
            recorded_at: now(),
        });
        let mut json = serde_json::to_vec_pretty(&v)
            .map_err(|e| Error::Corrupt(format!("serializing failures: {e}")))?;
        json.push(b'\n');
        fsutil::write_file_atomic(&self.path.join(FAILURES_FILE), &json, 0o644)
    }

    /// Reports a boot whose health checks failed (`admin boot-failed`):
    /// says whether rebooting would move the boot loader towards the
    /// previous deployment. Changes nothing: the boot loader counts.
    pub fn boot_failed(&mut self) -> Result<BootFailed> {
        self.reload()?;
        let booted = self
            .booted_deployment()
            .cloned()
            .ok_or_else(|| Error::Invalid("Not currently booted into an OSTree system".into()))?;
        let counted = booted.entry.as_ref().is_some_and(|n| n.counter.is_some());
        let d = self.deployments[booted.index].clone();
        Ok(if counted {
            BootFailed::OnProbation(d)
        } else {
            BootFailed::NotCounted(d)
        })
    }

    /// Reports a successful boot (`admin boot-complete`). Requires a booted
    /// deployment.
    pub fn boot_complete(&mut self) -> Result<BootComplete> {
        let _lock = fsutil::lock(&self.path.join("ostree/lock"))?;
        self.reload()?;
        let booted = self
            .booted_deployment()
            .cloned()
            .ok_or_else(|| Error::Invalid("Not currently booted into an OSTree system".into()))?;
        if let Some(name) = booted.entry.as_ref().filter(|n| n.counter.is_some()) {
            let entries = self.path.join("boot/loader/entries");
            self.bootloader_kind()?
                .backend()
                .mark_good(&entries, name)?;
            self.reload()?;
            let d = self.deployments[booted.index].clone();
            return Ok(BootComplete::MarkedGood(d));
        }
        let default = self.deployments[0].clone();
        let spent = default.entry.as_ref().filter(|n| n.is_bad());
        if booted.index == 0 || spent.is_none() {
            return Ok(BootComplete::Nothing);
        }
        let tries = spent.and_then(|n| n.counter).map(|c| c.1).unwrap_or(0);
        self.record_failure(&default, tries)?;
        let mut list = self.deployments.clone();
        let b = list.remove(booted.index);
        list.insert(0, b);
        self.write_deployments_locked(list, None)?;
        self.cleanup_locked(false)?;
        let new_default = self.deployments[0].clone();
        let failed = self
            .deployments
            .iter()
            .find(|d| d.same_as(&default))
            .cloned()
            .unwrap_or(default);
        Ok(BootComplete::RolledBack {
            failed,
            default: new_default,
        })
    }
}
