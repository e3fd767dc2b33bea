//! `ferrocore agent status`: why this node is or is not updating right now.
//!
//! The agent writes an [`AgentStatus`] snapshot after every tick (atomically, to
//! [`crate::Paths::status_file`]); the status verb reads and renders it, so it
//! answers without disturbing the daemon or the servers.

use std::fmt::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cincinnati::Release;
use crate::os::OsRelease;
use crate::persist;

/// Something that keeps the node from updating (further).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hold {
    /// `updates.enabled = false`.
    UpdatesDisabled,
    /// The booted release is not a node of the graph.
    NotInGraph {
        /// Booted version.
        version: String,
        /// Booted checksum.
        checksum: String,
    },
    /// The booted release is a dead-end: no update leaves it.
    DeadEnd {
        /// Published reason (URL or text).
        reason: String,
    },
    /// A newer release is rolling out and has not reached this node's wariness.
    Wariness {
        /// The release.
        version: String,
        /// Share of the fleet the rollout has reached (0.0–1.0).
        rollout_share: f64,
        /// This node's configured wariness (`None`: assigned by the server).
        wariness: Option<f64>,
    },
    /// The target is a barrier; newer releases come after it.
    Barrier {
        /// Barrier release (the target).
        barrier: String,
        /// Published reason.
        reason: String,
        /// Newest release of the stream.
        newest: String,
    },
    /// A newer release exists but the server offers no path to it (not rolled out,
    /// or paused).
    NotOffered {
        /// The release.
        version: String,
    },
    /// A target was refused because it failed on this node before.
    Denied {
        /// The release.
        version: String,
        /// Why it is on the deny-list.
        reason: String,
    },
    /// The best target is not newer than the booted release.
    Downgrade {
        /// The release.
        version: String,
    },
    /// `periodic`: outside every maintenance window.
    WindowClosed {
        /// Next opening (RFC 3339 with zone), if any.
        next_window: Option<String>,
    },
    /// Users are logged in on terminals; the reboot waits for them a while.
    ActiveSessions {
        /// Their terminals.
        ttys: Vec<String>,
        /// Postponements (of a minute) left before rebooting anyway.
        postponements_left: u32,
    },
    /// `fleet_lock`: the lock server refused a reboot slot.
    LockBusy {
        /// Server's answer.
        detail: String,
    },
    /// Reporting steady state to the strategy failed (fleet_lock: the lock server
    /// is unreachable or refused); updates are not checked until it succeeds.
    SteadyStateFailed {
        /// Error.
        error: String,
    },
    /// The last graph check failed.
    CheckFailed {
        /// Error.
        error: String,
    },
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::UpdatesDisabled => write!(f, "updates disabled by configuration"),
            Hold::NotInGraph { version, checksum } => write!(
                f,
                "booted release {version} ({checksum}) is not in the update graph"
            ),
            Hold::DeadEnd { reason } => {
                write!(f, "booted release is a dead-end: {reason}")
            }
            Hold::Wariness {
                version,
                rollout_share,
                wariness,
            } => {
                write!(
                    f,
                    "{version} is rolling out ({:.1}% of the fleet so far), ",
                    rollout_share * 100.0
                )?;
                match wariness {
                    Some(w) => write!(f, "not yet reaching this node's wariness {w:.6}"),
                    None => write!(
                        f,
                        "not yet reaching this node (wariness assigned by the server)"
                    ),
                }
            }
            Hold::Barrier {
                barrier,
                reason,
                newest,
            } => write!(
                f,
                "barrier: {barrier} must be installed before {newest} ({reason})"
            ),
            Hold::NotOffered { version } => {
                write!(
                    f,
                    "{version} exists but is not offered to this node (not rolled out or paused)"
                )
            }
            Hold::Denied { version, reason } => {
                write!(f, "{version} is denied on this node: {reason}")
            }
            Hold::Downgrade { version } => {
                write!(
                    f,
                    "{version} would be a downgrade (updates.allow_downgrade is false)"
                )
            }
            Hold::WindowClosed { next_window } => match next_window {
                Some(n) => write!(f, "outside the maintenance windows; next opens {n}"),
                None => write!(f, "outside the maintenance windows"),
            },
            Hold::ActiveSessions {
                ttys,
                postponements_left,
            } => write!(
                f,
                "interactive sessions on {}; rebooting anyway in {postponements_left} minute(s)",
                ttys.join(", ")
            ),
            Hold::LockBusy { detail } => write!(f, "reboot slot not granted: {detail}"),
            Hold::SteadyStateFailed { error } => {
                write!(f, "cannot report steady state: {error}")
            }
            Hold::CheckFailed { error } => write!(f, "update check failed: {error}"),
        }
    }
}

/// Snapshot of the agent, written after every tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// State machine state (Zincati's names, snake case).
    pub state: String,
    /// Unit-status style summary, as Zincati's `STATUS=`.
    pub summary: String,
    /// When this snapshot was taken (RFC 3339).
    pub updated_at: String,
    /// Strategy name.
    pub strategy: String,
    /// Node id sent to the servers.
    pub node_uuid: String,
    /// Update group.
    pub group: String,
    /// Booted release, once known.
    pub booted: Option<OsRelease>,
    /// Time of the last graph check (RFC 3339).
    pub last_check: Option<String>,
    /// Release being updated to, if any.
    pub candidate: Option<Release>,
    /// What holds the node back.
    pub holds: Vec<Hold>,
    /// Deny-listed releases: version and reason.
    pub denied: Vec<(String, String)>,
}

impl AgentStatus {
    /// Human-readable rendering.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "State: {} ({})", self.state, self.summary);
        if let Some(b) = &self.booted {
            let _ = writeln!(s, "Booted: {} ({})", b.version, b.checksum);
        }
        let _ = writeln!(
            s,
            "Strategy: {}; group {}; node {}",
            self.strategy, self.group, self.node_uuid
        );
        let _ = writeln!(
            s,
            "Last check: {}",
            self.last_check.as_deref().unwrap_or("never")
        );
        match &self.candidate {
            Some(c) => {
                let _ = writeln!(s, "Candidate: {} ({})", c.version, c.payload);
            }
            None => {
                let _ = writeln!(s, "Candidate: none");
            }
        }
        if self.holds.is_empty() {
            let _ = writeln!(s, "Held by: nothing");
        } else {
            let _ = writeln!(s, "Held by:");
            for h in &self.holds {
                let _ = writeln!(s, "  - {h}");
            }
        }
        for (v, why) in &self.denied {
            let _ = writeln!(s, "Denied: {v}: {why}");
        }
        let _ = writeln!(s, "As of: {}", self.updated_at);
        s
    }

    /// Reads a snapshot written by the agent.
    pub fn read(path: &Path) -> Result<AgentStatus, String> {
        persist::read_json(path)?
            .ok_or_else(|| format!("{}: no status (is the agent running?)", path.display()))
    }

    /// Writes the snapshot atomically.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        persist::write_json(path, self, false)
    }
}
