//! `upgrade`: fetch what the merge deployment's origin follows and deploy
//! it if it changed (upstream `ostree-sysroot-upgrader.c`).
//!
//! Fetching works for `file://` remotes (a local pull); HTTP remotes must
//! be pulled by the store's client first, then `deploy_only` deploys.

use crate::{DeployOptions, Deployment, Error, Result, Sysroot};
use ostree_repo::keyfile::KeyFile;
use ostree_repo::object::{from_hex, to_hex};
use ostree_repo::pull::{self, PullLocalOptions};
use ostree_repo::{parse_refspec, Repo};
use std::fs;

/// Options of [`Sysroot::upgrade`].
#[derive(Debug, Clone, Default)]
pub struct UpgradeOptions {
    /// Stateroot; default as for deploy.
    pub osname: Option<String>,
    /// Deploy this commit instead of the ref's head (`--override-commit`).
    pub override_commit: Option<String>,
    /// Allow a target older than the current deployment (`--allow-downgrade`).
    pub allow_downgrade: bool,
    /// Only fetch (`--pull-only`).
    pub pull_only: bool,
    /// Do not fetch, deploy what the repo has (`--deploy-only`).
    pub deploy_only: bool,
    /// Boot tries for the new default.
    pub boot_tries: Option<u32>,
}

/// Outcome of [`Sysroot::upgrade`].
#[derive(Debug, Clone, PartialEq)]
pub enum Upgrade {
    /// A new deployment was made.
    Deployed(Deployment),
    /// The target commit is already deployed as the merge deployment.
    NoUpdate,
    /// `pull_only`: fetched this commit.
    Pulled(String),
}

impl Sysroot {
    /// The URL of `remote` as upstream's system repository sees it: the
    /// repo's `config`, then `etc/ostree/remotes.d/*.conf` below the sysroot
    /// (`/etc` of the booted system; what `ostree remote add` writes there
    /// and what a node's provisioning config can add).
    pub fn remote_url(&self, remote: &str) -> Result<String> {
        let repo = self.repo()?;
        let group = format!("remote \"{remote}\"");
        if let Some(url) = repo.config().get(&group, "url") {
            return Ok(url.to_string());
        }
        let dir = self.path.join("etc/ostree/remotes.d");
        let mut files: Vec<_> = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(crate::fsutil::io_at("reading", &dir)(e)),
        };
        files.sort();
        for f in files {
            let text = fs::read_to_string(&f).map_err(crate::fsutil::io_at("reading", &f))?;
            let kf = KeyFile::parse(&text, &f.display().to_string())?;
            if let Some(url) = kf.get(&group, "url") {
                return Ok(url.to_string());
            }
        }
        Err(Error::NotFound(format!(
            "Remote \"{remote}\" not found in {}/config or {}",
            repo.path().display(),
            dir.display()
        )))
    }

    fn fetch(&self, remote: &str, name: &str, commit: Option<&str>) -> Result<()> {
        let repo = self.repo()?;
        let url = self.remote_url(remote)?;
        let Some(path) = url.strip_prefix("file://") else {
            return Err(Error::Invalid(format!(
                "remote {remote}: fetching from {url} is not supported here; \
                 pull with `ostree pull {remote} {name}`, then upgrade with --deploy-only"
            )));
        };
        let src = Repo::open(path.as_ref())?;
        let opts = PullLocalOptions {
            remote: Some(remote.to_string()),
            ..Default::default()
        };
        pull::pull_local(&src, &repo, &[name.to_string()], &opts)?;
        if let Some(c) = commit {
            // An override commit may be older than the ref's head.
            let o = PullLocalOptions::default();
            pull::pull_local(&src, &repo, &[c.to_string()], &o)?;
        }
        Ok(())
    }

    /// Upgrades the stateroot's merge deployment to the newest commit of
    /// its origin refspec (or `override_commit`).
    pub fn upgrade(&mut self, opts: &UpgradeOptions) -> Result<Upgrade> {
        self.reload()?;
        let osname = self.default_osname(opts.osname.as_deref())?;
        let merge = self
            .merge_deployment(&osname)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("No deployment of stateroot {osname}")))?;
        let origin = merge.origin.clone().ok_or_else(|| {
            Error::NotFound(format!("Deployment {} has no origin", merge.dir_name()))
        })?;
        if let Some(msg) = origin.get("origin", "unconfigured-state") {
            return Err(Error::Invalid(msg.to_string()));
        }
        let refspec = origin
            .get("origin", "refspec")
            .ok_or_else(|| Error::Invalid("origin has no refspec".into()))?
            .to_string();
        // As upstream's `admin upgrade`: without --override-commit a pinned
        // override is dropped and the ref's head is followed again.
        let override_commit = opts.override_commit.clone();
        let (remote, name) = parse_refspec(&refspec)?;
        if !opts.deploy_only {
            if let Some(r) = remote {
                self.fetch(r, name, override_commit.as_deref())?;
            }
        }
        let repo = self.repo()?;
        let target = match &override_commit {
            Some(c) => repo
                .resolve_rev(c, false)?
                .ok_or_else(|| Error::NotFound(format!("commit {c} not found")))?,
            None => repo
                .resolve_rev(&refspec, false)?
                .ok_or_else(|| Error::NotFound(format!("Refspec '{refspec}' not found")))?,
        };
        let target_hex = to_hex(&target);
        if opts.pull_only {
            return Ok(Upgrade::Pulled(target_hex));
        }
        if target_hex == merge.csum {
            return Ok(Upgrade::NoUpdate);
        }
        if !opts.allow_downgrade {
            let cur = from_hex(&merge.csum)
                .and_then(|c| repo.load_commit(&c).ok())
                .map(|c| c.timestamp);
            let new = repo.load_commit(&target)?.timestamp;
            if let Some(cur) = cur {
                if new < cur {
                    return Err(Error::Invalid(format!(
                        "Upgrade target revision '{target_hex}' with timestamp '{new}' is chronologically older than current revision '{}' with timestamp '{cur}'; use --allow-downgrade to permit",
                        merge.csum
                    )));
                }
            }
        }
        let mut new_origin = origin.clone();
        new_origin.remove_group("libostree-transient");
        match &opts.override_commit {
            Some(_) => new_origin.set("origin", "override-commit", &target_hex),
            None => {
                new_origin.remove("origin", "override-commit");
            }
        }
        let d = self.deploy(
            &target_hex,
            &DeployOptions {
                osname: Some(osname),
                origin: Some(new_origin),
                boot_tries: opts.boot_tries,
                ..Default::default()
            },
        )?;
        Ok(Upgrade::Deployed(d))
    }
}

impl Sysroot {
    /// Adds (or replaces) remote `remote` with `url` and `settings` in the
    /// system repo and makes deployment `index` follow `remote:BRANCH`
    /// (`admin set-origin`; BRANCH defaults to the current ref name).
    pub fn set_origin(
        &mut self,
        index: usize,
        remote: &str,
        url: &str,
        branch: Option<&str>,
        settings: &[(String, String)],
    ) -> Result<()> {
        let _lock = crate::fsutil::lock(&self.path.join("ostree/lock"))?;
        self.reload()?;
        let d = self.deployments.get(index).cloned().ok_or_else(|| {
            Error::Invalid(format!(
                "Out of range deployment index {index}, expected < {}",
                self.deployments.len()
            ))
        })?;
        let mut origin = d.origin.clone().unwrap_or_default();
        let old = origin.get("origin", "refspec").unwrap_or("").to_string();
        let name = match branch {
            Some(b) => b.to_string(),
            None => parse_refspec(&old)
                .map(|(_, n)| n.to_string())
                .map_err(|_| Error::Invalid(format!("origin refspec '{old}' has no ref name")))?,
        };
        let new_spec = format!("{remote}:{name}");
        parse_refspec(&new_spec)?;
        let mut repo = self.repo()?;
        let mut config = repo.config().clone();
        let group = format!("remote \"{remote}\"");
        config.remove_group(&group);
        config.set(&group, "url", url);
        for (k, v) in settings {
            config.set(&group, k, v);
        }
        repo.write_config(config)?;
        origin.set("origin", "refspec", &new_spec);
        crate::fsutil::write_file_atomic(
            &self.path.join(d.origin_relpath()),
            origin.to_text().as_bytes(),
            0o644,
        )?;
        self.reload()
    }
}

impl Sysroot {
    /// Makes the stateroot follow `refspec` (`admin switch`): `REF` keeps
    /// the current remote, `REMOTE:` keeps the current ref name. Fetches
    /// like [`Sysroot::upgrade`] and always deploys, since the origin
    /// changes even when the commit does not.
    pub fn switch(&mut self, refspec: &str, opts: &UpgradeOptions) -> Result<Deployment> {
        self.reload()?;
        let osname = self.default_osname(opts.osname.as_deref())?;
        let merge = self
            .merge_deployment(&osname)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("No deployment of stateroot {osname}")))?;
        let mut origin = merge.origin.clone().unwrap_or_default();
        let old = origin.get("origin", "refspec").unwrap_or("").to_string();
        let (old_remote, old_name) = match old.split_once(':') {
            Some((r, n)) => (Some(r.to_string()), n.to_string()),
            None => (None, old.clone()),
        };
        let new = match refspec.split_once(':') {
            Some((r, "")) => format!("{r}:{old_name}"),
            Some(_) => refspec.to_string(),
            None => match &old_remote {
                Some(r) => format!("{r}:{refspec}"),
                None => refspec.to_string(),
            },
        };
        if new == old {
            return Err(Error::Invalid(format!("Old and new refs are equal: {new}")));
        }
        let (remote, name) = parse_refspec(&new)?;
        if !opts.deploy_only {
            if let Some(r) = remote {
                self.fetch(r, name, None)?;
            }
        }
        let target = self
            .repo()?
            .resolve_rev(&new, false)?
            .ok_or_else(|| Error::NotFound(format!("Refspec '{new}' not found")))?;
        origin.remove_group("libostree-transient");
        origin.remove("origin", "override-commit");
        origin.set("origin", "refspec", &new);
        self.deploy(
            &to_hex(&target),
            &DeployOptions {
                osname: Some(osname),
                origin: Some(origin),
                boot_tries: opts.boot_tries,
                ..Default::default()
            },
        )
    }
}
