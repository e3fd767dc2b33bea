//! Making a new boot configuration durable before it is committed
//! (upstream `full_system_sync` and `fsfreeze_thaw_cycle` in
//! `ostree-sysroot-deploy.c`).
//!
//! `syncfs` alone is not enough for `/boot`: on XFS it leaves metadata in
//! the journal, which GRUB cannot read, so a crash right after the swap
//! could leave a boot loader that sees no kernel. A freeze/thaw cycle
//! (`FIFREEZE`/`FITHAW`) checkpoints the journal. A filesystem frozen by a
//! process that then dies blocks every writer on it, so a forked watchdog
//! thaws it if the caller does not report completion in time or vanishes.

use crate::fsutil::{self, io_at};
use crate::{Error, Result};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `_IOWR('X', 119, int)` and `_IOWR('X', 120, int)` from linux/fs.h.
const FIFREEZE: libc::c_ulong = 0xC004_5877;
const FITHAW: libc::c_ulong = 0xC004_5878;

/// How long the watchdog leaves the filesystem frozen at most. The test
/// hook uses upstream's short value to keep the suite fast.
const WATCHDOG_MS: libc::c_int = 30_000;
const WATCHDOG_TEST_MS: libc::c_int = 1_000;

/// The error prefix upstream's `admin-test.sh` looks for.
const CONTEXT: &str = "During fsfreeze-thaw";

/// Flushes the sysroot's filesystem, then `/boot` with a freeze/thaw cycle
/// (or `syncfs` where freezing is not possible or not ours to do).
pub(crate) fn full_system_sync(sysroot: &Path, boot: &Path) -> Result<()> {
    fsutil::syncfs(sysroot)?;
    let freeze = owns_filesystem(boot, sysroot)?;
    freeze_thaw_cycle(boot, freeze, fsutil::debug_flag("test-fifreeze"))
}

/// Whether `boot` sits on a filesystem that belongs to this sysroot: `boot`
/// is itself mounted, or it is on the sysroot's filesystem and the sysroot
/// is a mount root (`/`, `/sysroot`, a mounted disk image). A directory
/// sysroot inside a larger filesystem (tests, image staging dirs) is not:
/// freezing would stall every unrelated writer on the host, so it only gets
/// `syncfs`. Upstream freezes unconditionally; it assumes a real sysroot.
fn owns_filesystem(boot: &Path, sysroot: &Path) -> Result<bool> {
    if is_mount_root(boot)? {
        return Ok(true);
    }
    Ok(dev_of(boot)? == dev_of(sysroot)? && is_mount_root(sysroot)?)
}

fn dev_ino(p: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p)
        .map(|m| (m.dev(), m.ino()))
        .map_err(io_at("stat", p))
}

fn dev_of(p: &Path) -> Result<u64> {
    dev_ino(p).map(|(d, _)| d)
}

/// Whether `p` is the root of a mount: `statx`'s `STATX_ATTR_MOUNT_ROOT`
/// where the kernel reports it (≥ 5.8, which also catches bind mounts),
/// else a device change between `p` and its parent (or `p` being its own
/// parent: `/`).
fn is_mount_root(p: &Path) -> Result<bool> {
    let c = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("path contains NUL: {}", p.display())))?;
    // SAFETY: statx fills a zeroed, properly sized struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            0,
            libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    let attr = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if r == 0 && stx.stx_attributes_mask & attr != 0 {
        return Ok(stx.stx_attributes & attr != 0);
    }
    let (here, up) = (dev_ino(p)?, dev_ino(&p.join(".."))?);
    Ok(here.0 != up.0 || here == up)
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn os_err(what: &str) -> Error {
    let e = io::Error::last_os_error();
    Error::io(CONTEXT, io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Sends or receives the one-byte messages of the watchdog protocol.
fn send(fd: RawFd, what: &str) -> Result<()> {
    let c = b'!';
    // SAFETY: one byte from a valid buffer.
    if unsafe { libc::write(fd, (&c as *const u8).cast(), 1) } != 1 {
        return Err(os_err(what));
    }
    Ok(())
}

fn recv(fd: RawFd, what: &str) -> Result<()> {
    let mut c = 0u8;
    loop {
        // SAFETY: one byte into a valid buffer.
        let n = unsafe { libc::read(fd, (&mut c as *mut u8).cast(), 1) };
        match n {
            1 => return Ok(()),
            n if n < 0 && errno() == libc::EINTR => continue,
            n if n < 0 => return Err(os_err(what)),
            _ => {
                return Err(Error::io(
                    CONTEXT,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{what}: watchdog exited"),
                    ),
                ))
            }
        }
    }
}

/// Upstream's protocol: the watchdog says it is ready (signals masked), we
/// say we start, freeze, thaw, and report completion. Without completion
/// within the timeout, or when we die (the socket hangs up), it thaws.
///
/// `test` is upstream's `OSTREE_SYSROOT_DEBUG=test-fifreeze` hook: the
/// watchdog runs and times out, nothing is frozen, and the operation fails
/// with the message `admin-test.sh` expects.
fn freeze_thaw_cycle(boot: &Path, freeze: bool, test: bool) -> Result<()> {
    let dir = File::open(boot).map_err(io_at("opening", boot))?;
    if !freeze && !test {
        return fsutil::syncfs(boot);
    }
    let mut fds = [0 as RawFd; 2];
    // SAFETY: valid out-array of two fds.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(os_err("socketpair"));
    }
    // SAFETY: fresh fds owned by nobody else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child only makes async-signal-safe calls (watchdog()).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(os_err("fork"));
    }
    if pid == 0 {
        // SAFETY: we are the forked child.
        unsafe { watchdog(theirs.as_raw_fd(), ours.as_raw_fd(), dir.as_raw_fd(), test) }
    }
    drop(theirs);
    let sock = ours.as_raw_fd();
    if !test {
        // The child forks the detached watchdog and exits at once; reap it
        // so it does not linger as a zombie.
        wait_ok(pid)?;
    }
    recv(sock, "read(watchdog init)")?;
    send(sock, "write(watchdog start)")?;
    if test {
        wait_ok(pid)?;
        return Err(Error::io(
            CONTEXT,
            io::Error::other("aborting due to test-fifreeze"),
        ));
    }
    // SAFETY: valid directory fd; the argument is ignored by the kernel.
    if unsafe { libc::ioctl(dir.as_raw_fd(), FIFREEZE as _, 0) } != 0 {
        // Unsupported (tmpfs, overlayfs), not permitted (unprivileged) or
        // already frozen by someone else: a syncfs is the best we can do.
        return match errno() {
            libc::EOPNOTSUPP | libc::ENOSYS | libc::EPERM | libc::EBUSY => {
                fsutil::syncfs(boot)?;
                send(sock, "write(watchdog syncfs complete)")
            }
            _ => Err(os_err("ioctl(FIFREEZE)")),
        };
    }
    if fsutil::debug_flag("test-fifreeze-hold") {
        // Test hook (ours, not upstream's): stay frozen until killed, so
        // tests/ext4.rs can check that the watchdog thaws after our death.
        eprintln!("frozen {}", boot.display());
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    // SAFETY: as above.
    if unsafe { libc::ioctl(dir.as_raw_fd(), FITHAW as _, 0) } != 0 && errno() != libc::EINVAL {
        // EINVAL: the watchdog already thawed it (we were very slow).
        return Err(os_err("ioctl(FITHAW)"));
    }
    send(sock, "write(watchdog FITHAW complete)")
}

fn wait_ok(pid: libc::pid_t) -> Result<()> {
    let mut status = 0;
    loop {
        // SAFETY: our own child; valid out-pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } >= 0 {
            break;
        }
        if errno() != libc::EINTR {
            return Err(os_err("waitpid(watchdog)"));
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(Error::io(
            CONTEXT,
            io::Error::other(format!("watchdog failed (wait status {status})")),
        ))
    }
}

/// The watchdog process. Runs after `fork()` of a possibly multi-threaded
/// process, so it allocates nothing, takes no locks and uses only
/// async-signal-safe calls, ending in `_exit`.
unsafe fn watchdog(sock: RawFd, parent_end: RawFd, fs: RawFd, test: bool) -> ! {
    libc::close(parent_end);
    // fork() copied every descriptor of the caller, including files other
    // threads have open on unrelated mounts; holding them would keep those
    // mounts busy (umount: target is busy) for as long as the watchdog lives.
    let (lo, hi) = (sock.min(fs) as u32, sock.max(fs) as u32);
    for (first, last) in [
        (3, lo.wrapping_sub(1)),
        (lo + 1, hi.wrapping_sub(1)),
        (hi + 1, u32::MAX),
    ] {
        if first <= last {
            libc::syscall(libc::SYS_close_range, first, last, 0u32);
        }
    }
    if !test {
        // Detach (new session, reparented to init) so a Ctrl-C or a
        // service restart of the caller does not take the watchdog along;
        // the test hook keeps it as a child to wait for it.
        match libc::fork() {
            0 => {
                libc::setsid();
                // As daemon(3): do not keep the caller's stdio pipes open.
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    for fd in (0..3).filter(|&fd| fd != sock && fd != fs) {
                        libc::dup2(null, fd);
                    }
                    if null > 2 {
                        libc::close(null);
                    }
                }
            }
            -1 => libc::_exit(1),
            _ => libc::_exit(0),
        }
    }
    libc::signal(libc::SIGINT, libc::SIG_IGN);
    libc::signal(libc::SIGTERM, libc::SIG_IGN);
    let mut c = b'!';
    if libc::write(sock, (&c as *const u8).cast(), 1) != 1 {
        libc::_exit(1);
    }
    let n = loop {
        let n = libc::read(sock, (&mut c as *mut u8).cast(), 1);
        if n >= 0 || *libc::__errno_location() != libc::EINTR {
            break n;
        }
    };
    if n != 1 {
        libc::_exit(1);
    }
    let mut pfd = libc::pollfd {
        fd: sock,
        events: libc::POLLIN | libc::POLLHUP,
        revents: 0,
    };
    let timeout = if test { WATCHDOG_TEST_MS } else { WATCHDOG_MS };
    let r = loop {
        let r = libc::poll(&mut pfd, 1, timeout);
        if r >= 0 || *libc::__errno_location() != libc::EINTR {
            break r;
        }
    };
    // Completed only if the caller said so; a hang-up (caller killed while
    // the filesystem may be frozen) thaws too, unlike upstream, which only
    // thaws on timeout. Thawing a thawed filesystem fails harmlessly.
    let completed = r > 0 && libc::read(sock, (&mut c as *mut u8).cast(), 1) == 1;
    if !completed {
        libc::ioctl(fs, FITHAW as _, 0);
    }
    if test {
        let msg = b"fifreeze watchdog was run\n";
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
    libc::_exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_directory_sysroots_are_never_frozen() {
        let t = tempfile::tempdir().unwrap();
        let boot = t.path().join("boot");
        std::fs::create_dir(&boot).unwrap();
        // The host's filesystem is not ours to freeze.
        assert!(!owns_filesystem(&boot, t.path()).unwrap());
        assert!(is_mount_root(Path::new("/")).unwrap());
        assert!(!is_mount_root(&boot).unwrap());
    }

    #[test]
    fn unfreezable_filesystems_fall_back_to_syncfs() {
        // /dev is devtmpfs: FIFREEZE is refused, the cycle still succeeds
        // (and the watchdog is told so and exits).
        freeze_thaw_cycle(Path::new("/dev"), true, false).unwrap();
    }
}
