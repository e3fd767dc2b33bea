//! `ferrocore ignition validate FILE` and the `ignition-validate` personality,
//! behaving like upstream's `validate/main.go`: report entries on stderr, exit 1
//! when the config is invalid or cannot be read or parsed, `-` reads stdin.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::ExitCode;

/// `ferrocore ignition <subcommand> ...`.
pub fn main(args: &[OsString]) -> ExitCode {
    match args.get(1).map(|a| a.to_string_lossy()) {
        Some(sub) if sub == "validate" => validate_main(&args[1..]),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "Usage:\n  ferrocore ignition validate config.ign [flags]"
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
