//! Updates metadata (`updates/<stream>.json`): which releases are barriers, dead-ends
//! and rollouts. Spec: fedora-coreos-tracker `metadata/updates/specifications.md`.

use crate::{rollout_threshold, time, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A whole `updates/<stream>.json` file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Updates {
    /// Stream name, e.g. `stable`.
    pub stream: String,
    /// File-level metadata (`last-modified`).
    pub metadata: FileMetadata,
    /// Releases with update metadata, oldest first; versions are unique.
    pub releases: Vec<UpdateEntry>,
    /// Keys this crate does not interpret, kept for round-tripping.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `metadata` object of updates metadata and release indexes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileMetadata {
    /// RFC 3339 UTC time of the last change.
    #[serde(rename = "last-modified")]
    pub last_modified: String,
    /// Keys this crate does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One release's update metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateEntry {
    /// Release version, e.g. `44.20260707.3.1`.
    pub version: String,
    /// Barrier / dead-end / rollout markers.
    pub metadata: UpdateMetadata,
}

/// Markers of one release; any combination may be present.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateMetadata {
    /// Forced chokepoint: older nodes must pass through this release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barrier: Option<Reason>,
    /// Nodes on this release cannot auto-update further.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadend: Option<Reason>,
    /// This release is an update target, ramped over the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Keys this crate does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Reason of a barrier or dead-end (usually a tracker URL; may be empty).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// Free text or URL.
    #[serde(default)]
    pub reason: String,
}

/// Rollout parameters; all optional with upstream's defaults (0, 0.0, no progress).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Unix seconds at which the ramp starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_epoch: Option<i64>,
    /// Share of the fleet (0.0–1.0) offered the release at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_percentage: Option<f64>,
    /// Minutes to ramp from `start_percentage` to 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<u64>,
    /// ferrocore extension: set while the rollout is paused. Upstream servers ignore
    /// it and see a rollout frozen at its current share (no duration), which is exactly
    /// what a pause means, so paused files stay valid for them.
    #[serde(
        rename = "x-ferrocore-paused",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub paused: Option<Paused>,
    /// Keys this crate does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a paused rollout needs to resume on the same slope.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Paused {
    /// Unix seconds when it was paused.
    pub paused_at: i64,
    /// Ramp minutes that were still left (0 when it had no duration or had finished).
    pub remaining_minutes: u64,
}

/// The third part of a Fedora CoreOS version (`X.YYYYMMDD.Z.A`) for a
/// production or development stream, `None` for other streams.
pub fn stream_code(stream: &str) -> Option<&'static str> {
    Some(match stream {
        "next" => "1",
        "testing" => "2",
        "stable" => "3",
        "next-devel" => "10",
        "testing-devel" => "20",
        "rawhide" => "91",
        "branched" => "92",
        _ => return None,
    })
}

/// Checks a version against Fedora CoreOS conventions before it is rolled out, as
/// fedora-coreos-streams `rollout.py` does: `X.YYYYMMDD.Z.A` with numeric parts, and
/// for the production and development streams a `Z` matching the stream (next 1,
/// testing 2, stable 3, next-devel 10, testing-devel 20, rawhide 91, branched 92),
/// which catches rolling a testing build out on stable.
pub fn check_version(stream: &str, version: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::Invalid(format!("version '{version}': {why}")));
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() != 4
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("expected X.YYYYMMDD.Z.A with numeric parts");
    }
    if parts[1].len() != 8 {
        return bad("second part must be a YYYYMMDD date");
    }
    let Some(code) = stream_code(stream) else {
        return Ok(());
    };
    if parts[2] != code {
        return bad(&format!(
            "stream '{stream}' versions have {code} as third part"
        ));
    }
    Ok(())
}

impl Rollout {
    /// A finished rollout as `rollout.py` writes it: `{"start_percentage": 1.0}`.
    pub fn completed() -> Rollout {
        Rollout {
            start_percentage: Some(1.0),
            ..Rollout::default()
        }
    }

    /// Whether this is exactly [`Rollout::completed`].
    pub fn is_completed(&self) -> bool {
        *self == Rollout::completed()
    }

    /// Share of the fleet that may see this rollout at `now` (see [`rollout_threshold`]).
    pub fn threshold_at(&self, now: i64) -> f64 {
        rollout_threshold(
            self.start_epoch.unwrap_or(0),
            self.start_percentage.unwrap_or(0.0),
            self.duration_minutes,
            now,
        )
    }
}

impl Updates {
    /// An empty updates file for `stream`.
    pub fn new(stream: &str) -> Self {
        Updates {
            stream: stream.to_owned(),
            metadata: FileMetadata::default(),
            releases: Vec::new(),
            extra: Map::new(),
        }
    }

    /// The entry for `version`, if any.
    pub fn get(&self, version: &str) -> Option<&UpdateEntry> {
        self.releases.iter().find(|e| e.version == version)
    }

    /// The entry for `version`, appended (newest) if it did not exist.
    pub fn entry_mut(&mut self, version: &str) -> &mut UpdateEntry {
        let pos = match self.releases.iter().position(|e| e.version == version) {
            Some(p) => p,
            None => {
                self.releases.push(UpdateEntry {
                    version: version.to_owned(),
                    metadata: UpdateMetadata::default(),
                });
                self.releases.len() - 1
            }
        };
        &mut self.releases[pos]
    }

    fn rollout_mut(&mut self, version: &str) -> Result<&mut Rollout> {
        let stream = self.stream.clone();
        self.releases
            .iter_mut()
            .find(|e| e.version == version)
            .and_then(|e| e.metadata.rollout.as_mut())
            .ok_or_else(|| Error::Invalid(format!("{stream}: release {version} has no rollout")))
    }

    /// Starts (or restarts) a rollout of `version`: `start_percentage` of the fleet at
    /// `start_epoch`, everyone after `duration_minutes`, as `rollout.py add` does.
    pub fn start_rollout(
        &mut self,
        version: &str,
        start_epoch: i64,
        start_percentage: f64,
        duration_minutes: u64,
    ) -> Result<()> {
        if !(0.0..=1.0).contains(&start_percentage) {
            return Err(Error::Invalid(format!(
                "start_percentage must be within 0.0-1.0, got {start_percentage}"
            )));
        }
        self.entry_mut(version).metadata.rollout = Some(Rollout {
            start_epoch: Some(start_epoch),
            start_percentage: Some(start_percentage),
            duration_minutes: Some(duration_minutes),
            paused: None,
            extra: Map::new(),
        });
        Ok(())
    }

    /// `rollout.py add`: [`Updates::clean`] at `now`, then start a rollout of
    /// `version` — refused if it already has one, unless `replace` (a rollout is
    /// never restarted by accident).
    pub fn add_rollout(
        &mut self,
        version: &str,
        start_epoch: i64,
        start_percentage: f64,
        duration_minutes: u64,
        replace: bool,
        now: i64,
    ) -> Result<()> {
        self.clean(now);
        let existing = self.get(version).and_then(|e| e.metadata.rollout.as_ref());
        if existing.is_some() && !replace {
            return Err(Error::Invalid(format!(
                "{version} already has a rollout; replace it explicitly to restart it"
            )));
        }
        self.start_rollout(version, start_epoch, start_percentage, duration_minutes)
    }

    /// Freezes the rollout of `version` at the share it has reached at `now`.
    ///
    /// The file keeps upstream's meaning: a rollout without duration does not progress.
    /// The remaining ramp time is remembered so [`Updates::resume_rollout`] continues
    /// on the same slope.
    pub fn pause_rollout(&mut self, version: &str, now: i64) -> Result<()> {
        let r = self.rollout_mut(version)?;
        if r.paused.is_some() {
            return Err(Error::Invalid(format!(
                "rollout of {version} is already paused"
            )));
        }
        let reached = r.threshold_at(now);
        let start = r.start_epoch.unwrap_or(0);
        let remaining_minutes = match r.duration_minutes {
            Some(d) if now < start => d.max(1),
            Some(d) => {
                let end = start.saturating_add(i64::try_from(d.max(1) * 60).unwrap_or(i64::MAX));
                // Round up so a resumed ramp never finishes earlier than planned.
                u64::try_from((end - now).max(0)).unwrap_or(0).div_ceil(60)
            }
            None => 0,
        };
        // Before the start nobody saw it yet; keep that by starting the freeze at 0.
        r.start_percentage = Some(if now < start { 0.0 } else { reached });
        r.start_epoch = Some(now.max(start));
        r.duration_minutes = None;
        r.paused = Some(Paused {
            paused_at: now,
            remaining_minutes,
        });
        Ok(())
    }

    /// Resumes a paused rollout of `version` from the share it was frozen at.
    pub fn resume_rollout(&mut self, version: &str, now: i64) -> Result<()> {
        let r = self.rollout_mut(version)?;
        let paused = r
            .paused
            .take()
            .ok_or_else(|| Error::Invalid(format!("rollout of {version} is not paused")))?;
        let frozen_epoch = r.start_epoch.unwrap_or(0);
        r.start_epoch = Some(now.max(frozen_epoch));
        r.duration_minutes = (paused.remaining_minutes > 0).then_some(paused.remaining_minutes);
        Ok(())
    }

    /// Normalizes the release list as fedora-coreos-streams `rollout.py clean` does
    /// before every new rollout: rollouts whose ramp ended before `now` become plain
    /// completed rollouts (`{start_percentage: 1.0}`); only the newest completed
    /// rollout keeps its rollout block (one fully-open target per barrier segment is
    /// enough, and fewer targets keep edges few); entries left with no barrier,
    /// dead-end or rollout are dropped.
    pub fn clean(&mut self, now: i64) {
        for e in &mut self.releases {
            if let Some(r) = &mut e.metadata.rollout {
                if let Some(d) = r.duration_minutes.filter(|&d| d > 0) {
                    let span = i64::try_from(d.saturating_mul(60)).unwrap_or(i64::MAX);
                    if r.start_epoch.unwrap_or(0).saturating_add(span) < now {
                        *r = Rollout::completed();
                    }
                }
            }
        }
        let mut seen_completed = false;
        for e in self.releases.iter_mut().rev() {
            if e.metadata
                .rollout
                .as_ref()
                .is_some_and(Rollout::is_completed)
            {
                if seen_completed {
                    e.metadata.rollout = None;
                }
                seen_completed = true;
            }
        }
        self.releases.retain(|e| {
            let m = &e.metadata;
            m.barrier.is_some() || m.deadend.is_some() || m.rollout.is_some()
        });
    }

    /// Marks `version` as a barrier (empty reason is served as `generic`).
    pub fn set_barrier(&mut self, version: &str, reason: &str) {
        self.entry_mut(version).metadata.barrier = Some(Reason {
            reason: reason.to_owned(),
        });
    }

    /// Marks `version` as a dead-end (empty reason is served as `generic`).
    pub fn set_deadend(&mut self, version: &str, reason: &str) {
        self.entry_mut(version).metadata.deadend = Some(Reason {
            reason: reason.to_owned(),
        });
    }

    /// Sets `metadata.last-modified` to `now`; callers do this on every saved change.
    pub fn touch(&mut self, now: i64) {
        self.metadata.last_modified = time::rfc3339_utc(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_rollout(start: i64, pct: f64, minutes: u64) -> Updates {
        let mut u = Updates::new("stable");
        u.start_rollout("44.1", start, pct, minutes).unwrap();
        u
    }

    #[test]
    fn pause_freezes_and_resume_keeps_the_slope() {
        let mut u = one_rollout(1000, 0.0, 100);
        let r = |u: &Updates| u.get("44.1").unwrap().metadata.rollout.clone().unwrap();
        u.pause_rollout("44.1", 1000 + 25 * 60).unwrap();
        assert_eq!(r(&u).threshold_at(1000 + 25 * 60), 0.25);
        // Frozen: a day later still 25 %.
        assert_eq!(r(&u).threshold_at(1000 + 86_400), 0.25);
        assert_eq!(r(&u).paused.unwrap().remaining_minutes, 75);
        assert!(u.pause_rollout("44.1", 5000).is_err());
        let t = 1_000_000;
        u.resume_rollout("44.1", t).unwrap();
        assert_eq!(r(&u).threshold_at(t), 0.25);
        // Original slope was 1 % per minute; 10 minutes later 35 %.
        assert!((r(&u).threshold_at(t + 600) - 0.35).abs() < 1e-12);
        assert_eq!(r(&u).threshold_at(t + 75 * 60), 1.0);
        assert!(u.resume_rollout("44.1", t).is_err());
    }

    #[test]
    fn pause_before_start_keeps_it_hidden() {
        let mut u = one_rollout(10_000, 0.2, 60);
        u.pause_rollout("44.1", 5_000).unwrap();
        let r = u.get("44.1").unwrap().metadata.rollout.clone().unwrap();
        assert_eq!(r.start_epoch, Some(10_000));
        assert_eq!(r.threshold_at(9_999), 0.0);
        assert_eq!(r.paused.unwrap().remaining_minutes, 60);
    }

    #[test]
    fn version_conventions() {
        assert!(check_version("stable", "44.20260707.3.1").is_ok());
        assert!(check_version("testing", "44.20260720.2.1").is_ok());
        assert!(check_version("custom", "44.20260720.7.1").is_ok());
        for (stream, v) in [
            ("stable", "44.20260720.2.1"),
            ("stable", "44.2026072.3.1"),
            ("next", "30.20190716.1"),
            ("next", "44.x.1.0"),
        ] {
            assert!(check_version(stream, v).is_err(), "{stream} {v}");
        }
    }

    #[test]
    fn invalid_operations_are_refused() {
        let mut u = Updates::new("stable");
        assert!(u.pause_rollout("nope", 0).is_err());
        assert!(u.start_rollout("x", 0, 1.5, 10).is_err());
        u.set_barrier("x", "");
        assert!(u.get("x").unwrap().metadata.barrier.is_some());
    }
}
