//! The Cincinnati update graph (`GET /v1/graph` response body) and the node metadata
//! keys Fedora CoreOS uses (fedora-coreos-cincinnati `commons/src/metadata.rs`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `checksum` or `oci`: how to read a node's payload.
pub const SCHEME: &str = "org.fedoraproject.coreos.scheme";
/// Position of the release in the release index, as a decimal string.
pub const AGE_INDEX: &str = "org.fedoraproject.coreos.releases.age_index";
/// `"true"` on barriers.
pub const BARRIER: &str = "org.fedoraproject.coreos.updates.barrier";
/// Barrier reason (URL or `generic`).
pub const BARRIER_REASON: &str = "org.fedoraproject.coreos.updates.barrier_reason";
/// `"true"` on dead-ends.
pub const DEADEND: &str = "org.fedoraproject.coreos.updates.deadend";
/// Dead-end reason (URL or `generic`), shown by Zincati in the MOTD.
pub const DEADEND_REASON: &str = "org.fedoraproject.coreos.updates.deadend_reason";
/// `"true"` on rollouts.
pub const ROLLOUT: &str = "org.fedoraproject.coreos.updates.rollout";
/// Rollout ramp duration in minutes.
pub const DURATION: &str = "org.fedoraproject.coreos.updates.duration_minutes";
/// Rollout start, unix seconds.
pub const START_EPOCH: &str = "org.fedoraproject.coreos.updates.start_epoch";
/// Rollout start share (0.0–1.0, Rust `f64` display: `0`, `1`, `0.3`).
pub const START_VALUE: &str = "org.fedoraproject.coreos.updates.start_value";

/// Update graph: releases and the allowed update paths between them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// Releases.
    pub nodes: Vec<Node>,
    /// `(from, to)` indexes into `nodes`.
    pub edges: Vec<(u64, u64)>,
}

/// One release in the graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Release version.
    pub version: String,
    /// String metadata (keys above). Sorted, so responses are byte-stable.
    pub metadata: BTreeMap<String, String>,
    /// OSTree checksum or OCI digest-ref, per [`SCHEME`].
    pub payload: String,
}

impl Node {
    /// Whether metadata `key` is the string `"true"`.
    pub fn flag(&self, key: &str) -> bool {
        self.metadata.get(key).map(String::as_str) == Some("true")
    }
}

impl Graph {
    /// Drops edges leaving dead-end nodes (upstream applies this after every step).
    pub fn filter_deadends(&mut self) {
        let nodes = &self.nodes;
        self.edges
            .retain(|&(from, _)| !nodes.get(from as usize).is_some_and(|n| n.flag(DEADEND)));
    }

    /// Targets of the edges leaving node `from`.
    pub fn targets_of(&self, from: u64) -> impl Iterator<Item = u64> + '_ {
        self.edges.iter().filter(move |e| e.0 == from).map(|e| e.1)
    }

    /// Index of the node with `version`.
    pub fn index_of(&self, version: &str) -> Option<u64> {
        self.nodes
            .iter()
            .position(|n| n.version == version)
            .map(|p| p as u64)
    }
}
