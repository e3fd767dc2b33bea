//! Thin wrappers over the few syscalls std does not expose: xattrs,
//! `lchown`, `utimensat`, `syncfs`, `O_TMPFILE`.

use crate::object::Xattrs;
use crate::{Error, Result};
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("path contains NUL: {}", p.display())))
}

fn check(rc: libc::c_int, what: &str, p: &Path) -> Result<()> {
    if rc < 0 {
        return Err(Error::io(
            format!("{what} {}", p.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// All xattrs of `p` (not following symlinks), canonical form (names with
/// trailing NUL, sorted). Filesystems without xattr support give none.
pub fn lget_xattrs(p: &Path) -> Result<Xattrs> {
    let c = cpath(p)?;
    let mut names = vec![0u8; 1024];
    let n = loop {
        // SAFETY: buffer pointer/length are valid for the call.
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(Error::io(format!("llistxattr {}", p.display()), e)),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split_inclusive(|&b| b == 0) {
        if name.len() <= 1 {
            continue;
        }
        let value = lget_xattr_raw(&c, name, p)?;
        if let Some(v) = value {
            out.push((name.to_vec(), v));
        }
    }
    crate::object::canonicalize_xattrs(&mut out);
    Ok(out)
}

/// One xattr by name (without NUL); `None` if absent.
pub fn lget_xattr(p: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let c = cpath(p)?;
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    lget_xattr_raw(&c, &n, p)
}

fn lget_xattr_raw(c: &CString, name_nul: &[u8], p: &Path) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: name is NUL-terminated; buffer pointer/length valid.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                name_nul.as_ptr().cast(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 8, 0),
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            _ => return Err(Error::io(format!("lgetxattr {}", p.display()), e)),
        }
    }
}

/// An xattr name as the C calls want it: NUL-terminated (names read back
/// from the kernel already are).
fn c_name(name: &[u8]) -> Vec<u8> {
    let mut n = name.to_vec();
    if n.last() != Some(&0) {
        n.push(0);
    }
    n
}

/// atime and mtime both at `secs`, as `utimensat`/`futimens` take them.
fn both_times(secs: i64) -> [libc::timespec; 2] {
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    [t, t]
}

/// Sets each xattr on `p` (not following symlinks).
pub fn lset_xattrs(p: &Path, xattrs: &Xattrs) -> Result<()> {
    let c = cpath(p)?;
    for (name, value) in xattrs {
        let n = c_name(name);
        // SAFETY: name NUL-terminated; value pointer/length valid.
        let rc = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                n.as_ptr().cast(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        check(rc, "lsetxattr", p)?;
    }
    Ok(())
}

/// `lchown(2)`.
pub fn lchown(p: &Path, uid: u32, gid: u32) -> Result<()> {
    let c = cpath(p)?;
    // SAFETY: valid C path.
    check(unsafe { libc::lchown(c.as_ptr(), uid, gid) }, "lchown", p)
}

/// Sets atime and mtime of `p` (not following symlinks) to `secs`.
pub fn set_mtime(p: &Path, secs: i64) -> Result<()> {
    let c = cpath(p)?;
    let ts = both_times(secs);
    // SAFETY: valid C path and timespec array of length 2.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(rc, "utimensat", p)
}

/// Sets each xattr on the open file `f` (`fsetxattr`; `p` names it in errors).
pub fn fset_xattrs(f: &std::fs::File, xattrs: &Xattrs, p: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    for (name, value) in xattrs {
        let n = c_name(name);
        // SAFETY: valid fd; name NUL-terminated; value pointer/length valid.
        let rc = unsafe {
            libc::fsetxattr(
                f.as_raw_fd(),
                n.as_ptr().cast(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        check(rc, "fsetxattr", p)?;
    }
    Ok(())
}

/// `fchown(2)` of the open file `f` (`p` names it in errors).
pub fn fchown(f: &std::fs::File, uid: u32, gid: u32, p: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: valid fd.
    check(
        unsafe { libc::fchown(f.as_raw_fd(), uid, gid) },
        "fchown",
        p,
    )
}

/// Sets atime and mtime of the open file `f` to `secs` (`futimens`).
pub fn fset_mtime(f: &std::fs::File, secs: i64, p: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let ts = both_times(secs);
    // SAFETY: valid fd and timespec array of length 2.
    check(
        unsafe { libc::futimens(f.as_raw_fd(), ts.as_ptr()) },
        "futimens",
        p,
    )
}

/// The filesystem type (`f_type`) and id (`f_fsid`) of the filesystem
/// holding `p`; `None` if it cannot be asked.
pub fn statfs(p: &Path) -> Option<(i64, [i32; 2])> {
    let c = CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: NUL-terminated path; `st` is written by the call.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        // `fsid_t` is opaque in libc's binding; it is two ints on Linux.
        let fsid: [i32; 2] = std::mem::transmute(st.f_fsid);
        Some((st.f_type as i64, fsid))
    }
}

/// Opens directory `p` as an `O_PATH` handle for the `*_at` calls below.
pub fn open_dir_path(p: &Path) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let c = cpath(p)?;
    // SAFETY: valid NUL-terminated path; the fd is owned by the result.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    check(fd, "opening", p)?;
    // SAFETY: `open` returned a new fd that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Whether `rel` exists under the directory `dir` (an [`open_dir_path`]
/// handle), without following a final symlink.
pub fn exists_at(dir: std::os::fd::BorrowedFd<'_>, rel: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(c) = CString::new(rel.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: valid fd and NUL-terminated path; `st` is written by the call.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        ) == 0
    }
}

/// Opens an anonymous file (`O_TMPFILE`, mode 0600) in the directory `dir`
/// (an [`open_dir_path`] handle), to be named later with
/// [`link_tmpfile_at`]. `Ok(None)` when the filesystem or kernel lacks
/// `O_TMPFILE`, so the caller falls back to a named temp file. `what`
/// names the directory in errors.
pub fn open_tmpfile_at(
    dir: std::os::fd::BorrowedFd<'_>,
    what: &Path,
) -> Result<Option<std::fs::File>> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: valid fd and NUL-terminated path; the new fd is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c".".as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL) => Ok(None),
            _ => Err(Error::io(
                format!("creating temp file in {}", what.display()),
                e,
            )),
        };
    }
    // SAFETY: `openat` returned a new fd that nothing else owns.
    Ok(Some(unsafe { std::fs::File::from_raw_fd(fd) }))
}

/// Whether `linkat(AT_EMPTY_PATH)` works here: it needs CAP_DAC_READ_SEARCH,
/// and saves resolving `/proc/self/fd/N` per file.
static EMPTY_PATH_LINK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Gives the anonymous file `f` (from [`open_tmpfile_at`]) the name `rel`
/// under the directory `dir` (an [`open_dir_path`] handle): directly when
/// privileged, else through `/proc/self/fd` as unprivileged processes
/// must. Fails with `AlreadyExists` if the name exists.
pub fn link_tmpfile_at(
    f: &std::fs::File,
    dir: std::os::fd::BorrowedFd<'_>,
    rel: &Path,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering::Relaxed;
    let dst = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let link = |src: &CStr, src_dir: libc::c_int, flags: libc::c_int| {
        // SAFETY: valid fds and NUL-terminated paths.
        let rc =
            unsafe { libc::linkat(src_dir, src.as_ptr(), dir.as_raw_fd(), dst.as_ptr(), flags) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let empty_path = EMPTY_PATH_LINK.load(Relaxed);
    if empty_path {
        match link(c"", f.as_raw_fd(), libc::AT_EMPTY_PATH) {
            // Without the capability the kernel answers ENOENT, as it does
            // for a missing directory: the retry below tells them apart.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            r => return r,
        }
    }
    let src = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("no NUL");
    link(&src, libc::AT_FDCWD, libc::AT_SYMLINK_FOLLOW)?;
    if empty_path {
        EMPTY_PATH_LINK.store(false, Relaxed);
    }
    Ok(())
}

/// Flushes the whole filesystem containing `p` (upstream's transaction
/// commit does the same instead of one fsync per object).
pub fn syncfs(p: &Path) -> Result<()> {
    let f = std::fs::File::open(p).map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
    use std::os::fd::AsRawFd;
    // SAFETY: valid open fd.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    check(rc, "syncfs", p)
}

/// Starts writing `f`'s dirty pages to disk without waiting. The
/// transaction's closing `syncfs` then finds most data already on its way,
/// instead of the whole transaction's data waiting for that one call.
/// Only a hint: an error is ignored, `syncfs` still guarantees durability.
pub fn start_writeback(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: valid open fd; offset 0, length 0 = to the end of the file.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// fsyncs a directory so renames inside it are durable.
pub fn fsync_dir(p: &Path) -> Result<()> {
    let f = std::fs::File::open(p).map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
    f.sync_all()
        .map_err(|e| Error::io(format!("fsync {}", p.display()), e))
}

/// Takes upstream's repository lock: an open-file-description (OFD) lock
/// on `path` (the repo's `.lock`), shared for writers, exclusive for object
/// deletion, exactly as libostree's `do_repo_lock` does, so ours and the real
/// `ostree` exclude each other. Released when the returned file is dropped.
pub fn ofd_lock(path: &Path, exclusive: bool) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    // SAFETY: zeroed flock is a valid initial value; fields set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if exclusive {
        libc::F_WRLCK
    } else {
        libc::F_RDLCK
    } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: valid fd and flock struct.
        let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLKW, &fl) };
        if rc == 0 {
            return Ok(f);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(Error::io(format!("locking {}", path.display()), e));
        }
    }
}

/// Creates an overlayfs whiteout (character device 0:0) with `perm` bits.
pub fn mknod_whiteout(p: &Path, perm: u32) -> Result<()> {
    let c = cpath(p)?;
    // SAFETY: valid C path; makedev(0, 0) is the whiteout device number.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | (perm & 0o7777),
            libc::makedev(0, 0),
        )
    };
    check(rc, "mknod", p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::sync::atomic::Ordering::Relaxed;

    /// Both ways of naming an anonymous file: `AT_EMPTY_PATH` (privileged)
    /// and `/proc/self/fd` (what an unprivileged process falls back to).
    #[test]
    fn anonymous_files_get_names_relative_to_a_directory_handle() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("ab")).unwrap();
        let dir = open_dir_path(d.path()).unwrap();
        for (i, empty_path) in [true, false].into_iter().enumerate() {
            EMPTY_PATH_LINK.store(empty_path, Relaxed);
            let Some(mut f) = open_tmpfile_at(dir.as_fd(), d.path()).unwrap() else {
                return; // no O_TMPFILE on this filesystem
            };
            f.write_all(b"payload").unwrap();
            let rel = format!("ab/obj{i}");
            link_tmpfile_at(&f, dir.as_fd(), Path::new(&rel)).unwrap();
            let mut s = String::new();
            std::fs::File::open(d.path().join(&rel))
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "payload");
            let again = link_tmpfile_at(&f, dir.as_fd(), Path::new(&rel)).unwrap_err();
            assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        }
        // A missing directory is an error either way, and must not be
        // mistaken for a missing capability.
        EMPTY_PATH_LINK.store(true, Relaxed);
        let f = open_tmpfile_at(dir.as_fd(), d.path()).unwrap().unwrap();
        let e = link_tmpfile_at(&f, dir.as_fd(), Path::new("missing/obj")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
