//! The etcd store against real etcd (Debian `etcd-server`, `etcd-client` for
//! `etcdctl`) started on loopback: airlock's key layout as seen by etcdctl, sharing
//! with an airlock-written value, and a 3-member cluster losing a member mid-test.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{any_addr, Etcd, Server};
use fleetlock::client::{AdminClient, Client};
use fleetlock::server::Options;
use fleetlock::store::{EtcdOptions, EtcdStore, DEFAULT_PREFIX};

const T: Duration = Duration::from_secs(10);

fn etcd_server(endpoints: &[String], slots: u64) -> Server {
    let store = EtcdStore::new(EtcdOptions {
        endpoints: endpoints.to_vec(),
        prefix: DEFAULT_PREFIX.into(),
        request_timeout: Duration::from_secs(2),
        ..EtcdOptions::default()
    })
    .unwrap();
    let groups: BTreeMap<String, u64> = [("default".to_string(), slots)].into();
    Server::start(
        Box::new(store),
        Options {
            groups,
            ..Options::default()
        },
        any_addr(),
    )
}

fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run etcdctl ({e}); install the Debian package etcd-client")
        });
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const KEY: &str = "com.coreos.airlock/groups/default/v1/semaphore";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airlock_layout_and_interop() {
    let etcd = Etcd::start(1).await;
    let ep = etcd.client_urls[0].clone();
    let srv = etcd_server(&etcd.client_urls, 2);
    let (b, a) = (
        Client::new(&srv.url, "b-node", "default", T).unwrap(),
        Client::new(&srv.url, "a-node", "default", T).unwrap(),
    );
    b.pre_reboot().await.unwrap();
    a.pre_reboot().await.unwrap();

    // What airlock would read: same key, total_slots, holders sorted.
    let raw = etcdctl(&ep, &["get", KEY, "--print-value-only"]);
    let v: serde_json::Value = serde_json::from_str(raw.trim()).unwrap();
    assert_eq!(v["total_slots"], 2);
    assert_eq!(v["holders"], serde_json::json!(["a-node", "b-node"]));
    assert!(v["holder_info"]["a-node"]["since"].is_u64(), "{v}");

    // A value as airlock writes it (one holder, no details) is honoured.
    etcdctl(
        &ep,
        &[
            "put",
            KEY,
            r#"{"total_slots":2,"holders":["airlock-node"]}"#,
        ],
    );
    let st = AdminClient::new(&srv.url, None, T)
        .unwrap()
        .status()
        .await
        .unwrap();
    let h = &st.groups[0].holders;
    assert_eq!(
        (h.len(), h[0].id.as_str(), h[0].since.as_deref()),
        (1, "airlock-node", None)
    );
    a.pre_reboot().await.unwrap();
    let e = b.pre_reboot().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "server-side error, code 500: all 2 semaphore slots currently locked"
    );
    a.steady_state().await.unwrap();
    let raw = etcdctl(&ep, &["get", KEY, "--print-value-only"]);
    assert_eq!(
        raw.trim(),
        r#"{"total_slots":2,"holders":["airlock-node"]}"#,
        "airlock-identical bytes"
    );

    // A corrupt value is reported, not overwritten.
    etcdctl(&ep, &["put", KEY, "garbage"]);
    let e = a.pre_reboot().await.unwrap_err();
    assert_eq!(e.kind(), "failed_sem_init");
    assert!(
        e.to_string()
            .contains("corrupt semaphore state for group \"default\""),
        "{e}"
    );
    assert_eq!(
        etcdctl(&ep, &["get", KEY, "--print-value-only"]).trim(),
        "garbage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_cluster_loses_a_member_mid_test() {
    let mut etcd = Etcd::start(3).await;
    // Member 0 first in every server's list: killing it forces a failover.
    let srv = etcd_server(&etcd.client_urls, 2);
    let url = srv.url.clone();
    let admin = AdminClient::new(&url, None, T).unwrap();
    let keeper = Client::new(&url, "keeper", "default", T).unwrap();
    keeper.pre_reboot().await.unwrap();

    // Traffic from several clients across the kill; every one must complete its
    // rounds and never see more than one other holder besides the keeper.
    let over = Arc::new(AtomicU64::new(0));
    let inside = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..6)
        .map(|n| {
            let (url, over, inside, done) =
                (url.clone(), over.clone(), inside.clone(), done.clone());
            tokio::spawn(async move {
                let c = Client::new(&url, &format!("n{n}"), "default", T).unwrap();
                for _ in 0..15 {
                    while c.pre_reboot().await.is_err() {
                        tokio::time::sleep(Duration::from_millis(5 + rand::random::<u64>() % 20))
                            .await;
                    }
                    if inside.fetch_add(1, Ordering::SeqCst) + 1 > 1 {
                        over.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    while c.steady_state().await.is_err() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    while done.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    etcd.kill(0);
    let killed_at = done.load(Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(killed_at < 90, "kill happened mid-traffic ({killed_at}/90)");
    assert_eq!(done.load(Ordering::SeqCst), 90);
    assert_eq!(over.load(Ordering::SeqCst), 0, "more holders than slots");

    // State written before the kill survived on the remaining quorum.
    let st = admin.status().await.unwrap();
    let ids: Vec<_> = st.groups[0].holders.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["keeper"]);
    let ep1 = etcd.client_urls[1].clone();
    let raw = etcdctl(&ep1, &["get", KEY, "--print-value-only"]);
    assert!(raw.contains(r#""holders":["keeper"]"#), "{raw}");
    keeper.steady_state().await.unwrap();

    // Losing quorum: a refusal with a kind, not a hang or a false grant.
    etcd.kill(1);
    let c = Client::new(&url, "late", "default", T).unwrap();
    let e = c.pre_reboot().await.unwrap_err();
    assert_eq!(e.kind(), "failed_sem_init", "{e}");
}

/// A cluster that requires HTTPS and client certificates (airlock's
/// `client_cert_pub_path`/`client_cert_key_path` setup), configured through TOML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_with_client_certificates() {
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    // etcd's gateway dials its own gRPC port with the server certificate, so that
    // certificate needs clientAuth too.
    common::make_pki(
        d,
        &[
            (
                "server",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ],
    );
    let etcd = Etcd::start_with(1, Some(d)).await;
    assert!(etcd.client_urls[0].starts_with("https://"));
    let toml = |with_cert: bool| {
        let mut t = format!(
            "[store]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nca_cert = \"{}\"\n",
            etcd.client_urls[0],
            d.join("ca.pem").display()
        );
        if with_cert {
            t += &format!(
                "client_cert = \"{}\"\nclient_key = \"{}\"\n",
                d.join("client.pem").display(),
                d.join("client.key").display()
            );
        }
        fleetlock::config::Config::parse(&t, std::path::Path::new("t.toml")).unwrap()
    };
    let opts = || Options {
        groups: [("default".to_string(), 1)].into(),
        ..Options::default()
    };

    let cfg = toml(true);
    let srv = Server::start(cfg.store.open().unwrap(), opts(), any_addr());
    let c = Client::new(&srv.url, "a", "default", T).unwrap();
    c.pre_reboot().await.unwrap();
    let st = AdminClient::new(&srv.url, None, T)
        .unwrap()
        .status()
        .await
        .unwrap();
    assert_eq!(st.groups[0].holders[0].id, "a");
    c.steady_state().await.unwrap();

    // Without a client certificate the cluster refuses us, and we say so.
    let cfg = toml(false);
    let srv = Server::start(cfg.store.open().unwrap(), opts(), any_addr());
    let e = Client::new(&srv.url, "a", "default", T)
        .unwrap()
        .pre_reboot()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "failed_sem_init", "{e}");
}
