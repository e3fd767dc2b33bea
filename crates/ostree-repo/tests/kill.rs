//! Crash consistency: a commit, pull-local or HTTP pull (object by object,
//! or through a static delta) killed with SIGKILL at random points must
//! leave a repository that both the real `ostree fsck` and ours accept, and
//! the rerun must complete with the same commit. HTTP is served by
//! upstream's `ostree-trivial-httpd` (Debian package `ostree-tests`).
//!
//! The killed work runs in a child process (this test binary re-executed on
//! the `child_worker` helper). `OSTREE_KILL_ITERATIONS` overrides the
//! number of kills per operation (default 50); the seed is printed so a
//! failure can be replayed with `OSTREE_KILL_SEED`.

use ostree_repo::commit::CommitOptions;
use ostree_repo::pull::PullLocalOptions;
use ostree_repo::{Repo, RepoMode};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const OSTREE: &str = "/usr/bin/ostree";

fn opts() -> CommitOptions {
    CommitOptions {
        branch: Some("kill/test".into()),
        subject: "kill".into(),
        timestamp: Some(1_700_000_000),
        ..Default::default()
    }
}

/// Runs inside the child process only (selected with `--ignored --exact`).
#[test]
#[ignore = "helper re-executed by the kill tests"]
fn child_worker() {
    let Ok(job) = std::env::var("OSTREE_KILL_CHILD") else {
        return;
    };
    let parts: Vec<&str> = job.split('\n').collect();
    match parts.as_slice() {
        ["commit", repo, tree] => {
            let repo = Repo::open(Path::new(repo)).unwrap();
            ostree_repo::commit::commit_dirs(&repo, &[PathBuf::from(tree)], &opts()).unwrap();
        }
        ["http", dst, url] => {
            let dst = Repo::open(Path::new(dst)).unwrap();
            let opts = ostree_repo::pull_http::HttpPullOptions {
                remote: Some("origin".into()),
                ..Default::default()
            };
            ostree_repo::pull_http::pull_http(&dst, url, &["kill/test".into()], &opts).unwrap();
        }
        ["pull", dst, src] => {
            let src = Repo::open(Path::new(src)).unwrap();
            let dst = Repo::open(Path::new(dst)).unwrap();
            ostree_repo::pull::pull_local(&src, &dst, &[], &PullLocalOptions::default()).unwrap();
        }
        _ => panic!("bad job {job:?}"),
    }
}

fn spawn_child(job: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_worker", "--quiet"])
        .env("OSTREE_KILL_CHILD", job)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn real_fsck(repo: &Path) {
    assert!(
        Path::new(OSTREE).exists(),
        "{OSTREE} missing: install the Debian package `ostree`"
    );
    let out = Command::new(OSTREE)
        .arg(format!("--repo={}", repo.display()))
        .args(["fsck", "-q"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "real fsck failed on {}: {}{}",
        repo.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn our_fsck(repo: &Repo) {
    let r = ostree_repo::fsck::fsck(repo, &Default::default(), &|_, _| {}).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

/// A fresh repository. fsync is off: a killed process loses nothing that
/// the page cache holds, and syncfs on a busy shared disk only adds minutes.
fn fresh_repo(p: &Path, mode: RepoMode) {
    let mut r = Repo::create(p, mode).unwrap();
    let mut kf = r.config().clone();
    kf.set("core", "fsync", "false");
    r.write_config(kf).unwrap();
}

fn make_tree(root: &Path) {
    let mut x: u32 = 7;
    let mut next = || {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (x >> 16) as u8
    };
    for d in 0..6 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..10 {
            let len = if f == 0 { 200_000 } else { 3_000 + f * 100 };
            let data: Vec<u8> = (0..len).map(|_| next()).collect();
            fs::write(dir.join(format!("f{f}")), data).unwrap();
        }
        std::os::unix::fs::symlink(format!("f{d}"), dir.join("link")).unwrap();
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn iterations() -> usize {
    std::env::var("OSTREE_KILL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

fn seed() -> u64 {
    let s = std::env::var("OSTREE_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill test seed: {s}");
    s
}

/// Runs `job` to completion once (timing it), then `n` times killed after a
/// random delay within that time; after each kill both fsck implementations
/// must pass and a rerun must pass `check`.
fn kill_loop(prepare: impl Fn(&Path), job: impl Fn(&Path) -> String, check: impl Fn(&Repo)) {
    let d = tempfile::tempdir().unwrap();
    let probe = d.path().join("probe");
    prepare(&probe);
    let t0 = Instant::now();
    let status = spawn_child(&job(&probe)).wait().unwrap();
    assert!(status.success());
    let full = t0.elapsed();
    check(&Repo::open(&probe).unwrap());
    let mut rng = Rng(seed());
    let mut killed_midway = 0;
    let mut window = full;
    for i in 0..iterations() {
        let repo = d.path().join(format!("r{i}"));
        prepare(&repo);
        let delay = Duration::from_micros(rng.next() % (window.as_micros() as u64 + 1));
        let mut child = spawn_child(&job(&repo));
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_midway += 1;
        } else {
            // The machine got faster than the probe run: narrow the window
            // so kills keep landing inside the operation.
            window = window.mul_f64(0.8);
        }
        let _ = child.kill();
        child.wait().unwrap();
        real_fsck(&repo);
        let r = Repo::open(&repo).unwrap();
        our_fsck(&r);
        // The rerun completes and produces the same result.
        assert!(
            spawn_child(&job(&repo)).wait().unwrap().success(),
            "rerun {i}"
        );
        real_fsck(&repo);
        check(&Repo::open(&repo).unwrap());
        fs::remove_dir_all(&repo).unwrap();
    }
    eprintln!(
        "{killed_midway} of {} kills hit a running process (full run {full:?})",
        iterations()
    );
    assert!(
        killed_midway * 2 >= iterations(),
        "too few kills landed mid-run"
    );
}

#[test]
fn killed_commit_leaves_consistent_repo() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    // The expected commit, computed once without interruption.
    let reference = Repo::create(&d.path().join("reference"), RepoMode::Archive).unwrap();
    let expected =
        ostree_repo::commit::commit_dirs(&reference, std::slice::from_ref(&tree), &opts()).unwrap();
    kill_loop(
        |p| fresh_repo(p, RepoMode::Archive),
        |p| format!("commit\n{}\n{}", p.display(), tree.display()),
        |r| assert_same_tree(r, &reference, &expected),
    );
}

/// The ref points at a commit with the expected tree. (A kill after the ref
/// was written makes the rerun commit on top, so the checksum may differ by
/// the parent link.)
fn assert_same_tree(r: &Repo, reference: &Repo, expected: &ostree_repo::Checksum) {
    let got = r.resolve_rev("kill/test", false).unwrap().unwrap();
    let (a, b) = (
        r.load_commit(&got).unwrap(),
        reference.load_commit(expected).unwrap(),
    );
    assert_eq!((a.root_tree, a.root_meta), (b.root_tree, b.root_meta));
    if a.parent.is_none() {
        assert_eq!(&got, expected);
    }
}

#[test]
fn killed_pull_local_leaves_consistent_repo() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let src_path = d.path().join("src");
    let src = Repo::create(&src_path, RepoMode::Archive).unwrap();
    let expected =
        ostree_repo::commit::commit_dirs(&src, std::slice::from_ref(&tree), &opts()).unwrap();
    kill_loop(
        |p| fresh_repo(p, RepoMode::BareUser),
        |p| format!("pull\n{}\n{}", p.display(), src_path.display()),
        |r| assert_eq!(r.resolve_rev("kill/test", false).unwrap(), Some(expected)),
    );
}

/// Serves `dir` over HTTP until `dir` is deleted (`--autoexit`).
fn serve(dir: &Path) -> String {
    let httpd = "/usr/libexec/libostree/ostree-trivial-httpd";
    assert!(
        Path::new(httpd).exists(),
        "{httpd} missing: install the Debian package `ostree-tests`"
    );
    let portfile = dir.join("httpd-port");
    let st = Command::new(httpd)
        .args(["--autoexit", "--daemonize", "-p"])
        .arg(&portfile)
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    let port = fs::read_to_string(&portfile).unwrap();
    format!("http://127.0.0.1:{}", port.trim())
}

fn killed_http_pull(with_delta: bool) {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let srv = d.path().join("srv");
    let src_path = srv.join("repo");
    fs::create_dir_all(&srv).unwrap();
    let mut src = Repo::create(&src_path, RepoMode::Archive).unwrap();
    let expected =
        ostree_repo::commit::commit_dirs(&src, std::slice::from_ref(&tree), &opts()).unwrap();
    if with_delta {
        let g = ostree_repo::delta::GenerateOptions::new(None, expected);
        ostree_repo::delta::generate(&src, &g).unwrap();
    }
    ostree_repo::summary::regenerate(&mut src, &[]).unwrap();
    let url = format!("{}/repo", serve(&srv));
    kill_loop(
        |p| fresh_repo(p, RepoMode::BareUser),
        |p| format!("http\n{}\n{url}", p.display()),
        |r| {
            assert_eq!(
                r.read_ref(Some("origin"), "kill/test").unwrap(),
                Some(expected)
            );
            our_fsck(r);
        },
    );
}

#[test]
fn killed_http_pull_leaves_consistent_repo() {
    killed_http_pull(false);
}

#[test]
fn killed_http_delta_pull_leaves_consistent_repo() {
    killed_http_pull(true);
}
