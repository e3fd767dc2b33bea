//! `ferrocore ignition validate FILE` and the `ignition-validate` personality,
//! plus `ferrocore ignition run` (the provisioning engine, crate ignition-engine).
//! `validate` behaves like upstream's `validate/main.go`: report entries on stderr, exit 1
//! when the config is invalid or cannot be read or parsed, `-` reads stdin.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::ExitCode;

/// `ferrocore ignition <subcommand> ...`.
pub fn main(args: &[OsString]) -> ExitCode {
    match args.get(1).map(|a| a.to_string_lossy()) {
        Some(sub) if sub == "validate" => validate_main(&args[1..]),
        Some(sub) if sub == "run" => run_main(&args[1..]),
        Some(sub) if sub == "plan" => plan_main(&args[1..]),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "Usage:\n  ferrocore ignition validate config.ign [flags]\n  ferrocore ignition run --platform P --root DIR [--config FILE] [--stage S]\n  ferrocore ignition plan CONFIG --devices DEV... [--json]"
            );
            ExitCode::from(2)
        }
    }
}

fn usage(name: &str, out: &mut dyn Write) {
    let _ = write!(
        out,
        "Usage:\n  {name} config.ign [flags]\n\n  -version\n    \tprint the version of ignition-validate\n"
    );
}

/// Go's `os.ReadFile` error text (`open FILE: no such file or directory`).
fn go_io_error(path: &str, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::IsADirectory => return format!("read {path}: is a directory"),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            s[..1].to_lowercase() + &s[1..]
        }
    };
    format!("open {path}: {what}")
}

/// The `ignition-validate` tool; `args[0]` is the name it reports.
pub fn validate_main(args: &[OsString]) -> ExitCode {
    let name = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ignition-validate".into());
    let mut rest: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Go's flag package: flags first, `--` ends them, the first non-flag stops parsing.
    let mut positional = Vec::new();
    while let Some(a) = (!rest.is_empty()).then(|| rest.remove(0)) {
        if a == "--" {
            positional.append(&mut rest);
            break;
        }
        if a.len() > 1 && a.starts_with('-') {
            match a.trim_start_matches('-') {
                "version" | "version=true" => {
                    println!(
                        "ignition-validate (ferrocore) {}",
                        env!("CARGO_PKG_VERSION")
                    );
                    return ExitCode::SUCCESS;
                }
                "version=false" => continue,
                "h" | "help" => {
                    usage(&name, &mut std::io::stderr());
                    return ExitCode::SUCCESS;
                }
                other => {
                    eprintln!("flag provided but not defined: -{other}");
                    usage(&name, &mut std::io::stderr());
                    return ExitCode::from(2);
                }
            }
        }
        positional.push(a);
        positional.append(&mut rest);
        break;
    }
    if positional.len() != 1 {
        usage(&name, &mut std::io::stderr());
        return ExitCode::from(1);
    }
    let path = &positional[0];
    let blob = if path == "-" {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b).map(|_| b)
    } else {
        std::fs::read(path)
    };
    let blob = match blob {
        Ok(b) => b,
        Err(e) => {
            eprintln!("couldn't read config: {}", go_io_error(path, &e));
            return ExitCode::from(1);
        }
    };
    let (report, err) = match ignition_config::parse(&blob) {
        Ok((_, report)) => (report, None),
        Err(e) => (e.report().cloned().unwrap_or_default(), Some(e)),
    };
    if !report.entries.is_empty() {
        eprintln!("{}", report.to_string().trim());
    }
    if report.is_fatal() {
        return ExitCode::from(1);
    }
    if let Some(e) = err {
        eprintln!("couldn't parse config: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// `ferrocore ignition run`: upstream's `ignition -platform P -stage S -root R`;
/// without `--stage`, runs `fetch` then `files`.
#[derive(clap::Parser, Debug)]
#[command(name = "ferrocore ignition run")]
struct RunArgs {
    /// Platform the config comes from (`file`, `qemu`).
    #[arg(long)]
    platform: String,
    /// Target root (absolute), what the initramfs calls /sysroot.
    #[arg(long)]
    root: std::path::PathBuf,
    /// Platform `file`: the config (default: $IGNITION_CONFIG_FILE, else config.ign).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Stages to run, in order (fetch-offline, fetch, kargs, disks, mount, files, umount);
    /// default fetch then files.
    #[arg(long)]
    stage: Vec<String>,
    /// Rendered-config cache shared between stages.
    #[arg(long, default_value = "/run/ignition.json")]
    config_cache: std::path::PathBuf,
    /// State file shared between stages.
    #[arg(long, default_value = "/run/ignition/state")]
    state_file: std::path::PathBuf,
    /// Flag file written when fetch-offline needs the network.
    #[arg(long, default_value = "/run/ignition/neednet")]
    neednet: std::path::PathBuf,
    /// System config dir (base.d, base.platform.d, user.ign); default
    /// $IGNITION_SYSTEM_CONFIG_DIR, else /usr/lib/ignition.
    #[arg(long)]
    system_config_dir: Option<std::path::PathBuf>,
    /// Kernel command line to read `ignition.config.url=` and `ignition.firstboot` from.
    #[arg(long, default_value = "/proc/cmdline")]
    kernel_cmdline: std::path::PathBuf,
    /// Deadline for fetching the provider config, in seconds.
    #[arg(long, default_value_t = 120)]
    fetch_timeout: u64,
    /// Do nothing unless the kernel command line has `ignition.firstboot`
    /// (what the boot units pass; tests and offline use leave it off).
    #[arg(long)]
    require_firstboot: bool,
}

fn run_main(args: &[OsString]) -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let parsed = RunArgs::command()
        .bin_name("ferrocore ignition run")
        .try_get_matches_from(args)
        .and_then(|m| RunArgs::from_arg_matches(&m));
    let a = match parsed {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if a.require_firstboot {
        let cmdline = std::fs::read_to_string(&a.kernel_cmdline).unwrap_or_default();
        if !cmdline
            .split_whitespace()
            .any(|w| w == "ignition.firstboot" || w.starts_with("ignition.firstboot="))
        {
            eprintln!("ignition: not the first boot (no ignition.firstboot on the kernel command line); nothing to do");
            return ExitCode::SUCCESS;
        }
    }
    let mut opts = ignition_engine::Options::new(&a.platform, a.root);
    if a.config.is_some() {
        opts.config_file = a.config;
    }
    if let Some(d) = a.system_config_dir {
        opts.system_config_dir = d;
    }
    opts.config_cache = a.config_cache;
    opts.state_file = a.state_file;
    opts.neednet = a.neednet;
    opts.kernel_cmdline = a.kernel_cmdline;
    opts.fetch_timeout = std::time::Duration::from_secs(a.fetch_timeout);
    let names = if a.stage.is_empty() {
        vec!["fetch".to_string(), "files".to_string()]
    } else {
        a.stage
    };
    for name in names {
        let stage: ignition_engine::Stage = match name.parse() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ignition: {e}");
                return ExitCode::from(2);
            }
        };
        match ignition_engine::run_stage(&opts, stage) {
            Ok(ignition_engine::Outcome::NeedNet) => {
                eprintln!("ignition: {name}: config needs the network; run the fetch stage");
            }
            Ok(ignition_engine::Outcome::Done) => {}
            Err(e) => {
                eprintln!("ignition: {name} failed: {e}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

/// `ferrocore ignition plan`: the disks stage as a dry run.
#[derive(clap::Parser, Debug)]
struct PlanArgs {
    /// Ignition config (spec 3.x).
    config: std::path::PathBuf,
    /// Devices the config may touch (whole disks or partitions); nothing else is read.
    #[arg(long, num_args = 1.., required = true)]
    devices: Vec<std::path::PathBuf>,
    /// Print the plan as JSON (`{"steps":[{path, device, action, detail, dataLoss?}]}`).
    #[arg(long)]
    json: bool,
}

/// Exit 0 when the stage would succeed, 1 when it would fail, 2 on bad usage.
fn plan_main(args: &[OsString]) -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let parsed = PlanArgs::command()
        .bin_name("ferrocore ignition plan")
        .try_get_matches_from(args)
        .and_then(|m| PlanArgs::from_arg_matches(&m));
    let a = match parsed {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let plan = match ignition_engine::plan::plan_file(&a.config, &a.devices) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ignition plan: {e}");
            return ExitCode::from(2);
        }
    };
    if a.json {
        match serde_json::to_string_pretty(&plan) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("ignition plan: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!("{}", plan.to_text());
    }
    if plan.fails() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
