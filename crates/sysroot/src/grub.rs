//! GRUB backend (`[sysroot] bootloader=grub2`) for GRUBs without a BLS
//! reader (Debian's 2.06 has no `blscfg`).
//!
//! Files, relative to the boot file system:
//!
//! * `loader.N/grub.cfg` — one `menuentry` per BLS entry of boot version N,
//!   default first. It lives inside the swapped directory, so the
//!   `/boot/loader` rename that commits a deployment list also commits the
//!   menu: GRUB reads `/loader/grub.cfg` through the symlink.
//! * `grub/grub.cfg` — static, written once by the image builder
//!   ([`static_config`]): console, environment, first-boot flag, then
//!   `configfile /loader/grub.cfg`.
//! * `grub/grubenv` — GRUB's 1 KiB environment block ([`GrubEnv`]) carrying
//!   the boot counter: `boot_entry` (the menu entry id on probation) and
//!   `boot_counter` (tries left). GRUB has no arithmetic, so the generated
//!   menu counts down with string comparisons (`3` → `2` → `1` → `0`) and
//!   `save_env`s the new value in place before booting; once it reads `0`
//!   it boots the previous deployment instead.
//!
//! The BLS entry names keep the counter they were written with (`+T`);
//! GRUB never renames files, so the live count is the grubenv's and
//! [`crate::Bootloader::live_counter`] reports it.

use crate::bls::{BootEntry, EntryName};
use crate::bootloader::Bootloader;
use crate::deployment::Deployment;
use crate::fsutil::{self, io_at};
use crate::sysroot::{parse_bootlink, vercmp};
use crate::{Error, Result};
use std::fs;
use std::io;
use std::path::Path;

/// The environment block, relative to the boot file system.
pub const GRUBENV: &str = "grub/grubenv";

/// Size of a GRUB environment block file (`grub-editenv create`).
pub const ENVBLK_SIZE: usize = 1024;

const ENVBLK_SIGNATURE: &str = "# GRUB Environment Block\n";

/// Most boot tries a counted entry may get: the menu spells out one
/// comparison per value.
pub const MAX_TRIES: u32 = 64;

/// A GRUB environment block (`grub-core/lib/envblk.c` format):
/// the signature line, `name=value` lines (`\` escapes a `\` or a newline
/// in values), `#` padding to the file's size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrubEnv {
    vars: Vec<(String, String)>,
}

impl GrubEnv {
    /// Parses a block; `name` is used in error messages.
    pub fn parse(data: &[u8], name: &str) -> Result<GrubEnv> {
        let text = std::str::from_utf8(data)
            .map_err(|_| Error::Corrupt(format!("{name}: GRUB environment block is not UTF-8")))?;
        let body = text.strip_prefix(ENVBLK_SIGNATURE).ok_or_else(|| {
            Error::Corrupt(format!(
                "{name}: not a GRUB environment block (missing '# GRUB Environment Block' header)"
            ))
        })?;
        let mut vars = Vec::new();
        let mut chars = body.chars().peekable();
        let mut line = 2;
        while chars.peek().is_some() {
            if chars.peek() == Some(&'#') {
                // Comment or padding: up to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                line += 1;
                continue;
            }
            let mut key = String::new();
            let mut value = String::new();
            let mut in_value = false;
            let mut ended = false;
            while let Some(c) = chars.next() {
                match c {
                    '\n' => {
                        ended = true;
                        break;
                    }
                    '=' if !in_value => in_value = true,
                    '\\' if in_value => match chars.next() {
                        Some(e) => {
                            if e == '\n' {
                                line += 1;
                            }
                            value.push(e);
                        }
                        None => break,
                    },
                    c if in_value => value.push(c),
                    c => key.push(c),
                }
            }
            if !in_value || key.is_empty() || !ended {
                return Err(Error::Corrupt(format!(
                    "{name}:{line}: GRUB environment block: expected 'name=value' line"
                )));
            }
            vars.push((key, value));
            line += 1;
        }
        Ok(GrubEnv { vars })
    }

    /// Reads `path`; a missing file is an empty environment.
    pub fn load(path: &Path) -> Result<GrubEnv> {
        match fs::read(path) {
            Ok(b) => GrubEnv::parse(&b, &path.display().to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(GrubEnv::default()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key`, keeping its position if present.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == key) {
            Some(v) => v.1 = value.to_string(),
            None => self.vars.push((key.to_string(), value.to_string())),
        }
    }

    /// Removes `key`; returns whether it was set.
    pub fn remove(&mut self, key: &str) -> bool {
        let n = self.vars.len();
        self.vars.retain(|(k, _)| k != key);
        n != self.vars.len()
    }

    /// The 1024-byte block. Fails when the variables do not fit or a
    /// name cannot be represented.
    pub fn to_block(&self) -> Result<Vec<u8>> {
        let mut s = String::from(ENVBLK_SIGNATURE);
        for (k, v) in &self.vars {
            if k.is_empty() || k.contains(['=', '\n', '\\']) || k.starts_with('#') {
                return Err(Error::Invalid(format!(
                    "GRUB environment: invalid variable name {k:?}"
                )));
            }
            s.push_str(k);
            s.push('=');
            for c in v.chars() {
                if c == '\\' || c == '\n' {
                    s.push('\\');
                }
                s.push(c);
            }
            s.push('\n');
        }
        if s.len() > ENVBLK_SIZE {
            return Err(Error::Invalid(format!(
                "GRUB environment: {} bytes of variables do not fit in {ENVBLK_SIZE}",
                s.len()
            )));
        }
        let mut b = s.into_bytes();
        b.resize(ENVBLK_SIZE, b'#');
        Ok(b)
    }

    /// Replaces `path` with this block (temp file, fsync, rename). GRUB
    /// finds the new file's blocks by itself at the next boot; only GRUB's
    /// own `save_env` needs to write in place.
    pub fn store(&self, path: &Path) -> Result<()> {
        let block = self.to_block()?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_at("mkdir", dir))?;
        }
        fsutil::write_file_atomic(path, &block, 0o644)
    }
}

/// The GRUB menu entry id of a deployment: unique per checkout, so a
/// counter in the grubenv can only ever apply to the entry it was set for,
/// whichever boot version's menu reads it.
pub fn menuentry_id(d: &Deployment) -> String {
    format!("ostree-{}-{}", d.osname, d.dir_name())
}

/// Quotes a word for GRUB's script parser (sh-like): bare when it has only
/// characters without special meaning, else single-quoted.
pub fn quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,:/=+@%^~".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// One menu entry of a generated `grub.cfg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuEntry {
    /// `--id`, see [`menuentry_id`].
    pub id: String,
    /// Menu title (the BLS `title`).
    pub title: String,
    /// Kernel path on the boot file system.
    pub linux: String,
    /// Kernel command line.
    pub options: String,
    /// Initramfs paths on the boot file system.
    pub initrds: Vec<String>,
}

/// Renders `loader.N/grub.cfg`: `entries` in boot order (default first);
/// `counted` = the default's tries left when it is on probation.
pub fn render_config(bootversion: u32, entries: &[MenuEntry], counted: Option<u32>) -> String {
    let mut s = format!(
        "# Generated by ferrocore (sysroot GRUB backend) for boot version {bootversion}.\n\
         # Read through the /loader symlink by /grub/grub.cfg; rewritten on every deployment change.\n"
    );
    let Some(first) = entries.first() else {
        s.push_str("echo 'ferrocore: no deployments'\n");
        return s;
    };
    let fallback = entries.get(1);
    s.push_str(&format!("set default={}\n", quote(&first.id)));
    if let Some(f) = fallback {
        // GRUB's own fallback when loading the default fails outright.
        s.push_str(&format!("set fallback={}\n", quote(&f.id)));
    }
    if let Some(left) = counted {
        // The default is on probation when the grubenv names it. No
        // arithmetic in GRUB script: one comparison per counter value.
        s.push_str(&format!(
            "if [ -s \"${{prefix}}/grubenv\" ]; then\n  load_env boot_entry boot_counter\nfi\n\
             if [ \"${{boot_entry}}\" = {} ]; then\n",
            quote(&first.id)
        ));
        for n in (1..=left).rev() {
            let kw = if n == left { "if" } else { "elif" };
            s.push_str(&format!(
                "  {kw} [ \"${{boot_counter}}\" = {n} ]; then\n    set boot_counter={}\n",
                n - 1
            ));
        }
        let indent = if left > 0 {
            s.push_str("  else\n");
            "    "
        } else {
            "  "
        };
        s.push_str(&format!(
            "{indent}# Tries spent (or an unknown value): boot the previous deployment.\n{indent}set boot_counter=0\n"
        ));
        if let Some(f) = fallback {
            s.push_str(&format!("{indent}set default={}\n", quote(&f.id)));
        }
        if left > 0 {
            s.push_str("  fi\n");
        }
        s.push_str("  save_env boot_counter\nfi\n");
    }
    for e in entries {
        s.push_str(&format!(
            "menuentry {} --id {} {{\n  linux {}",
            quote(&e.title),
            quote(&e.id),
            quote(&e.linux)
        ));
        for o in e.options.split_ascii_whitespace() {
            s.push(' ');
            s.push_str(&quote(o));
        }
        // Set by /grub/grub.cfg while /ignition.firstboot exists.
        s.push_str(" $ignition_firstboot\n");
        for i in &e.initrds {
            s.push_str(&format!("  initrd {}\n", quote(i)));
        }
        s.push_str("}\n");
    }
    s
}

/// The static `/boot/grub/grub.cfg` an image carries (GRUB's prefix is
/// `($root)/grub` on the boot file system, found by label). It only
/// dispatches to the current boot version's menu, so it never changes.
pub fn static_config(timeout: u32) -> String {
    format!(
        "# ferrocore: static GRUB configuration, written once at image build.\n\
         # The menu is /loader/grub.cfg (sysroot GRUB backend), swapped atomically\n\
         # with the /loader symlink.\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set timeout={timeout}\n\
         if [ -s \"${{prefix}}/grubenv\" ]; then\n  load_env\nfi\n\
         # First boot: /ignition.firstboot exists until Ignition succeeded.\n\
         set ignition_firstboot=\"\"\n\
         if [ -f /ignition.firstboot ]; then\n  set ignition_firstboot=ignition.firstboot\nfi\n\
         # configfile opens a new context: only exported variables reach the menu.\n\
         export timeout\n\
         export ignition_firstboot\n\
         configfile /loader/grub.cfg\n"
    )
}

/// The deployment a BLS entry boots, as `(osname, CSUM.SERIAL)`, by
/// resolving its `ostree=` bootlink in `sysroot`.
fn entry_deployment(sysroot: &Path, entry: &BootEntry, name: &str) -> Result<(String, String)> {
    let opts = crate::kargs::KernelArgs::parse(entry.get("options").unwrap_or(""));
    let link = match opts.get("ostree") {
        Some(Some(l)) => l.to_string(),
        _ => {
            return Err(Error::Corrupt(format!(
                "{name}: no ostree= kernel argument in 'options'"
            )))
        }
    };
    let (_, osname, _, _) = parse_bootlink(&link)
        .ok_or_else(|| Error::Corrupt(format!("{name}: invalid ostree= argument '{link}'")))?;
    let lp = sysroot.join(link.trim_start_matches('/'));
    let target = fs::read_link(&lp).map_err(io_at("readlink", &lp))?;
    let dir = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Corrupt(format!("{}: empty bootlink target", lp.display())))?;
    Ok((osname, dir))
}

/// GRUB: menu in `loader.N/grub.cfg`, counter in `grub/grubenv`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Grub;

impl Bootloader for Grub {
    fn name(&self) -> &'static str {
        "grub2"
    }

    fn write_config(&self, boot: &Path, bootversion: u32) -> Result<()> {
        let sysroot = boot.parent().unwrap_or(Path::new("/"));
        let dir = boot.join(format!("loader.{bootversion}"));
        let edir = dir.join("entries");
        let mut found = Vec::new();
        let rd = match fs::read_dir(&edir) {
            Ok(rd) => Some(rd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(format!("reading {}", edir.display()), e)),
        };
        for e in rd.into_iter().flatten() {
            let e = e.map_err(io_at("reading", &edir))?;
            let fname = e.file_name().to_string_lossy().into_owned();
            let Some(n) = EntryName::parse(&fname) else {
                continue;
            };
            let p = e.path();
            let text = fs::read_to_string(&p).map_err(io_at("reading", &p))?;
            let entry = BootEntry::parse(&text, &p.display().to_string())?;
            found.push((n, entry, p.display().to_string()));
        }
        // BLS order: highest `version` first (the default).
        found.sort_by(|a, b| {
            vercmp(
                b.1.get("version").unwrap_or(""),
                a.1.get("version").unwrap_or(""),
            )
            .then_with(|| b.0.stem.cmp(&a.0.stem))
        });
        let mut menu = Vec::new();
        for (_, e, pname) in &found {
            let (osname, dir_name) = entry_deployment(sysroot, e, pname)?;
            let linux = e
                .get("linux")
                .ok_or_else(|| Error::Corrupt(format!("{pname}: no 'linux' key")))?;
            menu.push(MenuEntry {
                id: format!("ostree-{osname}-{dir_name}"),
                title: e.get("title").unwrap_or("ostree").to_string(),
                linux: linux.to_string(),
                options: e.get("options").unwrap_or("").to_string(),
                initrds: e.get_all("initrd").iter().map(|s| s.to_string()).collect(),
            });
        }
        let counted = found.first().and_then(|(n, _, _)| n.counter);
        if let Some((left, _)) = counted {
            if left > MAX_TRIES {
                return Err(Error::Invalid(format!(
                    "GRUB boot counting supports at most {MAX_TRIES} tries, not {left}"
                )));
            }
        }
        let cfg = render_config(bootversion, &menu, counted.map(|c| c.0));
        fsutil::write_file_atomic(&dir.join("grub.cfg"), cfg.as_bytes(), 0o644)?;

        // The counter: written before the /boot/loader swap. Safe because
        // a menu only acts on a counter naming its own default's id, and a
        // new default is a new id; if the swap never happens, the old menu
        // at worst stops counting its default.
        let envp = boot.join(GRUBENV);
        let mut env = GrubEnv::load(&envp)?;
        let before = env.clone();
        match (menu.first(), counted) {
            (Some(first), Some((left, _))) => {
                env.set("boot_entry", &first.id);
                env.set("boot_counter", &left.to_string());
            }
            (Some(first), None) if env.get("boot_entry") == Some(first.id.as_str()) => {
                // This deployment was counted before and is now the default
                // without probation: a stale "0" must not roll it back.
                env.remove("boot_entry");
                env.remove("boot_counter");
            }
            _ => {}
        }
        if env != before {
            env.store(&envp)?;
        }
        Ok(())
    }

    fn counted_entry(&self, stem: &str, tries: u32) -> EntryName {
        EntryName {
            stem: stem.to_string(),
            counter: Some((tries, 0)),
        }
    }

    fn mark_good(&self, entries: &Path, name: &EntryName) -> Result<EntryName> {
        // Clear the counter before renaming the entry: interrupted in
        // between, the entry is still "counted" on disk and the next
        // boot-complete repeats both steps, while GRUB already stopped
        // counting.
        if let Some(boot) = entries.parent().and_then(|l| l.parent()) {
            let envp = boot.join(GRUBENV);
            let mut env = GrubEnv::load(&envp)?;
            let a = env.remove("boot_entry");
            let b = env.remove("boot_counter");
            if a || b {
                env.store(&envp)?;
            }
        }
        // GRUB never renames entries: the file still has the counter it was
        // written with, whatever `name` says about the live count.
        let good = EntryName {
            stem: name.stem.clone(),
            counter: None,
        };
        for e in fs::read_dir(entries).map_err(io_at("reading", entries))? {
            let e = e.map_err(io_at("reading", entries))?;
            let fname = e.file_name().to_string_lossy().into_owned();
            match EntryName::parse(&fname) {
                Some(n) if n.stem == name.stem && n.counter.is_some() => {
                    let to = entries.join(good.file_name());
                    fs::rename(e.path(), &to).map_err(io_at("renaming", &e.path()))?;
                    fsutil::fsync_dir(entries)?;
                    break;
                }
                _ => {}
            }
        }
        Ok(good)
    }

    fn live_counter(&self, boot: &Path, d: &Deployment) -> Result<Option<(u32, u32)>> {
        let Some((left, done)) = d.entry.as_ref().and_then(|e| e.counter) else {
            return Ok(None);
        };
        let env = GrubEnv::load(&boot.join(GRUBENV))?;
        if env.get("boot_entry") != Some(menuentry_id(d).as_str()) {
            return Ok(Some((left, done)));
        }
        // As the menu does: a value it has no comparison for counts as spent.
        let now = env
            .get("boot_counter")
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|v| *v <= left)
            .unwrap_or(0);
        Ok(Some((now, done + (left - now))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn entry(id: &str, title: &str, opts: &str) -> MenuEntry {
        MenuEntry {
            id: id.into(),
            title: title.into(),
            linux: "/ostree/os-b1/vmlinuz-6.1.0".into(),
            options: opts.into(),
            initrds: vec!["/ostree/os-b1/initramfs-6.1.0.img".into()],
        }
    }

    /// GRUB's own parser (grub-common's `grub-script-check`) must accept it.
    fn script_check(cfg: &str) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("grub.cfg");
        fs::write(&p, cfg).unwrap();
        let out = Command::new("grub-script-check")
            .arg(&p)
            .output()
            .expect("grub-script-check (package grub-common) must be installed");
        assert!(
            out.status.success(),
            "grub-script-check rejected:\n{cfg}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn uncounted_menu() {
        let e = [
            entry(
                "ostree-os-aa.0",
                "OS 2 (ostree:0)",
                "root=LABEL=root rw ostree=/ostree/boot.1/os/b1/0",
            ),
            entry(
                "ostree-os-bb.0",
                "OS 1 (ostree:1)",
                "root=LABEL=root rw ostree=/ostree/boot.1/os/b1/1",
            ),
        ];
        let cfg = render_config(1, &e, None);
        assert_eq!(
            cfg,
            "# Generated by ferrocore (sysroot GRUB backend) for boot version 1.\n\
             # Read through the /loader symlink by /grub/grub.cfg; rewritten on every deployment change.\n\
             set default=ostree-os-aa.0\n\
             set fallback=ostree-os-bb.0\n\
             menuentry 'OS 2 (ostree:0)' --id ostree-os-aa.0 {\n  \
             linux /ostree/os-b1/vmlinuz-6.1.0 root=LABEL=root rw ostree=/ostree/boot.1/os/b1/0 $ignition_firstboot\n  \
             initrd /ostree/os-b1/initramfs-6.1.0.img\n}\n\
             menuentry 'OS 1 (ostree:1)' --id ostree-os-bb.0 {\n  \
             linux /ostree/os-b1/vmlinuz-6.1.0 root=LABEL=root rw ostree=/ostree/boot.1/os/b1/1 $ignition_firstboot\n  \
             initrd /ostree/os-b1/initramfs-6.1.0.img\n}\n"
        );
        script_check(&cfg);
        script_check(&render_config(0, &e[..1], None));
        script_check(&render_config(0, &[], None));
    }

    #[test]
    fn counted_menu_counts_down_by_comparison() {
        let e = [
            entry("ostree-os-aa.0", "OS 2", "rw ostree=/ostree/boot.0/os/b1/0"),
            entry("ostree-os-bb.0", "OS 1", "rw ostree=/ostree/boot.0/os/b1/1"),
        ];
        let cfg = render_config(0, &e, Some(3));
        let block =
            "if [ -s \"${prefix}/grubenv\" ]; then\n  load_env boot_entry boot_counter\nfi\n\
             if [ \"${boot_entry}\" = ostree-os-aa.0 ]; then\n  \
             if [ \"${boot_counter}\" = 3 ]; then\n    set boot_counter=2\n  \
             elif [ \"${boot_counter}\" = 2 ]; then\n    set boot_counter=1\n  \
             elif [ \"${boot_counter}\" = 1 ]; then\n    set boot_counter=0\n  \
             else\n    # Tries spent (or an unknown value): boot the previous deployment.\n    \
             set boot_counter=0\n    set default=ostree-os-bb.0\n  fi\n  \
             save_env boot_counter\nfi\n";
        assert!(cfg.contains(block), "{cfg}");
        assert!(!cfg.contains("-1") && !cfg.contains("increment"));
        script_check(&cfg);
        // Carried counters: already spent, a single try, no fallback entry.
        for (left, n) in [(0, 2), (1, 2), (3, 1), (MAX_TRIES, 2)] {
            let cfg = render_config(0, &e[..n], Some(left));
            script_check(&cfg);
            assert_eq!(cfg.matches("elif").count() as u32, left.saturating_sub(1));
        }
    }

    #[test]
    fn quoting_survives_grub_parsing() {
        assert_eq!(quote("root=LABEL=root"), "root=LABEL=root");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("a;b$c"), "'a;b$c'");
        let e = [entry(
            "ostree-os-aa.0",
            "It's \"OS\" {1} $x; `y`",
            "a=$b c;d e|f g=\"h i\" rw",
        )];
        let cfg = render_config(0, &e, Some(2));
        assert!(
            cfg.contains("'a=$b' 'c;d' 'e|f' 'g=\"h' 'i\"' rw $ignition_firstboot"),
            "{cfg}"
        );
        script_check(&cfg);
    }

    #[test]
    fn script_check_is_a_real_check() {
        // The syntax check used above does reject broken scripts.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bad.cfg");
        fs::write(&p, "if [ a = b ]; then\n  echo x\n").unwrap();
        let st = Command::new("grub-script-check").arg(&p).status().unwrap();
        assert!(!st.success());
    }

    #[test]
    fn static_config_parses() {
        let s = static_config(1);
        assert!(s.contains("export ignition_firstboot\nconfigfile /loader/grub.cfg\n"));
        script_check(&s);
    }

    #[test]
    fn envblock_format() {
        let mut env = GrubEnv::default();
        env.set("boot_entry", "ostree-os-aa.0");
        env.set("boot_counter", "3");
        env.set("weird", "a\\b\nc");
        let b = env.to_block().unwrap();
        assert_eq!(b.len(), ENVBLK_SIZE);
        let head = "# GRUB Environment Block\nboot_entry=ostree-os-aa.0\nboot_counter=3\nweird=a\\\\b\\\nc\n";
        assert_eq!(&b[..head.len()], head.as_bytes());
        assert!(b[head.len()..].iter().all(|c| *c == b'#'));
        assert_eq!(GrubEnv::parse(&b, "x").unwrap(), env);
        env.set("boot_counter", "2");
        assert!(env.remove("weird") && !env.remove("weird"));
        let back = GrubEnv::parse(&env.to_block().unwrap(), "x").unwrap();
        assert_eq!(back.get("boot_counter"), Some("2"));
        assert_eq!(back.get("weird"), None);

        let e = GrubEnv::parse(b"# GRUB Environment Blok\n", "/b/grubenv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/b/grubenv") && e.contains("header"), "{e}");
        let e = GrubEnv::parse(b"# GRUB Environment Block\na=1\nnovalue\n", "g")
            .unwrap_err()
            .to_string();
        assert!(e.contains("g:3"), "{e}");
        let mut big = GrubEnv::default();
        big.set("x", &"y".repeat(1000));
        assert!(big
            .to_block()
            .unwrap_err()
            .to_string()
            .contains("do not fit"));
        let mut bad = GrubEnv::default();
        bad.set("a=b", "c");
        assert!(bad.to_block().is_err());
    }

    /// The real `grub-editenv` reads what we write and we read what it writes.
    #[test]
    fn envblock_interoperates_with_grub_editenv() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("grubenv");
        let mut env = GrubEnv::default();
        env.set("boot_entry", "ostree-os-aa.0");
        env.set("boot_counter", "3");
        env.store(&p).unwrap();
        let out = Command::new("grub-editenv")
            .arg(&p)
            .arg("list")
            .output()
            .expect("grub-editenv (package grub-common) must be installed");
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "boot_entry=ostree-os-aa.0\nboot_counter=3\n"
        );
        let st = Command::new("grub-editenv")
            .arg(&p)
            .args(["set", "boot_counter=2", "other=x y"])
            .status()
            .unwrap();
        assert!(st.success());
        let back = GrubEnv::load(&p).unwrap();
        assert_eq!(back.get("boot_counter"), Some("2"));
        assert_eq!(back.get("other"), Some("x y"));
        assert_eq!(fs::metadata(&p).unwrap().len(), ENVBLK_SIZE as u64);
        let fresh = d.path().join("fresh");
        let st = Command::new("grub-editenv")
            .arg(&fresh)
            .arg("create")
            .status()
            .unwrap();
        assert!(st.success());
        // Debian's grub-editenv adds a warning comment line.
        assert_eq!(GrubEnv::load(&fresh).unwrap(), GrubEnv::default());
        assert_eq!(fs::metadata(&fresh).unwrap().len(), ENVBLK_SIZE as u64);
    }
}
