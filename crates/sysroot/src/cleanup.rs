//! Garbage collection (upstream `ostree-sysroot-cleanup.c`): everything the
//! current boot configuration does not reference is removed — old boot
//! version dirs, unreferenced deployments, kernels, leftovers of
//! interrupted operations — then the repository is pruned.

use crate::fsutil;
use crate::{Result, Sysroot};
use ostree_repo::prune::{self, PruneOptions};
use std::collections::BTreeSet;
use std::fs;

/// What [`Sysroot::cleanup`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupStats {
    /// Deployment directories removed (`OS/CSUM.SERIAL`).
    pub deployments: Vec<String>,
    /// `/boot/ostree/*` kernel directories removed.
    pub kernels: Vec<String>,
    /// Repository objects pruned.
    pub pruned_objects: usize,
}

impl Sysroot {
    /// Removes everything unreferenced and prunes the repository
    /// (`ostree admin cleanup`).
    pub fn cleanup(&mut self) -> Result<CleanupStats> {
        let _lock = fsutil::lock(&self.path.join("ostree/lock"))?;
        self.reload()?;
        self.cleanup_locked(true)
    }

    pub(crate) fn cleanup_locked(&mut self, prune_repo: bool) -> Result<CleanupStats> {
        let mut stats = CleanupStats::default();
        // Refs first: an operation killed between its boot swap and its ref
        // update must not let the prune below drop a deployed commit.
        self.write_refs()?;
        let (bv, sub) = (self.bootversion, self.subbootversion);
        let boot = self.path.join("boot");
        let loader_exists = fs::symlink_metadata(boot.join("loader")).is_ok();
        // Without a committed boot configuration nothing else is referenced
        // either, but loader.0 might be a fresh one being written: only
        // remove the other version once a loader link exists.
        if loader_exists {
            fsutil::remove_all(&boot.join(format!("loader.{}", 1 - bv)))?;
            for s in ["", ".0", ".1"] {
                fsutil::remove_all(&self.path.join(format!("ostree/boot.{}{s}", 1 - bv)))?;
            }
            fsutil::remove_all(&self.path.join(format!("ostree/boot.{bv}.{}", 1 - sub)))?;
        }
        fsutil::remove_all(&boot.join("loader.tmp"))?;
        for dir in [boot.clone(), self.path.join("ostree")] {
            if let Ok(rd) = fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with('.') && (n.contains(".lnk-") || n.contains(".tmp-")) {
                        fsutil::remove_all(&e.path())?;
                    }
                }
            }
        }

        let staged = self.staged_deployment()?;
        let live: BTreeSet<(String, String)> = self
            .deployments
            .iter()
            .chain(staged.as_ref())
            .map(|d| (d.osname.clone(), d.dir_name()))
            .collect();
        for os in self.stateroots()? {
            let dir = self.path.join("ostree/deploy").join(&os).join("deploy");
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            let mut names: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                let base = n.strip_suffix(".origin").unwrap_or(&n).to_string();
                if live.contains(&(os.clone(), base)) {
                    continue;
                }
                let p = dir.join(&n);
                if !n.ends_with(".origin") {
                    stats.deployments.push(format!("{os}/{n}"));
                }
                fsutil::remove_deployment_dir(&p)?;
            }
            fsutil::fsync_dir(&dir)?;
        }

        let kernels: BTreeSet<String> = self
            .deployments
            .iter()
            .map(|d| format!("{}-{}", d.osname, d.bootcsum))
            .collect();
        let ob = boot.join("ostree");
        if let Ok(rd) = fs::read_dir(&ob) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !kernels.contains(&n) {
                    fsutil::remove_all(&e.path())?;
                    stats.kernels.push(n);
                }
            }
            fsutil::fsync_dir(&ob)?;
        }

        if prune_repo {
            let repo = self.repo()?;
            let p = prune::prune(
                &repo,
                &PruneOptions {
                    refs_only: true,
                    depth: 0,
                    ..Default::default()
                },
            )?;
            stats.pruned_objects = p.pruned;
        }
        Ok(stats)
    }
}
