//! `ferrocore fleetlock-server` (the FleetLock reboot coordinator) and
//! `ferrocore fleetlock` (operator verbs against a running server).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use fleetlock::client::{http_client, zincati_node_id, AdminClient, Client};
use fleetlock::config::Config;
use fleetlock::server::{FleetLock, Options};

#[derive(Parser)]
#[command(about = "FleetLock server: reboot slots per group (SQLite or etcd v3 store)")]
struct ServerArgs {
    /// TOML configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Listen address, overriding `listen` from the file.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
}

#[derive(Parser)]
#[command(about = "FleetLock client and admin verbs")]
struct ClientArgs {
    /// Server base URL, e.g. http://fleetlock.example.com:9090/
    #[arg(long, global = true, default_value = "http://127.0.0.1:9090/")]
    url: String,
    /// File with the admin bearer token (status, release).
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM file of a CA to trust for an https:// server with a private certificate.
    #[arg(long, global = true, value_name = "FILE")]
    cacert: Option<PathBuf>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Take a reboot slot for a node (`/v1/pre-reboot`).
    Lock {
        /// Node id; default: Zincati's id for this machine (from /etc/machine-id).
        #[arg(long)]
        id: Option<String>,
        /// Group.
        #[arg(long, default_value = "default")]
        group: String,
    },
    /// Give a node's slot back (`/v1/steady-state`).
    Unlock {
        /// Node id; default: Zincati's id for this machine (from /etc/machine-id).
        #[arg(long)]
        id: Option<String>,
        /// Group.
        #[arg(long, default_value = "default")]
        group: String,
    },
    /// List holders per group.
    Status,
    /// Release a named holder (admin).
    Release {
        /// Node id.
        #[arg(long)]
        id: String,
        /// Group.
        #[arg(long, default_value = "default")]
        group: String,
    },
}

fn parse<T: Parser>(args: &[OsString]) -> Result<T, ExitCode> {
    T::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        ExitCode::from(if e.use_stderr() { 2 } else { 0 })
    })
}

fn finish(r: Result<()>, tool: &str) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{tool}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `fleetlock-server --config FILE [--listen ADDR]`.
pub fn server_main(args: &[OsString]) -> ExitCode {
    let a: ServerArgs = match parse(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    finish(
        runtime().and_then(|rt| rt.block_on(serve(a))),
        "fleetlock-server",
    )
}

fn load_options(path: &Path) -> Result<(Config, Options)> {
    let cfg = Config::load(path)?;
    let groups = cfg.lock.slots_by_group().map_err(anyhow::Error::msg)?;
    let opts = Options {
        groups,
        admin_token: cfg.admin_token()?,
        lease_ttl_secs: cfg.lease_ttl_secs,
    };
    Ok((cfg, opts))
}

async fn serve(a: ServerArgs) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let (cfg, opts) = load_options(&a.config)?;
    let store = cfg.store.open().context("opening the store")?;
    let app = FleetLock::new(store, opts);
    let tls = match &cfg.tls {
        Some(t) => {
            Some(fleetlock::tls::server_config(&t.cert, &t.key).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let addr = a.listen.unwrap_or(cfg.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The bound address, so that a configured port 0 tells which port it got.
    let bound = listener.local_addr().unwrap_or(addr);
    eprintln!("fleetlock-server: listening on {scheme}://{bound}/");

    // SIGHUP re-reads the groups and slots; store and listener stay as they are.
    let mut hup = signal(SignalKind::hangup())?;
    let (reload_app, path) = (app.clone(), a.config.clone());
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match load_options(&path) {
                Ok((_, o)) => {
                    reload_app.set_groups(o.groups);
                    eprintln!("fleetlock-server: reloaded groups from {}", path.display());
                }
                Err(e) => eprintln!("fleetlock-server: reload failed, keeping old groups: {e:#}"),
            }
        }
    });
    let mut term = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    match tls {
        Some(tls) => fleetlock::server::serve_tls(listener, tls, app, shutdown).await,
        None => fleetlock::server::serve(listener, app, shutdown).await,
    }
    .context("serving")
}

/// `fleetlock lock|unlock|status|release`.
pub fn main(args: &[OsString]) -> ExitCode {
    let a: ClientArgs = match parse(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    finish(runtime().and_then(|rt| rt.block_on(client(a))), "fleetlock")
}

async fn client(a: ClientArgs) -> Result<()> {
    const T: Duration = Duration::from_secs(30);
    let token = match &a.token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))?
                .trim_end()
                .to_string(),
        ),
        None => None,
    };
    let ca = match &a.cacert {
        Some(f) => Some(std::fs::read(f).with_context(|| format!("reading {}", f.display()))?),
        None => None,
    };
    let http = http_client(T, ca.as_deref())?;
    let node = |id: &Option<String>, group: &str| -> Result<Client> {
        let id = match id {
            Some(id) => id.clone(),
            // The same id Zincati sends, so that ops act on the slot it holds.
            None => zincati_node_id(
                &std::fs::read_to_string("/etc/machine-id").context("reading /etc/machine-id")?,
            )?,
        };
        Ok(Client::with_http_client(&a.url, &id, group, http.clone())?)
    };
    let admin = || AdminClient::with_http_client(&a.url, token.clone(), http.clone());
    match &a.verb {
        Verb::Lock { id, group } => node(id, group)?.pre_reboot().await?,
        Verb::Unlock { id, group } => node(id, group)?.steady_state().await?,
        Verb::Status => {
            let st = admin()?.status().await?;
            for g in st.groups {
                println!(
                    "group: {} ({} of {} slots taken)",
                    g.name,
                    g.holders.len(),
                    g.slots
                );
                for h in g.holders {
                    let since = h.since.as_deref().unwrap_or("unknown");
                    match h.expires {
                        Some(e) => println!("  {} since {since}, lease until {e}", h.id),
                        None => println!("  {} since {since}", h.id),
                    }
                }
            }
        }
        Verb::Release { id, group } => {
            if !admin()?.release(group, id).await? {
                bail!("{id} held no slot in group {group}");
            }
        }
    }
    Ok(())
}
