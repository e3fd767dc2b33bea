//! FleetLock reboot coordination: the protocol, a server, its stores, and a client.
//!
//! Nodes of a cluster must not all reboot into an update at once. Before finalizing an
//! update a node asks for a slot of its group (`POST /v1/pre-reboot`); once it is back
//! and healthy it gives the slot back (`POST /v1/steady-state`). This crate implements
//! that protocol (coreos/zincati:docs/development/fleetlock/protocol.md) compatibly
//! with airlock, the reference server:
//!
//! * [`protocol`]: wire types, validation and error kinds;
//! * [`semaphore`]: the per-group counting semaphore as pure state transitions
//!   (recursive per node id, optional leases);
//! * [`store`]: persistence behind the [`store::Store`] trait, an embedded SQLite file
//!   ([`store::SqliteStore`]) or an etcd v3 cluster ([`store::EtcdStore`]) shared by
//!   several servers, with airlock's key layout;
//! * [`config`]: the server's TOML configuration;
//! * [`server`]: the axum HTTP service (protocol, status, admin, metrics), plain or
//!   over TLS ([`tls`]);
//! * [`client`]: an async client for update agents and operators.

#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod protocol;
pub mod semaphore;
pub mod server;
pub mod store;
mod time;
pub mod tls;

/// Errors of the semaphore and its stores.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Every slot of the group is taken.
    #[error("all {slots} semaphore slots currently locked")]
    Full {
        /// Configured slots.
        slots: u64,
    },
    /// Concurrent writers kept winning the compare-and-swap.
    #[error("conflict on semaphore detected, aborting")]
    Conflict,
    /// The SQLite store failed.
    #[error("sqlite store {path}: {source}")]
    Sqlite {
        /// Database file.
        path: String,
        /// Cause.
        source: rusqlite::Error,
    },
    /// A store worker failed outside the database itself.
    #[error("store: {0}")]
    Store(String),
    /// No etcd endpoint answered successfully.
    #[error("etcd: {0}")]
    Etcd(String),
    /// A stored value could not be decoded.
    #[error("corrupt semaphore state for group {group:?}: {detail}")]
    Corrupt {
        /// Group whose state is corrupt.
        group: String,
        /// What is wrong.
        detail: String,
    },
}
