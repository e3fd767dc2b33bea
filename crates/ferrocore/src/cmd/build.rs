//! `ferrocore build`: compose the OS from Debian packages into a commit of our
//! OSTree store (`ferrocore-build` crate); `ferrocore build lock` refreshes the
//! lockfile of exact package versions; `ferrocore build image` makes the bootable
//! disk image of a build.

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
    /// Make the bootable disk image (GPT, GRUB BIOS; .raw and .qcow2) of a build.
    Image(ImageArgs),
}

#[derive(Args)]
struct ImageArgs {
    /// Build directory holding meta.json (CACHE/builds/VERSION); the images
    /// are written there and added to its artifacts.
    #[arg(long)]
    build: PathBuf,
    /// OSTree repository holding the build's commit.
    #[arg(long, default_value = "repo")]
    repo: PathBuf,
    /// Platform (kernel argument ignition.platform.id): qemu or metal.
    #[arg(long, default_value = "qemu")]
    platform: String,
    /// Virtual disk size in MiB (the raw file is sparse).
    #[arg(long, default_value_t = ferrocore_build::DEFAULT_SIZE >> 20)]
    size_mib: u64,
    /// Seed of the disk's GUIDs, UUIDs and hash seeds (default: the commit).
    #[arg(long)]
    seed: Option<String>,
    /// Only make the image's sysroot tree in this new directory (to change it
    /// with `ferrocore admin --sysroot DIR ...` before --from-sysroot).
    #[arg(long, value_name = "DIR", conflicts_with = "from_sysroot")]
    sysroot_only: Option<PathBuf>,
    /// Make the disk from this sysroot tree (made by --sysroot-only) instead of
    /// deploying the commit.
    #[arg(long, value_name = "DIR")]
    from_sysroot: Option<PathBuf>,
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
        Some(Cmd::Image(a)) => {
            let platform = ferrocore_build::Platform::parse(&a.platform)?;
            let size = a
                .size_mib
                .checked_mul(1 << 20)
                .context("--size-mib: too large")?;
            if let Some(dir) = a.sysroot_only {
                let opts =
                    ferrocore_build::image_options_for(&a.build, &a.repo, platform, size, a.seed)?;
                ferrocore_build::make_sysroot(&opts, &dir)?;
                println!("sysroot: {}", dir.display());
                return Ok(());
            }
            let out = ferrocore_build::build_image_for(
                &a.build,
                &a.repo,
                platform,
                size,
                a.seed,
                a.from_sysroot.as_deref(),
            )?;
            println!(
                "{}\n{}\nraw: {} MiB allocated; kernel command line: {} ({:.0} s)",
                out.raw.display(),
                out.qcow2.display(),
                out.raw_allocated >> 20,
                out.kernel_cmdline,
                start.elapsed().as_secs_f64()
            );
        }
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
