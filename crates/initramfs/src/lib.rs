//! ferrocore's own initramfs: a newc cpio archive whose `/init` is the static
//! `ferrocore` binary, with just the kernel modules needed to find and mount
//! the root filesystem (virtio, ext4) and read the Ignition config (fw_cfg).
//!
//! # Public API
//!
//! * [`build`] / [`BuildOptions`]: write `initramfs.img` from an OS tree
//!   (modules and `modules.dep` of one kernel) and a static binary.
//! * [`cpio`]: the deterministic newc writer (sorted, uid/gid 0, mtimes
//!   clamped to `SOURCE_DATE_EPOCH`), optionally gzipped.
//! * [`modules`]: modprobe's dependency resolution (`modules.dep`,
//!   `modules.softdep`, `modules.alias`) into a load order.
//! * [`elf::check_static`]: refuses binaries with a program interpreter.
//! * `init` (feature `runtime`, on by default): what `/init` does as pid 1.
//!
//! ```no_run
//! use std::path::Path;
//! let built = ferrocore_initramfs::build(
//!     Path::new("/var/tmp/rootfs"),
//!     "6.1.0-56-amd64",
//!     Path::new("target/x86_64-unknown-linux-gnu/release/ferrocore"),
//!     Path::new("initramfs.img"),
//! )
//! .unwrap();
//! println!("{} modules, {} bytes", built.modules.len(), built.size);
//! ```

#![warn(missing_docs)]

pub mod cpio;
pub mod elf;
#[cfg(feature = "runtime")]
pub mod init;
pub mod modules;

mod builder;

pub use builder::{build, BuildOptions, Built, MODULE_LIST, MODULE_LIST_VERSION};

use std::path::{Path, PathBuf};

/// Errors of the builder and of the `/init` runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure on a path.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A module named in the list (or one of its dependencies) is missing
    /// from the kernel's module tree.
    #[error("{0}")]
    Module(String),
    /// The binary cannot serve as `/init` (not ELF, or dynamically linked).
    #[error("{}: {message}", path.display())]
    Binary {
        /// The binary.
        path: PathBuf,
        /// Why it was refused.
        message: String,
    },
    /// A path cannot be stored in the archive.
    #[error("cpio: {0}")]
    Archive(String),
    /// A boot step failed (`/init` runtime).
    #[error("{0}")]
    Boot(String),
}

impl Error {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
