//! What `/init` does as pid 1 of the initramfs (boot contract, issue #9):
//!
//! 1. mount `/proc`, `/sys`, `/dev` (devtmpfs) and `/run` (tmpfs);
//! 2. load the modules of [`MODULE_LIST`] with `finit_module`;
//! 3. wait up to 60 s for the root device (`root=LABEL=x`, `UUID=x` or a
//!    path), found by reading ext4 superblocks of `/sys/class/block` devices
//!    (there is no udev), and mount it on `/sysroot`;
//! 4. prepare-root (sysroot crate): `/` made rprivate, the `ostree=`
//!    deployment moved onto `/sysroot` with its `var`, read-only `usr` and the
//!    physical root at `sysroot/`;
//! 5. with `ignition.firstboot` on the command line: `/var` populated with
//!    the root's systemd-tmpfiles, Ignition `fetch` and
//!    `files` on `/sysroot` (platform `ignition.platform.id`), then the
//!    first-boot stamp `ignition.firstboot` is removed from the `boot`
//!    filesystem; a failure stops the boot here, with the error on the console;
//! 6. switch root into `/sysroot` (where `/dev`, `/proc`, `/sys`, `/run` are
//!    bound since step 4) and exec `/sbin/init` (or `init=`).
//!
//! Every step prints a `ferrocore-init: STEP` marker to `/dev/kmsg`. Pid 1
//! must never exit (the kernel panics), so any failure ends in
//! [`halt`], which prints the error and sleeps forever.
//!
//! The pieces that do not need to be pid 1 ([`Cmdline`], [`fs_id`],
//! [`find_device`]) are public and tested on image files.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Error, Result, MODULE_LIST};

/// How long to wait for the root device to show up.
pub const ROOT_WAIT: Duration = Duration::from_secs(60);
/// The first-boot stamp on the boot filesystem (what GRUB tests).
pub const FIRSTBOOT_STAMP: &str = "ignition.firstboot";

/// What `/init` takes from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    /// `root=`: `LABEL=x`, `UUID=x` or a device path.
    pub root: Option<String>,
    /// `rootflags=`: mount data for the root filesystem.
    pub rootflags: Option<String>,
    /// `ostree=`: the deployment to boot.
    pub ostree: Option<String>,
    /// `ignition.firstboot` present: provision this boot.
    pub firstboot: bool,
    /// `ignition.platform.id=` (default `metal`).
    pub platform: String,
    /// `init=` (default `/sbin/init`).
    pub init: String,
}

impl Cmdline {
    /// Parses a kernel command line (quotes as the kernel handles them).
    pub fn parse(s: &str) -> Cmdline {
        let k = sysroot::KernelArgs::parse(s);
        let val = |key: &str| match k.get(key) {
            Some(Some(v)) if !v.is_empty() => Some(v.to_string()),
            _ => None,
        };
        Cmdline {
            root: val("root"),
            rootflags: val("rootflags"),
            ostree: val("ostree"),
            firstboot: k.get("ignition.firstboot").is_some(),
            platform: val("ignition.platform.id").unwrap_or_else(|| "metal".into()),
            init: val("init").unwrap_or_else(|| "/sbin/init".into()),
        }
    }
}

/// Identity of an ext2/3/4 filesystem, from its superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsId {
    /// Volume label (`mkfs.ext4 -L`), possibly empty.
    pub label: String,
    /// Filesystem UUID, lower-case `8-4-4-4-12`.
    pub uuid: String,
}

/// Reads the ext2/3/4 superblock of `dev` (a block device or image file);
/// `None` when it holds no ext filesystem (or is too short).
pub fn fs_id(dev: &Path) -> io::Result<Option<FsId>> {
    let mut f = File::open(dev)?;
    // The superblock is at byte 1024; magic 0xEF53 at 0x38, uuid at 0x68,
    // volume name (16 bytes, NUL padded) at 0x78.
    let mut sb = [0u8; 0x88];
    f.seek(SeekFrom::Start(1024))?;
    match f.read_exact(&mut sb) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
        return Ok(None);
    }
    let label = &sb[0x78..0x88];
    let label = &label[..label.iter().position(|&b| b == 0).unwrap_or(16)];
    let u = &sb[0x68..0x78];
    let hex =
        |r: std::ops::Range<usize>| u[r].iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok(Some(FsId {
        label: String::from_utf8_lossy(label).into_owned(),
        uuid: format!(
            "{}-{}-{}-{}-{}",
            hex(0..4),
            hex(4..6),
            hex(6..8),
            hex(8..10),
            hex(10..16)
        ),
    }))
}

/// The device node for `spec` (`LABEL=x`, `UUID=x` or a path): devices are
/// the entries of `class_block` (`/sys/class/block`), their nodes
/// `dev_dir/NAME`. Unreadable devices (an empty CD drive) are skipped.
pub fn find_device(spec: &str, class_block: &Path, dev_dir: &Path) -> Option<PathBuf> {
    let want = |id: &FsId| match spec.split_once('=') {
        Some(("LABEL", l)) => id.label == l,
        Some(("UUID", u)) => id.uuid.eq_ignore_ascii_case(u),
        _ => false,
    };
    if !spec.starts_with("LABEL=") && !spec.starts_with("UUID=") {
        let p = PathBuf::from(spec);
        return p.exists().then_some(p);
    }
    let mut names: Vec<_> = std::fs::read_dir(class_block)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    // Whole disks before their partitions is irrelevant; a stable order
    // makes a duplicated label resolve the same way every boot.
    names.sort();
    names
        .into_iter()
        .map(|n| dev_dir.join(n))
        .find(|p| matches!(fs_id(p), Ok(Some(id)) if want(&id)))
}

/// Polls [`find_device`] until `timeout`.
pub fn wait_for_device(spec: &str, timeout: Duration) -> Option<PathBuf> {
    let start = Instant::now();
    loop {
        if let Some(p) = find_device(spec, Path::new("/sys/class/block"), Path::new("/dev")) {
            return Some(p);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::Boot(format!("path contains NUL: {}", p.display())))
}

/// `mount(2)`; `fstype` and `data` may be empty.
pub fn mount(
    src: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<()> {
    let s = CString::new(src).map_err(|_| Error::Boot("source contains NUL".into()))?;
    let t = cstr(target)?;
    let ty = CString::new(fstype).map_err(|_| Error::Boot("fstype contains NUL".into()))?;
    let d = CString::new(data).map_err(|_| Error::Boot("data contains NUL".into()))?;
    // SAFETY: all pointers are valid NUL-terminated strings (or NULL) that
    // outlive the call.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            if fstype.is_empty() {
                std::ptr::null()
            } else {
                ty.as_ptr()
            },
            flags,
            if data.is_empty() {
                std::ptr::null()
            } else {
                d.as_ptr().cast()
            },
        )
    };
    if r != 0 {
        return Err(Error::Boot(format!(
            "mount {src} on {} (type {fstype:?}): {}",
            target.display(),
            io::Error::last_os_error()
        )));
    }
    Ok(())
}

fn umount(target: &Path) -> Result<()> {
    let t = cstr(target)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(t.as_ptr(), 0) } != 0 {
        return Err(Error::Boot(format!(
            "umount {}: {}",
            target.display(),
            io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Loads one module file with `finit_module(2)`; already loaded is success.
pub fn load_module(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let compressed = [".xz", ".zst", ".gz"]
        .iter()
        .any(|s| path.as_os_str().as_bytes().ends_with(s.as_bytes()));
    // MODULE_INIT_COMPRESSED_FILE: the kernel decompresses (CONFIG_MODULE_DECOMPRESS).
    let flags: libc::c_int = if compressed { 4 } else { 0 };
    let empty = c"";
    // SAFETY: a valid open fd and a valid (empty) parameter string.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), empty.as_ptr(), flags) };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(Error::io(path, e));
        }
    }
    Ok(())
}

/// Boot-time log: `/dev/kmsg` once devtmpfs is up (reliable even when a
/// getty hangs up the serial console later), plus the console on stderr.
struct Log {
    kmsg: Option<File>,
}

impl Log {
    fn open(&mut self) {
        self.kmsg = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .ok();
    }

    /// `level` is the syslog priority (`5` notice, `2` critical).
    fn line(&mut self, level: u8, msg: &str) {
        for l in msg.lines() {
            if let Some(k) = &mut self.kmsg {
                // One write per record: kmsg takes each write as one line.
                let _ = k.write_all(format!("<{level}>{l}\n").as_bytes());
            } else {
                eprintln!("{l}");
            }
        }
    }

    fn marker(&mut self, step: &str) {
        self.line(5, &format!("ferrocore-init: {step}"));
    }
}

/// Prints `msg` as critical to kmsg and the console, then sleeps forever:
/// pid 1 must not exit, and a half-provisioned machine must not boot on.
pub fn halt(msg: &str) -> ! {
    let mut log = Log { kmsg: None };
    log.open();
    log.line(2, msg);
    if log.kmsg.is_some() {
        // kmsg reaches the console only at its loglevel; say it there too.
        if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
            let _ = writeln!(c, "{msg}");
        } else {
            eprintln!("{msg}");
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Runs `/init` as pid 1: returns only by exec'ing the real init; any
/// failure [`halt`]s.
pub fn run() -> ! {
    let mut log = Log { kmsg: None };
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| boot(&mut log)));
    match res {
        Ok(Err(Stop::Ignition(e))) => halt(&format!("ignition: {e}")),
        Ok(Err(Stop::Boot(e))) => halt(&format!("ferrocore-init: error: {e}")),
        Ok(Ok(never)) => match never {},
        Err(_) => halt("ferrocore-init: error: panicked"),
    }
}

enum Stop {
    Boot(Error),
    Ignition(String),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Boot(e)
    }
}

enum Never {}

fn uptime() -> String {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_default()
}

fn boot(log: &mut Log) -> std::result::Result<Never, Stop> {
    // The kernel starts init with no PATH; the tools Ignition runs in the
    // target root are found through this one.
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (src, dir, ty, flags) in [
        (
            "proc",
            "/proc",
            "proc",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        ),
        (
            "sysfs",
            "/sys",
            "sysfs",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        ),
        ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID),
        ("tmpfs", "/run", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV),
    ] {
        let data = if ty == "tmpfs" { "mode=0755" } else { "" };
        mount(src, Path::new(dir), ty, flags, data)?;
    }
    log.open();
    log.marker(&format!("start (uptime {})", uptime()));

    let list = Path::new("/").join(MODULE_LIST);
    let list = std::fs::read_to_string(&list).map_err(|e| Error::io(&list, e))?;
    let (mut loaded, mut failed) = (0, Vec::new());
    for m in list.lines().filter(|l| !l.is_empty()) {
        match load_module(Path::new(m)) {
            Ok(()) => loaded += 1,
            // e.g. crc32c-intel on a CPU without SSE4.2: the generic one
            // is in the list too, so go on and let the mount tell.
            Err(e) => failed.push(e.to_string()),
        }
    }
    log.marker(&format!("modules loaded {loaded}, failed {}", failed.len()));
    for f in &failed {
        log.line(4, &format!("ferrocore-init: module: {f}"));
    }

    let text = std::fs::read_to_string("/proc/cmdline")
        .map_err(|e| Error::io(Path::new("/proc/cmdline"), e))?;
    let cmd = Cmdline::parse(&text);
    let spec = cmd
        .root
        .clone()
        .ok_or_else(|| Error::Boot("no root= on the kernel command line".into()))?;
    let dev = wait_for_device(&spec, ROOT_WAIT).ok_or_else(|| {
        Error::Boot(format!(
            "root device {spec} not found after {} s",
            ROOT_WAIT.as_secs()
        ))
    })?;
    log.marker(&format!("root {spec} is {}", dev.display()));
    let sysroot = Path::new("/sysroot");
    mount(
        &dev.to_string_lossy(),
        sysroot,
        "ext4",
        0,
        cmd.rootflags.as_deref().unwrap_or(""),
    )?;
    log.marker("mounted /sysroot");

    if cmd.ostree.is_some() {
        let p = sysroot::prepare_root::prepare_root(&sysroot::prepare_root::PrepareRootOptions {
            sysroot: sysroot.to_path_buf(),
            cmdline: Some(text.clone()),
            run_dir: Some(PathBuf::from("/run")),
        })
        .map_err(|e| Error::Boot(format!("prepare-root: {e}")))?;
        log.marker(&format!("prepare-root {}", p.deployment.display()));
    } else {
        // Still what prepare-root does first: moving mounts out of a shared
        // tree fails.
        mount(
            "none",
            Path::new("/"),
            "",
            libc::MS_REC | libc::MS_PRIVATE,
            "",
        )?;
        log.marker("no ostree=: booting the physical root");
    }

    // The API filesystems go into the new root now, not just before the
    // switch: tools run chrooted there during provisioning need them too.
    // Bind (not move) so that this process keeps its own /proc, /sys, /dev.
    for d in ["dev", "proc", "sys", "run"] {
        mount(
            &format!("/{d}"),
            &sysroot.join(d),
            "",
            libc::MS_BIND | libc::MS_REC,
            "",
        )?;
    }

    if cmd.firstboot {
        populate_var(sysroot, log);
        log.marker(&format!("ignition (platform {})", cmd.platform));
        ignition(sysroot, &cmd.platform, log).map_err(Stop::Ignition)?;
        log.marker("ignition done");
        match remove_firstboot_stamp() {
            Ok(Some(dev)) => {
                log.marker(&format!("removed {FIRSTBOOT_STAMP} from {}", dev.display()))
            }
            Ok(None) => log.line(
                4,
                "ferrocore-init: no LABEL=boot filesystem: first-boot stamp not removed",
            ),
            Err(e) => return Err(Stop::Boot(e)),
        }
    }

    let init = cmd.init.clone();
    let target = sysroot.join(init.trim_start_matches('/'));
    // A symlink (/sbin/init -> ../lib/systemd/systemd) resolves inside
    // the new root only after the switch: check without following it.
    if std::fs::symlink_metadata(&target).is_err() {
        return Err(Stop::Boot(Error::Boot(format!(
            "{init} not found in the new root"
        ))));
    }
    log.marker(&format!("switch-root (uptime {})", uptime()));
    sysroot::prepare_root::switch_root(sysroot)
        .map_err(|e| Error::Boot(format!("switch-root: {e}")))?;
    use std::os::unix::process::CommandExt;
    let e = std::process::Command::new(&init).arg0(&init).exec();
    Err(Stop::Boot(Error::Boot(format!("exec {init}: {e}"))))
}

/// `/var` of a fresh deployment is empty until systemd-tmpfiles runs in the
/// booted system, but provisioning writes into it (`/home -> var/home`,
/// `/root -> var/roothome`): create those directories first with the root's
/// own systemd-tmpfiles, as Fedora CoreOS's `ignition-ostree-populate-var`
/// does (same prefixes). Failures are logged; Ignition reports what it then
/// cannot write.
fn populate_var(root: &Path, log: &mut Log) {
    let mut c = std::process::Command::new("systemd-tmpfiles");
    c.args(["--create", "--boot"]);
    for sub in [
        "lib", "log", "home", "roothome", "opt", "srv", "usrlocal", "mnt", "media",
    ] {
        c.arg(format!("--prefix=/var/{sub}"));
    }
    let res = chroot_output(&mut c, root);
    match res {
        Ok(o) if o.status.success() => log.marker("populated /var"),
        Ok(o) => log.line(
            4,
            &format!(
                "ferrocore-init: systemd-tmpfiles for /var: {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        ),
        Err(e) => log.line(
            4,
            &format!("ferrocore-init: systemd-tmpfiles for /var: {e}"),
        ),
    }
}

/// Makes `c` chroot into `root` (and chdir to its `/`) before exec. pid 1
/// stays outside that chroot, so systemd's tools (udevd, udevadm) would take
/// themselves for chrooted and do nothing without `SYSTEMD_IGNORE_CHROOT`.
fn chroot_before_exec(c: &mut std::process::Command, root: &Path) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    c.env("SYSTEMD_IGNORE_CHROOT", "1");
    let dir = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("root path contains NUL"))?;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if libc::chroot(dir.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Ignition's initramfs stages in upstream's order: fetch, then — when the
/// config touches devices — disks and mount, files, umount; otherwise files
/// alone. Every tool runs from the root, chrooted (the initramfs has none).
///
/// Unlike Fedora CoreOS, whose disks stage runs before the root is mounted,
/// ours runs after: the tools live in the root. So does the root's udev,
/// started only for configs with devices: without it there are no
/// `/dev/disk/by-*` links, which configs name devices by.
fn ignition(root: &Path, platform: &str, log: &mut Log) -> std::result::Result<(), String> {
    use ignition_engine::Stage;
    let mut opts = ignition_engine::Options::new(platform, root);
    opts.tools_in_root = true;
    let run = |stage: Stage| -> std::result::Result<(), String> {
        ignition_engine::run_stage(&opts, stage)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    run(Stage::Fetch)?;
    let needs = ignition_engine::device_needs(&opts).map_err(|e| e.to_string())?;
    let Some(needs) = needs else {
        return run(Stage::Files);
    };
    load_root_modules(root, &needs.kernel_modules, log);
    let udev = Udev::start(root).map_err(|e| format!("starting udev: {e}"))?;
    log.marker("udev running");
    let res = (|| {
        for stage in [Stage::Disks, Stage::Mount, Stage::Files, Stage::Umount] {
            run(stage)?;
            log.marker(&format!("ignition {} done", stage.name()));
        }
        Ok(())
    })();
    udev.stop(log);
    res
}

/// Loads the config's RAID, dm-crypt and filesystem modules with the root's
/// `modprobe` (the initramfs carries only what mounting the root takes).
/// Failures are logged: the stage that needed the module reports the error.
fn load_root_modules(root: &Path, modules: &[String], log: &mut Log) {
    if modules.is_empty() {
        return;
    }
    let mut c = std::process::Command::new("modprobe");
    c.arg("-a").args(modules);
    match chroot_output(&mut c, root) {
        Ok(o) if o.status.success() => {
            log.marker(&format!("loaded {} from the root", modules.join(" ")))
        }
        Ok(o) => log.line(
            4,
            &format!(
                "ferrocore-init: modprobe {}: {}: {}",
                modules.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        ),
        Err(e) => log.line(4, &format!("ferrocore-init: modprobe: {e}")),
    }
}

/// The root's `systemd-udevd`, run chrooted while the device stages need
/// `/dev/disk/by-*` links and device events, then stopped before the switch
/// (the booted system starts its own; `/run/udev` is kept, as dracut does).
struct Udev {
    child: std::process::Child,
    root: PathBuf,
}

impl Udev {
    fn start(root: &Path) -> io::Result<Udev> {
        let bin = ["usr/lib/systemd/systemd-udevd", "lib/systemd/systemd-udevd"]
            .into_iter()
            // A link to udevadm, absolute: it resolves only inside the root.
            .find(|b| std::fs::symlink_metadata(root.join(b)).is_ok())
            .ok_or_else(|| io::Error::other("no systemd-udevd in the root"))?;
        let mut c = std::process::Command::new(Path::new("/").join(bin));
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        chroot_before_exec(&mut c, root)?;
        let udev = Udev {
            child: c.spawn()?,
            root: root.to_path_buf(),
        };
        // Replay the kernel's events for what exists already, as
        // systemd-udev-trigger does, and wait until they are handled.
        for args in [
            &["trigger", "--type=subsystems", "--action=add"][..],
            &["trigger", "--type=devices", "--action=add"],
            &["settle", "--timeout=120"],
        ] {
            let mut c = std::process::Command::new("udevadm");
            c.args(args);
            let o = chroot_output(&mut c, root)?;
            if !o.status.success() {
                return Err(io::Error::other(format!(
                    "udevadm {}: {}: {}",
                    args.join(" "),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                )));
            }
        }
        Ok(udev)
    }

    fn stop(mut self, log: &mut Log) {
        let mut c = std::process::Command::new("udevadm");
        c.args(["control", "--exit"]);
        let asked = chroot_output(&mut c, &self.root).is_ok_and(|o| o.status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while asked && std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                log.marker("udev stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        log.line(4, "ferrocore-init: udev did not exit when asked: killed");
    }
}

/// The kernel's module loader while `/init` runs (`/sbin/modprobe` in the
/// initramfs is a link to it): dm-crypt's ciphers and cryptsetup's AF_ALG
/// sockets make the kernel load modules on demand, and only the root has
/// `modprobe` and the full module tree. Runs the root's, chrooted.
pub fn modprobe_helper(args: &[std::ffi::OsString]) -> i32 {
    use std::os::unix::process::CommandExt;
    let root = Path::new("/sysroot");
    // Links there (to kmod) are absolute: test the link, not its target.
    let present = |p: &str| std::fs::symlink_metadata(root.join(p)).is_ok();
    if !present("usr/sbin/modprobe") && !present("sbin/modprobe") {
        eprintln!("modprobe: no root mounted at /sysroot yet");
        return 1;
    }
    let mut c = std::process::Command::new("/sbin/modprobe");
    c.arg0("modprobe").args(args.iter().skip(1));
    if let Err(e) = chroot_before_exec(&mut c, root) {
        eprintln!("modprobe: {e}");
        return 1;
    }
    let e = c.exec();
    eprintln!("modprobe: exec in {}: {e}", root.display());
    1
}

/// Runs `c` chrooted into `root` and collects its output.
fn chroot_output(c: &mut std::process::Command, root: &Path) -> io::Result<std::process::Output> {
    chroot_before_exec(c, root)?;
    c.output()
}

/// Mounts `LABEL=boot`, removes the stamp durably, unmounts. `None` when
/// no such filesystem exists (a direct kernel boot of a root-only disk).
fn remove_firstboot_stamp() -> Result<Option<PathBuf>> {
    let Some(dev) = find_device(
        "LABEL=boot",
        Path::new("/sys/class/block"),
        Path::new("/dev"),
    ) else {
        return Ok(None);
    };
    let mnt = Path::new("/boot");
    mount(&dev.to_string_lossy(), mnt, "ext4", 0, "")?;
    let res = (|| {
        let stamp = mnt.join(FIRSTBOOT_STAMP);
        match std::fs::remove_file(&stamp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&stamp, e)),
        }
        // The unlink must survive a crash right after: a second provisioning
        // run on a provisioned machine is what the stamp prevents.
        File::open(mnt)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(mnt, e))
    })();
    let un = umount(mnt);
    res.and(un).map(|()| Some(dev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn cmdline() {
        let c = Cmdline::parse(
            "BOOT_IMAGE=/vmlinuz root=LABEL=root rw console=ttyS0 \
             ostree=/ostree/boot.1/ferrocore/abc/0 ignition.firstboot ignition.platform.id=qemu\n",
        );
        assert_eq!(c.root.as_deref(), Some("LABEL=root"));
        assert_eq!(c.ostree.as_deref(), Some("/ostree/boot.1/ferrocore/abc/0"));
        assert!(c.firstboot);
        assert_eq!(c.platform, "qemu");
        assert_eq!(c.init, "/sbin/init");
        let d = Cmdline::parse("root=/dev/vda4 init=/bin/sh rootflags=noatime");
        assert_eq!(d.root.as_deref(), Some("/dev/vda4"));
        assert_eq!(d.rootflags.as_deref(), Some("noatime"));
        assert!(!d.firstboot);
        assert_eq!(d.platform, "metal");
        assert_eq!(d.init, "/bin/sh");
        assert_eq!(Cmdline::parse("quiet").root, None);
    }

    fn mkfs(img: &Path, label: &str) {
        std::fs::File::create(img)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let out = Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-L",
                label,
                "-U",
                "0fa1c2d3-0000-4000-8000-00000000abcd",
            ])
            .arg(img)
            .output()
            .expect("mkfs.ext4 (apt e2fsprogs)");
        assert!(out.status.success(), "{out:?}");
    }

    #[test]
    fn reads_ext4_labels_and_finds_devices() {
        let t = tempfile::tempdir().unwrap();
        let (class, dev) = (t.path().join("class"), t.path().join("dev"));
        std::fs::create_dir_all(&class).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        mkfs(&dev.join("vda4"), "root");
        mkfs(&dev.join("vda3"), "boot");
        std::fs::write(dev.join("vda1"), vec![0u8; 4096]).unwrap();
        std::fs::write(dev.join("sr0"), b"short").unwrap();
        for n in ["vda1", "vda3", "vda4", "sr0", "ghost"] {
            std::fs::create_dir(class.join(n)).unwrap();
        }
        let id = fs_id(&dev.join("vda4")).unwrap().unwrap();
        assert_eq!(id.label, "root");
        assert_eq!(id.uuid, "0fa1c2d3-0000-4000-8000-00000000abcd");
        assert_eq!(fs_id(&dev.join("vda1")).unwrap(), None);
        assert_eq!(fs_id(&dev.join("sr0")).unwrap(), None);
        assert_eq!(
            find_device("LABEL=root", &class, &dev),
            Some(dev.join("vda4"))
        );
        assert_eq!(
            find_device("LABEL=boot", &class, &dev),
            Some(dev.join("vda3"))
        );
        assert_eq!(find_device("LABEL=nope", &class, &dev), None);
        assert_eq!(
            find_device("UUID=0FA1C2D3-0000-4000-8000-00000000ABCD", &class, &dev),
            Some(dev.join("vda3"))
        );
        let p = dev.join("vda4");
        assert_eq!(
            find_device(p.to_str().unwrap(), &class, &dev),
            Some(p.clone())
        );
        assert_eq!(find_device("/dev/nonexistent-xyz", &class, &dev), None);
    }

    #[test]
    fn missing_module_files_are_reported() {
        let e = load_module(Path::new("/nonexistent/x.ko"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/x.ko"), "{e}");
    }
}
