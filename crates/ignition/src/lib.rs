//! Ignition's provisioning engine: fetch a config once, then apply it to a
//! target root, failing closed: any part of the config that cannot be applied
//! makes the stage fail, with the config path of the culprit
//! (`$.storage.files.3.contents.source: resource not found`).
//!
//! # Public API
//!
//! * [`Options`] (paths and platform, upstream's defaults) and [`Stage`].
//! * [`run_stage`]: one stage, like `ignition -stage S`; [`run`]: `fetch` then
//!   `files`, what an offline user or a test wants.
//! * [`device_needs`]: whether the fetched config touches devices, and the
//!   kernel modules that takes (for the initramfs).
//! * [`Error`]: `path` (config path, when one field is to blame) and `message`.
//! * [`resource::Fetcher`]: `data:`/http(s) fetching with gzip and hash checks.
//! * [`path::join_path`]: upstream's symlink-safe path resolution in a root.
//! * [`plan::plan`]: what the disks stage would create, keep or destroy.
//! * [`gpt::read`]: a disk's GPT partition entries.
//!
//! # Stages
//!
//! * `fetch` / `fetch-offline`: user config from `ignition.config.url=` on the
//!   kernel command line, else `user.ign` in the system config dir, else the
//!   platform (`file`, `qemu`); system base configs from `base.d` and
//!   `base.platform.d/<platform>`; `ignition.config.merge/replace` rendered
//!   (with cycle and depth limits); validated; cached (JSON, 0640, atomic);
//!   state file written.
//! * `mount` / `umount`: filesystems with a `path`, shallowest first
//!   (`mount -o <mountOptions> -t <format> <device> <root><path>`), created
//!   mountpoints recorded in the state file; `umount` deepest first.
//! * `kargs`: `ignition-kargs-helper --should-exist A ... --should-not-exist B`.
//! * `files`: groups, users (`groupadd`/`useradd`/`usermod --root`), SSH keys,
//!   directories/files/links by depth with hard links last, systemd units,
//!   drop-ins, masks, presets, `/etc/.ignition-result.json`.
//!
//! * `disks`: GPT partitions (`sgdisk`, upstream's matching rules), RAID
//!   (`mdadm`), LUKS2 with a key file (`cryptsetup`), filesystems (`blkid`
//!   probe, reuse or `wipefs` + `mkfs.*`); LUKS key files and `/etc/crypttab`
//!   are written by `files`. [`plan::plan`] is its dry run. A second run over
//!   the same disks keeps what matches, including a running array and an
//!   open LUKS volume (where upstream fails).
//!
//! Not yet: clevis/CEX LUKS bindings (clear error), SELinux
//! relabelling, tftp/s3/gs/arn sources ("unsupported source scheme").
//!
//! ```no_run
//! let mut opts = ignition_engine::Options::new("file", "/sysroot");
//! opts.config_file = Some("config.ign".into());
//! ignition_engine::run(&opts).expect("provisioning failed");
//! ```

#![warn(missing_docs)]

mod disks;
mod engine;
mod error;
mod files;
pub mod gpt;
mod mount;
mod passwd;
pub mod path;
pub mod plan;
pub mod resource;
mod state;
mod tools;

pub use engine::{device_needs, run_stage, DeviceNeeds, Options, Outcome, Stage, MAX_RENDER_DEPTH};
pub use error::{Error, Result};
pub use files::{PRESET_PATH, RESULT_PATH};
pub use state::{Failure, FetchedConfig, State};

/// Runs `fetch` then `files` (upstream's order without disks/mount).
pub fn run(opts: &Options) -> Result<()> {
    run_stage(opts, Stage::Fetch)?;
    run_stage(opts, Stage::Files)?;
    Ok(())
}
