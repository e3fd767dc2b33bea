//! newc (`070701`) cpio archives, the format the kernel unpacks into its
//! rootfs (kernel `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! The output depends only on the entries, never on insertion order or the
//! build host: entries are written sorted by path (a parent always sorts
//! before its children), owned by 0:0, with inode numbers assigned in that
//! order and mtimes clamped to the caller's `SOURCE_DATE_EPOCH`. Every entry
//! has one link, so the kernel never tries to hard-link two files together.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::{Error, Result};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const TRAILER: &str = "TRAILER!!!";

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file with its content.
    File(Vec<u8>),
    /// A symbolic link to the target.
    Symlink(String),
    /// A character device node.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    perm: u32,
    mtime: Option<u64>,
}

/// An archive being assembled in memory (initramfs contents are a few MB).
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

/// `a/b/c` from `/a/b/c`, `./a/b/c/`; refuses `..` and empty names, which
/// would escape or confuse the extraction.
fn normalize(path: &str) -> Result<String> {
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(Error::Archive(format!("{path:?}: \"..\" is not allowed"))),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(Error::Archive(format!("{path:?}: empty path")));
    }
    let p = parts.join("/");
    if p == TRAILER {
        return Err(Error::Archive(format!("{path:?}: reserved name")));
    }
    Ok(p)
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Number of entries (parents added implicitly included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, path: &str, kind: Kind, perm: u32, mtime: Option<u64>) -> Result<()> {
        let p = normalize(path)?;
        let mut parent = p.as_str();
        while let Some(i) = parent.rfind('/') {
            parent = &parent[..i];
            match self.entries.get(parent) {
                Some(e) if e.kind != Kind::Dir => {
                    return Err(Error::Archive(format!(
                        "{p}: parent {parent} is not a directory"
                    )))
                }
                Some(_) => {}
                None => {
                    self.entries.insert(
                        parent.to_string(),
                        Entry {
                            kind: Kind::Dir,
                            perm: 0o755,
                            mtime: None,
                        },
                    );
                }
            }
        }
        if let Some(old) = self.entries.get(&p) {
            // Re-adding a directory (e.g. to set its mode) is fine; silently
            // replacing a file with something else would hide a packing bug.
            if !(old.kind == Kind::Dir && kind == Kind::Dir) {
                return Err(Error::Archive(format!("{p}: added twice")));
            }
        }
        self.entries.insert(
            p,
            Entry {
                kind,
                perm: perm & 0o7777,
                mtime,
            },
        );
        Ok(())
    }

    /// Adds a directory (missing parents are added with mode 0755).
    pub fn add_dir(&mut self, path: &str, perm: u32) -> Result<()> {
        self.insert(path, Kind::Dir, perm, None)
    }

    /// Adds a regular file with the given content.
    pub fn add_file(&mut self, path: &str, data: Vec<u8>, perm: u32) -> Result<()> {
        self.insert(path, Kind::File(data), perm, None)
    }

    /// Adds a copy of the file `src`, keeping its mtime (clamped on write)
    /// and, unless `perm` is given, its permission bits.
    pub fn add_file_from(&mut self, path: &str, src: &Path, perm: Option<u32>) -> Result<()> {
        let meta = std::fs::metadata(src).map_err(|e| Error::io(src, e))?;
        if !meta.is_file() {
            return Err(Error::Archive(format!(
                "{}: not a regular file",
                src.display()
            )));
        }
        let data = std::fs::read(src).map_err(|e| Error::io(src, e))?;
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        self.insert(
            path,
            Kind::File(data),
            perm.unwrap_or(meta.mode()),
            Some(mtime),
        )
    }

    /// Adds a symbolic link pointing to `target`.
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<()> {
        if target.is_empty() {
            return Err(Error::Archive(format!("{path:?}: empty symlink target")));
        }
        self.insert(path, Kind::Symlink(target.to_string()), 0o777, None)
    }

    /// Adds a character device node (e.g. `dev/console`, 5:1).
    pub fn add_char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        self.insert(path, Kind::CharDevice { major, minor }, perm, None)
    }

    /// Writes the archive in newc format. Entry mtimes are
    /// `min(source mtime, epoch)`, or `epoch` for in-memory entries.
    pub fn write_to<W: Write>(&self, w: &mut W, epoch: u64) -> io::Result<()> {
        let mut off = 0u64;
        for (ino, (name, e)) in self.entries.iter().enumerate() {
            let (ftype, data, rdev, nlink): (u32, &[u8], (u32, u32), u32) = match &e.kind {
                Kind::Dir => (S_IFDIR, &[], (0, 0), 2),
                Kind::File(d) => (S_IFREG, d, (0, 0), 1),
                Kind::Symlink(t) => (S_IFLNK, t.as_bytes(), (0, 0), 1),
                Kind::CharDevice { major, minor } => (S_IFCHR, &[], (*major, *minor), 1),
            };
            let h = Header {
                ino: ino as u32 + 1,
                mode: ftype | e.perm,
                nlink,
                mtime: e.mtime.map_or(epoch, |m| m.min(epoch)),
                rdev,
            };
            off += write_entry(w, &h, name, data)?;
        }
        let trailer = Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            mtime: 0,
            rdev: (0, 0),
        };
        off += write_entry(w, &trailer, TRAILER, &[])?;
        // The kernel reads archives in 512-byte blocks like GNU cpio writes
        // them; padding keeps concatenated archives aligned.
        let pad = (512 - off % 512) % 512;
        w.write_all(&vec![0; pad as usize])
    }

    /// The newc bytes.
    pub fn to_bytes(&self, epoch: u64) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v, epoch)
            .expect("writing to a Vec cannot fail");
        v
    }

    /// The newc bytes, gzip-compressed (header mtime 0, so reproducible).
    pub fn to_gzip(&self, epoch: u64) -> io::Result<Vec<u8>> {
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::new(6));
        self.write_to(&mut gz, epoch)?;
        gz.finish()
    }
}

struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u64,
    rdev: (u32, u32),
}

fn write_entry<W: Write>(w: &mut W, h: &Header, name: &str, data: &[u8]) -> io::Result<u64> {
    if u32::try_from(data.len()).is_err() {
        return Err(io::Error::other(format!("{name}: larger than 4 GiB")));
    }
    let namesize = name.len() + 1;
    let mtime = u32::try_from(h.mtime).unwrap_or(u32::MAX);
    let head = format!(
        "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
        h.ino,
        h.mode,
        0, // uid
        0, // gid
        h.nlink,
        mtime,
        data.len(),
        0, // devmajor
        0, // devminor
        h.rdev.0,
        h.rdev.1,
        namesize,
        0, // check (only for the "070702" crc format)
    );
    w.write_all(head.as_bytes())?;
    w.write_all(name.as_bytes())?;
    let head_len = head.len() + namesize;
    let name_pad = (4 - head_len % 4) % 4;
    w.write_all(&[0u8; 4][..1 + name_pad])?;
    w.write_all(data)?;
    let data_pad = (4 - data.len() % 4) % 4;
    w.write_all(&[0u8; 3][..data_pad])?;
    Ok((head_len + name_pad + data.len() + data_pad) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    fn sample() -> Archive {
        let mut a = Archive::new();
        a.add_file("usr/lib/modules/k/a.ko", b"module a\n".to_vec(), 0o644)
            .unwrap();
        a.add_file("/init", b"\x7fELF binary".to_vec(), 0o755)
            .unwrap();
        a.add_dir("sysroot", 0o755).unwrap();
        a.add_dir("run", 0o700).unwrap();
        a.add_symlink("lib", "usr/lib").unwrap();
        a.add_file("etc/empty", Vec::new(), 0o600).unwrap();
        a.add_file("etc/odd-size", b"12345".to_vec(), 0o640)
            .unwrap();
        a.add_char_device("dev/console", 0o600, 5, 1).unwrap();
        a
    }

    fn gnu_cpio(args: &[&str], dir: &Path, input: &[u8]) -> String {
        let mut child = Command::new("cpio")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("GNU cpio must be installed (apt cpio)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "cpio {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn gnu_cpio_extracts_what_we_write() {
        let t = tempfile::tempdir().unwrap();
        let bytes = sample().to_bytes(1_700_000_000);
        assert_eq!(bytes.len() % 512, 0);
        // Device nodes need root to create: list them, extract the rest.
        let listing = gnu_cpio(&["-t", "-v", "--quiet"], t.path(), &bytes);
        let console = listing
            .lines()
            .find(|l| l.ends_with("dev/console"))
            .unwrap();
        assert!(console.starts_with("crw-------"), "{console}");
        assert!(console.contains("5,"), "{console}");
        let names: Vec<&str> = listing
            .lines()
            .map(|l| l.split(" -> ").next().unwrap().rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "etc",
                "etc/empty",
                "etc/odd-size",
                "init",
                "lib",
                "run",
                "sysroot",
                "usr",
                "usr/lib",
                "usr/lib/modules",
                "usr/lib/modules/k",
                "usr/lib/modules/k/a.ko"
            ]
        );
        assert!(listing.lines().all(|l| l.contains(" root ")), "{listing}");
        assert!(listing.contains("lib -> usr/lib"), "{listing}");

        let mut no_dev = sample();
        no_dev.entries.remove("dev/console");
        gnu_cpio(
            &["-i", "-d", "-m", "--quiet", "--no-absolute-filenames"],
            t.path(),
            &no_dev.to_bytes(1_700_000_000),
        );
        let p = t.path();
        assert_eq!(
            std::fs::read(p.join("usr/lib/modules/k/a.ko")).unwrap(),
            b"module a\n"
        );
        assert_eq!(std::fs::read(p.join("etc/odd-size")).unwrap(), b"12345");
        assert_eq!(std::fs::read(p.join("etc/empty")).unwrap(), b"");
        assert_eq!(
            std::fs::read_link(p.join("lib")).unwrap(),
            Path::new("usr/lib")
        );
        let mode = |r: &str| std::fs::metadata(p.join(r)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("init"), 0o755);
        assert_eq!(mode("etc/empty"), 0o600);
        assert_eq!(mode("etc/odd-size"), 0o640);
        assert_eq!(
            std::fs::metadata(p.join("init")).unwrap().mtime(),
            1_700_000_000
        );
    }

    #[test]
    fn gzip_output_is_a_gzipped_archive() {
        let a = sample();
        let gz = a.to_gzip(0).unwrap();
        let mut d = flate2::read::GzDecoder::new(&gz[..]);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut raw).unwrap();
        assert_eq!(raw, a.to_bytes(0));
        let t = tempfile::tempdir().unwrap();
        let listing = gnu_cpio(&["-t", "--quiet"], t.path(), &raw);
        assert!(listing.lines().any(|l| l == "init"));
    }

    #[test]
    fn output_is_deterministic_and_mtimes_are_clamped() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::write(&src, b"data").unwrap();
        let mut a = Archive::new();
        a.add_file_from("b/file", &src, None).unwrap();
        a.add_dir("a", 0o755).unwrap();
        let mut b = Archive::new();
        b.add_dir("a", 0o755).unwrap();
        b.add_file_from("b/file", &src, None).unwrap();
        // The file is newer than the epoch: clamped, so equal output.
        assert_eq!(a.to_bytes(1000), b.to_bytes(1000));
        assert_eq!(a.to_gzip(1000).unwrap(), b.to_gzip(1000).unwrap());
        assert_ne!(a.to_bytes(1000), a.to_bytes(2000));
        let ex = t.path().join("x");
        std::fs::create_dir(&ex).unwrap();
        gnu_cpio(&["-i", "-d", "-m", "--quiet"], &ex, &a.to_bytes(1000));
        assert_eq!(std::fs::metadata(ex.join("b/file")).unwrap().mtime(), 1000);
    }

    #[test]
    fn bad_paths_and_conflicts_are_refused() {
        let mut a = Archive::new();
        for bad in ["", "/", "a/../b", "TRAILER!!!"] {
            let e = a.add_dir(bad, 0o755).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        a.add_file("f", vec![], 0o644).unwrap();
        assert!(a
            .add_file("f/g", vec![], 0o644)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
        assert!(a
            .add_symlink("f", "x")
            .unwrap_err()
            .to_string()
            .contains("added twice"));
        a.add_dir("d", 0o700).unwrap();
        a.add_dir("d", 0o755).unwrap();
        assert_eq!(a.len(), 2);
    }
}
