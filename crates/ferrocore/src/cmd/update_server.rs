//! `ferrocore update-server`: run the Cincinnati update service, or lift a rollout
//! pause it recorded. All logic lives in the `update-server` crate.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Fedora CoreOS update graph service (Cincinnati protocol, `GET /v1/graph`).
#[derive(Parser)]
#[command(name = "update-server")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve /v1/graph, /v1/report, /v1/status and /metrics.
    Serve {
        /// Data directory: prod/streams/<stream>/releases.json and updates/<stream>.json.
        #[arg(
            long,
            required_unless_present = "releases_url",
            conflicts_with = "releases_url"
        )]
        data_dir: Option<PathBuf>,
        /// Release index URL template with ${stream}, e.g.
        /// https://builds.coreos.fedoraproject.org/prod/streams/${stream}/releases.json
        #[arg(long, requires_all = ["updates_url", "stream"])]
        releases_url: Option<String>,
        /// Updates metadata URL template with ${stream}, e.g.
        /// https://builds.coreos.fedoraproject.org/updates/${stream}.json
        #[arg(long, requires = "releases_url")]
        updates_url: Option<String>,
        /// Stream to serve from the URLs (repeat for several).
        #[arg(long, requires = "releases_url")]
        stream: Vec<String>,
        /// Listen address (upstream's policy engine uses port 8081).
        #[arg(long, default_value = "0.0.0.0:8081")]
        listen: SocketAddr,
        /// SQLite file for outcome reports and pauses (in memory if not given).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Distinct nodes reporting a failure that pause a rollout.
        #[arg(long, default_value_t = 3)]
        pause_after_failures: u64,
        /// Seconds between checks of the data directory for changes.
        #[arg(long, default_value_t = 5)]
        reload_interval_secs: u64,
        /// ed25519 secret key file: sign graph responses (x-ferrocore-signature).
        #[arg(long)]
        signing_key: Option<PathBuf>,
        /// ed25519 public key file: only load inputs with a valid <file>.sig.
        #[arg(long)]
        verify_key: Option<PathBuf>,
    },
    /// Lift an automatic pause (the running server picks it up at its next reload).
    Resume {
        /// The server's report database.
        #[arg(long)]
        db: PathBuf,
        /// Stream.
        #[arg(long)]
        stream: String,
        /// Paused release.
        #[arg(long)]
        version: String,
    },
}

/// Entry point; `args[0]` is the tool name.
pub fn main(args: &[OsString]) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("update-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Serve {
            data_dir,
            releases_url,
            updates_url,
            stream,
            listen,
            db,
            pause_after_failures,
            reload_interval_secs,
            signing_key,
            verify_key,
        } => {
            let inputs = match (data_dir, releases_url, updates_url) {
                (Some(dir), _, _) => update_server::Inputs::Dir(dir),
                (None, Some(releases), Some(updates)) => update_server::Inputs::Urls {
                    releases,
                    updates,
                    streams: stream,
                },
                _ => {
                    anyhow::bail!("need --data-dir, or --releases-url, --updates-url and --stream")
                }
            };
            let mut cfg = update_server::Config::with_inputs(inputs);
            cfg.listen = listen;
            cfg.db_path = db;
            cfg.pause_after_failures = pause_after_failures;
            cfg.reload_interval = Duration::from_secs(reload_interval_secs.max(1));
            cfg.signing_key = signing_key
                .map(|p| release_meta::sign::SigningKey::from_file(&p))
                .transpose()?;
            cfg.verify_inputs = verify_key
                .map(|p| release_meta::sign::VerifyingKey::from_file(&p))
                .transpose()?;
            cfg.clock = Arc::new(update_server::SystemClock);
            update_server::run(cfg)?;
        }
        Cmd::Resume {
            db,
            stream,
            version,
        } => {
            anyhow::ensure!(db.is_file(), "{}: no such report database", db.display());
            let store = update_server::ReportStore::open(&db, 1)?;
            let lifted = store
                .resume(&stream, &version)
                .with_context(|| format!("resuming {stream} {version}"))?;
            if lifted {
                println!("resumed rollout of {version} on {stream}");
            } else {
                anyhow::bail!("rollout of {version} on {stream} was not paused");
            }
        }
    }
    Ok(())
}
