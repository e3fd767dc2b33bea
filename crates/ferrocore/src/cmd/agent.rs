//! `ferrocore agent`: the automatic update agent's operator verbs.
//!
//! `status` explains why the node is or is not updating (from the snapshot the
//! daemon writes after every step); `config` merges and checks the configuration
//! fragments exactly as the daemon does and prints the effective settings; `run`
//! is the daemon itself (`ferrocore-agent.service`), driving the node's sysroot
//! until SIGTERM. Its defaults are a booted node's; flags place a sysroot kept in
//! a directory (which deployment is booted, where state and status go) and
//! replace `systemctl reboot` with a command, as the fleet tests do.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agent::config::{Config, StrategyConfig, DEFAULT_DIRS};
use agent::status::AgentStatus;
use agent::{Agent, Clock, CommandReboot, Env, Paths, SysrootOs};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sysroot::BootedSource;

#[derive(Parser)]
#[command(about = "Automatic update agent (Zincati-compatible)")]
struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Why this node is or is not updating: state, last check, candidate, holds.
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
        /// Status snapshot written by the agent.
        #[arg(long, value_name = "FILE")]
        status_file: Option<PathBuf>,
    },
    /// Merge and check the configuration fragments; print the effective settings.
    Config {
        /// Fragment directories, lowest precedence first
        /// (default: /usr/lib/ferrocore/agent.d /run/ferrocore/agent.d /etc/ferrocore/agent.d).
        #[arg(long, value_name = "DIR", num_args = 1..)]
        config_dirs: Vec<PathBuf>,
    },
    /// Run the update agent until SIGTERM (the `ferrocore-agent.service` daemon).
    Run {
        /// Physical root of the node's sysroot.
        #[arg(long, value_name = "DIR", default_value = "/")]
        sysroot: PathBuf,
        /// Fragment directories, lowest precedence first (default as for `config`).
        #[arg(long, value_name = "DIR", num_args = 1..)]
        config_dirs: Vec<PathBuf>,
        // Boxed: these paths would make every other verb as large.
        #[command(flatten)]
        node: Box<NodeArgs>,
    },
}

/// Where a node keeps what `agent run` reads and writes. The defaults are a real
/// node's; a sysroot in a directory (image builds, tests) names its own, and
/// which of its deployments counts as booted.
#[derive(clap::Args)]
struct NodeArgs {
    /// The booted deployment's directory, i.e. what `/` is on a booted node (a
    /// bind mount of it). Needed for a sysroot that is not `/`, which is
    /// otherwise never booted [default: found from `/`].
    #[arg(long, value_name = "DIR")]
    booted_root: Option<PathBuf>,
    /// Kernel command line, for `ignition.platform.id`.
    #[arg(long, value_name = "FILE", default_value = "/proc/cmdline")]
    kernel_cmdline: PathBuf,
    /// Machine id, hashed into the node id unless `identity.node_uuid` is set.
    #[arg(long, value_name = "FILE", default_value = "/etc/machine-id")]
    machine_id: PathBuf,
    /// Runtime directory: the staged deployment's state (`ostree/`) lives here
    /// and, like `/run`, must not survive a reboot [default: /run].
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// Persistent state: deny-list, pending update, undelivered reports
    /// [default: /var/lib/ferrocore/agent].
    #[arg(long, value_name = "DIR")]
    var_dir: Option<PathBuf>,
    /// Status snapshot for `agent status` [default: /run/ferrocore/agent/status.json].
    #[arg(long, value_name = "FILE")]
    status_file: Option<PathBuf>,
    /// Dead-end notice [default: /run/motd.d/85-ferrocore-deadend.motd].
    #[arg(long, value_name = "FILE")]
    deadend_motd: Option<PathBuf>,
    /// Reboot by running this program (whitespace-separated arguments) instead of
    /// `systemctl reboot`; it gets FERROCORE_REBOOT_VERSION and
    /// FERROCORE_REBOOT_CHECKSUM, and a non-zero exit is retried.
    #[arg(long, value_name = "COMMAND")]
    reboot_command: Option<String>,
}

/// Entry point; `args[0]` is the tool name.
pub fn main(args: &[OsString]) -> ExitCode {
    let a = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let r = match a.verb {
        Verb::Status { json, status_file } => status(json, status_file),
        Verb::Config { config_dirs } => config(config_dirs),
        Verb::Run {
            sysroot,
            config_dirs,
            node,
        } => run(sysroot, config_dirs, *node),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn status(json: bool, file: Option<PathBuf>) -> Result<()> {
    let file = file.unwrap_or_else(|| Paths::default().status_file);
    let st = AgentStatus::read(&file).map_err(anyhow::Error::msg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print!("{}", st.render());
    }
    Ok(())
}

fn load_config(dirs: Vec<PathBuf>) -> Result<Config> {
    let dirs = if dirs.is_empty() {
        DEFAULT_DIRS.iter().map(PathBuf::from).collect()
    } else {
        dirs
    };
    let c = Config::load(&dirs).context("loading the agent configuration")?;
    for w in &c.warnings {
        eprintln!("agent: warning: {w}");
    }
    Ok(c)
}

fn run(sysroot: PathBuf, dirs: Vec<PathBuf>, node: NodeArgs) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let config = load_config(dirs)?;
    let mut os = SysrootOs::new(&sysroot);
    if let Some(root) = node.booted_root {
        anyhow::ensure!(
            root.is_dir(),
            "--booted-root {}: not a directory",
            root.display()
        );
        os = os.with_booted_source(BootedSource::Root(root));
    }
    if let Some(d) = &node.run_dir {
        os = os.with_run_dir(d);
    }
    let mut env = Env::for_node_at(
        &config,
        Arc::new(os),
        &node.machine_id,
        &node.kernel_cmdline,
    )?;
    if let Some(d) = node.var_dir {
        env.paths.var_dir = d;
    }
    if let Some(f) = node.status_file {
        env.paths.status_file = f;
    }
    if let Some(f) = node.deadend_motd {
        env.paths.deadend_motd = f;
    }
    if let Some(c) = &node.reboot_command {
        env.reboot = Arc::new(CommandReboot::parse(c).context("--reboot-command")?);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        // The agent's error already shows its source; anyhow's `{:#}` would repeat it.
        Agent::new(config, env)
            .run(shutdown)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    })
}

fn config(dirs: Vec<PathBuf>) -> Result<()> {
    let c = load_config(dirs)?;
    for f in &c.fragments {
        println!("fragment: {}", f.display());
    }
    println!("identity.group = {:?}", c.group);
    if let Some(u) = &c.node_uuid {
        println!("identity.node_uuid = {u:?}");
    }
    match c.rollout_wariness {
        Some(w) => println!("identity.rollout_wariness = {w}"),
        None => println!("identity.rollout_wariness = (assigned by the update server)"),
    }
    match &c.cincinnati_base_url {
        Some(u) => println!("cincinnati.base_url = {u:?}"),
        None => println!("cincinnati.base_url = (unset)"),
    }
    println!("updates.enabled = {}", c.updates_enabled);
    println!("updates.allow_downgrade = {}", c.allow_downgrade);
    println!("updates.strategy = {:?}", c.strategy.name());
    match &c.strategy {
        StrategyConfig::Immediate => {}
        StrategyConfig::FleetLock { base_url } => {
            println!("updates.fleet_lock.base_url = {base_url:?}")
        }
        StrategyConfig::Periodic(cal) => {
            println!("updates.periodic.time_zone = {:?}", cal.tz_name());
            for w in cal.windows() {
                println!(
                    "updates.periodic.window = {:?} {:02}:{:02} for {} minutes",
                    w.day,
                    w.start_minute / 60,
                    w.start_minute % 60,
                    w.length_minutes
                );
            }
            println!("total schedule length: {} minutes", cal.length_minutes());
            if let Some(next) = cal.next_open(agent::SystemClock.now()) {
                println!("next window: {next}");
            }
        }
    }
    println!(
        "agent.timing.steady_interval_secs = {}",
        c.steady_interval.as_secs()
    );
    println!(
        "agent.timing.retry_interval_secs = {}",
        c.retry_interval.as_secs()
    );
    Ok(())
}
