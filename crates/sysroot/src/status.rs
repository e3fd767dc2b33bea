//! Status reports: `rpm-ostree status`-style text, upstream `ostree admin
//! status` text, and JSON.

use crate::bootcount::FailedDeployment;
use crate::{Result, Sysroot};
use ostree_repo::gvariant::Value;
use ostree_repo::object;
use serde::Serialize;
use std::fmt::Write;

/// One deployment as reported.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStatus {
    /// `OS-CSUM.SERIAL`, unique within the sysroot.
    pub id: String,
    /// Position (0 = default for the next boot).
    pub index: usize,
    /// Stateroot.
    pub osname: String,
    /// Commit checksum.
    pub checksum: String,
    /// Deploy serial.
    pub serial: u32,
    /// Whether this is the running deployment.
    pub booted: bool,
    /// Staged: becomes the default at shutdown.
    pub staged: bool,
    /// Protected from garbage collection.
    pub pinned: bool,
    /// Commit `version` metadata.
    pub version: Option<String>,
    /// Commit timestamp (seconds since the epoch).
    pub timestamp: Option<u64>,
    /// Commit `ostree.source-title` metadata (where the tree came from).
    #[serde(rename = "source-title")]
    pub source_title: Option<String>,
    /// Origin refspec.
    pub origin: Option<String>,
    /// Kernel arguments (without `ostree=`).
    pub kargs: String,
    /// `[left, done]` boot tries while being counted.
    #[serde(rename = "boot-counter")]
    pub boot_counter: Option<[u32; 2]>,
    /// Recorded as failed to boot.
    pub failed: bool,
}

/// Whole-sysroot status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Deployments, default first.
    pub deployments: Vec<DeploymentStatus>,
    /// The staged deployment (`index` is meaningless for it).
    pub staged: Option<DeploymentStatus>,
    /// Whether finalization of the staged deployment is locked.
    #[serde(rename = "finalization-locked")]
    pub finalization_locked: bool,
    /// Recorded boot failures.
    #[serde(rename = "failed-deployments")]
    pub failed_deployments: Vec<FailedDeployment>,
    /// Current boot version.
    pub bootversion: u32,
    /// Current sub-boot version.
    pub subbootversion: u32,
}

impl Sysroot {
    /// Collects the status report.
    pub fn status(&self) -> Result<Status> {
        let repo = self.repo()?;
        let failed = self.failed_deployments()?;
        let one = |d: &crate::Deployment, staged: bool| {
            let commit = object::from_hex(&d.csum).and_then(|c| repo.load_commit(&c).ok());
            let meta_str = |k: &str| {
                commit.as_ref().and_then(|c| match c.meta(k) {
                    Some(Value::Str(s)) => Some(s.clone()),
                    _ => None,
                })
            };
            let version = meta_str("version");
            let source_title = meta_str("ostree.source-title");
            DeploymentStatus {
                id: format!("{}-{}", d.osname, d.dir_name()),
                index: d.index,
                osname: d.osname.clone(),
                checksum: d.csum.clone(),
                serial: d.deployserial,
                booted: !staged && self.booted == Some(d.index),
                staged,
                pinned: d.is_pinned(),
                version,
                timestamp: commit.as_ref().map(|c| c.timestamp),
                source_title,
                origin: d.origin_refspec().map(str::to_string),
                kargs: d.kargs.to_string(),
                boot_counter: d
                    .entry
                    .as_ref()
                    .and_then(|e| e.counter)
                    .map(|(l, n)| [l, n]),
                failed: failed
                    .iter()
                    .any(|f| f.checksum == d.csum && f.osname == d.osname),
            }
        };
        let out = self.deployments.iter().map(|d| one(d, false)).collect();
        let staged = self.staged_deployment()?.map(|d| one(&d, true));
        Ok(Status {
            deployments: out,
            staged,
            finalization_locked: self.is_finalization_locked(),
            failed_deployments: failed,
            bootversion: self.bootversion,
            subbootversion: self.subbootversion,
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time.
pub fn format_utc(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("@{t}"))
}

/// `rpm-ostree status`-style text.
pub fn render(s: &Status) -> String {
    let mut o = String::new();
    let multi = {
        let mut v: Vec<&str> = s.deployments.iter().map(|d| d.osname.as_str()).collect();
        v.dedup();
        v.len() > 1
    };
    let _ = writeln!(o, "Deployments:");
    for d in s.staged.iter().chain(&s.deployments) {
        let mark = if d.booted { '●' } else { ' ' };
        let origin = d.origin.as_deref().unwrap_or("(no origin)");
        let _ = writeln!(o, "{mark} {origin}");
        let kv = |o: &mut String, k: &str, v: &str| {
            let _ = writeln!(o, "{k:>25}: {v}");
        };
        match (&d.version, d.timestamp) {
            (Some(v), Some(t)) => kv(&mut o, "Version", &format!("{v} ({})", format_utc(t))),
            (Some(v), None) => kv(&mut o, "Version", v),
            (None, Some(t)) => kv(&mut o, "Timestamp", &format_utc(t)),
            (None, None) => {}
        }
        kv(&mut o, "Commit", &d.checksum);
        if multi {
            kv(&mut o, "StateRoot", &d.osname);
        }
        if d.pinned {
            kv(&mut o, "Pinned", "yes");
        }
        if d.staged {
            let locked = if s.finalization_locked {
                " (finalization locked)"
            } else {
                ""
            };
            kv(&mut o, "Staged", &format!("yes{locked}"));
        }
        match d.boot_counter {
            Some([0, done]) => kv(
                &mut o,
                "BootCounting",
                &format!("failed ({done} tries spent)"),
            ),
            Some([left, done]) => kv(
                &mut o,
                "BootCounting",
                &format!("{left} of {} tries left", left + done),
            ),
            None => {}
        }
        if d.failed {
            kv(&mut o, "Failed", "yes (boot tries spent; recorded)");
        }
    }
    o
}

/// Upstream `ostree admin status` text.
pub fn render_ostree(s: &Status) -> String {
    let mut o = String::new();
    let booted = s.deployments.iter().position(|d| d.booted);
    for d in s.staged.iter().chain(&s.deployments) {
        let mark = if d.booted { '*' } else { ' ' };
        let note = match booted {
            _ if d.staged => " (staged)",
            Some(b) if d.index < b => " (pending)",
            Some(b) if d.index > b => " (rollback)",
            _ => "",
        };
        let _ = writeln!(o, "{mark} {} {}.{}{note}", d.osname, d.checksum, d.serial);
        if let Some(t) = &d.source_title {
            let _ = writeln!(o, "    `- {t}");
        }
        if let Some(v) = &d.version {
            let _ = writeln!(o, "    Version: {v}");
        }
        match &d.origin {
            Some(r) => {
                let _ = writeln!(o, "    origin refspec: {r}");
            }
            None => {
                let _ = writeln!(o, "    origin: none");
            }
        }
        if d.pinned {
            let _ = writeln!(o, "    Pinned: yes");
        }
    }
    if s.deployments.is_empty() {
        let _ = writeln!(o, "No deployments.");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_764_145_800), "2025-11-26T08:30:00Z");
    }
}
