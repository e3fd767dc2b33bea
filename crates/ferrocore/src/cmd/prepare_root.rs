//! `ferrocore prepare-root` / `ostree-prepare-root`: run in the initramfs
//! with the physical root at SYSROOT (default `/sysroot`); mounts the
//! deployment named by `ostree=` on the kernel command line there, ready
//! for switch-root. Thin wrapper over `sysroot::prepare_root`.

use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use sysroot::prepare_root::{prepare_root, switch_root, PrepareRootOptions};

/// Prepare the OSTree deployment as the new root.
#[derive(Parser)]
#[command(name = "prepare-root")]
struct Cli {
    /// Where the physical root is mounted.
    #[arg(default_value = "/sysroot")]
    sysroot: PathBuf,
    /// Kernel command line to use instead of /proc/cmdline.
    #[arg(long)]
    cmdline: Option<String>,
    /// Directory for the `ostree-booted` marker.
    #[arg(long, default_value = "/run")]
    run_dir: PathBuf,
    /// Do not write the `ostree-booted` marker.
    #[arg(long)]
    no_run_marker: bool,
    /// After preparing, switch root into SYSROOT and exec this command
    /// (for systems without systemd's switch-root, and for tests).
    #[arg(long, num_args = 1.., allow_hyphen_values = true)]
    exec: Vec<String>,
}

/// Runs `prepare-root` with args[0] = program name.
pub fn main(args: &[OsString]) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let opts = PrepareRootOptions {
        sysroot: cli.sysroot.clone(),
        cmdline: cli.cmdline,
        run_dir: (!cli.no_run_marker).then_some(cli.run_dir),
    };
    let prepared = match prepare_root(&opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("prepare-root: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "prepare-root: {} mounted on {}",
        prepared.deployment.display(),
        cli.sysroot.display()
    );
    if cli.exec.is_empty() {
        return ExitCode::SUCCESS;
    }
    if let Err(e) = switch_root(&cli.sysroot) {
        eprintln!("prepare-root: switch-root: {e}");
        return ExitCode::FAILURE;
    }
    use std::os::unix::process::CommandExt;
    let err = Command::new(&cli.exec[0]).args(&cli.exec[1..]).exec();
    eprintln!("prepare-root: exec {}: {err}", cli.exec[0]);
    ExitCode::FAILURE
}
