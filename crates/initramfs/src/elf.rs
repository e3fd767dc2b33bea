//! Just enough ELF to tell a static binary from a dynamic one: a binary with
//! a `PT_INTERP` program header needs a dynamic loader (and the libraries it
//! loads), which an initramfs holding only `/init` does not have.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

const PT_INTERP: u32 = 3;

fn refuse(path: &Path, message: impl Into<String>) -> Error {
    Error::Binary {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Returns the program interpreter (`/lib64/ld-linux-x86-64.so.2`) of the
/// ELF file at `path`, `None` when it is statically linked.
pub fn interpreter(path: &Path) -> Result<Option<String>> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut data))
        .map_err(|e| Error::io(path, e))?;
    interpreter_of(&data).map_err(|m| refuse(path, m))
}

/// [`interpreter`] on bytes; only the first program headers need to be there.
fn interpreter_of(d: &[u8]) -> std::result::Result<Option<String>, String> {
    if d.len() < 52 || &d[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    let is64 = match d[4] {
        1 => false,
        2 => true,
        c => return Err(format!("unknown ELF class {c}")),
    };
    let le = match d[5] {
        1 => true,
        2 => false,
        e => return Err(format!("unknown ELF data encoding {e}")),
    };
    let rd = |off: usize, n: usize| -> std::result::Result<u64, String> {
        let b = d
            .get(off..off + n)
            .ok_or_else(|| format!("truncated ELF header (need byte {})", off + n))?;
        let mut v = 0u64;
        for i in 0..n {
            let byte = if le { b[n - 1 - i] } else { b[i] };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    };
    let (phoff, phentsize, phnum) = if is64 {
        (rd(0x20, 8)?, rd(0x36, 2)?, rd(0x38, 2)?)
    } else {
        (rd(0x1c, 4)?, rd(0x2a, 2)?, rd(0x2c, 2)?)
    };
    for i in 0..phnum {
        let ph = (phoff + i * phentsize) as usize;
        if rd(ph, 4)? as u32 != PT_INTERP {
            continue;
        }
        let (off, size) = if is64 {
            (rd(ph + 8, 8)?, rd(ph + 32, 8)?)
        } else {
            (rd(ph + 4, 4)?, rd(ph + 16, 4)?)
        };
        let s = d
            .get(off as usize..(off + size) as usize)
            .map(|b| {
                String::from_utf8_lossy(b)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .unwrap_or_else(|| "(beyond the first MiB)".into());
        return Ok(Some(s));
    }
    Ok(None)
}

/// Refuses a binary that is not ELF or needs a program interpreter.
pub fn check_static(path: &Path) -> Result<()> {
    match interpreter(path)? {
        None => Ok(()),
        Some(interp) => Err(refuse(
            path,
            format!(
                "dynamically linked (program interpreter {interp}); the initramfs needs a static \
                 binary: RUSTFLAGS='-C target-feature=+crt-static' cargo build --release \
                 -p ferrocore --target x86_64-unknown-linux-gnu"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 LE header with the given program header types.
    fn elf64(types: &[u32]) -> Vec<u8> {
        let mut d = vec![0u8; 64 + 56 * types.len() + 32];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        d[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        d[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        let interp_off = (64 + 56 * types.len()) as u64;
        for (i, t) in types.iter().enumerate() {
            let ph = 64 + 56 * i;
            d[ph..ph + 4].copy_from_slice(&t.to_le_bytes());
            d[ph + 8..ph + 16].copy_from_slice(&interp_off.to_le_bytes());
            d[ph + 32..ph + 40].copy_from_slice(&11u64.to_le_bytes());
        }
        let off = interp_off as usize;
        d[off..off + 11].copy_from_slice(b"/lib/ld.so\0");
        d
    }

    #[test]
    fn synthetic_headers() {
        assert_eq!(interpreter_of(&elf64(&[1, 1])).unwrap(), None);
        assert_eq!(
            interpreter_of(&elf64(&[6, 3, 1])).unwrap().as_deref(),
            Some("/lib/ld.so")
        );
        assert!(interpreter_of(b"#!/bin/sh\n")
            .unwrap_err()
            .contains("not an ELF"));
        let mut cut = elf64(&[1, 3]);
        cut.truncate(100);
        assert!(interpreter_of(&cut).unwrap_err().contains("truncated"));
    }

    #[test]
    fn host_binaries() {
        // The host's coreutils are dynamically linked against glibc.
        let e = check_static(Path::new("/bin/ls")).unwrap_err().to_string();
        assert!(e.contains("/bin/ls: dynamically linked"), "{e}");
        assert!(e.contains("ld-linux"), "{e}");
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("static");
        std::fs::write(&f, elf64(&[1])).unwrap();
        check_static(&f).unwrap();
        std::fs::write(&f, b"#!/bin/sh\n").unwrap();
        assert!(check_static(&f)
            .unwrap_err()
            .to_string()
            .contains("not an ELF"));
    }
}
