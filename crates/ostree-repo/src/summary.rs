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

impl SummaryRef {
    fn to_value(&self) -> Value {
        Value::Struct(vec![
            Value::Str(self.name.clone()),
            Value::Struct(vec![
                // Host (little-endian) order, unlike the timestamps.
                Value::U64(self.commit_size),
                Value::Bytes(self.checksum.to_vec()),
                gvariant::vardict(&self.metadata),
            ]),
        ])
    }
}

impl Summary {
    /// Serializes in normal form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let entry_t = Type::parse("(s(taya{sv}))").expect("static type");
        Value::Struct(vec![
            Value::Array(
                entry_t,
                self.refs.iter().map(SummaryRef::to_value).collect(),
            ),
            gvariant::vardict(&self.metadata),
        ])
        .to_bytes()
    }

    /// `ostree.summary.collection-id`: the collection of the main ref list.
    pub fn collection_id(&self) -> Option<String> {
        self.metadata.iter().find_map(|(k, v)| match v {
            Value::Str(c) if k == "ostree.summary.collection-id" => Some(c.clone()),
            _ => None,
        })
    }

    /// `ostree.summary.collection-map`: the ref lists of other collections.
    pub fn collection_map(&self) -> Vec<(String, Vec<SummaryRef>)> {
        let Some(Value::Array(_, entries)) = self
            .metadata
            .iter()
            .find(|(k, _)| k == "ostree.summary.collection-map")
            .map(|(_, v)| v)
        else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|e| match e {
                Value::DictEntry(k, v) => match (k.as_ref(), refs_from_value(v)) {
                    (Value::Str(c), Some(refs)) => Some((c.clone(), refs)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// Looks `name` up as upstream's pull does
    /// (`lookup_commit_checksum_and_collection_from_summary`): a ref of no
    /// particular collection, or of the summary's own, is in the main list;
    /// a ref of another collection in the collection map. Returns the entry
    /// and the collection it belongs to (`None` if the summary has none).
    pub fn lookup(
        &self,
        collection: Option<&str>,
        name: &str,
    ) -> Option<(SummaryRef, Option<String>)> {
        let main = self.collection_id();
        if collection.is_none() || collection == main.as_deref() {
            let r = self.refs.iter().find(|r| r.name == name)?;
            return Some((r.clone(), main));
        }
        let coll = collection?;
        let (_, refs) = self.collection_map().into_iter().find(|(c, _)| c == coll)?;
        let r = refs.into_iter().find(|r| r.name == name)?;
        Some((r, Some(coll.to_string())))
    }

    /// Parses summary bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Summary> {
        let t = Type::parse(TYPE).expect("static type");
        let v = gvariant::decode(&t, data).map_err(|e| Error::Corrupt(format!("summary: {e}")))?;
        let bad = || Error::Corrupt("summary: unexpected structure".into());
        let Value::Struct(m) = v else {
            return Err(bad());
        };
        Ok(Summary {
            refs: refs_from_value(&m[0]).ok_or_else(bad)?,
            metadata: gvariant::vardict_entries(&m[1]).ok_or_else(bad)?,
        })
    }
}

/// Decodes an `a(s(taya{sv}))` ref list (the summary's, or one collection's
/// in `ostree.summary.collection-map`).
pub fn refs_from_value(v: &Value) -> Option<Vec<SummaryRef>> {
    let Value::Array(_, refs) = v else {
        return None;
    };
    refs.iter()
        .map(|r| {
            let Value::Struct(e) = r else { return None };
            let (Value::Str(name), Value::Struct(inner)) = (e.first()?, e.get(1)?) else {
                return None;
            };
            let (Value::U64(size), Value::Bytes(c)) = (inner.first()?, inner.get(1)?) else {
                return None;
            };
            Some(SummaryRef {
                name: name.clone(),
                commit_size: *size,
                checksum: c.as_slice().try_into().ok()?,
                metadata: gvariant::vardict_entries(inner.get(2)?)?,
            })
        })
        .collect()
}

fn ref_entry(repo: &Repo, name: String, c: object::Checksum) -> Result<SummaryRef> {
    let bytes = repo.read_metadata(ObjectType::Commit, &c)?;
    let commit = object::Commit::from_bytes(&bytes)?;
    let mut metadata = vec![(
        "ostree.commit.timestamp".to_string(),
        be64(commit.timestamp),
    )];
    if let Some(Value::Str(v)) = commit.meta("version") {
        metadata.push(("ostree.commit.version".into(), Value::Str(v.clone())));
    }
    Ok(SummaryRef {
        name,
        commit_size: bytes.len() as u64,
        checksum: c,
        metadata,
    })
}

fn refs_value(refs: &[SummaryRef]) -> Value {
    Value::Array(
        Type::parse("(s(taya{sv}))").expect("static type"),
        refs.iter().map(SummaryRef::to_value).collect(),
    )
}

/// Builds the summary of `repo`'s refs: its local refs, plus the remote
/// refs of remotes with a `collection-id`; refs of collections other than
/// the repository's own go to `ostree.summary.collection-map`. `extra`
/// metadata (from `summary --add-metadata`) comes after the standard keys.
pub fn build(repo: &Repo, extra: &[(String, Value)], now: u64) -> Result<Summary> {
    let own = repo.collection_id().map(str::to_string);
    let mut refs = Vec::new();
    if own.is_none() {
        for (name, c) in repo.list_refs(None)? {
            if name.contains(':') {
                continue; // remote refs without a collection are not advertised
            }
            refs.push(ref_entry(repo, name, c)?);
        }
    }
    // Every ref that belongs to a collection is advertised under it, remote
    // refs of remotes with a `collection-id` included (as upstream): the
    // repository's own collection in the main list, others in the map.
    let mut map: std::collections::BTreeMap<String, Vec<SummaryRef>> = Default::default();
    for ((coll, name), c) in repo.list_collection_refs_with_remotes()? {
        if Some(&coll) == own.as_ref() {
            refs.push(ref_entry(repo, name, c)?);
        } else {
            map.entry(coll).or_default().push(ref_entry(repo, name, c)?);
        }
    }
    refs.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    for list in map.values_mut() {
        list.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    }
    build_with(repo, refs, map, extra, now)
}

fn build_with(
    repo: &Repo,
    refs: Vec<SummaryRef>,
    map: std::collections::BTreeMap<String, Vec<SummaryRef>>,
    extra: &[(String, Value)],
    now: u64,
) -> Result<Summary> {
    let tombstones = repo
        .config()
        .get_bool("core", "tombstone-commits")?
        .unwrap_or(false);
    // Upstream's key order: standard keys, the caller's, deltas,
    // collections.
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
    ];
    for (k, v) in extra {
        metadata.retain(|(mk, _)| mk != k);
        metadata.push((k.clone(), v.clone()));
    }
    let no_deltas = repo
        .config()
        .get_bool("core", "no-deltas-in-summary")?
        .unwrap_or(false);
    let deltas = crate::delta::digests(repo)?;
    if !deltas.is_empty() && !no_deltas {
        metadata.push((
            "ostree.static-deltas".into(),
            crate::delta::digests_value(&deltas),
        ));
    }
    if !map.is_empty() {
        let entry_t = Type::parse("{sa(s(taya{sv}))}").expect("static type");
        let entries = map
            .iter()
            .map(|(coll, refs)| {
                Value::DictEntry(
                    Box::new(Value::Str(coll.clone())),
                    Box::new(refs_value(refs)),
                )
            })
            .collect();
        metadata.push((
            "ostree.summary.collection-map".into(),
            Value::Array(entry_t, entries),
        ));
    }
    metadata.push(("ostree.summary.indexed-deltas".into(), Value::Bool(true)));
    if let Some(cid) = repo.collection_id() {
        metadata.push((
            "ostree.summary.collection-id".into(),
            Value::Str(cid.into()),
        ));
    }
    Ok(Summary { refs, metadata })
}

/// With a collection ID, `summary -u` also records the additional
/// metadata as a new commit on the `ostree-metadata` ref (an empty tree,
/// bound to the ref and collection, parented on the previous one), as
/// upstream does for peer-to-peer clients.
fn write_metadata_commit(
    repo: &Repo,
    cid: &str,
    extra: &[(String, Value)],
    now: u64,
) -> Result<()> {
    const REF: &str = "ostree-metadata";
    let parent = repo.read_ref(None, REF)?;
    let tx = repo.begin()?;
    let dirmeta = object::DirMeta {
        uid: 0,
        gid: 0,
        mode: object::mode::S_IFDIR | 0o755,
        xattrs: Vec::new(),
    };
    let root_meta = tx.write_metadata(ObjectType::DirMeta, &dirmeta.to_bytes())?;
    let root_tree =
        tx.write_metadata(ObjectType::DirTree, &object::DirTree::default().to_bytes())?;
    let mut metadata: Vec<(String, Value)> = extra.to_vec();
    metadata.retain(|(k, _)| k != "ostree.collection-binding" && k != "ostree.ref-binding");
    metadata.push(("ostree.collection-binding".into(), Value::Str(cid.into())));
    metadata.push((
        "ostree.ref-binding".into(),
        Value::Array(Type::Str, vec![Value::Str(REF.into())]),
    ));
    let commit = object::Commit {
        metadata,
        parent,
        related: Vec::new(),
        subject: String::new(),
        body: String::new(),
        timestamp: now,
        root_tree,
        root_meta,
    };
    let c = tx.write_metadata(ObjectType::Commit, &commit.to_bytes())?;
    tx.set_ref(None, REF, Some(c))?;
    tx.commit_without_auto_summary()
}

/// Regenerates `summary` (atomically), drops the now-stale `summary.sig`
/// and records `core.indexed-deltas=true` as upstream does.
pub fn regenerate(repo: &mut Repo, extra: &[(String, Value)]) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if let Some(cid) = repo.collection_id().map(str::to_string) {
        write_metadata_commit(repo, &cid, extra, now)?;
    }
    let s = build(repo, extra, now)?;
    crate::delta::reindex(repo)?;
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
