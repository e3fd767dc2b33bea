//! `prune`: delete objects no longer reachable from refs (or commits).

use crate::object::{self, Checksum, ObjectType};
use crate::{Error, Repo, Result};
use std::collections::BTreeSet;
use std::fs;

/// Options of `ostree prune`.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Only objects reachable from refs are kept (`--refs-only`); otherwise
    /// every commit is a root.
    pub refs_only: bool,
    /// History depth kept per ref: -1 = all (`--depth`).
    pub depth: i64,
    /// Report but delete nothing (`--no-prune`).
    pub dry_run: bool,
    /// Delete this commit first (`--delete-commit`).
    pub delete_commit: Option<Checksum>,
    /// Commits older than this (seconds since the epoch) that no ref points
    /// to are deleted (`--keep-younger-than`).
    pub keep_younger_than: Option<u64>,
    /// Apply `depth` only to these refs; all others keep full history
    /// (`--only-branch`).
    pub only_branches: Vec<String>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            refs_only: false,
            depth: -1,
            dry_run: false,
            delete_commit: None,
            keep_younger_than: None,
            only_branches: Vec::new(),
        }
    }
}

/// Result of a prune.
#[derive(Debug, Clone, Default)]
pub struct PruneStats {
    /// Objects present before pruning.
    pub total: usize,
    /// Objects deleted (or that would be, with `dry_run`).
    pub pruned: usize,
    /// Bytes freed.
    pub freed: u64,
}

fn mark_commit(
    repo: &Repo,
    c: &Checksum,
    depth: i64,
    keep: &mut BTreeSet<(ObjectType, Checksum)>,
) -> Result<()> {
    let mut cur = Some(*c);
    let mut left = depth;
    while let Some(cc) = cur {
        if !repo.has_object(ObjectType::Commit, &cc) {
            break;
        }
        if !keep.insert((ObjectType::Commit, cc)) {
            break;
        }
        keep.insert((ObjectType::CommitMeta, cc));
        let commit = repo.load_commit(&cc)?;
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
        if left == 0 {
            break;
        }
        left -= 1;
        cur = commit.parent;
    }
    Ok(())
}

/// Deletes unreachable objects.
pub fn prune(repo: &Repo, opts: &PruneOptions) -> Result<PruneStats> {
    // Exclusive: no transaction may be between "object exists" and "ref
    // published" while we delete.
    let _lock = repo.lock(true)?;
    let refs = repo.list_refs(None)?;
    let ref_targets: BTreeSet<Checksum> = refs.values().copied().collect();
    if let Some(c) = &opts.delete_commit {
        if ref_targets.contains(c) {
            return Err(Error::Invalid(format!(
                "Commit '{}' is referenced by a ref; delete the ref first",
                object::to_hex(c)
            )));
        }
        if !opts.dry_run {
            let p = repo.object_path(ObjectType::Commit, c);
            fs::remove_file(&p).map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
        }
    }
    let all = repo.list_objects(&[
        ObjectType::File,
        ObjectType::DirTree,
        ObjectType::DirMeta,
        ObjectType::Commit,
        ObjectType::CommitMeta,
        ObjectType::TombstoneCommit,
    ])?;
    let mut keep: BTreeSet<(ObjectType, Checksum)> = BTreeSet::new();
    let commits: Vec<Checksum> = all
        .iter()
        .filter(|(_, t)| *t == ObjectType::Commit)
        .map(|(c, _)| *c)
        .collect();
    if opts.refs_only || opts.keep_younger_than.is_some() {
        for (name, c) in &refs {
            let depth = if opts.only_branches.is_empty() || opts.only_branches.contains(name) {
                opts.depth
            } else {
                -1
            };
            mark_commit(repo, c, depth, &mut keep)?;
        }
        if let Some(cutoff) = opts.keep_younger_than {
            for c in &commits {
                if repo.load_commit(c)?.timestamp >= cutoff {
                    mark_commit(repo, c, 0, &mut keep)?;
                }
            }
            if !opts.refs_only {
                // Without --refs-only, everything but old commits survives.
                for c in &commits {
                    if !keep.contains(&(ObjectType::Commit, *c))
                        && repo.load_commit(c)?.timestamp >= cutoff
                    {
                        mark_commit(repo, c, 0, &mut keep)?;
                    }
                }
            }
        }
    } else {
        for c in &commits {
            mark_commit(repo, c, 0, &mut keep)?;
        }
    }
    let mut stats = PruneStats {
        total: all.len(),
        ..Default::default()
    };
    for (c, ty) in &all {
        if keep.contains(&(*ty, *c)) || *ty == ObjectType::TombstoneCommit {
            continue;
        }
        let p = repo.object_path(*ty, c);
        let size = fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
        if !opts.dry_run {
            fs::remove_file(&p).map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
            if *ty == ObjectType::Commit {
                let _ = fs::remove_file(
                    repo.path()
                        .join("state")
                        .join(format!("{}.commitpartial", object::to_hex(c))),
                );
            }
        }
        stats.pruned += 1;
        stats.freed += size;
    }
    Ok(stats)
}
