//! Boot loader backends. The BLS entries in `/boot/loader.B/entries` are
//! always written (they are the source of truth for the deployment list);
//! a backend adds what its boot loader needs on top and owns the boot
//! counter's representation.
//!
//! Boot counting per backend:
//!
//! * BLS / systemd-boot ([`Bls`]): the counter is the entry file name
//!   (`+LEFT-DONE`); the firmware-side loader renames before each attempt,
//!   sorts spent entries last, and `boot-complete` renames back.
//! * GRUB ([`Grub`](crate::grub::Grub), for GRUBs without `blscfg`): GRUB
//!   cannot rename files but can rewrite its 1 KiB `grubenv` block in
//!   place. `write_config` renders `loader.B/grub.cfg` (swapped with the
//!   entries) and, for a counted default, stores `boot_entry=<menu entry
//!   id>` and `boot_counter=<tries>` in `/boot/grub/grubenv`. The menu
//!   counts down by string comparison and `save_env`s before each attempt;
//!   at `0` it boots the previous entry. [`Bootloader::live_counter`] turns
//!   the grubenv count into the `(left, done)` the rest of the crate uses,
//!   so `boot-complete` sees "booted index 1 while the default's counter is
//!   spent" exactly as with systemd-boot and records the failure;
//!   `mark_good` clears the grubenv variables. This is Fedora's
//!   `grub2-boot-success` scheme keyed to one entry.

use crate::bls::EntryName;
use crate::deployment::Deployment;
use crate::fsutil;
use crate::{Error, Result};
use std::fs;
use std::path::Path;

/// Which backend a sysroot uses (`[sysroot] bootloader` in the repo config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootloaderKind {
    /// BLS entries only, read directly by systemd-boot or GRUB's `blscfg`
    /// (upstream `none`; `auto` maps here as well).
    Bls,
    /// A generated `loader.B/grub.cfg` plus boot counting in
    /// `/boot/grub/grubenv` (upstream's value `grub2`).
    Grub,
}

impl BootloaderKind {
    /// Parses the config value.
    pub fn parse(s: &str) -> Result<BootloaderKind> {
        match s {
            "none" | "auto" | "bls" | "systemd-boot" => Ok(BootloaderKind::Bls),
            "grub2" | "grub" => Ok(BootloaderKind::Grub),
            other => Err(Error::Invalid(format!(
                "ostree/repo/config: [sysroot] bootloader: unsupported value '{other}' (supported: none, auto, bls, grub2)"
            ))),
        }
    }

    /// The backend implementation.
    pub fn backend(self) -> Box<dyn Bootloader> {
        match self {
            BootloaderKind::Bls => Box::new(Bls),
            BootloaderKind::Grub => Box::new(crate::grub::Grub),
        }
    }
}

/// What a boot loader backend does.
pub trait Bootloader {
    /// Backend name for messages.
    fn name(&self) -> &'static str;

    /// Writes backend-specific configuration for boot version `bootversion`
    /// after its entries exist and before `/boot/loader` is swapped to it.
    /// Anything written must be keyed by `bootversion` or itself swapped
    /// atomically, so the old configuration stays intact until the swap.
    fn write_config(&self, boot: &Path, bootversion: u32) -> Result<()>;

    /// The entry file name for `stem` when it gets `tries` boot attempts.
    fn counted_entry(&self, stem: &str, tries: u32) -> EntryName;

    /// Marks the counted entry `name` in `entries` as good: it then boots
    /// without limit. Returns the new name.
    fn mark_good(&self, entries: &Path, name: &EntryName) -> Result<EntryName>;

    /// The `(left, done)` boot counter of deployment `d` (loaded from the
    /// entries under `boot`) as the boot loader will see it at the next
    /// power-on. Backends keeping the counter outside the entry name
    /// override this; by default it is the name's.
    fn live_counter(&self, boot: &Path, d: &Deployment) -> Result<Option<(u32, u32)>> {
        let _ = boot;
        Ok(d.entry.as_ref().and_then(|e| e.counter))
    }
}

/// systemd-boot / Boot Loader Specification: the counter lives in the
/// entry file name, which systemd-boot decrements before each attempt and
/// `systemd-bless-boot` (here: `admin boot-complete`) strips on success.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bls;

impl Bootloader for Bls {
    fn name(&self) -> &'static str {
        "bls"
    }

    fn write_config(&self, _boot: &Path, _bootversion: u32) -> Result<()> {
        // The entries are the whole configuration.
        Ok(())
    }

    fn counted_entry(&self, stem: &str, tries: u32) -> EntryName {
        EntryName {
            stem: stem.to_string(),
            counter: Some((tries, 0)),
        }
    }

    fn mark_good(&self, entries: &Path, name: &EntryName) -> Result<EntryName> {
        let good = EntryName {
            stem: name.stem.clone(),
            counter: None,
        };
        if name.counter.is_some() {
            let from = entries.join(name.file_name());
            let to = entries.join(good.file_name());
            fs::rename(&from, &to).map_err(fsutil::io_at("renaming", &from))?;
            fsutil::fsync_dir(entries)?;
        }
        Ok(good)
    }
}
