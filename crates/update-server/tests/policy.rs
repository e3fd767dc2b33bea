//! Rollout throttling with fixed clocks on the real stable rollout, and wariness.

mod common;

use common::{index, updates, STABLE_MINUTES, STABLE_START};
use release_meta::graph::Graph;
use update_server::builder::build_graph;
use update_server::policy::{
    apply_policy, rollout_nodes, uuid_wariness, wariness, MIN_COMPUTED_WARINESS,
};

fn stable() -> Graph {
    build_graph(&index("stable"), &updates("stable"), "x86_64", false)
}

/// Whether a client with `w` at `now` has an edge into `version`.
fn sees(g: &Graph, w: f64, now: i64, version: &str) -> bool {
    let client = apply_policy(g, w, now, |_| false);
    let to = client.index_of(version).unwrap();
    client.edges.iter().any(|e| e.1 == to)
}

const RAMPING: &str = "44.20260707.3.1";
const DONE: &str = "44.20260621.3.1";

#[test]
fn threshold_at_start_middle_end() {
    let g = stable();
    let r = rollout_nodes(&g)
        .into_iter()
        .find(|r| r.version == RAMPING)
        .unwrap();
    let mid = STABLE_START + STABLE_MINUTES * 60 / 2;
    let end = STABLE_START + STABLE_MINUTES * 60;
    assert_eq!(r.threshold_at(STABLE_START - 3600), 0.0);
    assert_eq!(r.threshold_at(STABLE_START), 0.0);
    assert_eq!(r.threshold_at(mid), 0.5);
    assert_eq!(r.threshold_at(end), 1.0);
    // A quarter in: 0.25.
    assert_eq!(r.threshold_at(STABLE_START + STABLE_MINUTES * 15), 0.25);

    // Before/at start only explicit canaries (wariness 0) see it.
    for t in [STABLE_START - 3600, STABLE_START] {
        assert!(sees(&g, 0.0, t, RAMPING));
        assert!(!sees(&g, MIN_COMPUTED_WARINESS, t, RAMPING));
    }
    // Middle: up to 0.5 sees it, above does not.
    assert!(sees(&g, 0.5, mid, RAMPING));
    assert!(!sees(&g, 0.500_001, mid, RAMPING));
    // End: everyone.
    assert!(sees(&g, 1.0, end, RAMPING));
    assert!(!sees(&g, 1.0, end - 60, RAMPING));
    // The completed rollout (start_percentage 1.0) is visible to all, at any time.
    for t in [0, STABLE_START, end] {
        assert!(sees(&g, 1.0, t, DONE));
    }
}

#[test]
fn hidden_rollout_keeps_its_node_and_other_edges() {
    let g = stable();
    let client = apply_policy(&g, 1.0, STABLE_START, |_| false);
    assert_eq!(client.nodes, g.nodes);
    // Only the two edges into the ramping release disappear.
    assert_eq!(client.edges.len(), g.edges.len() - 2);
    // A paused release is hidden even from canaries.
    let paused = apply_policy(&g, 0.0, STABLE_START, |v| v == RAMPING);
    assert_eq!(paused.edges.len(), g.edges.len() - 2);
}

#[test]
fn explicit_wariness() {
    assert_eq!(wariness(Some("0.500000"), Some("ignored")), Ok(0.5));
    assert_eq!(wariness(Some("0"), None), Ok(0.0));
    assert_eq!(wariness(Some("-3"), None), Ok(0.0));
    assert_eq!(wariness(Some("7"), None), Ok(1.0));
    for bad in ["abc", "", "NaN", "inf", "0.5x"] {
        assert!(wariness(Some(bad), None).is_err(), "{bad}");
    }
}

/// Expected values computed outside Rust from the definition in `uuid_wariness`:
/// `printf %s UUID | sha256sum`, first 16 hex digits as an integer, / (2^64 − 1).
#[test]
fn node_uuid_wariness_is_stable() {
    let cases = [
        // (uuid, first 8 digest bytes, value, bucket = floor(10 * value))
        (
            "de35106b6ec24688b63afddaa156679b",
            "9d91e96eca46d771",
            0.615_507_688_091_635_6,
            6,
        ),
        (
            "c988d2509fdf5cdc8bd1b76fd0a5dd3b",
            "9147568bccc85ed2",
            0.567_494_782_572_596_4,
            5,
        ),
        (
            "00000000000000000000000000000000",
            "84e0c0eafaa95a34",
            0.519_054_467_552_142_8,
            5,
        ),
        (
            "ffffffffffffffffffffffffffffffff",
            "352302489bc2fcf0",
            0.207_565_443_731_947_8,
            2,
        ),
        // Missing node_uuid hashes the empty string, as upstream.
        ("", "e3b0c44298fc1c14", 0.889_415_994_891_337_4, 8),
    ];
    for (uuid, prefix, value, bucket) in cases {
        let w = uuid_wariness(uuid);
        let from_prefix = u64::from_str_radix(prefix, 16).unwrap() as f64 / u64::MAX as f64;
        assert!((w - value).abs() < 1e-15, "{uuid}: {w}");
        assert_eq!(w, from_prefix, "{uuid}");
        assert_eq!((w * 10.0).floor() as u32, bucket, "{uuid}");
        assert_eq!(wariness(None, Some(uuid)), Ok(w));
    }
    assert_eq!(wariness(None, None), Ok(uuid_wariness("")));
}
