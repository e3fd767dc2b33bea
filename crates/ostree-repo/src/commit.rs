//! Committing directory trees: scan, hash every file first, write only the
//! objects that are missing, then the dirtrees, dirmetas and the commit.
//!
//! Files are hashed and (when missing) written in parallel while the scan
//! goes on; payloads are streamed, never held whole in memory.

use crate::gvariant::Value;
use crate::object::{
    self, mode, Checksum, Commit, ContentHasher, DirMeta, DirTree, FileHeader, ObjectType,
};
use crate::progress::{Phase, Progress};
use crate::repo::Transaction;
use crate::{sys, Error, Repo, RepoMode, Result};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

pub use crate::statcache::applies_to as stat_cache_applies;

/// Where a commit's tree comes from; several sources are overlaid in order.
#[derive(Debug, Clone)]
pub enum TreeSource {
    /// A directory on disk (`--tree=dir=PATH` or the positional PATH).
    Dir(PathBuf),
    /// The tree of an existing commit (`--tree=ref=REV`).
    Ref(String),
}

/// Options of `ostree commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Ref to update (`-b`); also recorded in `ostree.ref-binding`.
    pub branch: Option<String>,
    /// Commit without updating a ref (`--orphan`).
    pub orphan: bool,
    /// Explicit parent (`--parent`); `Some(None)` means none. Default: the
    /// branch's current commit.
    pub parent: Option<Option<Checksum>>,
    /// Subject line (`-s`).
    pub subject: String,
    /// Body (`-m`).
    pub body: String,
    /// Seconds since the epoch; default: now.
    pub timestamp: Option<u64>,
    /// Commit metadata in order (`--add-metadata-string`, `--add-metadata`).
    pub metadata: Vec<(String, Value)>,
    /// Detached metadata (`--add-detached-metadata-string`).
    pub detached_metadata: Vec<(String, Value)>,
    /// Override every owner uid (`--owner-uid`).
    pub owner_uid: Option<u32>,
    /// Override every owner gid (`--owner-gid`).
    pub owner_gid: Option<u32>,
    /// uid/gid 0, modes masked to 0755, no xattrs (`--canonical-permissions`;
    /// always on in bare-user-only repos).
    pub canonical_permissions: bool,
    /// Do not record xattrs (`--no-xattrs`).
    pub no_xattrs: bool,
    /// Extra refs for `ostree.ref-binding` (`--bind-ref`).
    pub bind_refs: Vec<String>,
    /// Do not add `ostree.ref-binding` (`--no-bindings`).
    pub no_bindings: bool,
    /// Add `ostree.bootable` and `ostree.linux` (`--bootable`).
    pub bootable: bool,
    /// Mode bits OR-ed into these paths (`--statoverride` lines `[+]MODE PATH`).
    pub mode_adds: BTreeMap<String, u32>,
    /// Permission bits replacing these paths' (`--statoverride` lines `=MODE PATH`).
    pub mode_overrides: BTreeMap<String, u32>,
    /// Absolute paths (in the commit) to leave out (`--skip-list`).
    pub skip_list: std::collections::BTreeSet<String>,
    /// Executables lose their write bits (`--mode-ro-executables`).
    pub mode_ro_executables: bool,
    /// Metadata keys copied from the parent commit (`--keep-metadata`).
    pub keep_metadata: Vec<String>,
    /// Files that are hardlinks of this repo's objects (a hardlinked
    /// checkout) reuse the object, metadata included, instead of being
    /// re-read (`--link-checkout-speedup`; bare and bare-user repos).
    pub link_checkout_speedup: bool,
    /// Like `link_checkout_speedup`, but hardlinked objects are reused
    /// exactly, ignoring ownership/mode modifiers (`-I`,
    /// `--devino-canonical`).
    pub devino_canonical: bool,
    /// The input trees will be deleted after the commit (`--consume`):
    /// files may be moved into the repository instead of copied.
    pub consume: bool,
}

/// Result of a commit.
#[derive(Debug, Clone)]
pub struct CommitOutcome {
    /// The new commit.
    pub checksum: Checksum,
    /// Metadata objects referenced / written.
    pub metadata_total: u64,
    /// Metadata objects written.
    pub metadata_written: u64,
    /// Content objects referenced.
    pub content_total: u64,
    /// Content objects written.
    pub content_written: u64,
    /// Files reused through the hardlink (devino) cache.
    pub content_cache_hits: u64,
    /// Files not read because an earlier commit hashed them unchanged
    /// (the stat cache, [`crate::statcache`]).
    pub stat_cache_hits: u64,
    /// Payload bytes written.
    pub content_bytes_written: u64,
}

enum FileRef {
    Pending(usize),
    Done(Checksum),
}

#[derive(Default)]
struct MTree {
    meta: Option<Checksum>,
    files: BTreeMap<String, FileRef>,
    dirs: BTreeMap<String, MTree>,
}

struct PendingFile {
    path: PathBuf,
    header: FileHeader,
    size: u64,
    // With --consume: the file itself already is the object (bare and
    // bare-user-only repos, metadata unchanged), so it is hardlinked into
    // the repo instead of copied.
    adopt: bool,
}

struct Modifier<'a> {
    opts: &'a CommitOptions,
    canonical: bool,
    repo: &'a Repo,
    // (st_dev, st_ino) -> content object, for --link-checkout-speedup.
    devino: std::collections::HashMap<(u64, u64), Checksum>,
    cache_hits: AtomicU64,
    stat_cache: crate::statcache::StatCache,
    progress: &'a Progress,
}

impl Modifier<'_> {
    fn skip(&self, path: &str) -> bool {
        self.opts.skip_list.contains(path)
    }

    fn apply(
        &self,
        path: &str,
        uid: u32,
        gid: u32,
        mut m: u32,
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> (u32, u32, u32, object::Xattrs) {
        // Same order as upstream: ownership and stat overrides first, then
        // canonicalization (so bare-user-only still strips setuid).
        if let Some(add) = self.opts.mode_adds.get(path) {
            m |= add;
        } else if let Some(ov) = self.opts.mode_overrides.get(path) {
            m = (m & mode::S_IFMT) | ov;
        }
        if self.opts.mode_ro_executables && mode::is_reg(m) && m & 0o111 != 0 {
            m &= !0o222;
        }
        if self.canonical {
            let m = if mode::is_lnk(m) {
                m
            } else {
                m & (mode::S_IFMT | 0o755)
            };
            return (0, 0, m, Vec::new());
        }
        (
            self.opts.owner_uid.unwrap_or(uid),
            self.opts.owner_gid.unwrap_or(gid),
            m,
            if self.opts.no_xattrs {
                Vec::new()
            } else {
                xattrs
            },
        )
    }
}

/// Files per pool task at most: enough to make the per-task cost vanish,
/// few enough to keep both cores busy on a small tree.
const BATCH_FILES: usize = 32;
/// Bytes per pool task at most, so that big files spread over threads.
const BATCH_BYTES: u64 = 1 << 20;

/// Batches handed out and not finished, at most, before the walk helps.
const MAX_PENDING_BATCHES: usize = 64;

/// Counts a pool task as finished however it ends.
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A file or symlink the scan found, handed to the pool.
struct Found {
    path: PathBuf,
    // Stat'ed by the scan relative to the open directory (a `DirEntry`
    // would keep its directory's fd open until the pool gets to it).
    md: fs::Metadata,
    // Path in the commit (`/usr/bin/x`), for the modifiers.
    rel: String,
}

/// Takes each file the scan finds and returns its index in the commit's
/// file list ([`FileRef::Pending`]).
type Sink<'a> = dyn FnMut(Found) -> usize + 'a;

/// Scans `dir` into `tree`, overlaying what is already there; files go to
/// `sink` as they are found. The walk is the one serial part of a commit,
/// so beyond a stat everything a file needs is done on the pool
/// ([`process_found`]).
fn scan_dir(
    tx: &Transaction<'_>,
    dir: &Path,
    rel: &str,
    md: &fs::Metadata,
    tree: &mut MTree,
    sink: &mut Sink<'_>,
    modi: &Modifier<'_>,
) -> Result<()> {
    let xattrs = if modi.opts.no_xattrs || modi.canonical {
        Vec::new()
    } else {
        sys::lget_xattrs(dir)?
    };
    let relp = if rel.is_empty() { "/" } else { rel };
    let (uid, gid, m, xattrs) = modi.apply(relp, md.uid(), md.gid(), md.mode(), xattrs);
    let dm = DirMeta {
        uid,
        gid,
        mode: m,
        xattrs,
    };
    tree.meta = Some(tx.write_metadata(ObjectType::DirMeta, &dm.to_bytes())?);
    let rd = fs::read_dir(dir).map_err(|e| Error::io(format!("opendir({})", dir.display()), e))?;
    let mut entries: Vec<_> = rd
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io(format!("readdir({})", dir.display()), e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().into_string().map_err(|n| {
            Error::Invalid(format!(
                "Invalid UTF-8 in filename {}",
                Path::new(&n).display()
            ))
        })?;
        let child_rel = format!("{rel}/{name}");
        if modi.skip(&child_rel) {
            continue;
        }
        let path = e.path();
        // Relative to the open directory: no walk of the whole path.
        let md = e
            .metadata()
            .map_err(|e| Error::io(format!("lstat {}", path.display()), e))?;
        let ft = md.file_type();
        if ft.is_dir() {
            tree.files.remove(&name);
            let sub = tree.dirs.entry(name).or_default();
            scan_dir(tx, &path, &child_rel, &md, sub, sink, modi)?;
            continue;
        }
        if !ft.is_file() && !ft.is_symlink() {
            return Err(Error::Invalid(format!(
                "Unsupported file type for {} (only regular files, symlinks and directories)",
                path.display()
            )));
        }
        modi.progress.scanned(1);
        tree.dirs.remove(&name);
        let i = sink(Found {
            path,
            md,
            rel: child_rel,
        });
        tree.files.insert(name, FileRef::Pending(i));
    }
    Ok(())
}

/// What became of one file: its checksum, its stat-cache key if it may be
/// remembered, and whether the checksum came from the cache.
type Processed = (Checksum, Option<crate::statcache::Key>, bool);

/// Everything for one file the scan found: the hardlink and stat caches,
/// header, then hash and write unless the repository has it.
fn process_found(
    tx: &Transaction<'_>,
    found: Found,
    modi: &Modifier<'_>,
    progress: &Progress,
) -> Result<Processed> {
    let Found { path, md, rel } = found;
    let rel = rel.as_str();
    let ft = md.file_type();
    if let Some(c) = modi.devino.get(&(md.dev(), md.ino())).copied() {
        // A hardlink of one of our objects: its metadata is the object's,
        // then the modifier applies on top (an explicit --owner-uid wins).
        modi.cache_hits.fetch_add(1, Ordering::Relaxed);
        if modi.opts.devino_canonical {
            return Ok((c, None, false));
        }
        let obj = modi.repo.open_content(&c)?;
        let h = obj.header;
        let (uid, gid, m, xattrs) = modi.apply(rel, h.uid, h.gid, h.mode, h.xattrs.clone());
        let header = FileHeader {
            uid,
            gid,
            mode: m,
            symlink_target: h.symlink_target.clone(),
            xattrs,
        };
        if header == h {
            return Ok((c, None, false));
        }
        let f = PendingFile {
            path,
            header,
            size: obj.size,
            adopt: false,
        };
        return Ok((write_file(tx, &f, progress)?, None, false));
    }
    // The modifiers keep a file's own xattrs or drop them all; which, is
    // all the key needs: changing the xattrs changes the ctime.
    let own_xattrs = !(modi.opts.no_xattrs || modi.canonical);
    // Ownership and mode as the modifiers make them (they do not depend on
    // the xattrs, which are not read yet).
    let (uid, gid, m, _) = modi.apply(rel, md.uid(), md.gid(), md.mode(), Vec::new());
    let m = if ft.is_symlink() {
        mode::S_IFLNK | 0o777
    } else {
        m
    };
    let cache_key = if modi.opts.consume {
        None
    } else {
        modi.stat_cache.key(&md, (uid, gid, m, own_xattrs))
    };
    if let Some(k) = cache_key {
        if let Some(c) = modi.stat_cache.get(&k) {
            // Not read again; an object since pruned is written below.
            if tx.has_object(ObjectType::File, &c) {
                tx.stats.content_total.fetch_add(1, Ordering::Relaxed);
                progress.bytes(if ft.is_file() { md.len() } else { 0 });
                return Ok((c, cache_key, true));
            }
        }
    }
    let xattrs = if own_xattrs {
        sys::lget_xattrs(&path)?
    } else {
        Vec::new()
    };
    let (target, size) = if ft.is_symlink() {
        let t = fs::read_link(&path)
            .map_err(|e| Error::io(format!("readlink {}", path.display()), e))?;
        let t = t.into_os_string().into_string().map_err(|_| {
            Error::Invalid(format!("{}: symlink target is not UTF-8", path.display()))
        })?;
        (t, 0)
    } else {
        (String::new(), md.len())
    };
    let adopt = modi.opts.consume
        && ft.is_file()
        && match modi.repo.mode() {
            // Ownership is not stored: only the mode must match.
            RepoMode::BareUserOnly => m == md.mode(),
            RepoMode::Bare => {
                (uid, gid, m) == (md.uid(), md.gid(), md.mode())
                    && xattrs == sys::lget_xattrs(&path)?
            }
            _ => false,
        };
    let f = PendingFile {
        path,
        header: FileHeader {
            uid,
            gid,
            mode: m,
            symlink_target: target,
            xattrs,
        },
        size,
        adopt,
    };
    Ok((write_file(tx, &f, progress)?, cache_key, false))
}

fn load_tree(repo: &Repo, tree_c: &Checksum, meta_c: &Checksum, into: &mut MTree) -> Result<()> {
    into.meta = Some(*meta_c);
    let t = repo.load_dirtree(tree_c)?;
    for (n, c) in t.files {
        into.dirs.remove(&n);
        into.files.insert(n, FileRef::Done(c));
    }
    for (n, tc, mc) in t.dirs {
        into.files.remove(&n);
        load_tree(repo, &tc, &mc, into.dirs.entry(n).or_default())?;
    }
    Ok(())
}

/// Streams a regular file through the content hasher; returns the
/// checksum and the still-open file.
fn hash_file(f: &PendingFile, progress: &Progress) -> Result<(Checksum, File)> {
    let ctx = |e| Error::io(format!("reading {}", f.path.display()), e);
    let mut file =
        File::open(&f.path).map_err(|e| Error::io(format!("opening {}", f.path.display()), e))?;
    let mut h = ContentHasher::new(&f.header);
    let mut total = 0u64;
    crate::scratch::with_buffer(|buf| -> Result<()> {
        // Up to the size the scan saw: no extra read to meet EOF. A file
        // that shrank is caught below; one that grew is committed as it
        // was when scanned, header and payload agreeing.
        while total < f.size {
            let want = (f.size - total).min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want]).map_err(ctx)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            progress.bytes(n as u64);
            h.update(&buf[..n]);
        }
        Ok(())
    })?;
    if total != f.size {
        return Err(Error::Invalid(format!(
            "{}: file changed size while committing",
            f.path.display()
        )));
    }
    Ok((h.finish(), file))
}

/// One file the scan found, counted as done once it is.
fn process_file(
    tx: &Transaction<'_>,
    f: Found,
    modi: &Modifier<'_>,
    progress: &Progress,
) -> Result<Processed> {
    let r = process_found(tx, f, modi, progress)?;
    progress.done(1);
    Ok(r)
}

fn write_file(tx: &Transaction<'_>, f: &PendingFile, progress: &Progress) -> Result<Checksum> {
    if mode::is_lnk(f.header.mode) {
        let c = object::content_checksum(&f.header, &[]);
        tx.write_content(&c, &f.header, &mut std::io::empty(), 0)?;
        return Ok(c);
    }
    let (c, file) = hash_file(f, progress)?;
    if !tx.has_object(ObjectType::File, &c) {
        if f.adopt {
            // Objects carry mtime 0; the input is being consumed anyway.
            sys::set_mtime(&f.path, 0)?;
            if tx.link_object(ObjectType::File, &c, &f.path)? {
                return Ok(c);
            }
        }
        tx.write_content_file(&c, &f.header, &file, f.size)?;
    } else {
        tx.stats
            .content_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(c)
}

fn write_mtree(tx: &Transaction<'_>, t: &MTree, done: &[Checksum]) -> Result<(Checksum, Checksum)> {
    let mut dt = DirTree::default();
    for (n, f) in &t.files {
        let c = match f {
            FileRef::Pending(i) => done[*i],
            FileRef::Done(c) => *c,
        };
        dt.files.push((n.clone(), c));
    }
    for (n, sub) in &t.dirs {
        let (tc, mc) = write_mtree(tx, sub, done)?;
        dt.dirs.push((n.clone(), tc, mc));
    }
    let tc = tx.write_metadata(ObjectType::DirTree, &dt.to_bytes())?;
    let mc = t
        .meta
        .ok_or_else(|| Error::Invalid("directory without metadata".into()))?;
    Ok((tc, mc))
}

/// Finds the kernel version for `--bootable` (`usr/lib/modules/$kver/vmlinuz`,
/// then `boot/vmlinuz-$kver`).
fn find_kernel_version(t: &MTree) -> Option<String> {
    let modules = t.dirs.get("usr")?.dirs.get("lib")?.dirs.get("modules");
    if let Some(m) = modules {
        for (kver, d) in &m.dirs {
            if d.files.contains_key("vmlinuz") {
                return Some(kver.clone());
            }
        }
    }
    let boot = t.dirs.get("boot")?;
    boot.files
        .keys()
        .find_map(|n| n.strip_prefix("vmlinuz-").map(str::to_string))
}

/// Commits the overlay of `sources` and returns the new commit checksum
/// (updating `opts.branch` unless `opts.orphan`).
pub fn commit(repo: &Repo, sources: &[TreeSource], opts: &CommitOptions) -> Result<CommitOutcome> {
    commit_with_progress(repo, sources, opts, &Progress::default())
}

/// [`commit`], reporting into `progress` as it goes: files found while
/// [`Phase::Scanning`], then files hashed/written of those found and
/// bytes read while [`Phase::Objects`]. `progress` is reset first.
pub fn commit_with_progress(
    repo: &Repo,
    sources: &[TreeSource],
    opts: &CommitOptions,
    progress: &Progress,
) -> Result<CommitOutcome> {
    progress.reset();
    if opts.branch.is_none() && !opts.orphan {
        return Err(Error::Invalid(
            "A branch must be specified with --branch, or use --orphan".into(),
        ));
    }
    let branch = match &opts.branch {
        Some(b) => Some(crate::repo::parse_refspec(b)?),
        None => None,
    };
    let parent = match &opts.parent {
        Some(p) => *p,
        None if opts.orphan => None,
        None => repo.resolve_rev(opts.branch.as_deref().expect("checked above"), true)?,
    };
    let mut devino = std::collections::HashMap::new();
    if (opts.link_checkout_speedup || opts.devino_canonical)
        && matches!(repo.mode(), RepoMode::Bare | RepoMode::BareUser)
    {
        for (c, _) in repo.list_objects(&[ObjectType::File])? {
            if let Ok(md) = fs::symlink_metadata(repo.object_path(ObjectType::File, &c)) {
                if md.is_file() {
                    devino.insert((md.dev(), md.ino()), c);
                }
            }
        }
    }
    let modi = Modifier {
        opts,
        canonical: opts.canonical_permissions || repo.mode() == RepoMode::BareUserOnly,
        repo,
        devino,
        cache_hits: AtomicU64::new(0),
        stat_cache: crate::statcache::StatCache::load(repo),
        progress,
    };
    let tx = repo.begin()?;
    progress.set_phase(Phase::Scanning);
    let mut root = MTree::default();
    // The scan runs on one pool thread and hands every file to the pool as
    // it finds it, so hashing and compressing overlap the directory walk.
    let found: Mutex<Vec<(usize, Checksum)>> = Mutex::new(Vec::new());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let mut count = 0usize;
    let pending = AtomicUsize::new(0);
    let scanned = rayon::scope(|s| -> Result<()> {
        let pending = &pending;
        let (tx, found, failed, first_error) = (&tx, &found, &failed, &first_error);
        let modi = &modi;
        // Files go to the pool in batches: one task and one lock per batch,
        // not per file, which is most of the cost when little is read
        // (a re-commit that the stat cache answers).
        let spawn_batch = |batch: Vec<(usize, Found)>| {
            pending.fetch_add(1, Ordering::Relaxed);
            s.spawn(move |_| {
                let _done = Decrement(pending);
                let mut done = Vec::with_capacity(batch.len());
                let mut learned = Vec::new();
                for (i, f) in batch {
                    // After a failure the rest is not worth doing.
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    match process_file(tx, f, modi, progress) {
                        Ok((c, key, hit)) => {
                            done.push((i, c));
                            if let Some(k) = key {
                                learned.push((k, c, hit));
                            }
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().expect("not poisoned").get_or_insert(e);
                            return;
                        }
                    }
                }
                modi.stat_cache.record(learned);
                found.lock().expect("not poisoned").extend(done);
            });
        };
        let mut batch = Vec::new();
        let mut batch_bytes = 0u64;
        let mut sink = |f: Found| -> usize {
            let i = count;
            count += 1;
            batch_bytes += f.md.len();
            batch.push((i, f));
            if batch.len() >= BATCH_FILES || batch_bytes >= BATCH_BYTES {
                spawn_batch(std::mem::take(&mut batch));
                batch_bytes = 0;
                // A walk far ahead of the hashing would only hold memory
                // (a tree's worth of stat results); the walker hashes too
                // meanwhile, so no core idles.
                while pending.load(Ordering::Relaxed) > MAX_PENDING_BATCHES {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::thread::yield_now();
                    }
                }
            }
            i
        };
        let mut scan = || -> Result<()> {
            for src in sources {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                match src {
                    TreeSource::Dir(d) => {
                        let md = fs::metadata(d)
                            .map_err(|e| Error::io(format!("opendir({})", d.display()), e))?;
                        if !md.is_dir() {
                            return Err(Error::Invalid(format!(
                                "{}: Not a directory",
                                d.display()
                            )));
                        }
                        modi.stat_cache.set_root(d, &md);
                        scan_dir(tx, d, "", &md, &mut root, &mut sink, modi)?;
                    }
                    TreeSource::Ref(r) => {
                        let c = repo.resolve_rev(r, false)?.expect("allow_noent is false");
                        let cm = repo.load_commit(&c)?;
                        load_tree(repo, &cm.root_tree, &cm.root_meta, &mut root)?;
                    }
                }
            }
            Ok(())
        };
        let r = scan();
        if r.is_err() {
            // Files already handed out are not worth finishing.
            failed.store(true, Ordering::Relaxed);
        } else {
            spawn_batch(std::mem::take(&mut batch));
        }
        progress.set_requested(count as u64);
        progress.set_phase(Phase::Objects);
        r
    });
    scanned?;
    if let Some(e) = first_error.into_inner().expect("not poisoned") {
        return Err(e);
    }
    let mut done = vec![[0u8; 32]; count];
    for (i, c) in found.into_inner().expect("not poisoned") {
        done[i] = c;
    }
    let (root_tree, root_meta) = write_mtree(&tx, &root, &done)?;

    if opts
        .metadata
        .iter()
        .chain(&opts.detached_metadata)
        .any(|(k, _)| k.is_empty())
    {
        return Err(Error::Invalid("Empty metadata key".into()));
    }
    let mut metadata = opts.metadata.clone();
    if let (Some(p), false) = (parent, opts.keep_metadata.is_empty()) {
        let pc = repo.load_commit(&p)?;
        for key in &opts.keep_metadata {
            if metadata.iter().any(|(k, _)| k == key) {
                continue;
            }
            if let Some(v) = pc.meta(key) {
                metadata.push((key.clone(), v.clone()));
            }
        }
    }
    if opts.bootable {
        let kver = find_kernel_version(&root).ok_or_else(|| {
            Error::NotFound(
                "Failed to find kernel in usr/lib/modules: No such file or directory".into(),
            )
        })?;
        metadata.push(("ostree.linux".into(), Value::Str(kver)));
        metadata.push(("ostree.bootable".into(), Value::Bool(true)));
    }
    // ostree 2022.7 records the binding even for `--orphan` (then possibly
    // an empty list); only `--no-bindings` suppresses it.
    if !opts.no_bindings {
        let mut refs: Vec<String> = opts.branch.iter().chain(&opts.bind_refs).cloned().collect();
        refs.sort();
        metadata.push((
            "ostree.ref-binding".into(),
            Value::Array(
                crate::gvariant::Type::Str,
                refs.into_iter().map(Value::Str).collect(),
            ),
        ));
    }
    if let Some(cid) = repo.config().get("core", "collection-id") {
        if !metadata
            .iter()
            .any(|(k, _)| k == "ostree.collection-binding")
        {
            metadata.push((
                "ostree.collection-binding".into(),
                Value::Str(cid.to_string()),
            ));
        }
    }
    let timestamp = match opts.timestamp {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let commit = Commit {
        metadata,
        parent,
        related: Vec::new(),
        subject: opts.subject.clone(),
        body: opts.body.clone(),
        timestamp,
        root_tree,
        root_meta,
    };
    let checksum = tx.write_metadata(ObjectType::Commit, &commit.to_bytes())?;
    if !opts.detached_metadata.is_empty() {
        tx.write_commit_detached_metadata(
            &checksum,
            Some(&crate::gvariant::vardict(&opts.detached_metadata).to_bytes()),
        )?;
    }
    if let (Some((remote, name)), false) = (branch, opts.orphan) {
        tx.set_ref(remote, name, Some(checksum))?;
    }
    use std::sync::atomic::Ordering::Relaxed;
    let outcome = CommitOutcome {
        checksum,
        metadata_total: tx.stats.metadata_total.load(Relaxed),
        metadata_written: tx.stats.metadata_written.load(Relaxed),
        content_total: tx.stats.content_total.load(Relaxed),
        content_written: tx.stats.content_written.load(Relaxed),
        content_cache_hits: modi.cache_hits.load(Relaxed),
        stat_cache_hits: modi.stat_cache.hits(),
        content_bytes_written: tx.stats.content_bytes_written.load(Relaxed),
    };
    tx.commit()?;
    // Only now: a failed commit must not teach the cache anything.
    modi.stat_cache.save(repo);
    Ok(outcome)
}

/// The content checksum a file or symlink would get if committed as-is
/// (`ostree checksum`).
pub fn checksum_path(path: &Path, ignore_xattrs: bool) -> Result<Checksum> {
    let md = fs::symlink_metadata(path)
        .map_err(|e| Error::io(format!("lstat {}", path.display()), e))?;
    let xattrs = if ignore_xattrs {
        Vec::new()
    } else {
        sys::lget_xattrs(path)?
    };
    if md.file_type().is_symlink() {
        let t = fs::read_link(path)
            .map_err(|e| Error::io(format!("readlink {}", path.display()), e))?;
        let header = FileHeader {
            uid: md.uid(),
            gid: md.gid(),
            mode: mode::S_IFLNK | 0o777,
            symlink_target: t.to_string_lossy().into_owned(),
            xattrs,
        };
        return Ok(object::content_checksum(&header, &[]));
    }
    if !md.is_file() {
        return Err(Error::Invalid(format!(
            "{}: not a regular file or symlink",
            path.display()
        )));
    }
    let f = PendingFile {
        path: path.to_path_buf(),
        header: FileHeader {
            uid: md.uid(),
            gid: md.gid(),
            mode: md.mode(),
            symlink_target: String::new(),
            xattrs,
        },
        size: md.len(),
        adopt: false,
    };
    hash_file(&f, &Progress::default()).map(|(c, _)| c)
}

/// Convenience: commit directories (overlaid in order).
pub fn commit_dirs(repo: &Repo, dirs: &[PathBuf], opts: &CommitOptions) -> Result<Checksum> {
    let sources: Vec<TreeSource> = dirs.iter().cloned().map(TreeSource::Dir).collect();
    commit(repo, &sources, opts).map(|o| o.checksum)
}

/// Parses `--timestamp` values: `@SECONDS`, `YYYY-MM-DD`, or
/// `YYYY-MM-DD[T ]HH:MM[:SS][Z|±HH[:MM]]` (UTC when no zone is given).
pub fn parse_timestamp(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(n) = s.strip_prefix('@') {
        return n.parse().ok();
    }
    if let Some(t) = parse_month_day_year(s) {
        return Some(t);
    }
    let (date, rest) = s.split_at(s.find(['T', ' ']).unwrap_or(s.len()));
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let mo: i64 = dp.next()?.parse().ok()?;
    let d: i64 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let rest = rest.trim_start_matches(['T', ' ']);
    let (mut secs, mut offset) = (0i64, 0i64);
    if !rest.is_empty() {
        let zpos = rest.find(['Z', 'z', '+', '-', ' ']).unwrap_or(rest.len());
        let (time, zone) = rest.split_at(zpos);
        let mut tp = time.split(':');
        let h: i64 = tp.next()?.parse().ok()?;
        let mi: i64 = tp.next()?.parse().ok()?;
        let se: i64 = match tp.next() {
            Some(x) => x.split('.').next()?.parse().ok()?,
            None => 0,
        };
        if h > 23 || mi > 59 || se > 60 {
            return None;
        }
        secs = h * 3600 + mi * 60 + se;
        let zone = zone.trim();
        if !zone.is_empty() && zone != "Z" && zone != "z" && zone != "UTC" {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let z = zone.trim_start_matches(['+', '-']).replace(':', "");
            if z.len() != 4 && z.len() != 2 {
                return None;
            }
            let zh: i64 = z[..2].parse().ok()?;
            let zm: i64 = if z.len() == 4 {
                z[2..].parse().ok()?
            } else {
                0
            };
            offset = sign * (zh * 3600 + zm * 60);
        }
    }
    let days = days_from_civil(y, mo, d);
    let t = days * 86400 + secs - offset;
    // Dates before 1970 wrap, as upstream's `guint64` cast of a negative
    // `time_t` does.
    Some(t as u64)
}

/// `October 25 1985` / `Oct 25, 1985` (midnight UTC), one of the forms
/// gnulib's `parse_datetime` accepts and upstream's tests use.
fn parse_month_day_year(s: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let w: Vec<&str> = s.split([' ', ',']).filter(|x| !x.is_empty()).collect();
    let [m, d, y] = w.as_slice() else {
        return None;
    };
    let lower = m.to_ascii_lowercase();
    let mo = MONTHS
        .iter()
        .position(|p| lower.len() >= 3 && p.starts_with(&lower[..3]))? as i64
        + 1;
    let d: i64 = d.parse().ok()?;
    let y: i64 = y.parse().ok()?;
    if !(1..=31).contains(&d) {
        return None;
    }
    Some((days_from_civil(y, mo, d) * 86400) as u64)
}

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("@1234"), Some(1234));
        assert_eq!(parse_timestamp("2020-01-01T00:00:00Z"), Some(1577836800));
        assert_eq!(parse_timestamp("2020-01-01"), Some(1577836800));
        assert_eq!(
            parse_timestamp("2020-01-01 01:00:00 +0100"),
            Some(1577836800)
        );
        assert_eq!(parse_timestamp("1970-01-01T00:00:10"), Some(10));
        assert_eq!(parse_timestamp("garbage"), None);
        assert_eq!(parse_timestamp("October 21 2015"), Some(1445385600));
        assert_eq!(parse_timestamp("Oct 21, 2015"), Some(1445385600));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59Z"), Some(u64::MAX));
        assert_eq!(parse_timestamp("2020-13-01"), None);
    }
}
