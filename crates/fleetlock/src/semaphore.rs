//! The counting semaphore of one group, as pure state transitions.
//!
//! Stores only persist [`GroupState`] atomically; every decision (recursive lock,
//! slot count, lease expiry) is made here, so both stores behave identically and the
//! rules are unit-testable without I/O.

use std::collections::BTreeMap;

use crate::Error;

/// One lock holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// When the slot was granted (Unix seconds). `None` for holders written by
    /// airlock, which records no time.
    pub since: Option<u64>,
    /// When the slot lapses unless renewed (Unix seconds); `None` = never.
    pub expires: Option<u64>,
}

/// Persisted state of one group's semaphore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupState {
    /// Slot count last written. Informational: the configured count is authoritative
    /// (unlike airlock, which freezes the first value in etcd; coreos/airlock#81).
    pub slots: u64,
    /// Holders by node id; a `BTreeMap` keeps them sorted, as airlock stores them.
    pub holders: BTreeMap<String, Holder>,
}

impl GroupState {
    /// Drops holders whose lease lapsed at `now`; returns whether any was dropped.
    pub fn expire(&mut self, now: u64) -> bool {
        let before = self.holders.len();
        self.holders
            .retain(|_, h| h.expires.is_none_or(|deadline| deadline > now));
        self.holders.len() != before
    }

    /// Holders still valid at `now`.
    pub fn live_holders(&self, now: u64) -> impl Iterator<Item = (&String, &Holder)> {
        self.holders
            .iter()
            .filter(move |(_, h)| h.expires.is_none_or(|deadline| deadline > now))
    }
}

/// Lock request parameters.
#[derive(Debug, Clone, Copy)]
pub struct LockParams {
    /// Configured slot count of the group.
    pub slots: u64,
    /// Current time (Unix seconds).
    pub now: u64,
    /// Lease length in seconds, if leases are on.
    pub ttl: Option<u64>,
}

/// `RecursiveLock`: grants a slot to `id` unless the group is full. A holder asking
/// again succeeds and, with leases on, renews its lease. Returns whether the state
/// changed (and must be written).
pub fn lock(state: &mut GroupState, id: &str, p: LockParams) -> Result<bool, Error> {
    let expired = state.expire(p.now);
    let slots_changed = state.slots != p.slots;
    state.slots = p.slots;
    let expires = p.ttl.map(|ttl| p.now.saturating_add(ttl));
    if let Some(h) = state.holders.get_mut(id) {
        let renewed = h.expires != expires;
        h.expires = expires;
        return Ok(expired || slots_changed || renewed);
    }
    // `>=` rather than `==`: after `slots` is lowered, existing holders keep their
    // slots (they may be rebooting) and nobody new gets in until the count drops.
    if state.holders.len() as u64 >= p.slots {
        return Err(Error::Full { slots: p.slots });
    }
    state.holders.insert(
        id.to_string(),
        Holder {
            since: Some(p.now),
            expires,
        },
    );
    Ok(true)
}

/// `UnlockIfHeld`: releases `id`'s slot if it holds one. Returns whether the state
/// changed.
pub fn unlock(state: &mut GroupState, id: &str, slots: u64, now: u64) -> bool {
    let expired = state.expire(now);
    let slots_changed = state.slots != slots;
    state.slots = slots;
    state.holders.remove(id).is_some() || expired || slots_changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(slots: u64, now: u64, ttl: Option<u64>) -> LockParams {
        LockParams { slots, now, ttl }
    }

    #[test]
    fn counting_and_recursion() {
        let mut s = GroupState::default();
        assert!(lock(&mut s, "a", p(2, 10, None)).unwrap());
        assert!(
            !lock(&mut s, "a", p(2, 11, None)).unwrap(),
            "recursive, no write"
        );
        assert!(lock(&mut s, "b", p(2, 12, None)).unwrap());
        assert!(matches!(
            lock(&mut s, "c", p(2, 13, None)),
            Err(Error::Full { slots: 2 })
        ));
        assert_eq!(s.holders["a"].since, Some(10), "since is the first grant");
        assert!(unlock(&mut s, "a", 2, 14));
        assert!(
            !unlock(&mut s, "a", 2, 15),
            "unlock of a non-holder is a no-op"
        );
        assert!(lock(&mut s, "c", p(2, 16, None)).unwrap());
        assert_eq!(s.holders.keys().collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn lowering_slots_keeps_holders_but_blocks_newcomers() {
        let mut s = GroupState::default();
        lock(&mut s, "a", p(3, 0, None)).unwrap();
        lock(&mut s, "b", p(3, 0, None)).unwrap();
        assert!(
            lock(&mut s, "a", p(1, 1, None)).unwrap(),
            "slot change written"
        );
        assert_eq!(s.slots, 1);
        assert!(lock(&mut s, "c", p(1, 1, None)).is_err());
        unlock(&mut s, "a", 1, 2);
        assert!(
            lock(&mut s, "c", p(1, 2, None)).is_err(),
            "b still holds the one slot"
        );
        unlock(&mut s, "b", 1, 3);
        assert!(lock(&mut s, "c", p(1, 3, None)).is_ok());
        assert!(
            lock(&mut s, "d", p(5, 3, None)).is_ok(),
            "raising slots takes effect"
        );
    }

    #[test]
    fn leases_lapse_and_renew() {
        let mut s = GroupState::default();
        lock(&mut s, "a", p(1, 100, Some(30))).unwrap();
        assert_eq!(s.holders["a"].expires, Some(130));
        assert!(lock(&mut s, "b", p(1, 129, Some(30))).is_err());
        // Renewal by asking again.
        assert!(lock(&mut s, "a", p(1, 120, Some(30))).unwrap());
        assert_eq!(s.holders["a"].expires, Some(150));
        assert_eq!(s.holders["a"].since, Some(100));
        assert_eq!(s.live_holders(149).count(), 1);
        assert_eq!(s.live_holders(150).count(), 0);
        assert!(lock(&mut s, "b", p(1, 150, Some(30))).is_ok(), "a lapsed");
        assert!(!s.holders.contains_key("a"));
    }
}
