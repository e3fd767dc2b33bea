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
use release_meta::sign::SigningKey;
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

/// The bytes of one stream's two inputs, with their origin (path or URL) for errors.
pub struct RawStream {
    /// Stream name.
    pub name: String,
    /// (origin, bytes) of the release index.
    pub index: (String, Vec<u8>),
    /// (origin, bytes) of the updates metadata.
    pub updates: (String, Vec<u8>),
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
        for p in [index_path(dir, &s), updates_path(dir, &s)] {
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
        std::fs::read(&p)
            .map(|b| (p.display().to_string(), b))
            .map_err(|e| Error::Input(format!("{}: {e}", p.display())))
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

async fn fetch(client: &reqwest::Client, url: &str) -> Result<(String, Vec<u8>), Error> {
    let fail = |e: &dyn std::fmt::Display| Error::Input(format!("GET {url}: {e}"));
    let resp = client.get(url).send().await.map_err(|e| fail(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(&status));
    }
    let body = resp.bytes().await.map_err(|e| fail(&e))?;
    Ok((url.to_owned(), body.to_vec()))
}

/// Downloads every stream's inputs from URL templates; the fingerprint hashes the
/// bodies, since remote mtimes are not reliable.
pub async fn fetch_urls(
    client: &reqwest::Client,
    releases: &str,
    updates: &str,
    streams: &[String],
) -> Result<(Fingerprint, Vec<RawStream>), Error> {
    use sha2::{Digest, Sha256};
    let mut raw = Vec::new();
    let mut fp = Vec::new();
    for name in streams {
        let index = fetch(client, &releases.replace("${stream}", name)).await?;
        let upd = fetch(client, &updates.replace("${stream}", name)).await?;
        for (origin, body) in [&index, &upd] {
            let digest: String = Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
            fp.push((origin.clone(), digest));
        }
        raw.push(RawStream {
            name: name.clone(),
            index,
            updates: upd,
        });
    }
    Ok((fp, raw))
}

/// Parses raw inputs and builds every graph.
pub fn build(fingerprint: Fingerprint, raw: Vec<RawStream>, now: i64) -> Result<Snapshot, Error> {
    let mut streams = BTreeMap::new();
    for r in raw {
        let index: ReleaseIndex = fsutil::parse_json(Path::new(&r.index.0), &r.index.1)?;
        let updates: Updates = fsutil::parse_json(Path::new(&r.updates.0), &r.updates.1)?;
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

/// Loads a directory's inputs and builds the snapshot (blocking).
pub fn load_dir(dir: &Path, now: i64) -> Result<Snapshot, Error> {
    let (fp, raw) = read_dir(dir)?;
    build(fp, raw, now)
}
