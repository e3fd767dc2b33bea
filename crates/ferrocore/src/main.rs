//! `ferrocore`: one multi-call binary for every ferrocore tool.
//!
//! Run as `ferrocore <verb> ...`, or under another name through a symlink
//! (`butane`, `ignition-validate`, ...) to behave exactly like that upstream tool,
//! so users keep their habits and scripts. Each verb lives in its own module under
//! `cmd/` and owns its argument parsing, because the upstream tools differ in flag
//! conventions and exit codes (butane's pflag exits 2 on usage errors, for instance).

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

mod cmd;

/// The verbs reachable as `ferrocore <verb>` and their argv[0] personalities.
const VERBS: &[(&str, &str)] = &[
    (
        "butane",
        "translate a Butane config into an Ignition config",
    ),
    (
        "ignition",
        "Ignition: `ignition validate FILE`, `ignition run --platform P --root DIR`",
    ),
    ("ostree", "OSTree-compatible OS image store (`ostree` CLI)"),
    (
        "admin",
        "deployments: deploy, rollback, pin, kargs, status, boot-complete (`ostree admin`)",
    ),
    (
        "prepare-root",
        "initramfs: make the ostree= deployment the new root (`ostree-prepare-root`)",
    ),
    (
        "fleetlock-server",
        "FleetLock reboot coordinator: `fleetlock-server --config FILE`",
    ),
    (
        "fleetlock",
        "FleetLock client: `fleetlock lock|unlock|status|release`",
    ),
    (
        "release",
        "release metadata: index, rollouts, barriers, stream.json, signatures",
    ),
    (
        "update-server",
        "Cincinnati update graph service: `update-server serve --data-dir DIR`",
    ),
    (
        "agent",
        "automatic update agent: `agent run`, `agent status [--json]`, `agent config`",
    ),
    (
        "build",
        "compose the OS from Debian packages into a commit: `build [--config os/]`, `build lock`",
    ),
    (
        "initramfs",
        "ferrocore's initramfs: `initramfs build --rootfs DIR --kver K --binary F -o OUT`",
    ),
    (
        "initramfs-init",
        "the initramfs /init runtime (pid 1 only: mounts, modules, prepare-root, Ignition, switch-root)",
    ),
    (
        "vm",
        "boot a disk image under QEMU for testing: `vm run IMAGE --ignition FILE`",
    ),
];

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();

    // The kernel runs the initramfs's /init (this binary) as pid 1.
    if argv0 == "init" && std::process::id() == 1 {
        return cmd::initramfs::init_main(&args);
    }
    // Only the initramfs has a `modprobe` link to this binary.
    if argv0 == "modprobe" {
        return cmd::initramfs::modprobe_main(&args);
    }
    // Personality from the program name first: `butane -p x.bu`.
    if let Some(code) = dispatch(&argv0, &args) {
        return code;
    }
    // Then `ferrocore <verb> ...`: the verb becomes argv[0] for the tool.
    if args.len() >= 2 {
        let verb = args[1].to_string_lossy().into_owned();
        if verb != "--help" && verb != "-h" && verb != "help" {
            let rest: Vec<OsString> = args.drain(1..).collect();
            if let Some(code) = dispatch(&verb, &rest) {
                return code;
            }
            eprintln!("ferrocore: unknown command '{verb}'\n");
            usage(&mut std::io::stderr());
            return ExitCode::from(2);
        }
        usage(&mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    usage(&mut std::io::stderr());
    ExitCode::from(2)
}

/// Runs the tool named `name` with `args` (args[0] is the name the tool reports).
fn dispatch(name: &str, args: &[OsString]) -> Option<ExitCode> {
    Some(match name {
        "butane" => cmd::butane::main(args),
        "ignition" => cmd::ignition::main(args),
        "ignition-validate" => cmd::ignition::validate_main(args),
        "ostree" => cmd::ostree::main(args),
        "admin" => cmd::admin::main(args),
        "prepare-root" | "ostree-prepare-root" => cmd::prepare_root::main(args),
        "fleetlock-server" => cmd::fleetlock::server_main(args),
        "fleetlock" => cmd::fleetlock::main(args),
        "release" => cmd::release::main(args),
        "update-server" => cmd::update_server::main(args),
        "agent" => cmd::agent::main(args),
        "build" => cmd::build::main(args),
        "initramfs" => cmd::initramfs::main(args),
        "initramfs-init" => cmd::initramfs::init_main(args),
        "vm" => cmd::vm::main(args),
        _ => return None,
    })
}

fn usage(out: &mut dyn std::io::Write) {
    let _ = writeln!(out, "Usage: ferrocore <command> [args...]\n\nCommands:");
    for (verb, what) in VERBS {
        let _ = writeln!(out, "  {verb:<20} {what}");
    }
    let _ = writeln!(
        out,
        "\nThe binary is multi-call: invoked as `butane` or `ignition-validate` it behaves as that tool."
    );
}
