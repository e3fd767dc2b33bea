//! The server over real TCP on 127.0.0.1: graph queries, upstream-shaped errors,
//! metrics, signatures, reload under load, and rollouts pausing themselves.

mod common;

use common::{STABLE_MINUTES, STABLE_START};
use release_meta::graph::Graph;
use release_meta::sign::SigningKey;
use release_meta::{fsutil, Updates};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use update_server::{Config, FixedClock, Server};

const MID: i64 = STABLE_START + STABLE_MINUTES * 30;
const RAMPING: &str = "44.20260707.3.1";

async fn start(dir: &Path, clock: &FixedClock, tweak: impl FnOnce(&mut Config)) -> Server {
    let mut cfg = Config::new(dir);
    cfg.clock = Arc::new(clock.clone());
    cfg.reload_interval = Duration::from_millis(50);
    tweak(&mut cfg);
    Server::start(cfg).await.unwrap()
}

/// A client that ignores proxy variables: every request here is to 127.0.0.1.
fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn base(s: &Server) -> String {
    format!("http://{}", s.local_addr())
}

async fn get(url: &str) -> (u16, Option<String>, String) {
    let r = client().get(url).send().await.unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), ct, r.text().await.unwrap())
}

/// Polls `check` until it holds (reloads run on a timer in the background); fails
/// after 10 s, far beyond the 50 ms reload interval even on a loaded machine.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn graph_at(url: &str) -> Graph {
    let (code, _, body) = get(url).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn has_edge_into(g: &Graph, version: &str) -> bool {
    let to = g.index_of(version).unwrap();
    g.edges.iter().any(|e| e.1 == to)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_queries() {
    let dir = tempfile::tempdir().unwrap();
    common::data_dir(dir.path());
    let clock = FixedClock::at(MID);
    let s = start(dir.path(), &clock, |_| {}).await;
    let url = format!("{}/v1/graph?basearch=x86_64&stream=stable", base(&s));

    // Zincati's full parameter set; unused ones are ignored.
    let (code, ct, body) = get(&format!(
        "{url}&os_version=43.20260413.3.2&os_checksum=abc&group=default&platform=qemu&rollout_wariness=0.000000"
    ))
    .await;
    assert_eq!((code, ct.as_deref()), (200, Some("application/json")));
    let g: Graph = serde_json::from_str(&body).unwrap();
    let full = update_server::builder::build_graph(
        &common::index("stable"),
        &common::updates("stable"),
        "x86_64",
        false,
    );
    assert_eq!(g, full);
    // Pretty-printed like upstream.
    assert!(body.starts_with("{\n  \"nodes\": ["));

    // Middle of the ramp: 0.4 sees it, 0.6 does not.
    let g: Graph =
        serde_json::from_str(&get(&format!("{url}&rollout_wariness=0.4")).await.2).unwrap();
    assert!(has_edge_into(&g, RAMPING));
    let g: Graph =
        serde_json::from_str(&get(&format!("{url}&rollout_wariness=0.6")).await.2).unwrap();
    assert!(!has_edge_into(&g, RAMPING));
    // node_uuid buckets: 0.2076 sees it, 0.6155 does not (values in tests/policy.rs).
    let g: Graph = serde_json::from_str(
        &get(&format!("{url}&node_uuid=ffffffffffffffffffffffffffffffff"))
            .await
            .2,
    )
    .unwrap();
    assert!(has_edge_into(&g, RAMPING));
    let g: Graph = serde_json::from_str(
        &get(&format!("{url}&node_uuid=de35106b6ec24688b63afddaa156679b"))
            .await
            .2,
    )
    .unwrap();
    assert!(!has_edge_into(&g, RAMPING));
    // The clock moves: at the end everyone gets it.
    clock.set(STABLE_START + STABLE_MINUTES * 60 + 1);
    let g: Graph = serde_json::from_str(
        &get(&format!("{url}&node_uuid=de35106b6ec24688b63afddaa156679b"))
            .await
            .2,
    )
    .unwrap();
    assert!(has_edge_into(&g, RAMPING));

    // OCI graph and other streams.
    let g: Graph = serde_json::from_str(&get(&format!("{url}&oci=true")).await.2).unwrap();
    assert!(g.nodes.iter().all(|n| n
        .payload
        .starts_with("quay.io/fedora/fedora-coreos@sha256:")));
    for stream in ["testing", "next"] {
        let (code, _, body) = get(&format!(
            "{}/v1/graph?basearch=aarch64&stream={stream}",
            base(&s)
        ))
        .await;
        assert_eq!(code, 200);
        assert!(!serde_json::from_str::<Graph>(&body)
            .unwrap()
            .nodes
            .is_empty());
    }
    let (code, _, body) = get(&format!(
        "{}/v1/graph?basearch=s390x&stream=stable",
        base(&s)
    ))
    .await;
    assert_eq!(
        (code, body.as_str()),
        (200, "{\n  \"nodes\": [],\n  \"edges\": []\n}")
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_get_error_bodies() {
    let dir = tempfile::tempdir().unwrap();
    common::data_dir(dir.path());
    let s = start(dir.path(), &FixedClock::at(MID), |_| {}).await;
    let cases = [
        (
            "",
            400,
            "missing_params",
            "mandatory client parameters missing: basearch, stream",
        ),
        (
            "?stream=stable",
            400,
            "missing_params",
            "mandatory client parameters missing: basearch",
        ),
        (
            "?basearch=x86_64",
            400,
            "missing_params",
            "mandatory client parameters missing: stream",
        ),
        (
            "?basearch=&stream=stable",
            400,
            "invalid_params",
            "empty basearch",
        ),
        (
            "?basearch=x86_64&stream=",
            400,
            "invalid_params",
            "empty stream",
        ),
        (
            "?basearch=x86_64&stream=stable&oci=yes",
            400,
            "invalid_params",
            "invalid oci 'yes': expected 'true' or 'false'",
        ),
        (
            "?basearch=x86_64&stream=stable&rollout_wariness=high",
            400,
            "invalid_params",
            "invalid rollout_wariness 'high': expected a number between 0.0 and 1.0",
        ),
        (
            "?basearch=riscv64&stream=stable",
            400,
            "invalid_params",
            "unsupported basearch 'riscv64' for stream 'stable'",
        ),
        (
            "?basearch=x86_64&stream=rawhide",
            404,
            "unknown_stream",
            "no update graph for stream 'rawhide'",
        ),
    ];
    for (query, code, kind, value) in cases {
        let (got, ct, body) = get(&format!("{}/v1/graph{query}", base(&s))).await;
        assert_eq!(got, code, "{query}");
        assert_eq!(ct.as_deref(), Some("application/json"), "{query}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, json!({"kind": kind, "value": value}), "{query}");
    }
    // Same shape as the error body Zincati's client test decodes.
    let zincati: Value = fsutil::read_json(&common::fixture(
        "cincinnati/error-body.zincati-client-test.json",
    ))
    .unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let (_, _, body) = get(&format!("{}/v1/graph", base(&s))).await;
    assert_eq!(keys(&serde_json::from_str(&body).unwrap()), keys(&zincati));

    let metrics = get(&format!("{}/metrics", base(&s))).await.2;
    assert!(
        metrics.contains("fcos_cincinnati_pe_v1_graph_incoming_requests_total 10\n"),
        "{metrics}"
    );
    assert!(metrics.contains("ferrocore_update_server_graph_responses_total{code=\"400\"} 9\n"));
    assert!(metrics.contains("ferrocore_update_server_graph_responses_total{code=\"404\"} 1\n"));
    assert!(metrics.contains(
        "fcos_cincinnati_gb_scraper_graph_final_releases{basearch=\"x86_64\",stream=\"stable\",type=\"checksum\"} 43\n"
    ));
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_responses_verify() {
    let dir = tempfile::tempdir().unwrap();
    common::data_dir(dir.path());
    let key = SigningKey::generate();
    let public = key.verifying_key();
    let s = start(dir.path(), &FixedClock::at(MID), |c| {
        c.signing_key = Some(key)
    })
    .await;
    for w in ["0", "0.9"] {
        let r = client()
            .get(format!(
                "{}/v1/graph?basearch=x86_64&stream=stable&rollout_wariness={w}",
                base(&s)
            ))
            .send()
            .await
            .unwrap();
        let sig = r.headers()["x-ferrocore-signature"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = r.bytes().await.unwrap();
        public.verify(&body, &sig).unwrap();
        assert!(public.verify(&body[1..], &sig).is_err());
    }
    s.stop().await.unwrap();
}

/// Concurrent clients while the updates file is rewritten over and over: every
/// request succeeds with either the old or the new graph, and both are seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_no_request() {
    let dir = tempfile::tempdir().unwrap();
    common::data_dir(dir.path());
    let s = start(dir.path(), &FixedClock::at(MID), |_| {}).await;
    let url = format!(
        "{}/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=0",
        base(&s)
    );
    let updates_path = dir.path().join("updates/stable.json");
    let with: Updates = common::updates("stable");
    let mut without = with.clone();
    without.releases.retain(|e| e.version != RAMPING);

    let client = client();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (client, url, done) = (client.clone(), url.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let (mut old, mut new) = (0u32, 0u32);
            // Keep going until the writer is done (bounded, so the test always ends).
            for i in 0..5_000 {
                if i >= 50 && done.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let r = client.get(&url).send().await.expect("request failed");
                assert_eq!(r.status(), 200);
                let g: Graph = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                if has_edge_into(&g, RAMPING) {
                    old += 1
                } else {
                    new += 1
                }
            }
            (old, new)
        }));
    }
    let writer = tokio::spawn(async move {
        for i in 0..20 {
            let u = if i % 2 == 0 { &without } else { &with };
            fsutil::write_json(&updates_path, u).unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        fsutil::write_json(&updates_path, &without).unwrap();
    });
    writer.await.unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut old, mut new) = (0, 0);
    for t in tasks {
        let (o, n) = t.await.unwrap();
        old += o;
        new += n;
    }
    assert!(old + new >= 300);
    assert!(
        old > 0 && new > 0,
        "old {old}, new {new}: no reload observed"
    );
    // Settles on the final file.
    eventually("final file served", || async {
        !has_edge_into(&graph_at(&url).await, RAMPING)
    })
    .await;

    // A broken file is not loaded: the previous graph keeps being served.
    std::fs::write(dir.path().join("updates/stable.json"), "{ \"stream\": ").unwrap();
    let metrics_url = format!("{}/metrics", base(&s));
    eventually("a failed reload", || async {
        get(&metrics_url)
            .await
            .2
            .lines()
            .find_map(|l| l.strip_prefix("ferrocore_update_server_reload_failures_total "))
            .is_some_and(|n| n != "0")
    })
    .await;
    assert!(!has_edge_into(&graph_at(&url).await, RAMPING));
    s.stop().await.unwrap();
}

async fn post_report(s: &Server, node: &str, outcome: &str) -> Value {
    let r = client()
        .post(format!("{}/v1/report", base(s)))
        .json(&json!({
            "node_uuid": node, "stream": "stable", "from": "44.20260621.3.1",
            "to": RAMPING, "outcome": outcome,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_rollout_pauses_itself() {
    let dir = tempfile::tempdir().unwrap();
    common::data_dir(dir.path());
    let db = dir.path().join("reports.sqlite");
    let clock = FixedClock::at(STABLE_START + STABLE_MINUTES * 60 + 1);
    let s = start(dir.path(), &clock, |c| {
        c.db_path = Some(db.clone());
        c.pause_after_failures = 2;
    })
    .await;
    let url = format!(
        "{}/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=0",
        base(&s)
    );
    assert!(has_edge_into(
        &serde_json::from_str(&get(&url).await.2).unwrap(),
        RAMPING
    ));

    assert_eq!(post_report(&s, "n1", "success").await["paused"], false);
    assert_eq!(post_report(&s, "n2", "rolled-back").await["paused"], false);
    // n2 again counts once.
    assert_eq!(
        post_report(&s, "n2", "failed-to-deploy").await["paused"],
        false
    );
    let v = post_report(&s, "n3", "failed-to-deploy").await;
    assert_eq!(v["paused"], true);

    // Gone for new queries, even for canaries; the completed rollout stays.
    let g: Graph = serde_json::from_str(&get(&url).await.2).unwrap();
    assert!(!has_edge_into(&g, RAMPING));
    assert!(has_edge_into(&g, "44.20260621.3.1"));

    let status: Value =
        serde_json::from_str(&get(&format!("{}/v1/status", base(&s))).await.2).unwrap();
    let r = status["streams"]["stable"]["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == RAMPING)
        .unwrap()
        .clone();
    assert_eq!(r["paused"], true);
    assert_eq!(r["reports"], json!({"failed-to-deploy": 2, "success": 1}));
    let reason = r["pause_reason"].as_str().unwrap();
    assert!(
        reason.contains("2 node(s) reported a failed update to 44.20260707.3.1"),
        "{reason}"
    );
    assert!(reason.contains("threshold 2"), "{reason}");
    assert_eq!(r["threshold_now"], 1.0);
    s.stop().await.unwrap();

    // The pause survives a restart (SQLite state) ...
    let s = start(dir.path(), &clock, |c| c.db_path = Some(db.clone())).await;
    let url = format!(
        "{}/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=0",
        base(&s)
    );
    assert!(!has_edge_into(
        &serde_json::from_str(&get(&url).await.2).unwrap(),
        RAMPING
    ));
    // ... and an operator's resume (another process writing the database) is picked
    // up by the running server.
    assert!(update_server::ReportStore::open(&db, 2)
        .unwrap()
        .resume("stable", RAMPING)
        .unwrap());
    eventually("resumed rollout offered again", || async {
        has_edge_into(&graph_at(&url).await, RAMPING)
    })
    .await;

    // Bad reports are refused with an error body.
    let r = client()
        .post(format!("{}/v1/report", base(&s)))
        .body(r#"{"node_uuid":"n","stream":"stable","from":"a","to":"44.20260707.3.1","outcome":"exploded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["kind"], "invalid_report");
    assert!(v["value"].as_str().unwrap().contains("exploded"));
    s.stop().await.unwrap();
}

/// A minimal static file server over `root` on 127.0.0.1, standing in for the
/// Fedora CoreOS bucket (real HTTP, real files).
async fn bucket(root: std::path::PathBuf) -> (String, tokio::task::JoinHandle<()>) {
    use axum::extract::{Path as UrlPath, State};
    async fn file(
        State(root): State<std::path::PathBuf>,
        UrlPath(rest): UrlPath<String>,
    ) -> Result<Vec<u8>, axum::http::StatusCode> {
        if rest.split('/').any(|c| c == "..") {
            return Err(axum::http::StatusCode::BAD_REQUEST);
        }
        std::fs::read(root.join(rest)).map_err(|_| axum::http::StatusCode::NOT_FOUND)
    }
    let app = axum::Router::new()
        .route("/{*rest}", axum::routing::get(file))
        .with_state(root);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_from_urls_are_scraped_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    common::data_dir(dir.path());
    let (origin, files) = bucket(dir.path().to_owned()).await;
    let inputs = update_server::Inputs::Urls {
        releases: format!("{origin}/prod/streams/${{stream}}/releases.json"),
        updates: format!("{origin}/updates/${{stream}}.json"),
        streams: vec!["stable".into(), "next".into()],
    };
    let mut cfg = Config::with_inputs(inputs);
    cfg.clock = Arc::new(FixedClock::at(MID));
    cfg.reload_interval = Duration::from_millis(50);
    let s = Server::start(cfg).await.unwrap();
    let url = format!(
        "{}/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=0",
        base(&s)
    );
    let full = update_server::builder::build_graph(
        &common::index("stable"),
        &common::updates("stable"),
        "x86_64",
        false,
    );
    assert_eq!(graph_at(&url).await, full);
    // testing was not asked for.
    let (code, _, _) = get(&format!(
        "{}/v1/graph?basearch=x86_64&stream=testing",
        base(&s)
    ))
    .await;
    assert_eq!(code, 404);

    // A change upstream is picked up.
    let mut u = common::updates("stable");
    u.releases.retain(|e| e.version != RAMPING);
    fsutil::write_json(&dir.path().join("updates/stable.json"), &u).unwrap();
    eventually("scraped change", || async {
        !has_edge_into(&graph_at(&url).await, RAMPING)
    })
    .await;

    // The bucket loses the file (404): the last graph keeps being served.
    std::fs::remove_file(dir.path().join("updates/stable.json")).unwrap();
    let metrics_url = format!("{}/metrics", base(&s));
    eventually("a failed scrape", || async {
        get(&metrics_url)
            .await
            .2
            .lines()
            .find_map(|l| l.strip_prefix("ferrocore_update_server_reload_failures_total "))
            .is_some_and(|n| n != "0")
    })
    .await;
    assert!(!has_edge_into(&graph_at(&url).await, RAMPING));
    s.stop().await.unwrap();

    // Missing inputs at start are an error naming the URL.
    let mut cfg = Config::with_inputs(update_server::Inputs::Urls {
        releases: format!("{origin}/prod/streams/${{stream}}/releases.json"),
        updates: format!("{origin}/updates/${{stream}}.json"),
        streams: vec!["stable".into()],
    });
    cfg.reload_interval = Duration::from_millis(50);
    let err = Server::start(cfg).await.err().unwrap().to_string();
    assert!(err.contains("/updates/stable.json: 404"), "{err}");
    files.abort();
}

/// With a verification key, inputs need a valid detached signature: a file changed
/// without re-signing is not loaded (the previous graph stays), a re-signed one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_inputs_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    common::data_dir(dir.path());
    let key = SigningKey::generate();
    let with_key = |c: &mut Config| c.verify_inputs = Some(key.verifying_key());

    // Unsigned inputs are refused at start, naming the file.
    let mut cfg = Config::new(dir.path());
    with_key(&mut cfg);
    let err = Server::start(cfg).await.err().unwrap().to_string();
    assert!(err.contains("releases.json: no signature"), "{err}");

    let updates_path = dir.path().join("updates/stable.json");
    for stream in ["stable", "testing", "next"] {
        key.sign_file(
            &dir.path()
                .join(format!("prod/streams/{stream}/releases.json")),
        )
        .unwrap();
        key.sign_file(&dir.path().join(format!("updates/{stream}.json")))
            .unwrap();
    }
    let s = start(dir.path(), &FixedClock::at(MID), with_key).await;
    let url = format!(
        "{}/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=0",
        base(&s)
    );
    assert!(has_edge_into(&graph_at(&url).await, RAMPING));

    // Tampered (not re-signed): refused, old graph kept.
    let mut u = common::updates("stable");
    u.releases.retain(|e| e.version != RAMPING);
    fsutil::write_json(&updates_path, &u).unwrap();
    let metrics_url = format!("{}/metrics", base(&s));
    eventually("a refused reload", || async {
        get(&metrics_url)
            .await
            .2
            .lines()
            .find_map(|l| l.strip_prefix("ferrocore_update_server_reload_failures_total "))
            .is_some_and(|n| n != "0")
    })
    .await;
    assert!(has_edge_into(&graph_at(&url).await, RAMPING));

    // Signed by release engineering: accepted.
    key.sign_file(&updates_path).unwrap();
    eventually("the signed change", || async {
        !has_edge_into(&graph_at(&url).await, RAMPING)
    })
    .await;
    s.stop().await.unwrap();
}
