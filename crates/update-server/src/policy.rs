//! Per-request policy, as fcos-policy-engine applies it: a client's wariness decides
//! which rollouts it may see at a given time.

use release_meta::graph::{self, Graph};
use release_meta::rollout_threshold;
use sha2::{Digest, Sha256};

/// Lowest wariness the server assigns by itself, so that only clients that ask for
/// wariness 0 explicitly ("canaries") see a rollout before its ramp has started.
pub const MIN_COMPUTED_WARINESS: f64 = 0.000_001;

/// Why a `rollout_wariness` parameter was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rollout_wariness '{0}': expected a number between 0.0 and 1.0")]
pub struct InvalidWariness(pub String);

/// A client's wariness (0.0 = eager, 1.0 = most cautious).
///
/// An explicit `rollout_wariness` is clamped to [0, 1] as upstream; unlike upstream,
/// a value that is not a finite number is an error rather than silently ignored.
/// Without it, the wariness is derived from `node_uuid` (missing → empty string) by
/// [`uuid_wariness`].
pub fn wariness(
    rollout_wariness: Option<&str>,
    node_uuid: Option<&str>,
) -> Result<f64, InvalidWariness> {
    match rollout_wariness {
        Some(s) => match s.trim().parse::<f64>() {
            Ok(w) if w.is_finite() => Ok(w.clamp(0.0, 1.0)),
            _ => Err(InvalidWariness(s.to_owned())),
        },
        None => Ok(uuid_wariness(node_uuid.unwrap_or(""))),
    }
}

/// Stable wariness bucket of a node: the first 8 bytes of SHA-256(`node_uuid` as
/// UTF-8), read big-endian as a u64, divided by `u64::MAX`, clamped to
/// [[`MIN_COMPUTED_WARINESS`], 1.0].
///
/// Upstream hashes with Rust's `DefaultHasher`, whose algorithm std does not promise,
/// so a node could change bucket with a compiler upgrade and see a rollout early or
/// late. SHA-256 is fixed forever and uniform, and anyone can recompute a bucket with
/// `printf %s UUID | sha256sum`.
pub fn uuid_wariness(node_uuid: &str) -> f64 {
    let digest = Sha256::digest(node_uuid.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let scaled = u64::from_be_bytes(first) as f64 / u64::MAX as f64;
    scaled.clamp(MIN_COMPUTED_WARINESS, 1.0)
}

/// Ramp parameters of one rollout node, read from its metadata as upstream does
/// (an unparsable value counts as absent).
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutNode {
    /// Index in the graph's node list.
    pub node: usize,
    /// Release version.
    pub version: String,
    /// Ramp start (default 0).
    pub start_epoch: i64,
    /// Share at start (default 0.0).
    pub start_value: f64,
    /// Ramp length; `None` = never progresses.
    pub duration_minutes: Option<u64>,
}

impl RolloutNode {
    /// Share of the fleet allowed to see it at `now`.
    pub fn threshold_at(&self, now: i64) -> f64 {
        rollout_threshold(
            self.start_epoch,
            self.start_value,
            self.duration_minutes,
            now,
        )
    }

    /// Whether a client with `wariness` must not see it at `now`.
    pub fn hidden_for(&self, wariness: f64, now: i64) -> bool {
        wariness > self.threshold_at(now)
    }
}

/// The rollout nodes of `graph`, in node order.
pub fn rollout_nodes(graph: &Graph) -> Vec<RolloutNode> {
    graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.metadata.contains_key(graph::ROLLOUT))
        .map(|(i, n)| {
            let get = |k: &str| n.metadata.get(k).map(String::as_str);
            RolloutNode {
                node: i,
                version: n.version.clone(),
                start_epoch: get(graph::START_EPOCH)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                start_value: get(graph::START_VALUE)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0),
                duration_minutes: get(graph::DURATION)
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|m| m.max(1)),
            }
        })
        .collect()
}

/// The graph a client sees: edges into `hidden` nodes removed, then edges out of
/// dead-ends removed (as upstream, which filters dead-ends again after throttling).
pub fn client_graph(graph: &Graph, hidden: &[usize]) -> Graph {
    let mut g = graph.clone();
    g.edges.retain(|&(_, to)| !hidden.contains(&(to as usize)));
    g.filter_deadends();
    g
}

/// Convenience for one request: hides every rollout that `wariness` may not see at
/// `now`, plus those for which `paused(version)` is true.
pub fn apply_policy(
    graph: &Graph,
    wariness: f64,
    now: i64,
    paused: impl Fn(&str) -> bool,
) -> Graph {
    let hidden: Vec<usize> = rollout_nodes(graph)
        .into_iter()
        .filter(|r| paused(&r.version) || r.hidden_for(wariness, now))
        .map(|r| r.node)
        .collect();
    client_graph(graph, &hidden)
}
