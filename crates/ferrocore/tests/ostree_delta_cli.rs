//! `ferrocore ostree static-delta generate` beside the real tool
//! (/usr/bin/ostree, Debian package `ostree`): the same repository, the same
//! options, the same report on stderr — which files were found modified,
//! how many became bsdiff patches, fallbacks, part contents — except the
//! compressed sizes, which depend on the xz encoder. The trees change their
//! files near the start, where upstream's rollsum finds too little in common
//! and falls back to bsdiff, so both tools take the same decisions.

use std::fs;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ferrocore");
const OSTREE: &str = "/usr/bin/ostree";

/// Runs `prog [prefix...] --repo=REPO args` and returns stderr.
fn stderr_of(prog: &str, prefix: &[&str], repo: &Path, args: &[&str]) -> String {
    assert!(Path::new(prog).exists(), "{prog} is missing");
    let out = Command::new(prog)
        .args(prefix)
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).expect("utf-8 stderr")
}

/// The report with compressed sizes blanked out.
fn normalized(report: &str) -> String {
    report
        .lines()
        .map(|l| {
            l.split(' ')
                .map(|w| {
                    if w.starts_with("compressed:") {
                        "compressed:N"
                    } else if w.starts_with("compressed=") {
                        "compressed=N"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Both tools' reports for `static-delta generate ARGS`, normalized.
fn both(repo: &Path, args: &[&str]) -> (String, String) {
    let mut a = vec!["static-delta", "generate"];
    a.extend_from_slice(args);
    let real = stderr_of(OSTREE, &[], repo, &a);
    let ours = stderr_of(BIN, &["ostree"], repo, &a);
    (normalized(&real), normalized(&ours))
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u32) -> Vec<u8> {
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

/// A repository (made by the real tool) with two commits on `main`; in the
/// second, each `(name, size)` file has its first bytes changed.
fn repo_with(tmp: &Path, files: &[(&str, usize)]) -> std::path::PathBuf {
    let repo = tmp.join("repo");
    let tree = tmp.join("tree");
    let run = |args: &[&str]| {
        let st = Command::new(OSTREE)
            .arg(format!("--repo={}", repo.display()))
            .args(args)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    run(&["init", "--mode=archive"]);
    for v in [1, 2] {
        let _ = fs::remove_dir_all(&tree);
        fs::create_dir_all(&tree).unwrap();
        for (i, (name, size)) in files.iter().enumerate() {
            let mut data = noise(*size, i as u32 + 1);
            if v == 2 {
                data[10..20].copy_from_slice(b"0123456789");
            }
            fs::write(tree.join(name), data).unwrap();
        }
        fs::write(tree.join("same"), b"unchanged\n").unwrap();
        let t = format!("--tree=dir={}", tree.display());
        run(&["commit", "-b", "main", &t, "-s", &format!("v{v}")]);
    }
    repo
}

#[test]
fn generate_reports_what_the_real_tool_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(tmp.path(), &[("big.bin", 1_000_000), ("small.bin", 30_000)]);
    let (real, ours) = both(&repo, &["main"]);
    assert!(real.contains("bsdiff=2 objects"), "{real}");
    assert_eq!(ours, real);

    let (real, ours) = both(&repo, &["--disable-bsdiff", "main"]);
    assert!(real.contains("bsdiff=0 objects"), "{real}");
    assert_eq!(ours, real);
}

#[test]
fn max_bsdiff_size_counts_megabytes_of_a_million_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    // Old and new together: 1,020,000 bytes, over 1 MB but under 1 MiB.
    let repo = repo_with(tmp.path(), &[("half.bin", 510_000)]);
    let (real, ours) = both(&repo, &["--max-bsdiff-size=1", "main"]);
    assert!(real.contains("bsdiff=0 objects"), "{real}");
    assert_eq!(ours, real);
    let (real, ours) = both(&repo, &["--max-bsdiff-size=2", "main"]);
    assert!(real.contains("bsdiff=1 objects"), "{real}");
    assert_eq!(ours, real);
}

#[test]
fn fallback_size_counts_megabytes_of_a_million_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    // Over 4 MB, under 4 MiB: a fallback by default.
    let repo = repo_with(tmp.path(), &[("mid.bin", 4_100_000)]);
    let (real, ours) = both(&repo, &["--empty", "main"]);
    assert!(real.contains("fallback for "), "{real}");
    assert_eq!(ours, real);
    let (real, ours) = both(&repo, &["--empty", "--min-fallback-size=5", "main"]);
    assert!(!real.contains("fallback for "), "{real}");
    assert_eq!(ours, real);
}
