//! Inputs (release indexes and updates metadata) and the immutable snapshot built
//! from them.
//!
//! Inputs come either from a data directory that mirrors the Fedora CoreOS bucket
//! layout, so a bucket sync can feed the server directly:
//!
//! ```text
//! <data-dir>/prod/streams/<stream>/releases.json   release index
//! <data-dir>/updates/<stream>.json                  updates metadata
//! ```
//!
//! (a stream is served when both files exist), or from URL templates with
//! `${stream}`, as upstream's graph builder scrapes
//! `https://builds.coreos.fedoraproject.org/prod/streams/${stream}/releases.json` and
//! `https://builds.coreos.fedoraproject.org/updates/${stream}.json` for a fixed list
//! of streams. Graphs of every (basearch, scheme) scope are built once per load;
//! requests only filter them.

use crate::policy::{rollout_nodes, RolloutNode};
use crate::Error;
use axum::body::Bytes;
use release_meta::sign::{signature_path, SigningKey, VerifyingKey};
use release_meta::{fsutil, Graph, ReleaseIndex, Updates};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

/// Architectures always served (possibly with an empty graph), like upstream's
/// hard-coded list; any other architecture present in an index is served too.
pub const KNOWN_ARCHES: [&str; 4] = ["x86_64", "aarch64", "ppc64le", "s390x"];

/// Where the metadata comes from.
#[derive(Clone, Debug)]
pub enum Inputs {
    /// A data directory in bucket layout.
    Dir(PathBuf),
    /// URL templates in which `${stream}` is replaced by each stream name.
    Urls {
        /// Release index URL template.
        releases: String,
        /// Updates metadata URL template.
        updates: String,
        /// Streams to serve.
        streams: Vec<String>,
    },
}

impl std::fmt::Display for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inputs::Dir(d) => write!(f, "{}", d.display()),
            Inputs::Urls {
                releases, updates, ..
            } => write!(f, "{releases} + {updates}"),
        }
    }
}

/// Identity of the inputs, used to notice changes: per file its path with length
/// and mtime; per URL its address with the SHA-256 of the body.
pub type Fingerprint = Vec<(String, String)>;

/// One input file as read or downloaded.
pub struct RawFile {
    /// Path or URL, for error messages.
    pub origin: String,
    /// Contents.
    pub bytes: Vec<u8>,
    /// Detached signature (`<origin>.sig`), when present.
    pub signature: Option<String>,
}

/// The two inputs of one stream.
pub struct RawStream {
    /// Stream name.
    pub name: String,
    /// Release index.
    pub index: RawFile,
    /// Updates metadata.
    pub updates: RawFile,
}

/// A response body and, when the server signs, its base64 signature.
pub type Rendered = (Bytes, Option<String>);

/// The graph of one scope, with its rollout ramps and a cache of rendered responses.
pub struct ScopeGraph {
    /// The raw (unthrottled) graph.
    pub graph: Graph,
    /// Its rollout nodes.
    pub rollouts: Vec<RolloutNode>,
    /// Rendered bodies by set of hidden rollouts (bit k = `rollouts[k]` hidden).
    /// Clients differ only in which rollouts they see, so a handful of bodies serve
    /// every request.
    rendered: RwLock<HashMap<u64, Rendered>>,
}

impl ScopeGraph {
    fn new(graph: Graph) -> ScopeGraph {
        ScopeGraph {
            rollouts: rollout_nodes(&graph),
            graph,
            rendered: RwLock::new(HashMap::new()),
        }
    }

    /// The pretty JSON body for a client that must not see the rollouts selected by
    /// `hidden` (bit k = `self.rollouts[k]`), rendering (and signing with `key`) it
    /// on first use.
    pub fn body(&self, hidden: u64, key: Option<&SigningKey>) -> Rendered {
        let cacheable = self.rollouts.len() <= 64;
        if cacheable {
            if let Some(b) = self
                .rendered
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&hidden)
            {
                return b.clone();
            }
        }
        let nodes: Vec<usize> = self
            .rollouts
            .iter()
            .enumerate()
            .filter(|(k, _)| *k < 64 && hidden & (1 << k) != 0)
            .map(|(_, r)| r.node)
            .collect();
        let g = crate::policy::client_graph(&self.graph, &nodes);
        // Upstream serves `serde_json::to_string_pretty`, without trailing newline.
        let body = Bytes::from(serde_json::to_vec_pretty(&g).unwrap_or_default());
        let signature = key.map(|k| k.sign(&body));
        let rendered = (body, signature);
        if cacheable {
            let mut cache = self.rendered.write().unwrap_or_else(|e| e.into_inner());
            // Visible sets follow wariness thresholds, so only a few exist at a time;
            // the bound only matters over long runs with many rollouts and pauses.
            if cache.len() >= 256 {
                cache.clear();
            }
            cache.insert(hidden, rendered.clone());
        }
        rendered
    }
}

/// One stream's inputs and graphs.
pub struct StreamData {
    /// Release index.
    pub index: ReleaseIndex,
    /// Updates metadata.
    pub updates: Updates,
    /// Graphs by (basearch, oci).
    pub graphs: BTreeMap<(String, bool), ScopeGraph>,
}

/// Everything loaded from the data directory at one instant.
pub struct Snapshot {
    /// Streams by name.
    pub streams: BTreeMap<String, StreamData>,
    /// Unix time of the load.
    pub loaded_at: i64,
    /// Input files it was built from.
    pub fingerprint: Fingerprint,
}

fn index_path(dir: &Path, stream: &str) -> PathBuf {
    dir.join("prod/streams").join(stream).join("releases.json")
}

fn updates_path(dir: &Path, stream: &str) -> PathBuf {
    dir.join("updates").join(format!("{stream}.json"))
}

/// Names of the streams with both input files, sorted.
fn stream_names(dir: &Path) -> Result<Vec<String>, Error> {
    let updates_dir = dir.join("updates");
    let rd = std::fs::read_dir(&updates_dir)
        .map_err(|e| Error::Input(format!("{}: {e}", updates_dir.display())))?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_owned)
        })
        .filter(|s| !s.is_empty() && !s.starts_with('.') && index_path(dir, s).is_file())
        .collect();
    names.sort();
    Ok(names)
}

/// Current fingerprint of the inputs under `dir` (cheap: metadata only).
pub fn dir_fingerprint(dir: &Path) -> Result<Fingerprint, Error> {
    let mut fp = Vec::new();
    for s in stream_names(dir)? {
        let (i, u) = (index_path(dir, &s), updates_path(dir, &s));
        for p in [signature_path(&i), signature_path(&u), i, u] {
            let md = std::fs::metadata(&p).ok();
            let mtime = md
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let len = md.map_or(0, |m| m.len());
            fp.push((p.display().to_string(), format!("{len}:{mtime}")));
        }
    }
    Ok(fp)
}

/// Reads every stream under `dir`. The fingerprint is taken first: if a file changes
/// while it is read, the next poll sees a different fingerprint and loads again.
pub fn read_dir(dir: &Path) -> Result<(Fingerprint, Vec<RawStream>), Error> {
    let fingerprint = dir_fingerprint(dir)?;
    let read = |p: PathBuf| {
        let bytes = std::fs::read(&p).map_err(|e| Error::Input(format!("{}: {e}", p.display())))?;
        // A missing signature only matters when signatures are required (`build`).
        let signature = std::fs::read_to_string(signature_path(&p)).ok();
        Ok::<_, Error>(RawFile {
            origin: p.display().to_string(),
            bytes,
            signature,
        })
    };
    let mut raw = Vec::new();
    for name in stream_names(dir)? {
        raw.push(RawStream {
            index: read(index_path(dir, &name))?,
            updates: read(updates_path(dir, &name))?,
            name,
        });
    }
    Ok((fingerprint, raw))
}

async fn get(client: &reqwest::Client, url: &str) -> Result<Option<Vec<u8>>, Error> {
    let fail = |e: &dyn std::fmt::Display| Error::Input(format!("GET {url}: {e}"));
    let resp = client.get(url).send().await.map_err(|e| fail(&e))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(fail(&status));
    }
    let body = resp.bytes().await.map_err(|e| fail(&e))?;
    Ok(Some(body.to_vec()))
}

async fn fetch(client: &reqwest::Client, url: &str, signed: bool) -> Result<RawFile, Error> {
    let bytes = get(client, url)
        .await?
        .ok_or_else(|| Error::Input(format!("GET {url}: 404 Not Found")))?;
    let signature = if signed {
        get(client, &format!("{url}.sig"))
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    } else {
        None
    };
    Ok(RawFile {
        origin: url.to_owned(),
        bytes,
        signature,
    })
}

/// Downloads every stream's inputs from URL templates (and `<url>.sig` when
/// `signed`); the fingerprint hashes the bodies, since remote mtimes are not reliable.
pub async fn fetch_urls(
    client: &reqwest::Client,
    releases: &str,
    updates: &str,
    streams: &[String],
    signed: bool,
) -> Result<(Fingerprint, Vec<RawStream>), Error> {
    use sha2::{Digest, Sha256};
    let mut raw = Vec::new();
    let mut fp = Vec::new();
    for name in streams {
        let index = fetch(client, &releases.replace("${stream}", name), signed).await?;
        let upd = fetch(client, &updates.replace("${stream}", name), signed).await?;
        for f in [&index, &upd] {
            let mut h = Sha256::new();
            h.update(&f.bytes);
            h.update(f.signature.as_deref().unwrap_or("").as_bytes());
            let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            fp.push((f.origin.clone(), digest));
        }
        raw.push(RawStream {
            name: name.clone(),
            index,
            updates: upd,
        });
    }
    Ok((fp, raw))
}

/// Checks `f` against its detached signature.
fn verify(f: &RawFile, key: &VerifyingKey) -> Result<(), Error> {
    let sig = f
        .signature
        .as_deref()
        .ok_or_else(|| Error::Input(format!("{}: no signature ({}.sig)", f.origin, f.origin)))?;
    key.verify(&f.bytes, sig)
        .map_err(|e| Error::Input(format!("{}: {e}", f.origin)))
}

/// Parses raw inputs and builds every graph. With `verify_key`, every input must
/// carry a valid detached signature, so a tampered mirror or bucket is refused.
pub fn build(
    fingerprint: Fingerprint,
    raw: Vec<RawStream>,
    now: i64,
    verify_key: Option<&VerifyingKey>,
) -> Result<Snapshot, Error> {
    let mut streams = BTreeMap::new();
    for r in raw {
        if let Some(key) = verify_key {
            verify(&r.index, key)?;
            verify(&r.updates, key)?;
        }
        let index: ReleaseIndex = fsutil::parse_json(Path::new(&r.index.origin), &r.index.bytes)?;
        let updates: Updates = fsutil::parse_json(Path::new(&r.updates.origin), &r.updates.bytes)?;
        let name = r.name;
        let mut arches: Vec<String> = KNOWN_ARCHES.iter().map(|a| a.to_string()).collect();
        for r in &index.releases {
            let found = r.commits.iter().flatten().map(|c| &c.architecture);
            let found = found.chain(r.oci_images.iter().flatten().map(|i| &i.architecture));
            for a in found {
                if !arches.contains(a) {
                    arches.push(a.clone());
                }
            }
        }
        let mut graphs = BTreeMap::new();
        for arch in arches {
            for oci in [false, true] {
                let g = crate::builder::build_graph(&index, &updates, &arch, oci);
                graphs.insert((arch.clone(), oci), ScopeGraph::new(g));
            }
        }
        streams.insert(
            name,
            StreamData {
                index,
                updates,
                graphs,
            },
        );
    }
    Ok(Snapshot {
        streams,
        loaded_at: now,
        fingerprint,
    })
}
