//! Test harness: real etcd processes on loopback, and FleetLock servers that can be
//! crashed and restarted.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetlock::server::{FleetLock, Options};
use fleetlock::store::Store;

/// Fixture directory, `../shared/fixtures` beside the repository.
pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures"
    ))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// An etcd cluster of real `etcd` processes (Debian package `etcd-server`), each with
/// its own data dir in a temp dir; every member is killed on drop.
pub struct Etcd {
    members: Vec<Option<Child>>,
    /// Client URL of each member.
    pub client_urls: Vec<String>,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts `n` members and waits until every one reports healthy.
    pub async fn start(n: usize) -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let peer_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let cluster = (0..n)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", peer_ports[i]))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        let mut client_urls = Vec::new();
        for i in 0..n {
            let curl = format!("http://127.0.0.1:{}", client_ports[i]);
            let purl = format!("http://127.0.0.1:{}", peer_ports[i]);
            let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).unwrap();
            let child = Command::new("etcd")
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{i}.etcd")))
                .args([
                    "--listen-client-urls",
                    &curl,
                    "--advertise-client-urls",
                    &curl,
                ])
                .args([
                    "--listen-peer-urls",
                    &purl,
                    "--initial-advertise-peer-urls",
                    &purl,
                ])
                .args([
                    "--initial-cluster",
                    &cluster,
                    "--initial-cluster-state",
                    "new",
                ])
                .args([
                    "--initial-cluster-token",
                    &format!("fleetlock-test-{}", client_ports[0]),
                ])
                // Short timers: the tests kill members and want a fast re-election.
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run `etcd` ({e}); install the Debian package etcd-server")
                });
            members.push(Some(child));
            client_urls.push(curl);
        }
        let etcd = Etcd {
            members,
            client_urls,
            dir,
        };
        for i in 0..n {
            etcd.wait_healthy(i).await;
        }
        etcd
    }

    async fn wait_healthy(&self, i: usize) {
        let http = reqwest::Client::new();
        let url = format!("{}/health", self.client_urls[i]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(1)).send().await {
                if r.text().await.unwrap_or_default().contains("\"true\"") {
                    return;
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join(format!("m{i}.log")))
                    .unwrap_or_default();
                let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
                panic!("etcd member {i} not healthy after 30 s; log tail (reversed):\n{tail}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A FleetLock server on its own runtime, so that stopping it drops every
/// connection and in-flight request at once, like a crash.
pub struct Server {
    /// Base URL, `http://127.0.0.1:<port>/`.
    pub url: String,
    /// Bound address (reused on restart).
    pub addr: SocketAddr,
    /// The service, for direct calls (e.g. `set_groups`).
    pub app: Arc<FleetLock>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Starts a server over `store` on `addr` (port 0 = any free port); retries the
    /// bind for a while because a just-stopped server may still hold the port.
    pub fn start(store: Box<dyn Store>, opts: Options, addr: SocketAddr) -> Server {
        Self::start_with(store, opts, addr, None)
    }

    /// Like [`Server::start`], over TLS when `tls` is given.
    pub fn start_with(
        store: Box<dyn Store>,
        opts: Options,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Server {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = FleetLock::new(store, opts);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let app2 = app.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            match tls {
                Some(tls) => {
                    fleetlock::server::serve_tls(l, tls, app2, std::future::pending()).await
                }
                None => fleetlock::server::serve(l, app2, std::future::pending()).await,
            }
        });
        Server {
            url: format!("{scheme}://{addr}/"),
            addr,
            app,
            rt: Some(rt),
        }
    }

    /// Stops the server abruptly.
    pub fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Any free loopback address.
pub fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
