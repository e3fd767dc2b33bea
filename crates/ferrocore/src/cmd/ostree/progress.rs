//! The one-line console progress of `ostree commit`, `pull` and
//! `pull-local`, shown only when stdout is a terminal.
//!
//! The wording follows upstream's `ostree_repo_pull_default_console_progress_changed`
//! (`Receiving metadata objects: 12/(estimating) -/s 1.4 MB`,
//! `Receiving objects: 45% (1234/2740) 3.1 MB/s 25.3 MB`) so users see the
//! familiar line. The line is redrawn from its own thread, at most ten
//! times a second ([`TICK`]), by polling the library's relaxed counters,
//! so the workers never wait on the terminal. When stdout is not a terminal
//! nothing at all is written: scripts and upstream's tests parse stdout.

use ostree_repo::progress::{Phase, Progress, Snapshot};
use ostree_repo::pull_http::format_size;
use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Redraw interval.
const TICK: Duration = Duration::from_millis(100);

/// Which operation is being watched; picks the wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// `ostree commit`.
    Commit,
    /// `ostree pull`, `ostree pull-local`.
    Pull,
}

/// The status line for `s`, `elapsed` after the operation started.
pub(super) fn render(op: Op, s: &Snapshot, elapsed: Duration) -> String {
    // Upstream averages over the whole transfer and shows "-" during the
    // first second, when a rate would be mostly noise.
    let rate = s
        .bytes
        .checked_div(elapsed.as_secs())
        .map_or_else(|| "-".to_string(), format_size);
    let bytes = format_size(s.bytes);
    // Counters are read one by one, so `done` may be a step ahead.
    let total = s.requested.max(s.done);
    // Nothing to transfer is all of it done.
    let percent = (s.done * 100).checked_div(total).unwrap_or(100);
    match (op, s.phase) {
        (Op::Commit, Phase::Starting | Phase::Scanning) => {
            format!("Scanning: {} files", s.scanned)
        }
        (Op::Commit, Phase::Metadata | Phase::Objects) => format!(
            "Committing: {percent}% ({}/{total} files) {rate}/s {bytes}",
            s.done
        ),
        (Op::Pull, Phase::Starting | Phase::Scanning) => {
            format!("Scanning metadata: {}", s.scanned)
        }
        (Op::Pull, Phase::Metadata) => metadata_line(s, &rate, &bytes),
        (Op::Pull, Phase::Objects) if s.outstanding_metadata > 0 => metadata_line(s, &rate, &bytes),
        (Op::Pull, Phase::Objects) => format!(
            "Receiving objects: {percent}% ({}/{total}) {rate}/s {bytes}",
            s.done
        ),
    }
}

fn metadata_line(s: &Snapshot, rate: &str, bytes: &str) -> String {
    format!(
        "Receiving metadata objects: {}/(estimating) {rate}/s {bytes}",
        s.metadata_fetched
    )
}

/// Whether a status line may be drawn: stdout is a terminal that
/// understands `\r` and erase-to-end-of-line.
fn stdout_is_console() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// The terminal's width, when the kernel knows it.
fn columns() -> Option<usize> {
    // SAFETY: TIOCGWINSZ only fills the winsize passed to it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

/// Rewrites the current terminal line with `line`.
fn draw(line: &str) {
    // A line that wraps can no longer be rewritten with `\r`: cut it to
    // the width (the lines are ASCII), keeping the last column free.
    let line = match columns() {
        Some(c) if line.len() >= c => &line[..c - 1],
        _ => line,
    };
    let mut out = std::io::stdout().lock();
    // Erase to end of line: a shorter line must not leave the tail of a
    // longer one behind. Write errors only cost the display.
    let _ = write!(out, "\r{line}\x1b[K");
    let _ = out.flush();
}

/// Runs `f` with a live status line on a terminal stdout; without a
/// terminal, just runs `f`.
///
/// On success the line ends with the final counts and a newline, drawn
/// even if the operation was too quick for any redraw: it is the summary
/// of what was done, as upstream's last progress update. On failure a
/// line already on screen is ended where it stood, so the error starts a
/// line of its own, and nothing is drawn otherwise.
pub(super) fn with_status<T, E>(op: Op, f: impl FnOnce(&Progress) -> Result<T, E>) -> Result<T, E> {
    let progress = Progress::default();
    if !stdout_is_console() {
        return f(&progress);
    }
    let start = Instant::now();
    let (out, drawn) = std::thread::scope(|scope| {
        let (stop, stopped) = mpsc::channel::<()>();
        let watched = &progress;
        let painter = scope.spawn(move || {
            let mut last = String::new();
            // Ends when `stop` is dropped, even by `f` unwinding.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                let line = render(op, &watched.snapshot(), start.elapsed());
                if line != last {
                    draw(&line);
                    last = line;
                }
            }
            !last.is_empty()
        });
        let out = f(&progress);
        drop(stop);
        // A painter that panicked left no line worth ending.
        (out, painter.join().unwrap_or(false))
    });
    if out.is_ok() {
        draw(&render(op, &progress.snapshot(), start.elapsed()));
    }
    if out.is_ok() || drawn {
        println!();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(phase: Phase) -> Snapshot {
        Snapshot {
            phase,
            ..Default::default()
        }
    }

    #[test]
    fn pull_lines() {
        let s = Snapshot {
            scanned: 17,
            ..snap(Phase::Scanning)
        };
        assert_eq!(
            render(Op::Pull, &s, Duration::ZERO),
            "Scanning metadata: 17"
        );
        let s = Snapshot {
            metadata_fetched: 12,
            bytes: 1_400_000,
            ..snap(Phase::Metadata)
        };
        assert_eq!(
            render(Op::Pull, &s, Duration::from_millis(900)),
            "Receiving metadata objects: 12/(estimating) -/s 1.4 MB"
        );
        // Still discovering the tree: the total is not known yet.
        let s = Snapshot {
            outstanding_metadata: 3,
            metadata_fetched: 40,
            requested: 100,
            done: 50,
            bytes: 360_000,
            ..snap(Phase::Objects)
        };
        assert_eq!(
            render(Op::Pull, &s, Duration::from_secs(2)),
            "Receiving metadata objects: 40/(estimating) 180.0 kB/s 360.0 kB"
        );
        let s = Snapshot {
            requested: 2740,
            done: 1234,
            bytes: 25_300_000,
            ..snap(Phase::Objects)
        };
        // 25.3 MB over 8 s: 3.1625 MB/s, one decimal like g_format_size.
        assert_eq!(
            render(Op::Pull, &s, Duration::from_millis(8_999)),
            "Receiving objects: 45% (1234/2740) 3.2 MB/s 25.3 MB"
        );
    }

    #[test]
    fn commit_lines() {
        let s = Snapshot {
            scanned: 1234,
            ..snap(Phase::Scanning)
        };
        assert_eq!(
            render(Op::Commit, &s, Duration::from_secs(5)),
            "Scanning: 1234 files"
        );
        let s = Snapshot {
            scanned: 2000,
            requested: 2000,
            done: 2000,
            bytes: 56_700_000,
            ..snap(Phase::Objects)
        };
        assert_eq!(
            render(Op::Commit, &s, Duration::from_secs(3)),
            "Committing: 100% (2000/2000 files) 18.9 MB/s 56.7 MB"
        );
    }

    #[test]
    fn counters_read_out_of_step_stay_sane() {
        // `done` read after an increment `requested` missed: never above 100%.
        let s = Snapshot {
            requested: 9,
            done: 10,
            ..snap(Phase::Objects)
        };
        assert_eq!(
            render(Op::Pull, &s, Duration::ZERO),
            "Receiving objects: 100% (10/10) -/s 0 bytes"
        );
        // Nothing to transfer at all.
        assert_eq!(
            render(Op::Pull, &snap(Phase::Objects), Duration::ZERO),
            "Receiving objects: 100% (0/0) -/s 0 bytes"
        );
    }
}
