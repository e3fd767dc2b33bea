//! Kernel module resolution as `modprobe --show-depends` does it, from the
//! files `depmod` writes into `usr/lib/modules/KVER/`:
//!
//! * `modules.dep`: `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko ...`, the
//!   full (transitive) list of hard dependencies, loaded in reverse order;
//! * `modules.softdep`: `softdep ext4 pre: crypto-crc32c`, modules loaded
//!   before (`pre:`) or after (`post:`) a module although no symbol links them
//!   (ext4 finds its crc32c implementation through the crypto API);
//! * `modules.alias`: `alias crypto-crc32c crc32c_intel`, which turns a softdep
//!   name into every module providing it, in file order.
//!
//! Module names compare with `-` and `_` equal (`crc32c-intel.ko` is module
//! `crc32c_intel`), as in the kernel. Alias patterns with wildcards are device
//! match rules; only exact aliases are resolved here.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// What ferrocore's initramfs loads: virtio PCI transport, disk and network,
/// ext4 (its crc32c softdep comes along), and fw_cfg for the Ignition config
/// under QEMU.
pub const DEFAULT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "ext4",
    "qemu_fw_cfg",
];

/// One module to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Module name (`crc32c_intel`).
    pub name: String,
    /// File relative to the modules directory (`kernel/arch/x86/crypto/crc32c-intel.ko`).
    pub path: String,
}

#[derive(Debug, Default)]
struct SoftDeps {
    pre: Vec<String>,
    post: Vec<String>,
}

/// The module database of one kernel.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    /// name -> (path, hard deps as paths, in modules.dep order)
    deps: HashMap<String, (String, Vec<String>)>,
    by_path: HashMap<String, String>,
    aliases: HashMap<String, Vec<String>>,
    softdeps: HashMap<String, SoftDeps>,
}

/// `crc32c-intel` and `crc32c_intel` are the same module.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Module name of a `modules.dep` path: file name without `.ko[.xz|.zst|.gz]`.
fn name_of(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    Some(normalize_name(stem))
}

impl ModuleIndex {
    /// Reads `modules.dep` (required), `modules.softdep` and `modules.alias`
    /// (optional) from `dir` (`ROOT/usr/lib/modules/KVER`).
    pub fn load(dir: &Path) -> Result<ModuleIndex> {
        let read = |name: &str, required: bool| -> Result<String> {
            let p = dir.join(name);
            match std::fs::read_to_string(&p) {
                Ok(s) => Ok(s),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                    Ok(String::new())
                }
                Err(e) => Err(Error::io(&p, e)),
            }
        };
        ModuleIndex::parse(
            dir,
            &read("modules.dep", true)?,
            &read("modules.softdep", false)?,
            &read("modules.alias", false)?,
        )
    }

    /// Parses the three files' contents; `dir` is only used in messages.
    pub fn parse(dir: &Path, dep: &str, softdep: &str, alias: &str) -> Result<ModuleIndex> {
        let mut ix = ModuleIndex {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        let where_ = |file: &str, n: usize| format!("{}:{}", dir.join(file).display(), n + 1);
        for (n, line) in dep.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, rest) = line.split_once(':').ok_or_else(|| {
                Error::Module(format!(
                    "{}: expected \"PATH: DEPS\"",
                    where_("modules.dep", n)
                ))
            })?;
            let name = name_of(path).ok_or_else(|| {
                Error::Module(format!(
                    "{}: {path:?} is not a .ko file",
                    where_("modules.dep", n)
                ))
            })?;
            let deps = rest.split_whitespace().map(String::from).collect();
            ix.by_path.insert(path.to_string(), name.clone());
            ix.deps.insert(name, (path.to_string(), deps));
        }
        for line in alias.lines() {
            let mut w = line.split_whitespace();
            if let (Some("alias"), Some(a), Some(m)) = (w.next(), w.next(), w.next()) {
                if !a.contains(['*', '?', '[']) {
                    ix.aliases
                        .entry(normalize_name(a))
                        .or_default()
                        .push(normalize_name(m));
                }
            }
        }
        for line in softdep.lines() {
            let mut w = line.split_whitespace();
            if w.next() != Some("softdep") {
                continue;
            }
            let Some(m) = w.next() else { continue };
            let sd = ix.softdeps.entry(normalize_name(m)).or_default();
            // Names before any "pre:"/"post:" are ignored, as kmod does.
            let mut list: Option<&mut Vec<String>> = None;
            for t in w {
                match t {
                    "pre:" => list = Some(&mut sd.pre),
                    "post:" => list = Some(&mut sd.post),
                    t => {
                        if let Some(l) = list.as_deref_mut() {
                            l.push(normalize_name(t));
                        }
                    }
                }
            }
        }
        Ok(ix)
    }

    /// Module names a name stands for: itself if it is a module, else every
    /// module with that alias.
    fn lookup(&self, name: &str) -> Vec<String> {
        let n = normalize_name(name);
        if self.deps.contains_key(&n) {
            return vec![n];
        }
        self.aliases
            .get(&n)
            .map(|ms| {
                ms.iter()
                    .filter(|m| self.deps.contains_key(*m))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The load order for `names`: each module after its soft `pre:`
    /// dependencies and hard dependencies, before its `post:` ones; every
    /// module once. A name that is neither a module nor an alias of one is an
    /// error naming it; a soft dependency that cannot be found is skipped, as
    /// modprobe does (it is optional by definition).
    pub fn resolve<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<Module>> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for name in names {
            let name = name.as_ref();
            let mods = self.lookup(name);
            if mods.is_empty() {
                return Err(Error::Module(format!(
                    "module {name:?} not found in {} (nor in modules.alias)",
                    self.dir.join("modules.dep").display()
                )));
            }
            for m in mods {
                self.visit(&m, &mut seen, &mut out)?;
            }
        }
        Ok(out)
    }

    fn visit(&self, name: &str, seen: &mut HashSet<String>, out: &mut Vec<Module>) -> Result<()> {
        // Marked before recursing: softdeps may form cycles.
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        let (path, deps) = &self.deps[name];
        let soft = self.softdeps.get(name);
        for s in soft.map(|s| s.pre.as_slice()).unwrap_or_default() {
            for m in self.lookup(s) {
                self.visit(&m, seen, out)?;
            }
        }
        // depmod lists the module loaded last first.
        for d in deps.iter().rev() {
            let dn = self.by_path.get(d).ok_or_else(|| {
                Error::Module(format!(
                    "module {name}: dependency {d} has no entry of its own in {}",
                    self.dir.join("modules.dep").display()
                ))
            })?;
            self.visit(dn, seen, out)?;
        }
        out.push(Module {
            name: name.to_string(),
            path: path.clone(),
        });
        for s in soft.map(|s| s.post.as_slice()).unwrap_or_default() {
            for m in self.lookup(s) {
                self.visit(&m, seen, out)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/fs/mbcache.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/crypto/crc32c_generic.ko:
kernel/lib/crc16.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/x/loopy.ko:
";
    const SOFT: &str = "\
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep jbd2 pre: crypto-crc32c
softdep cifs gcm
softdep loopy pre: loopy post: virtio_blk nothere
";
    const ALIAS: &str = "\
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_blk
";

    fn ix() -> ModuleIndex {
        ModuleIndex::parse(Path::new("/m"), DEP, SOFT, ALIAS).unwrap()
    }

    fn names(ms: &[Module]) -> Vec<&str> {
        ms.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn load_order_follows_modprobe() {
        let got = ix().resolve(&["virtio_blk", "ext4"]).unwrap();
        assert_eq!(
            names(&got),
            [
                "virtio_ring",
                "virtio",
                "virtio_blk",
                "crc32c_intel",
                "crc32c_generic",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4"
            ]
        );
        assert_eq!(got[3].path, "kernel/arch/x86/crypto/crc32c-intel.ko");
    }

    #[test]
    fn names_aliases_cycles_and_post_softdeps() {
        let ix = ix();
        // Dashes and underscores are the same module; an alias names all
        // its providers.
        assert_eq!(
            names(&ix.resolve(&["crc32c-intel"]).unwrap()),
            ["crc32c_intel"]
        );
        assert_eq!(
            names(&ix.resolve(&["crypto-crc32c"]).unwrap()),
            ["crc32c_intel", "crc32c_generic"]
        );
        // A softdep on itself and on a missing module are harmless; post:
        // comes after.
        assert_eq!(
            names(&ix.resolve(&["loopy"]).unwrap()),
            ["loopy", "virtio_ring", "virtio", "virtio_blk"]
        );
    }

    #[test]
    fn missing_modules_are_named() {
        let e = ix().resolve(&["ext4", "nvme"]).unwrap_err().to_string();
        assert!(e.contains("\"nvme\""), "{e}");
        assert!(e.contains("/m/modules.dep"), "{e}");
        let broken = ModuleIndex::parse(Path::new("/m"), "kernel/a.ko: kernel/b.ko\n", "", "")
            .unwrap()
            .resolve(&["a"])
            .unwrap_err()
            .to_string();
        assert!(broken.contains("kernel/b.ko"), "{broken}");
        let e = ModuleIndex::parse(Path::new("/m"), "kernel/a.ko\n", "", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/m/modules.dep:1"), "{e}");
        let e = ModuleIndex::load(Path::new("/nonexistent/6.1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/6.1/modules.dep"), "{e}");
    }

    /// Against a real kernel tree (`FERROCORE_TEST_MODULES_DIR=ROOT/usr/lib/modules/KVER`,
    /// e.g. from `dpkg-deb -x linux-image-*.deb` + `depmod -b`): same order
    /// as `modprobe --show-depends`.
    #[test]
    fn real_tree_matches_modprobe() {
        let Some(dir) = std::env::var_os("FERROCORE_TEST_MODULES_DIR") else {
            eprintln!("FERROCORE_TEST_MODULES_DIR not set: real modules.dep not checked");
            return;
        };
        let dir = PathBuf::from(dir);
        let kver = dir.file_name().unwrap().to_str().unwrap().to_string();
        let root = dir.parent().unwrap().parent().unwrap().parent().unwrap();
        // modprobe -d wants the root holding lib/modules (usr-merged trees
        // have the symlink).
        let root = if root.ends_with("usr") {
            root.parent().unwrap()
        } else {
            root
        };
        let ix = ModuleIndex::load(&dir).unwrap();
        let ours = ix.resolve(DEFAULT_MODULES).unwrap();
        let mut theirs: Vec<String> = Vec::new();
        for m in DEFAULT_MODULES {
            let out = std::process::Command::new("modprobe")
                .args([
                    "-d",
                    root.to_str().unwrap(),
                    "-S",
                    &kver,
                    "--show-depends",
                    m,
                ])
                .output()
                .expect("modprobe (apt kmod)");
            assert!(out.status.success(), "{m}: {out:?}");
            for l in String::from_utf8_lossy(&out.stdout).lines() {
                let p = l.split_whitespace().nth(1).unwrap();
                let rel = p.split_once(&format!("/{kver}/")).unwrap().1.to_string();
                if !theirs.contains(&rel) {
                    theirs.push(rel);
                }
            }
        }
        let ours: Vec<String> = ours.into_iter().map(|m| m.path).collect();
        assert_eq!(ours, theirs);
    }
}
