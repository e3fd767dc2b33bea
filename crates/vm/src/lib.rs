//! Run ferrocore disk images under QEMU for end-to-end tests.
//!
//! A [`Vm`] boots a per-VM qcow2 overlay of a base image (the base is never
//! written), passes an Ignition config through fw_cfg like Fedora CoreOS's
//! `qemu` platform, forwards a free port on 127.0.0.1 to the guest's ssh, and
//! records the serial console line by line with time stamps, in memory and in
//! a log file. QEMU runs with `-no-reboot`: when the guest reboots (the kernel
//! prints `reboot: Restarting system`), QEMU exits and the harness starts it
//! again on the same overlay, counting boots; `reboot: Power down` ends the VM.
//!
//! ```no_run
//! use ferrocore_vm::{Profile, SshKey, Vm, VmOptions};
//! use std::time::Duration;
//! # fn main() -> Result<(), ferrocore_vm::Error> {
//! let dir = std::path::Path::new("/tmp/t1");
//! let key = SshKey::generate(dir)?;
//! let mut opts = VmOptions::new("image.qcow2", dir);
//! opts.ignition = Some("config.ign".into());
//! opts.profile = Profile::Single;
//! let mut vm = Vm::start(opts)?;
//! let ssh = vm.wait_ssh(&key, "core", Duration::from_secs(180))?;
//! println!("{}", ssh.check("uname -r")?);
//! ssh.run("sudo systemctl poweroff")?;
//! vm.wait_poweroff(Duration::from_secs(120))?;
//! # Ok(()) }
//! ```
//!
//! The harness uses threads, not async: one thread per QEMU process reads the
//! console, and waiting is a condition variable.

#![warn(missing_docs)]

mod console;
mod qemu;
mod ssh;

pub use console::{ConsoleLine, Pattern};
pub use qemu::{GuestFwd, Profile};
pub use ssh::{Ssh, SshKey, SshOutput, DEFAULT_COMMAND_TIMEOUT};

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Kernel message printed when the guest reboots.
pub const REBOOT_MARKER: &str = "reboot: Restarting system";
/// Kernel message printed when the guest powers off.
pub const POWEROFF_MARKER: &str = "reboot: Power down";

/// `now + timeout`, saturating: callers may pass `Duration::MAX` for "no limit".
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(u64::from(u32::MAX)))
}

/// Console lines quoted in timeout and failure messages.
const TAIL_LINES: usize = 30;

/// Errors of the harness. Waiting errors carry the end of the console, which
/// is usually what explains a failed boot.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A host tool (qemu-img, ssh-keygen, QEMU) failed.
    #[error("{tool}: {detail}")]
    Tool {
        /// The tool.
        tool: String,
        /// Its error output or why it could not run.
        detail: String,
    },
    /// A caller-supplied value is unusable.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The value, quoted.
        what: String,
        /// Why.
        reason: String,
    },
    /// Nothing matched before the deadline.
    #[error("timed out after {secs} s waiting for {what}; console log {log}, last lines:\n{tail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        secs: u64,
        /// The console log file.
        log: String,
        /// The last console lines.
        tail: String,
    },
    /// The VM stopped (powered off, crashed, killed) while something was awaited.
    #[error("the VM {state} while waiting for {what}; console log {log}, last lines:\n{tail}")]
    Stopped {
        /// What was awaited.
        what: String,
        /// How the VM ended.
        state: VmState,
        /// The console log file.
        log: String,
        /// The last console lines.
        tail: String,
    },
    /// ssh could not run or a remote command failed.
    #[error("ssh: {0}")]
    Ssh(String),
}

/// Where a VM is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmState {
    /// QEMU runs, or is being relaunched after a guest reboot.
    Running,
    /// The guest powered off (`reboot: Power down`) and QEMU exited.
    PoweredOff,
    /// QEMU ended without a power-off: it failed to start, crashed, the guest
    /// reset without a clean reboot (e.g. a triple fault), or it rebooted more
    /// often than [`VmOptions::max_boots`].
    Exited(String),
    /// [`Vm::kill`] (or drop) stopped it.
    Killed,
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmState::Running => write!(f, "is running"),
            VmState::PoweredOff => write!(f, "powered off"),
            VmState::Exited(why) => write!(f, "exited ({why})"),
            VmState::Killed => write!(f, "was killed"),
        }
    }
}

/// How to run one VM. Fields left at their defaults give the boot contract's
/// single-VM setup.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// Base disk image (raw or qcow2); only read.
    pub image: PathBuf,
    /// Directory for this VM's overlay and console log (created if missing).
    pub dir: PathBuf,
    /// Name used for the files in `dir` (`NAME.qcow2`, `NAME.console.log`).
    pub name: String,
    /// Ignition config passed as fw_cfg `opt/com.coreos/config`.
    pub ignition: Option<PathBuf>,
    /// CPU and memory preset.
    pub profile: Profile,
    /// Overrides the profile's vCPU count.
    pub smp: Option<u32>,
    /// Overrides the profile's memory, in MiB.
    pub memory_mib: Option<u32>,
    /// Host port forwarded to the guest's port 22 (default: a free one).
    pub ssh_port: Option<u16>,
    /// Guest-to-host forwards: with `restrict`, the only host services the
    /// guest can reach.
    pub guestfwds: Vec<GuestFwd>,
    /// A ferrocore binary: each guest connection to a [`GuestFwd`] then runs
    /// `RELAY vm relay 127.0.0.1:HOST_PORT` ([`relay_stdio`]), so forwards
    /// carry any number of connections and the host service may start after
    /// the VM. Without it a forward carries one connection per QEMU launch.
    pub relay: Option<PathBuf>,
    /// Isolate the guest (`restrict=on`, the default): no traffic leaves
    /// QEMU except the ssh forward and `guestfwds`. Off, the guest reaches
    /// the outside through NAT and the host's 127.0.0.1 services at 10.0.2.2.
    pub restrict: bool,
    /// Arguments appended to the QEMU command line.
    pub extra_args: Vec<OsString>,
    /// QEMU binary.
    pub qemu: PathBuf,
    /// Launches after which a further guest reboot ends the VM instead of
    /// relaunching it, so a reboot loop cannot run forever.
    pub max_boots: u32,
    /// Whether the console is also copied to stderr (for `ferrocore vm run`).
    pub echo: bool,
}

impl VmOptions {
    /// Defaults for booting `image` with files in `dir`.
    pub fn new(image: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> VmOptions {
        VmOptions {
            image: image.into(),
            dir: dir.into(),
            name: "vm".into(),
            ignition: None,
            profile: Profile::Single,
            smp: None,
            memory_mib: None,
            ssh_port: None,
            guestfwds: Vec::new(),
            restrict: true,
            relay: None,
            extra_args: Vec::new(),
            qemu: "qemu-system-x86_64".into(),
            max_boots: 8,
            echo: false,
        }
    }
}

/// Copies stdin to a TCP connection to `addr` and the connection to stdout
/// until the host service closes it: the per-connection relay that QEMU runs
/// for a guest forward (`ferrocore vm relay`), its stdin and stdout being the
/// guest's socket. Prints nothing on stderr, which is that socket too.
pub fn relay_stdio(addr: std::net::SocketAddr) -> std::io::Result<()> {
    use std::net::{Shutdown, TcpStream};
    let sock = TcpStream::connect(addr)?;
    let mut up = sock.try_clone()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut up);
        // The guest finished its request: pass the half-close on.
        let _ = up.shutdown(Shutdown::Write);
    });
    let mut down = &sock;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = down.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        // Flush each chunk: stdout is line-buffered and this is a byte stream.
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

/// State shared between a [`Vm`] and its console thread.
struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
}

struct Inner {
    lines: Vec<ConsoleLine>,
    /// Text after the last newline (a `login: ` prompt has none).
    partial: String,
    log: File,
    echo: bool,
    boots: u32,
    state: VmState,
    /// PID of the running QEMU; `None` once it has been reaped, so a kill can
    /// never hit a recycled PID.
    pid: Option<u32>,
    stop: bool,
    launched: Instant,
    saw_reboot: bool,
    saw_poweroff: bool,
}

impl Inner {
    fn push(&mut self, text: String) {
        let line = ConsoleLine {
            boot: self.boots,
            secs: self.launched.elapsed().as_secs_f64(),
            text,
        };
        if line.text.contains(REBOOT_MARKER) {
            self.saw_reboot = true;
        }
        if line.text.contains(POWEROFF_MARKER) {
            self.saw_poweroff = true;
        }
        // The log is for humans after a failure; a write error must not kill the VM.
        let _ = writeln!(self.log, "[{:8.2}] {}", line.secs, line.text);
        if self.echo {
            eprintln!("[{:8.2}] {}", line.secs, line.text);
        }
        self.lines.push(line);
    }

    fn tail(&self) -> String {
        let start = self.lines.len().saturating_sub(TAIL_LINES);
        let mut s: Vec<String> = self.lines[start..].iter().map(|l| l.to_string()).collect();
        if !self.partial.is_empty() {
            s.push(format!("(partial) {}", self.partial));
        }
        s.join("\n")
    }
}

/// A running (or finished) QEMU guest. Dropping it kills its QEMU.
pub struct Vm {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    launch: Launch,
    ssh_port: u16,
    overlay: PathBuf,
    log_path: PathBuf,
    /// Index of the first console line [`Vm::wait_for`] has not looked at.
    cursor: usize,
}

/// What the console thread needs to (re)start QEMU.
#[derive(Clone)]
struct Launch {
    qemu: PathBuf,
    args: Vec<OsString>,
    max_boots: u32,
}

impl Vm {
    /// Creates the overlay and starts QEMU. Returns once QEMU is spawned; use
    /// [`Vm::wait_for`] or [`Vm::wait_ssh`] to wait for the guest.
    pub fn start(opts: VmOptions) -> Result<Vm, Error> {
        std::fs::create_dir_all(&opts.dir).map_err(|e| Error::Io {
            what: format!("creating {}", opts.dir.display()),
            source: e,
        })?;
        if let Some(ign) = &opts.ignition {
            // QEMU would only say "can't load" after the overlay is made.
            std::fs::metadata(ign).map_err(|e| Error::Io {
                what: format!("Ignition config {}", ign.display()),
                source: e,
            })?;
        }
        for g in &opts.guestfwds {
            g.check()?;
        }
        let overlay = opts.dir.join(format!("{}.qcow2", opts.name));
        let log_path = opts.dir.join(format!("{}.console.log", opts.name));
        let _ = std::fs::remove_file(&overlay);
        qemu::create_overlay(&opts.image, &overlay)?;
        let ssh_port = match opts.ssh_port {
            Some(p) => p,
            None => qemu::free_port()?,
        };
        let (smp, mem) = opts.profile.resources();
        let ignition = opts.ignition.as_ref().map(|p| qemu::absolute(p));
        let spec = qemu::QemuSpec {
            binary: &opts.qemu,
            disk: &qemu::absolute(&overlay),
            ignition: ignition.as_deref(),
            smp: opts.smp.unwrap_or(smp),
            memory_mib: opts.memory_mib.unwrap_or(mem),
            ssh_port,
            restrict: opts.restrict,
            guestfwds: &opts.guestfwds,
            relay: opts.relay.as_deref(),
            extra: &opts.extra_args,
        };
        let mut log = File::create(&log_path).map_err(|e| Error::Io {
            what: format!("creating {}", log_path.display()),
            source: e,
        })?;
        let _ = writeln!(log, "# {}", spec.display());
        let launch = Launch {
            qemu: opts.qemu.clone(),
            args: spec.args(),
            max_boots: opts.max_boots.max(1),
        };
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                lines: Vec::new(),
                partial: String::new(),
                log,
                echo: opts.echo,
                boots: 0,
                state: VmState::Running,
                pid: None,
                stop: false,
                launched: Instant::now(),
                saw_reboot: false,
                saw_poweroff: false,
            }),
            changed: Condvar::new(),
        });
        let mut vm = Vm {
            shared,
            thread: None,
            launch,
            ssh_port,
            overlay,
            log_path,
            cursor: 0,
        };
        vm.spawn_supervisor();
        Ok(vm)
    }

    fn spawn_supervisor(&mut self) {
        let shared = Arc::clone(&self.shared);
        let launch = self.launch.clone();
        self.thread = Some(std::thread::spawn(move || supervise(&shared, &launch)));
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data; keep using it.
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Boots again a VM that has powered off (or ended otherwise), on the same
    /// overlay: the second boot of a provisioned machine.
    pub fn restart(&mut self) -> Result<(), Error> {
        {
            let g = self.lock();
            if g.state == VmState::Running {
                return Err(Error::Invalid {
                    what: "restart".into(),
                    reason: "the VM is still running".into(),
                });
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        {
            let mut g = self.lock();
            g.state = VmState::Running;
            g.stop = false;
        }
        self.spawn_supervisor();
        Ok(())
    }

    /// Waits for a console line matching `pattern`, looking at lines not yet
    /// examined by an earlier `wait_for` (so successive calls follow the boot
    /// in order), then at the unfinished last line (prompts). Fails early if
    /// the VM stops.
    pub fn wait_for(
        &mut self,
        pattern: impl Into<Pattern>,
        timeout: Duration,
    ) -> Result<ConsoleLine, Error> {
        let pattern = pattern.into();
        let deadline = deadline_after(timeout);
        let shared = Arc::clone(&self.shared);
        let mut g = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while self.cursor < g.lines.len() {
                let l = &g.lines[self.cursor];
                self.cursor += 1;
                if pattern.matches(&l.text) {
                    return Ok(l.clone());
                }
            }
            if !g.partial.is_empty() && pattern.matches(&g.partial) {
                return Ok(ConsoleLine {
                    boot: g.boots,
                    secs: g.launched.elapsed().as_secs_f64(),
                    text: g.partial.clone(),
                });
            }
            if g.state != VmState::Running {
                return Err(Error::Stopped {
                    what: format!("console line {pattern}"),
                    state: g.state.clone(),
                    log: self.log_path.display().to_string(),
                    tail: g.tail(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: format!("console line {pattern}"),
                    secs: timeout.as_secs(),
                    log: self.log_path.display().to_string(),
                    tail: g.tail(),
                });
            }
            g = shared
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until the VM has stopped and returns how it ended.
    pub fn wait_stopped(&self, timeout: Duration) -> Result<VmState, Error> {
        let deadline = deadline_after(timeout);
        let mut g = self.lock();
        while g.state == VmState::Running {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: "the VM to stop".into(),
                    secs: timeout.as_secs(),
                    log: self.log_path.display().to_string(),
                    tail: g.tail(),
                });
            }
            g = self
                .shared
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(g.state.clone())
    }

    /// Waits for a clean power-off; any other end is an error.
    pub fn wait_poweroff(&self, timeout: Duration) -> Result<(), Error> {
        match self.wait_stopped(timeout)? {
            VmState::PoweredOff => Ok(()),
            other => Err(Error::Stopped {
                what: "power-off".into(),
                state: other,
                log: self.log_path.display().to_string(),
                tail: self.lock().tail(),
            }),
        }
    }

    /// Waits until QEMU has been launched `n` times (boot `n` has started).
    pub fn wait_boot(&self, n: u32, timeout: Duration) -> Result<(), Error> {
        let deadline = deadline_after(timeout);
        let mut g = self.lock();
        while g.boots < n {
            let now = Instant::now();
            let what = format!("boot {n}");
            if g.state != VmState::Running {
                return Err(Error::Stopped {
                    what,
                    state: g.state.clone(),
                    log: self.log_path.display().to_string(),
                    tail: g.tail(),
                });
            }
            if now >= deadline {
                return Err(Error::Timeout {
                    what,
                    secs: timeout.as_secs(),
                    log: self.log_path.display().to_string(),
                    tail: g.tail(),
                });
            }
            g = self
                .shared
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }

    /// Retries `ssh true` as `user` until it works, then returns the handle.
    /// Fails early if the VM stops, with the console's last lines.
    pub fn wait_ssh(&self, key: &SshKey, user: &str, timeout: Duration) -> Result<Ssh, Error> {
        let ssh = Ssh::new(self.ssh_port, key, user);
        let deadline = deadline_after(timeout);
        let mut last = String::from("no attempt yet");
        loop {
            let state = self.state();
            if state != VmState::Running {
                return Err(Error::Stopped {
                    what: format!("ssh as {user} (last: {last})"),
                    state,
                    log: self.log_path.display().to_string(),
                    tail: self.lock().tail(),
                });
            }
            match ssh.run_timeout("true", Duration::from_secs(30)) {
                Ok(o) if o.success() => return Ok(ssh),
                Ok(o) => last = format!("{}: {}", o.status, o.stderr.trim()),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("ssh as {user} on port {} (last: {last})", self.ssh_port),
                    secs: timeout.as_secs(),
                    log: self.log_path.display().to_string(),
                    tail: self.lock().tail(),
                });
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Kills QEMU (only the process this VM started) and waits for the
    /// console thread. The overlay stays for inspection.
    pub fn kill(&mut self) {
        {
            let mut g = self.lock();
            g.stop = true;
            if let Some(pid) = g.pid {
                // SAFETY: kill(2) has no memory effects; `pid` is our child and
                // not yet reaped (it is cleared under this lock when reaped).
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// How the VM is doing.
    pub fn state(&self) -> VmState {
        self.lock().state.clone()
    }

    /// How many times QEMU has been launched (1 = first boot).
    pub fn boots(&self) -> u32 {
        self.lock().boots
    }

    /// Every console line so far.
    pub fn console(&self) -> Vec<ConsoleLine> {
        self.lock().lines.clone()
    }

    /// Console lines of boot `n` only.
    pub fn console_of_boot(&self, n: u32) -> Vec<ConsoleLine> {
        self.lock()
            .lines
            .iter()
            .filter(|l| l.boot == n)
            .cloned()
            .collect()
    }

    /// The host port forwarded to the guest's ssh.
    pub fn ssh_port(&self) -> u16 {
        self.ssh_port
    }

    /// The VM's qcow2 overlay.
    pub fn overlay(&self) -> &Path {
        &self.overlay
    }

    /// The console log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The console thread: runs QEMU, relaunching it after each guest reboot,
/// until the guest powers off, QEMU fails, or the VM is killed.
fn supervise(shared: &Arc<Shared>, launch: &Launch) {
    let lock = || shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let mut cmd = Command::new(&launch.qemu);
        cmd.args(&launch.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        {
            use std::os::unix::process::CommandExt;
            // If the test process dies without running Drop (SIGKILL, abort),
            // QEMU must not live on as an orphan holding ports and CPU.
            // SAFETY: prctl is async-signal-safe; nothing else runs pre-exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut g = lock();
        if g.stop {
            g.state = VmState::Killed;
            shared.changed.notify_all();
            return;
        }
        let mut child: Child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                g.state = VmState::Exited(format!(
                    "cannot start {}: {e} (is qemu-system-x86 installed?)",
                    launch.qemu.display()
                ));
                shared.changed.notify_all();
                return;
            }
        };
        g.boots += 1;
        g.pid = Some(child.id());
        g.launched = Instant::now();
        g.saw_reboot = false;
        g.saw_poweroff = false;
        let boot = g.boots;
        let _ = writeln!(
            g.log,
            "# boot {boot}: QEMU pid {} started{}",
            child.id(),
            if boot > 1 { " again" } else { "" }
        );
        shared.changed.notify_all();
        drop(g);

        let stderr = child.stderr.take().map(|e| {
            let shared = Arc::clone(shared);
            std::thread::spawn(move || {
                for line in BufReader::new(e).split(b'\n').map_while(Result::ok) {
                    let text = console::clean(&line);
                    if !text.is_empty() {
                        let mut g = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
                        g.push(format!("qemu: {text}"));
                        shared.changed.notify_all();
                    }
                }
            })
        });
        if let Some(mut out) = child.stdout.take() {
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending: Vec<u8> = Vec::new();
            loop {
                let n = match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                let mut g = lock();
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    g.push(console::clean(&line));
                }
                g.partial = console::clean(&pending);
                shared.changed.notify_all();
            }
            if !pending.is_empty() {
                let mut g = lock();
                g.push(console::clean(&pending));
                g.partial.clear();
            }
        }
        if let Some(t) = stderr {
            let _ = t.join();
        }
        // Reap under the lock so that kill() never signals a reaped PID.
        let status = loop {
            let mut g = lock();
            match child.try_wait() {
                Ok(Some(s)) => {
                    g.pid = None;
                    break Some(s);
                }
                Ok(None) => {}
                Err(_) => {
                    g.pid = None;
                    break None;
                }
            }
            drop(g);
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut g = lock();
        g.partial.clear();
        let relaunch = !g.stop && !g.saw_poweroff && g.saw_reboot && g.boots < launch.max_boots;
        if !relaunch {
            g.state = if g.saw_poweroff {
                VmState::PoweredOff
            } else if g.stop {
                VmState::Killed
            } else if g.saw_reboot {
                VmState::Exited(format!("rebooted {} times, the limit", g.boots))
            } else {
                VmState::Exited(match status {
                    Some(s) => format!("QEMU ended without a guest power-off: {s}"),
                    None => "QEMU's status is unknown".into(),
                })
            };
            shared.changed.notify_all();
            return;
        }
        let _ = writeln!(g.log, "# boot {boot}: guest rebooted; relaunching QEMU");
    }
}

#[cfg(test)]
mod tests {
    //! The supervisor's state machine, driven by small shell scripts standing in
    //! for QEMU (the real QEMU needs a bootable image: see tests/e2e.rs).
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A VM whose "QEMU" is `script` (a shell script body; `$N` is the launch number).
    fn fake_vm(dir: &Path, script: &str, max_boots: u32) -> Vm {
        let base = dir.join("base.qcow2");
        qemu::run_tool(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&base)
                .arg("1M"),
            "qemu-img create",
        )
        .unwrap();
        let counter = dir.join("launches");
        let exe = dir.join("fake-qemu");
        std::fs::write(
            &exe,
            format!(
                "#!/bin/sh\nN=$(( $(cat {c} 2>/dev/null || echo 0) + 1 )); echo $N > {c}\n{script}\n",
                c = counter.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut o = VmOptions::new(&base, dir);
        o.qemu = exe;
        o.max_boots = max_boots;
        Vm::start(o).unwrap()
    }

    const T: Duration = Duration::from_secs(20);

    #[test]
    fn reboot_relaunches_on_the_same_overlay_and_power_down_ends() {
        let d = tempfile::tempdir().unwrap();
        let mut vm = fake_vm(
            d.path(),
            r#"echo "boot $N: $*"
if [ $N -lt 3 ]; then echo "reboot: Restarting system"; exit 0; fi
printf 'login: '; sleep 1; echo; echo "reboot: Power down""#,
            8,
        );
        let l = vm.wait_for("login:", T).unwrap();
        assert_eq!(l.boot, 3, "prompt without newline seen, in boot 3");
        vm.wait_poweroff(T).unwrap();
        assert_eq!(vm.boots(), 3);
        let first = vm.wait_for(Pattern::regex("^boot 1: ").unwrap(), T);
        assert!(
            first.is_err(),
            "wait_for does not go back before its cursor"
        );
        let lines = vm.console();
        assert_eq!(lines[0].boot, 1);
        assert!(lines[0].text.contains("-no-reboot"), "{}", lines[0].text);
        assert!(lines[0].text.contains(&vm.overlay().display().to_string()));
        let log = std::fs::read_to_string(vm.log_path()).unwrap();
        assert_eq!(log.matches("reboot: Restarting system").count(), 2, "{log}");
        assert!(log.contains("# boot 3: QEMU pid"), "{log}");
    }

    #[test]
    fn a_qemu_failure_is_reported_with_its_stderr() {
        let d = tempfile::tempdir().unwrap();
        let mut vm = fake_vm(d.path(), "echo 'could not open disk' >&2; exit 1", 8);
        let e = vm.wait_for("never printed", T).unwrap_err().to_string();
        assert!(
            e.contains("exited (QEMU ended without a guest power-off"),
            "{e}"
        );
        assert!(e.contains("qemu: could not open disk"), "{e}");
        assert!(matches!(vm.state(), VmState::Exited(_)));
        assert!(vm.wait_poweroff(T).is_err());
    }

    #[test]
    fn a_reboot_loop_stops_at_max_boots() {
        let d = tempfile::tempdir().unwrap();
        let vm = fake_vm(d.path(), "echo 'reboot: Restarting system'", 3);
        let s = vm.wait_stopped(T).unwrap();
        assert_eq!(s, VmState::Exited("rebooted 3 times, the limit".into()));
        assert_eq!(vm.boots(), 3);
    }

    #[test]
    fn kill_stops_a_running_vm_and_restart_boots_it_again() {
        let d = tempfile::tempdir().unwrap();
        let mut vm = fake_vm(d.path(), "echo up $N; exec sleep 60", 8);
        vm.wait_for("up 1", T).unwrap();
        let t = Instant::now();
        vm.kill();
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(vm.state(), VmState::Killed);
        vm.restart().unwrap();
        let l = vm.wait_for("up 2", T).unwrap();
        assert_eq!((l.boot, vm.boots()), (2, 2));
        assert!(vm.restart().is_err(), "cannot restart a running VM");
    }

    #[test]
    fn timeouts_quote_the_console() {
        let d = tempfile::tempdir().unwrap();
        let mut vm = fake_vm(d.path(), "echo 'Booting from Hard Disk'; exec sleep 60", 8);
        let e = vm
            .wait_for("login:", Duration::from_millis(500))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("timed out after 0 s waiting for console line \"login:\""),
            "{e}"
        );
        assert!(e.contains("Booting from Hard Disk"), "{e}");
    }
}
