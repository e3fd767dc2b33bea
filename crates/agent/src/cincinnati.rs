//! Cincinnati client: the graph request with the node's identity, the choice of
//! the update target, and the explanation of why no (newer) target was offered.
//!
//! Request and choice follow Zincati (coreos/zincati:src/cincinnati): `GET
//! <base>/v1/graph` with `basearch`, `stream`, `os_version`, `os_checksum`, `group`,
//! `node_uuid`, `platform` and, when configured, `rollout_wariness` (six decimals).
//! The booted node is found by payload; a dead-end booted node offers no update;
//! deny-listed targets are removed *by payload* (tracker#1938); the highest target by
//! (age index, version, payload) wins, and it must be newer than the booted node
//! unless downgrades are allowed. Barriers need no client logic: the server only
//! draws edges up to the next barrier, so taking the highest target hops barrier to
//! barrier.

use std::collections::BTreeMap;
use std::time::Duration;

use release_meta::graph::{
    Node, AGE_INDEX, BARRIER, BARRIER_REASON, DEADEND, DEADEND_REASON, DURATION, ROLLOUT, SCHEME,
    START_EPOCH, START_VALUE,
};
use release_meta::Graph;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::os::OsRelease;
use crate::status::Hold;

/// A release offered by the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Version string.
    pub version: String,
    /// OSTree commit checksum (`checksum` scheme).
    pub payload: String,
    /// Position in the stream's release index: the primary ordering key.
    pub age_index: u64,
}

impl Release {
    fn key(&self) -> (u64, &str, &str) {
        (self.age_index, &self.version, &self.payload)
    }

    /// The release as the OS names it.
    pub fn os_release(&self) -> OsRelease {
        OsRelease {
            version: self.version.clone(),
            checksum: self.payload.clone(),
        }
    }

    fn from_node(n: &Node) -> Result<Release, String> {
        let scheme = n
            .metadata
            .get(SCHEME)
            .ok_or_else(|| format!("node {:?}: missing {SCHEME}", n.version))?;
        if scheme != "checksum" && scheme != "oci" {
            return Err(format!("node {:?}: unknown scheme {scheme:?}", n.version));
        }
        let age = n
            .metadata
            .get(AGE_INDEX)
            .ok_or_else(|| format!("node {:?}: missing {AGE_INDEX}", n.version))?;
        let age_index = age
            .parse()
            .map_err(|_| format!("node {:?}: {AGE_INDEX} {age:?} is not a number", n.version))?;
        if n.version.is_empty() || n.payload.is_empty() {
            return Err("node with empty version or payload".into());
        }
        Ok(Release {
            version: n.version.clone(),
            payload: n.payload.clone(),
            age_index,
        })
    }
}

/// The node's identity, as sent to Cincinnati.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// CPU architecture (`x86_64`, `aarch64`, ...).
    pub basearch: String,
    /// Update stream of the booted deployment.
    pub stream: String,
    /// `ignition.platform.id` from the kernel command line, if any.
    pub platform: Option<String>,
    /// Update group.
    pub group: String,
    /// 32 lowercase hex digits.
    pub node_uuid: String,
    /// Configured wariness; `None` lets the server derive one from `node_uuid`.
    pub rollout_wariness: Option<f64>,
    /// The booted release.
    pub booted: OsRelease,
}

impl Identity {
    /// Graph request query parameters, in Zincati's order.
    pub fn graph_query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("basearch", self.basearch.clone()),
            ("stream", self.stream.clone()),
            ("os_version", self.booted.version.clone()),
            ("os_checksum", self.booted.checksum.clone()),
            ("group", self.group.clone()),
            ("node_uuid", self.node_uuid.clone()),
        ];
        if let Some(p) = &self.platform {
            q.push(("platform", p.clone()));
        }
        if let Some(w) = self.rollout_wariness {
            q.push(("rollout_wariness", format!("{w:.6}")));
        }
        q
    }

    /// Substitutes `${basearch}`, `${group}`, `${platform}` and `${stream}` in a
    /// configured URL (Zincati's `url_variables`; the node id is deliberately absent).
    pub fn expand(&self, template: &str) -> Result<String, String> {
        let mut s = template
            .replace("${basearch}", &self.basearch)
            .replace("${group}", &self.group)
            .replace("${stream}", &self.stream);
        if s.contains("${platform}") {
            let p = self
                .platform
                .as_deref()
                .ok_or_else(|| format!("{template:?} uses ${{platform}}, which is unknown"))?;
            s = s.replace("${platform}", p);
        }
        if let Some(i) = s.find("${") {
            return Err(format!("{template:?}: unknown variable at {:?}", &s[i..]));
        }
        Ok(s)
    }
}

/// A failed Cincinnati exchange.
#[derive(Debug, thiserror::Error)]
pub enum CincinnatiError {
    /// Bad base URL.
    #[error("client setup: {0}")]
    Build(String),
    /// No response (connection refused, timeout, ...).
    #[error("request to {url} failed: {detail}")]
    Request {
        /// Requested URL.
        url: String,
        /// Cause.
        detail: String,
    },
    /// Non-2xx response.
    #[error("server-side error, code {status}: {value}")]
    Server {
        /// HTTP status.
        status: u16,
        /// `kind` of a `{"kind","value"}` body.
        kind: Option<String>,
        /// `value` of the body, or the raw body.
        value: String,
    },
    /// The body is not a graph.
    #[error("invalid graph from {url}: {detail}")]
    Decode {
        /// Requested URL.
        url: String,
        /// Cause.
        detail: String,
    },
}

#[derive(Deserialize)]
struct ErrorBody {
    kind: String,
    value: String,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// An update service: graph queries and outcome reports.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
}

impl Client {
    /// A client for the service at `base_url` (variables already expanded). A
    /// missing trailing slash is added, so a path prefix is kept when joining
    /// `v1/graph`. Requests time out after `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Client, CincinnatiError> {
        let with_slash = if base_url.ends_with('/') {
            base_url.to_string()
        } else {
            format!("{base_url}/")
        };
        let base = Url::parse(&with_slash)
            .map_err(|e| CincinnatiError::Build(format!("base URL {base_url:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| CincinnatiError::Build(chain(&e)))?;
        Ok(Client { http, base })
    }

    fn url(&self, path: &str) -> Result<Url, CincinnatiError> {
        self.base
            .join(path)
            .map_err(|e| CincinnatiError::Build(format!("joining {path:?}: {e}")))
    }

    async fn send(
        &self,
        url: &Url,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CincinnatiError> {
        let resp = rb.send().await.map_err(|e| CincinnatiError::Request {
            url: url.to_string(),
            detail: chain(&e),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => CincinnatiError::Server {
                status: status.as_u16(),
                kind: Some(b.kind),
                value: b.value,
            },
            Err(_) => CincinnatiError::Server {
                status: status.as_u16(),
                kind: None,
                value: if text.trim().is_empty() {
                    "(unknown/generic server error)".into()
                } else {
                    text.trim().to_string()
                },
            },
        })
    }

    /// Fetches the update graph for `id`.
    pub async fn fetch_graph(&self, id: &Identity) -> Result<Graph, CincinnatiError> {
        let mut url = self.url("v1/graph")?;
        url.query_pairs_mut().extend_pairs(id.graph_query());
        let rb = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        let body =
            self.send(&url, rb)
                .await?
                .bytes()
                .await
                .map_err(|e| CincinnatiError::Request {
                    url: url.to_string(),
                    detail: chain(&e),
                })?;
        serde_json::from_slice(&body).map_err(|e| CincinnatiError::Decode {
            url: url.to_string(),
            detail: e.to_string(),
        })
    }

    /// Posts an outcome report to `<base>/v1/report`.
    pub async fn report(&self, report: &OutcomeReport) -> Result<(), CincinnatiError> {
        let url = self.url("v1/report")?;
        let rb = self.http.post(url.clone()).json(report);
        self.send(&url, rb).await.map(drop)
    }
}

pub use release_meta::report::{Outcome, OutcomeReport};

/// Result of looking for an update in a graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// The booted release's node, if found.
    pub booted: Option<Release>,
    /// The release to update to.
    pub target: Option<Release>,
    /// Why there is no target, or why it is not the newest release.
    pub holds: Vec<Hold>,
}

/// Picks the update target for a node booted into `booted`.
///
/// `denied` maps payloads that must not be targets to the reason; `wariness` is the
/// configured wariness (only used to explain holds); `now` (unix seconds) places
/// rollouts on their ramp for the same purpose.
pub fn find_update(
    graph: &Graph,
    booted: &OsRelease,
    denied: &BTreeMap<String, String>,
    allow_downgrade: bool,
    wariness: Option<f64>,
    now: i64,
) -> Result<Selection, String> {
    let mut sel = Selection {
        booted: None,
        target: None,
        holds: Vec::new(),
    };
    // Only `checksum` nodes can match: the OS reports commit checksums.
    let Some(bi) = graph.nodes.iter().position(|n| {
        n.payload == booted.checksum
            && n.metadata.get(SCHEME).map(String::as_str) == Some("checksum")
    }) else {
        sel.holds.push(Hold::NotInGraph {
            version: booted.version.clone(),
            checksum: booted.checksum.clone(),
        });
        return Ok(sel);
    };
    let bnode = &graph.nodes[bi];
    let brel = Release::from_node(bnode)?;
    sel.booted = Some(brel.clone());
    if bnode.flag(DEADEND) {
        let reason = bnode
            .metadata
            .get(DEADEND_REASON)
            .filter(|r| !r.is_empty())
            .cloned()
            .unwrap_or_else(|| "(unknown reason)".into());
        sel.holds.push(Hold::DeadEnd { reason });
        return Ok(sel);
    }
    let mut candidates = Vec::new();
    for &(from, to) in &graph.edges {
        if from != bi as u64 {
            continue;
        }
        let node = graph.nodes.get(to as usize).ok_or_else(|| {
            format!(
                "edge ({from}, {to}) points past the {} nodes",
                graph.nodes.len()
            )
        })?;
        let r = Release::from_node(node)?;
        if let Some(why) = denied.get(&r.payload) {
            sel.holds.push(Hold::Denied {
                version: r.version.clone(),
                reason: why.clone(),
            });
            continue;
        }
        candidates.push((r, node));
    }
    let best = candidates
        .into_iter()
        .max_by(|a, b| a.0.key().cmp(&b.0.key()));
    if let Some((r, _)) = &best {
        if r.key() <= brel.key() && !allow_downgrade {
            sel.holds.push(Hold::Downgrade {
                version: r.version.clone(),
            });
        } else {
            sel.target = Some(r.clone());
        }
    }
    // Explain why the newest release of the stream is not the target.
    let floor = sel.target.as_ref().unwrap_or(&brel).clone();
    let newest = graph
        .nodes
        .iter()
        .filter_map(|n| Release::from_node(n).ok().map(|r| (r, n)))
        .filter(|(r, n)| {
            r.key() > floor.key() && n.metadata.get(SCHEME).map(String::as_str) == Some("checksum")
        })
        .max_by(|a, b| a.0.key().cmp(&b.0.key()));
    if let Some((newest, node)) = newest {
        if let Some(why) = denied.get(&newest.payload) {
            // An edge target was explained above; a release no longer offered
            // (e.g. its rollout paused) is still the reason nothing newer comes.
            let explained = sel
                .holds
                .iter()
                .any(|h| matches!(h, Hold::Denied { version, .. } if *version == newest.version));
            if !explained {
                sel.holds.push(Hold::Denied {
                    version: newest.version.clone(),
                    reason: why.clone(),
                });
            }
        } else if let Some((t, tnode)) = best.as_ref().filter(|(_, n)| n.flag(BARRIER)) {
            sel.holds.push(Hold::Barrier {
                barrier: t.version.clone(),
                reason: tnode
                    .metadata
                    .get(BARRIER_REASON)
                    .cloned()
                    .unwrap_or_default(),
                newest: newest.version.clone(),
            });
        } else if node.flag(ROLLOUT) {
            let share = rollout_share(node, now);
            if share < 1.0 && wariness.is_none_or(|w| w > share) {
                sel.holds.push(Hold::Wariness {
                    version: newest.version.clone(),
                    rollout_share: share,
                    wariness,
                });
            } else {
                sel.holds.push(Hold::NotOffered {
                    version: newest.version.clone(),
                });
            }
        } else {
            sel.holds.push(Hold::NotOffered {
                version: newest.version.clone(),
            });
        }
    }
    Ok(sel)
}

/// Share of the fleet a rollout node has reached at `now` (upstream's ramp).
fn rollout_share(node: &Node, now: i64) -> f64 {
    let get = |k: &str| node.metadata.get(k);
    let start = get(START_EPOCH).and_then(|s| s.parse().ok()).unwrap_or(0);
    let value = get(START_VALUE).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let duration = get(DURATION).and_then(|s| s.parse().ok());
    release_meta::rollout_threshold(start, value, duration, now)
}
