//! Graph structure on the real stable, testing and next metadata, one test per rule
//! of `update_server::builder` (see its module documentation for the rule list).

mod common;

use common::{index, updates};
use release_meta::graph::{self, Graph, Node};
use release_meta::index::{IndexCommit, IndexRelease};
use release_meta::{fsutil, ReleaseIndex, Updates};
use std::collections::BTreeSet;
use update_server::builder::build_graph;

fn graph(stream: &str, arch: &str, oci: bool) -> Graph {
    build_graph(&index(stream), &updates(stream), arch, oci)
}

fn idx(g: &Graph, v: &str) -> u64 {
    g.index_of(v).unwrap_or_else(|| panic!("no node {v}"))
}

fn meta<'a>(g: &'a Graph, v: &str, key: &str) -> Option<&'a str> {
    g.nodes[idx(g, v) as usize]
        .metadata
        .get(key)
        .map(String::as_str)
}

fn sources(g: &Graph, to: u64) -> BTreeSet<u64> {
    g.edges.iter().filter(|e| e.1 == to).map(|e| e.0).collect()
}

fn is_target_kind(n: &Node) -> bool {
    n.flag(graph::BARRIER) || n.flag(graph::ROLLOUT)
}

/// Rule 1: age_index is the position in the whole index, with gaps for releases
/// that lack the scope's payload.
#[test]
fn rule1_age_index_is_index_position() {
    let idx_stable = index("stable");
    let g = graph("stable", "x86_64", false);
    for n in &g.nodes {
        let pos = idx_stable.position(&n.version).unwrap();
        assert_eq!(n.metadata[graph::AGE_INDEX], pos.to_string());
    }
    // aarch64 payloads start with the 2021 releases: age_index starts at 26.
    let a = graph("stable", "aarch64", false);
    assert_eq!(a.nodes[0].version, "34.20210611.3.0");
    assert_eq!(a.nodes[0].metadata[graph::AGE_INDEX], "26");
}

/// Rule 2: a node per release with a payload for the scope, and only those.
#[test]
fn rule2_nodes_need_a_payload_for_the_scope() {
    let g = graph("stable", "x86_64", false);
    // 26 real releases + 15 barriers from 2021 on + 2 rollouts.
    assert_eq!(g.nodes.len(), 43);
    assert_eq!(
        g.nodes[0].payload,
        "113aa27efe1bbcf6324af7423f64ef7deb0acbf21b928faec84bf66a60a5c933"
    );
    assert!(g
        .nodes
        .iter()
        .all(|n| n.metadata[graph::SCHEME] == "checksum"));
    assert_eq!(graph("stable", "aarch64", false).nodes.len(), 17);
    assert!(graph("stable", "s390x", false).nodes.is_empty());
    // OCI scope: only the real release that carries an oci-images entry, plus the
    // later ones; payload = digest-ref.
    let o = graph("stable", "x86_64", true);
    assert_eq!(o.nodes.len(), 18);
    assert_eq!(o.nodes[0].version, "31.20200108.3.0");
    assert_eq!(
        o.nodes[0].payload,
        "quay.io/fedora/fedora-coreos@sha256:460576931cf4ce59afe432ea266234f9d34fa77f8ca3087282084bc3a7324632"
    );
    assert!(o.nodes.iter().all(|n| n.metadata[graph::SCHEME] == "oci"));
    // An empty checksum is no payload.
    let mut i = ReleaseIndex::new("x");
    i.releases.push(IndexRelease {
        commits: Some(vec![IndexCommit {
            architecture: "x86_64".into(),
            checksum: String::new(),
        }]),
        oci_images: None,
        version: "1".into(),
        metadata: String::new(),
        extra: Default::default(),
    });
    assert!(build_graph(&i, &Updates::new("x"), "x86_64", false)
        .nodes
        .is_empty());
}

/// Rule 3: node metadata copied from the updates entry of the same version.
#[test]
fn rule3_metadata_from_updates() {
    let g = graph("stable", "x86_64", false);
    assert_eq!(meta(&g, "31.20200517.3.0", graph::BARRIER), Some("true"));
    assert_eq!(
        meta(&g, "31.20200517.3.0", graph::BARRIER_REASON),
        Some("https://github.com/coreos/fedora-coreos-tracker/issues/480#issuecomment-631724629")
    );
    assert_eq!(meta(&g, "31.20200505.3.0", graph::BARRIER), None);
    // Completed rollout: only start_percentage 1.0 → start_value "1".
    assert_eq!(meta(&g, "44.20260621.3.1", graph::ROLLOUT), Some("true"));
    assert_eq!(meta(&g, "44.20260621.3.1", graph::START_VALUE), Some("1"));
    assert_eq!(meta(&g, "44.20260621.3.1", graph::START_EPOCH), None);
    assert_eq!(meta(&g, "44.20260621.3.1", graph::DURATION), None);
    // In-progress rollout: all three parameters, Rust number formatting.
    assert_eq!(
        meta(&g, "44.20260707.3.1", graph::START_EPOCH),
        Some("1784728800")
    );
    assert_eq!(meta(&g, "44.20260707.3.1", graph::START_VALUE), Some("0"));
    assert_eq!(meta(&g, "44.20260707.3.1", graph::DURATION), Some("2880"));
    // Releases only in the index carry age_index and scheme only.
    assert_eq!(
        g.nodes[idx(&g, "33.20201214.3.1") as usize].metadata.len(),
        2
    );
    // Dead-ends (testing, next) with reasons.
    let t = graph("testing", "x86_64", false);
    assert_eq!(meta(&t, "30.20190716.1", graph::DEADEND), Some("true"));
    assert_eq!(
        meta(&t, "30.20190716.1", graph::DEADEND_REASON),
        Some("https://github.com/coreos/fedora-coreos-tracker/issues/215")
    );
    // Empty reasons are served as "generic".
    let mut u = updates("stable");
    u.set_deadend("33.20201214.3.1", "");
    u.set_barrier("44.20260707.3.1", "");
    let g = build_graph(&index("stable"), &u, "x86_64", false);
    assert_eq!(
        meta(&g, "33.20201214.3.1", graph::DEADEND_REASON),
        Some("generic")
    );
    assert_eq!(
        meta(&g, "44.20260707.3.1", graph::BARRIER_REASON),
        Some("generic")
    );
}

/// Rule 4: targets are rollouts and barriers only; each gets an edge from every node
/// since the previous barrier (inclusive); nothing jumps over a barrier.
#[test]
fn rule4_edges_on_real_stable() {
    let g = graph("stable", "x86_64", false);
    let barriers: Vec<u64> = (0..g.nodes.len() as u64)
        .filter(|&i| g.nodes[i as usize].flag(graph::BARRIER))
        .collect();
    assert_eq!(
        barriers,
        [11, 13, 23, 24, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40]
    );
    // Counted by hand: 11+2+10+1 (2020 barriers) + 2 + 14 (later barriers)
    // + 1 + 2 (the two rollouts, from barrier 43.20260413.3.2 at 40).
    assert_eq!(g.edges.len(), 43);
    let uniq: BTreeSet<_> = g.edges.iter().collect();
    assert_eq!(uniq.len(), g.edges.len(), "duplicate edges");
    for &(from, to) in &g.edges {
        assert!(from < to, "edge {from}->{to} goes backwards");
        assert!(
            is_target_kind(&g.nodes[to as usize]),
            "edge into plain node {to}"
        );
        assert!(
            !barriers.iter().any(|&b| from < b && b < to),
            "edge {from}->{to} crosses a barrier"
        );
    }
    let range = |a: u64, b: u64| (a..b).collect::<BTreeSet<u64>>();
    assert_eq!(sources(&g, 11), range(0, 11));
    assert_eq!(sources(&g, 24), range(23, 24));
    assert_eq!(sources(&g, 26), range(24, 26));
    let r1 = idx(&g, "44.20260621.3.1");
    let r2 = idx(&g, "44.20260707.3.1");
    assert_eq!((r1, r2), (41, 42));
    assert_eq!(sources(&g, r1), range(40, 41));
    assert_eq!(sources(&g, r2), range(40, 42));
    // Index-only release 33.20201214.3.1 (25) is a node nobody updates to yet.
    assert!(sources(&g, 25).is_empty());
    // Upstream emits rollout edges newest first, then barrier edges in order.
    assert_eq!(&g.edges[..3], &[(40, 42), (41, 42), (40, 41)]);
}

/// Rule 4 on testing and next: same shape, with their dead-ends.
#[test]
fn rule4_edges_on_real_testing_and_next() {
    for stream in ["testing", "next"] {
        let g = graph(stream, "x86_64", false);
        let n = g.nodes.len() as u64;
        let last_barrier = (0..n)
            .rev()
            .find(|&i| g.nodes[i as usize].flag(graph::BARRIER))
            .unwrap();
        let rollouts: Vec<u64> = (0..n)
            .filter(|&i| g.nodes[i as usize].flag(graph::ROLLOUT))
            .collect();
        assert_eq!(rollouts.len(), 2, "{stream}");
        for r in rollouts {
            let want: BTreeSet<u64> = (last_barrier..r).collect();
            assert_eq!(sources(&g, r), want, "{stream} rollout {r}");
        }
        for &(from, to) in &g.edges {
            assert!(is_target_kind(&g.nodes[to as usize]));
            assert!(!g.nodes[from as usize].flag(graph::DEADEND));
        }
    }
    let t = graph("testing", "x86_64", false);
    // 21 barriers/dead-ends/rollouts + stream release already among them.
    assert_eq!(t.nodes.len(), 23);
    // Barrier 30.20191014.1 would be reached from the dead-end only: no edge.
    assert!(sources(&t, idx(&t, "30.20191014.1")).is_empty());
    assert_eq!(sources(&t, idx(&t, "31.20200517.2.0")), BTreeSet::from([1]));
}

/// Rule 5: dead-ends keep no outgoing edge.
#[test]
fn rule5_deadends_have_no_outgoing_edges() {
    let next = graph("next", "x86_64", false);
    let d = idx(&next, "38.20230310.1.0");
    // Release order puts it after barrier 37.20230303.1.1, before 38.20230902.1.1.
    assert_eq!(next.nodes[d as usize - 1].version, "37.20230303.1.1");
    assert!(next.targets_of(d).next().is_none());
    assert!(sources(&next, d).is_empty());
    // Without the dead-end mark it would have an edge to the next barrier.
    let mut u = updates("next");
    u.entry_mut("38.20230310.1.0").metadata.deadend = None;
    let g = build_graph(&index("next"), &u, "x86_64", false);
    assert_eq!(g.targets_of(d).collect::<Vec<_>>(), [d + 1]);
    let t = graph("testing", "x86_64", false);
    assert!(t.targets_of(idx(&t, "30.20190716.1")).next().is_none());
}

/// The graph in Zincati's protocol documentation (a real FCOS response) is what
/// this builder produces from the matching inputs, byte-for-byte as JSON value.
#[test]
fn reproduces_upstream_response() {
    let expected: Graph = fsutil::read_json(&common::fixture(
        "cincinnati/graph-zincati-docs-response.json",
    ))
    .unwrap();
    let mut idx = ReleaseIndex::new("next");
    for n in &expected.nodes {
        idx.releases.push(IndexRelease {
            commits: Some(vec![IndexCommit {
                architecture: "x86_64".into(),
                checksum: n.payload.clone(),
            }]),
            oci_images: None,
            version: n.version.clone(),
            metadata: String::new(),
            extra: Default::default(),
        });
    }
    let mut u = Updates::new("next");
    u.start_rollout("32.20200601.1.1", 1_591_279_200, 0.0, 2880)
        .unwrap();
    let got = build_graph(&idx, &u, "x86_64", false);
    assert_eq!(
        serde_json::to_value(&got).unwrap(),
        serde_json::to_value(&expected).unwrap()
    );
}
