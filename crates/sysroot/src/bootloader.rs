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
//! * GRUB (design, not implemented): GRUB cannot rename files but can
//!   rewrite its 1 KiB `grubenv` block. The backend would store
//!   `boot_counter=<tries>` and `boot_entry=<entry stem>` in
//!   `/boot/grub2/grubenv` when a counted default is written (from
//!   `write_config`, before the `/boot/loader` swap, since grubenv is
//!   updated in place atomically by GRUB's own writer), and ship a
//!   `grub.cfg` snippet run before `blscfg`: if `boot_entry` names the
//!   default and `boot_counter` is 0, `set default=1` (the rollback
//!   entry, sorted second by `version`); else decrement and `save_env
//!   boot_counter`. `mark_good` clears both variables; `boot-complete`
//!   then sees "booted index 1 while the default's counter is spent" the
//!   same way and records the failure, so the rest of the machinery is
//!   shared. This is Fedora's `grub2-boot-success` scheme keyed to one
//!   entry.

use crate::bls::EntryName;
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
}

impl BootloaderKind {
    /// Parses the config value.
    pub fn parse(s: &str) -> Result<BootloaderKind> {
        match s {
            "none" | "auto" | "bls" | "systemd-boot" => Ok(BootloaderKind::Bls),
            other => Err(Error::Invalid(format!(
                "ostree/repo/config: [sysroot] bootloader: unsupported value '{other}' (supported: none, auto, bls)"
            ))),
        }
    }

    /// The backend implementation.
    pub fn backend(self) -> Box<dyn Bootloader> {
        match self {
            BootloaderKind::Bls => Box::new(Bls),
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
