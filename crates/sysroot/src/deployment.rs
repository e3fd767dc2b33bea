//! A deployment: one checkout of a commit under `ostree/deploy/OS/deploy/`,
//! plus the boot configuration that selects it.

use crate::bls::EntryName;
use crate::kargs::KernelArgs;
use ostree_repo::keyfile::KeyFile;
use std::path::PathBuf;

/// A deployment as listed by the current boot configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// Position in the list: 0 is the default for the next boot.
    pub index: usize,
    /// Stateroot (`--os`), e.g. `fedora-coreos`.
    pub osname: String,
    /// Commit checksum (hex).
    pub csum: String,
    /// Distinguishes several deployments of the same commit.
    pub deployserial: u32,
    /// Checksum of kernel + initramfs (+ devicetree): names `/boot/ostree/OS-BOOTCSUM`.
    pub bootcsum: String,
    /// Distinguishes deployments sharing a bootcsum in the bootlinks.
    pub bootserial: u32,
    /// Kernel arguments without the `ostree=` argument.
    pub kargs: KernelArgs,
    /// The `.origin` keyfile, if present.
    pub origin: Option<KeyFile>,
    /// The BLS entry file this deployment was loaded from (with its boot
    /// counter); `None` for a deployment not yet written.
    pub entry: Option<EntryName>,
}

impl Deployment {
    /// `CSUM.SERIAL`, the deployment directory's name.
    pub fn dir_name(&self) -> String {
        format!("{}.{}", self.csum, self.deployserial)
    }

    /// Deployment directory relative to the sysroot.
    pub fn relpath(&self) -> PathBuf {
        PathBuf::from(format!(
            "ostree/deploy/{}/deploy/{}",
            self.osname,
            self.dir_name()
        ))
    }

    /// `.origin` file relative to the sysroot.
    pub fn origin_relpath(&self) -> PathBuf {
        PathBuf::from(format!(
            "ostree/deploy/{}/deploy/{}.origin",
            self.osname,
            self.dir_name()
        ))
    }

    /// The `ostree=` karg value for boot version `bootversion`.
    pub fn bootlink(&self, bootversion: u32) -> String {
        format!(
            "/ostree/boot.{bootversion}/{}/{}/{}",
            self.osname, self.bootcsum, self.bootserial
        )
    }

    /// Whether `ostree admin pin` protected it from garbage collection.
    pub fn is_pinned(&self) -> bool {
        self.origin
            .as_ref()
            .and_then(|o| o.get_bool("libostree-transient", "pinned").ok().flatten())
            .unwrap_or(false)
    }

    /// The refspec the deployment follows (`[origin] refspec`).
    pub fn origin_refspec(&self) -> Option<&str> {
        self.origin
            .as_ref()
            .and_then(|o| o.get("origin", "refspec"))
    }

    /// Same checkout (stateroot, commit and serial).
    pub fn same_as(&self, other: &Deployment) -> bool {
        self.osname == other.osname
            && self.csum == other.csum
            && self.deployserial == other.deployserial
    }
}
