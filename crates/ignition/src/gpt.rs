//! Reads a disk's GPT partition entries, what upstream gets from libblkid
//! (IG:internal/exec/util/blkid.go `DumpDisk`). Parsing the on-disk format
//! here avoids scraping `sgdisk -p` columns (names with spaces) and needs no
//! `sfdisk`; writing stays with `sgdisk`, like upstream.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::{path_err, Error, Result};

/// One existing GPT partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GptPartition {
    /// Partition number (entry index + 1).
    pub number: i64,
    /// First sector.
    pub start: i64,
    /// Length in sectors.
    pub size: i64,
    /// Partition type GUID, upper case.
    #[serde(rename = "typeGuid")]
    pub type_guid: String,
    /// Unique partition GUID, upper case.
    pub guid: String,
    /// Partition name (label).
    pub label: String,
}

/// A disk's partition table (empty when the disk has no GPT).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GptTable {
    /// Logical sector size in bytes.
    pub sector_size: i64,
    /// Whether a GPT header was found.
    pub present: bool,
    /// Partitions in number order.
    pub partitions: Vec<GptPartition>,
}

impl GptTable {
    /// The partition with this number, if any.
    pub fn get(&self, number: i64) -> Option<&GptPartition> {
        self.partitions.iter().find(|p| p.number == number)
    }
}

// BLKSSZGET = _IO(0x12, 104): the logical sector size of a block device.
const BLKSSZGET: libc::c_ulong = 0x1268;

/// Logical sector size of `f` (512 for regular files, as sgdisk assumes).
fn sector_size(f: &std::fs::File) -> i64 {
    let mut sz: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one c_int through the pointer; on anything
    // but a block device the ioctl fails and `sz` is left untouched.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), BLKSSZGET as _, &mut sz as *mut libc::c_int) };
    if rc == 0 && sz > 0 {
        sz as i64
    } else {
        512
    }
}

/// Formats a GPT on-disk GUID (first three fields little endian).
fn guid(b: &[u8]) -> String {
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4]))
}

/// Reads the primary GPT of `dev` (a block device or an image file).
pub fn read(dev: &Path) -> Result<GptTable> {
    let mut f = std::fs::File::open(dev).map_err(|e| path_err("open", dev, &e))?;
    let ss = sector_size(&f);
    let bad = |what: &str| {
        Error::new(format!(
            "reading partition table of {}: {what}",
            dev.display()
        ))
    };
    let mut hdr = vec![0u8; ss as usize];
    f.seek(SeekFrom::Start(ss as u64))
        .and_then(|_| f.read_exact(&mut hdr))
        .map_err(|e| {
            // A device smaller than two sectors simply has no GPT.
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                bad("device too small")
            } else {
                path_err("read", dev, &e)
            }
        })?;
    let mut table = GptTable {
        sector_size: ss,
        ..Default::default()
    };
    if &hdr[..8] != b"EFI PART" {
        return Ok(table);
    }
    table.present = true;
    let entries_lba = le64(&hdr[72..]);
    let count = le32(&hdr[80..]) as usize;
    let esize = le32(&hdr[84..]) as usize;
    if !(128..=4096).contains(&esize) || count > 4096 {
        return Err(bad("implausible GPT entry array"));
    }
    let mut raw = vec![0u8; count * esize];
    f.seek(SeekFrom::Start(entries_lba * ss as u64))
        .and_then(|_| f.read_exact(&mut raw))
        .map_err(|e| path_err("read", dev, &e))?;
    for (i, e) in raw.chunks(esize).enumerate() {
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let first = le64(&e[32..]) as i64;
        let last = le64(&e[40..]) as i64;
        let name: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        table.partitions.push(GptPartition {
            number: i as i64 + 1,
            start: first,
            size: last - first + 1,
            type_guid: guid(&e[0..16]),
            guid: guid(&e[16..32]),
            label: String::from_utf16_lossy(&name),
        });
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn have(tool: &str) -> bool {
        Command::new(tool).arg("--version").output().is_ok()
    }

    /// sgdisk works on plain image files: no root or loop device needed.
    #[test]
    fn reads_what_sgdisk_wrote() {
        assert!(
            have("sgdisk"),
            "sgdisk (apt gdisk) is required for this test"
        );
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("disk.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        assert!(read(&img).unwrap().partitions.is_empty());
        assert!(!read(&img).unwrap().present);
        let st = Command::new("sgdisk")
            .args([
                "--new=1:2048:+8M",
                "--change-name=1:boot part",
                "--typecode=1:C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                "--partition-guid=1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                "--new=3:0:+4M",
                "--change-name=3:räksmörgås",
            ])
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let t = read(&img).unwrap();
        assert!(t.present);
        assert_eq!(t.sector_size, 512);
        assert_eq!(t.partitions.len(), 2);
        let p1 = t.get(1).unwrap();
        assert_eq!((p1.start, p1.size), (2048, 16384));
        assert_eq!(p1.label, "boot part");
        assert_eq!(p1.type_guid, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(p1.guid, "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0");
        let p3 = t.get(3).unwrap();
        assert_eq!((p3.start, p3.size), (18432, 8192));
        assert_eq!(p3.label, "räksmörgås");
        assert_eq!(p3.type_guid, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
        assert!(t.get(2).is_none());
    }
}
