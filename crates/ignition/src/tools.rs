//! How the stages start external tools (`sgdisk`, `mdadm`, `cryptsetup`,
//! `mkfs.*`, `mount`, `systemctl`, ...): the host's own, or — in ferrocore's
//! initramfs, which carries no tools of its own — the target root's,
//! chrooted into it.
//!
//! The choice is a property of a whole stage run, so [`in_root`] sets it for
//! the calling thread until its guard drops, rather than being threaded
//! through every disk helper. It is thread-local, not global, because tests
//! run stages for different roots on parallel threads; so a thread a stage
//! spawns to run tools must take the setting over (the disks stage's
//! filesystem workers do).

use std::cell::RefCell;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;

thread_local! {
    static ROOT: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Restores the previous setting when dropped.
pub(crate) struct InRoot {
    prev: Option<PathBuf>,
}

impl Drop for InRoot {
    fn drop(&mut self) {
        let prev = self.prev.take();
        ROOT.with(|r| *r.borrow_mut() = prev);
    }
}

/// Tools started on this thread run chrooted into `root` (`None`: the
/// host's) until the guard drops.
pub(crate) fn in_root(root: Option<&Path>) -> InRoot {
    let prev = ROOT.with(|r| r.replace(root.map(Path::to_path_buf)));
    InRoot { prev }
}

/// The root tools run in, if not the host's.
pub(crate) fn root() -> Option<PathBuf> {
    ROOT.with(|r| r.borrow().clone())
}

/// `prog` as the current setting wants it started.
pub(crate) fn command(prog: &str) -> Command {
    let mut c = Command::new(prog);
    if let Some(root) = root() {
        chroot(&mut c, &root);
    }
    c
}

/// Makes `c` chroot into `root` (and chdir to its `/`) before exec. A root
/// path with a NUL byte cannot come from a config; it makes the spawn fail.
///
/// systemd's tools (`udevadm settle`, `systemctl`) silently do nothing when
/// they find themselves in a chroot that pid 1 is not in — exactly our
/// case — unless `SYSTEMD_IGNORE_CHROOT` is set.
pub(crate) fn chroot(c: &mut Command, root: &Path) {
    use std::os::unix::process::CommandExt;
    c.env("SYSTEMD_IGNORE_CHROOT", "1");
    let dir = CString::new(root.as_os_str().as_encoded_bytes()).ok();
    // SAFETY: between fork and exec only async-signal-safe calls (chroot,
    // chdir) on memory owned by the closure.
    unsafe {
        c.pre_exec(move || {
            let Some(dir) = &dir else {
                return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
            };
            if libc::chroot(dir.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// How a path under the tools' root is named to a tool: as is for the
/// host's tools, relative to the root (made absolute) for chrooted ones.
pub(crate) fn path_for_tool(p: &Path) -> PathBuf {
    match self::root() {
        Some(r) => match p.strip_prefix(&r) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => p.to_path_buf(),
        },
        None => p.to_path_buf(),
    }
}

/// Where to put a file a tool must read (a LUKS key): the tools' own `/run`
/// (a tmpfs in the initramfs) when they run in a root, else the host's
/// temporary directory.
pub(crate) fn scratch_dir() -> PathBuf {
    match self::root() {
        Some(r) => r.join("run"),
        None => std::env::temp_dir(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chrooted_tools_come_from_the_root() {
        // An empty root has no `true`: the chrooted spawn must fail where the
        // host's succeeds. Needs root (chroot), as the initramfs has.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        assert!(command("true").status().unwrap().success());
        {
            let _g = in_root(Some(t.path()));
            assert_eq!(root().as_deref(), Some(t.path()));
            assert!(command("true").status().is_err());
            assert_eq!(
                path_for_tool(&t.path().join("var/lib/x")),
                Path::new("/var/lib/x")
            );
            assert_eq!(scratch_dir(), t.path().join("run"));
        }
        assert_eq!(root(), None);
        assert_eq!(path_for_tool(&t.path().join("var")), t.path().join("var"));
        assert!(command("true").status().unwrap().success());
    }
}
