//! `ferrocore vm run`: boot a disk image under QEMU the way the end-to-end
//! tests do (ferrocore-vm crate), with the console on stderr, until the guest
//! powers off or the timeout passes.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ferrocore_vm::{GuestFwd, Profile, Vm, VmOptions, VmState};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "vm", about = "Run ferrocore images under QEMU (TCG)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot IMAGE on a throwaway qcow2 overlay; the console goes to stderr.
    /// Guest reboots relaunch QEMU; the command ends when the guest powers off.
    Run(RunArgs),
    /// Per-connection relay QEMU runs for a --guestfwd: stdin/stdout <-> ADDR.
    #[command(hide = true)]
    Relay {
        /// Host service, e.g. 127.0.0.1:18080.
        addr: std::net::SocketAddr,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Base disk image (raw or qcow2); never written.
    image: PathBuf,
    /// Ignition config given to the guest through fw_cfg.
    #[arg(long, value_name = "FILE")]
    ignition: Option<PathBuf>,
    /// Host port on 127.0.0.1 forwarded to the guest's ssh (default: a free one).
    #[arg(long, value_name = "N")]
    ssh_port: Option<u16>,
    /// Memory in MiB (default 1024).
    #[arg(long, value_name = "MIB")]
    memory: Option<u32>,
    /// vCPUs (default 2).
    #[arg(long, value_name = "N")]
    smp: Option<u32>,
    /// Let the guest reach a host service on 127.0.0.1:HOST_PORT at
    /// GUEST_ADDR:GUEST_PORT (e.g. 10.0.2.100:80=18080). Repeatable.
    #[arg(long, value_name = "GUEST_ADDR:GUEST_PORT=HOST_PORT")]
    guestfwd: Vec<GuestFwd>,
    /// Let the guest reach the outside, and the host's 127.0.0.1 ports at
    /// 10.0.2.2 (default: isolated, only --guestfwd services).
    #[arg(long)]
    no_restrict: bool,
    /// Seconds after which QEMU is killed (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    timeout: u64,
    /// Directory for the overlay and console log (default: a new one in
    /// the temp dir, removed at the end unless --keep).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Keep the overlay and console log.
    #[arg(long)]
    keep: bool,
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
            eprintln!("vm: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Run(a) => run_vm(a),
        Cmd::Relay { addr } => {
            ferrocore_vm::relay_stdio(addr).with_context(|| format!("relay to {addr}"))
        }
    }
}

fn run_vm(a: RunArgs) -> Result<()> {
    let (dir, remove) = match a.dir {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("ferrocore-vm-{}", std::process::id())),
            !a.keep,
        ),
    };
    let mut opts = VmOptions::new(a.image, &dir);
    opts.ignition = a.ignition;
    opts.profile = Profile::Single;
    opts.ssh_port = a.ssh_port;
    opts.memory_mib = a.memory;
    opts.smp = a.smp;
    opts.guestfwds = a.guestfwd;
    opts.restrict = !a.no_restrict;
    // This binary relays guest connections, so forwards take any number.
    opts.relay = Some(std::env::current_exe().context("locating the ferrocore binary")?);
    opts.echo = true;
    let mut vm = Vm::start(opts).context("starting the VM")?;
    eprintln!(
        "vm: console log {}; ssh: ssh -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null core@127.0.0.1",
        vm.log_path().display(),
        vm.ssh_port()
    );
    let limit = if a.timeout == 0 {
        Duration::MAX
    } else {
        Duration::from_secs(a.timeout)
    };
    let outcome = vm.wait_stopped(limit);
    vm.kill();
    let boots = vm.boots();
    drop(vm);
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match outcome.context("waiting for the guest")? {
        VmState::PoweredOff => {
            eprintln!("vm: guest powered off after {boots} boot(s)");
            Ok(())
        }
        other => bail!("the VM {other} after {boots} boot(s)"),
    }
}
