//! ferrocore's automatic update agent, compatible with Zincati's configuration and
//! behaviour (coreos/zincati), minus its known traps.
//!
//! Data flow: [`config::Config::load`] merges TOML fragments; [`agent::Agent`] runs
//! Zincati's state machine: it reads the booted release from the [`os::Os`], asks the
//! update service for the graph with the node's [`cincinnati::Identity`], picks the
//! newest allowed release ([`cincinnati::find_update`]), stages it with locked
//! finalization, waits for its [`strategy::Strategy`] (immediately, inside a
//! [`weekly`] maintenance window, or once a FleetLock slot is granted), finalizes and
//! calls the injected [`os::Reboot`]. After the reboot it concludes the attempt
//! (success, or rolled back by the boot counter), reports it to the update server and
//! never stages a failed release again ([`persist`]). [`status::AgentStatus`] tells
//! why the node is or is not updating. [`sysroot_os::SysrootOs`] is the real
//! [`os::Os`]: the node's OSTree sysroot, fetching releases over HTTP from the
//! remote the booted deployment follows.

#![warn(missing_docs)]

pub mod agent;
pub mod cincinnati;
pub mod config;
pub mod notify;
pub mod os;
pub mod persist;
pub mod status;
pub mod strategy;
pub mod sysroot_os;
pub mod weekly;

pub use agent::{Agent, Clock, Env, Paths, State, SystemClock};
pub use config::{Config, ConfigError};
pub use os::{
    Booted, CommandReboot, LocalDeployment, Os, OsError, OsRelease, Reboot, SystemctlReboot,
};
pub use sysroot_os::SysrootOs;
