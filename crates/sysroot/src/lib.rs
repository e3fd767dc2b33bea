//! An OSTree-compatible sysroot: the physical root of a node holding the
//! system repository, checked-out deployments and the boot loader entries
//! that select one of them.
//!
//! The on-disk layout is upstream's (`ostree admin` and a real
//! `ostree-prepare-root` read what we write):
//!
//! * `/ostree/repo` — bare repository; refs `ostree/B/S/I` pin deployments;
//! * `/ostree/deploy/OS/deploy/CSUM.SERIAL` (+ `.origin`) — deployments;
//!   `/ostree/deploy/OS/var` — the stateroot's shared `/var`;
//! * `/ostree/boot.B -> boot.B.S`, `boot.B.S/OS/BOOTCSUM/N -> deployment`;
//! * `/boot/loader -> loader.B`, `/boot/loader.B/entries/ostree-*.conf`,
//!   `/boot/ostree/OS-BOOTCSUM/{vmlinuz,initramfs}-KVER`.
//!
//! Every change of the deployment list is written beside the live one and
//! committed by a single `rename()` of a symlink (`/boot/loader` or
//! `/ostree/boot.B`), so power loss at any point leaves either the old or
//! the new boot configuration, never a mixture.
//!
//! ```no_run
//! use sysroot::{Sysroot, DeployOptions};
//! let mut sr = Sysroot::load("/".as_ref()).unwrap();
//! let repo = sr.repo().unwrap();
//! let commit = repo.resolve_rev("fedora/x86_64/coreos/stable", false).unwrap().unwrap();
//! let opts = DeployOptions { osname: Some("fedora-coreos".into()), ..Default::default() };
//! sr.deploy(&ostree_repo::object::to_hex(&commit), &opts).unwrap();
//! ```

pub mod bls;
pub mod bootcount;
pub mod bootloader;
pub mod cleanup;
mod deploy;
pub mod deployment;
pub mod etcmerge;
mod freeze;
mod fsutil;
pub mod grub;
pub mod kargs;
mod ops;
pub mod prepare_root;
pub mod staged;
pub mod status;
mod sysroot;
pub mod upgrade;

pub use bootloader::{Bootloader, BootloaderKind};
pub use deploy::DeployOptions;
pub use deployment::Deployment;
pub use kargs::KernelArgs;
pub use sysroot::{BootedSource, Sysroot};

/// Errors of sysroot operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure, with the operation and path.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `renaming /boot/loader.tmp`.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An error from the repository.
    #[error(transparent)]
    Repo(#[from] ostree_repo::Error),
    /// On-disk state that does not have the expected form.
    #[error("{0}")]
    Corrupt(String),
    /// Bad user input (index, karg, refspec, ...).
    #[error("{0}")]
    Invalid(String),
    /// Something the operation needs does not exist.
    #[error("{0}")]
    NotFound(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
