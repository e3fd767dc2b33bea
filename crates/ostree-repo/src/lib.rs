//! An OSTree-compatible repository ("git for operating system binaries").
//!
//! The on-disk format is upstream's, byte for byte: the real `ostree` reads
//! repositories written here and vice versa. Layers, bottom up:
//!
//! * [`gvariant`] — a normal-form GVariant encoder/decoder;
//! * [`object`] — typed objects (commit, dirtree, dirmeta, content header)
//!   and their checksums;
//! * [`Repo`] — the loose-object store, refs, config, transactions;
//! * [`commit`], [`checkout`], [`fsck`], [`prune`], [`delta`] (with
//!   [`bsdiff`] for its patches), [`pull`],
//!   [`pull_http`], [`summary`] — the operations behind the CLI;
//! * [`progress`] — live counters of a running commit or pull.
//! * [`find_remotes`] — which configured remotes serve collection refs.
//!
//! ```no_run
//! use ostree_repo::{Repo, RepoMode, commit::CommitOptions};
//! let repo = Repo::create("repo".as_ref(), RepoMode::Archive).unwrap();
//! let opts = CommitOptions { branch: Some("os/x86_64".into()), ..Default::default() };
//! let checksum = ostree_repo::commit::commit_dirs(&repo, &["tree".into()], &opts).unwrap();
//! ```

pub mod bsdiff;
pub mod checkout;
pub mod commit;
pub mod delta;
pub mod diff;
pub mod display;
pub mod find_remotes;
pub mod fsck;
pub mod gvariant;
pub mod keyfile;
pub mod object;
pub mod progress;
pub mod prune;
pub mod pull;
pub mod pull_http;
mod repo;
mod scratch;
pub mod sign;
pub(crate) mod statcache;
pub mod summary;
mod sys;
mod xz;

pub use object::{Checksum, ObjectType};
pub use repo::{
    parse_refspec, validate_collection_id, validate_ref, ContentObject, Repo, RepoMode, Stats,
    Transaction,
};

/// Errors from repository operations. Messages follow upstream's wording
/// where scripts (and upstream's tests) match on them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure, with the operation and path.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `opening /repo/config`.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An object or file does not have the expected format or checksum.
    #[error("{0}")]
    Corrupt(String),
    /// A ref, object or path does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Bad user input (ref name, option value, mode, ...).
    #[error("{0}")]
    Invalid(String),
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
