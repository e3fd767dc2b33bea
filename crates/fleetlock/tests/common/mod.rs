//! Test harness: real etcd processes on loopback, and FleetLock servers that can be
//! crashed and restarted.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
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

/// Runs openssl (Debian package `openssl`) in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}); install the Debian package openssl"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates in `dir` a CA (`ca.pem`) and, signed by it, a certificate + key for each
/// `(name, extensions)`: `<name>.pem`, `<name>.key`.
pub fn make_pki(dir: &Path, leaves: &[(&str, &str)]) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=fleetlock-test-ca",
    ];
    openssl(dir, &[&["req", "-x509"][..], &ec, &ca].concat());
    for (name, ext) in leaves {
        let (key, csr, pem, extf) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let subj = format!("/CN={name}");
        openssl(
            dir,
            &[
                &["req"][..],
                &ec,
                &["-keyout", &key, "-out", &csr, "-subj", &subj],
            ]
            .concat(),
        );
        std::fs::write(dir.join(&extf), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extf,
            ],
        );
    }
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
        Self::start_with(n, None).await
    }

    /// Like [`Etcd::start`]; with `tls = Some(dir)`, clients must speak HTTPS and
    /// present a certificate signed by `dir/ca.pem` (`--client-cert-auth`), and the
    /// members serve `dir/server.pem`. The harness itself uses `dir/client.pem`.
    pub async fn start_with(n: usize, tls: Option<&Path>) -> Etcd {
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
            let scheme = if tls.is_some() { "https" } else { "http" };
            let curl = format!("{scheme}://127.0.0.1:{}", client_ports[i]);
            let purl = format!("http://127.0.0.1:{}", peer_ports[i]);
            let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).unwrap();
            let mut cmd = Command::new("etcd");
            if let Some(d) = tls {
                cmd.arg("--cert-file").arg(d.join("server.pem"));
                cmd.arg("--key-file").arg(d.join("server.key"));
                cmd.arg("--trusted-ca-file").arg(d.join("ca.pem"));
                cmd.arg("--client-cert-auth");
            }
            let child = cmd
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
        let mut http = reqwest::Client::builder();
        if let Some(d) = tls {
            let ca = std::fs::read(d.join("ca.pem")).unwrap();
            let mut id = std::fs::read(d.join("client.pem")).unwrap();
            id.extend(std::fs::read(d.join("client.key")).unwrap());
            http = http
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .identity(reqwest::Identity::from_pem(&id).unwrap());
        }
        let http = http.build().unwrap();
        for i in 0..n {
            etcd.wait_healthy(&http, i).await;
        }
        etcd
    }

    async fn wait_healthy(&self, http: &reqwest::Client, i: usize) {
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
                Err(_) if Instant::now() < deadline => {
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
