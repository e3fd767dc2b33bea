//! Throughput of lock+unlock pairs over HTTP for both stores.
//!
//! `cargo bench -p fleetlock --bench ops`; `FLEETLOCK_BENCH_SECS` (default 3) and
//! `FLEETLOCK_BENCH_CLIENTS` (default 16) size the run. Every client has its own slot
//! (slots = clients), so the figure is store + HTTP cost, not waiting for slots; all
//! clients share one group, i.e. one SQLite row set or one etcd key, which is the
//! contended path.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{any_addr, Etcd, Server};
use fleetlock::client::Client;
use fleetlock::server::Options;
use fleetlock::store::{EtcdOptions, EtcdStore, SqliteStore, Store};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(label: &str, store: Box<dyn Store>, clients: u64, secs: u64) {
    let opts = Options {
        groups: [("default".to_string(), clients)].into(),
        ..Options::default()
    };
    let srv = Server::start(store, opts, any_addr());
    let stop = Arc::new(AtomicBool::new(false));
    let pairs = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let (url, stop, pairs) = (srv.url.clone(), stop.clone(), pairs.clone());
            tokio::spawn(async move {
                let c = Client::new(
                    &url,
                    &format!("bench-{n}"),
                    "default",
                    Duration::from_secs(10),
                )
                .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    c.pre_reboot().await.unwrap();
                    c.steady_state().await.unwrap();
                    pairs.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let n = pairs.load(Ordering::Relaxed);
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "{label:<8} {clients} clients: {n} lock+unlock pairs in {dt:.1} s = {:.0} pairs/s ({:.0} protocol requests/s)",
        n as f64 / dt,
        2.0 * n as f64 / dt
    );
}

fn main() {
    let secs = env_or("FLEETLOCK_BENCH_SECS", 3);
    let clients = env_or("FLEETLOCK_BENCH_CLIENTS", 16);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("bench.sqlite")).unwrap();
        run("sqlite", Box::new(sqlite), clients, secs).await;

        let etcd = Etcd::start(1).await;
        let store = EtcdStore::new(EtcdOptions {
            endpoints: etcd.client_urls.clone(),
            prefix: "bench".into(),
            request_timeout: Duration::from_secs(5),
            ..EtcdOptions::default()
        })
        .unwrap();
        run("etcd", Box::new(store), clients, secs).await;
    });
}
