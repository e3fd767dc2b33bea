//! Disk tests on loop devices (root needed; they fail, never skip, without
//! it): the disks stage itself, `plan`, and side by side with the real
//! Ignition 2.14 of the Debian package.

#[path = "../common/mod.rs"]
mod common;
mod peer;
mod plan;
mod stage;
mod support;
