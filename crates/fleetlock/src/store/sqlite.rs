//! Embedded store: one SQLite file in WAL mode.
//!
//! Each transition runs inside a `BEGIN IMMEDIATE` transaction, which takes SQLite's
//! write lock before reading, so two servers pointed at the same file (or a server and
//! an operator's sqlite3 shell) serialize instead of over-granting.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{BoxFuture, Store, Transition};
use crate::semaphore::{GroupState, Holder};
use crate::Error;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS groups (
    grp   TEXT PRIMARY KEY NOT NULL,
    slots INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holders (
    grp     TEXT NOT NULL,
    id      TEXT NOT NULL,
    since   INTEGER,
    expires INTEGER,
    PRIMARY KEY (grp, id)
) WITHOUT ROWID;
";

/// Semaphores in a SQLite database file.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, switches it to WAL and
    /// creates the schema.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let err = |source| Error::Sqlite {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Store(format!(
                    "creating directory {} for the sqlite store: {e}",
                    dir.display()
                ))
            })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        // FULL: a granted slot must survive a power cut, or a second node could be
        // let through after the server comes back.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }
}

async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::Store(format!("sqlite worker failed: {e}"))))
}

fn read_state(conn: &Connection, group: &str) -> rusqlite::Result<GroupState> {
    let slots: Option<i64> = conn
        .query_row("SELECT slots FROM groups WHERE grp = ?1", [group], |r| {
            r.get(0)
        })
        .optional()?;
    let mut stmt = conn.prepare_cached("SELECT id, since, expires FROM holders WHERE grp = ?1")?;
    let holders = stmt
        .query_map([group], |r| {
            let since: Option<i64> = r.get(1)?;
            let expires: Option<i64> = r.get(2)?;
            Ok((
                r.get::<_, String>(0)?,
                Holder {
                    since: since.map(|v| v.max(0) as u64),
                    expires: expires.map(|v| v.max(0) as u64),
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(GroupState {
        slots: slots.unwrap_or(0).max(0) as u64,
        holders,
    })
}

fn write_state(
    conn: &Connection,
    group: &str,
    old: &GroupState,
    new: &GroupState,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO groups (grp, slots) VALUES (?1, ?2)
         ON CONFLICT (grp) DO UPDATE SET slots = excluded.slots",
        params![group, new.slots as i64],
    )?;
    for id in old
        .holders
        .keys()
        .filter(|id| !new.holders.contains_key(*id))
    {
        conn.execute(
            "DELETE FROM holders WHERE grp = ?1 AND id = ?2",
            params![group, id],
        )?;
    }
    for (id, h) in &new.holders {
        if old.holders.get(id) != Some(h) {
            conn.execute(
                "INSERT OR REPLACE INTO holders (grp, id, since, expires) VALUES (?1, ?2, ?3, ?4)",
                params![
                    group,
                    id,
                    h.since.map(|v| v as i64),
                    h.expires.map(|v| v as i64)
                ],
            )?;
        }
    }
    Ok(())
}

impl Store for SqliteStore {
    fn apply<'a>(
        &'a self,
        group: &'a str,
        transition: Transition,
    ) -> BoxFuture<'a, Result<GroupState, Error>> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        let group = group.to_string();
        Box::pin(async move {
            let err = move |source| Error::Sqlite {
                path: path.display().to_string(),
                source,
            };
            // SQLite calls block (fsync, busy waits): keep them off the async workers.
            spawn_blocking(move || {
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(err.clone())?;
                let old = read_state(&tx, &group).map_err(err.clone())?;
                let mut new = old.clone();
                if transition(&mut new)? {
                    write_state(&tx, &group, &old, &new).map_err(err.clone())?;
                    tx.commit().map_err(err)?;
                }
                Ok(new)
            })
            .await
        })
    }

    fn load<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<GroupState, Error>> {
        let conn = self.conn.clone();
        let path = self.path.clone();
        let group = group.to_string();
        Box::pin(async move {
            spawn_blocking(move || {
                let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                read_state(&conn, &group).map_err(|source| Error::Sqlite {
                    path: path.display().to_string(),
                    source,
                })
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semaphore::{lock, LockParams};

    #[tokio::test]
    async fn wal_file_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/fl.sqlite");
        {
            let store = SqliteStore::open(&path).unwrap();
            let p = LockParams {
                slots: 2,
                now: 42,
                ttl: Some(10),
            };
            store
                .apply("g", Arc::new(move |s| lock(s, "a", p)))
                .await
                .unwrap();
        }
        let mode: String = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let state = SqliteStore::open(&path).unwrap().load("g").await.unwrap();
        assert_eq!(state.slots, 2);
        assert_eq!(
            state.holders["a"],
            Holder {
                since: Some(42),
                expires: Some(52)
            }
        );
    }

    #[test]
    fn unopenable_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let bad = dir.path().join("file/fl.sqlite");
        let e = SqliteStore::open(&bad).err().unwrap().to_string();
        assert!(
            e.contains("file/fl.sqlite") || e.contains("creating directory"),
            "{e}"
        );
    }
}
