//! Small file-system helpers: atomic writes and overlay copies.

use crate::{Error, Result};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

/// Writes `data` to `path` through a temporary file in the same directory,
/// fsynced and renamed over the target, so readers see the old or the new
/// content, never a torn file. Creates missing parent directories.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Compose(format!("{}: no parent directory", path.display())))?;
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Copies the tree `src` over `dst`: directories are merged, files and
/// symlinks replace what is there. Modes are kept; ownership becomes the
/// caller's (root in a build), which is what overlay files want.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(|e| Error::io(src, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(src, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let from = e.path();
        let to = dst.join(e.file_name());
        let meta = fs::symlink_metadata(&from).map_err(|e| Error::io(&from, e))?;
        if meta.is_dir() {
            // A symlink to a directory (Debian's merged /lib -> usr/lib) is
            // merged into, not replaced.
            if fs::metadata(&to).is_ok_and(|m| m.is_dir()) {
                copy_tree(&from, &to)?;
                continue;
            }
            if fs::symlink_metadata(&to).is_ok() {
                fs::remove_file(&to).map_err(|e| Error::io(&to, e))?;
            }
            copy_tree(&from, &to)?;
            fs::set_permissions(&to, meta.permissions()).map_err(|e| Error::io(&to, e))?;
        } else {
            if let Ok(m) = fs::symlink_metadata(&to) {
                if m.is_dir() {
                    return Err(Error::Compose(format!(
                        "overlay {} would replace the directory {}",
                        from.display(),
                        to.display()
                    )));
                }
                fs::remove_file(&to).map_err(|e| Error::io(&to, e))?;
            }
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&from).map_err(|e| Error::io(&from, e))?;
                symlink(target, &to).map_err(|e| Error::io(&to, e))?;
            } else if meta.is_file() {
                fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
            } else {
                return Err(Error::Compose(format!(
                    "overlay {}: only files, directories and symlinks are supported",
                    from.display()
                )));
            }
        }
    }
    Ok(())
}
