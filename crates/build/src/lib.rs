//! `ferrocore build`: compose the OS from Debian packages into a commit of
//! our OSTree store (coreos-assembler's role).
//!
//! Data flow: `os/manifest.toml` ([`Manifest`]) names the packages;
//! [`lock`](lock_packages) resolves them once, in a real throwaway install,
//! into `os/lock.toml` ([`Lock`], every installed package with its exact
//! version); [`build`] installs exactly that set with mmdebstrap (mirror
//! from the host's apt sources, `.deb`s and package lists from a local
//! cache), rewrites the tree into the OSTree layout ([`postprocess`]),
//! commits it with `version`, `ostree.bootable` and `ostree.linux`, and
//! writes a `meta.json` build record.
//!
//! ```no_run
//! use ferrocore_build::{build, BuildOptions};
//! let out = build(&BuildOptions::new("os".into(), "repo".into(), "/var/tmp/cache".into())).unwrap();
//! println!("{} {}", out.version, out.commit);
//! ```

mod compose;
pub mod fsutil;
mod image;
mod lock;
mod manifest;
mod meta;
pub mod postprocess;

pub use compose::{build, host_sources, lock_packages, BuildOptions, BuildOutcome};
pub use image::{
    build_image, build_image_for, build_image_from_sysroot, derived_uuid, image_options_for,
    make_sysroot, ImageOptions, ImageOutcome, Platform, DEFAULT_BOOT_TRIES, DEFAULT_SIZE,
    STATEROOT,
};
pub use lock::{valid_version, Lock, LOCK_FILE};
pub use manifest::{valid_package_name, Manifest, MANIFEST_FILE};
pub use meta::{version_for, Artifact, BuildMeta};

use std::path::{Path, PathBuf};

/// Errors of the build. Messages name the file and key (for configuration)
/// or the step and its log (for the compose).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure on a path.
    // The OS error is in the message rather than `source()`, so that
    // `anyhow`'s `{:#}` chain does not print it twice.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Bad manifest or lockfile content.
    #[error("{file}: {message}")]
    Config {
        /// The file.
        file: PathBuf,
        /// What is wrong, starting with the key.
        message: String,
    },
    /// The lockfile does not match the manifest or the installed set.
    #[error("{0}")]
    Lock(String),
    /// mmdebstrap or post-processing failed.
    #[error("{0}")]
    Compose(String),
    /// Building a disk image failed: deploying into the image's sysroot,
    /// or a partitioning, file system or boot loader tool.
    #[error("image: {0}")]
    Image(String),
    /// The OSTree store refused the commit.
    #[error("ostree repository: {0}")]
    Repo(#[from] ostree_repo::Error),
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
