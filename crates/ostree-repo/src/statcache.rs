//! Commit's stat cache: a source file whose identity and change time are
//! those of a file hashed by an earlier commit, and whose object header
//! would be the same, has the same content checksum, so it is not read
//! again. Re-committing a tree where 1 % of the files changed then reads
//! 1 % of the data, as `git status` does with its index.
//!
//! The key is a digest of the file's device, filesystem id, inode, size,
//! mtime and ctime (nanoseconds) and of the ownership and mode the object
//! would get (after `--owner-uid`, statoverrides and the like) and whether
//! it keeps the file's xattrs. The kernel sets ctime on every change of
//! content, xattrs or other metadata (a symlink's target cannot change at
//! all) and no system call sets it back, so a file whose content changed
//! has a different key, and a hit needs neither the file's data nor its
//! xattrs. Two limits keep that true:
//! - Timestamps are taken from a coarse clock, so a file changed twice
//!   within one tick keeps its ctime. A checksum is only remembered when
//!   the file's ctime is more than [`RACY_MARGIN_SECS`] older than the
//!   commit's start: any later change happens after the commit began and
//!   gives a newer ctime.
//! - Only filesystems whose ctime and inode numbers are local and stable
//!   (ext4, xfs, btrfs, tmpfs, f2fs) are cached, and only on the source
//!   root's device: not NFS, FUSE or overlayfs (copy-up keeps the inode
//!   number), not a mount inside the tree.
//!
//! A remembered checksum is used only when the object is in the
//! repository, and the file lives in `tmp/cache/`, which upstream's tmp
//! cleanup leaves alone. It ends with a SHA-256 of its contents; a torn
//! or foreign file is ignored, so it needs no fsync. Setting
//! `FERROCORE_COMMIT_STAT_CACHE=0` disables it.

use crate::object::Checksum;
use crate::Repo;
use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Identity of a source file and of the object header it would get.
pub(crate) type Key = [u8; 16];

/// Where the cache lives, relative to the repository.
const FILE: &str = "tmp/cache/ferrocore-commit-stat-cache";
const MAGIC: &[u8; 8] = b"FCSTAT01";
const ENTRY: usize = 16 + 32;
/// How much older than the commit's start a file's ctime must be for its
/// checksum to be remembered (covers the coarse timestamp clock's tick
/// with room to spare).
pub(crate) const RACY_MARGIN_SECS: i64 = 2;
/// Entries of earlier commits kept beside the current one's, so that
/// alternately committing two trees keeps both warm.
const MIN_KEEP: usize = 65536;

// statfs f_type values whose ctime and inode numbers are trustworthy.
const TRUSTED_FS: &[i64] = &[
    0xEF53,      // ext2/3/4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0x0102_1994, // tmpfs
    0xF2F5_2010, // f2fs
];

/// Whether commits of a tree at `dir` can use the stat cache (its
/// filesystem's timestamps and inode numbers are trusted).
pub fn applies_to(dir: &Path) -> bool {
    trusted_fsid(dir).is_some()
}

/// The id of the filesystem holding `dir`, if it is one we trust.
fn trusted_fsid(dir: &Path) -> Option<[i32; 2]> {
    crate::sys::statfs(dir)
        .filter(|(t, _)| TRUSTED_FS.contains(t))
        .map(|(_, fsid)| fsid)
}

/// Keys are digests already: their first bytes are as good a hash as any,
/// and hashing them again with SipHash would cost more than the lookup.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
    // The length prefix that slices hash first carries nothing.
    fn write_usize(&mut self, _: usize) {}
    fn finish(&self) -> u64 {
        self.0
    }
}

type Map = std::collections::HashMap<Key, Checksum, std::hash::BuildHasherDefault<KeyHasher>>;

/// One commit's view of the cache: what earlier commits remembered, and
/// what this one learns.
pub(crate) struct StatCache {
    enabled: bool,
    // A hash map, not a binary search over the sorted file: one cache miss
    // per lookup instead of ~15 (measured: 11 % of a re-commit's CPU).
    old: Map,
    new: Mutex<Vec<(Key, Checksum)>>,
    // The commit's start, seconds and nanoseconds since the epoch.
    start: (i64, i64),
    // Device and filesystem id of the current source root, when trusted.
    root: Mutex<Option<(u64, [i32; 2])>>,
    hits: AtomicU64,
}

impl StatCache {
    /// Loads the repository's cache; an absent, torn or foreign file gives
    /// an empty one.
    pub(crate) fn load(repo: &Repo) -> StatCache {
        let enabled = std::env::var_os("FERROCORE_COMMIT_STAT_CACHE").is_none_or(|v| v != "0");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let old = if enabled {
            std::fs::read(repo.path().join(FILE))
                .ok()
                .and_then(|b| parse(&b))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut map = Map::with_capacity_and_hasher(old.len(), Default::default());
        map.extend(old);
        StatCache {
            enabled,
            old: map,
            new: Mutex::new(Vec::new()),
            start: (now.as_secs() as i64, i64::from(now.subsec_nanos())),
            root: Mutex::new(None),
            hits: AtomicU64::new(0),
        }
    }

    /// Sets the source root whose files are looked up next: files on other
    /// devices, and every file when the root's filesystem is not trusted,
    /// get no key.
    pub(crate) fn set_root(&self, dir: &Path, md: &std::fs::Metadata) {
        let root = if self.enabled {
            trusted_fsid(dir).map(|fsid| (md.dev(), fsid))
        } else {
            None
        };
        *self.root.lock().expect("not poisoned") = root;
    }

    /// The key of a file or symlink under the current root, or `None` when
    /// its checksum may not be remembered (untrusted filesystem, or
    /// changed too recently to tell a later change apart). `object` is
    /// the uid, gid and mode the object would get, and whether it keeps
    /// the file's own xattrs (else none): the xattrs themselves need not
    /// be read, since changing them changes the ctime.
    pub(crate) fn key(&self, md: &std::fs::Metadata, object: (u32, u32, u32, bool)) -> Option<Key> {
        let (dev, fsid) = (*self.root.lock().expect("not poisoned"))?;
        if md.dev() != dev {
            return None;
        }
        let ctime = (md.ctime(), md.ctime_nsec());
        if ctime >= (self.start.0 - RACY_MARGIN_SECS, self.start.1) {
            return None;
        }
        let mut h = Sha256::new();
        for v in [
            md.dev(),
            u64::from(fsid[0] as u32) << 32 | u64::from(fsid[1] as u32),
            md.ino(),
            md.size(),
            md.mtime() as u64,
            md.mtime_nsec() as u64,
            md.ctime() as u64,
            md.ctime_nsec() as u64,
        ] {
            h.update(v.to_le_bytes());
        }
        let (uid, gid, mode, own_xattrs) = object;
        for v in [uid, gid, mode, u32::from(own_xattrs)] {
            h.update(v.to_le_bytes());
        }
        let d = h.finalize();
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        Some(k)
    }

    /// The checksum an earlier commit remembered for `key`.
    pub(crate) fn get(&self, key: &Key) -> Option<Checksum> {
        self.old.get(key).copied()
    }

    /// Remembers the checksums of files this commit hashed or found here
    /// (`true`: found here).
    pub(crate) fn record(&self, learned: Vec<(Key, Checksum, bool)>) {
        if learned.is_empty() {
            return;
        }
        let hits = learned.iter().filter(|l| l.2).count();
        self.hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.new
            .lock()
            .expect("not poisoned")
            .extend(learned.into_iter().map(|(k, c, _)| (k, c)));
    }

    /// Files whose checksum came from the cache.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Writes this commit's entries, plus earlier ones up to a bound, for
    /// the next commit. Failing to is not an error: it is only a cache.
    pub(crate) fn save(self, repo: &Repo) {
        let mut new = self.new.into_inner().expect("not poisoned");
        if !self.enabled || new.is_empty() {
            return;
        }
        new.sort_unstable_by_key(|a| a.0);
        new.dedup_by(|a, b| a.0 == b.0);
        let keep = (new.len() * 2).max(MIN_KEEP).saturating_sub(new.len());
        let mut all: Vec<_> = self
            .old
            .into_iter()
            .filter(|(k, _)| new.binary_search_by(|(n, _)| n.cmp(k)).is_err())
            .take(keep)
            .collect();
        all.extend(new);
        // Sorted, so that the file is the same whatever order threads and
        // the hash map produced.
        all.sort_unstable_by_key(|a| a.0);
        let path = repo.path().join(FILE);
        if let Some(dir) = path.parent() {
            if std::fs::create_dir_all(dir).is_err() {
                return;
            }
        }
        let _ = crate::repo::write_file_atomic(&path, &serialize(&all), false);
    }
}

fn serialize(entries: &[(Key, Checksum)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + entries.len() * ENTRY + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (k, c) in entries {
        out.extend_from_slice(k);
        out.extend_from_slice(c);
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

fn parse(b: &[u8]) -> Option<Vec<(Key, Checksum)>> {
    let body = b.get(..b.len().checked_sub(32)?)?;
    if Sha256::digest(body)[..] != b[body.len()..] || body.get(..8)? != MAGIC {
        return None;
    }
    let n = usize::try_from(u64::from_le_bytes(body.get(8..16)?.try_into().ok()?)).ok()?;
    let rest = &body[16..];
    if rest.len() != n.checked_mul(ENTRY)? {
        return None;
    }
    let v: Vec<(Key, Checksum)> = rest
        .chunks_exact(ENTRY)
        .map(|e| {
            (
                e[..16].try_into().expect("16 bytes"),
                e[16..].try_into().expect("32 bytes"),
            )
        })
        .collect();
    // We always write it sorted (and so without duplicates): an unsorted
    // file is not ours.
    v.windows(2).all(|w| w[0].0 < w[1].0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_damage() {
        let e = vec![([1u8; 16], [2u8; 32]), ([3u8; 16], [4u8; 32])];
        let b = serialize(&e);
        assert_eq!(parse(&b), Some(e));
        for i in [0, 9, 20, b.len() - 1] {
            let mut d = b.clone();
            d[i] ^= 1;
            assert_eq!(parse(&d), None, "flipped byte {i}");
        }
        assert_eq!(parse(&b[..b.len() - 1]), None);
        assert_eq!(parse(b""), None);
        let unsorted = serialize(&[([3u8; 16], [4u8; 32]), ([1u8; 16], [2u8; 32])]);
        assert_eq!(parse(&unsorted), None);
    }
}
