//! ferrocore's Cincinnati update service: the Fedora CoreOS update graph, per-client
//! rollout policy, and rollouts that pause themselves when updates fail.
//!
//! Data flow: the release index and updates metadata of each stream are read from a
//! data directory or downloaded from URLs ([`source`]); [`builder::build_graph`]
//! turns them into one raw graph per (stream, basearch, scheme) with upstream's edge
//! rules; each `GET /v1/graph`
//! request picks its scope, computes the client's wariness ([`policy::wariness`]) and
//! hides the rollouts whose ramp has not reached it, plus any rollout paused by
//! failure reports ([`reports`]). Inputs are polled and swapped atomically on change,
//! so reloads never interrupt requests. The server holds no per-client state, so
//! several instances can run behind a load balancer (each with its own report
//! database, or a shared file on one host).
//!
//! HTTP API (see [`server`]): `GET /v1/graph` (upstream's URL, parameters and
//! response; bad parameters get a Cincinnati `{"kind","value"}` error body),
//! `POST /v1/report`, `GET /v1/status`, `GET /metrics` (Prometheus text).
//!
//! Library entry points: [`Server::start`] (tests, embedding) and [`run`] (CLI).

pub mod builder;
pub mod clock;
mod metrics;
pub mod policy;
pub mod reports;
pub mod server;
pub mod source;

pub use clock::{Clock, FixedClock, SystemClock};
pub use reports::{Outcome, Report, ReportStore};
pub use source::Inputs;

use release_meta::sign::{SigningKey, VerifyingKey};
use server::AppState;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Errors of the update server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input metadata could not be read or parsed.
    #[error(transparent)]
    Meta(#[from] release_meta::Error),
    /// The inputs are unreachable (missing directory, failed download).
    #[error("input: {0}")]
    Input(String),
    /// The report database failed.
    #[error("report database: {0}")]
    Db(String),
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Server configuration.
pub struct Config {
    /// Where release indexes and updates metadata come from (see [`source`]).
    pub inputs: Inputs,
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Report database; `None` keeps reports in memory only.
    pub db_path: Option<PathBuf>,
    /// Distinct failing nodes that pause a rollout.
    pub pause_after_failures: u64,
    /// How often the inputs are checked for changes.
    pub reload_interval: Duration,
    /// Key to sign graph responses with (header [`server::SIGNATURE_HEADER`]).
    pub signing_key: Option<SigningKey>,
    /// When set, inputs are only accepted with a valid `<file>.sig` by this key.
    pub verify_inputs: Option<VerifyingKey>,
    /// Time source for rollout ramps.
    pub clock: Arc<dyn Clock>,
}

impl Config {
    /// Serves a data directory. Defaults: loopback port 0, in-memory reports, pause
    /// after 3 failing nodes, 1 s reload polling, no signing, system clock.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config::with_inputs(Inputs::Dir(data_dir.into()))
    }

    /// Serves `inputs`, with the defaults of [`Config::new`].
    pub fn with_inputs(inputs: Inputs) -> Config {
        Config {
            inputs,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            db_path: None,
            pause_after_failures: 3,
            reload_interval: Duration::from_secs(1),
            signing_key: None,
            verify_inputs: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
    reload: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Loads the inputs (failing if they are unusable), binds and starts serving.
    pub async fn start(config: Config) -> Result<Server, Error> {
        let store = match &config.db_path {
            Some(p) => ReportStore::open(p, config.pause_after_failures)?,
            None => ReportStore::in_memory(config.pause_after_failures)?,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Input(e.to_string()))?;
        let signed = config.verify_inputs.is_some();
        let (fingerprint, raw) = read_inputs(&config.inputs, &http, signed).await?;
        let now = config.clock.now();
        let key = config.verify_inputs.clone();
        let snapshot =
            tokio::task::spawn_blocking(move || source::build(fingerprint, raw, now, key.as_ref()))
                .await
                .map_err(|e| Error::Input(e.to_string()))??;
        let state = Arc::new(AppState {
            snapshot: RwLock::new(Arc::new(snapshot)),
            paused: RwLock::new(Arc::new(store.paused()?)),
            store: Arc::new(store),
            metrics: metrics::Metrics::new(release_meta::time::now_unix()),
            clock: config.clock,
            signing_key: config.signing_key,
            inputs: config.inputs,
            verify_inputs: config.verify_inputs,
            http,
        });
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = server::router(state.clone());
        let serve = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        let reload = tokio::spawn(reload_loop(state, config.reload_interval));
        Ok(Server {
            addr,
            stop: Some(tx),
            serve,
            reload,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish, and returns.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.reload.abort();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match (&mut self.serve).await {
            Ok(r) => r.map_err(Error::Io),
            Err(e) => Err(Error::Io(std::io::Error::other(e))),
        }
    }
}

/// Reads or downloads the inputs with their fingerprint.
async fn read_inputs(
    inputs: &Inputs,
    http: &reqwest::Client,
    signed: bool,
) -> Result<(source::Fingerprint, Vec<source::RawStream>), Error> {
    match inputs {
        Inputs::Dir(dir) => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || source::read_dir(&dir))
                .await
                .map_err(|e| Error::Input(e.to_string()))?
        }
        Inputs::Urls {
            releases,
            updates,
            streams,
        } => source::fetch_urls(http, releases, updates, streams, signed).await,
    }
}

/// Whether the inputs may have changed since `current` was built. For a directory
/// this only stats the files; URLs have to be downloaded to know.
async fn reload_once(st: &Arc<AppState>) -> Result<bool, Error> {
    let current = st.snapshot();
    if let Inputs::Dir(dir) = &st.inputs {
        let dir = dir.clone();
        let fp = tokio::task::spawn_blocking(move || source::dir_fingerprint(&dir))
            .await
            .map_err(|e| Error::Input(e.to_string()))??;
        if fp == current.fingerprint {
            return Ok(false);
        }
    }
    let (fp, raw) = read_inputs(&st.inputs, &st.http, st.verify_inputs.is_some()).await?;
    if fp == current.fingerprint {
        return Ok(false);
    }
    let now = st.clock.now();
    let key = st.verify_inputs.clone();
    let snap = tokio::task::spawn_blocking(move || source::build(fp, raw, now, key.as_ref()))
        .await
        .map_err(|e| Error::Input(e.to_string()))??;
    *st.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
    Ok(true)
}

/// Polls the inputs and swaps in a new snapshot when they changed. Requests keep
/// using the snapshot they started with, so none is dropped or sees half an update;
/// a load that fails (unreachable URL, or a file written in place and caught
/// half-way) keeps the previous snapshot and is retried at the next tick.
async fn reload_loop(state: Arc<AppState>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match reload_once(&state).await {
            Ok(true) => {
                state.metrics.reloads.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(e) => {
                state
                    .metrics
                    .reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                eprintln!("update-server: reload failed, keeping previous inputs: {e}");
            }
        }
        // Pauses lifted by `ferrocore update-server resume` are picked up here.
        let st = state.clone();
        let refreshed = tokio::task::spawn_blocking(move || st.refresh_paused()).await;
        if let Ok(Err(e)) = refreshed {
            eprintln!("update-server: {e}");
        }
    }
}

/// Runs a server until SIGINT or SIGTERM, then drains in-flight requests.
pub fn run(config: Config) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = Server::start(config).await?;
        eprintln!("update-server: listening on http://{}", server.local_addr());
        shutdown_signal().await?;
        server.stop().await
    })
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (systemd, container runtimes).
async fn shutdown_signal() -> Result<(), Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
