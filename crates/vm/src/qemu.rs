//! The QEMU command line and the per-VM disk overlay.

use crate::Error;
use std::ffi::OsString;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

/// CPU and memory for a VM, sized for the 2-core CI machine (boot.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The only VM running: 2 vCPUs (MTTCG), 1024 MiB.
    Single,
    /// One of several VMs sharing the machine: 1 vCPU, 512 MiB. Each boot is
    /// slower but the throughput is higher than running them one by one.
    Parallel,
}

impl Profile {
    /// `(vcpus, memory in MiB)`.
    pub fn resources(self) -> (u32, u32) {
        match self {
            Profile::Single => (2, 1024),
            Profile::Parallel => (1, 512),
        }
    }
}

/// A guest-to-host forward: connections the guest opens to
/// `guest_addr:guest_port` reach `127.0.0.1:host_port` on the host. With
/// `restrict=on` these are the only host services a guest can reach.
///
/// By default QEMU (slirp) opens the host connection when it starts, once:
/// the host service must already listen, and the forward carries a single TCP
/// stream per QEMU launch. With [`crate::VmOptions::relay`] set, every guest
/// connection runs the relay instead, which connects anew (HTTP servers need
/// this). Without isolation ([`crate::VmOptions::restrict`] off), guests also
/// reach any host port at `10.0.2.2:PORT`, slirp's alias of 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestFwd {
    /// Address the guest connects to, inside QEMU's 10.0.2.0/24 network
    /// (10.0.2.2 is the address guests know as "the host").
    pub guest_addr: Ipv4Addr,
    /// Port the guest connects to.
    pub guest_port: u16,
    /// Port of the service on the host's 127.0.0.1.
    pub host_port: u16,
}

impl FromStr for GuestFwd {
    type Err = Error;

    /// Parses `GUEST_ADDR:GUEST_PORT=HOST_PORT`, e.g. `10.0.2.100:80=18090`.
    fn from_str(s: &str) -> Result<GuestFwd, Error> {
        let bad = |reason: &str| Error::Invalid {
            what: format!("guest forward {s:?}"),
            reason: format!("{reason} (expected GUEST_ADDR:GUEST_PORT=HOST_PORT)"),
        };
        let (guest, host) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
        let (addr, port) = guest.rsplit_once(':').ok_or_else(|| bad("no guest port"))?;
        let g = GuestFwd {
            guest_addr: addr.parse().map_err(|_| bad("bad guest address"))?,
            guest_port: port.parse().map_err(|_| bad("bad guest port"))?,
            host_port: host.parse().map_err(|_| bad("bad host port"))?,
        };
        g.check()?;
        Ok(g)
    }
}

impl GuestFwd {
    /// Refuses what QEMU would refuse at start with a vaguer message: slirp
    /// only forwards addresses of its 10.0.2.0/24 network, and not those of
    /// its own host alias (10.0.2.2) or DNS server (10.0.2.3), the guest's
    /// own address (10.0.2.15) or the broadcast address.
    pub fn check(&self) -> Result<(), Error> {
        let o = self.guest_addr.octets();
        let reason = if o[..3] != [10, 0, 2] {
            Some("the guest address must be in QEMU's 10.0.2.0/24 network")
        } else if matches!(o[3], 0 | 2 | 3 | 15 | 255) {
            Some("10.0.2.0, .2 (the host alias), .3 (DNS), .15 (the guest) and .255 cannot be forwarded; use e.g. 10.0.2.100, or reach host ports at 10.0.2.2 with restrict off")
        } else {
            None
        };
        match reason {
            Some(r) => Err(Error::Invalid {
                what: format!("guest forward {self}"),
                reason: r.into(),
            }),
            None => Ok(()),
        }
    }
}

impl fmt::Display for GuestFwd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}={}",
            self.guest_addr, self.guest_port, self.host_port
        )
    }
}

/// Everything that goes into one QEMU command line.
#[derive(Debug, Clone)]
pub(crate) struct QemuSpec<'a> {
    pub binary: &'a Path,
    pub disk: &'a Path,
    pub ignition: Option<&'a Path>,
    pub smp: u32,
    pub memory_mib: u32,
    pub ssh_port: u16,
    pub restrict: bool,
    pub guestfwds: &'a [GuestFwd],
    pub relay: Option<&'a Path>,
    pub extra: &'a [OsString],
}

impl QemuSpec<'_> {
    /// The arguments of the boot contract: TCG only (KVM does not work on the
    /// CI machine, and probing it costs time), `-no-reboot` so that a guest
    /// reboot ends QEMU and the harness relaunches it (an in-VM reset costs
    /// ~35 s of firmware time under TCG), serial console on stdout.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        push(&[
            "-machine",
            "q35",
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
        ]);
        push(&[
            "-smp",
            &self.smp.to_string(),
            "-m",
            &self.memory_mib.to_string(),
        ]);
        push(&["-nodefaults", "-no-user-config", "-display", "none"]);
        push(&["-no-reboot"]);
        // signal=off: QEMU must not treat console bytes as Ctrl-C.
        push(&[
            "-chardev",
            "stdio,id=serial0,signal=off",
            "-serial",
            "chardev:serial0",
        ]);
        a.push("-drive".into());
        a.push(opt_path("file=", self.disk, ",if=virtio,format=qcow2"));
        if let Some(ign) = self.ignition {
            a.push("-fw_cfg".into());
            a.push(opt_path("name=opt/com.coreos/config,file=", ign, ""));
        }
        let mut net = format!(
            "user,id=net0,restrict={},hostfwd=tcp:127.0.0.1:{}-:22",
            if self.restrict { "on" } else { "off" },
            self.ssh_port
        );
        for g in self.guestfwds {
            // slirp splits `cmd:` on spaces and execs it per connection with
            // the socket as stdin/stdout; QEMU's option parser needs `,,`.
            let target = match self.relay {
                Some(r) => format!(
                    "cmd:{} vm relay 127.0.0.1:{}",
                    r.to_string_lossy().replace(',', ",,"),
                    g.host_port
                ),
                None => format!("tcp:127.0.0.1:{}", g.host_port),
            };
            net.push_str(&format!(
                ",guestfwd=tcp:{}:{}-{target}",
                g.guest_addr, g.guest_port
            ));
        }
        a.push("-netdev".into());
        a.push(net.into());
        a.push("-device".into());
        a.push("virtio-net-pci,netdev=net0".into());
        a.extend(self.extra.iter().cloned());
        a
    }

    /// The command as a shell would show it, for logs and error messages.
    pub fn display(&self) -> String {
        std::iter::once(self.binary.as_os_str().to_os_string())
            .chain(self.args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `PREFIX` + path with QEMU's option escaping (`,` doubled) + `SUFFIX`.
fn opt_path(prefix: &str, path: &Path, suffix: &str) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(path.to_string_lossy().replace(',', ",,"));
    s.push(suffix);
    s
}

/// The format of a disk image as QEMU names it (`raw`, `qcow2`), read with
/// `qemu-img info` rather than guessed from the file name.
pub(crate) fn image_format(image: &Path) -> Result<String, Error> {
    let out = run_tool(
        Command::new("qemu-img")
            .args(["info", "--output=json", "-U"])
            .arg(image),
        "qemu-img info",
    )?;
    let v: serde_json::Value = serde_json::from_slice(&out).map_err(|e| Error::Tool {
        tool: "qemu-img info".into(),
        detail: format!("unreadable JSON for {}: {e}", image.display()),
    })?;
    v.get("format")
        .and_then(|f| f.as_str())
        .map(str::to_string)
        .ok_or_else(|| Error::Tool {
            tool: "qemu-img info".into(),
            detail: format!("no \"format\" for {}", image.display()),
        })
}

/// Creates `overlay`, a qcow2 whose backing file is `base`: the VM writes
/// only there, so the base image stays pristine and tests can share it.
pub(crate) fn create_overlay(base: &Path, overlay: &Path) -> Result<(), Error> {
    let base = base.canonicalize().map_err(|e| Error::Io {
        what: format!("base image {}", base.display()),
        source: e,
    })?;
    let format = image_format(&base)?;
    run_tool(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-b"])
            .arg(&base)
            .args(["-F", &format])
            .arg(overlay),
        "qemu-img create",
    )?;
    Ok(())
}

/// Runs a host tool to completion; a failure carries its stderr.
pub(crate) fn run_tool(cmd: &mut Command, tool: &str) -> Result<Vec<u8>, Error> {
    let out = cmd.output().map_err(|e| Error::Tool {
        tool: tool.into(),
        detail: format!("cannot run it: {e} (is it installed?)"),
    })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: tool.into(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out.stdout)
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub(crate) fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| Error::Io {
        what: "binding a free port on 127.0.0.1".into(),
        source: e,
    })?;
    l.local_addr().map(|a| a.port()).map_err(|e| Error::Io {
        what: "reading a bound port".into(),
        source: e,
    })
}

/// Where the base image is, made absolute for messages.
pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guestfwd_parses_and_prints() {
        let g: GuestFwd = "10.0.2.100:8080=18090".parse().unwrap();
        assert_eq!(g.guest_addr, Ipv4Addr::new(10, 0, 2, 100));
        assert_eq!((g.guest_port, g.host_port), (8080, 18090));
        assert_eq!(g.to_string(), "10.0.2.100:8080=18090");
        for bad in [
            "10.0.2.2:80",
            "10.0.2.2=80",
            "x:80=1",
            "10.0.2.100:99999=1",
            "10.0.2.2:80=1",
            "10.0.2.3:53=1",
            "192.168.1.1:80=1",
        ] {
            let e = bad.parse::<GuestFwd>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn args_follow_the_boot_contract() {
        let fwd = ["10.0.2.100:80=18090".parse().unwrap()];
        let spec = QemuSpec {
            binary: Path::new("qemu-system-x86_64"),
            disk: Path::new("/t/a,b.qcow2"),
            ignition: Some(Path::new("/t/config.ign")),
            smp: 1,
            memory_mib: 512,
            ssh_port: 2222,
            restrict: true,
            guestfwds: &fwd,
            relay: None,
            extra: &[],
        };
        let cmd = spec.display();
        for want in [
            "-machine q35 -accel tcg,thread=multi -cpu max -smp 1 -m 512",
            "-nodefaults -no-user-config -display none -no-reboot",
            "-drive file=/t/a,,b.qcow2,if=virtio,format=qcow2",
            "-fw_cfg name=opt/com.coreos/config,file=/t/config.ign",
            "-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22,guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:18090",
            "-device virtio-net-pci,netdev=net0",
        ] {
            assert!(cmd.contains(want), "{want}\n in {cmd}");
        }
        assert!(!cmd.contains("kvm"));
        let relayed = QemuSpec {
            relay: Some(Path::new("/usr/bin/ferrocore")),
            restrict: false,
            ..spec
        }
        .display();
        assert!(
            relayed.contains("restrict=off,hostfwd=tcp:127.0.0.1:2222-:22,guestfwd=tcp:10.0.2.100:80-cmd:/usr/bin/ferrocore vm relay 127.0.0.1:18090"),
            "{relayed}"
        );
    }

    #[test]
    fn profiles_fit_the_ci_machine() {
        assert_eq!(Profile::Single.resources(), (2, 1024));
        assert_eq!(Profile::Parallel.resources(), (1, 512));
    }
}
