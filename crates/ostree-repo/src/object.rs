//! Typed OSTree objects on top of [`crate::gvariant`]: dirmeta, dirtree,
//! commit, the content (file) header and its archive variant, and checksums.
//!
//! Upstream stores the integers it defines (uid, gid, mode, timestamps, the
//! archive size) big-endian inside otherwise little-endian GVariants; these
//! types hold native values and convert at the boundary.

use crate::gvariant::{self, Type, Value};
use crate::Error;
use sha2::{Digest, Sha256};

/// A SHA-256 object checksum (32 raw bytes; shown as 64 lowercase hex digits).
pub type Checksum = [u8; 32];

/// Kinds of objects in a repository (`OstreeObjectType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    /// Content object: a regular file or symlink plus its metadata.
    File,
    /// Directory listing `(a(say)a(sayay))`.
    DirTree,
    /// Directory metadata `(uuua(ayay))`.
    DirMeta,
    /// Commit `(a{sv}aya(say)sstayay)`.
    Commit,
    /// Marker left at a deleted commit's checksum.
    TombstoneCommit,
    /// Detached commit metadata `a{sv}` (keyed by the commit checksum).
    CommitMeta,
}

impl ObjectType {
    /// The loose-object file extension (`file`, `dirtree`, ...); archive
    /// repositories add `z` to `file` (see [`crate::Repo::object_path`]).
    pub fn extension(self) -> &'static str {
        match self {
            ObjectType::File => "file",
            ObjectType::DirTree => "dirtree",
            ObjectType::DirMeta => "dirmeta",
            ObjectType::Commit => "commit",
            ObjectType::TombstoneCommit => "tombstone-commit",
            ObjectType::CommitMeta => "commitmeta",
        }
    }

    /// Parses an extension / type name as used by `ostree` (`commit`, `dirtree`, ...).
    pub fn from_name(s: &str) -> Option<ObjectType> {
        Some(match s {
            "file" | "filez" => ObjectType::File,
            "dirtree" => ObjectType::DirTree,
            "dirmeta" => ObjectType::DirMeta,
            "commit" => ObjectType::Commit,
            "tombstone-commit" => ObjectType::TombstoneCommit,
            "commitmeta" => ObjectType::CommitMeta,
            _ => return None,
        })
    }

    /// True for the metadata object types (everything except content).
    pub fn is_meta(self) -> bool {
        self != ObjectType::File
    }
}

/// Extended attributes in canonical form: `(name + NUL, value)` sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Sorts xattrs the way upstream does (`strcmp` on names) and drops duplicates.
pub fn canonicalize_xattrs(x: &mut Xattrs) {
    x.sort_by(|a, b| a.0.cmp(&b.0));
    x.dedup_by(|a, b| a.0 == b.0);
}

pub(crate) fn xattrs_value(x: &Xattrs) -> Value {
    Value::Array(
        Type::parse("(ayay)").expect("static type"),
        x.iter()
            .map(|(n, v)| Value::Struct(vec![Value::Bytes(n.clone()), Value::Bytes(v.clone())]))
            .collect(),
    )
}

pub(crate) fn xattrs_from(v: &Value) -> Option<Xattrs> {
    let Value::Array(_, items) = v else {
        return None;
    };
    items
        .iter()
        .map(|it| match it {
            Value::Struct(m) => match m.as_slice() {
                [Value::Bytes(n), Value::Bytes(v)] => Some((n.clone(), v.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn be32(v: u32) -> Value {
    Value::U32(u32::from_le_bytes(v.to_be_bytes()))
}
fn be64(v: u64) -> Value {
    Value::U64(u64::from_le_bytes(v.to_be_bytes()))
}
fn from_be32(v: &Value) -> Option<u32> {
    match v {
        Value::U32(x) => Some(u32::from_be_bytes(x.to_le_bytes())),
        _ => None,
    }
}
fn from_be64(v: &Value) -> Option<u64> {
    match v {
        Value::U64(x) => Some(u64::from_be_bytes(x.to_le_bytes())),
        _ => None,
    }
}

fn checksum_of(v: &Value) -> Option<Checksum> {
    match v {
        Value::Bytes(b) => b.as_slice().try_into().ok(),
        _ => None,
    }
}

fn parse(ty: &str, what: &str, data: &[u8]) -> Result<Vec<Value>, Error> {
    let t = Type::parse(ty).expect("static type");
    match gvariant::decode(&t, data) {
        Ok(Value::Struct(m)) => Ok(m),
        Ok(_) => unreachable!("struct type decodes to a struct"),
        Err(e) => Err(Error::Corrupt(format!("{what}: {e}"))),
    }
}

fn bad(what: &str, field: &str) -> Error {
    Error::Corrupt(format!("{what}: invalid field '{field}'"))
}

/// `S_IFMT` and friends, independent of libc's integer types.
pub mod mode {
    /// File type mask.
    pub const S_IFMT: u32 = 0o170000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120000;

    /// True if `m` is a directory mode.
    pub fn is_dir(m: u32) -> bool {
        m & S_IFMT == S_IFDIR
    }
    /// True if `m` is a regular-file mode.
    pub fn is_reg(m: u32) -> bool {
        m & S_IFMT == S_IFREG
    }
    /// True if `m` is a symlink mode.
    pub fn is_lnk(m: u32) -> bool {
        m & S_IFMT == S_IFLNK
    }
}

/// Directory metadata object `(uuua(ayay))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Full `st_mode` including `S_IFDIR`.
    pub mode: u32,
    /// Sorted extended attributes.
    pub xattrs: Xattrs,
}

impl DirMeta {
    /// GVariant type string.
    pub const TYPE: &'static str = "(uuua(ayay))";

    /// Serializes in normal form (the bytes that are hashed and stored).
    pub fn to_bytes(&self) -> Vec<u8> {
        Value::Struct(vec![
            be32(self.uid),
            be32(self.gid),
            be32(self.mode),
            xattrs_value(&self.xattrs),
        ])
        .to_bytes()
    }

    /// Parses and validates a serialized dirmeta.
    pub fn from_bytes(data: &[u8]) -> Result<DirMeta, Error> {
        let m = parse(Self::TYPE, "dirmeta", data)?;
        let d = DirMeta {
            uid: from_be32(&m[0]).ok_or_else(|| bad("dirmeta", "uid"))?,
            gid: from_be32(&m[1]).ok_or_else(|| bad("dirmeta", "gid"))?,
            mode: from_be32(&m[2]).ok_or_else(|| bad("dirmeta", "mode"))?,
            xattrs: xattrs_from(&m[3]).ok_or_else(|| bad("dirmeta", "xattrs"))?,
        };
        if !mode::is_dir(d.mode) || d.mode & !(mode::S_IFMT | 0o7777) != 0 {
            return Err(Error::Corrupt(format!(
                "dirmeta: invalid directory mode 0{:o}",
                d.mode
            )));
        }
        Ok(d)
    }
}

/// One directory level `(a(say)a(sayay))`; entries sorted by name bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirTree {
    /// `(name, content checksum)` for regular files and symlinks.
    pub files: Vec<(String, Checksum)>,
    /// `(name, dirtree checksum, dirmeta checksum)` for subdirectories.
    pub dirs: Vec<(String, Checksum, Checksum)>,
}

impl DirTree {
    /// GVariant type string.
    pub const TYPE: &'static str = "(a(say)a(sayay))";

    /// Serializes in normal form, sorting entries by name as upstream does.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut files: Vec<_> = self.files.iter().collect();
        files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut dirs: Vec<_> = self.dirs.iter().collect();
        dirs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Value::Struct(vec![
            Value::Array(
                Type::parse("(say)").expect("static type"),
                files
                    .iter()
                    .map(|(n, c)| {
                        Value::Struct(vec![Value::Str(n.clone()), Value::Bytes(c.to_vec())])
                    })
                    .collect(),
            ),
            Value::Array(
                Type::parse("(sayay)").expect("static type"),
                dirs.iter()
                    .map(|(n, t, m)| {
                        Value::Struct(vec![
                            Value::Str(n.clone()),
                            Value::Bytes(t.to_vec()),
                            Value::Bytes(m.to_vec()),
                        ])
                    })
                    .collect(),
            ),
        ])
        .to_bytes()
    }

    /// Parses a serialized dirtree and validates checksums and file names
    /// (no `.`, `..`, `/` or empty names: these would escape a checkout).
    pub fn from_bytes(data: &[u8]) -> Result<DirTree, Error> {
        let m = parse(Self::TYPE, "dirtree", data)?;
        let mut t = DirTree::default();
        let (Value::Array(_, files), Value::Array(_, dirs)) = (&m[0], &m[1]) else {
            return Err(bad("dirtree", "entries"));
        };
        for f in files {
            let Value::Struct(e) = f else {
                return Err(bad("dirtree", "files"));
            };
            let (Value::Str(n), Some(c)) = (&e[0], checksum_of(&e[1])) else {
                return Err(bad("dirtree", "files"));
            };
            validate_filename(n)?;
            t.files.push((n.clone(), c));
        }
        for d in dirs {
            let Value::Struct(e) = d else {
                return Err(bad("dirtree", "dirs"));
            };
            let (Value::Str(n), Some(c), Some(mc)) =
                (&e[0], checksum_of(&e[1]), checksum_of(&e[2]))
            else {
                return Err(bad("dirtree", "dirs"));
            };
            validate_filename(n)?;
            t.dirs.push((n.clone(), c, mc));
        }
        Ok(t)
    }
}

/// Rejects names that are not a single path component.
pub fn validate_filename(n: &str) -> Result<(), Error> {
    // Messages as upstream's ot_util_filename_validate (tests match them).
    if n.is_empty() {
        return Err(Error::Corrupt("Invalid empty filename".into()));
    }
    if n == "." || n == ".." {
        return Err(Error::Corrupt(format!(
            "Invalid special element '{n}' in filename"
        )));
    }
    if n.contains('/') {
        return Err(Error::Corrupt(format!("Invalid / in filename {n}")));
    }
    if n.contains('\0') {
        return Err(Error::Corrupt(format!("Invalid NUL in filename {n}")));
    }
    Ok(())
}

/// A commit object `(a{sv}aya(say)sstayay)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// Metadata dictionary in stored order (`version`, `ostree.ref-binding`, ...).
    pub metadata: Vec<(String, Value)>,
    /// Parent commit, if any.
    pub parent: Option<Checksum>,
    /// Related objects `a(say)` (unused in practice; kept for round-trips).
    pub related: Vec<(String, Checksum)>,
    /// One-line subject.
    pub subject: String,
    /// Body text.
    pub body: String,
    /// Seconds since the epoch (UTC).
    pub timestamp: u64,
    /// Root dirtree checksum.
    pub root_tree: Checksum,
    /// Root dirmeta checksum.
    pub root_meta: Checksum,
}

impl Commit {
    /// GVariant type string.
    pub const TYPE: &'static str = "(a{sv}aya(say)sstayay)";

    /// Serializes in normal form.
    pub fn to_bytes(&self) -> Vec<u8> {
        Value::Struct(vec![
            gvariant::vardict(&self.metadata),
            Value::Bytes(self.parent.map(|p| p.to_vec()).unwrap_or_default()),
            Value::Array(
                Type::parse("(say)").expect("static type"),
                self.related
                    .iter()
                    .map(|(n, c)| {
                        Value::Struct(vec![Value::Str(n.clone()), Value::Bytes(c.to_vec())])
                    })
                    .collect(),
            ),
            Value::Str(self.subject.clone()),
            Value::Str(self.body.clone()),
            be64(self.timestamp),
            Value::Bytes(self.root_tree.to_vec()),
            Value::Bytes(self.root_meta.to_vec()),
        ])
        .to_bytes()
    }

    /// Parses and validates a serialized commit.
    pub fn from_bytes(data: &[u8]) -> Result<Commit, Error> {
        let m = parse(Self::TYPE, "commit", data)?;
        let metadata = gvariant::vardict_entries(&m[0]).ok_or_else(|| bad("commit", "metadata"))?;
        let parent = match &m[1] {
            Value::Bytes(b) if b.is_empty() => None,
            v => Some(checksum_of(v).ok_or_else(|| bad("commit", "parent"))?),
        };
        let Value::Array(_, rel) = &m[2] else {
            return Err(bad("commit", "related"));
        };
        let mut related = Vec::new();
        for r in rel {
            match r {
                Value::Struct(e) => match (&e[0], checksum_of(&e[1])) {
                    (Value::Str(n), Some(c)) => related.push((n.clone(), c)),
                    _ => return Err(bad("commit", "related")),
                },
                _ => return Err(bad("commit", "related")),
            }
        }
        let (Value::Str(subject), Value::Str(body)) = (&m[3], &m[4]) else {
            return Err(bad("commit", "subject"));
        };
        Ok(Commit {
            metadata,
            parent,
            related,
            subject: subject.clone(),
            body: body.clone(),
            timestamp: from_be64(&m[5]).ok_or_else(|| bad("commit", "timestamp"))?,
            root_tree: checksum_of(&m[6]).ok_or_else(|| bad("commit", "root dirtree"))?,
            root_meta: checksum_of(&m[7]).ok_or_else(|| bad("commit", "root dirmeta"))?,
        })
    }

    /// Looks up a metadata key.
    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Metadata of a content object: the `(uuuusa(ayay))` file header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Full `st_mode` including `S_IFREG` or `S_IFLNK`.
    pub mode: u32,
    /// Symlink target (empty for regular files).
    pub symlink_target: String,
    /// Sorted extended attributes.
    pub xattrs: Xattrs,
}

impl FileHeader {
    /// GVariant type of the plain header.
    pub const TYPE: &'static str = "(uuuusa(ayay))";
    /// GVariant type of the archive (`.filez`) header.
    pub const ZLIB_TYPE: &'static str = "(tuuuusa(ayay))";

    /// The serialized `(uuuusa(ayay))` header variant (rdev is always 0).
    pub fn to_variant_bytes(&self) -> Vec<u8> {
        Value::Struct(vec![
            be32(self.uid),
            be32(self.gid),
            be32(self.mode),
            be32(0),
            Value::Str(self.symlink_target.clone()),
            xattrs_value(&self.xattrs),
        ])
        .to_bytes()
    }

    /// The length-prefixed header that starts a content stream and is hashed
    /// before the payload: BE32 length, 4 zero bytes, the variant.
    pub fn to_stream_header(&self) -> Vec<u8> {
        lenprefixed(self.to_variant_bytes())
    }

    /// The length-prefixed archive header for `.filez` objects; `size` is the
    /// uncompressed payload length.
    pub fn to_zlib_header(&self, size: u64) -> Vec<u8> {
        lenprefixed(
            Value::Struct(vec![
                be64(size),
                be32(self.uid),
                be32(self.gid),
                be32(self.mode),
                be32(0),
                Value::Str(self.symlink_target.clone()),
                xattrs_value(&self.xattrs),
            ])
            .to_bytes(),
        )
    }

    fn validate(self, rdev: u32, what: &str) -> Result<FileHeader, Error> {
        if rdev != 0 {
            return Err(Error::Corrupt(format!(
                "{what}: Corrupted archive file; invalid rdev {rdev}"
            )));
        }
        if !(mode::is_reg(self.mode) || mode::is_lnk(self.mode))
            || self.mode & !(mode::S_IFMT | 0o7777) != 0
        {
            return Err(Error::Corrupt(format!(
                "{what}: Invalid mode 0{:o}",
                self.mode
            )));
        }
        if mode::is_lnk(self.mode) && self.symlink_target.is_empty() {
            return Err(Error::Corrupt(format!("{what}: empty symlink target")));
        }
        Ok(self)
    }

    /// Parses a `(uuuusa(ayay))` variant.
    pub fn from_variant_bytes(data: &[u8]) -> Result<FileHeader, Error> {
        let m = parse(Self::TYPE, "file header", data)?;
        Self::from_members(&m, "file header")
    }

    fn from_members(m: &[Value], what: &str) -> Result<FileHeader, Error> {
        let Value::Str(target) = &m[4] else {
            return Err(bad(what, "symlink target"));
        };
        FileHeader {
            uid: from_be32(&m[0]).ok_or_else(|| bad(what, "uid"))?,
            gid: from_be32(&m[1]).ok_or_else(|| bad(what, "gid"))?,
            mode: from_be32(&m[2]).ok_or_else(|| bad(what, "mode"))?,
            symlink_target: target.clone(),
            xattrs: xattrs_from(&m[5]).ok_or_else(|| bad(what, "xattrs"))?,
        }
        .validate(from_be32(&m[3]).ok_or_else(|| bad(what, "rdev"))?, what)
    }

    /// Parses the `(tuuuusa(ayay))` variant of a `.filez` header, returning
    /// the header and the uncompressed payload size.
    pub fn from_zlib_variant_bytes(data: &[u8]) -> Result<(FileHeader, u64), Error> {
        let m = parse(Self::ZLIB_TYPE, "archive file header", data)?;
        let size = from_be64(&m[0]).ok_or_else(|| bad("archive file header", "size"))?;
        Ok((Self::from_members(&m[1..], "archive file header")?, size))
    }

    /// The bare-user `user.ostreemeta` xattr value `(uuua(ayay))`.
    pub fn to_ostreemeta(&self) -> Vec<u8> {
        // Same layout as a dirmeta, but the mode is a file mode.
        DirMeta {
            uid: self.uid,
            gid: self.gid,
            mode: self.mode,
            xattrs: self.xattrs.clone(),
        }
        .to_bytes()
    }

    /// Parses a bare-user `user.ostreemeta` value (symlink target supplied
    /// separately, since it lives in the object file).
    pub fn from_ostreemeta(data: &[u8], symlink_target: String) -> Result<FileHeader, Error> {
        let m = parse(DirMeta::TYPE, "user.ostreemeta", data)?;
        FileHeader {
            uid: from_be32(&m[0]).ok_or_else(|| bad("user.ostreemeta", "uid"))?,
            gid: from_be32(&m[1]).ok_or_else(|| bad("user.ostreemeta", "gid"))?,
            mode: from_be32(&m[2]).ok_or_else(|| bad("user.ostreemeta", "mode"))?,
            symlink_target,
            xattrs: xattrs_from(&m[3]).ok_or_else(|| bad("user.ostreemeta", "xattrs"))?,
        }
        .validate(0, "user.ostreemeta")
    }
}

/// Parses the length prefix of a content stream header (`BE32 len ‖ 4×00`),
/// returning the variant length.
pub fn parse_lenprefix(prefix: &[u8; 8]) -> Result<usize, Error> {
    let len = u32::from_be_bytes(prefix[..4].try_into().expect("4 bytes")) as usize;
    if prefix[4..] != [0, 0, 0, 0] {
        return Err(Error::Corrupt("content header: nonzero padding".into()));
    }
    if len > 10 * 1024 * 1024 {
        return Err(Error::Corrupt(format!(
            "content header: length {len} too large"
        )));
    }
    Ok(len)
}

fn lenprefixed(v: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 8);
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&v);
    out
}

/// The `.tombstone-commit` object left for a deleted commit: `a{sv}` with
/// `commit` = the hex checksum as a GLib bytestring (`ay` with its NUL),
/// as upstream's `ostree_repo_delete_object` writes it.
pub fn tombstone_bytes(c: &Checksum) -> Vec<u8> {
    let mut hex = to_hex(c).into_bytes();
    hex.push(0);
    gvariant::vardict(&[("commit".to_string(), Value::Bytes(hex))]).to_bytes()
}

/// SHA-256 of a metadata object's bytes.
pub fn metadata_checksum(data: &[u8]) -> Checksum {
    Sha256::digest(data).into()
}

/// Incremental content checksum: feed the header, then the payload.
pub struct ContentHasher(Sha256);

impl ContentHasher {
    /// Starts a content checksum for an object with this header.
    pub fn new(header: &FileHeader) -> ContentHasher {
        let mut h = Sha256::new();
        h.update(header.to_stream_header());
        ContentHasher(h)
    }
    /// Adds payload bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The object checksum.
    pub fn finish(self) -> Checksum {
        self.0.finalize().into()
    }
}

/// Checksum of a content object whose payload is in memory (symlinks, tests).
pub fn content_checksum(header: &FileHeader, payload: &[u8]) -> Checksum {
    let mut h = ContentHasher::new(header);
    h.update(payload);
    h.finish()
}

/// Lowercase hex form of a checksum.
pub fn to_hex(c: &Checksum) -> String {
    hex::encode(c)
}

/// Parses a 64-digit lowercase/uppercase hex checksum.
pub fn from_hex(s: &str) -> Option<Checksum> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Checksum of the empty dirtree (`sha256("\0")`), a well-known constant.
pub const EMPTY_DIRTREE: &str = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_dirtree_checksum() {
        let b = DirTree::default().to_bytes();
        assert_eq!(b, vec![0]);
        assert_eq!(to_hex(&metadata_checksum(&b)), EMPTY_DIRTREE);
    }

    #[test]
    fn bare_user_xattr_layout() {
        // From the format notes: two user xattrs as stored in user.ostreemeta.
        let h = FileHeader {
            uid: 0,
            gid: 0,
            mode: 0o100644,
            symlink_target: String::new(),
            xattrs: vec![
                (b"user.aaa\0".to_vec(), b"zzz".to_vec()),
                (b"user.foo\0".to_vec(), b"bar".to_vec()),
            ],
        };
        let b = h.to_ostreemeta();
        assert_eq!(
            hex::encode(&b[12..]),
            "757365722e61616100".to_string()
                + "7a7a7a09"
                + "757365722e666f6f00"
                + "626172"
                + "09"
                + "0d1a"
        );
        let back = FileHeader::from_ostreemeta(&b, String::new()).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn symlink_mode_is_validated() {
        let h = FileHeader {
            uid: 0,
            gid: 0,
            mode: 0o020644,
            symlink_target: String::new(),
            xattrs: vec![],
        };
        assert!(FileHeader::from_variant_bytes(&h.to_variant_bytes()).is_err());
    }

    #[test]
    fn dirtree_rejects_traversal() {
        let t = DirTree {
            files: vec![("..".into(), [1; 32])],
            dirs: vec![],
        };
        assert!(DirTree::from_bytes(&t.to_bytes()).is_err());
    }
}
