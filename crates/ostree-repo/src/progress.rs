//! Live progress of a commit or pull, for an observer on another thread.
//!
//! The operation bumps relaxed atomic counters as it goes (one `fetch_add`
//! per object or per read buffer, nothing else), and whoever wants to show
//! progress polls [`Progress::snapshot`] at its own pace. The library never
//! renders anything: a terminal status line is the CLI's business.
//!
//! ```no_run
//! use ostree_repo::{progress::Progress, Repo};
//! use std::sync::Arc;
//! let repo = Repo::open("repo".as_ref()).unwrap();
//! let progress = Arc::new(Progress::default());
//! let watcher = {
//!     let p = Arc::clone(&progress);
//!     std::thread::spawn(move || println!("{:?}", p.snapshot()))
//! };
//! let opts = ostree_repo::commit::CommitOptions {
//!     branch: Some("os".into()),
//!     ..Default::default()
//! };
//! let sources = [ostree_repo::commit::TreeSource::Dir("tree".into())];
//! ostree_repo::commit::commit_with_progress(&repo, &sources, &opts, &progress).unwrap();
//! watcher.join().unwrap();
//! ```

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicU8};

/// What an operation is doing right now; selects which counters matter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    /// Nothing started yet.
    #[default]
    Starting,
    /// Walking trees to learn what is needed; `scanned` counts what was
    /// seen (files for a commit, dirtrees for a local pull).
    Scanning,
    /// Fetching metadata while the total is still unknown
    /// (`metadata_fetched`, `bytes`).
    Metadata,
    /// Transferring or writing objects: `done` of `requested`, `bytes`.
    /// While `outstanding_metadata` is non-zero the total is still growing.
    Objects,
}

/// Counters of one operation, readable from any thread at any time.
///
/// Each counter is individually exact but they are not read together
/// atomically: a snapshot may show `done` a little ahead of `requested`,
/// so consumers should clamp.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    scanned: AtomicU64,
    outstanding_metadata: AtomicU64,
    metadata_fetched: AtomicU64,
    requested: AtomicU64,
    done: AtomicU64,
    bytes: AtomicU64,
}

/// A copy of the counters of a [`Progress`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Current phase.
    pub phase: Phase,
    /// Files (commit) or dirtrees (local pull) seen while scanning.
    pub scanned: u64,
    /// Metadata objects queued but not yet fetched (HTTP pull): the object
    /// total is an estimate while this is non-zero.
    pub outstanding_metadata: u64,
    /// Metadata objects fetched so far (HTTP pull).
    pub metadata_fetched: u64,
    /// Objects that need transferring or writing, as far as known.
    pub requested: u64,
    /// Of `requested`, those finished.
    pub done: u64,
    /// Bytes received (HTTP pull), content bytes copied (local pull) or
    /// file bytes read (commit).
    pub bytes: u64,
}

impl Progress {
    /// Reads all counters (each atomically, not all together).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            phase: match self.phase.load(Relaxed) {
                1 => Phase::Scanning,
                2 => Phase::Metadata,
                3 => Phase::Objects,
                _ => Phase::Starting,
            },
            scanned: self.scanned.load(Relaxed),
            outstanding_metadata: self.outstanding_metadata.load(Relaxed),
            metadata_fetched: self.metadata_fetched.load(Relaxed),
            requested: self.requested.load(Relaxed),
            done: self.done.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
        }
    }

    /// Zeroes every counter: an operation starts from scratch, so one
    /// `Progress` can watch several operations in turn.
    pub(crate) fn reset(&self) {
        for c in [
            &self.scanned,
            &self.outstanding_metadata,
            &self.metadata_fetched,
            &self.requested,
            &self.done,
            &self.bytes,
        ] {
            c.store(0, Relaxed);
        }
        self.set_phase(Phase::Starting);
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        let v = match phase {
            Phase::Starting => 0,
            Phase::Scanning => 1,
            Phase::Metadata => 2,
            Phase::Objects => 3,
        };
        self.phase.store(v, Relaxed);
    }

    pub(crate) fn scanned(&self, n: u64) {
        self.scanned.fetch_add(n, Relaxed);
    }

    pub(crate) fn metadata_queued(&self) {
        self.outstanding_metadata.fetch_add(1, Relaxed);
    }

    pub(crate) fn metadata_settled(&self) {
        self.outstanding_metadata.fetch_sub(1, Relaxed);
    }

    pub(crate) fn metadata_fetched(&self) {
        self.metadata_fetched.fetch_add(1, Relaxed);
    }

    pub(crate) fn set_requested(&self, n: u64) {
        self.requested.store(n, Relaxed);
    }

    pub(crate) fn requested(&self, n: u64) {
        self.requested.fetch_add(n, Relaxed);
    }

    /// An object counted as requested turned out to be present already.
    pub(crate) fn not_needed(&self) {
        self.requested.fetch_sub(1, Relaxed);
    }

    pub(crate) fn done(&self, n: u64) {
        self.done.fetch_add(n, Relaxed);
    }

    pub(crate) fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_and_reset() {
        let p = Progress::default();
        p.set_phase(Phase::Objects);
        p.set_requested(5);
        p.requested(2);
        p.not_needed();
        p.done(3);
        p.bytes(100);
        p.metadata_queued();
        p.metadata_queued();
        p.metadata_settled();
        p.metadata_fetched();
        p.scanned(4);
        assert_eq!(
            p.snapshot(),
            Snapshot {
                phase: Phase::Objects,
                scanned: 4,
                outstanding_metadata: 1,
                metadata_fetched: 1,
                requested: 6,
                done: 3,
                bytes: 100,
            }
        );
        p.reset();
        assert_eq!(p.snapshot(), Snapshot::default());
    }
}
