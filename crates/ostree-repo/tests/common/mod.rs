//! Helpers shared by the tests that drive the real `ostree` (Debian package
//! `ostree`) and upstream's test web server (package `ostree-tests`).

use std::path::Path;
use std::process::Command;

/// The real ostree CLI.
pub const OSTREE: &str = "/usr/bin/ostree";
/// Upstream's test web server.
pub const HTTPD: &str = "/usr/libexec/libostree/ostree-trivial-httpd";

/// Runs `prog` and returns its stdout; a missing tool or a failure fails
/// the test (a silent skip would hide breakage).
pub fn run(prog: &str, args: &[&str]) -> String {
    assert!(
        Path::new(prog).exists(),
        "{prog} is missing (see module docs)"
    );
    let out = Command::new(prog).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Serves `dir` on 127.0.0.1; the server exits by itself once `dir` is
/// deleted (`--autoexit`), i.e. when the test's temp dir is dropped.
#[allow(dead_code)] // not every test binary serves a repository
pub fn serve(dir: &Path) -> String {
    serve_with(dir, &[])
}

/// [`serve`], logging requests to `dir/httpd.log`.
#[allow(dead_code)]
pub fn serve_logged(dir: &Path) -> String {
    let log = dir.join("httpd.log");
    serve_with(dir, &["--log-file", log.to_str().unwrap()])
}

fn serve_with(dir: &Path, extra: &[&str]) -> String {
    let portfile = dir.join("httpd-port");
    let mut args = vec![
        "--autoexit",
        "--daemonize",
        "-p",
        portfile.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    run(HTTPD, &args);
    let port = std::fs::read_to_string(&portfile).expect("port file");
    format!("http://127.0.0.1:{}", port.trim())
}

/// Deterministic pseudo-random (incompressible) bytes.
#[allow(dead_code)] // not every test binary needs them
pub fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
