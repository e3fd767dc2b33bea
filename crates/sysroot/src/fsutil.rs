//! Small filesystem helpers: atomic writes, symlink swaps, metadata-preserving
//! copies (owner, mode, xattrs) and flock.

use crate::{Error, Result};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub(crate) fn io_at(what: &str, p: &Path) -> impl FnOnce(io::Error) -> Error {
    let c = format!("{what} {}", p.display());
    move |e| Error::io(c, e)
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("path contains NUL: {}", p.display())))
}

/// fsyncs a directory so that renames and creations inside it are durable.
pub(crate) fn fsync_dir(p: &Path) -> Result<()> {
    let f = File::open(p).map_err(io_at("opening", p))?;
    f.sync_all().map_err(io_at("fsync", p))
}

/// Flushes the whole filesystem containing `p` (the `syncfs` upstream does
/// before the bootloader swap).
pub(crate) fn syncfs(p: &Path) -> Result<()> {
    let f = File::open(p).map_err(io_at("opening", p))?;
    // SAFETY: valid open fd.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(Error::io(
            format!("syncfs {}", p.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn tmp_name(p: &Path, tag: &str) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Writes `data` to `p` via a temp file, fsync and rename, then fsyncs the
/// parent directory.
pub(crate) fn write_file_atomic(p: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = tmp_name(p, "tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_at("creating", &tmp))?;
    f.write_all(data).map_err(io_at("writing", &tmp))?;
    f.sync_all().map_err(io_at("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, p).map_err(io_at("renaming into", p))?;
    fsync_dir(p.parent().unwrap_or(Path::new(".")))
}

/// Atomically points symlink `link` at `target` (tmp symlink + rename).
pub(crate) fn symlink_atomic(target: &Path, link: &Path) -> Result<()> {
    let tmp = tmp_name(link, "lnk");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io_at("symlink", &tmp))?;
    fs::rename(&tmp, link).map_err(io_at("renaming into", link))?;
    fsync_dir(link.parent().unwrap_or(Path::new(".")))
}

/// `rm -rf`, succeeding when the path does not exist.
pub(crate) fn remove_all(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("stat {}", p.display()), e)),
        Ok(md) if md.is_dir() => fs::remove_dir_all(p).map_err(io_at("removing", p)),
        Ok(_) => fs::remove_file(p).map_err(io_at("removing", p)),
    }
}

/// Extended attributes of `p` (not following symlinks). Filesystems without
/// xattr support yield an empty list.
pub(crate) fn lget_xattrs(p: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = cpath(p)?;
    // SAFETY: a NULL buffer with size 0 queries the needed size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTSUP) {
            return Ok(Vec::new());
        }
        return Err(Error::io(format!("llistxattr {}", p.display()), e));
    }
    let mut names = vec![0u8; n as usize];
    // SAFETY: buffer of the advertised size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(Error::io(
            format!("llistxattr {}", p.display()),
            io::Error::last_os_error(),
        ));
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let cn = CString::new(name).expect("split on NUL");
        // SAFETY: size query.
        let sz = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), std::ptr::null_mut(), 0) };
        if sz < 0 {
            continue;
        }
        let mut val = vec![0u8; sz as usize];
        // SAFETY: buffer of the advertised size.
        let sz =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if sz < 0 {
            continue;
        }
        val.truncate(sz as usize);
        out.push((name.to_vec(), val));
    }
    Ok(out)
}

/// Sets extended attributes on `p`. `security.selinux` failures are
/// tolerated (SELinux-less hosts reject labels), others are errors.
pub(crate) fn lset_xattrs(p: &Path, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    let c = cpath(p)?;
    for (name, val) in xattrs {
        let cn = CString::new(name.clone())
            .map_err(|_| Error::Invalid(format!("xattr name with NUL on {}", p.display())))?;
        // SAFETY: valid C strings and buffer.
        let r =
            unsafe { libc::lsetxattr(c.as_ptr(), cn.as_ptr(), val.as_ptr().cast(), val.len(), 0) };
        if r != 0 {
            let e = io::Error::last_os_error();
            if name.starts_with(b"security.") || e.raw_os_error() == Some(libc::ENOTSUP) {
                continue;
            }
            return Err(Error::io(
                format!(
                    "lsetxattr {} on {}",
                    String::from_utf8_lossy(name),
                    p.display()
                ),
                e,
            ));
        }
    }
    Ok(())
}

fn lchown(p: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(io_at("lchown", p))
}

/// Copies owner, xattrs and (for non-symlinks) mode from `md`/`src` to `dst`.
fn copy_meta(src: &Path, md: &fs::Metadata, dst: &Path) -> Result<()> {
    // Unprivileged callers (tests) cannot chown; ownership then stays theirs.
    if let Err(e) = lchown(dst, md.uid(), md.gid()) {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return Err(e);
        }
    }
    lset_xattrs(dst, &lget_xattrs(src)?)?;
    if !md.file_type().is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(io_at("chmod", dst))?;
    }
    Ok(())
}

/// Copies a regular file or symlink with its metadata; `dst` must not exist.
/// Returns `false` (and copies nothing) for other file types.
pub(crate) fn copy_node(src: &Path, dst: &Path) -> Result<bool> {
    let md = fs::symlink_metadata(src).map_err(io_at("stat", src))?;
    let ft = md.file_type();
    if ft.is_symlink() {
        let t = fs::read_link(src).map_err(io_at("readlink", src))?;
        std::os::unix::fs::symlink(&t, dst).map_err(io_at("symlink", dst))?;
    } else if ft.is_file() {
        let mut i = File::open(src).map_err(io_at("opening", src))?;
        let mut o = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)
            .map_err(io_at("creating", dst))?;
        io::copy(&mut i, &mut o).map_err(io_at("copying to", dst))?;
    } else {
        return Ok(false);
    }
    copy_meta(src, &md, dst)?;
    Ok(true)
}

/// Creates directory `dst` with `src`'s metadata (or reuses an existing one,
/// then adopting `src`'s metadata).
pub(crate) fn copy_dir_meta(src: &Path, dst: &Path) -> Result<()> {
    let md = fs::symlink_metadata(src).map_err(io_at("stat", src))?;
    match fs::create_dir(dst) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dst.is_dir() => {}
        Err(e) => return Err(Error::io(format!("mkdir {}", dst.display()), e)),
    }
    copy_meta(src, &md, dst)
}

/// Recursively copies `src` to `dst` (merging into an existing directory),
/// preserving metadata; sockets, fifos and devices are skipped.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let md = fs::symlink_metadata(src).map_err(io_at("stat", src))?;
    if !md.is_dir() {
        if fs::symlink_metadata(dst).is_ok() {
            remove_all(dst)?;
        }
        copy_node(src, dst)?;
        return Ok(());
    }
    // Create writable first so a read-only source dir can be populated.
    match fs::create_dir(dst) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dst.is_dir() => {}
        Err(e) => return Err(Error::io(format!("mkdir {}", dst.display()), e)),
    }
    fs::set_permissions(dst, fs::Permissions::from_mode(0o700)).map_err(io_at("chmod", dst))?;
    let mut names: Vec<_> = fs::read_dir(src)
        .map_err(io_at("reading", src))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(io_at("reading", src))?;
    names.sort();
    for n in names {
        copy_tree(&src.join(&n), &dst.join(&n))?;
    }
    copy_meta(src, &md, dst)
}

/// An exclusive `flock` held until dropped.
pub(crate) struct Lock(#[allow(dead_code)] File);

/// Takes the sysroot lock (`/ostree/lock`), waiting for other writers.
pub(crate) fn lock(p: &Path) -> Result<Lock> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(p)
        .map_err(io_at("opening", p))?;
    // SAFETY: valid fd.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::io(
            format!("flock {}", p.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(Lock(f))
}

/// `FS_IOC_GETFLAGS` / `FS_IOC_SETFLAGS` and the immutable bit (linux/fs.h).
const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

/// Sets or clears the immutable attribute (`chattr +i`) of directory `p`.
/// Filesystems without attribute support (tmpfs, overlayfs) are skipped:
/// the attribute is a guard against accidents, not a security boundary.
pub(crate) fn set_immutable(p: &Path, on: bool) -> Result<()> {
    let f = match File::open(p) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !on => return Ok(()),
        Err(e) => return Err(Error::io(format!("opening {}", p.display()), e)),
    };
    let mut flags: libc::c_long = 0;
    // SAFETY: valid fd and a c_long out-parameter, as the ioctl expects.
    if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS as _, &mut flags) } != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => Ok(()),
            _ => Err(Error::io(
                format!("reading attributes of {}", p.display()),
                e,
            )),
        };
    }
    let new = if on {
        flags | FS_IMMUTABLE_FL
    } else {
        flags & !FS_IMMUTABLE_FL
    };
    if new == flags {
        return Ok(());
    }
    // SAFETY: as above.
    if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS as _, &new) } != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => Ok(()),
            _ => Err(Error::io(
                format!("setting attributes of {}", p.display()),
                e,
            )),
        };
    }
    Ok(())
}

/// Removes a deployment directory, clearing its immutable attribute first.
pub(crate) fn remove_deployment_dir(p: &Path) -> Result<()> {
    if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
        set_immutable(p, false)?;
    }
    remove_all(p)
}

/// Whether deployments stay mutable (`OSTREE_SYSROOT_DEBUG=mutable-deployments`,
/// which upstream's test suite sets).
pub(crate) fn mutable_deployments() -> bool {
    debug_flag("mutable-deployments")
}

/// Whether `OSTREE_SYSROOT_DEBUG` (comma-separated, as upstream) holds `flag`.
pub(crate) fn debug_flag(flag: &str) -> bool {
    std::env::var("OSTREE_SYSROOT_DEBUG")
        .map(|v| v.split(',').any(|f| f == flag))
        .unwrap_or(false)
}
