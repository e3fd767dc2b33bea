//! `ferrocore build`: compose the OS from Debian packages into a commit of our
//! OSTree store (`ferrocore-build` crate); `ferrocore build lock` refreshes the
//! lockfile of exact package versions.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ferrocore_build::{build, lock_packages, BuildOptions};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Compose the OS into an OSTree commit.
#[derive(Parser)]
#[command(name = "build", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    build: BuildArgs,
}

#[derive(Args)]
struct Common {
    /// Config directory with manifest.toml and lock.toml.
    #[arg(long, default_value = "os")]
    config: PathBuf,
    /// Package cache and scratch directory (no whitespace in the path).
    #[arg(long, default_value = "/var/tmp/ferrocore-build")]
    cache: PathBuf,
    /// apt sources file for mmdebstrap (default: the host's, from /etc/apt).
    #[arg(long)]
    sources: Option<PathBuf>,
}

#[derive(Args)]
struct BuildArgs {
    #[command(flatten)]
    common: Common,
    /// OSTree repository (created in archive mode if missing).
    #[arg(long, default_value = "repo")]
    repo: PathBuf,
    /// Ref to commit to (default: the manifest's `ref`).
    #[arg(long = "ref")]
    ostree_ref: Option<String>,
    /// Directory for VERSION/meta.json and artifacts (default: CACHE/builds).
    #[arg(long)]
    out: Option<PathBuf>,
    /// ferrocore binary to install as /usr/bin/ferrocore (default: this one).
    #[arg(long)]
    ferrocore_binary: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Resolve the manifest's packages and write lock.toml with exact versions.
    Lock(Common),
}

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
            eprintln!("build: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let start = Instant::now();
    match cli.cmd {
        Some(Cmd::Lock(c)) => {
            let lock = lock_packages(&c.config, &c.cache, c.sources.as_deref())?;
            println!(
                "{}: {} packages locked in {:.0} s",
                c.config.join(ferrocore_build::LOCK_FILE).display(),
                lock.packages.len(),
                start.elapsed().as_secs_f64()
            );
        }
        None => {
            let b = cli.build;
            let binary = match b.ferrocore_binary {
                Some(p) => p,
                None => std::env::current_exe().context("locating the ferrocore binary")?,
            };
            let opts = BuildOptions {
                out_dir: b.out,
                ostree_ref: b.ostree_ref,
                ferrocore_binary: Some(binary),
                sources: b.common.sources,
                ..BuildOptions::new(b.common.config, b.repo, b.common.cache)
            };
            let out = build(&opts)?;
            println!(
                "version {} commit {} kernel {} ({}, {:.0} s)\nmeta: {}",
                out.version,
                out.commit,
                out.layout.kernel_version,
                if out.offline {
                    "all packages from the cache"
                } else {
                    "packages downloaded"
                },
                start.elapsed().as_secs_f64(),
                out.meta_dir.join("meta.json").display()
            );
        }
    }
    Ok(())
}
