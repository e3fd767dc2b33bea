//! [`Os`] over a real OSTree sysroot (the `sysroot` crate), as Zincati's
//! rpm-ostree client is over rpm-ostreed.
//!
//! Every call loads the sysroot afresh: the agent runs for weeks while
//! `ostree admin` / `ferrocore` commands change the deployments beside it, so
//! cached state would go stale. Staging fetches the release's commit over HTTP
//! from the remote the booted deployment follows (`[origin] refspec`
//! `REMOTE:REF`, URL from `[remote "REMOTE"] url` of the system repo config).

use std::path::{Path, PathBuf};

use ostree_repo::object::{from_hex, ObjectType};
use ostree_repo::pull_http::{pull_http, HttpPullOptions};
use ostree_repo::Repo;
use sysroot::staged::Finalize;
use sysroot::{BootedSource, DeployOptions, Deployment, Sysroot};

use crate::os::{Booted, LocalDeployment, Os, OsError, OsRelease};

/// Commit metadata key naming the update stream in commits `ferrocore build`
/// makes.
pub const STREAM_KEY: &str = "ferrocore.stream";

/// The key Fedora CoreOS commits carry instead; read when [`STREAM_KEY`] is
/// absent, so the agent also follows upstream-built commits.
pub const FCOS_STREAM_KEY: &str = "fedora-coreos.stream";

/// The sysroot at a path, seen through the [`Os`] trait.
#[derive(Debug, Clone)]
pub struct SysrootOs {
    path: PathBuf,
    booted_source: BootedSource,
    run_dir: Option<PathBuf>,
}

fn err(what: &str) -> impl Fn(sysroot::Error) -> OsError + '_ {
    move |e| OsError(format!("{what}: {e}"))
}

impl SysrootOs {
    /// The sysroot at `path` (`/` on a node), booted deployment from the kernel
    /// command line.
    pub fn new(path: &Path) -> SysrootOs {
        SysrootOs {
            path: path.to_path_buf(),
            booted_source: BootedSource::Auto,
            run_dir: None,
        }
    }

    /// Finds the booted deployment with `source` instead (image builders, tests).
    pub fn with_booted_source(mut self, source: BootedSource) -> SysrootOs {
        self.booted_source = source;
        self
    }

    /// Keeps staged-deployment state under `dir` instead of `/run`.
    pub fn with_run_dir(mut self, dir: &Path) -> SysrootOs {
        self.run_dir = Some(dir.to_path_buf());
        self
    }

    fn load(&self) -> Result<Sysroot, OsError> {
        let mut sr = Sysroot::load_with(&self.path, self.booted_source.clone())
            .map_err(|e| OsError(format!("loading sysroot {}: {e}", self.path.display())))?;
        if let Some(d) = &self.run_dir {
            sr.set_run_dir(d);
        }
        Ok(sr)
    }

    fn booted_deployment(sr: &Sysroot) -> Result<Deployment, OsError> {
        sr.booted_deployment().cloned().ok_or_else(|| {
            OsError(format!(
                "sysroot {}: not booted into an OSTree deployment",
                sr.path().display()
            ))
        })
    }

    /// The remote the booted deployment follows and its URL (repo config or
    /// the system's `/etc/ostree/remotes.d`).
    fn origin_url(sr: &Sysroot, booted: &Deployment) -> Result<(String, String), OsError> {
        let spec = booted.origin_refspec().ok_or_else(|| {
            OsError(format!(
                "booted deployment {}: origin has no [origin] refspec",
                booted.dir_name()
            ))
        })?;
        let (remote, _) = ostree_repo::parse_refspec(spec)
            .map_err(|e| OsError(format!("booted origin refspec {spec:?}: {e}")))?;
        let remote = remote.ok_or_else(|| {
            OsError(format!(
                "booted origin refspec {spec:?} names no remote: cannot fetch updates"
            ))
        })?;
        let url = sr
            .remote_url(remote)
            .map_err(err("looking up the remote"))?;
        Ok((remote.to_string(), url))
    }
}

/// Commit `csum`'s `version` and stream metadata, if present.
fn commit_meta(repo: &Repo, csum: &str) -> Result<(Option<String>, Option<String>), OsError> {
    let c = from_hex(csum).ok_or_else(|| OsError(format!("bad commit checksum {csum:?}")))?;
    let commit = repo
        .load_commit(&c)
        .map_err(|e| OsError(format!("loading commit {csum}: {e}")))?;
    let text = |k: &str| match commit.meta(k) {
        Some(ostree_repo::gvariant::Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    Ok((
        text("version"),
        text(STREAM_KEY).or_else(|| text(FCOS_STREAM_KEY)),
    ))
}

/// The release of commit `csum`, which must carry a `version`.
fn release_of(repo: &Repo, csum: &str) -> Result<(OsRelease, Option<String>), OsError> {
    let (version, stream) = commit_meta(repo, csum)?;
    let version =
        version.ok_or_else(|| OsError(format!("commit {csum}: no `version` metadata")))?;
    Ok((
        OsRelease {
            version,
            checksum: csum.to_string(),
        },
        stream,
    ))
}

impl Os for SysrootOs {
    fn booted(&self) -> Result<Booted, OsError> {
        let sr = self.load()?;
        let d = Self::booted_deployment(&sr)?;
        let repo = sr.repo().map_err(err("opening the system repo"))?;
        let (release, stream) = release_of(&repo, &d.csum)?;
        let stream = stream.ok_or_else(|| {
            OsError(format!(
                "booted commit {}: no `{STREAM_KEY}` (or `{FCOS_STREAM_KEY}`) metadata",
                d.csum
            ))
        })?;
        Ok(Booted { release, stream })
    }

    fn deployments(&self) -> Result<Vec<LocalDeployment>, OsError> {
        let sr = self.load()?;
        let repo = sr.repo().map_err(err("opening the system repo"))?;
        let booted = sr.booted_deployment();
        let mut out = Vec::new();
        let staged = sr
            .staged_deployment()
            .map_err(err("reading the staged deployment"))?;
        // A finalization killed after its boot swap leaves the staged state
        // behind for a deployment that is already live: list it once, as live.
        let staged = staged.filter(|s| !sr.deployments().iter().any(|d| d.same_as(s)));
        for (d, is_staged) in staged
            .iter()
            .map(|d| (d, true))
            .chain(sr.deployments().iter().map(|d| (d, false)))
        {
            // A hand-deployed commit without `version` still counts as local (the
            // agent must not stage it again); it just has no version to show.
            let version = commit_meta(&repo, &d.csum)?.0.unwrap_or_default();
            out.push(LocalDeployment {
                release: OsRelease {
                    version,
                    checksum: d.csum.clone(),
                },
                staged: is_staged,
                booted: booted.is_some_and(|b| b.same_as(d)),
            });
        }
        Ok(out)
    }

    fn rolled_back(&self) -> Result<Vec<OsRelease>, OsError> {
        let sr = self.load()?;
        let failed = sr
            .failed_deployments()
            .map_err(err("reading failed deployments"))?;
        let repo = sr.repo().map_err(err("opening the system repo"))?;
        Ok(failed
            .into_iter()
            .map(|f| {
                // The record carries the version; a pruned commit must not make
                // the failure (and so the ban on re-staging it) disappear.
                let version = f
                    .version
                    .clone()
                    .or_else(|| commit_meta(&repo, &f.checksum).ok().and_then(|(v, _)| v));
                OsRelease {
                    version: version.unwrap_or_default(),
                    checksum: f.checksum,
                }
            })
            .collect())
    }

    fn stage(&self, target: &OsRelease) -> Result<(), OsError> {
        let mut sr = self.load()?;
        let booted = Self::booted_deployment(&sr)?;
        let repo = sr.repo().map_err(err("opening the system repo"))?;
        let c = from_hex(&target.checksum)
            .ok_or_else(|| OsError(format!("bad payload checksum {:?}", target.checksum)))?;
        if !repo.has_object(ObjectType::Commit, &c) {
            let (remote, url) = Self::origin_url(&sr, &booted)?;
            let opts = HttpPullOptions {
                remote: Some(remote),
                ..Default::default()
            };
            pull_http(&repo, &url, std::slice::from_ref(&target.checksum), &opts)
                .map_err(|e| OsError(format!("pulling {} from {url}: {e}", target.checksum)))?;
        }
        let (got, _) = release_of(&repo, &target.checksum)?;
        if got.version != target.version {
            return Err(OsError(format!(
                "commit {} is version {:?}, the update graph says {:?}",
                target.checksum, got.version, target.version
            )));
        }
        let opts = DeployOptions {
            osname: Some(booted.osname.clone()),
            origin: booted.origin.clone(),
            ..Default::default()
        };
        sr.stage(&target.checksum, &opts, true)
            .map_err(err(&format!("staging {}", target.checksum)))?;
        Ok(())
    }

    fn finalize(&self, target: &OsRelease) -> Result<(), OsError> {
        let mut sr = self.load()?;
        let staged = sr
            .staged_deployment()
            .map_err(err("reading the staged deployment"))?;
        match staged {
            Some(d) if d.csum == target.checksum => {}
            Some(d) => {
                return Err(OsError(format!(
                    "staged deployment is {}, not {}",
                    d.csum, target.checksum
                )))
            }
            None => return Err(OsError("no staged deployment to finalize".into())),
        }
        sr.set_finalization_locked(false)
            .map_err(err("unlocking finalization"))?;
        match sr.finalize_staged().map_err(err("finalizing"))? {
            Finalize::Finalized(d) if d.csum == target.checksum => Ok(()),
            other => Err(OsError(format!(
                "finalizing {}: unexpected outcome {other:?}",
                target.checksum
            ))),
        }
    }
}
