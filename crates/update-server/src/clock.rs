//! Time source for rollout ramps, injectable so tests can stand at a chosen instant.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Unix time in seconds.
pub trait Clock: Send + Sync + 'static {
    /// Current unix time.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        release_meta::time::now_unix()
    }
}

/// A clock that shows a set time until moved; clones share the same time.
#[derive(Debug, Default, Clone)]
pub struct FixedClock(Arc<AtomicI64>);

impl FixedClock {
    /// A clock showing `unix`.
    pub fn at(unix: i64) -> FixedClock {
        FixedClock(Arc::new(AtomicI64::new(unix)))
    }

    /// Moves the clock to `unix`.
    pub fn set(&self, unix: i64) {
        self.0.store(unix, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
