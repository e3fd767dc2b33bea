//! Assembling `initramfs.img`: `/init` (the static binary), the resolved
//! modules under `usr/lib/modules/KVER/`, their load order in
//! [`MODULE_LIST`], the mount points `/init` uses, and `/dev/console` so the
//! kernel can give `/init` its stdio before devtmpfs is mounted.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cpio::Archive;
use crate::modules::{Module, ModuleIndex, DEFAULT_MODULES};
use crate::{elf, Error, Result};

/// Where the load order is stored in the initramfs: one absolute `.ko` path
/// per line, in load order.
pub const MODULE_LIST: &str = "etc/ferrocore-initramfs/modules.load";
/// The kernel version the initramfs was built for, one line.
pub const MODULE_LIST_VERSION: &str = "etc/ferrocore-initramfs/kernel-version";

/// Inputs of [`BuildOptions::build`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// OS tree holding `usr/lib/modules/KVER`.
    pub rootfs: PathBuf,
    /// Kernel version.
    pub kver: String,
    /// Static binary installed as `/init`.
    pub binary: PathBuf,
    /// Modules to include with their dependencies (default [`DEFAULT_MODULES`]).
    pub modules: Vec<String>,
    /// Upper bound of every mtime in the archive.
    pub source_date_epoch: u64,
    /// gzip the archive (the kernel also takes it uncompressed).
    pub gzip: bool,
}

/// What [`BuildOptions::build`] wrote.
#[derive(Debug, Clone)]
pub struct Built {
    /// Modules in load order.
    pub modules: Vec<Module>,
    /// Size of the written image in bytes.
    pub size: u64,
}

impl BuildOptions {
    /// Defaults: [`DEFAULT_MODULES`], gzip, `SOURCE_DATE_EPOCH` from the
    /// environment (else 0).
    pub fn new(rootfs: &Path, kver: &str, binary: &Path) -> BuildOptions {
        BuildOptions {
            rootfs: rootfs.to_path_buf(),
            kver: kver.to_string(),
            binary: binary.to_path_buf(),
            modules: DEFAULT_MODULES.iter().map(|s| s.to_string()).collect(),
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            gzip: true,
        }
    }

    /// The archive, without writing it.
    pub fn archive(&self) -> Result<(Archive, Vec<Module>)> {
        elf::check_static(&self.binary)?;
        if self.kver.is_empty() || self.kver.contains('/') {
            return Err(Error::Module(format!(
                "invalid kernel version {:?}",
                self.kver
            )));
        }
        let rel_moddir = format!("usr/lib/modules/{}", self.kver);
        let moddir = self.rootfs.join(&rel_moddir);
        let modules = ModuleIndex::load(&moddir)?.resolve(&self.modules)?;

        let mut a = Archive::new();
        for d in ["proc", "sys", "dev", "run", "sysroot", "boot", "tmp"] {
            a.add_dir(d, 0o755)?;
        }
        a.add_char_device("dev/console", 0o600, 5, 1)?;
        // The kernel execs /init; the same file answers to `ferrocore`.
        a.add_file_from("init", &self.binary, Some(0o755))?;
        a.add_symlink("usr/bin/ferrocore", "../../init")?;
        // The kernel's module loader (`kernel.modprobe`) while /init runs:
        // /init answers as `modprobe` by running the root's, chrooted.
        a.add_symlink("sbin/modprobe", "../init")?;
        let mut list = String::new();
        for m in &modules {
            let rel = format!("{rel_moddir}/{}", m.path);
            a.add_file_from(&rel, &moddir.join(&m.path), Some(0o644))?;
            list.push_str(&format!("/{rel}\n"));
        }
        a.add_file(MODULE_LIST, list.into_bytes(), 0o644)?;
        a.add_file(
            MODULE_LIST_VERSION,
            format!("{}\n", self.kver).into_bytes(),
            0o644,
        )?;
        Ok((a, modules))
    }

    /// Writes the image to `out` (temp file, fsync, rename).
    pub fn build(&self, out: &Path) -> Result<Built> {
        let (archive, modules) = self.archive()?;
        let bytes = if self.gzip {
            archive
                .to_gzip(self.source_date_epoch)
                .map_err(|e| Error::io(out, e))?
        } else {
            archive.to_bytes(self.source_date_epoch)
        };
        write_atomic(out, &bytes)?;
        Ok(Built {
            modules,
            size: bytes.len() as u64,
        })
    }
}

/// Builds `out` from `rootfs` (kernel `kver`) with `binary` as `/init`,
/// using [`BuildOptions::new`]'s defaults.
pub fn build(rootfs: &Path, kver: &str, binary: &Path, out: &Path) -> Result<Built> {
    BuildOptions::new(rootfs, kver, binary).build(out)
}

fn write_atomic(out: &Path, bytes: &[u8]) -> Result<()> {
    let name = out
        .file_name()
        .ok_or_else(|| Error::io(out, std::io::Error::other("no file name")))?;
    let tmp = out.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(out, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A minimal static ELF64 (one PT_LOAD program header).
    fn static_elf() -> Vec<u8> {
        let mut d = vec![0u8; 64 + 56];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        d[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        d[64] = 1;
        d
    }

    fn tree(root: &Path) {
        let m = root.join("usr/lib/modules/6.1.0-t");
        for (p, data) in [
            ("kernel/fs/ext4/ext4.ko", "ext4"),
            ("kernel/fs/jbd2/jbd2.ko", "jbd2"),
            ("kernel/crypto/crc32c_generic.ko", "crc"),
            ("kernel/other.ko", "other"),
        ] {
            std::fs::create_dir_all(m.join(p).parent().unwrap()).unwrap();
            std::fs::write(m.join(p), data).unwrap();
        }
        std::fs::write(
            m.join("modules.dep"),
            "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\nkernel/fs/jbd2/jbd2.ko:\n\
             kernel/crypto/crc32c_generic.ko:\nkernel/other.ko:\n",
        )
        .unwrap();
        std::fs::write(m.join("modules.softdep"), "softdep ext4 pre: crc32c\n").unwrap();
        std::fs::write(m.join("modules.alias"), "alias crc32c crc32c_generic\n").unwrap();
    }

    #[test]
    fn builds_an_initramfs_gnu_cpio_extracts() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path());
        let bin = t.path().join("ferrocore");
        std::fs::write(&bin, static_elf()).unwrap();
        let out = t.path().join("initramfs.img");
        let mut o = BuildOptions::new(t.path(), "6.1.0-t", &bin);
        o.modules = vec!["ext4".into()];
        o.source_date_epoch = 1_000;
        let built = o.build(&out).unwrap();
        assert_eq!(
            built
                .modules
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["crc32c_generic", "jbd2", "ext4"]
        );
        let img = std::fs::read(&out).unwrap();
        assert_eq!(built.size, img.len() as u64);
        assert_eq!(&img[..2], b"\x1f\x8b");
        // Same inputs, same bytes.
        o.build(&t.path().join("again.img")).unwrap();
        assert_eq!(std::fs::read(t.path().join("again.img")).unwrap(), img);

        let x = t.path().join("x");
        std::fs::create_dir(&x).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&img[..]), &mut raw).unwrap();
        let mut child = Command::new("cpio")
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
            .current_dir(&x)
            .stdin(Stdio::piped())
            .spawn()
            .expect("GNU cpio (apt cpio)");
        // dev/console needs root to be created; cpio then only warns.
        child.stdin.take().unwrap().write_all(&raw).unwrap();
        child.wait().unwrap();
        assert_eq!(std::fs::read(x.join("init")).unwrap(), static_elf());
        assert_eq!(
            std::fs::read_to_string(x.join(MODULE_LIST)).unwrap(),
            "/usr/lib/modules/6.1.0-t/kernel/crypto/crc32c_generic.ko\n\
             /usr/lib/modules/6.1.0-t/kernel/fs/jbd2/jbd2.ko\n\
             /usr/lib/modules/6.1.0-t/kernel/fs/ext4/ext4.ko\n"
        );
        for m in &built.modules {
            assert!(x.join("usr/lib/modules/6.1.0-t").join(&m.path).is_file());
        }
        assert!(!x.join("usr/lib/modules/6.1.0-t/kernel/other.ko").exists());
        for d in ["proc", "sys", "dev", "run", "sysroot"] {
            assert!(x.join(d).is_dir(), "{d}");
        }
    }

    #[test]
    fn refuses_dynamic_binaries_and_missing_modules() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path());
        let out = t.path().join("initramfs.img");
        let e = build(t.path(), "6.1.0-t", Path::new("/bin/ls"), &out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dynamically linked"), "{e}");
        assert!(!out.exists());
        let bin = t.path().join("ferrocore");
        std::fs::write(&bin, static_elf()).unwrap();
        // The default list wants virtio modules this tree does not have.
        let e = build(t.path(), "6.1.0-t", &bin, &out)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"virtio_pci\" not found"), "{e}");
        let e = build(t.path(), "6.9", &bin, &out).unwrap_err().to_string();
        assert!(e.contains("usr/lib/modules/6.9/modules.dep"), "{e}");
    }
}
