//! Turning a Debian root filesystem into the tree of a bootable OSTree
//! commit (`ostree-sysroot.md` §2): config defaults in `usr/etc`, an empty
//! `var` recreated at boot by `tmpfiles.d`, state directories as symlinks
//! into `var`, the kernel in `usr/lib/modules/KVER/`.
//!
//! Everything here is plain file manipulation on a directory, so it runs (and
//! is tested) without mmdebstrap or root.

use crate::fsutil::{copy_tree, write_atomic};
use crate::{Error, Result};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

/// Where the dpkg database lives in the commit; `/var/lib/dpkg` becomes a
/// symlink to it at boot. Mirrors rpm-ostree's `/usr/lib/sysimage/rpm`.
pub const DPKG_DB: &str = "usr/lib/sysimage/dpkg";

/// The generated tmpfiles.d snippet that recreates `/var` at boot.
pub const TMPFILES_CONF: &str = "usr/lib/tmpfiles.d/ferrocore-var.conf";

/// Default kernel arguments, in bootc's `kargs.d` format, so that the image
/// builder reads them from the commit itself.
pub const KARGS_FILE: &str = "usr/lib/bootc/kargs.d/00-ferrocore.toml";

/// Top-level state directories turned into symlinks into `/var`:
/// (path in the tree, symlink target, directory created under /var, mode).
const VAR_LINKS: &[(&str, &str, &str, u32)] = &[
    ("home", "var/home", "/var/home", 0o755),
    ("opt", "var/opt", "/var/opt", 0o755),
    ("srv", "var/srv", "/var/srv", 0o755),
    ("mnt", "var/mnt", "/var/mnt", 0o755),
    ("root", "var/roothome", "/var/roothome", 0o700),
    ("usr/local", "../var/usrlocal", "/var/usrlocal", 0o755),
];

/// Host- or build-specific files that must not be in the commit: identity
/// is created on first boot, and mmdebstrap copies the build host's
/// `hostname` (and `resolv.conf`, handled apart).
const REMOVE: &[&str] = &[
    "etc/machine-id",
    "etc/hostname",
    // mmdebstrap's --aptopt settings for the build (the offline proxy among
    // them): build configuration, not OS configuration.
    "etc/apt/apt.conf.d/99mmdebstrap",
    "vmlinuz",
    "vmlinuz.old",
    "initrd.img",
    "initrd.img.old",
];

/// Inputs of [`postprocess`] beyond the tree itself.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Directory copied over the tree first (its `etc/` ends up in `usr/etc`).
    pub overlay: Option<PathBuf>,
    /// Unit files installed into `usr/lib/systemd/system`.
    pub units: Vec<PathBuf>,
    /// Units to enable, `systemctl enable` style.
    pub enable: Vec<String>,
    /// Default kernel arguments.
    pub kernel_arguments: Vec<String>,
    /// A binary installed as `usr/bin/ferrocore`; being static, it is also
    /// the `/init` of the initramfs built into `usr/lib/modules/KVER/`
    /// in place of the distribution's.
    pub ferrocore_binary: Option<PathBuf>,
    /// Upper bound of the initramfs's mtimes (the lock's `SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
}

/// What [`postprocess`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Kernel version (the `usr/lib/modules` directory holding `vmlinuz`).
    pub kernel_version: String,
    /// Whether an initramfs was found and moved next to the kernel.
    pub has_initramfs: bool,
    /// Regular files under `/var` that were dropped (they are state).
    pub dropped_var_files: usize,
    /// Lines written to [`TMPFILES_CONF`].
    pub tmpfiles_entries: usize,
}

/// Rewrites the tree at `root` in place into the OSTree layout.
pub fn postprocess(root: &Path, opts: &Options) -> Result<Layout> {
    if let Some(overlay) = &opts.overlay {
        copy_tree(overlay, root)?;
    }
    let unit_dir = root.join("usr/lib/systemd/system");
    mkdirs(&unit_dir)?;
    for unit in &opts.units {
        let name = unit
            .file_name()
            .ok_or_else(|| Error::Compose(format!("{}: no file name", unit.display())))?;
        install_file(unit, &unit_dir.join(name), 0o644)?;
    }
    if let Some(bin) = &opts.ferrocore_binary {
        let dir = root.join("usr/bin");
        mkdirs(&dir)?;
        install_file(bin, &dir.join("ferrocore"), 0o755)?;
    }
    for unit in &opts.enable {
        enable_unit(root, unit)?;
    }
    for rel in REMOVE {
        remove_if_present(&root.join(rel))?;
    }
    // A regular resolv.conf is the build host's copy; a symlink (into
    // systemd-resolved's /run files) is the OS's own and stays.
    let resolv = root.join("etc/resolv.conf");
    if fs::symlink_metadata(&resolv).is_ok_and(|m| m.is_file()) {
        remove_if_present(&resolv)?;
    }
    // Host keys are secrets generated per machine; the overlay's keygen unit
    // makes them on first boot.
    remove_matching(&root.join("etc/ssh"), |n| n.starts_with("ssh_host_"))?;
    for dir in ["dev", "proc", "sys", "run", "tmp"] {
        empty_dir(&root.join(dir))?;
    }
    let (kernel_version, mut has_initramfs) = move_kernel(root)?;
    if let Some(bin) = &opts.ferrocore_binary {
        let out = root
            .join("usr/lib/modules")
            .join(&kernel_version)
            .join("initramfs.img");
        let mut io = ferrocore_initramfs::BuildOptions::new(root, &kernel_version, bin);
        io.source_date_epoch = opts.source_date_epoch;
        io.build(&out)
            .map_err(|e| Error::Compose(format!("initramfs: {e}")))?;
        has_initramfs = true;
    }
    write_kargs(root, &opts.kernel_arguments)?;
    move_etc(root)?;

    let mut tmpfiles = String::from(
        "# Generated by ferrocore build: /var is empty in the commit and\n\
         # recreated here at boot (ostree-sysroot.md §2).\n",
    );
    let mut dropped = 0;
    let dpkg = root.join("var/lib/dpkg");
    if dpkg.is_dir() {
        let target = root.join(DPKG_DB);
        mkdirs(target.parent().expect("DPKG_DB has a parent"))?;
        fs::rename(&dpkg, &target).map_err(|e| Error::io(&dpkg, e))?;
        tmpfiles.push_str("L /var/lib/dpkg - - - - ../../usr/lib/sysimage/dpkg\n");
    }
    for (path, target, var_dir, mode) in VAR_LINKS {
        let p = root.join(path);
        writeln!(tmpfiles, "d {var_dir} {mode:04o} 0 0 -").expect("string write");
        if let Ok(meta) = fs::symlink_metadata(&p) {
            if meta.is_dir() {
                dropped += var_entries(&p, Path::new(var_dir), &mut tmpfiles)?;
            }
            remove_if_present(&p)?;
        }
        symlink(target, &p).map_err(|e| Error::io(&p, e))?;
    }
    dropped += var_entries(&root.join("var"), Path::new("/var"), &mut tmpfiles)?;
    empty_dir(&root.join("var"))?;
    let entries = tmpfiles.lines().filter(|l| !l.starts_with('#')).count();
    write_atomic(&root.join(TMPFILES_CONF), tmpfiles.as_bytes(), 0o644)?;

    let tmp = root.join("tmp");
    fs::remove_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    symlink("sysroot/tmp", &tmp).map_err(|e| Error::io(&tmp, e))?;
    mkdirs(&root.join("sysroot"))?;
    let ostree = root.join("ostree");
    remove_if_present(&ostree)?;
    symlink("sysroot/ostree", &ostree).map_err(|e| Error::io(&ostree, e))?;
    mkdirs(&root.join("boot"))?;
    Ok(Layout {
        kernel_version,
        has_initramfs,
        dropped_var_files: dropped,
        tmpfiles_entries: entries,
    })
}

fn mkdirs(p: &Path) -> Result<()> {
    fs::create_dir_all(p).map_err(|e| Error::io(p, e))
}

fn install_file(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    let data = fs::read(src).map_err(|e| Error::io(src, e))?;
    write_atomic(dst, &data, mode)
}

fn remove_if_present(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p, e)),
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).map_err(|e| Error::io(p, e)),
        Ok(_) => fs::remove_file(p).map_err(|e| Error::io(p, e)),
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| Error::Compose(format!("{}: non-UTF-8 file name {n:?}", dir.display())))?;
        out.push((name, e.path()));
    }
    out.sort();
    Ok(out)
}

fn remove_matching(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for (name, path) in sorted_entries(dir)? {
        if pred(&name) {
            remove_if_present(&path)?;
        }
    }
    Ok(())
}

/// Leaves `p` as an existing empty directory (creating it if needed).
fn empty_dir(p: &Path) -> Result<()> {
    if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
        for (_, child) in sorted_entries(p)? {
            remove_if_present(&child)?;
        }
        Ok(())
    } else {
        remove_if_present(p)?;
        mkdirs(p)
    }
}

/// Appends tmpfiles lines recreating the directories and symlinks below
/// `dir` under `dest` (sorted, so the output is reproducible) and returns how
/// many regular files were left out.
fn var_entries(dir: &Path, dest: &Path, out: &mut String) -> Result<usize> {
    let mut dropped = 0;
    for (name, path) in sorted_entries(dir)? {
        let meta = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        let d = dest.join(&name);
        if d.to_str().is_some_and(|s| s.contains(char::is_whitespace)) {
            return Err(Error::Compose(format!(
                "{}: whitespace cannot be expressed in tmpfiles.d",
                path.display()
            )));
        }
        if meta.is_dir() {
            writeln!(
                out,
                "d {} {:04o} {} {} -",
                d.display(),
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid()
            )
            .expect("string write");
            dropped += var_entries(&path, &d, out)?;
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
            writeln!(out, "L {} - - - - {}", d.display(), target.display()).expect("string write");
        } else {
            dropped += 1;
        }
    }
    Ok(dropped)
}

/// Moves `boot/vmlinuz-KVER` (and its initrd, config, System.map) into
/// `usr/lib/modules/KVER/`, where ostree looks for them.
fn move_kernel(root: &Path) -> Result<(String, bool)> {
    let boot = root.join("boot");
    let mut kernels: Vec<String> = Vec::new();
    if boot.is_dir() {
        for (name, _) in sorted_entries(&boot)? {
            if let Some(v) = name.strip_prefix("vmlinuz-") {
                kernels.push(v.to_string());
            }
        }
    }
    let kver = match kernels.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(Error::Compose(format!(
                "no kernel: {} has no vmlinuz-* (is linux-image-amd64 in debian.packages?)",
                boot.display()
            )))
        }
        many => {
            return Err(Error::Compose(format!(
                "several kernels in {}: {}; the commit must have exactly one",
                boot.display(),
                many.join(", ")
            )))
        }
    };
    let moddir = root.join("usr/lib/modules").join(&kver);
    mkdirs(&moddir)?;
    let mut has_initramfs = false;
    for (from, to) in [
        (format!("vmlinuz-{kver}"), "vmlinuz"),
        (format!("initrd.img-{kver}"), "initramfs.img"),
        (format!("config-{kver}"), "config"),
        (format!("System.map-{kver}"), "System.map"),
    ] {
        let src = boot.join(&from);
        if src.exists() {
            let dst = moddir.join(to);
            fs::rename(&src, &dst).map_err(|e| Error::io(&src, e))?;
            has_initramfs |= to == "initramfs.img";
        }
    }
    empty_dir(&boot)?;
    Ok((kver, has_initramfs))
}

fn write_kargs(root: &Path, kargs: &[String]) -> Result<()> {
    #[derive(serde::Serialize)]
    struct KArgs<'a> {
        kargs: &'a [String],
    }
    let text = toml::to_string(&KArgs { kargs }).expect("kargs serialize");
    write_atomic(&root.join(KARGS_FILE), text.as_bytes(), 0o644)
}

/// `etc` → `usr/etc`: the commit carries only the defaults; the deployment's
/// writable `/etc` is made from them (and merged) at deploy time.
fn move_etc(root: &Path) -> Result<()> {
    let etc = root.join("etc");
    let usr_etc = root.join("usr/etc");
    if usr_etc.exists() {
        return Err(Error::Compose(format!(
            "{} already exists; the tree must have only /etc",
            usr_etc.display()
        )));
    }
    if etc.is_dir() {
        fs::rename(&etc, &usr_etc).map_err(|e| Error::io(&etc, e))?;
    }
    Ok(())
}

/// Creates the symlinks `systemctl enable` would, from the unit's
/// `[Install]` section (`WantedBy=`, `RequiredBy=`, `Alias=`).
fn enable_unit(root: &Path, unit: &str) -> Result<()> {
    if unit.contains('@') {
        return Err(Error::Compose(format!(
            "enable: {unit}: template units are not supported"
        )));
    }
    // Search order of systemd's unit path for the system manager, minus /run.
    let found = [
        "etc/systemd/system",
        "usr/lib/systemd/system",
        "lib/systemd/system",
    ]
    .iter()
    .map(|d| (format!("/{d}/{unit}"), root.join(d).join(unit)))
    // Not `is_file`: an absolute symlink would resolve on the build host.
    .find(|(_, p)| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
    .ok_or_else(|| Error::Compose(format!("enable: unit {unit} not found in the tree")))?;
    let text = fs::read_to_string(&found.1).map_err(|e| Error::io(&found.1, e))?;
    let mut section = "";
    let mut links = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            section = line;
            continue;
        }
        if section != "[Install]" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        for v in value.split_whitespace() {
            match key.trim() {
                "WantedBy" => links.push(format!("{v}.wants/{unit}")),
                "RequiredBy" => links.push(format!("{v}.requires/{unit}")),
                "Alias" => links.push(v.to_string()),
                _ => {}
            }
        }
    }
    if links.is_empty() {
        return Err(Error::Compose(format!(
            "enable: {unit} ({}) has no WantedBy=, RequiredBy= or Alias= in [Install]",
            found.0
        )));
    }
    for link in links {
        let p = root.join("etc/systemd/system").join(&link);
        mkdirs(p.parent().expect("link has a parent"))?;
        remove_if_present(&p)?;
        symlink(&found.0, &p).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}
