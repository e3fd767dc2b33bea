//! Operations on the deployment list: undeploy, pin, rollback, kargs.

use crate::fsutil;
use crate::kargs::KernelArgs;
use crate::{Deployment, Error, Result, Sysroot};

impl Sysroot {
    fn checked_index(&self, index: usize) -> Result<&Deployment> {
        self.deployments.get(index).ok_or_else(|| {
            Error::Invalid(format!(
                "Out of range deployment index {index}, expected < {}",
                self.deployments.len()
            ))
        })
    }

    /// Removes deployment `index` (`ostree admin undeploy`); the booted one
    /// is refused. Removing the last one is allowed, as upstream (an image
    /// builder may redeploy).
    pub fn undeploy(&mut self, index: usize) -> Result<Deployment> {
        let _lock = fsutil::lock(&self.path.join("ostree/lock"))?;
        self.reload()?;
        let d = self.checked_index(index)?.clone();
        if self.booted == Some(index) {
            return Err(Error::Invalid(format!(
                "Cannot undeploy currently booted deployment {index}"
            )));
        }
        let mut list = self.deployments.clone();
        list.remove(index);
        self.write_deployments_locked(list, None)?;
        self.cleanup_locked(true)?;
        Ok(d)
    }

    /// Sets or clears `[libostree-transient] pinned` in the origin of
    /// deployment `index` (`ostree admin pin [--unpin]`). Pinned deployments
    /// are never garbage-collected.
    pub fn set_pinned(&mut self, index: usize, pinned: bool) -> Result<()> {
        let _lock = fsutil::lock(&self.path.join("ostree/lock"))?;
        self.reload()?;
        let d = self.checked_index(index)?.clone();
        let mut origin = d.origin.clone().unwrap_or_default();
        if pinned {
            origin.set("libostree-transient", "pinned", "true");
        } else {
            origin.remove("libostree-transient", "pinned");
        }
        fsutil::write_file_atomic(
            &self.path.join(d.origin_relpath()),
            origin.to_text().as_bytes(),
            0o644,
        )?;
        self.reload()
    }

    /// Makes the previous deployment the default (`rpm-ostree rollback`):
    /// when booted into the default, the rollback deployment (index 1) moves
    /// first; when booted into another one, that one moves first.
    /// Returns the new default.
    pub fn rollback(&mut self) -> Result<Deployment> {
        let _lock = fsutil::lock(&self.path.join("ostree/lock"))?;
        self.reload()?;
        let target = match self.booted {
            Some(b) if b != 0 => b,
            _ if self.deployments.len() >= 2 => 1,
            _ => return Err(Error::Invalid("No rollback deployment found".into())),
        };
        let mut list = self.deployments.clone();
        let d = list.remove(target);
        list.insert(0, d.clone());
        self.write_deployments_locked(list, None)?;
        self.cleanup_locked(false)?;
        Ok(d)
    }

    /// Edits the kernel arguments of every deployment with one boot swap
    /// (`ostree admin kargs edit-in-place`).
    pub fn edit_kargs_in_place(
        &mut self,
        edit: impl Fn(&mut KernelArgs) -> Result<()>,
    ) -> Result<()> {
        let _lock = fsutil::lock(&self.path.join("ostree/lock"))?;
        self.reload()?;
        let mut list = self.deployments.clone();
        for d in &mut list {
            edit(&mut d.kargs)?;
            d.kargs.remove_key("ostree");
        }
        self.write_deployments_locked(list, None)?;
        self.cleanup_locked(false).map(|_| ())
    }

    /// Replaces the kernel arguments of deployment `index` in place (a new
    /// boot version with the same deployments; `ostree admin kargs
    /// edit-in-place` applied to one deployment).
    pub fn set_kargs(&mut self, index: usize, kargs: KernelArgs) -> Result<()> {
        let _lock = fsutil::lock(&self.path.join("ostree/lock"))?;
        self.reload()?;
        self.checked_index(index)?;
        let mut list = self.deployments.clone();
        let mut k = kargs;
        k.remove_key("ostree");
        list[index].kargs = k;
        self.write_deployments_locked(list, None)?;
        self.cleanup_locked(false).map(|_| ())
    }
}
