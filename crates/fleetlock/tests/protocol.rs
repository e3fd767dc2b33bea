//! Every endpoint and every error of the server, over HTTP on 127.0.0.1, with the
//! embedded SQLite store (the etcd store gets the same protocol through `tests/etcd.rs`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{any_addr, fixtures, Server};
use fleetlock::client::{AdminClient, Client, ClientError};
use fleetlock::server::Options;
use fleetlock::store::{EtcdOptions, EtcdStore, SqliteStore};
use serde_json::Value;

const T: Duration = Duration::from_secs(5);

fn groups(g: &[(&str, u64)]) -> BTreeMap<String, u64> {
    g.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

fn sqlite_server(dir: &tempfile::TempDir, opts: Options) -> Server {
    let store = SqliteStore::open(&dir.path().join("fl.sqlite")).unwrap();
    Server::start(Box::new(store), opts, any_addr())
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("update-stack/fleetlock").join(name)).unwrap()
}

/// Raw protocol call: returns status, parsed error body (if JSON) and raw body.
async fn raw(
    url: &str,
    path: &str,
    header: Option<&str>,
    body: &str,
) -> (u16, Option<Value>, String) {
    let mut rb = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .body(body.to_string());
    if let Some(h) = header {
        rb = rb.header("fleet-lock-protocol", h);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).ok(), text)
}

fn err_of(body: &Option<Value>) -> (String, String) {
    let b = body.as_ref().expect("JSON error body");
    assert_eq!(
        b.as_object().unwrap().len(),
        2,
        "exactly kind and value: {b}"
    );
    (
        b["kind"].as_str().unwrap().into(),
        b["value"].as_str().unwrap().into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_unlock_and_protocol_errors() {
    let dir = tempfile::tempdir().unwrap();
    let srv = sqlite_server(
        &dir,
        Options {
            groups: groups(&[("default", 1), ("workers", 2)]),
            ..Options::default()
        },
    );
    let u = srv.url.as_str();

    // Real request bodies from airlock's and Zincati's docs.
    let airlock_body = fixture("request-body.airlock-example.json");
    let (s, _, text) = raw(u, "v1/pre-reboot", Some("true"), &airlock_body).await;
    assert_eq!((s, text.as_str()), (200, ""), "lock granted, empty body");
    let (s, _, _) = raw(u, "v1/pre-reboot", Some("true"), &airlock_body).await;
    assert_eq!(s, 200, "recursive lock by the same id");

    // Second node in the 1-slot group: airlock's exact answer.
    let other = r#"{"client_params":{"id":"other","group":"default"}}"#;
    let (s, b, _) = raw(u, "v1/pre-reboot", Some("true"), other).await;
    assert_eq!(s, 500);
    assert_eq!(
        err_of(&b),
        (
            "failed_lock".into(),
            "all 1 semaphore slots currently locked".into()
        )
    );

    // Bad identities: 400 invalid_client_identity, message says what is wrong.
    for (header, body, needle) in [
        (None, other, "wrong 'fleet-lock-protocol' header"),
        (Some("false"), other, "wrong 'fleet-lock-protocol' header"),
        (Some("true"), "{not json", "invalid JSON body"),
        (
            Some("true"),
            r#"{"client_params":{"group":"default"}}"#,
            "missing field `id`",
        ),
        (
            Some("true"),
            r#"{"client_params":{"id":"","group":"default"}}"#,
            "empty node ID",
        ),
        (
            Some("true"),
            r#"{"client_params":{"id":"x","group":""}}"#,
            "empty group",
        ),
        (
            Some("true"),
            r#"{"client_params":{"id":"x","group":"a/b"}}"#,
            "outside [a-zA-Z0-9.-]",
        ),
    ] {
        for path in ["v1/pre-reboot", "v1/steady-state"] {
            let (s, b, _) = raw(u, path, header, body).await;
            let (kind, value) = err_of(&b);
            assert_eq!(
                (s, kind.as_str()),
                (400, "invalid_client_identity"),
                "{path} {body}"
            );
            assert!(
                value.starts_with("failed to validate client identity: ") && value.contains(needle),
                "{path} {body}: {value}"
            );
        }
    }

    // Unconfigured group (Zincati's mock-test body uses group "mock-workers").
    let zincati_body = fixture("request-body.zincati-mock-test.json");
    for path in ["v1/pre-reboot", "v1/steady-state"] {
        let (s, b, _) = raw(u, path, Some("true"), &zincati_body).await;
        assert_eq!(s, 400);
        assert_eq!(
            err_of(&b),
            (
                "unknown_group".into(),
                "unknown group \"mock-workers\"".into()
            )
        );
    }

    // Only POST, as the protocol specifies.
    let r = reqwest::get(format!("{u}v1/pre-reboot")).await.unwrap();
    assert_eq!(r.status().as_u16(), 405);

    // Release: idempotent, also for a node that holds nothing.
    let (s, _, text) = raw(u, "v1/steady-state", Some("true"), &airlock_body).await;
    assert_eq!((s, text.as_str()), (200, ""));
    let (s, _, _) = raw(u, "v1/steady-state", Some("true"), &airlock_body).await;
    assert_eq!(s, 200);
    let (s, _, _) = raw(u, "v1/pre-reboot", Some("true"), other).await;
    assert_eq!(s, 200, "slot free again");

    // The Zincati protocol doc's body, with the client library, in a 2-slot group.
    let doc_body: Value =
        serde_json::from_str(&fixture("request-body.zincati-protocol-doc.json")).unwrap();
    let doc_id = doc_body["client_params"]["id"].as_str().unwrap();
    let a = Client::new(u, doc_id, "workers", T).unwrap();
    let b = Client::new(u, "b", "workers", T).unwrap();
    let c = Client::new(u, "c", "workers", T).unwrap();
    a.pre_reboot().await.unwrap();
    b.pre_reboot().await.unwrap();
    let e = c.pre_reboot().await.unwrap_err();
    assert_eq!(e.kind(), "failed_lock");
    assert_eq!(
        e.to_string(),
        "server-side error, code 500: all 2 semaphore slots currently locked"
    );
    a.steady_state().await.unwrap();
    c.pre_reboot().await.unwrap();
    b.steady_state().await.unwrap();
    c.steady_state().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_admin_metrics_and_slot_changes() {
    let dir = tempfile::tempdir().unwrap();
    let srv = sqlite_server(
        &dir,
        Options {
            groups: groups(&[("default", 1), ("workers", 3)]),
            admin_token: Some("s3cret".into()),
            lease_ttl_secs: None,
        },
    );
    let u = srv.url.as_str();
    let before = std::time::SystemTime::now();
    Client::new(u, "n1", "default", T)
        .unwrap()
        .pre_reboot()
        .await
        .unwrap();
    Client::new(u, "n2", "workers", T)
        .unwrap()
        .pre_reboot()
        .await
        .unwrap();

    // Status and release need the token.
    for bad in [None, Some("wrong".to_string())] {
        let admin = AdminClient::new(u, bad, T).unwrap();
        let e = admin.status().await.unwrap_err();
        assert!(matches!(e, ClientError::Server { status: 401, .. }), "{e}");
        assert_eq!(e.kind(), "unauthorized");
        let e = admin.release("default", "n1").await.unwrap_err();
        assert_eq!(e.kind(), "unauthorized");
    }
    let admin = AdminClient::new(u, Some("s3cret".into()), T).unwrap();
    let st = admin.status().await.unwrap();
    let names: Vec<_> = st
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.slots, g.holders.len()))
        .collect();
    assert_eq!(names, [("default", 1, 1), ("workers", 3, 1)]);
    let h = &st.groups[0].holders[0];
    assert_eq!(h.id, "n1");
    assert_eq!(h.expires, None);
    let since = h.since.as_deref().unwrap();
    assert!(since.len() == 20 && since.ends_with('Z'), "{since}");
    let secs_before = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(since >= rfc3339_via_date(secs_before).as_str(), "{since}");

    // Admin release of a named holder.
    assert!(admin.release("default", "n1").await.unwrap());
    assert!(
        !admin.release("default", "n1").await.unwrap(),
        "already gone"
    );
    let e = admin.release("nope", "n1").await.unwrap_err();
    assert_eq!(
        (
            e.kind().as_str(),
            matches!(e, ClientError::Server { status: 400, .. })
        ),
        ("unknown_group", true)
    );
    let e = admin.release("default", "").await.unwrap_err();
    assert_eq!(e.kind(), "invalid_request");
    let r = reqwest::Client::new()
        .post(format!("{u}v1/admin/release"))
        .bearer_auth("s3cret")
        .body(r#"{"group":"default","node":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let b: Value = r.json().await.unwrap();
    assert!(
        b["value"]
            .as_str()
            .unwrap()
            .contains("unknown field `node`"),
        "{b}"
    );

    // Changing slots takes effect at once (airlock keeps the first value forever).
    let n3 = Client::new(u, "n3", "default", T).unwrap();
    let n4 = Client::new(u, "n4", "default", T).unwrap();
    n3.pre_reboot().await.unwrap();
    assert!(n4.pre_reboot().await.is_err());
    srv.app
        .set_groups(groups(&[("default", 2), ("workers", 3)]));
    n4.pre_reboot().await.unwrap();
    srv.app.set_groups(groups(&[("default", 1)]));
    n3.steady_state().await.unwrap();
    let n5 = Client::new(u, "n5", "default", T).unwrap();
    let e = n5.pre_reboot().await.unwrap_err();
    assert!(
        e.to_string().contains("all 1 semaphore slots"),
        "n4 still holds the single slot: {e}"
    );
    let e = Client::new(u, "n2", "workers", T)
        .unwrap()
        .steady_state()
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        "unknown_group",
        "workers was removed from the config"
    );

    // Metrics: airlock's names plus ours, with live values.
    let m = admin.metrics().await.unwrap();
    for line in [
        "airlock_config_groups 1",
        "airlock_config_semaphore_slots{group=\"default\"} 1",
        "airlock_database_semaphore_lock_holders{group=\"default\"} 1",
        "airlock_database_semaphore_slots{group=\"default\"} 1",
        "airlock_v1_pre_reboot_incoming_requests_total 6",
        "airlock_v1_steady_state_incoming_requests_total 2",
        "fleetlock_errors_total{endpoint=\"pre-reboot\",kind=\"failed_lock\"} 2",
        "fleetlock_errors_total{endpoint=\"steady-state\",kind=\"unknown_group\"} 1",
        "fleetlock_errors_total{endpoint=\"admin\",kind=\"unauthorized\"} 4",
        "fleetlock_store_up 1",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in:\n{m}");
    }
}

/// RFC 3339 of `secs` computed by coreutils `date`, independently of our formatter.
fn rfc3339_via_date(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_lapse_unless_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let srv = sqlite_server(
        &dir,
        Options {
            groups: groups(&[("default", 1)]),
            admin_token: None,
            // Deadlines are whole seconds: 3 s leaves a renewal every 0.9 s more
            // than a second of slack on a loaded machine.
            lease_ttl_secs: Some(3),
        },
    );
    let u = srv.url.as_str();
    let a = Client::new(u, "a", "default", T).unwrap();
    let b = Client::new(u, "b", "default", T).unwrap();
    a.pre_reboot().await.unwrap();
    let st = AdminClient::new(u, None, T)
        .unwrap()
        .status()
        .await
        .unwrap();
    assert!(st.groups[0].holders[0].expires.is_some(), "lease shown");
    // Renewing keeps the slot past the first deadline.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        a.pre_reboot().await.unwrap();
        assert!(b.pre_reboot().await.is_err());
    }
    // The same from the client's background renewal.
    let renewing = a.keep_alive(Duration::from_millis(500));
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(b.pre_reboot().await.is_err(), "kept alive");
    }
    drop(renewing);
    // A node that stops renewing (died, reinstalled) loses its slot.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let st = AdminClient::new(u, None, T)
        .unwrap()
        .status()
        .await
        .unwrap();
    assert!(
        st.groups[0].holders.is_empty(),
        "lapsed holder hidden: {st:?}"
    );
    b.pre_reboot().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failure_is_a_500_with_kind() {
    // An etcd endpoint nobody listens on: connection refused.
    let store = EtcdStore::new(EtcdOptions {
        endpoints: vec![format!("http://127.0.0.1:{}", common::free_port())],
        prefix: "t".into(),
        request_timeout: Duration::from_secs(2),
        ..EtcdOptions::default()
    })
    .unwrap();
    let srv = Server::start(
        Box::new(store),
        Options {
            groups: groups(&[("default", 1)]),
            ..Options::default()
        },
        any_addr(),
    );
    let c = Client::new(&srv.url, "a", "default", T).unwrap();
    let e = c.pre_reboot().await.unwrap_err();
    assert_eq!(e.kind(), "failed_sem_init", "{e}");
    assert!(e.to_string().contains("code 500"), "{e}");
    let e = c.steady_state().await.unwrap_err();
    assert_eq!(e.kind(), "failed_unlock", "{e}");
    let m = AdminClient::new(&srv.url, None, T)
        .unwrap()
        .metrics()
        .await
        .unwrap();
    assert!(m.contains("fleetlock_store_up 0"), "{m}");
}

/// The client against a server that is not ours: Zincati's mock-test error body
/// served with 404, and a non-JSON error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reads_foreign_error_bodies() {
    use axum::routing::post;
    let zincati_err = fixture("error-body.zincati-mock-test.json");
    let app = axum::Router::new()
        .route(
            "/fl/v1/pre-reboot",
            post(move || async move { (axum::http::StatusCode::NOT_FOUND, zincati_err) }),
        )
        .route(
            "/fl/v1/steady-state",
            post(|| async { (axum::http::StatusCode::BAD_GATEWAY, "upstream down") }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    let c = Client::new(&format!("http://{addr}/fl"), "a", "default", T).unwrap();
    let e = c.pre_reboot().await.unwrap_err();
    assert_eq!(e.kind(), "f1");
    assert_eq!(
        e.to_string(),
        "server-side error, code 404: pre-reboot failure"
    );
    let e = c.steady_state().await.unwrap_err();
    assert_eq!(e.kind(), "generic_http_502");
    let dead = Client::new(
        &format!("http://127.0.0.1:{}/", common::free_port()),
        "a",
        "default",
        T,
    )
    .unwrap();
    assert_eq!(
        dead.pre_reboot().await.unwrap_err().kind(),
        "client_failed_request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::make_pki(
        d,
        &[(
            "leaf",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n",
        )],
    );

    // Misconfigurations name the file.
    let e = fleetlock::tls::server_config(&d.join("nope.pem"), &d.join("leaf.key")).unwrap_err();
    assert!(e.contains("nope.pem"), "{e}");
    let e = fleetlock::tls::server_config(&d.join("leaf.pem"), &d.join("ca.key")).unwrap_err();
    assert!(e.contains("do not form a usable pair"), "{e}");

    let tls = fleetlock::tls::server_config(&d.join("leaf.pem"), &d.join("leaf.key")).unwrap();
    let store = SqliteStore::open(&d.join("fl.sqlite")).unwrap();
    let opts = Options {
        groups: groups(&[("default", 1)]),
        ..Options::default()
    };
    let srv = Server::start_with(Box::new(store), opts, any_addr(), Some(tls));
    assert!(srv.url.starts_with("https://127.0.0.1:"));

    let ca = std::fs::read(d.join("ca.pem")).unwrap();
    let http = fleetlock::client::http_client(T, Some(&ca)).unwrap();
    let c = Client::with_http_client(&srv.url, "a", "default", http.clone()).unwrap();
    c.pre_reboot().await.unwrap();
    let st = AdminClient::with_http_client(&srv.url, None, http)
        .unwrap()
        .status()
        .await
        .unwrap();
    assert_eq!(st.groups[0].holders[0].id, "a");
    c.steady_state().await.unwrap();

    // Without the CA the certificate is not trusted; plain HTTP is not spoken.
    let untrusting = Client::new(&srv.url, "a", "default", T).unwrap();
    assert_eq!(
        untrusting.pre_reboot().await.unwrap_err().kind(),
        "client_failed_request"
    );
    let plain = Client::new(&srv.url.replace("https", "http"), "a", "default", T).unwrap();
    assert!(plain.pre_reboot().await.is_err());
    assert!(matches!(
        fleetlock::client::http_client(T, Some(b"not pem")),
        Err(ClientError::Build(_))
    ));
}
