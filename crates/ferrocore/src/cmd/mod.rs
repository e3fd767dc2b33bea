//! One module per verb; each exposes `main(args) -> ExitCode` with args[0] = tool name.

pub mod admin;
pub mod agent;
pub mod build;
pub mod butane;
pub mod fleetlock;
pub mod ignition;
pub mod initramfs;
pub mod ostree;
pub mod prepare_root;
pub mod release;
pub mod update_server;
pub mod vm;
