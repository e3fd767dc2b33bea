//! The `summary` file `(a(s(taya{sv}))a{sv})`: every local ref with its
//! commit, plus repository-wide metadata. Clients read it before pulling.

use crate::gvariant::{self, Type, Value};
use crate::object::{self, ObjectType};
use crate::{Error, Repo, Result};

/// One ref as listed in a summary.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRef {
    /// Ref name.
    pub name: String,
    /// Size of the commit object in bytes.
    pub commit_size: u64,
    /// Commit checksum.
    pub checksum: object::Checksum,
    /// Per-ref metadata (`ostree.commit.timestamp`, `ostree.commit.version`).
    pub metadata: Vec<(String, Value)>,
}

/// A parsed summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Refs sorted by name.
    pub refs: Vec<SummaryRef>,
    /// Additional metadata (`ostree.summary.*`).
    pub metadata: Vec<(String, Value)>,
}

/// GVariant type of the summary.
pub const TYPE: &str = "(a(s(taya{sv}))a{sv})";

fn be64(v: u64) -> Value {
    Value::U64(u64::from_le_bytes(v.to_be_bytes()))
}

impl Summary {
    /// Serializes in normal form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let entry_t = Type::parse("(s(taya{sv}))").expect("static type");
        Value::Struct(vec![
            Value::Array(
                entry_t,
                self.refs
                    .iter()
                    .map(|r| {
                        Value::Struct(vec![
                            Value::Str(r.name.clone()),
                            Value::Struct(vec![
                                // Host (little-endian) order, unlike the timestamps.
                                Value::U64(r.commit_size),
                                Value::Bytes(r.checksum.to_vec()),
                                gvariant::vardict(&r.metadata),
                            ]),
                        ])
                    })
                    .collect(),
            ),
            gvariant::vardict(&self.metadata),
        ])
        .to_bytes()
    }

    /// Parses summary bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Summary> {
        let t = Type::parse(TYPE).expect("static type");
        let v = gvariant::decode(&t, data).map_err(|e| Error::Corrupt(format!("summary: {e}")))?;
        let bad = || Error::Corrupt("summary: unexpected structure".into());
        let Value::Struct(m) = v else {
            return Err(bad());
        };
        let Value::Array(_, refs) = &m[0] else {
            return Err(bad());
        };
        let mut out = Summary {
            refs: Vec::new(),
            metadata: gvariant::vardict_entries(&m[1]).ok_or_else(bad)?,
        };
        for r in refs {
            let Value::Struct(e) = r else {
                return Err(bad());
            };
            let (Value::Str(name), Value::Struct(inner)) = (&e[0], &e[1]) else {
                return Err(bad());
            };
            let (Value::U64(size), Value::Bytes(c)) = (&inner[0], &inner[1]) else {
                return Err(bad());
            };
            out.refs.push(SummaryRef {
                name: name.clone(),
                commit_size: *size,
                checksum: c.as_slice().try_into().map_err(|_| bad())?,
                metadata: gvariant::vardict_entries(&inner[2]).ok_or_else(bad)?,
            });
        }
        Ok(out)
    }
}

/// Builds the summary of `repo`'s local refs; `extra` metadata (from
/// `summary --add-metadata`) comes after the standard keys.
pub fn build(repo: &Repo, extra: &[(String, Value)], now: u64) -> Result<Summary> {
    let mut refs = Vec::new();
    for (name, c) in repo.list_refs(None)? {
        if name.contains(':') {
            continue; // remote refs are not advertised
        }
        let bytes = repo.read_metadata(ObjectType::Commit, &c)?;
        let commit = object::Commit::from_bytes(&bytes)?;
        let mut metadata = vec![(
            "ostree.commit.timestamp".to_string(),
            be64(commit.timestamp),
        )];
        if let Some(Value::Str(v)) = commit.meta("version") {
            metadata.push(("ostree.commit.version".into(), Value::Str(v.clone())));
        }
        refs.push(SummaryRef {
            name,
            commit_size: bytes.len() as u64,
            checksum: c,
            metadata,
        });
    }
    refs.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let tombstones = repo
        .config()
        .get_bool("core", "tombstone-commits")?
        .unwrap_or(false);
    let mut metadata = vec![
        (
            "ostree.summary.mode".to_string(),
            Value::Str(repo.mode().as_config_str().into()),
        ),
        ("ostree.summary.last-modified".into(), be64(now)),
        (
            "ostree.summary.tombstone-commits".into(),
            Value::Bool(tombstones),
        ),
        ("ostree.summary.indexed-deltas".into(), Value::Bool(true)),
    ];
    if let Some(cid) = repo.config().get("core", "collection-id") {
        metadata.push((
            "ostree.summary.collection-id".into(),
            Value::Str(cid.into()),
        ));
    }
    for (k, v) in extra {
        metadata.retain(|(mk, _)| mk != k);
        metadata.push((k.clone(), v.clone()));
    }
    Ok(Summary { refs, metadata })
}

/// Regenerates `summary` (atomically), drops the now-stale `summary.sig`
/// and records `core.indexed-deltas=true` as upstream does.
pub fn regenerate(repo: &mut Repo, extra: &[(String, Value)]) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let s = build(repo, extra, now)?;
    if repo.config().get("core", "indexed-deltas").is_none() {
        let mut kf = repo.config().clone();
        kf.set("core", "indexed-deltas", "true");
        repo.write_config(kf)?;
    }
    crate::repo::write_file_atomic(
        &repo.path().join("summary"),
        &s.to_bytes(),
        repo.fsync_enabled(),
    )?;
    match std::fs::remove_file(repo.path().join("summary.sig")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("removing summary.sig", e))
        }
        _ => Ok(()),
    }
}
