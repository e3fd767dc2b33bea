//! Staged deployments (`deploy --stage`): the tree is checked out now, the
//! `/etc` merge and the boot swap happen at shutdown
//! (`admin finalize-staged`, run by the OS's
//! `os/units/ferrocore-finalize-staged.service`), so `/etc` changes made until then
//! are carried over. State lives in `/run/ostree/staged-deployment`
//! (GVariant `a{sv}` as upstream: `target` {`name`, `osname`, `bootcsum`},
//! `kargs`, `origin`), so a crash or power loss before finalization simply
//! forgets it. A *locked* staged deployment
//! (`/run/ostree/staged-deployment-locked`) is not finalized until the
//! update agent unlocks it.

use crate::deployment::Deployment;
use crate::fsutil::{self, io_at};
use crate::kargs::KernelArgs;
use crate::{DeployOptions, Error, Result, Sysroot};
use ostree_repo::gvariant::{self, Type, Value};
use ostree_repo::keyfile::KeyFile;
use std::fs;
use std::io;
use std::path::PathBuf;

/// Outcome of [`Sysroot::finalize_staged`].
#[derive(Debug, Clone, PartialEq)]
pub enum Finalize {
    /// The staged deployment is now the default.
    Finalized(Deployment),
    /// Finalization is locked; nothing was changed.
    Locked,
    /// There is no staged deployment.
    NothingStaged,
}

fn str_v(s: &str) -> Value {
    Value::Str(s.to_string())
}

fn get_str(entries: &[(String, Value)], k: &str) -> Option<String> {
    entries.iter().find_map(|(kk, v)| match v {
        Value::Str(s) if kk == k => Some(s.clone()),
        _ => None,
    })
}

impl Sysroot {
    fn staged_path(&self) -> PathBuf {
        self.run_dir.join("ostree/staged-deployment")
    }

    fn staged_lock_path(&self) -> PathBuf {
        self.run_dir.join("ostree/staged-deployment-locked")
    }

    /// The staged deployment, if any.
    pub fn staged_deployment(&self) -> Result<Option<Deployment>> {
        let p = self.staged_path();
        let data = match fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", p.display()), e)),
        };
        let bad = |what: &str| Error::Corrupt(format!("{}: {what}", p.display()));
        let ty = Type::parse("a{sv}").expect("static type");
        let v = gvariant::decode(&ty, &data).map_err(|e| bad(&e.to_string()))?;
        let top = gvariant::vardict_entries(&v).ok_or_else(|| bad("not a{sv}"))?;
        let target = top
            .iter()
            .find(|(k, _)| k == "target")
            .and_then(|(_, v)| gvariant::vardict_entries(v))
            .ok_or_else(|| bad("no 'target'"))?;
        let name = get_str(&target, "name").ok_or_else(|| bad("no target.name"))?;
        let (csum, serial) = name
            .rsplit_once('.')
            .and_then(|(c, s)| Some((c.to_string(), s.parse().ok()?)))
            .ok_or_else(|| bad("target.name is not CSUM.SERIAL"))?;
        let kargs = match top.iter().find(|(k, _)| k == "kargs") {
            Some((_, Value::Array(_, a))) => a
                .iter()
                .filter_map(|v| match v {
                    Value::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        let origin = match get_str(&top, "origin") {
            Some(t) => Some(KeyFile::parse(&t, &p.display().to_string())?),
            None => None,
        };
        Ok(Some(Deployment {
            index: 0,
            osname: get_str(&target, "osname").ok_or_else(|| bad("no target.osname"))?,
            csum,
            deployserial: serial,
            bootcsum: get_str(&target, "bootcsum").ok_or_else(|| bad("no target.bootcsum"))?,
            bootserial: 0,
            kargs: KernelArgs::parse(&kargs),
            origin,
            entry: None,
        }))
    }

    /// Whether finalization of the staged deployment is locked.
    pub fn is_finalization_locked(&self) -> bool {
        self.staged_lock_path().exists()
    }

    /// Locks or unlocks finalization (`admin lock-finalization [--unlock]`).
    pub fn set_finalization_locked(&self, locked: bool) -> Result<()> {
        let p = self.staged_lock_path();
        if locked {
            let dir = p.parent().expect("has parent");
            fs::create_dir_all(dir).map_err(io_at("mkdir", dir))?;
            fsutil::write_file_atomic(&p, b"", 0o644)
        } else {
            fsutil::remove_all(&p)
        }
    }

    /// Prepares `csum` as a staged deployment (`deploy --stage`): it becomes
    /// the default only when [`Sysroot::finalize_staged`] runs. Requires a
    /// booted system.
    pub fn stage(&mut self, csum: &str, opts: &DeployOptions, lock: bool) -> Result<Deployment> {
        let _lock = fsutil::lock(&self.path.join("ostree/lock"))?;
        self.reload()?;
        if self.booted.is_none() {
            return Err(Error::Invalid(
                "Cannot stage deployment: Not currently booted into an OSTree system".into(),
            ));
        }
        // A previous staged deployment is replaced: its state goes first,
        // then its tree — unless a finalization killed after its boot swap
        // already made that tree a live deployment.
        if let Some(old) = self.staged_deployment()? {
            fsutil::remove_all(&self.staged_path())?;
            if !self.deployments.iter().any(|d| d.same_as(&old)) {
                fsutil::remove_deployment_dir(&self.path.join(old.relpath()))?;
                fsutil::remove_all(&self.path.join(old.origin_relpath()))?;
            }
        }
        let (d, _) = self.prepare_deployment(csum, opts)?;
        let target = gvariant::vardict(&[
            ("name".into(), str_v(&d.dir_name())),
            ("osname".into(), str_v(&d.osname)),
            ("bootcsum".into(), str_v(&d.bootcsum)),
        ]);
        let kargs = Value::Array(
            Type::Str,
            d.kargs.to_vec().into_iter().map(Value::Str).collect(),
        );
        let mut entries = vec![("target".to_string(), target), ("kargs".to_string(), kargs)];
        if let Some(o) = &d.origin {
            entries.push(("origin".into(), str_v(&o.to_text())));
        }
        let p = self.staged_path();
        let dir = p.parent().expect("has parent");
        fs::create_dir_all(dir).map_err(io_at("mkdir", dir))?;
        self.set_finalization_locked(lock)?;
        fsutil::write_file_atomic(&p, &gvariant::vardict(&entries).to_bytes(), 0o644)?;
        // Pin the commit against prune until finalization.
        self.write_refs()?;
        Ok(d)
    }

    /// Applies the staged deployment (`admin finalize-staged`, at
    /// shutdown): re-merges `/etc` from the booted deployment as it is now,
    /// then writes the new deployment list. Idempotent: a finalization
    /// killed after its boot swap only removes the stale state next time.
    pub fn finalize_staged(&mut self) -> Result<Finalize> {
        let _lock = fsutil::lock(&self.path.join("ostree/lock"))?;
        self.reload()?;
        let Some(d) = self.staged_deployment()? else {
            return Ok(Finalize::NothingStaged);
        };
        if self.is_finalization_locked() {
            return Ok(Finalize::Locked);
        }
        if let Some(done) = self.deployments.iter().find(|x| x.same_as(&d)).cloned() {
            fsutil::remove_all(&self.staged_path())?;
            return Ok(Finalize::Finalized(done));
        }
        let dir = self.path.join(d.relpath());
        if !dir.is_dir() {
            fsutil::remove_all(&self.staged_path())?;
            return Err(Error::NotFound(format!(
                "staged deployment {} is missing; discarded",
                dir.display()
            )));
        }
        let merge = self.merge_deployment(&d.osname).cloned();
        let etc = dir.join("etc");
        // A finalization killed after the attribute was set runs again.
        fsutil::set_immutable(&dir, false)?;
        if dir.join("usr/etc").is_dir() {
            fsutil::remove_all(&etc)?;
        }
        self.prepare_etc(&dir, merge.as_ref())?;
        if !fsutil::mutable_deployments() {
            fsutil::set_immutable(&dir, true)?;
        }
        let list = self.list_with(&d, merge.as_ref(), &DeployOptions::default());
        let tries = self.boot_counting_tries()?;
        self.write_deployments_locked(list, tries)?;
        fsutil::remove_all(&self.staged_path())?;
        self.cleanup_locked(true)?;
        let done = self
            .deployments
            .iter()
            .find(|x| x.same_as(&d))
            .cloned()
            .ok_or_else(|| Error::Corrupt("staged deployment missing after finalize".into()))?;
        Ok(Finalize::Finalized(done))
    }
}
