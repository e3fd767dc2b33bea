//! `ferrocore initramfs build`: write ferrocore's initramfs (static
//! ferrocore as `/init` plus the kernel modules it needs) from an OS tree;
//! `ferrocore initramfs-init` / `/init`: the initramfs runtime as pid 1.
//! Thin wrappers over `ferrocore_initramfs`.

use clap::{Parser, Subcommand};
use ferrocore_initramfs::BuildOptions;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// ferrocore's initramfs.
#[derive(Parser)]
#[command(name = "initramfs")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write initramfs.img (newc cpio, gzip) for kernel KVER of an OS tree.
    Build {
        /// OS tree holding usr/lib/modules/KVER (modules.dep from depmod).
        #[arg(long)]
        rootfs: PathBuf,
        /// Kernel version.
        #[arg(long)]
        kver: String,
        /// Static ferrocore binary to install as /init.
        #[arg(long)]
        binary: PathBuf,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Modules to include with their dependencies, comma separated
        /// (default: virtio_pci, virtio_blk, virtio_net, ext4, qemu_fw_cfg).
        #[arg(long, value_delimiter = ',')]
        modules: Vec<String>,
        /// Upper bound of the archive's mtimes (default: $SOURCE_DATE_EPOCH, else 0).
        #[arg(long)]
        source_date_epoch: Option<u64>,
        /// Write the cpio archive uncompressed.
        #[arg(long)]
        no_gzip: bool,
    },
}

/// `ferrocore initramfs ...` with args[0] = "initramfs".
pub fn main(args: &[OsString]) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let Cmd::Build {
        rootfs,
        kver,
        binary,
        output,
        modules,
        source_date_epoch,
        no_gzip,
    } = cli.cmd;
    let mut opts = BuildOptions::new(&rootfs, &kver, &binary);
    if !modules.is_empty() {
        opts.modules = modules;
    }
    if let Some(e) = source_date_epoch {
        opts.source_date_epoch = e;
    }
    opts.gzip = !no_gzip;
    match opts.build(&output) {
        Ok(b) => {
            let names: Vec<&str> = b.modules.iter().map(|m| m.name.as_str()).collect();
            println!(
                "{}: {} bytes; modules in load order: {}",
                output.display(),
                b.size,
                names.join(" ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("initramfs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `/init` or `ferrocore initramfs-init`: as pid 1 never returns; refuses
/// to run as any other process, since it mounts over /proc, /sys, /dev, /run.
pub fn init_main(_args: &[OsString]) -> ExitCode {
    if std::process::id() != 1 {
        eprintln!("initramfs-init: must run as pid 1 of an initramfs (it mounts over /proc, /sys, /dev and /run)");
        return ExitCode::from(2);
    }
    ferrocore_initramfs::init::run()
}

/// `/sbin/modprobe` in the initramfs: the kernel's on-demand module loader
/// while `/init` provisions (see `ferrocore_initramfs::init::modprobe_helper`).
pub fn modprobe_main(args: &[OsString]) -> ExitCode {
    ExitCode::from(ferrocore_initramfs::init::modprobe_helper(args) as u8)
}
