//! The mount and umount stages (IG:internal/exec/stages/mount, umount): mount
//! every filesystem that has a `path` below the root, shallowest first, with
//! `mount -o <mountOptions> -t <format>`, and unmount them deepest first.
//! Mountpoints that had to be created are recorded in the state file
//! (`notatedDirectories`, root-relative) so the files stage can hand those
//! inside a home directory to the user.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use ignition_config::types::{Config, Filesystem};

use crate::error::{io_msg, path_err, Error, Result};
use crate::path::{clean, depth};
use crate::tools;

/// Filesystems to mount, with their config index, shallowest first (stable).
fn mountable(cfg: &Config) -> Vec<(usize, &Filesystem, &str)> {
    let mut v: Vec<(usize, &Filesystem, &str)> = cfg
        .storage
        .filesystems
        .iter()
        .enumerate()
        .filter_map(|(i, fs)| {
            let path = fs.path.as_deref().filter(|p| !p.is_empty())?;
            match fs.format.as_deref() {
                None | Some("") | Some("swap") | Some("none") => None,
                Some(_) => Some((i, fs, path)),
            }
        })
        .collect();
    v.sort_by_key(|(_, _, p)| depth(p));
    v
}

/// Mounts the config's filesystems under `root`; returns the directories it
/// created (root-relative, shallowest first).
pub fn mount(root: &Path, cfg: &Config) -> Result<Vec<String>> {
    let mut created = Vec::new();
    for (i, fs, path) in mountable(cfg) {
        let at = format!("$.storage.filesystems.{i}");
        // Mount paths are joined, not resolved: every component must be a
        // real directory (or missing), so no symlink can move the mount.
        let rel = clean(path);
        let target = root.join(rel.trim_start_matches('/'));
        check_directories(&target).map_err(|e| e.or_at(&format!("{at}.path")))?;
        let mut missing: Vec<PathBuf> = Vec::new();
        let mut p = target.clone();
        while !p.exists() && p.starts_with(root) && p != root {
            missing.push(p.clone());
            if !p.pop() {
                break;
            }
        }
        for d in missing.iter().rev() {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(d)
                .map_err(|e| path_err("mkdir", d, &e).or_at(&format!("{at}.path")))?;
            if let Ok(r) = d.strip_prefix(root) {
                created.push(format!("/{}", r.display()));
            }
        }
        let format = fs.format.as_deref().unwrap_or_default();
        let opts = fs.mount_options.join(",");
        let out = tools::command("mount")
            .args(["-o", &opts, "-t", format, &fs.device])
            .arg(tools::path_for_tool(&target))
            .output()
            .map_err(|e| Error::at(&at, format!("running mount: {}", io_msg(&e))))?;
        if !out.status.success() {
            return Err(Error::at(
                &at,
                format!(
                    "mounting {:?} at {:?} with type {format:?} and options {opts:?}: {}: {}",
                    fs.device,
                    target.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
    }
    Ok(created)
}

/// Unmounts what [`mount`] mounted, deepest first.
pub fn umount(root: &Path, cfg: &Config) -> Result<()> {
    let mut fss = mountable(cfg);
    fss.reverse();
    for (i, _, path) in fss {
        let target = root.join(clean(path).trim_start_matches('/'));
        let out = tools::command("umount")
            .arg(tools::path_for_tool(&target))
            .output()
            .map_err(|e| Error::new(format!("running umount: {}", io_msg(&e))))?;
        if !out.status.success() {
            return Err(Error::at(
                format!("$.storage.filesystems.{i}"),
                format!(
                    "unmounting {}: {}",
                    target.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
    }
    Ok(())
}

/// Fails if any existing component of `p` is not a directory (upstream
/// `checkForNonDirectories`).
fn check_directories(p: &Path) -> Result<()> {
    let mut cur = PathBuf::from("/");
    for c in p.components().skip(1) {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(path_err("lstat", &cur, &e)),
            Ok(md) if !md.is_dir() => {
                return Err(Error::new(format!(
                    "Mount path {:?} contains non-directory component {:?}",
                    p.display(),
                    cur.display()
                )))
            }
            Ok(_) => {}
        }
    }
    Ok(())
}
