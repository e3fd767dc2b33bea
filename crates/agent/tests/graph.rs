//! Target selection on the real fixture graphs, and on graphs that the real update
//! server builds from the real stable release index and updates metadata.

mod common;

use std::collections::BTreeMap;

use agent::cincinnati::{find_update, Identity};
use agent::status::Hold;
use agent::OsRelease;
use common::fixture;
use release_meta::{fsutil, Graph, ReleaseIndex, Updates};

fn graph(name: &str) -> Graph {
    fsutil::read_json(&fixture(&format!("cincinnati/{name}"))).unwrap()
}

fn booted(version: &str, checksum: &str) -> OsRelease {
    OsRelease {
        version: version.into(),
        checksum: checksum.into(),
    }
}

const NONE: BTreeMap<String, String> = BTreeMap::new();

#[test]
fn docs_response_picks_the_rollout() {
    let g = graph("graph-zincati-docs-response.json");
    let b = booted(
        "32.20200517.1.0",
        "7c23c4735fb3c541586f0a4d3ca956ef93ef7d76f00a19bccf51460bafa7ee97",
    );
    let sel = find_update(&g, &b, &NONE, false, None, 0).unwrap();
    assert_eq!(sel.booted.unwrap().age_index, 0);
    let t = sel.target.unwrap();
    assert_eq!(t.version, "32.20200601.1.1");
    assert_eq!(t.age_index, 2);
    assert!(sel.holds.is_empty(), "{:?}", sel.holds);

    // Deny-listed by payload: no target, and the reason is shown.
    let denied = BTreeMap::from([(t.payload.clone(), "rolled back after boot".to_string())]);
    let sel = find_update(&g, &b, &denied, false, None, 0).unwrap();
    assert_eq!(sel.target, None);
    assert_eq!(
        sel.holds,
        [Hold::Denied {
            version: "32.20200601.1.1".into(),
            reason: "rolled back after boot".into()
        }]
    );

    // Once it is not offered any more (a paused rollout), the node still says
    // the newest release is denied on it rather than that nothing holds it.
    let mut hidden = g.clone();
    hidden.edges.clear();
    let sel = find_update(&hidden, &b, &denied, false, None, 0).unwrap();
    assert_eq!(sel.target, None);
    assert_eq!(
        sel.holds,
        [Hold::Denied {
            version: "32.20200601.1.1".into(),
            reason: "rolled back after boot".into()
        }]
    );

    // The newest node booted: nothing newer, nothing held.
    let b2 = booted("32.20200601.1.1", &t.payload);
    let sel = find_update(&g, &b2, &NONE, false, None, 0).unwrap();
    assert_eq!((sel.target, sel.holds), (None, vec![]));

    // 32.20200601.1.0 has an edge only to the rollout too.
    let b1 = booted(
        "32.20200601.1.0",
        "8cffe35be831fa2601d315002cb39fb22509a4e7d3db10e61f880523f69b3bf6",
    );
    let sel = find_update(&g, &b1, &NONE, false, None, 0).unwrap();
    assert_eq!(sel.target.unwrap().version, "32.20200601.1.1");
}

#[test]
fn docs_response_explains_a_hidden_rollout() {
    // The same graph with the rollout's incoming edges removed, as the server does
    // for a wary client: the node sees why, with the ramp at the given instant.
    let mut g = graph("graph-zincati-docs-response.json");
    g.edges.clear();
    let b = booted(
        "32.20200517.1.0",
        "7c23c4735fb3c541586f0a4d3ca956ef93ef7d76f00a19bccf51460bafa7ee97",
    );
    // start 1591279200, 2880 minutes: a quarter in after 720 minutes.
    let now = 1_591_279_200 + 720 * 60;
    let sel = find_update(&g, &b, &NONE, false, Some(0.9), now).unwrap();
    assert_eq!(sel.target, None);
    assert_eq!(
        sel.holds,
        [Hold::Wariness {
            version: "32.20200601.1.1".into(),
            rollout_share: 0.25,
            wariness: Some(0.9)
        }]
    );
}

#[test]
fn deadend_template() {
    // Zincati's kola template, filled in as its test does.
    let mut g = graph("graph-deadend.zincati-kola-template.json");
    g.nodes[0].version = "40.20240101.3.0".into();
    g.nodes[0].payload = "aa".repeat(32);
    let b = booted("40.20240101.3.0", &"aa".repeat(32));
    let sel = find_update(&g, &b, &NONE, false, None, 0).unwrap();
    assert_eq!(sel.target, None);
    assert_eq!(
        sel.holds,
        [Hold::DeadEnd {
            reason: "https://github.com/coreos/fedora-coreos-tracker/issues/215".into()
        }]
    );
}

#[test]
fn two_nodes_template_and_downgrade() {
    let mut g = graph("graph-two-nodes.zincati-kola-template.json");
    for (i, v) in ["40.20240101.3.0", "40.20240115.3.0"].iter().enumerate() {
        g.nodes[i].version = v.to_string();
        g.nodes[i].payload = format!("{i}").repeat(64);
    }
    let b = booted("40.20240101.3.0", &"0".repeat(64));
    assert_eq!(
        find_update(&g, &b, &NONE, false, None, 0)
            .unwrap()
            .target
            .unwrap()
            .version,
        "40.20240115.3.0"
    );
    // Reverse the edge: only a downgrade is offered.
    g.edges = vec![(1, 0)];
    let b1 = booted("40.20240115.3.0", &"1".repeat(64));
    let sel = find_update(&g, &b1, &NONE, false, None, 0).unwrap();
    assert_eq!(sel.target, None);
    assert_eq!(
        sel.holds,
        [Hold::Downgrade {
            version: "40.20240101.3.0".into()
        }]
    );
    let sel = find_update(&g, &b1, &NONE, true, None, 0).unwrap();
    assert_eq!(sel.target.unwrap().version, "40.20240101.3.0");
}

#[test]
fn empty_single_and_foreign_graphs() {
    let b = booted(
        "32.20200416.1.0",
        "19a2e3dc4932d6043d8b437ed981d658bab019cfcde0c4cfe2b8c7d4b5df574a",
    );
    let sel = find_update(
        &graph("graph-empty.zincati-mock-test.json"),
        &b,
        &NONE,
        false,
        None,
        0,
    )
    .unwrap();
    assert!(matches!(&sel.holds[..], [Hold::NotInGraph { .. }]));
    let sel = find_update(
        &graph("graph-next-single-node.streams-issue-87.json"),
        &b,
        &NONE,
        false,
        None,
        0,
    )
    .unwrap();
    assert_eq!(sel.booted.unwrap().version, "32.20200416.1.0");
    assert_eq!((sel.target, sel.holds), (None, vec![]));
    // OpenShift's example has no FCOS scheme metadata: never matches a commit.
    let g = graph("graph-openshift-cincinnati-design-example.json");
    let b = booted("1.0.0", "quay.io/openshift/manifest:v1.0.0");
    let sel = find_update(&g, &b, &NONE, false, None, 0).unwrap();
    assert!(matches!(&sel.holds[..], [Hold::NotInGraph { .. }]));
}

#[test]
fn malformed_candidate_fails_the_check() {
    let mut g = graph("graph-zincati-docs-response.json");
    g.nodes[2]
        .metadata
        .insert(release_meta::graph::AGE_INDEX.into(), "two".into());
    let b = booted(
        "32.20200517.1.0",
        "7c23c4735fb3c541586f0a4d3ca956ef93ef7d76f00a19bccf51460bafa7ee97",
    );
    let e = find_update(&g, &b, &NONE, false, None, 0).unwrap_err();
    assert!(
        e.contains("32.20200601.1.1") && e.contains("age_index"),
        "{e}"
    );
    g.edges.push((0, 9));
    g.nodes[2]
        .metadata
        .insert(release_meta::graph::AGE_INDEX.into(), "2".into());
    assert!(find_update(&g, &b, &NONE, false, None, 0).is_err());
}

/// The real stable index (releases up to 33.20201214.3.1 with real commits) and the
/// real stable updates metadata, built into a graph by the update server.
#[test]
fn real_stable_barriers_are_hopped_one_at_a_time() {
    let index: ReleaseIndex = fsutil::read_json(&fixture(
        "releases/releases-stable-index.stream-metadata-go-fixture.json",
    ))
    .unwrap();
    let updates: Updates = fsutil::read_json(&fixture("updates/stable.json")).unwrap();
    let g = update_server::builder::build_graph(&index, &updates, "x86_64", false);
    let barriers: Vec<&str> = updates
        .releases
        .iter()
        .filter(|e| e.metadata.barrier.is_some() && index.position(&e.version).is_some())
        .map(|e| e.version.as_str())
        .collect();
    // The signing-key and bug barriers of 2020 that fall inside the real index.
    assert_eq!(
        barriers,
        [
            "31.20200517.3.0",
            "32.20200615.3.0",
            "32.20201104.3.0",
            "33.20201201.3.0"
        ]
    );
    assert_eq!(g.nodes.len(), 26);
    // From the oldest release, follow the chosen targets to the end.
    let mut at = g.nodes[0].clone();
    let mut path = Vec::new();
    loop {
        let b = booted(&at.version, &at.payload);
        let sel = find_update(&g, &b, &NONE, false, None, 0).unwrap();
        let Some(t) = sel.target else { break };
        path.push(t.version.clone());
        at = g.nodes[t.age_index as usize].clone();
        assert!(path.len() <= g.nodes.len());
    }
    // Every barrier in range is visited, in order.
    let visited: Vec<&str> = path
        .iter()
        .map(String::as_str)
        .filter(|v| barriers.contains(v))
        .collect();
    assert_eq!(visited, barriers);
    // Later releases have no rollout entry any more (rollout.py drops finished
    // ones), so the last barrier is where automatic updates stop, and the node is
    // told that the newest release is not offered.
    assert_eq!(path.last().map(String::as_str), Some("33.20201201.3.0"));
    let b = booted(&at.version, &at.payload);
    let sel = find_update(&g, &b, &NONE, false, None, 0).unwrap();
    assert!(
        matches!(&sel.holds[..], [Hold::NotOffered { version }] if version == "33.20201214.3.1"),
        "{:?}",
        sel.holds
    );
    // A node before the first barrier is told about it.
    let b = booted(&g.nodes[0].version, &g.nodes[0].payload);
    let sel = find_update(&g, &b, &NONE, false, None, 0).unwrap();
    assert!(
        matches!(&sel.holds[..], [Hold::Barrier { barrier, .. }] if barrier == barriers[0]),
        "{:?}",
        sel.holds
    );
}

#[test]
fn identity_query_and_url_variables() {
    let id = Identity {
        basearch: "x86_64".into(),
        stream: "stable".into(),
        platform: Some("qemu".into()),
        group: "workers".into(),
        node_uuid: "975228d46dc94622b9bbe16671e2b58d".into(),
        rollout_wariness: Some(0.5),
        booted: booted("41.20250101.3.0", "ab"),
    };
    let q: Vec<String> = id
        .graph_query()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(
        q,
        [
            "basearch=x86_64",
            "stream=stable",
            "os_version=41.20250101.3.0",
            "os_checksum=ab",
            "group=workers",
            "node_uuid=975228d46dc94622b9bbe16671e2b58d",
            "platform=qemu",
            "rollout_wariness=0.500000"
        ]
    );
    assert_eq!(
        id.expand("https://u.example/${stream}/${basearch}/${group}/${platform}")
            .unwrap(),
        "https://u.example/stable/x86_64/workers/qemu"
    );
    assert!(id.expand("https://u.example/${node_uuid}").is_err());
}
