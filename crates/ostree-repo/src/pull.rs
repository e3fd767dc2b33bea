//! `pull-local`: copy commits and everything they reference from another
//! repository on disk, converting between storage modes.

use crate::object::{self, Checksum, Commit, DirTree, ObjectType};
use crate::progress::{Phase, Progress};
use crate::{fsck, Error, Repo, RepoMode, Result};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;

/// A ref of a collection to pull (`find-remotes --pull`): upstream's
/// `OstreeCollectionRef`, optionally with the commit already known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionRef {
    /// Collection ID, e.g. `org.example.Os`.
    pub collection: String,
    /// Ref name within the collection.
    pub name: String,
    /// The commit to pull; `None` resolves it at the source.
    pub commit: Option<Checksum>,
}

/// A ref (or bare commit) a pull resolved at its source.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    /// Ref name; `None` when pulled by checksum.
    pub name: Option<String>,
    /// The collection the ref was found in at the source (`None`: the
    /// source has none), which decides where a mirror pull writes it.
    pub collection: Option<String>,
    pub commit: Checksum,
}

impl Wanted {
    /// The `(name, commit)` pairs static deltas are searched for.
    pub(crate) fn delta_targets(wanted: &[Wanted]) -> Vec<(Option<String>, Checksum)> {
        wanted.iter().map(|w| (w.name.clone(), w.commit)).collect()
    }
}

/// Queues the ref updates of a finished pull: a mirror keeps each ref in
/// its collection (the destination's own, or none, as a local ref; others
/// in `refs/mirrors/`), any other pull writes `refs/remotes/REMOTE/` (or
/// local refs when there is no remote name, as `pull-local` does).
pub(crate) fn queue_refs(
    tx: &crate::Transaction<'_>,
    wanted: &[Wanted],
    mirror: bool,
    remote: Option<&str>,
) -> Result<()> {
    for w in wanted {
        let Some(name) = &w.name else { continue };
        // A source's remote ref (`REMOTE:REF`) lands under its bare name.
        let name = name.split_once(':').map_or(name.as_str(), |(_, n)| n);
        if mirror {
            tx.set_collection_ref(w.collection.as_deref(), name, Some(w.commit))?;
        } else {
            tx.set_ref(remote, name, Some(w.commit))?;
        }
    }
    Ok(())
}

/// Upstream's `_ostree_repo_verify_bindings`: whether `commit` may be what
/// `ref_name` (pulled from a source of collection `collection_id`) points
/// to. A commit that lists the refs it was made for must list this one, so
/// a source cannot pass off one branch's commit as another's; when a
/// collection applies, the commit must also carry that collection in
/// `ostree.collection-binding` (and have a ref binding at all), so a
/// commit of another collection cannot be passed off as this one's.
/// `ref_name` is `None` for a commit pulled by checksum or reached as a
/// parent: then only the collection is checked.
pub fn verify_bindings(
    commit: &Commit,
    checksum: &Checksum,
    collection_id: Option<&str>,
    ref_name: Option<&str>,
) -> Result<()> {
    use crate::gvariant::{Type, Value};
    let fail = |msg: String| {
        Err(Error::Invalid(format!(
            "Commit {}: {msg}",
            object::to_hex(checksum)
        )))
    };
    // As GLib's typed lookup: a key of another type counts as absent.
    let refs: Option<Vec<&str>> = match commit.meta("ostree.ref-binding") {
        Some(Value::Array(Type::Str, items)) => Some(
            items
                .iter()
                .filter_map(|v| match v {
                    Value::Str(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    };
    let Some(refs) = refs else {
        if collection_id.is_none() {
            return Ok(());
        }
        return fail("Expected commit metadata to have ref binding information, found none".into());
    };
    if let Some(name) = ref_name {
        if !refs.contains(&name) {
            let listed = if refs.is_empty() {
                "no refs".to_string()
            } else {
                let quoted: Vec<String> = refs.iter().map(|r| format!("‘{r}’")).collect();
                quoted.join(", ")
            };
            return fail(format!(
                "Commit has no requested ref ‘{name}’ in ref binding metadata ({listed})"
            ));
        }
    }
    if let Some(want) = collection_id {
        match commit.meta("ostree.collection-binding") {
            Some(Value::Str(got)) if got == want => {}
            Some(Value::Str(got)) => {
                return fail(format!(
                    "Commit has collection ID ‘{got}’ in collection binding metadata, while the remote it came from has collection ID ‘{want}’"
                ))
            }
            _ => {
                return fail(
                    "Expected commit metadata to have collection ID binding information, found none"
                        .into(),
                )
            }
        }
    }
    Ok(())
}

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
    /// A mirror (`pull --mirror` from a `file://` remote): refs keep their
    /// collection ([`queue_refs`]) and, with no refs named, the source's
    /// mirrored collection refs are pulled too.
    pub mirror: bool,
    /// Skip [`verify_bindings`] (`--disable-verify-bindings`).
    pub disable_verify_bindings: bool,
    /// Collection refs to pull besides `refs` (`find-remotes --pull`).
    pub collection_refs: Vec<CollectionRef>,
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
    let wanted = resolve_local(src, refs, opts)?;
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
            &Wanted::delta_targets(&wanted),
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
    // Upstream takes a local source's own collection as the remote's.
    let collection_id = src.collection_id();
    for w in &wanted {
        let c = &w.commit;
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
            if !opts.disable_verify_bindings {
                let name = w.name.as_deref().filter(|_| cc == *c);
                verify_bindings(&commit, &cc, collection_id, name)?;
            }
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
    queue_refs(&tx, &wanted, opts.mirror, opts.remote.as_deref())?;
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

/// Resolves what a local pull takes from `src`: `refs` (names, checksums
/// or `REF@CHECKSUM`; every local ref when empty) and `collection_refs`.
fn resolve_local(src: &Repo, refs: &[String], opts: &PullLocalOptions) -> Result<Vec<Wanted>> {
    // Upstream learns a ref's collection from the source's summary, so a
    // mirror of a source without one keeps its refs local.
    let main = if opts.mirror {
        summary_collection_id(src)?
    } else {
        None
    };
    let mut wanted = Vec::new();
    if refs.is_empty() && opts.collection_refs.is_empty() {
        for (name, c) in src.list_refs(None)? {
            if name.contains(':') {
                // A mirror takes what the source publishes, which never
                // includes the refs it pulled from its own remotes.
                if opts.mirror {
                    continue;
                }
                // Otherwise a remote ref cannot be copied under its own
                // name (upstream's "known issue": it fails the same way).
                return Err(Error::Invalid(format!("Invalid ref name {name}")));
            }
            wanted.push(Wanted {
                name: Some(name),
                collection: main.clone(),
                commit: c,
            });
        }
        if opts.mirror {
            let own = src.collection_id();
            for ((coll, name), c) in src.list_collection_refs()? {
                if Some(coll.as_str()) != own {
                    wanted.push(Wanted {
                        name: Some(name),
                        collection: Some(coll),
                        commit: c,
                    });
                }
            }
        }
    }
    for r in refs {
        // `REF@CHECKSUM`: that commit, written to REF.
        if let Some((name, rev)) = r.split_once('@') {
            crate::validate_ref(name)?;
            let c = object::from_hex(rev)
                .ok_or_else(|| Error::Invalid(format!("Invalid checksum '{rev}' in '{r}'")))?;
            wanted.push(Wanted {
                name: Some(name.to_string()),
                collection: main.clone(),
                commit: c,
            });
            continue;
        }
        let c = src.resolve_rev(r, false)?.expect("allow_noent is false");
        let is_checksum = object::from_hex(r).is_some();
        wanted.push(Wanted {
            name: (!is_checksum).then(|| r.clone()),
            collection: main.clone(),
            commit: c,
        });
    }
    if !opts.collection_refs.is_empty() {
        let all = src.list_collection_refs()?;
        for cr in &opts.collection_refs {
            let key = (cr.collection.clone(), cr.name.clone());
            let commit = match cr.commit.or_else(|| all.get(&key).copied()) {
                Some(c) => c,
                None => {
                    return Err(Error::NotFound(format!(
                        "No such branch ({}, {}) in repository {}",
                        cr.collection,
                        cr.name,
                        src.path().display()
                    )))
                }
            };
            wanted.push(Wanted {
                name: Some(cr.name.clone()),
                collection: Some(cr.collection.clone()),
                commit,
            });
        }
    }
    Ok(wanted)
}

/// `ostree.summary.collection-id` of `repo`'s summary, if it has one.
fn summary_collection_id(repo: &Repo) -> Result<Option<String>> {
    let path = repo.path().join("summary");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    Ok(crate::summary::Summary::from_bytes(&bytes)?.collection_id())
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
