//! Messages to the service manager and to users: systemd's `sd_notify` protocol
//! (`READY=1`, `STATUS=`), and the dead-end message of the day.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// A `NOTIFY_SOCKET` destination (path, or `@name` for the abstract namespace).
#[derive(Debug, Clone)]
pub struct Notifier(PathBuf);

impl Notifier {
    /// The socket named by `$NOTIFY_SOCKET`, if the service manager set one.
    pub fn from_env() -> Option<Notifier> {
        std::env::var_os("NOTIFY_SOCKET").map(|s| Notifier(PathBuf::from(s)))
    }

    /// A notifier sending to `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Notifier {
        Notifier(socket.into())
    }

    /// Sends `msg` (newline-separated `KEY=VALUE` assignments).
    pub fn send(&self, msg: &str) -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let raw = self.0.as_os_str().as_encoded_bytes();
        if let Some(name) = raw.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
        } else {
            sock.send_to(msg.as_bytes(), &self.0)?;
        }
        Ok(())
    }
}

/// Writes (`Some(reason)`) or removes (`None`) the dead-end notice at `path`, as
/// Zincati's `deadend-motd` does for `/run/motd.d/85-zincati-deadend.motd`.
pub fn deadend_motd(path: &Path, reason: Option<&str>) -> Result<(), String> {
    match reason {
        Some(r) => {
            let text =
                format!("This release is a dead-end and will not further auto-update: {r}\n");
            if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
                return Ok(());
            }
            crate::persist::write_bytes(path, text.as_bytes())
        }
        None => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        },
    }
}
