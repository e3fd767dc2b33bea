//! Safety under load: many clients × rounds of lock/unlock while an observer polls
//! continuously, with one server crash-and-restart in the middle.
//!
//! Checked:
//! * holders ≤ slots in every status poll (observer), and clients inside their
//!   critical section ≤ slots at every moment (counted client-side, so a grant the
//!   store forgot would show up here even if status looked fine);
//! * at quiescent checkpoints (right after the restart and at the end), the store's
//!   holders are exactly the clients that believe they hold a slot: nothing lost,
//!   nothing duplicated, nothing leaked;
//! * every client completes every round.
//!
//! Sizes: `FLEETLOCK_CLIENTS` (default 40) and `FLEETLOCK_ROUNDS` (default 5); the
//! issue's full run is `FLEETLOCK_CLIENTS=200 FLEETLOCK_ROUNDS=20`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{any_addr, Etcd, Server};
use fleetlock::client::{AdminClient, Client, ClientError};
use fleetlock::server::Options;
use fleetlock::store::{EtcdOptions, EtcdStore, SqliteStore, Store};
use tokio::sync::RwLock;

const GROUPS: [(&str, u64); 2] = [("default", 3), ("workers", 1)];
const T: Duration = Duration::from_secs(10);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

fn options() -> Options {
    Options {
        groups: GROUPS.iter().map(|(g, s)| (g.to_string(), *s)).collect(),
        ..Options::default()
    }
}

struct Shared {
    /// Per group: clients currently between "lock granted" and "unlock sent".
    in_section: [AtomicU64; 2],
    max_in_section: [AtomicU64; 2],
    /// Per group: most holders seen in one status poll.
    max_seen: [AtomicU64; 2],
    /// Per group: clients whose last definitive answer says they hold a slot.
    believed: Mutex<[BTreeSet<String>; 2]>,
    grants: AtomicUsize,
    /// Readers: one protocol operation until its definitive answer. Writer: a
    /// checkpoint that needs no operation in flight.
    gate: RwLock<()>,
    violations: Mutex<Vec<String>>,
    /// Set from just before the crash until the post-restart checkpoint.
    restarting: AtomicBool,
    /// Failed requests retried (transport errors and 5xx store errors).
    retried: AtomicUsize,
}

/// Repeats `op` until it succeeds or the semaphore is full, switching servers on
/// failures: a request cut by the crash (connection dropped, or a 500 from a store
/// worker cancelled by the dying runtime) may or may not have been applied, and only
/// a repeat (both operations are idempotent) tells which. Such failures are only
/// acceptable while the restart is going on.
async fn definitive<F, Fut>(
    sh: &Shared,
    clients: &[Client],
    start: usize,
    op: F,
) -> Result<(), ClientError>
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let mut i = start;
    loop {
        match op(clients[i % clients.len()].clone()).await {
            Err(e) if e.kind() != "failed_lock" || e.to_string().contains("conflict") => {
                if !sh.restarting.load(Ordering::SeqCst) {
                    sh.violations
                        .lock()
                        .unwrap()
                        .push(format!("failure outside the restart: {e}"));
                }
                sh.retried.fetch_add(1, Ordering::Relaxed);
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

async fn run_client(n: usize, urls: Vec<String>, rounds: usize, sh: Arc<Shared>) {
    let gi = n % 2;
    let (group, slots) = GROUPS[gi];
    let id = format!("node-{n:04}");
    let clients: Vec<Client> = urls
        .iter()
        .map(|u| Client::new(u, &id, group, T).unwrap())
        .collect();
    for _ in 0..rounds {
        loop {
            let g = sh.gate.read().await;
            let r = definitive(&sh, &clients, n, |c| async move { c.pre_reboot().await }).await;
            match r {
                Ok(()) => {
                    sh.believed.lock().unwrap()[gi].insert(id.clone());
                    drop(g);
                    break;
                }
                Err(e) => {
                    drop(g);
                    assert_eq!(e.kind(), "failed_lock", "{id}: {e}");
                    let ms = 2 + rand::random::<u64>() % 15;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
        }
        sh.grants.fetch_add(1, Ordering::Relaxed);
        let now = sh.in_section[gi].fetch_add(1, Ordering::SeqCst) + 1;
        sh.max_in_section[gi].fetch_max(now, Ordering::SeqCst);
        if now > slots {
            sh.violations
                .lock()
                .unwrap()
                .push(format!("{now} clients inside {group}'s {slots} slots"));
        }
        // Holding longer than a grant takes keeps every slot busy, so the limits
        // are really exercised.
        tokio::time::sleep(Duration::from_millis(5 + rand::random::<u64>() % 10)).await;
        sh.in_section[gi].fetch_sub(1, Ordering::SeqCst);
        let g = sh.gate.read().await;
        definitive(
            &sh,
            &clients,
            n + 1,
            |c| async move { c.steady_state().await },
        )
        .await
        .unwrap_or_else(|e| panic!("{id}: unlock failed: {e}"));
        sh.believed.lock().unwrap()[gi].remove(&id);
        drop(g);
    }
}

/// Holders per group according to the server at `url`.
async fn holders(url: &str) -> Result<BTreeMap<String, Vec<String>>, ClientError> {
    let st = AdminClient::new(url, None, T).unwrap().status().await?;
    Ok(st
        .groups
        .into_iter()
        .map(|g| (g.name, g.holders.into_iter().map(|h| h.id).collect()))
        .collect())
}

/// Compares the store with the clients' beliefs while no operation is in flight.
async fn checkpoint(url: &str, sh: &Shared, when: &str) {
    let _quiet = sh.gate.write().await;
    let stored = holders(url).await.expect("status at checkpoint");
    let believed = sh.believed.lock().unwrap().clone();
    for (gi, (group, _)) in GROUPS.iter().enumerate() {
        let s: BTreeSet<String> = stored[*group].iter().cloned().collect();
        assert_eq!(
            s.len(),
            stored[*group].len(),
            "{when}: duplicated holder in {group}"
        );
        assert_eq!(s, believed[gi], "{when}: store vs clients in group {group}");
    }
}

/// Runs the scenario. `start(i)` (re)starts server `i` on `addrs[i]` (port 0 = new).
async fn scenario(
    label: &str,
    n_servers: usize,
    start: impl Fn(usize, std::net::SocketAddr) -> Server + Send + Sync + 'static,
) {
    let clients = env_or("FLEETLOCK_CLIENTS", 40);
    let rounds = env_or("FLEETLOCK_ROUNDS", 5);
    let t0 = std::time::Instant::now();
    let mut servers: Vec<Server> = (0..n_servers).map(|i| start(i, any_addr())).collect();
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let sh = Arc::new(Shared {
        in_section: Default::default(),
        max_in_section: Default::default(),
        max_seen: Default::default(),
        believed: Mutex::new(Default::default()),
        grants: AtomicUsize::new(0),
        gate: RwLock::new(()),
        violations: Mutex::new(Vec::new()),
        restarting: AtomicBool::new(false),
        retried: AtomicUsize::new(0),
    });

    // Observer: polls status continuously, on whichever server answers.
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicUsize::new(0));
    let observer = {
        let (urls, stop, polls, sh) = (urls.clone(), stop.clone(), polls.clone(), sh.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match holders(&urls[i % urls.len()]).await {
                    Ok(h) => {
                        polls.fetch_add(1, Ordering::Relaxed);
                        for (gi, (group, slots)) in GROUPS.into_iter().enumerate() {
                            sh.max_seen[gi].fetch_max(h[group].len() as u64, Ordering::Relaxed);
                            if h[group].len() as u64 > slots {
                                sh.violations.lock().unwrap().push(format!(
                                    "status shows {} holders in {group} ({slots} slots)",
                                    h[group].len()
                                ));
                            }
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        })
    };

    let tasks: Vec<_> = (0..clients)
        .map(|n| tokio::spawn(run_client(n, urls.clone(), rounds, sh.clone())))
        .collect();

    // Crash server 0 once half the grants are done, then restart it on its address.
    let total = clients * rounds;
    while sh.grants.load(Ordering::Relaxed) < total / 2 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let addr = servers[0].addr;
    sh.restarting.store(true, Ordering::SeqCst);
    servers[0].kill();
    tokio::time::sleep(Duration::from_millis(100)).await;
    servers[0] = tokio::task::spawn_blocking({
        let start = Arc::new(start);
        move || start(0, addr)
    })
    .await
    .unwrap();
    checkpoint(&urls[0], &sh, "after restart").await;
    sh.restarting.store(false, Ordering::SeqCst);
    let at_restart = sh.grants.load(Ordering::Relaxed);

    for t in tasks {
        tokio::time::timeout(Duration::from_secs(300), t)
            .await
            .expect("clients finish")
            .expect("client task");
    }
    stop.store(true, Ordering::Relaxed);
    observer.await.unwrap();
    checkpoint(&urls[0], &sh, "at the end").await;
    for url in &urls {
        let h = holders(url).await.unwrap();
        assert!(
            h.values().all(Vec::is_empty),
            "{label}: leaked holders {h:?}"
        );
    }

    let v = sh.violations.lock().unwrap().clone();
    assert!(
        v.is_empty(),
        "{label}: {} violations, first: {:?}",
        v.len(),
        v.first()
    );
    assert_eq!(sh.grants.load(Ordering::Relaxed), total);
    assert!(at_restart < total, "the restart happened mid-run");
    let load = |a: &[AtomicU64; 2]| [a[0].load(Ordering::Relaxed), a[1].load(Ordering::Relaxed)];
    let (in_section, seen) = (load(&sh.max_in_section), load(&sh.max_seen));
    eprintln!(
        "{label}: {clients} clients x {rounds} rounds in {:.1} s, {} status polls, max holders seen {seen:?}, \
         max clients in section {in_section:?}, restart after {at_restart} grants, \
         {} requests retried around the restart",
        t0.elapsed().as_secs_f64(),
        polls.load(Ordering::Relaxed),
        sh.retried.load(Ordering::Relaxed)
    );
    assert!(polls.load(Ordering::Relaxed) > 10, "observer kept polling");
    // Contention reached the limits, or the test proved nothing.
    assert_eq!(
        seen,
        [GROUPS[0].1, GROUPS[1].1],
        "{label}: slots were never all in use"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_with_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fleetlock.sqlite");
    scenario("sqlite", 1, move |_, addr| {
        let store: Box<dyn Store> = Box::new(SqliteStore::open(&db).unwrap());
        Server::start(store, options(), addr)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_sharing_etcd_with_restart() {
    let etcd = Etcd::start(1).await;
    let endpoints = etcd.client_urls.clone();
    scenario("etcd", 2, move |_, addr| {
        let store: Box<dyn Store> = Box::new(
            EtcdStore::new(EtcdOptions {
                endpoints: endpoints.clone(),
                prefix: "invariant".into(),
                request_timeout: Duration::from_secs(5),
                ..EtcdOptions::default()
            })
            .unwrap(),
        );
        Server::start(store, options(), addr)
    })
    .await;
    drop(etcd);
}

/// Two processes' worth of SQLite handles on one file (e.g. a server and its
/// replacement overlapping during an upgrade): BEGIN IMMEDIATE must serialize them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sqlite_handles_on_one_file() {
    use fleetlock::semaphore::{self, LockParams};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.sqlite");
    let stores: Vec<Arc<dyn Store>> = (0..2)
        .map(|_| Arc::new(SqliteStore::open(&db).unwrap()) as Arc<dyn Store>)
        .collect();
    let inside = Arc::new(AtomicU64::new(0));
    let max = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (store, inside, max) = (stores[n % 2].clone(), inside.clone(), max.clone());
            tokio::spawn(async move {
                let id = format!("n{n}");
                for _ in 0..25 {
                    loop {
                        let id2 = id.clone();
                        let r = store
                            .apply(
                                "default",
                                Arc::new(move |s| {
                                    let p = LockParams {
                                        slots: 2,
                                        now: 0,
                                        ttl: None,
                                    };
                                    semaphore::lock(s, &id2, p)
                                }),
                            )
                            .await;
                        match r {
                            Ok(_) => break,
                            Err(fleetlock::Error::Full { .. }) => tokio::task::yield_now().await,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    let id2 = id.clone();
                    store
                        .apply(
                            "default",
                            Arc::new(move |s| Ok(semaphore::unlock(s, &id2, 2, 0))),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        max.load(Ordering::SeqCst),
        2,
        "never more than 2, and 2 reached"
    );
    for s in &stores {
        assert!(s.load("default").await.unwrap().holders.is_empty());
    }
}
