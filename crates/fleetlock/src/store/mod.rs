//! Persistence of group semaphores.
//!
//! A store offers one primitive: apply a transition to a group's [`GroupState`]
//! atomically. The transition may run several times (the etcd store retries on a
//! compare-and-swap conflict), so it must be a pure function of the state it is given.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::semaphore::GroupState;
use crate::Error;

mod etcd;
mod sqlite;

pub use etcd::{EtcdOptions, EtcdStore, DEFAULT_PREFIX};
pub use sqlite::SqliteStore;

/// A boxed, sendable future, so that [`Store`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A state transition: mutates the state, returns whether it changed (a write is
/// needed) or refuses with an error (nothing is written). Shared ownership lets the
/// SQLite store run it on a blocking thread.
pub type Transition = Arc<dyn Fn(&mut GroupState) -> Result<bool, Error> + Send + Sync>;

/// Where semaphores live.
pub trait Store: Send + Sync + 'static {
    /// Atomically applies `transition` to `group`'s state (absent state = empty) and
    /// returns the resulting state. Two concurrent callers, even in two processes,
    /// never both see the same prior state and both write.
    fn apply<'a>(
        &'a self,
        group: &'a str,
        transition: Transition,
    ) -> BoxFuture<'a, Result<GroupState, Error>>;

    /// Reads `group`'s current state (absent state = empty).
    fn load<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<GroupState, Error>>;
}
