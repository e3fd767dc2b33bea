//! What the agent needs from the operating system, and the reboot action.
//!
//! Zincati drives rpm-ostree; ferrocore's agent drives the sysroot through the
//! [`Os`] trait, so the state machine does not depend on how deployments are stored.
//! Methods are blocking (staging pulls and checks out a whole OS); the agent calls
//! them from a blocking thread.

use serde::{Deserialize, Serialize};

/// An OS release as the OS sees it: its version and the OSTree commit checksum
/// that is the Cincinnati `payload` of `checksum`-scheme nodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OsRelease {
    /// Release version, e.g. `41.20250101.3.0`.
    pub version: String,
    /// Commit checksum (64 hex digits).
    pub checksum: String,
}

/// The booted deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booted {
    /// Its release.
    pub release: OsRelease,
    /// Update stream it follows (commit metadata `ferrocore.stream`, or
    /// `fedora-coreos.stream` on upstream-built commits).
    pub stream: String,
}

/// One local deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalDeployment {
    /// Its release.
    pub release: OsRelease,
    /// Staged: deployed for the next boot, finalization pending.
    pub staged: bool,
    /// Currently running.
    pub booted: bool,
}

/// An OS operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct OsError(pub String);

/// The agent's view of the sysroot.
pub trait Os: Send + Sync {
    /// The running deployment.
    fn booted(&self) -> Result<Booted, OsError>;

    /// All local deployments, staged ones included.
    fn deployments(&self) -> Result<Vec<LocalDeployment>, OsError>;

    /// Releases the boot counter rolled back from: they used up their boot tries
    /// without reaching `boot-complete.target`.
    fn rolled_back(&self) -> Result<Vec<OsRelease>, OsError>;

    /// Fetches `target` and stages it for the next boot with *locked* finalization:
    /// it must not be applied at shutdown until [`Os::finalize`] unlocks it.
    fn stage(&self, target: &OsRelease) -> Result<(), OsError>;

    /// Unlocks the staged `target` so that the next reboot boots into it. Fails if
    /// the staged deployment is not `target`.
    fn finalize(&self, target: &OsRelease) -> Result<(), OsError>;

    /// Terminals of interactive login sessions (e.g. `pts/0`): a reboot would cut
    /// those users off, so finalization waits a grace period for them. The default
    /// asks logind ([`logind_sessions`]); if logind cannot answer, none are assumed
    /// (as Zincati), since being stuck forever is worse than rebooting under a user.
    fn interactive_sessions(&self) -> Vec<String> {
        logind_sessions().unwrap_or_default()
    }
}

fn loginctl(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("loginctl")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Terminals of the logind sessions that have one.
///
/// Zincati parses `loginctl list-sessions --json=short`, but Debian 12's systemd
/// 252 has no `--json` for loginctl, so this asks for the session ids
/// (`list-sessions --no-legend`, first column) and then each session's `TTY`
/// property, which every systemd version answers.
pub fn logind_sessions() -> Option<Vec<String>> {
    let list = loginctl(&["list-sessions", "--no-legend"])?;
    let mut ttys = Vec::new();
    for id in session_ids(&list) {
        if let Some(tty) = loginctl(&["show-session", id, "-p", "TTY", "--value"]) {
            let tty = tty.trim();
            if !tty.is_empty() {
                ttys.push(tty.to_string());
            }
        }
    }
    Some(ttys)
}

/// Session ids from `loginctl list-sessions --no-legend` output.
pub fn session_ids(list: &str) -> Vec<&str> {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// Reboots the machine into the finalized update.
pub trait Reboot: Send + Sync {
    /// Starts the reboot; returning is fine (the service manager stops the agent).
    fn reboot(&self, into: &OsRelease) -> Result<(), OsError>;
}

/// Reboots with `systemctl reboot`, as on a node.
#[derive(Debug, Clone, Default)]
pub struct SystemctlReboot;

impl Reboot for SystemctlReboot {
    fn reboot(&self, _into: &OsRelease) -> Result<(), OsError> {
        let out = std::process::Command::new("systemctl")
            .arg("reboot")
            .output()
            .map_err(|e| OsError(format!("cannot run systemctl reboot: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(OsError(format!(
                "systemctl reboot: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

/// Reboots by running a configured command (`ferrocore agent run
/// --reboot-command`): a site's own reboot procedure, or a recorder in tests.
///
/// The command gets the target in `FERROCORE_REBOOT_VERSION` and
/// `FERROCORE_REBOOT_CHECKSUM`; a non-zero exit is a failed reboot, which the
/// agent retries.
#[derive(Debug, Clone)]
pub struct CommandReboot {
    argv: Vec<String>,
}

impl CommandReboot {
    /// Parses `command`: a program and its arguments separated by whitespace (no
    /// shell quoting; use a script for anything more).
    pub fn parse(command: &str) -> Result<CommandReboot, OsError> {
        let argv: Vec<String> = command.split_whitespace().map(str::to_string).collect();
        if argv.is_empty() {
            return Err(OsError("empty reboot command".into()));
        }
        Ok(CommandReboot { argv })
    }

    /// Program and arguments.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }
}

impl Reboot for CommandReboot {
    fn reboot(&self, into: &OsRelease) -> Result<(), OsError> {
        let out = std::process::Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .env("FERROCORE_REBOOT_VERSION", &into.version)
            .env("FERROCORE_REBOOT_CHECKSUM", &into.checksum)
            .output()
            .map_err(|e| OsError(format!("cannot run reboot command {:?}: {e}", self.argv[0])))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(OsError(format!(
                "reboot command {:?}: {}: {}",
                self.argv.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{session_ids, CommandReboot, OsRelease, Reboot};

    #[test]
    fn reboot_command() {
        assert!(CommandReboot::parse("  ").is_err());
        let tmp = std::env::temp_dir().join(format!("agent-reboot-{}", std::process::id()));
        let script = format!(
            "printf '%s %s' \"$FERROCORE_REBOOT_VERSION\" \"$FERROCORE_REBOOT_CHECKSUM\" > {}",
            tmp.display()
        );
        let r = CommandReboot::parse("sh -c").unwrap();
        assert_eq!(r.argv(), ["sh", "-c"]);
        // `sh -c` needs the script as one argument: build the command by hand.
        let r = CommandReboot {
            argv: vec!["sh".into(), "-c".into(), script],
        };
        let into = OsRelease {
            version: "2".into(),
            checksum: "ab".into(),
        };
        r.reboot(&into).unwrap();
        assert_eq!(std::fs::read_to_string(&tmp).unwrap(), "2 ab");
        let _ = std::fs::remove_file(&tmp);
        let e = CommandReboot::parse("false").unwrap().reboot(&into);
        assert!(e.unwrap_err().to_string().contains("exit status: 1"));
    }

    #[test]
    fn session_list() {
        // systemd 252 (Debian 12) `loginctl list-sessions --no-legend`: the seat
        // column may be empty, so only the first column is reliable.
        let out = "      3 1000 core        pts/0\n     c1    0 root seat0 tty1\n\n";
        assert_eq!(session_ids(out), ["3", "c1"]);
        assert!(session_ids("").is_empty());
    }
}
