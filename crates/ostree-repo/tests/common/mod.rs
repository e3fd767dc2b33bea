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
