//! The console progress line of `ferrocore ostree commit`, `pull-local` and
//! HTTP `pull`: drawn on a terminal stdout (a pseudo-terminal made by
//! util-linux `script`), absent otherwise, and never changing what the
//! commands print for scripts.
//!
//! Needs `script` (util-linux) and upstream's test web server
//! `/usr/libexec/libostree/ostree-trivial-httpd` (Debian `ostree-tests`);
//! a missing tool fails the test rather than skipping it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ferrocore");
const SCRIPT: &str = "/usr/bin/script";
const HTTPD: &str = "/usr/libexec/libostree/ostree-trivial-httpd";

/// `ferrocore ostree ARGS` with stdout on a pipe; returns stdout.
fn ostree(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("ostree")
        .args(args)
        .output()
        .expect("spawn ferrocore");
    assert!(
        out.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `ferrocore ostree ARGS` with stdout and stderr on a pseudo-terminal;
/// returns whether it succeeded and what the terminal received.
fn run_on_tty(args: &[&str]) -> (bool, String) {
    assert!(
        Path::new(SCRIPT).exists(),
        "{SCRIPT} (util-linux) is missing"
    );
    let cmd: Vec<String> = std::iter::once(BIN)
        .chain(std::iter::once("ostree"))
        .chain(args.iter().copied())
        .map(shell_quote)
        .collect();
    let out = Command::new(SCRIPT)
        .args(["-qfec", &cmd.join(" "), "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .expect("spawn script");
    let text = String::from_utf8(out.stdout).expect("utf-8 terminal output");
    (out.status.success(), text)
}

/// [`run_on_tty`] of a command that must succeed, its output split into
/// the status-line frames (in drawing order, escape sequences removed) and
/// everything else (with the terminal's CRLF turned back into LF).
fn ostree_on_tty(args: &[&str]) -> (Vec<String>, String) {
    let (ok, text) = run_on_tty(args);
    assert!(ok, "ostree {args:?} on a tty: {text}");
    let mut frames = Vec::new();
    let mut rest = String::new();
    for line in text.replace("\r\n", "\n").split_inclusive('\n') {
        if let Some(drawn) = line.strip_prefix('\r') {
            for f in drawn.trim_end_matches('\n').split('\r') {
                frames.push(f.replace("\x1b[K", ""));
            }
        } else {
            rest.push_str(line);
        }
    }
    (frames, rest)
}

/// GLib's `g_format_size`, independently of the crate's copy.
fn glib_size(n: u64) -> String {
    match n {
        0..=999 => format!("{n} bytes"),
        1_000..=999_999 => format!("{:.1} kB", n as f64 / 1e3),
        _ => format!("{:.1} MB", n as f64 / 1e6),
    }
}

/// A tree of `dirs` directories of 10 files each (sizes vary) plus one
/// symlink; returns (entries to commit, regular file bytes).
fn make_tree(root: &Path, dirs: usize) -> (u64, u64) {
    let (mut entries, mut bytes) = (0, 0);
    for d in 0..dirs {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..10 {
            let len = 100 + 997 * (d * 10 + f);
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + d + f) as u8).collect();
            let p = dir.join(format!("f{f}"));
            fs::write(&p, &data).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
            entries += 1;
            bytes += len as u64;
        }
    }
    std::os::unix::fs::symlink("d0/f0", root.join("link")).unwrap();
    (entries + 1, bytes)
}

fn init(path: &Path, mode: &str) -> String {
    let repo = format!("--repo={}", path.display());
    ostree(&[&repo, "init", &format!("--mode={mode}")]);
    repo
}

/// Asserts every frame is one of `prefixes`' lines and returns the last.
fn last_frame<'a>(frames: &'a [String], prefixes: &[&str]) -> &'a str {
    for f in frames {
        assert!(
            prefixes.iter().any(|p| f.starts_with(p)),
            "unexpected status line {f:?}"
        );
    }
    frames.last().expect("a status line was drawn")
}

/// `N metadata, M content objects ...`: (N, M).
fn object_counts(status: &str) -> (u64, u64) {
    let w: Vec<&str> = status.split_whitespace().collect();
    assert_eq!((w[1], w[4]), ("metadata,", "objects"), "{status}");
    (w[0].parse().unwrap(), w[2].parse().unwrap())
}

#[test]
fn commit_and_pull_local_show_progress_only_on_a_tty() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (entries, bytes) = make_tree(&t.join("tree"), 8);
    let tree = format!("--tree=dir={}", t.join("tree").display());
    let commit = [
        "commit",
        "-b",
        "main",
        "-s",
        "s",
        "--timestamp=@1000",
        &tree,
    ];

    // Without a terminal: exactly the checksum, as before.
    let plain_repo = init(&t.join("plain"), "archive");
    let plain = ostree(&[&[plain_repo.as_str()][..], &commit].concat());
    assert_eq!(plain.len(), 65, "{plain:?}");
    assert!(plain[..64].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(plain, ostree(&[&plain_repo, "rev-parse", "main"]));

    // On a terminal: the same output, after a status line whose last frame
    // accounts for every file and byte of the tree.
    let tty_repo = init(&t.join("tty"), "archive");
    let (frames, rest) = ostree_on_tty(&[&[tty_repo.as_str()][..], &commit].concat());
    assert_eq!(rest, plain);
    let last = last_frame(&frames, &["Scanning: ", "Committing: "]);
    assert!(
        last.starts_with(&format!("Committing: 100% ({entries}/{entries} files) ")),
        "{last:?}"
    );
    assert!(
        last.ends_with(&format!("/s {}", glib_size(bytes))),
        "{last:?}"
    );

    // pull-local into bare-user-only converts (copies) every object.
    let src = t.join("plain").display().to_string();
    let plain_dst = init(&t.join("dst-plain"), "bare-user-only");
    let status = ostree(&[&plain_dst, "pull-local", &src, "main"]);
    let (metadata, content) = object_counts(&status);
    assert_eq!(content, entries, "{status}");
    assert!(
        status.ends_with(&format!("; {bytes} bytes content written\n")),
        "{status}"
    );
    let tty_dst = init(&t.join("dst-tty"), "bare-user-only");
    let (frames, rest) = ostree_on_tty(&[&tty_dst, "pull-local", &src, "main"]);
    assert_eq!(rest, status);
    let last = last_frame(&frames, &["Scanning metadata: ", "Receiving objects: "]);
    let n = metadata + content;
    assert!(
        last.starts_with(&format!("Receiving objects: 100% ({n}/{n}) ")),
        "{last:?}"
    );
    assert!(
        last.ends_with(&format!("/s {}", glib_size(bytes))),
        "{last:?}"
    );

    // Pulling again finds everything present: nothing left to receive.
    let (frames, rest) = ostree_on_tty(&[&tty_dst, "pull-local", &src, "main"]);
    assert_eq!(
        rest,
        "0 metadata, 0 content objects imported; 0 bytes content written\n"
    );
    let last = last_frame(&frames, &["Scanning metadata: ", "Receiving objects: "]);
    assert!(
        last.starts_with("Receiving objects: 100% (0/0) "),
        "{last:?}"
    );
}

#[test]
fn a_failure_draws_nothing_before_its_error() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = init(&tmp.path().join("repo"), "archive");
    let tree = tmp.path().display().to_string();
    // Fails inside the watched operation, before anything was drawn.
    let (ok, text) = run_on_tty(&[&repo, "commit", &tree]);
    assert!(!ok);
    assert_eq!(
        text,
        "error: A branch must be specified with --branch, or use --orphan\r\n"
    );
}

#[test]
fn http_pull_shows_progress_only_on_a_tty() {
    assert!(
        Path::new(HTTPD).exists(),
        "{HTTPD} (ostree-tests) is missing"
    );
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let srv = t.join("srv");
    let (entries, _) = make_tree(&t.join("tree"), 4);
    let repo = init(&srv.join("repo"), "archive");
    let tree = format!("--tree=dir={}", t.join("tree").display());
    ostree(&[&repo, "commit", "-b", "main", "-s", "s", &tree]);
    ostree(&[&repo, "summary", "-u"]);
    // Exits by itself once `srv` is gone, i.e. when `tmp` is dropped.
    let portfile = t.join("port");
    let ok = Command::new(HTTPD)
        .args(["--autoexit", "--daemonize", "-p"])
        .arg(&portfile)
        .arg(&srv)
        .status()
        .unwrap()
        .success();
    assert!(ok, "{HTTPD} failed");
    let port = fs::read_to_string(&portfile).unwrap();
    let url = format!("http://127.0.0.1:{}/repo", port.trim());

    let pull = |name: &str, tty: bool| {
        let dst = init(&t.join(name), "bare-user-only");
        ostree(&[&dst, "remote", "add", "--no-gpg-verify", "origin", &url]);
        if tty {
            ostree_on_tty(&[&dst, "pull", "origin", "main"])
        } else {
            (Vec::new(), ostree(&[&dst, "pull", "origin", "main"]))
        }
    };
    // The closing line names the elapsed seconds, which may differ.
    let seconds = |s: &str| {
        let i = s.find(" in ").expect("elapsed time") + 4;
        let j = i + s[i..].find(' ').unwrap();
        format!("{}<N>{}", &s[..i], &s[j..])
    };
    let (_, status) = pull("plain", false);
    assert!(
        !status.contains('\r') && status.lines().count() == 1,
        "{status:?}"
    );
    let (metadata, content) = object_counts(&status);
    assert_eq!(content, entries, "{status}");
    let (frames, rest) = pull("tty", true);
    assert_eq!(seconds(&rest), seconds(&status));
    let last = last_frame(
        &frames,
        &["Receiving metadata objects: ", "Receiving objects: "],
    );
    let n = metadata + content;
    // Every response byte counts, as in the closing line's "transferred".
    let transferred = status.split("; ").nth(1).unwrap();
    let transferred = &transferred[..transferred.find(" transferred").unwrap()];
    assert!(
        last.starts_with(&format!("Receiving objects: 100% ({n}/{n}) ")),
        "{last:?}"
    );
    assert!(last.ends_with(&format!("/s {transferred}")), "{last:?}");
}
