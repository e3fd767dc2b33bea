//! The `/etc` three-way merge (upstream `merge_configuration_from`,
//! `ostree-sysroot-deploy.c`): the old defaults (`usr/etc` of the merge
//! deployment) are diffed against the current `/etc`; every local change
//! is replayed onto the new deployment's fresh copy of its defaults.
//!
//! Local edits win whole-file (no line merging), local deletions stick,
//! untouched files follow the new defaults. Extended attributes are
//! ignored by the diff (SELinux labels differ between `usr/etc` and `etc`)
//! but copied with the files.

use crate::fsutil::{self, io_at};
use crate::{Error, Result};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Differences of the current `/etc` against its defaults, as relative paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcDiff {
    /// Present in both with different content, owner, mode or type.
    pub modified: Vec<String>,
    /// Only in the current `/etc` (directories reported once, not their contents).
    pub added: Vec<String>,
    /// Only in the defaults.
    pub removed: Vec<String>,
}

/// What [`merge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// The diff that was replayed.
    pub diff: EtcDiff,
    /// Paths not carried over because they are neither regular files,
    /// symlinks nor directories (fifos, sockets, devices).
    pub skipped: Vec<String>,
}

fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(io_at("reading", dir))? {
        let e = e.map_err(io_at("reading", dir))?;
        v.push(e.file_name().to_string_lossy().into_owned());
    }
    v.sort();
    Ok(v)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = fs::File::open(a).map_err(io_at("opening", a))?;
    let mut fb = fs::File::open(b).map_err(io_at("opening", b))?;
    let (mut ba, mut bb) = (vec![0u8; 65536], vec![0u8; 65536]);
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(io_at("reading", a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(io_at("reading", b))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Whether two non-directories differ the way upstream's content checksum
/// (content + uid + gid + mode, or symlink target) would.
fn node_differs(a: &Path, ma: &fs::Metadata, b: &Path, mb: &fs::Metadata) -> Result<bool> {
    if ma.file_type() != mb.file_type() || ma.uid() != mb.uid() || ma.gid() != mb.gid() {
        return Ok(true);
    }
    if ma.file_type().is_symlink() {
        return Ok(fs::read_link(a).map_err(io_at("readlink", a))?
            != fs::read_link(b).map_err(io_at("readlink", b))?);
    }
    if ma.mode() != mb.mode() {
        return Ok(true);
    }
    if ma.is_file() {
        return Ok(ma.len() != mb.len() || !same_content(a, b)?);
    }
    Ok(false)
}

fn diff_rec(orig: &Path, cur: &Path, rel: &str, out: &mut EtcDiff) -> Result<()> {
    let on = sorted_names(orig)?;
    let cn = sorted_names(cur)?;
    for n in &on {
        let r = if rel.is_empty() {
            n.clone()
        } else {
            format!("{rel}/{n}")
        };
        let (po, pc) = (orig.join(n), cur.join(n));
        let mo = fs::symlink_metadata(&po).map_err(io_at("stat", &po))?;
        let mc = match fs::symlink_metadata(&pc) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                out.removed.push(r);
                continue;
            }
            Err(e) => return Err(Error::io(format!("stat {}", pc.display()), e)),
        };
        if mo.is_dir() && mc.is_dir() {
            diff_rec(&po, &pc, &r, out)?;
        } else if mo.is_dir() != mc.is_dir() || node_differs(&po, &mo, &pc, &mc)? {
            out.modified.push(r);
        }
    }
    for n in cn {
        if on.binary_search(&n).is_err() {
            out.added.push(if rel.is_empty() {
                n
            } else {
                format!("{rel}/{n}")
            });
        }
    }
    Ok(())
}

/// Diffs the current `/etc` (`cur`) against its defaults (`orig`).
pub fn diff(orig: &Path, cur: &Path) -> Result<EtcDiff> {
    let mut out = EtcDiff::default();
    diff_rec(orig, cur, "", &mut out)?;
    Ok(out)
}

/// Creates the missing ancestors of `rel` in `new`, copying each one's
/// metadata from the current `/etc`.
fn ensure_parents(cur: &Path, new: &Path, rel: &str) -> Result<()> {
    let mut acc = String::new();
    let comps: Vec<&str> = rel.split('/').collect();
    for c in &comps[..comps.len() - 1] {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(c);
        let np = new.join(&acc);
        match fs::symlink_metadata(&np) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Invalid(format!(
                    "Modified config file /etc/{rel}: parent /etc/{acc} is no longer a directory in the new defaults"
                )))
            }
            Err(_) => fsutil::copy_dir_meta(&cur.join(&acc), &np)?,
        }
    }
    Ok(())
}

fn copy_modified(cur: &Path, new: &Path, rel: &str, skipped: &mut Vec<String>) -> Result<()> {
    let src = cur.join(rel);
    let dst = new.join(rel);
    let ms = fs::symlink_metadata(&src).map_err(io_at("stat", &src))?;
    let ft = ms.file_type();
    if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
        skipped.push(rel.to_string());
        return Ok(());
    }
    ensure_parents(cur, new, rel)?;
    let existing = fs::symlink_metadata(&dst).ok();
    if ft.is_dir() {
        if existing.as_ref().is_some_and(|m| !m.is_dir()) {
            fsutil::remove_all(&dst)?;
        }
        return fsutil::copy_tree(&src, &dst);
    }
    if let Some(m) = existing {
        if m.is_dir() {
            // Upstream's wording; the update is refused rather than silently
            // dropping either the local file or the new default directory.
            return Err(Error::Invalid(format!(
                "Modified config file newly defaults to directory: /etc/{rel}"
            )));
        }
        fsutil::remove_all(&dst)?;
    }
    fsutil::copy_node(&src, &dst)?;
    Ok(())
}

/// Three-way merge: replays the changes of `cur` relative to `orig` onto
/// `new` (which holds a fresh copy of the new defaults).
pub fn merge(orig: &Path, cur: &Path, new: &Path) -> Result<MergeReport> {
    let d = diff(orig, cur)?;
    let mut skipped = Vec::new();
    for r in &d.removed {
        fsutil::remove_all(&new.join(r))?;
    }
    for r in d.modified.iter().chain(&d.added) {
        copy_modified(cur, new, r, &mut skipped)?;
    }
    // Files inside added directories that could not be copied.
    for r in &d.added {
        collect_special(&cur.join(r), r, &mut skipped)?;
    }
    skipped.sort();
    skipped.dedup();
    Ok(MergeReport { diff: d, skipped })
}

fn collect_special(p: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    let m = fs::symlink_metadata(p).map_err(io_at("stat", p))?;
    if m.is_dir() {
        for n in sorted_names(p)? {
            collect_special(&p.join(&n), &format!("{rel}/{n}"), out)?;
        }
    } else if !(m.is_file() || m.file_type().is_symlink()) {
        out.push(rel.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn w(p: &Path, s: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    /// orig = old defaults; cur = copy of orig then local changes; new = new defaults.
    fn setup() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        std::path::PathBuf,
        std::path::PathBuf,
    ) {
        let t = tempfile::tempdir().unwrap();
        let (o, c, n) = (t.path().join("o"), t.path().join("c"), t.path().join("n"));
        for d in [&o, &n] {
            w(&d.join("keep.conf"), "k=1\n");
            w(&d.join("edit.conf"), "e=1\n");
            w(&d.join("gone.conf"), "g=1\n");
            w(&d.join("sub/x.conf"), "x=1\n");
            w(&d.join("filedir"), "plain file\n");
            symlink("keep.conf", d.join("link")).unwrap();
        }
        // New defaults change two files.
        w(&n.join("keep.conf"), "k=2\n");
        w(&n.join("edit.conf"), "e=2\n");
        fsutil::copy_tree(&o, &c).unwrap();
        (t, o, c, n)
    }

    #[test]
    fn untouched_follow_defaults_edits_win_deletions_stick() {
        let (_t, o, c, n) = setup();
        w(&c.join("edit.conf"), "e=LOCAL\n");
        fs::remove_file(c.join("gone.conf")).unwrap();
        w(&c.join("new.conf"), "new\n");
        let r = merge(&o, &c, &n).unwrap();
        assert_eq!(r.diff.modified, ["edit.conf"]);
        assert_eq!(r.diff.added, ["new.conf"]);
        assert_eq!(r.diff.removed, ["gone.conf"]);
        assert_eq!(fs::read_to_string(n.join("keep.conf")).unwrap(), "k=2\n");
        assert_eq!(
            fs::read_to_string(n.join("edit.conf")).unwrap(),
            "e=LOCAL\n"
        );
        assert!(!n.join("gone.conf").exists());
        assert_eq!(fs::read_to_string(n.join("new.conf")).unwrap(), "new\n");
    }

    #[test]
    fn mode_change_is_a_modification() {
        let (_t, o, c, n) = setup();
        fs::set_permissions(c.join("sub/x.conf"), fs::Permissions::from_mode(0o600)).unwrap();
        let r = merge(&o, &c, &n).unwrap();
        assert_eq!(r.diff.modified, ["sub/x.conf"]);
        assert_eq!(mode(&n.join("sub/x.conf")), 0o600);
    }

    #[test]
    fn symlinks_not_followed_and_retargeted() {
        let (_t, o, c, n) = setup();
        fs::remove_file(c.join("link")).unwrap();
        symlink("no-such-file", c.join("link")).unwrap();
        symlink("../nowhere", c.join("dangling")).unwrap();
        merge(&o, &c, &n).unwrap();
        assert_eq!(
            fs::read_link(n.join("link")).unwrap(),
            Path::new("no-such-file")
        );
        assert_eq!(
            fs::read_link(n.join("dangling")).unwrap(),
            Path::new("../nowhere")
        );
    }

    #[test]
    fn file_replaced_by_dir_locally() {
        let (_t, o, c, n) = setup();
        fs::remove_file(c.join("filedir")).unwrap();
        w(&c.join("filedir/inner"), "i\n");
        let r = merge(&o, &c, &n).unwrap();
        assert_eq!(r.diff.modified, ["filedir"]);
        assert_eq!(fs::read_to_string(n.join("filedir/inner")).unwrap(), "i\n");
    }

    #[test]
    fn dir_replaced_by_file_locally_is_refused_while_default_is_dir() {
        // Upstream refuses rather than deleting the default directory.
        let (_t, o, c, n) = setup();
        fs::remove_dir_all(c.join("sub")).unwrap();
        w(&c.join("sub"), "now a file\n");
        let e = merge(&o, &c, &n).unwrap_err().to_string();
        assert!(e.contains("newly defaults to directory: /etc/sub"), "{e}");
    }

    #[test]
    fn modified_file_that_becomes_default_dir_is_refused() {
        let (_t, o, c, n) = setup();
        w(&c.join("filedir"), "local edit\n");
        fs::remove_file(n.join("filedir")).unwrap();
        fs::create_dir(n.join("filedir")).unwrap();
        let e = merge(&o, &c, &n).unwrap_err().to_string();
        assert!(
            e.contains("Modified config file newly defaults to directory"),
            "{e}"
        );
    }

    #[test]
    fn added_dir_chain_keeps_modes_and_fifo_skipped() {
        let (_t, o, c, n) = setup();
        fs::create_dir_all(c.join("a/long/dir/chain")).unwrap();
        for (p, m) in [
            ("a", 0o700),
            ("a/long", 0o770),
            ("a/long/dir", 0o777),
            ("a/long/dir/chain", 0o707),
        ] {
            fs::set_permissions(c.join(p), fs::Permissions::from_mode(m)).unwrap();
        }
        let fifo = std::ffi::CString::new(c.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let r = merge(&o, &c, &n).unwrap();
        assert_eq!(r.skipped, ["fifo"]);
        assert!(!n.join("fifo").exists());
        assert_eq!(mode(&n.join("a")), 0o700);
        assert_eq!(mode(&n.join("a/long")), 0o770);
        assert_eq!(mode(&n.join("a/long/dir")), 0o777);
        assert_eq!(mode(&n.join("a/long/dir/chain")), 0o707);
    }

    #[test]
    fn added_file_under_dir_removed_from_defaults() {
        let (_t, o, c, n) = setup();
        fs::set_permissions(c.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
        w(&c.join("sub/mine"), "m\n");
        fs::remove_dir_all(n.join("sub")).unwrap();
        let r = merge(&o, &c, &n).unwrap();
        assert_eq!(r.diff.added, ["sub/mine"]);
        assert_eq!(fs::read_to_string(n.join("sub/mine")).unwrap(), "m\n");
        // The recreated parent takes the local directory's metadata.
        assert_eq!(mode(&n.join("sub")), 0o750);
        // The default file that went away with the directory stays away.
        assert!(!n.join("sub/x.conf").exists());
    }

    #[test]
    fn local_edit_equal_to_default_resumes_tracking() {
        let (_t, o, c, n) = setup();
        // Same bytes as the old default: not a modification.
        w(&c.join("edit.conf"), "e=1\n");
        let r = merge(&o, &c, &n).unwrap();
        assert!(r.diff.modified.is_empty());
        assert_eq!(fs::read_to_string(n.join("edit.conf")).unwrap(), "e=2\n");
    }

    #[test]
    fn xattrs_are_carried_when_supported() {
        let (_t, o, c, n) = setup();
        w(&c.join("x.conf"), "x\n");
        let p = c.join("x.conf");
        if fsutil::lset_xattrs(&p, &[(b"user.test".to_vec(), b"v".to_vec())]).is_err()
            || fsutil::lget_xattrs(&p).unwrap().is_empty()
        {
            // The filesystem under the temp dir has no user xattrs; nothing to check.
            return;
        }
        merge(&o, &c, &n).unwrap();
        let x = fsutil::lget_xattrs(&n.join("x.conf")).unwrap();
        assert!(x.contains(&(b"user.test".to_vec(), b"v".to_vec())));
    }
}
