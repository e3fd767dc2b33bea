//! `ostree-prepare-root` for the initramfs (upstream
//! `src/switchroot/ostree-prepare-root.c`, legacy non-composefs path): with
//! the physical root mounted at `/sysroot`, make the deployment named by
//! `ostree=` the future root — a bind mount of the deployment directory
//! with the physical root at `sysroot/`, the stateroot's shared `var/`, a
//! read-only `usr/` — and move it onto `/sysroot` for switch-root.

use crate::fsutil::io_at;
use crate::kargs::KernelArgs;
use crate::{Error, Result};
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Options of [`prepare_root`].
#[derive(Debug, Clone)]
pub struct PrepareRootOptions {
    /// Where the physical root is mounted (`/sysroot` in the initramfs).
    pub sysroot: PathBuf,
    /// Kernel command line; default: `/proc/cmdline`.
    pub cmdline: Option<String>,
    /// Directory for the `ostree-booted` marker (`/run`); `None` skips it.
    pub run_dir: Option<PathBuf>,
}

/// What [`prepare_root`] mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The deployment directory (as it was named before the move).
    pub deployment: PathBuf,
    /// The stateroot `var` bound onto the new root's `/var`.
    pub var: PathBuf,
}

fn c(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::Invalid(format!("path contains NUL: {}", p.display())))
}

fn mount(src: Option<&Path>, target: &Path, flags: libc::c_ulong) -> Result<()> {
    let s = src.map(c).transpose()?;
    let t = c(target)?;
    // SAFETY: valid C strings or NULL; no filesystem type or data needed
    // for bind, move, remount and propagation changes.
    let r = unsafe {
        libc::mount(
            s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            t.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if r != 0 {
        let what = match src {
            Some(s) => format!(
                "mount {} on {} (flags {flags:#x})",
                s.display(),
                target.display()
            ),
            None => format!("mount {} (flags {flags:#x})", target.display()),
        };
        return Err(Error::io(what, io::Error::last_os_error()));
    }
    Ok(())
}

fn require_dir(p: &Path, what: &str) -> Result<()> {
    if p.is_dir() {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "{what}: {} is not a directory",
            p.display()
        )))
    }
}

/// Resolves `ostree=` of `cmdline` inside `sysroot` to the deployment dir.
pub fn resolve_deployment(sysroot: &Path, cmdline: &str) -> Result<PathBuf> {
    let k = KernelArgs::parse(cmdline);
    let link =
        match k.get("ostree") {
            Some(Some(l)) if l.starts_with('/') => l.to_string(),
            _ => return Err(Error::Invalid(
                "No OSTree target; expected ostree=/ostree/boot.N/... on the kernel command line"
                    .into(),
            )),
        };
    let p = sysroot.join(link.trim_start_matches('/'));
    let d = fs::canonicalize(&p).map_err(io_at("resolving ostree= target", &p))?;
    let root = fs::canonicalize(sysroot).map_err(io_at("resolving", sysroot))?;
    // The chain must end in OS/deploy/CSUM.SERIAL inside this sysroot.
    let ok = d.starts_with(root.join("ostree/deploy"))
        && d.parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "deploy");
    if !ok {
        return Err(Error::Invalid(format!(
            "ostree={link} resolves to {}, not a deployment",
            d.display()
        )));
    }
    require_dir(&d, "deployment")?;
    Ok(d)
}

/// Sets up the deployment named on the kernel command line as the new root
/// and moves it onto `opts.sysroot`. Needs `CAP_SYS_ADMIN` in the current
/// mount namespace; mount propagation of `/` is made private, as upstream.
pub fn prepare_root(opts: &PrepareRootOptions) -> Result<Prepared> {
    let cmdline = match &opts.cmdline {
        Some(c) => c.clone(),
        None => fs::read_to_string("/proc/cmdline")
            .map_err(io_at("reading", Path::new("/proc/cmdline")))?,
    };
    let deploy = resolve_deployment(&opts.sysroot, &cmdline)?;
    let sysroot = fs::canonicalize(&opts.sysroot).map_err(io_at("resolving", &opts.sysroot))?;
    let var = fs::canonicalize(deploy.join("../../var"))
        .map_err(io_at("resolving stateroot var of", &deploy))?;
    for sub in ["sysroot", "usr", "var"] {
        require_dir(&deploy.join(sub), "mount point in deployment")?;
    }

    mount(None, Path::new("/"), libc::MS_REC | libc::MS_PRIVATE)?;
    // A bind mount of the deployment onto itself can be moved later.
    mount(Some(&deploy), &deploy, libc::MS_BIND | libc::MS_SILENT)?;
    mount(
        Some(&sysroot),
        &deploy.join("sysroot"),
        libc::MS_BIND | libc::MS_SILENT,
    )?;
    mount(
        Some(&var),
        &deploy.join("var"),
        libc::MS_BIND | libc::MS_SILENT,
    )?;
    let usr = deploy.join("usr");
    mount(Some(&usr), &usr, libc::MS_BIND | libc::MS_SILENT)?;
    mount(
        Some(&usr),
        &usr,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_SILENT,
    )?;
    if let Some(run) = &opts.run_dir {
        let d = run.join("ostree");
        fs::create_dir_all(&d).map_err(io_at("mkdir", &d))?;
        let m = run.join("ostree-booted");
        fs::write(&m, b"").map_err(io_at("writing", &m))?;
    }
    mount(Some(&deploy), &sysroot, libc::MS_MOVE | libc::MS_SILENT)?;
    Ok(Prepared {
        deployment: deploy,
        var,
    })
}

/// What `switch-root` does after [`prepare_root`]: makes `newroot` the
/// root of this process's mount namespace and chroots into it.
pub fn switch_root(newroot: &Path) -> Result<()> {
    std::env::set_current_dir(newroot).map_err(io_at("chdir", newroot))?;
    mount(Some(Path::new(".")), Path::new("/"), libc::MS_MOVE)?;
    let dot = c(Path::new("."))?;
    // SAFETY: valid C string.
    if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
        return Err(Error::io("chroot .", io::Error::last_os_error()));
    }
    std::env::set_current_dir("/").map_err(io_at("chdir", Path::new("/")))
}
