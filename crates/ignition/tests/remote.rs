//! Remote resources against a local HTTP server on 127.0.0.1: retries,
//! timeouts, gzip, hash checks, headers (and their removal on redirects),
//! merge chains with cycle detection, and one side-by-side run with the real
//! Ignition 2.14 fetching from the same server. Needs root (chown, useradd).

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::Digest;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn sha512(data: &[u8]) -> String {
    format!("sha512-{}", hex::encode(sha2::Sha512::digest(data)))
}

/// Applies `cfg` (JSON text) to a fresh seeded root with fetch + files.
fn apply(cfg: &str) -> (tempfile::TempDir, ignition_engine::Result<()>) {
    common::require_root();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    common::seed(&root);
    let path = t.path().join("config.ign");
    std::fs::write(&path, cfg).unwrap();
    let opts = common::options(&root, &path, &t.path().join("work"));
    let res = ignition_engine::run(&opts);
    (t, res)
}

fn read(t: &tempfile::TempDir, p: &str) -> Vec<u8> {
    std::fs::read(t.path().join("root").join(p.trim_start_matches('/'))).unwrap()
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let srv = common::Server::start(|req, n| match req.path.as_str() {
        "/flaky" if n < 3 => (503, vec![], b"busy".to_vec()),
        "/flaky" => (200, vec![], b"finally\n".to_vec()),
        _ => (404, vec![], vec![]),
    });
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"files":[{{"path":"/etc/flaky","contents":{{"source":"{}/flaky"}}}}]}}}}"#,
        srv.base
    );
    let start = Instant::now();
    let (t, res) = apply(&cfg);
    res.unwrap();
    assert_eq!(read(&t, "/etc/flaky"), b"finally\n");
    assert_eq!(srv.hits("/flaky").len(), 3);
    // Two sleeps of 200 ms and 400 ms between the three attempts.
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn slow_response_headers_time_out_and_are_retried() {
    let srv = common::Server::start(|_, n| {
        if n == 1 {
            std::thread::sleep(Duration::from_millis(1500));
        }
        (200, vec![], b"eventually\n".to_vec())
    });
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0","timeouts":{{"httpResponseHeaders":1}}}},"storage":{{"files":[{{"path":"/etc/slow","contents":{{"source":"{}/slow"}}}}]}}}}"#,
        srv.base
    );
    let start = Instant::now();
    let (t, res) = apply(&cfg);
    res.unwrap();
    assert_eq!(read(&t, "/etc/slow"), b"eventually\n");
    assert!(srv.hits("/slow").len() >= 2);
    assert!(start.elapsed() >= Duration::from_secs(1));
}

#[test]
fn http_total_bounds_the_retries() {
    let srv = common::Server::start(|_, _| (500, vec![], vec![]));
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0","timeouts":{{"httpTotal":1}}}},"storage":{{"files":[{{"path":"/etc/never","contents":{{"source":"{}/down"}}}}]}}}}"#,
        srv.base
    );
    let start = Instant::now();
    let (t, res) = apply(&cfg);
    let e = res.unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.storage.files.0.contents.source"));
    assert!(
        e.message.contains("unable to fetch resource in time"),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(srv.hits("/down").len() >= 2);
    assert!(!t.path().join("root/etc/never").exists());
}

#[test]
fn connection_refused_is_retried_until_the_deadline() {
    // Bind and drop: the port is (almost certainly) closed afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0","timeouts":{{"httpTotal":1}}}},"storage":{{"files":[{{"path":"/etc/x","contents":{{"source":"http://127.0.0.1:{port}/x"}}}}]}}}}"#
    );
    let (_t, res) = apply(&cfg);
    let e = res.unwrap_err();
    assert!(
        e.message.contains("unable to fetch resource in time"),
        "{e}"
    );
}

#[test]
fn gzip_hash_and_headers() {
    let body = b"line one\nline two\n".repeat(50);
    let gz = gzip(&body);
    let srv = common::Server::start(move |req, _| match req.path.as_str() {
        "/gz" => (200, vec![], gz.clone()),
        "/secret" if req.headers.get("x-token").map(String::as_str) == Some("s3cr3t") => {
            (200, vec![], b"authorized\n".to_vec())
        }
        "/secret" => (403, vec![], vec![]),
        _ => (404, vec![], vec![]),
    });
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"files":[
            {{"path":"/etc/gz","contents":{{"source":"{b}/gz","compression":"gzip","verification":{{"hash":"{h}"}}}}}},
            {{"path":"/etc/secret","contents":{{"source":"{b}/secret","httpHeaders":[{{"name":"X-Token","value":"s3cr3t"}},{{"name":"Accept","value":"text/plain"}}]}}}}]}}}}"#,
        b = srv.base,
        h = sha512(&body)
    );
    let (t, res) = apply(&cfg);
    res.unwrap();
    assert_eq!(read(&t, "/etc/gz"), body);
    assert_eq!(read(&t, "/etc/secret"), b"authorized\n");
    let r = &srv.hits("/gz")[0];
    assert_eq!(r.headers["accept-encoding"], "identity");
    assert!(r.headers["user-agent"].starts_with("Ignition/"), "{r:?}");
    assert!(r.headers["accept"].contains("application/vnd.coreos.ignition+json"));
    // A config header replaces the default of the same name.
    assert_eq!(srv.hits("/secret")[0].headers["accept"], "text/plain");
}

#[test]
fn hash_mismatch_fails_with_the_field_path() {
    let srv = common::Server::start(|_, _| (200, vec![], b"tampered\n".to_vec()));
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"files":[
            {{"path":"/etc/a","contents":{{"source":"data:,a"}}}},
            {{"path":"/etc/b","append":[{{"source":"{}/b","verification":{{"hash":"{}"}}}}]}}]}}}}"#,
        srv.base,
        sha512(b"original\n")
    );
    let (t, res) = apply(&cfg);
    let e = res.unwrap_err();
    assert_eq!(
        e.path.as_deref(),
        Some("$.storage.files.1.append.0.verification.hash")
    );
    assert!(e.message.contains("hash verification failed"), "{e}");
    // Failing closed: nothing of the failed file's payload is written.
    let b = t.path().join("root/etc/b");
    assert!(!b.exists() || std::fs::read(&b).unwrap().is_empty());
}

#[test]
fn not_found_and_other_statuses_fail() {
    let srv = common::Server::start(|req, _| match req.path.as_str() {
        "/forbidden" => (403, vec![], vec![]),
        _ => (404, vec![], vec![]),
    });
    for (p, msg) in [
        ("/missing", "resource not found"),
        ("/forbidden", "failed to fetch resource"),
    ] {
        let cfg = format!(
            r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"files":[{{"path":"/etc/a"}},{{"path":"/etc/b"}},{{"path":"/etc/c"}},{{"path":"/etc/d","contents":{{"source":"{}{p}"}}}}]}}}}"#,
            srv.base
        );
        let (_t, res) = apply(&cfg);
        let e = res.unwrap_err();
        assert_eq!(e.path.as_deref(), Some("$.storage.files.3.contents.source"));
        assert!(e.message.contains(msg), "{e}");
    }
}

#[test]
fn redirects_drop_custom_headers() {
    let srv = common::Server::start(|req, _| match req.path.as_str() {
        "/start" => (302, vec![("Location".into(), "/end".into())], vec![]),
        _ => (200, vec![], b"landed\n".to_vec()),
    });
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"files":[{{"path":"/etc/r","contents":{{"source":"{}/start","httpHeaders":[{{"name":"X-Token","value":"t"}}]}}}}]}}}}"#,
        srv.base
    );
    let (t, res) = apply(&cfg);
    res.unwrap();
    assert_eq!(read(&t, "/etc/r"), b"landed\n");
    assert_eq!(srv.hits("/start")[0].headers["x-token"], "t");
    assert!(!srv.hits("/end")[0].headers.contains_key("x-token"));
}

#[test]
fn remote_merge_chain_and_cycle() {
    let base = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let b2 = base.clone();
    let srv = common::Server::start(move |req, _| {
        let b = b2.get().unwrap();
        let body = match req.path.as_str() {
            "/child.ign" => format!(
                r#"{{"ignition":{{"version":"3.2.0","config":{{"merge":[{{"source":"{b}/grandchild.ign"}}]}}}},"storage":{{"files":[{{"path":"/etc/child","contents":{{"source":"data:,child"}}}}]}}}}"#
            ),
            "/grandchild.ign" => r#"{"ignition":{"version":"3.0.0"},"storage":{"files":[{"path":"/etc/grandchild","contents":{"source":"data:,gc"}}]}}"#.to_string(),
            "/loop-a.ign" => format!(
                r#"{{"ignition":{{"version":"3.3.0","config":{{"merge":[{{"source":"{b}/loop-b.ign"}}]}}}}}}"#
            ),
            "/loop-b.ign" => format!(
                r#"{{"ignition":{{"version":"3.3.0","config":{{"replace":{{"source":"{b}/loop-a.ign"}}}}}}}}"#
            ),
            _ => return (404, vec![], vec![]),
        };
        (200, vec![], body.into_bytes())
    });
    base.set(srv.base.clone()).unwrap();
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0","config":{{"merge":[{{"source":"{}/child.ign"}}]}}}}}}"#,
        srv.base
    );
    let (t, res) = apply(&cfg);
    res.unwrap();
    assert_eq!(read(&t, "/etc/child"), b"child");
    assert_eq!(read(&t, "/etc/grandchild"), b"gc");
    let state: ignition_engine::State =
        serde_json::from_slice(&std::fs::read(t.path().join("work/state")).unwrap()).unwrap();
    let refs: Vec<&str> = state
        .fetched_configs
        .iter()
        .filter(|c| c.referenced)
        .map(|c| c.source.as_str())
        .collect();
    assert_eq!(refs, ["/child.ign", "/grandchild.ign"]);

    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0","config":{{"merge":[{{"source":"{}/loop-a.ign"}}]}}}}}}"#,
        srv.base
    );
    let (_t, res) = apply(&cfg);
    let e = res.unwrap_err();
    assert!(e.message.contains("cycle"), "{e}");
    assert_eq!(e.path.as_deref(), Some("$.ignition.config.replace.source"));
}

/// The real Ignition fetching from the same server must produce the same tree.
#[test]
fn remote_sources_match_real_ignition() {
    common::require_root();
    let body = b"remote payload\n".repeat(10);
    let gz = gzip(&body);
    let srv = common::Server::start(move |req, n| match req.path.as_str() {
        "/gz" => (200, vec![], gz.clone()),
        "/hdr" if req.headers.contains_key("x-auth") => (200, vec![], b"with header\n".to_vec()),
        "/hdr" => (401, vec![], vec![]),
        "/flaky" if n == 1 => (500, vec![], vec![]),
        "/flaky" => (200, vec![], b"second try\n".to_vec()),
        _ => (404, vec![], vec![]),
    });
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"files":[
            {{"path":"/etc/remote/gz","mode":384,"contents":{{"source":"{b}/gz","compression":"gzip","verification":{{"hash":"{h}"}}}}}},
            {{"path":"/etc/remote/hdr","contents":{{"source":"{b}/hdr","httpHeaders":[{{"name":"X-Auth","value":"yes"}}]}}}},
            {{"path":"/etc/remote/flaky","append":[{{"source":"{b}/flaky"}}]}}]}}}}"#,
        b = srv.base,
        h = sha512(&body)
    );
    let t = tempfile::tempdir().unwrap();
    let cfg_path = t.path().join("remote.ign");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let (ours, peer) = (t.path().join("ours"), t.path().join("peer"));
    common::seed(&ours);
    common::seed(&peer);
    let st = std::process::Command::new("sh")
        .arg(Path::new(common::SHARED).join("peers/run-real-ignition.sh"))
        .arg(&cfg_path)
        .arg(&peer)
        .env("LIST", "0")
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "real ignition failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    // The flaky resource now answers at once; both saw a success in the end.
    ignition_engine::run(&common::options(&ours, &cfg_path, &t.path().join("work"))).unwrap();
    let d = common::diff(&common::snapshot(&ours), &common::snapshot(&peer));
    assert!(d.is_empty(), "{}", d.join("\n"));
    assert_eq!(std::fs::read(ours.join("etc/remote/gz")).unwrap(), body);
}
