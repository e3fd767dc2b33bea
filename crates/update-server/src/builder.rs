//! Raw graph construction from a release index and updates metadata, following
//! fedora-coreos-cincinnati `commons/src/graph.rs` (`from_metadata`, `compute_edges`).
//!
//! Rules (each has a test in `tests/graph_rules.rs`):
//! 1. Releases are taken in index order; `age_index` is the position in the whole
//!    index, so it has gaps where a release lacks this architecture/scheme.
//! 2. A release becomes a node only if it has a payload for the scope: a non-empty
//!    OSTree checksum for the architecture (scheme `checksum`), or with `oci=true` a
//!    non-empty `digest-ref` (scheme `oci`).
//! 3. Node metadata copies the updates entry of the same version: dead-end →
//!    `deadend="true"` + reason (empty → `generic`); barrier → `barrier="true"` +
//!    reason; rollout → `rollout="true"` and the present ramp parameters.
//! 4. Edges (positions in the node list): every rollout R gets an edge from each node
//!    from the closest barrier before R (inclusive; first node if none) up to R−1;
//!    every barrier B that is not also a rollout gets an edge from each node from the
//!    previous barrier (inclusive; first node if none) up to B−1. So only releases
//!    named as rollout or barrier are targets, and no edge jumps over a barrier.
//! 5. Edges leaving dead-ends are removed.

use release_meta::graph::{self, Graph, Node};
use release_meta::{ReleaseIndex, Updates};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Builds the unfiltered graph of one (stream, basearch, scheme) scope.
pub fn build_graph(index: &ReleaseIndex, updates: &Updates, basearch: &str, oci: bool) -> Graph {
    let by_version: HashMap<&str, &release_meta::updates::UpdateMetadata> = updates
        .releases
        .iter()
        .map(|e| (e.version.as_str(), &e.metadata))
        .collect();
    let mut nodes = Vec::new();
    for (age_index, rel) in index.releases.iter().enumerate() {
        let payload = if oci {
            rel.oci_images
                .iter()
                .flatten()
                .rfind(|i| i.architecture == basearch && !i.digest_ref.is_empty())
                .map(|i| i.digest_ref.clone())
        } else {
            rel.commits
                .iter()
                .flatten()
                .rfind(|c| c.architecture == basearch && !c.checksum.is_empty())
                .map(|c| c.checksum.clone())
        };
        // The last matching entry wins, as upstream (it overwrites while iterating).
        let Some(payload) = payload else { continue };
        let mut metadata = BTreeMap::new();
        metadata.insert(graph::AGE_INDEX.to_owned(), age_index.to_string());
        let scheme = if oci { "oci" } else { "checksum" };
        metadata.insert(graph::SCHEME.to_owned(), scheme.to_owned());
        if let Some(meta) = by_version.get(rel.version.as_str()) {
            let reason = |r: &str| {
                if r.is_empty() {
                    "generic".to_owned()
                } else {
                    r.to_owned()
                }
            };
            if let Some(d) = &meta.deadend {
                metadata.insert(graph::DEADEND.to_owned(), "true".to_owned());
                metadata.insert(graph::DEADEND_REASON.to_owned(), reason(&d.reason));
            }
            if let Some(b) = &meta.barrier {
                metadata.insert(graph::BARRIER.to_owned(), "true".to_owned());
                metadata.insert(graph::BARRIER_REASON.to_owned(), reason(&b.reason));
            }
            if let Some(r) = &meta.rollout {
                metadata.insert(graph::ROLLOUT.to_owned(), "true".to_owned());
                if let Some(v) = r.start_epoch {
                    metadata.insert(graph::START_EPOCH.to_owned(), v.to_string());
                }
                if let Some(v) = r.start_percentage {
                    // Rust's f64 Display, as upstream: 0.0 → "0", 1.0 → "1", 0.3 → "0.3".
                    metadata.insert(graph::START_VALUE.to_owned(), v.to_string());
                }
                if let Some(v) = r.duration_minutes {
                    metadata.insert(graph::DURATION.to_owned(), v.to_string());
                }
            }
        }
        nodes.push(Node {
            version: rel.version.clone(),
            metadata,
            payload,
        });
    }
    let edges = compute_edges(&nodes);
    let mut g = Graph { nodes, edges };
    g.filter_deadends();
    g
}

/// Rule 4 of the module documentation.
fn compute_edges(nodes: &[Node]) -> Vec<(u64, u64)> {
    let mut rollouts = BTreeSet::new();
    let mut barriers = BTreeSet::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.metadata.contains_key(graph::ROLLOUT) {
            rollouts.insert(i as u64);
        }
        if n.metadata.contains_key(graph::BARRIER) {
            barriers.insert(i as u64);
        }
    }
    let mut edges = Vec::new();
    // Newest rollout first, as upstream, so edge order matches its output.
    for &r in rollouts.iter().rev() {
        let start = barriers.range(..r).next_back().copied().unwrap_or(0);
        edges.extend((start..r).map(|i| (i, r)));
    }
    let mut start = 0;
    for &b in &barriers {
        if !rollouts.contains(&b) {
            edges.extend((start..b).map(|i| (i, b)));
        }
        start = b;
    }
    edges
}
