//! The builder against a declarative statement of upstream's rules, on random
//! release indexes and updates metadata:
//!
//! * nodes = releases with a payload for the scope, in index order, `age_index` =
//!   index position;
//! * edges = exactly { (i, j) : node j is a rollout or barrier, i not a dead-end,
//!   b(j) ≤ i < j } where b(j) is the closest barrier before j (0 if none);
//! * a client with wariness w at time t loses exactly the edges into rollouts whose
//!   ramp (computed from the updates file, not from node metadata) is below w.

use proptest::prelude::*;
use release_meta::graph::{self, Graph};
use release_meta::index::{IndexCommit, IndexRelease};
use release_meta::updates::Rollout;
use release_meta::{ReleaseIndex, Updates};
use std::collections::BTreeSet;
use update_server::builder::build_graph;
use update_server::policy::apply_policy;

#[derive(Debug, Clone)]
struct Rel {
    payload: bool,
    barrier: bool,
    deadend: bool,
    rollout: Option<(Option<i64>, Option<f64>, Option<u64>)>,
}

fn rel() -> impl Strategy<Value = Rel> {
    let rollout = prop::option::weighted(
        0.3,
        (
            prop::option::of(0i64..10_000),
            prop::option::of(prop_oneof![Just(0.0), Just(1.0), 0.0f64..1.0]),
            prop::option::of(0u64..100),
        ),
    );
    (
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.1),
        rollout,
    )
        .prop_map(|(payload, barrier, deadend, rollout)| Rel {
            payload,
            barrier,
            deadend,
            rollout,
        })
}

fn inputs(rels: &[Rel]) -> (ReleaseIndex, Updates) {
    let mut idx = ReleaseIndex::new("s");
    let mut u = Updates::new("s");
    for (i, r) in rels.iter().enumerate() {
        let version = format!("v{i}");
        idx.releases.push(IndexRelease {
            commits: Some(vec![IndexCommit {
                architecture: if r.payload { "x86_64" } else { "aarch64" }.into(),
                checksum: format!("c{i}"),
            }]),
            oci_images: None,
            version: version.clone(),
            metadata: String::new(),
            extra: Default::default(),
        });
        if r.barrier {
            u.set_barrier(&version, "b");
        }
        if r.deadend {
            u.set_deadend(&version, "");
        }
        if let Some((e, p, d)) = r.rollout {
            u.entry_mut(&version).metadata.rollout = Some(Rollout {
                start_epoch: e,
                start_percentage: p,
                duration_minutes: d,
                ..Rollout::default()
            });
        }
    }
    (idx, u)
}

fn expected_edges(g: &Graph) -> BTreeSet<(u64, u64)> {
    let n = g.nodes.len() as u64;
    let flag = |i: u64, k: &str| g.nodes[i as usize].flag(k);
    let mut out = BTreeSet::new();
    for j in 0..n {
        if !(flag(j, graph::ROLLOUT) || flag(j, graph::BARRIER)) {
            continue;
        }
        let b = (0..j).rev().find(|&i| flag(i, graph::BARRIER)).unwrap_or(0);
        out.extend((b..j).filter(|&i| !flag(i, graph::DEADEND)).map(|i| (i, j)));
    }
    out
}

proptest! {
    #[test]
    fn builder_matches_declarative_rules(rels in prop::collection::vec(rel(), 0..40)) {
        let (idx, u) = inputs(&rels);
        let g = build_graph(&idx, &u, "x86_64", false);
        let kept: Vec<usize> = (0..rels.len()).filter(|&i| rels[i].payload).collect();
        prop_assert_eq!(g.nodes.len(), kept.len());
        for (node, &pos) in g.nodes.iter().zip(&kept) {
            prop_assert_eq!(&node.version, &format!("v{pos}"));
            prop_assert_eq!(&node.metadata[graph::AGE_INDEX], &pos.to_string());
            prop_assert_eq!(node.flag(graph::BARRIER), rels[pos].barrier);
            prop_assert_eq!(node.flag(graph::DEADEND), rels[pos].deadend);
            prop_assert_eq!(node.flag(graph::ROLLOUT), rels[pos].rollout.is_some());
        }
        let got: BTreeSet<(u64, u64)> = g.edges.iter().copied().collect();
        prop_assert_eq!(got.len(), g.edges.len(), "duplicate edges");
        prop_assert_eq!(got, expected_edges(&g));
    }

    #[test]
    fn policy_hides_exactly_the_unreached_rollouts(
        rels in prop::collection::vec(rel(), 1..30),
        w in prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0],
        t in -100i64..20_000,
    ) {
        let (idx, u) = inputs(&rels);
        let g = build_graph(&idx, &u, "x86_64", false);
        let client = apply_policy(&g, w, t, |_| false);
        let hidden: BTreeSet<u64> = g.nodes.iter().enumerate().filter_map(|(i, n)| {
            let r = u.get(&n.version)?.metadata.rollout.as_ref()?;
            // Upstream treats a zero duration as one minute.
            let r = Rollout { duration_minutes: r.duration_minutes.map(|d| d.max(1)), ..r.clone() };
            (w > r.threshold_at(t)).then_some(i as u64)
        }).collect();
        let want: Vec<(u64, u64)> = g.edges.iter().copied().filter(|e| !hidden.contains(&e.1)).collect();
        prop_assert_eq!(client.edges, want);
        prop_assert_eq!(client.nodes, g.nodes);
    }
}
