//! ssh into a guest through QEMU's host forward, with the system `ssh` client
//! and a key made for the test (the guest gets its public half via Ignition).

use crate::Error;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// An ed25519 key pair generated with `ssh-keygen`, without a passphrase.
#[derive(Debug, Clone)]
pub struct SshKey {
    private: PathBuf,
    public: String,
}

impl SshKey {
    /// Generates `dir/id_ed25519` (+ `.pub`); `dir` must exist. An existing
    /// key there is replaced, so every test run uses a key of its own.
    pub fn generate(dir: &Path) -> Result<SshKey, Error> {
        let private = dir.join("id_ed25519");
        for p in [private.clone(), private.with_extension("pub")] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Io {
                        what: format!("removing old key {}", p.display()),
                        source: e,
                    })
                }
                _ => {}
            }
        }
        crate::qemu::run_tool(
            Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "ferrocore-vm-test",
                    "-f",
                ])
                .arg(&private)
                .stdin(Stdio::null()),
            "ssh-keygen",
        )?;
        let pub_path = private.with_extension("pub");
        let public = std::fs::read_to_string(&pub_path)
            .map_err(|e| Error::Io {
                what: format!("reading {}", pub_path.display()),
                source: e,
            })?
            .trim()
            .to_string();
        Ok(SshKey { private, public })
    }

    /// The private key file.
    pub fn path(&self) -> &Path {
        &self.private
    }

    /// The public key line (`ssh-ed25519 AAAA... comment`), for `sshAuthorizedKeys`.
    pub fn public(&self) -> &str {
        &self.public
    }
}

/// What a remote command did.
#[derive(Debug, Clone)]
pub struct SshOutput {
    /// Exit status of the `ssh` process: the remote command's, or 255 for
    /// connection errors.
    pub status: ExitStatus,
    /// Remote stdout.
    pub stdout: String,
    /// Remote stderr and ssh's own errors.
    pub stderr: String,
}

impl SshOutput {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Connection parameters for one guest: `user@127.0.0.1 -p port -i key`.
#[derive(Debug, Clone)]
pub struct Ssh {
    port: u16,
    key: PathBuf,
    user: String,
}

/// How long [`Ssh::run`] lets a command take before killing the `ssh` process.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

impl Ssh {
    /// Parameters for `user@127.0.0.1:port` with `key`.
    pub fn new(port: u16, key: &SshKey, user: &str) -> Ssh {
        Ssh {
            port,
            key: key.path().to_path_buf(),
            user: user.to_string(),
        }
    }

    /// The `ssh` command for `remote` (a shell command line run by the guest's
    /// login shell). Host keys are not checked (each VM makes fresh ones),
    /// the user's ssh config is ignored, and BatchMode makes a missing key an
    /// error instead of a password prompt. stdin is /dev/null so that ssh
    /// never waits on, or swallows, the caller's stdin.
    pub fn command(&self, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-F")
            .arg("/dev/null")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-i")
            .arg(&self.key);
        for o in [
            "IdentitiesOnly=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
            "BatchMode=yes",
            "ConnectTimeout=10",
            "ServerAliveInterval=5",
            "ServerAliveCountMax=6",
        ] {
            c.arg("-o").arg(o);
        }
        c.arg(format!("{}@127.0.0.1", self.user))
            .arg("--")
            .arg(remote)
            .stdin(Stdio::null());
        c
    }

    /// Runs `remote`, capturing its output, with [`DEFAULT_COMMAND_TIMEOUT`].
    pub fn run(&self, remote: &str) -> Result<SshOutput, Error> {
        self.run_timeout(remote, DEFAULT_COMMAND_TIMEOUT)
    }

    /// Runs `remote`; kills our `ssh` process (only it) after `timeout`.
    pub fn run_timeout(&self, remote: &str, timeout: Duration) -> Result<SshOutput, Error> {
        let mut child = self
            .command(remote)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Ssh(format!(
                    "cannot run ssh: {e} (is openssh-client installed?)"
                ))
            })?;
        // Both pipes are drained on their own threads so that a chatty command
        // cannot block on a full pipe while we wait for it to exit.
        let drain = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let out = drain(
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        );
        let err = drain(
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::Ssh(format!(
                        "`{remote}` did not finish within {} s",
                        timeout.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(Error::Ssh(format!("waiting for ssh: {e}"))),
            }
        };
        Ok(SshOutput {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }

    /// Runs `remote` and returns its stdout; a non-zero exit is an error
    /// carrying the command, its status and stderr.
    pub fn check(&self, remote: &str) -> Result<String, Error> {
        let o = self.run(remote)?;
        if !o.success() {
            return Err(Error::Ssh(format!(
                "`{remote}` failed ({}): {}{}",
                o.status,
                o.stderr.trim(),
                if o.stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!("\nstdout: {}", o.stdout.trim())
                }
            )));
        }
        Ok(o.stdout)
    }

    /// The forwarded port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_generation_gives_an_openssh_ed25519_key() {
        let d = tempfile::tempdir().unwrap();
        let k = SshKey::generate(d.path()).unwrap();
        assert!(k.public().starts_with("ssh-ed25519 AAAA"), "{}", k.public());
        let again = SshKey::generate(d.path()).unwrap();
        assert_ne!(k.public(), again.public(), "a fresh key each time");
    }

    #[test]
    fn command_never_prompts_or_checks_host_keys() {
        let d = tempfile::tempdir().unwrap();
        let k = SshKey::generate(d.path()).unwrap();
        let c = Ssh::new(2222, &k, "core").command("true");
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        for want in [
            "-p 2222",
            "BatchMode=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "core@127.0.0.1 -- true",
        ] {
            assert!(line.contains(want), "{want} in {line}");
        }
    }

    #[test]
    fn unreachable_guest_is_a_connection_error_not_a_hang() {
        let d = tempfile::tempdir().unwrap();
        let k = SshKey::generate(d.path()).unwrap();
        let port = crate::qemu::free_port().unwrap();
        let o = Ssh::new(port, &k, "core")
            .run_timeout("true", Duration::from_secs(30))
            .unwrap();
        assert_eq!(o.status.code(), Some(255), "{o:?}");
    }
}
