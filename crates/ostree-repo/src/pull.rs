//! `pull-local`: copy commits and everything they reference from another
//! repository on disk, converting between storage modes.

use crate::object::{self, Checksum, Commit, DirTree, ObjectType};
use crate::progress::{Phase, Progress};
use crate::{fsck, Error, Repo, RepoMode, Result};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;

/// Options of `ostree pull-local`.
#[derive(Debug, Clone, Default)]
pub struct PullLocalOptions {
    /// Parent commits to follow: 0 = none, -1 = all (`--depth`).
    pub depth: i64,
    /// Verify every object's checksum (`--untrusted`).
    pub untrusted: bool,
    /// Copy only commit objects (`--commit-metadata-only`).
    pub commit_metadata_only: bool,
    /// Write refs under `refs/remotes/REMOTE/` (`--remote`).
    pub remote: Option<String>,
    /// Reject content a bare-user-only repo could not hold: setuid/setgid
    /// or world-writable files (`--bareuseronly-files`).
    pub bareuseronly_files: bool,
    /// Use the source's static deltas when they help (`pull` from a
    /// `file://` remote does; `pull-local` only with `require_static_deltas`).
    pub static_deltas: bool,
    /// Fail unless every commit comes from a static delta
    /// (`--require-static-deltas`).
    pub require_static_deltas: bool,
    /// Only report what the deltas would transfer (`--dry-run`).
    pub dry_run: bool,
}

/// Counters of a pull.
#[derive(Debug, Clone, Default)]
pub struct PullStats {
    /// Metadata objects copied.
    pub metadata: u64,
    /// Content objects copied.
    pub content: u64,
    /// Payload bytes written.
    pub content_bytes: u64,
    /// Static-delta parts needed (with `dry_run`) or applied.
    pub delta: crate::delta::DeltaNeeds,
}

pub(crate) fn partial_path(repo: &Repo, c: &Checksum) -> std::path::PathBuf {
    repo.path()
        .join("state")
        .join(format!("{}.commitpartial", object::to_hex(c)))
}

/// Whether any commit of `repo` is marked partial: an interrupted pull may
/// then have published dirtrees whose children it never wrote, so a pull
/// must not take a stored dirtree as complete.
pub(crate) fn any_partial(repo: &Repo) -> Result<bool> {
    let dir = repo.path().join("state");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        if entry
            .file_name()
            .as_encoded_bytes()
            .ends_with(b".commitpartial")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Pulls `refs` (ref names or checksums; all local refs of `src` when
/// empty) from `src` into `dst`.
pub fn pull_local(
    src: &Repo,
    dst: &Repo,
    refs: &[String],
    opts: &PullLocalOptions,
) -> Result<PullStats> {
    pull_local_with_progress(src, dst, refs, opts, &Progress::default())
}

/// [`pull_local`], reporting into `progress` as it goes: dirtrees read
/// while [`Phase::Scanning`], then objects copied of those missing and
/// content bytes copied while [`Phase::Objects`]. `progress` is reset
/// first.
pub fn pull_local_with_progress(
    src: &Repo,
    dst: &Repo,
    refs: &[String],
    opts: &PullLocalOptions,
    progress: &Progress,
) -> Result<PullStats> {
    progress.reset();
    let mut wanted: Vec<(Option<String>, Checksum)> = Vec::new();
    if refs.is_empty() {
        for (name, c) in src.list_refs(None)? {
            // A remote ref cannot be mirrored under its own name (upstream's
            // "known issue": it fails the same way).
            if name.contains(':') {
                return Err(Error::Invalid(format!("Invalid ref name {name}")));
            }
            wanted.push((Some(name), c));
        }
    } else {
        for r in refs {
            // `REF@CHECKSUM`: that commit, written to REF.
            if let Some((name, rev)) = r.split_once('@') {
                crate::validate_ref(name)?;
                let c = object::from_hex(rev)
                    .ok_or_else(|| Error::Invalid(format!("Invalid checksum '{rev}' in '{r}'")))?;
                wanted.push((Some(name.to_string()), c));
                continue;
            }
            let c = src.resolve_rev(r, false)?.expect("allow_noent is false");
            let is_checksum = object::from_hex(r).is_some();
            wanted.push(((!is_checksum).then(|| r.clone()), c));
        }
    }
    if opts.require_static_deltas && dst.mode() == RepoMode::Archive {
        return Err(Error::Invalid(
            "Can't use static deltas in an archive repo".into(),
        ));
    }
    let tx = dst.begin()?;
    let mut delta_needs = crate::delta::DeltaNeeds::default();
    if (opts.static_deltas || opts.require_static_deltas)
        && !opts.commit_metadata_only
        && dst.mode() != RepoMode::Archive
    {
        let meta = match std::fs::read(src.path().join("summary")) {
            Ok(b) => crate::summary::Summary::from_bytes(&b)?.metadata,
            Err(_) => Vec::new(),
        };
        delta_needs = crate::delta::pull_deltas(
            &tx,
            &crate::delta::LocalFetcher(src),
            &meta,
            &wanted,
            opts.remote.as_deref(),
            opts.require_static_deltas,
            opts.dry_run,
        )?;
        if opts.dry_run {
            return Ok(PullStats {
                delta: delta_needs,
                ..Default::default()
            });
        }
    }
    progress.set_phase(Phase::Scanning);
    let mut metadata: BTreeSet<(ObjectType, Checksum)> = BTreeSet::new();
    let mut content: BTreeSet<Checksum> = BTreeSet::new();
    let mut commits = Vec::new();
    for (_, c) in &wanted {
        let mut cur = Some(*c);
        let mut depth = opts.depth;
        while let Some(cc) = cur {
            if !src.has_object(ObjectType::Commit, &cc) {
                if cc == *c {
                    return Err(Error::NotFound(format!(
                        "No such metadata object {}.commit",
                        object::to_hex(&cc)
                    )));
                }
                break; // history beyond this point is not in the source
            }
            let commit = src.load_commit(&cc)?;
            commits.push(cc);
            if !opts.commit_metadata_only {
                collect_tree(src, &commit, &mut metadata, &mut content, progress)?;
            }
            if depth == 0 {
                break;
            }
            depth -= 1;
            cur = commit.parent;
        }
    }
    // Mark commits partial while their objects are being copied, so an
    // interrupted pull is visible (and completed by the next one).
    for c in &commits {
        if !dst.has_object(ObjectType::Commit, c) || partial_path(dst, c).exists() {
            crate::repo::write_file_atomic(&partial_path(dst, c), b"", false)?;
        }
    }
    // Same storage format: objects can be shared by hardlink, as upstream does.
    let same_mode = src.mode() == dst.mode();
    let content: Vec<Checksum> = content.into_iter().collect();
    let mut meta_list: Vec<(ObjectType, Checksum)> = metadata.into_iter().collect();
    meta_list.extend(commits.iter().map(|c| (ObjectType::Commit, *c)));
    // Everything counts as needed until found present: checking up front
    // would serialize tens of thousands of stats before any copying.
    progress.set_requested((content.len() + meta_list.len()) as u64);
    progress.set_phase(Phase::Objects);
    content.par_iter().try_for_each(|c| -> Result<()> {
        if tx.has_object(ObjectType::File, c) {
            progress.not_needed();
            return Ok(());
        }
        copy_content(src, dst, &tx, c, same_mode, opts, progress)?;
        progress.done(1);
        Ok(())
    })?;
    for (ty, c) in meta_list {
        if tx.has_object(ty, &c) {
            progress.not_needed();
            continue;
        }
        let bytes = src.read_metadata(ty, &c)?;
        if opts.untrusted {
            fsck::verify_metadata(ty, &c, &bytes)?;
        }
        // Metadata objects have the same format in every mode: always shared.
        let got = if tx.link_object(ty, &c, &src.object_path(ty, &c))? {
            c
        } else {
            tx.write_metadata(ty, &bytes)?
        };
        if got != c {
            return Err(Error::Corrupt(format!(
                "Corrupted {} object; checksum expected='{}' actual='{}'",
                ty.extension(),
                object::to_hex(&c),
                object::to_hex(&got)
            )));
        }
        if ty == ObjectType::Commit {
            if let Some(d) = src.read_commit_detached_metadata(&c)? {
                tx.write_commit_detached_metadata(&c, Some(&d))?;
            }
        }
        progress.done(1);
    }
    for (name, c) in &wanted {
        if let Some(n) = name {
            let (remote, n) = match n.split_once(':') {
                Some((_, n)) => (opts.remote.as_deref(), n),
                None => (opts.remote.as_deref(), n.as_str()),
            };
            tx.set_ref(remote, n, Some(*c))?;
        }
    }
    let stats = PullStats {
        metadata: tx.stats.metadata_written.load(Relaxed),
        content: tx.stats.content_written.load(Relaxed),
        content_bytes: tx.stats.content_bytes_written.load(Relaxed),
        delta: delta_needs,
    };
    tx.commit()?;
    if !opts.commit_metadata_only {
        for c in &commits {
            let _ = std::fs::remove_file(partial_path(dst, c));
        }
    }
    Ok(stats)
}

/// Copies one content object `dst` lacks: hardlinked when the formats
/// allow, else converted through the transaction.
fn copy_content(
    src: &Repo,
    dst: &Repo,
    tx: &crate::Transaction<'_>,
    c: &Checksum,
    same_mode: bool,
    opts: &PullLocalOptions,
    progress: &Progress,
) -> Result<()> {
    if opts.untrusted {
        fsck::verify_content(src, c)?;
    }
    if opts.bareuseronly_files {
        let m = src.open_content(c)?.header.mode;
        if object::mode::is_reg(m) && m & !(object::mode::S_IFMT | 0o775) != 0 {
            return Err(Error::Invalid(format!(
                "Content object {}: invalid mode 0{m:04o} with bits 0{:04o}",
                object::to_hex(c),
                m & 0o7777 & !0o775
            )));
        }
    }
    if same_mode && tx.link_object(ObjectType::File, c, &src.object_path(ObjectType::File, c))? {
        return Ok(());
    }
    let mut obj = src.open_content(c)?;
    // A bare-user object whose metadata is already canonical is, byte
    // for byte and mode for mode, a valid bare-user-only object.
    let h = &obj.header;
    if src.mode() == RepoMode::BareUser
        && dst.mode() == RepoMode::BareUserOnly
        && object::mode::is_reg(h.mode)
        && (h.uid, h.gid) == (0, 0)
        && h.xattrs.is_empty()
    {
        if let Some(p) = &obj.path {
            use std::os::unix::fs::PermissionsExt;
            let disk = std::fs::metadata(p).map(|m| m.permissions().mode() & 0o7777);
            if disk.ok() == Some(h.mode & 0o7777) && tx.link_object(ObjectType::File, c, p)? {
                return Ok(());
            }
        }
    }
    let size = obj.size;
    tx.write_content(c, &obj.header.clone(), &mut obj.payload, size)?;
    progress.bytes(size);
    Ok(())
}

fn collect_tree(
    src: &Repo,
    commit: &Commit,
    metadata: &mut BTreeSet<(ObjectType, Checksum)>,
    content: &mut BTreeSet<Checksum>,
    progress: &Progress,
) -> Result<()> {
    let mut stack = vec![(commit.root_tree, commit.root_meta)];
    while let Some((t, m)) = stack.pop() {
        metadata.insert((ObjectType::DirMeta, m));
        if !metadata.insert((ObjectType::DirTree, t)) {
            continue;
        }
        let tree = DirTree::from_bytes(&src.read_metadata(ObjectType::DirTree, &t)?)
            .map_err(|e| Error::Corrupt(format!("{}.dirtree: {e}", object::to_hex(&t))))?;
        progress.scanned(1);
        content.extend(tree.files.iter().map(|(_, c)| *c));
        stack.extend(tree.dirs.iter().map(|(_, tc, mc)| (*tc, *mc)));
    }
    Ok(())
}
