//! `prune`: delete objects no longer reachable from refs (or commits), and
//! static deltas whose target commit is gone.
//!
//! Follows upstream's `ostree prune` (`ot-builtin-prune.c`,
//! `ostree-repo-prune.c`): the simple mode traverses every commit (or, with
//! `refs_only`, every ref) to `depth`; any of `keep_younger_than`,
//! `only_branches` or `retain_branch_depth` switches to per-ref rules
//! (implying `refs_only`). Deleted commits leave tombstones when
//! `core.tombstone-commits` is set (see [`Repo::delete_object`]).

use crate::object::{self, Checksum, ObjectType};
use crate::{delta, Error, Repo, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Options of `ostree prune`.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Only objects reachable from refs are kept (`--refs-only`); otherwise
    /// every commit is a root.
    pub refs_only: bool,
    /// History depth kept per root: -1 = all (`--depth`).
    pub depth: i64,
    /// Report but delete nothing (`--no-prune`).
    pub dry_run: bool,
    /// Delete this commit first (`--delete-commit`); it must not be the
    /// target of a ref.
    pub delete_commit: Option<Checksum>,
    /// With `delete_commit`: only delete the static deltas that end in it,
    /// and nothing else (`--static-deltas-only`).
    pub static_deltas_only: bool,
    /// Ref histories are cut at the first commit older than this (seconds
    /// since the epoch); ref tips are always kept (`--keep-younger-than`).
    pub keep_younger_than: Option<u64>,
    /// Apply `depth`/`keep_younger_than` only to these refs; all others keep
    /// full history (`--only-branch`). Each must exist.
    pub only_branches: Vec<String>,
    /// Per-ref depth overrides (`--retain-branch-depth=REF=DEPTH`).
    pub retain_branch_depth: Vec<(String, i64)>,
    /// Only commit objects are considered for deletion (`--commit-only`).
    pub commit_only: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            refs_only: false,
            depth: -1,
            dry_run: false,
            delete_commit: None,
            static_deltas_only: false,
            keep_younger_than: None,
            only_branches: Vec::new(),
            retain_branch_depth: Vec::new(),
            commit_only: false,
        }
    }
}

/// Result of a prune.
#[derive(Debug, Clone, Default)]
pub struct PruneStats {
    /// Objects considered (present before pruning).
    pub total: usize,
    /// Objects deleted (or that would be, with `dry_run`).
    pub pruned: usize,
    /// Bytes freed.
    pub freed: u64,
}

type Reachable = BTreeSet<(ObjectType, Checksum)>;

/// Marks one commit and (unless `commit_only`) its tree as reachable.
fn mark_one(repo: &Repo, c: &Checksum, commit_only: bool, keep: &mut Reachable) -> Result<()> {
    if !keep.insert((ObjectType::Commit, *c)) || commit_only {
        return Ok(());
    }
    let commit = repo.load_commit(c)?;
    let mut stack = vec![(commit.root_tree, commit.root_meta)];
    while let Some((t, m)) = stack.pop() {
        keep.insert((ObjectType::DirMeta, m));
        if !keep.insert((ObjectType::DirTree, t)) {
            continue;
        }
        // Partial commits may lack subtrees; keep what exists.
        let Ok(tree) = repo.load_dirtree(&t) else {
            continue;
        };
        keep.extend(tree.files.iter().map(|(_, c)| (ObjectType::File, *c)));
        stack.extend(tree.dirs.iter().map(|(_, tc, mc)| (*tc, *mc)));
    }
    Ok(())
}

/// Marks a commit and `depth` ancestors (-1 = all) as reachable; history
/// ends early at a missing parent.
fn mark_history(
    repo: &Repo,
    c: &Checksum,
    depth: i64,
    commit_only: bool,
    keep: &mut Reachable,
) -> Result<()> {
    let mut cur = Some(*c);
    let mut left = depth;
    while let Some(cc) = cur {
        if !repo.has_object(ObjectType::Commit, &cc) {
            break;
        }
        mark_one(repo, &cc, commit_only, keep)?;
        if left == 0 {
            break;
        }
        left -= 1;
        cur = repo.load_commit(&cc)?.parent;
    }
    Ok(())
}

/// The ref tip, then ancestors while they are not older than `cutoff`.
fn mark_younger_than(
    repo: &Repo,
    tip: &Checksum,
    cutoff: u64,
    commit_only: bool,
    keep: &mut Reachable,
) -> Result<()> {
    if !repo.has_object(ObjectType::Commit, tip) {
        return Ok(());
    }
    mark_one(repo, tip, commit_only, keep)?;
    let mut cur = Some(*tip);
    while let Some(c) = cur {
        if !repo.has_object(ObjectType::Commit, &c) {
            break;
        }
        let commit = repo.load_commit(&c)?;
        if commit.timestamp < cutoff {
            break;
        }
        mark_one(repo, &c, commit_only, keep)?;
        cur = commit.parent;
    }
    Ok(())
}

/// Deletes unreachable objects (see the module docs for the rules).
pub fn prune(repo: &Repo, opts: &PruneOptions) -> Result<PruneStats> {
    // Exclusive: no transaction may be between "object exists" and "ref
    // published" while we delete.
    let _lock = repo.lock(true)?;
    let refs = repo.list_refs(None)?;
    // Mirrored refs of other collections are roots too (the simple mode
    // only, as upstream).
    let mirror_roots: Vec<(String, Checksum)> = repo
        .list_collection_refs()?
        .into_iter()
        .filter(|((coll, _), _)| Some(coll.as_str()) != repo.collection_id())
        .map(|((coll, name), c)| (format!("({coll}, {name})"), c))
        .collect();
    if let Some(c) = &opts.delete_commit {
        if opts.dry_run {
            return Err(Error::Invalid(
                "Cannot specify both --delete-commit and --no-prune".into(),
            ));
        }
        if opts.static_deltas_only {
            delta::prune_deltas(repo, Some(c))?;
            return Ok(PruneStats::default());
        }
        if let Some((name, _)) = refs
            .iter()
            .chain(mirror_roots.iter().map(|(n, c)| (n, c)))
            .find(|(_, t)| *t == c)
        {
            return Err(Error::Invalid(format!(
                "Commit '{}' is referenced by '{name}'",
                object::to_hex(c)
            )));
        }
        delta::prune_deltas(repo, Some(c))?;
        repo.delete_object(ObjectType::Commit, c)?;
    } else if opts.static_deltas_only {
        return Err(Error::Invalid(
            "--static-deltas-only requires --delete-commit; see https://github.com/ostreedev/ostree/issues/1479".into(),
        ));
    }

    // Like upstream, tombstones and detached metadata are not candidates:
    // tombstones stay until the commit returns, commitmeta goes with its commit.
    let kinds: &[ObjectType] = if opts.commit_only {
        &[ObjectType::Commit]
    } else {
        &[
            ObjectType::File,
            ObjectType::DirTree,
            ObjectType::DirMeta,
            ObjectType::Commit,
        ]
    };
    let all = repo.list_objects(kinds)?;
    let mut keep = Reachable::new();
    let per_ref = opts.keep_younger_than.is_some()
        || !opts.only_branches.is_empty()
        || !opts.retain_branch_depth.is_empty();
    if per_ref {
        let mut depths: BTreeMap<&str, i64> = opts
            .retain_branch_depth
            .iter()
            .map(|(r, d)| (r.as_str(), *d))
            .collect();
        if !opts.only_branches.is_empty() {
            for b in &opts.only_branches {
                repo.resolve_rev(b, false)?;
            }
            for name in refs.keys() {
                if !opts.only_branches.contains(name) {
                    depths.entry(name.as_str()).or_insert(-1);
                }
            }
        }
        for (name, c) in &refs {
            match (depths.get(name.as_str()), opts.keep_younger_than) {
                (Some(d), _) => mark_history(repo, c, *d, opts.commit_only, &mut keep)?,
                (None, Some(cutoff)) => {
                    mark_younger_than(repo, c, cutoff, opts.commit_only, &mut keep)?
                }
                (None, None) => mark_history(repo, c, opts.depth, opts.commit_only, &mut keep)?,
            }
        }
    } else if opts.refs_only {
        for c in refs.values().chain(mirror_roots.iter().map(|(_, c)| c)) {
            mark_history(repo, c, opts.depth, opts.commit_only, &mut keep)?;
        }
    } else {
        for (c, ty) in &all {
            if *ty == ObjectType::Commit {
                mark_history(repo, c, opts.depth, opts.commit_only, &mut keep)?;
            }
        }
    }

    let mut stats = PruneStats {
        total: all.len(),
        ..Default::default()
    };
    for (c, ty) in &all {
        if keep.contains(&(*ty, *c)) {
            continue;
        }
        if opts.dry_run {
            let p = repo.object_path(*ty, c);
            stats.freed += std::fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
        } else {
            if *ty == ObjectType::Commit {
                let partial = repo
                    .path()
                    .join("state")
                    .join(format!("{}.commitpartial", object::to_hex(c)));
                let _ = std::fs::remove_file(partial);
            }
            stats.freed += repo.delete_object(*ty, c)?;
        }
        stats.pruned += 1;
    }
    if !opts.dry_run {
        delta::prune_deltas(repo, None)?;
    }
    Ok(stats)
}
