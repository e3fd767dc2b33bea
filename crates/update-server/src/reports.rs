//! Update outcome reports and automatic rollout pauses, kept in an embedded SQLite
//! database so a restarted server remembers what it paused and why.
//!
//! Each node counts once per (stream, target release): its latest report replaces the
//! earlier ones, so one node retrying a broken update cannot pause a rollout alone.
//! When the number of nodes whose latest outcome is a failure (`rolled-back` or
//! `failed-to-deploy`) reaches the threshold, the rollout is paused: the server stops
//! offering that release to every client until an operator resumes it.

use crate::Error;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

pub use release_meta::report::{Outcome, OutcomeReport as Report};

/// Why and when a rollout was paused.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pause {
    /// Unix time of the pause.
    pub paused_at: i64,
    /// Human explanation, shown by `/v1/status`.
    pub reason: String,
}

/// Per-outcome node counts of one target release.
pub type OutcomeCounts = BTreeMap<&'static str, u64>;

/// The report database.
pub struct ReportStore {
    conn: Mutex<Connection>,
    threshold: u64,
}

impl ReportStore {
    /// Opens (creating if needed) the database at `path`; rollouts pause once
    /// `threshold` distinct nodes report a failure (minimum 1).
    pub fn open(path: &Path, threshold: u64) -> Result<ReportStore, Error> {
        let conn =
            Connection::open(path).map_err(|e| Error::Db(format!("{}: {e}", path.display())))?;
        Self::init(conn, threshold)
    }

    /// A database that lives only in memory (for tests and throwaway servers).
    pub fn in_memory(threshold: u64) -> Result<ReportStore, Error> {
        Self::init(Connection::open_in_memory().map_err(db)?, threshold)
    }

    fn init(conn: Connection, threshold: u64) -> Result<ReportStore, Error> {
        // WAL lets `ferrocore update-server resume` write while the server reads.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS reports (
                 stream TEXT NOT NULL, to_version TEXT NOT NULL, node_uuid TEXT NOT NULL,
                 from_version TEXT NOT NULL, outcome TEXT NOT NULL, reported_at INTEGER NOT NULL,
                 PRIMARY KEY (stream, to_version, node_uuid));
             CREATE TABLE IF NOT EXISTS paused (
                 stream TEXT NOT NULL, version TEXT NOT NULL,
                 paused_at INTEGER NOT NULL, reason TEXT NOT NULL,
                 PRIMARY KEY (stream, version));",
        )
        .map_err(db)?;
        Ok(ReportStore {
            conn: Mutex::new(conn),
            threshold: threshold.max(1),
        })
    }

    /// Failure threshold (distinct nodes).
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a report at `now`; returns the pause it triggered, if any.
    pub fn record(&self, r: &Report, now: i64) -> Result<Option<Pause>, Error> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        tx.execute(
            "INSERT OR REPLACE INTO reports VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![r.stream, r.to, r.node_uuid, r.from, r.outcome.as_str(), now],
        )
        .map_err(db)?;
        let already: bool = tx
            .query_row(
                "SELECT 1 FROM paused WHERE stream = ?1 AND version = ?2",
                params![r.stream, r.to],
                |_| Ok(()),
            )
            .optional()
            .map_err(db)?
            .is_some();
        let mut pause = None;
        if !already && r.outcome != Outcome::Success {
            let counts = counts_in(&tx, &r.stream, &r.to)?;
            let failed = counts.get("rolled-back").copied().unwrap_or(0)
                + counts.get("failed-to-deploy").copied().unwrap_or(0);
            if failed >= self.threshold {
                let reason = format!(
                    "automatically paused: {failed} node(s) reported a failed update to {} \
                     ({} rolled-back, {} failed-to-deploy, {} success), threshold {}",
                    r.to,
                    counts.get("rolled-back").copied().unwrap_or(0),
                    counts.get("failed-to-deploy").copied().unwrap_or(0),
                    counts.get("success").copied().unwrap_or(0),
                    self.threshold
                );
                tx.execute(
                    "INSERT INTO paused VALUES (?1, ?2, ?3, ?4)",
                    params![r.stream, r.to, now, reason],
                )
                .map_err(db)?;
                pause = Some(Pause {
                    paused_at: now,
                    reason,
                });
            }
        }
        tx.commit().map_err(db)?;
        Ok(pause)
    }

    /// Node counts per outcome for target `version` of `stream`.
    pub fn counts(&self, stream: &str, version: &str) -> Result<OutcomeCounts, Error> {
        counts_in(&self.conn(), stream, version)
    }

    /// Node counts per outcome for every target release of `stream` that has
    /// reports, rollout or not (a barrier release is a target too).
    pub fn counts_by_version(
        &self,
        stream: &str,
    ) -> Result<BTreeMap<String, OutcomeCounts>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT to_version, outcome, COUNT(*) FROM reports WHERE stream = ?1 \
                 GROUP BY to_version, outcome",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![stream], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(db)?;
        let mut out: BTreeMap<String, OutcomeCounts> = BTreeMap::new();
        for row in rows {
            let (version, outcome, n) = row.map_err(db)?;
            if let Some(o) = Outcome::parse(&outcome) {
                out.entry(version)
                    .or_default()
                    .insert(o.as_str(), u64::try_from(n).unwrap_or(0));
            }
        }
        Ok(out)
    }

    /// Every paused rollout: (stream, version) → pause.
    pub fn paused(&self) -> Result<BTreeMap<(String, String), Pause>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT stream, version, paused_at, reason FROM paused")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    (row.get::<_, String>(0)?, row.get::<_, String>(1)?),
                    Pause {
                        paused_at: row.get(2)?,
                        reason: row.get(3)?,
                    },
                ))
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// Lifts an automatic pause and forgets the reports that caused it, so counting
    /// starts afresh. Returns whether a pause existed.
    pub fn resume(&self, stream: &str, version: &str) -> Result<bool, Error> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let n = tx
            .execute(
                "DELETE FROM paused WHERE stream = ?1 AND version = ?2",
                params![stream, version],
            )
            .map_err(db)?;
        tx.execute(
            "DELETE FROM reports WHERE stream = ?1 AND to_version = ?2",
            params![stream, version],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(n > 0)
    }
}

fn counts_in(conn: &Connection, stream: &str, version: &str) -> Result<OutcomeCounts, Error> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT outcome, COUNT(*) FROM reports WHERE stream = ?1 AND to_version = ?2 GROUP BY outcome",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![stream, version], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(db)?;
    let mut out = OutcomeCounts::new();
    for row in rows {
        let (outcome, n) = row.map_err(db)?;
        if let Some(o) = Outcome::parse(&outcome) {
            out.insert(o.as_str(), u64::try_from(n).unwrap_or(0));
        }
    }
    Ok(out)
}

fn db(e: rusqlite::Error) -> Error {
    Error::Db(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node: &str, outcome: Outcome) -> Report {
        Report {
            node_uuid: node.into(),
            stream: "stable".into(),
            from: "1".into(),
            to: "2".into(),
            outcome,
        }
    }

    #[test]
    fn pauses_at_threshold_of_distinct_failing_nodes() {
        let s = ReportStore::in_memory(2).unwrap();
        assert!(s
            .record(&report("a", Outcome::RolledBack), 1)
            .unwrap()
            .is_none());
        // The same node again does not count twice.
        assert!(s
            .record(&report("a", Outcome::FailedToDeploy), 2)
            .unwrap()
            .is_none());
        assert!(s
            .record(&report("b", Outcome::Success), 3)
            .unwrap()
            .is_none());
        let by_version = s.counts_by_version("stable").unwrap();
        assert_eq!(by_version.len(), 1);
        assert_eq!(by_version["2"]["failed-to-deploy"], 1);
        assert_eq!(by_version["2"]["success"], 1);
        assert!(s.counts_by_version("testing").unwrap().is_empty());
        let p = s
            .record(&report("c", Outcome::RolledBack), 4)
            .unwrap()
            .unwrap();
        assert_eq!(p.paused_at, 4);
        assert!(p.reason.contains("2 node(s)"), "{}", p.reason);
        // Already paused: no second pause.
        assert!(s
            .record(&report("d", Outcome::RolledBack), 5)
            .unwrap()
            .is_none());
        let paused = s.paused().unwrap();
        assert!(paused.contains_key(&("stable".to_string(), "2".to_string())));
        assert!(s.resume("stable", "2").unwrap());
        assert!(s.paused().unwrap().is_empty());
        assert!(s.counts("stable", "2").unwrap().is_empty());
        assert!(!s.resume("stable", "2").unwrap());
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports.sqlite");
        {
            let s = ReportStore::open(&path, 1).unwrap();
            s.record(&report("a", Outcome::FailedToDeploy), 7)
                .unwrap()
                .unwrap();
        }
        let s = ReportStore::open(&path, 1).unwrap();
        assert_eq!(s.paused().unwrap().len(), 1);
        assert_eq!(s.counts("stable", "2").unwrap()["failed-to-deploy"], 1);
    }
}
