//! Every real metadata file in the fixtures parses into the typed structs and
//! serializes back to the same JSON value, and the operations keep files valid.

use release_meta::{fsutil, graph::Graph, Release, ReleaseIndex, Stream, Updates};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/update-stack/"
    ))
    .join(rel)
}

/// Parses `rel` as `T`, re-serializes, and compares JSON values (key order aside).
fn round_trip<T: DeserializeOwned + Serialize>(rel: &str) -> T {
    let path = fixture(rel);
    let typed: T = fsutil::read_json(&path).unwrap_or_else(|e| panic!("{e}"));
    let original: Value = fsutil::read_json(&path).unwrap();
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(original, back, "{rel} does not round-trip");
    // And through bytes, as files are written.
    let again: Value = serde_json::from_slice(&fsutil::to_pretty_json(&typed)).unwrap();
    assert_eq!(original, again, "{rel} does not round-trip through bytes");
    typed
}

#[test]
fn updates_metadata_round_trips() {
    for f in [
        "updates/stable.json",
        "updates/testing.json",
        "updates/next.json",
        "updates/tracker-sample-updates.json",
        "updates/rollout-py-selftest1-input.json",
        "updates/rollout-py-selftest1-expected-output.json",
    ] {
        round_trip::<Updates>(f);
    }
    let stable: Updates = round_trip("updates/stable.json");
    assert_eq!(stable.stream, "stable");
    assert_eq!(stable.releases.len(), 21);
    let barriers = stable
        .releases
        .iter()
        .filter(|r| r.metadata.barrier.is_some())
        .count();
    assert_eq!(barriers, 19);
    let last = stable.get("44.20260707.3.1").unwrap();
    let r = last.metadata.rollout.as_ref().unwrap();
    assert_eq!(
        (r.start_epoch, r.start_percentage, r.duration_minutes),
        (Some(1_784_728_800), Some(0.0), Some(2880))
    );
    let sample: Updates = round_trip("updates/tracker-sample-updates.json");
    assert!(sample.releases.iter().any(|r| r.metadata.deadend.is_some()));
}

#[test]
fn release_index_round_trips() {
    let idx: ReleaseIndex =
        round_trip("releases/releases-stable-index.stream-metadata-go-fixture.json");
    assert_eq!(idx.stream, "stable");
    assert!(idx.releases[0].oci_images.is_some());
    round_trip::<ReleaseIndex>("releases/releases-testing-index.tracker-sample.json");
}

#[test]
fn release_metadata_round_trips() {
    let rel: Release =
        round_trip("releases/release-33.20201201.3.0.stream-metadata-go-fixture.json");
    assert_eq!(rel.release, "33.20201201.3.0");
    round_trip::<Release>("releases/release.tracker-sample.json");
}

#[test]
fn stream_metadata_round_trips() {
    for f in [
        "streams/stable.json",
        "streams/testing.json",
        "streams/next.json",
        "streams/tracker-sample-stream.json",
        "streams/stream-metadata-go-fixture-fcos-stream.json",
    ] {
        round_trip::<Stream>(f);
    }
}

#[test]
fn cincinnati_graphs_round_trip() {
    for f in [
        "cincinnati/graph-zincati-docs-response.json",
        "cincinnati/graph-deadend.zincati-kola-template.json",
        "cincinnati/graph-empty.zincati-mock-test.json",
        "cincinnati/graph-next-single-node.streams-issue-87.json",
        "cincinnati/graph-openshift-cincinnati-design-example.json",
        "cincinnati/graph-two-nodes.zincati-kola-template.json",
    ] {
        round_trip::<Graph>(f);
    }
}

/// stream-metadata-go's stream fixture was generated from its release fixture (same
/// build, 33.20201201.3.0): our generator must reproduce every artifact of it and
/// the cloud images that the release file carries.
#[test]
fn stream_generated_from_release_matches_upstream() {
    let rel: Release = fsutil::read_json(&fixture(
        "releases/release-33.20201201.3.0.stream-metadata-go-fixture.json",
    ))
    .unwrap();
    let expected: Stream = fsutil::read_json(&fixture(
        "streams/stream-metadata-go-fixture-fcos-stream.json",
    ))
    .unwrap();
    let got = Stream::from_releases("stable", &[rel], 0).unwrap();
    let (g, e) = (
        &got.architectures["x86_64"],
        &expected.architectures["x86_64"],
    );
    assert_eq!(
        serde_json::to_value(&g.artifacts).unwrap(),
        serde_json::to_value(&e.artifacts).unwrap()
    );
    let (gi, ei) = (g.images.as_ref().unwrap(), e.images.as_ref().unwrap());
    for platform in ["aws", "gcp"] {
        assert_eq!(gi[platform], ei[platform], "images.{platform}");
    }
    assert_eq!(got.metadata.last_modified, "1970-01-01T00:00:00Z");
    // A release of another stream is refused.
    let mut other: Release =
        fsutil::read_json(&fixture("releases/release.tracker-sample.json")).unwrap();
    other.stream = "testing".into();
    assert!(Stream::from_releases("stable", &[other], 0).is_err());
}

#[test]
fn bad_input_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("updates.json");
    std::fs::write(
        &p,
        r#"{"stream": "stable", "metadata": {"last-modified": "x"}, "releases": [{"version": 3}]}"#,
    )
    .unwrap();
    let err = fsutil::read_json::<Updates>(&p).unwrap_err().to_string();
    assert!(
        err.contains("updates.json") && err.contains("line 1"),
        "{err}"
    );
}

/// fedora-coreos-streams `rollout.py` self-test: clean() then add() of
/// 35.20210801.3.0 for 24 h must give the expected file (start_epoch is a
/// placeholder 0 in the fixture, as in the self-test).
#[test]
fn rollout_py_clean_and_add() {
    let mut u: Updates =
        fsutil::read_json(&fixture("updates/rollout-py-selftest1-input.json")).unwrap();
    let expected: Value = fsutil::read_json(&fixture(
        "updates/rollout-py-selftest1-expected-output.json",
    ))
    .unwrap();
    // The self-test runs long after every rollout in its input ended.
    let now = 1_700_000_000;
    u.add_rollout("35.20210801.3.0", 0, 0.0, 24 * 60, false, now)
        .unwrap();
    assert_eq!(serde_json::to_value(&u).unwrap(), expected);
    // Adding it again is refused unless replacing.
    assert!(u
        .add_rollout("35.20210801.3.0", 5, 0.0, 60, false, now)
        .is_err());
    u.add_rollout("35.20210801.3.0", 5, 0.0, 60, true, now)
        .unwrap();
    assert_eq!(
        u.get("35.20210801.3.0")
            .unwrap()
            .metadata
            .rollout
            .as_ref()
            .unwrap()
            .start_epoch,
        Some(5)
    );
    // While a rollout is still ramping, clean keeps it untouched.
    let mut u: Updates = fsutil::read_json(&fixture("updates/stable.json")).unwrap();
    let before = u.clone();
    u.clean(1_784_728_800);
    assert_eq!(u, before);
    // After its end it collapses, and the older completed rollout loses its block.
    u.clean(1_784_728_800 + 2880 * 60 + 1);
    let r = |v: &str| u.get(v).unwrap().metadata.rollout.clone();
    assert_eq!(
        r("44.20260707.3.1"),
        Some(release_meta::updates::Rollout::completed())
    );
    assert!(u.get("44.20260621.3.1").is_none());
}
