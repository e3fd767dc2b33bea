//! `butane`: the command line of coreos/butane v0.23.0 (internal/main.go) over
//! the `butane` library. Flags follow pflag conventions (combined short
//! flags, `--flag=value`, exit 2 on usage errors), because scripts rely on them.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

const VERSION: &str = "Butane v0.23.0";

/// pflag prints flags sorted by long name, with aligned help.
const FLAGS: &str = "  -c, --check              check config without producing output
  -d, --files-dir string   allow embedding local files from this directory
  -h, --help               show usage and exit
  -o, --output string      write to output file instead of stdout
  -p, --pretty             output formatted json
  -r, --raw                never wrap in a MachineConfig; force Ignition output
  -s, --strict             fail on any warning
  -V, --version            print the version and exit
";

#[derive(Default)]
struct Args {
    check: bool,
    strict: bool,
    help: bool,
    version: bool,
    input: Option<String>,
    output: Option<String>,
    opts: butane::Options,
    positional: Vec<String>,
}

fn usage(prog: &str) -> String {
    format!("Usage: {prog} [options] [input-file]\nOptions:\n{FLAGS}")
}

/// Parses like pflag; Err carries the message pflag prints before the usage.
fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut i = 0;
    let mut only_positional = false;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if only_positional || arg == "-" || !arg.starts_with('-') {
            a.positional.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let value = |i: &mut usize| -> Result<String, String> {
                if let Some(v) = inline.clone() {
                    return Ok(v);
                }
                let v = args
                    .get(*i)
                    .cloned()
                    .ok_or_else(|| format!("flag needs an argument: --{name}"))?;
                *i += 1;
                Ok(v)
            };
            match name {
                "check" => a.check = true,
                "strict" => a.strict = true,
                "pretty" => a.opts.pretty = true,
                "raw" => a.opts.raw = true,
                "help" => a.help = true,
                "version" => a.version = true,
                "debug" => {}
                "output" => a.output = Some(value(&mut i)?),
                "files-dir" => a.opts.files_dir = Some(value(&mut i)?),
                "input" => {
                    eprintln!(
                        "Flag --input has been deprecated, specify filename directly on command line"
                    );
                    a.input = Some(value(&mut i)?);
                }
                _ => return Err(format!("unknown flag: --{name}")),
            }
            continue;
        }
        // A cluster of short flags; a value-taking flag consumes the rest or the next arg.
        let shorts: Vec<char> = arg[1..].chars().collect();
        let mut j = 0;
        while j < shorts.len() {
            let c = shorts[j];
            j += 1;
            match c {
                'c' => a.check = true,
                's' => a.strict = true,
                'p' => a.opts.pretty = true,
                'r' => a.opts.raw = true,
                'h' => a.help = true,
                'V' => a.version = true,
                'D' => {}
                'o' | 'd' => {
                    let rest: String = shorts[j..].iter().collect();
                    let rest = rest.strip_prefix('=').map(str::to_string).unwrap_or(rest);
                    let v = if !rest.is_empty() {
                        rest
                    } else {
                        let v = args
                            .get(i)
                            .cloned()
                            .ok_or_else(|| format!("flag needs an argument: '{c}' in -{c}"))?;
                        i += 1;
                        v
                    };
                    if c == 'o' {
                        a.output = Some(v);
                    } else {
                        a.opts.files_dir = Some(v);
                    }
                    j = shorts.len();
                }
                _ => return Err(format!("unknown shorthand flag: '{c}' in {arg}")),
            }
        }
    }
    Ok(a)
}

/// Writes `data` to `path` through a temporary file and a rename, mode 0644.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Runs butane with `args` (args[0] is the program name).
pub fn main(args: &[OsString]) -> ExitCode {
    let prog = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "butane".into());
    let rest: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut a = match parse(&rest) {
        Ok(a) => a,
        Err(msg) => {
            eprint!("{msg}\n{}", usage(&prog));
            return ExitCode::from(2);
        }
    };
    if a.positional.len() == 1 && a.input.is_none() {
        a.input = a.positional.pop();
    } else if !a.positional.is_empty() {
        eprint!("{}", usage(&prog));
        return ExitCode::from(2);
    }
    if a.help {
        print!("{}", usage(&prog));
        return ExitCode::SUCCESS;
    }
    if a.version {
        println!("{VERSION}");
        return ExitCode::SUCCESS;
    }

    let data = match &a.input {
        Some(f) => match std::fs::read(f) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("failed to open {f}: {}", go_err(&e));
                return ExitCode::from(1);
            }
        },
        None => {
            let mut d = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut d) {
                eprintln!("failed to read <stdin>: {}", go_err(&e));
                return ExitCode::from(1);
            }
            d
        }
    };

    let out = match butane::translate(&data, &a.opts) {
        Ok(out) => out,
        Err(f) => {
            eprint!("{}", f.report);
            eprintln!("Error translating config: {}", f.message);
            return ExitCode::from(1);
        }
    };
    eprint!("{}", out.report);
    if a.strict && !out.report.entries.is_empty() {
        eprintln!("Config produced warnings and --strict was specified");
        return ExitCode::from(1);
    }
    if a.check {
        return ExitCode::SUCCESS;
    }
    match &a.output {
        Some(o) => {
            if let Err(e) = write_atomic(Path::new(o), &out.bytes) {
                eprintln!("failed to open {o}: {}", go_err(&e));
                return ExitCode::from(1);
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout.write_all(&out.bytes).and_then(|()| stdout.flush()) {
                eprintln!("Failed to write config to /dev/stdout: {}", go_err(&e));
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

/// Go prints bare strerror texts (`no such file or directory`).
fn go_err(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn pflag_style_parsing() {
        let a = p(&["-ps", "-dfiles", "--output=x.ign", "in.bu"]).unwrap();
        assert!(a.opts.pretty && a.strict);
        assert_eq!(a.opts.files_dir.as_deref(), Some("files"));
        assert_eq!(a.output.as_deref(), Some("x.ign"));
        assert_eq!(a.positional, vec!["in.bu"]);
        let a = p(&["--files-dir", "d", "-o", "out"]).unwrap();
        assert_eq!(a.opts.files_dir.as_deref(), Some("d"));
        assert_eq!(a.output.as_deref(), Some("out"));
    }

    #[test]
    fn usage_errors() {
        assert_eq!(p(&["--nope"]).err().unwrap(), "unknown flag: --nope");
        assert_eq!(
            p(&["-x"]).err().unwrap(),
            "unknown shorthand flag: 'x' in -x"
        );
        assert_eq!(
            p(&["-o"]).err().unwrap(),
            "flag needs an argument: 'o' in -o"
        );
    }
}
