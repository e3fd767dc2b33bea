//! Resolving config paths inside the target root (upstream `Util.JoinPath`):
//! every component but the last is resolved through symlinks that already exist
//! in the root, interpreting their targets relative to the root, so the result
//! always stays below the root whatever the symlinks say.
//!
//! Upstream resolves each component's symlink once; a target that is itself
//! (or passes through) another symlink is then left to the kernel, which would
//! follow an absolute link out of the root. Here targets are resolved again,
//! component by component, so chains stay inside too (same result whenever
//! upstream's stays inside the root).

use std::io;
use std::path::{Path, PathBuf};

/// Symlinks followed while resolving one path before giving up (Linux's limit).
const MAX_LINKS: usize = 40;

/// `path.Clean` for absolute slash paths: collapses `//`, `.` and `..`
/// (`..` at the root stays at the root).
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// Path depth as upstream's `util.Depth` counts it: `/` is 0, `/a` is 1.
pub fn depth(p: &str) -> usize {
    clean(p).split('/').filter(|c| !c.is_empty()).count()
}

/// Resolves `path` (absolute, in the root's namespace) to a host path below
/// `root`. The last component is not followed.
pub fn join_path(root: &Path, path: &str) -> io::Result<PathBuf> {
    let cleaned = clean(path);
    let mut comps: Vec<String> = cleaned
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    let last = match comps.pop() {
        Some(l) => l,
        None => return Ok(root.to_path_buf()),
    };
    let mut links = 0;
    let dir = resolve_dir(root, &comps, &mut links)?;
    Ok(host(root, &dir).join(last))
}

/// Resolves directory components fully; returns the real path (root-relative,
/// as a list of components) they lead to.
fn resolve_dir(root: &Path, comps: &[String], links: &mut usize) -> io::Result<Vec<String>> {
    let mut real: Vec<String> = Vec::new();
    for c in comps {
        real.push(c.clone());
        let hp = host(root, &real);
        match std::fs::symlink_metadata(&hp) {
            Ok(md) if md.file_type().is_symlink() => {
                *links += 1;
                if *links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving {}",
                        hp.display()
                    )));
                }
                let target = std::fs::read_link(&hp)?;
                let target = target.to_string_lossy();
                real.pop();
                let joined = if target.starts_with('/') {
                    clean(&target)
                } else {
                    clean(&format!("/{}/{}", real.join("/"), target))
                };
                let tcomps: Vec<String> = joined
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect();
                real = resolve_dir(root, &tcomps, links)?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // ENOTDIR: a component is a file; leave the error to the operation.
            Err(e) if e.raw_os_error() == Some(20) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(real)
}

fn host(root: &Path, comps: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in comps {
        p.push(c);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn clean_and_depth() {
        assert_eq!(clean("/a//b/./c/.."), "/a/b");
        assert_eq!(clean("/../.."), "/");
        assert_eq!(depth("/"), 0);
        assert_eq!(depth("/a/b"), 2);
    }

    #[test]
    fn symlinks_stay_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("real/sub")).unwrap();
        symlink("/real", r.join("abs")).unwrap();
        symlink("../../../..", r.join("up")).unwrap();
        symlink("/etc", r.join("real/etc")).unwrap();
        symlink("abs/sub", r.join("chain")).unwrap();
        assert_eq!(join_path(r, "/abs/x").unwrap(), r.join("real/x"));
        assert_eq!(join_path(r, "/up/x").unwrap(), r.join("x"));
        // The last component is never followed.
        assert_eq!(join_path(r, "/abs").unwrap(), r.join("abs"));
        // A link to an absolute path means the root's /etc, not the host's.
        assert_eq!(
            join_path(r, "/real/etc/passwd").unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(join_path(r, "/chain/f").unwrap(), r.join("real/sub/f"));
        symlink("loop", r.join("loop")).unwrap();
        assert!(join_path(r, "/loop/x").is_err());
    }
}
