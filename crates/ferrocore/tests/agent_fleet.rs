//! Issue #8's "must show" for the update agent, with real processes on 127.0.0.1:
//! the update server (`ferrocore update-server serve`), the FleetLock server
//! (`ferrocore fleetlock-server`), an archive OSTree repository served over HTTP by
//! upstream's `ostree-trivial-httpd` (Debian package `ostree-tests`; a missing
//! server fails the tests), and agents (`ferrocore agent run`), each on its own
//! directory sysroot made with `ferrocore admin` from commits made with
//! `ferrocore ostree commit`.
//!
//! The test plays the hardware. The agent's `--reboot-command` records the reboot;
//! the test then stops the agent, plays systemd-boot on the node's boot entries
//! (`sysroot::bootcount::systemd_boot_attempt`, which spends boot-counting tries),
//! resolves the chosen entry's `ostree=` to its deployment as `ostree-prepare-root`
//! does (that directory becomes the next agent's `--booted-root`, what `/` is on a
//! node) and, for a healthy boot, runs boot-complete as
//! `ferrocore-boot-complete.service` would. A broken release is one whose boots
//! never reach boot-complete, so the boot loader falls back to the previous
//! deployment.
//!
//! Scenarios are independent tests, each with its own servers on their own ports
//! (with `--nocapture`, each prints its duration). They mostly wait, so
//! `--test-threads=8` runs them all at once; the periodic window waits for the
//! next full minute, which makes it the longest (20 to 80 s).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent::status::{AgentStatus, Hold};
use sysroot::bls::BootEntry;
use sysroot::bootcount::systemd_boot_attempt;
use sysroot::prepare_root::resolve_deployment;
use sysroot::{BootedSource, Sysroot};

const BIN: &str = env!("CARGO_BIN_EXE_ferrocore");
const HTTPD: &str = "/usr/libexec/libostree/ostree-trivial-httpd";
const OS: &str = "testos";
const REF: &str = "testos/x86_64/coreos/stable";
const STREAM: &str = "stable";
/// Releases A, B, C, D of the stream, oldest first.
const V: [&str; 4] = [
    "41.20250101.3.0",
    "41.20250108.3.0",
    "41.20250115.3.0",
    "41.20250122.3.0",
];
const A: &str = V[0];
const B: &str = V[1];
const C: &str = V[2];
const D: &str = V[3];
/// Upper bound for anything that should happen within a few agent ticks.
const WAIT: Duration = Duration::from_secs(60);
/// Deployment directories stay removable, so the temporary directories can go.
const DEBUG_ENV: (&str, &str) = ("OSTREE_SYSROOT_DEBUG", "mutable-deployments");

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test paths")
}

/// Runs `ferrocore ARGS`, which must succeed; returns its stdout.
fn ferrocore(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env(DEBUG_ENV.0, DEBUG_ENV.1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ferrocore {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A background process whose output goes to a log file.
struct Proc {
    child: Child,
    log: PathBuf,
    /// Log size when it started: where its own output begins.
    start: u64,
}

impl Proc {
    fn spawn(program: &str, args: &[&str], log: &Path) -> Proc {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let start = f.metadata().unwrap().len();
        let child = Command::new(program)
            .args(args)
            .env(DEBUG_ENV.0, DEBUG_ENV.1)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        Proc {
            child,
            log: log.to_path_buf(),
            start,
        }
    }

    /// Its output so far.
    fn output(&self) -> String {
        let all = fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&all[(self.start as usize).min(all.len())..]).into_owned()
    }

    fn assert_running(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!("{} exited ({st}):\n{}", self.log.display(), self.output());
        }
    }

    /// Waits for a line containing `needle`; returns what follows it on the line.
    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(rest) = self
                .output()
                .lines()
                .find_map(|l| l.split_once(needle).map(|(_, r)| r.trim().to_string()))
            {
                return rest;
            }
            self.assert_running();
            assert!(Instant::now() < deadline, "no {needle:?} in {:?}", self.log);
            sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to end by itself.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "{:?} still running", self.log);
            sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status (killed after 10 s).
    fn terminate(&mut self) -> ExitStatus {
        // The shell's builtin: no procps needed.
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().unwrap();
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One scenario's servers, release metadata and commits.
struct World {
    tmp: tempfile::TempDir,
    logs: PathBuf,
    /// version → commit checksum.
    commits: BTreeMap<String, String>,
    srv_repo: PathBuf,
    repo_url: String,
    data: PathBuf,
    updates: PathBuf,
    servers: Vec<Proc>,
    cincinnati: String,
    fleetlock: String,
    http: reqwest::blocking::Client,
}

/// A bootable tree: kernel and initramfs in the modules layout, `/usr/etc`.
fn make_tree(tree: &Path, version: &str) {
    for d in [
        "usr/bin",
        "usr/lib/modules/6.1.0",
        "usr/etc",
        "sysroot",
        "var",
        "boot",
    ] {
        fs::create_dir_all(tree.join(d)).unwrap();
    }
    fs::write(
        tree.join("usr/lib/modules/6.1.0/vmlinuz"),
        format!("kernel of {version}\n"),
    )
    .unwrap();
    fs::write(
        tree.join("usr/lib/modules/6.1.0/initramfs.img"),
        "an initramfs\n",
    )
    .unwrap();
    fs::write(tree.join("usr/bin/release"), format!("{version}\n")).unwrap();
    fs::write(
        tree.join("usr/etc/os-release"),
        format!("ID={OS}\nVERSION_ID={version}\n"),
    )
    .unwrap();
}

impl World {
    /// Commits the first `n` releases to an archive repository served over HTTP and
    /// lists them in the stream's release index. Nothing is a target until the
    /// scenario's updates metadata names it (rollout or barrier).
    fn new(name: &str, n: usize) -> World {
        std::env::set_var(DEBUG_ENV.0, DEBUG_ENV.1);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("agent-fleet-{name}-"))
            .tempdir()
            .unwrap();
        let logs = tmp.path().join("logs");
        fs::create_dir_all(&logs).unwrap();
        let srv = tmp.path().join("srv");
        let srv_repo = srv.join("repo");
        fs::create_dir_all(&srv).unwrap();
        let repo_arg = format!("--repo={}", s(&srv_repo));
        ferrocore(&["ostree", &repo_arg, "init", "--mode=archive"]);
        let data = tmp.path().join("data");
        let index = data.join(format!("prod/streams/{STREAM}/releases.json"));
        fs::create_dir_all(index.parent().unwrap()).unwrap();
        fs::create_dir_all(data.join("updates")).unwrap();
        let mut commits = BTreeMap::new();
        for v in &V[..n] {
            let tree = tmp.path().join("trees").join(v);
            make_tree(&tree, v);
            let csum = ferrocore(&[
                "ostree",
                &repo_arg,
                "commit",
                &format!("--branch={REF}"),
                &format!("--subject=Build {v}"),
                &format!("--add-metadata-string=version={v}"),
                &format!("--add-metadata-string=fedora-coreos.stream={STREAM}"),
                "--bootable",
                &format!("--tree=dir={}", s(&tree)),
            ])
            .trim()
            .to_string();
            assert_eq!(csum.len(), 64, "commit checksum {csum:?}");
            ferrocore(&[
                "release",
                "add",
                "--index",
                s(&index),
                "--stream",
                STREAM,
                "--version",
                v,
                "--checksum",
                &csum,
            ]);
            commits.insert(v.to_string(), csum);
        }
        assert!(
            Path::new(HTTPD).exists(),
            "{HTTPD} is missing (ostree-tests)"
        );
        let port_file = tmp.path().join("httpd-port");
        let httpd = Proc::spawn(
            HTTPD,
            &["-p", s(&port_file), s(&srv)],
            &logs.join("httpd.log"),
        );
        let deadline = Instant::now() + WAIT;
        let port = loop {
            if let Ok(p) = fs::read_to_string(&port_file) {
                if p.ends_with('\n') {
                    break p.trim().to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "ostree-trivial-httpd gave no port"
            );
            sleep(Duration::from_millis(20));
        };
        // Empty updates metadata: the stream is served, nothing is a target yet.
        let updates = data.join(format!("updates/{STREAM}.json"));
        let mut u = release_meta::Updates::new(STREAM);
        u.touch(now() as i64);
        release_meta::fsutil::write_json(&updates, &u).unwrap();
        World {
            updates,
            repo_url: format!("http://127.0.0.1:{port}/repo"),
            tmp,
            logs,
            commits,
            srv_repo,
            data,
            servers: vec![httpd],
            cincinnati: String::new(),
            fleetlock: String::new(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// `ferrocore release ARGS --updates <this stream's updates metadata>`.
    fn release(&self, args: &[&str]) {
        let mut all = vec!["release"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--updates", s(&self.updates)]);
        ferrocore(&all);
    }

    /// Rolls `version` out to the whole fleet at once.
    fn roll_out(&self, version: &str) {
        self.release(&[
            "rollout",
            "start",
            "--version",
            version,
            "--duration-minutes",
            "1",
            "--start-percentage",
            "1",
        ]);
    }

    fn start_update_server(&mut self, pause_after_failures: u32) {
        let db = self.tmp.path().join("reports.sqlite");
        let mut p = Proc::spawn(
            BIN,
            &[
                "update-server",
                "serve",
                "--data-dir",
                s(&self.data),
                "--listen",
                "127.0.0.1:0",
                "--db",
                s(&db),
                "--pause-after-failures",
                &pause_after_failures.to_string(),
                "--reload-interval-secs",
                "1",
            ],
            &self.logs.join("update-server.log"),
        );
        self.cincinnati = p.wait_for_line("listening on ");
        self.servers.push(p);
    }

    fn start_fleetlock(&mut self, slots: u32) {
        let cfg = self.tmp.path().join("fleetlock.toml");
        let db = self.tmp.path().join("fleetlock.sqlite");
        fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:0\"\n[store]\nkind = \"sqlite\"\npath = \"{}\"\n\
                 [lock]\ndefault_slots = {slots}\n",
                s(&db)
            ),
        )
        .unwrap();
        let mut p = Proc::spawn(
            BIN,
            &["fleetlock-server", "--config", s(&cfg)],
            &self.logs.join("fleetlock-server.log"),
        );
        self.fleetlock = p.wait_for_line("listening on ");
        self.servers.push(p);
    }

    fn get_json(&self, url: &str) -> serde_json::Value {
        let r = self.http.get(url).send().unwrap();
        assert!(r.status().is_success(), "GET {url}: {}", r.status());
        r.json().unwrap()
    }

    /// The update server's `/v1/status` for the stream.
    fn server_status(&self) -> serde_json::Value {
        let v = self.get_json(&format!("{}/v1/status", self.cincinnati));
        v["streams"][STREAM].clone()
    }

    /// Nodes reporting `outcome` for an update to `version`, per the update server.
    fn reported(&self, version: &str, outcome: &str) -> u64 {
        self.server_status()["reports"][version][outcome]
            .as_u64()
            .unwrap_or(0)
    }

    fn rollout(&self, version: &str) -> serde_json::Value {
        let st = self.server_status();
        st["rollouts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["version"] == version)
            .cloned()
            .unwrap_or_else(|| panic!("no rollout of {version} in {st}"))
    }

    /// Holders of the FleetLock group `default`.
    fn lock_holders(&self) -> Vec<String> {
        let st: fleetlock::server::Status =
            serde_json::from_value(self.get_json(&format!("{}v1/status", self.fleetlock))).unwrap();
        st.groups
            .iter()
            .find(|g| g.name == "default")
            .map(|g| g.holders.iter().map(|h| h.id.clone()).collect())
            .unwrap_or_default()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // Tell what the processes said before the directory goes away.
        let mut logs: Vec<_> = fs::read_dir(&self.logs)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.sort();
        for l in logs {
            let text = fs::read_to_string(&l).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("===== {} (last {} lines)", l.display(), tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A node: a directory sysroot booted into release A, and its agent.
struct Node {
    name: String,
    uuid: String,
    dir: PathBuf,
    root: PathBuf,
    log: PathBuf,
    commits: BTreeMap<String, String>,
    /// Deployment directory of the current boot.
    booted_root: Option<PathBuf>,
    agent: Option<Proc>,
}

impl Node {
    /// Deploys A (following `origin:REF`, the origin being the world's HTTP
    /// repository), with `boot_tries` of boot counting for later deployments, and
    /// configures the agent: the world's servers, 1 s timings, then `extra` TOML.
    fn new(w: &World, name: &str, extra: &str, boot_tries: Option<u32>) -> Node {
        let dir = w.tmp.path().join("nodes").join(name);
        let root = dir.join("sysroot");
        fs::create_dir_all(&dir).unwrap();
        let r = s(&root);
        ferrocore(&["admin", "init-fs", r]);
        ferrocore(&["admin", "--sysroot", r, "os-init", OS]);
        let repo = format!("--repo={r}/ostree/repo");
        let a = &w.commits[A];
        ferrocore(&["ostree", &repo, "pull-local", s(&w.srv_repo), a]);
        ferrocore(&[
            "ostree",
            &repo,
            "refs",
            &format!("--create=origin:{REF}"),
            a,
        ]);
        ferrocore(&[
            "ostree",
            &repo,
            "remote",
            "add",
            "--no-gpg-verify",
            "origin",
            &w.repo_url,
        ]);
        ferrocore(&[
            "admin",
            "--sysroot",
            r,
            "deploy",
            "--os",
            OS,
            &format!("origin:{REF}"),
        ]);
        if let Some(t) = boot_tries {
            // Set after deploying A, so only updates are counted.
            ferrocore(&[
                "ostree",
                &repo,
                "config",
                "set",
                "sysroot.boot-counting-tries",
                &t.to_string(),
            ]);
        }
        // A stable id per node name, 32 hex digits as Zincati sends it.
        let uuid = format!(
            "{:032x}",
            name.bytes()
                .fold(0x5eed_u128, |h, b| h.wrapping_mul(1_000_003)
                    ^ u128::from(b))
        );
        let conf = dir.join("agent.d");
        fs::create_dir_all(&conf).unwrap();
        fs::write(
            conf.join("50-node.toml"),
            format!(
                "[identity]\nnode_uuid = \"{uuid}\"\n[cincinnati]\nbase_url = \"{}\"\n\
                 [agent.timing]\nsteady_interval_secs = 1\nretry_interval_secs = 1\n",
                w.cincinnati
            ),
        )
        .unwrap();
        let script = dir.join("reboot.sh");
        // Records the reboot; with a `crash-at-reboot` file present, the agent
        // (its parent) dies instead, once, as a crash right before rebooting.
        fs::write(
            &script,
            format!(
                "#!/bin/sh\nif [ -e {crash} ]; then rm -f {crash}; kill -KILL $PPID; exit 1; fi\n\
                 echo \"$(date +%s.%N) $FERROCORE_REBOOT_VERSION\" >> {log}\n",
                crash = s(&dir.join("crash-at-reboot")),
                log = s(&dir.join("reboots.log"))
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let mut n = Node {
            name: name.into(),
            uuid,
            log: w.logs.join(format!("agent-{name}.log")),
            dir,
            root,
            commits: w.commits.clone(),
            booted_root: None,
            agent: None,
        };
        n.configure(extra);
        assert_eq!(n.boot(true), A);
        n
    }

    /// Replaces the scenario's configuration fragment (read at the next start).
    fn configure(&self, toml: &str) {
        fs::write(self.dir.join("agent.d/60-scenario.toml"), toml).unwrap();
    }

    fn note(&self, what: &str) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let _ = writeln!(f, "===== test: {what} at {:.3}", now());
    }

    /// Powers the node on: `/run` is gone, systemd-boot picks an entry (spending a
    /// boot-counting try), the kernel gets its command line; a `healthy` boot then
    /// reaches boot-complete. Returns the booted release.
    fn boot(&mut self, healthy: bool) -> String {
        assert!(self.agent.is_none(), "boot with the agent running");
        let _ = fs::remove_dir_all(self.dir.join("run"));
        let entries = self.root.join("boot/loader/entries");
        let e = systemd_boot_attempt(&entries)
            .unwrap()
            .expect("a boot entry");
        let file = e.file_name();
        let entry =
            BootEntry::parse(&fs::read_to_string(entries.join(&file)).unwrap(), &file).unwrap();
        let cmdline = entry.get("options").expect("options").to_string();
        fs::write(self.dir.join("cmdline"), &cmdline).unwrap();
        let deployment = resolve_deployment(&self.root, &cmdline).unwrap();
        let mut sr =
            Sysroot::load_with(&self.root, BootedSource::Root(deployment.clone())).unwrap();
        sr.set_run_dir(&self.dir.join("run"));
        self.booted_root = Some(deployment);
        let csum = sr.booted_deployment().expect("booted").csum.clone();
        if healthy {
            sr.boot_complete().unwrap();
        }
        let v = self
            .commits
            .iter()
            .find(|(_, c)| **c == csum)
            .map(|(v, _)| v.clone())
            .unwrap();
        self.note(&format!(
            "booted {v} from {file}{}",
            if healthy { "" } else { ", which fails" }
        ));
        v
    }

    fn start(&mut self) {
        assert!(self.agent.is_none());
        self.note("agent started");
        // Waits must see this run's snapshots, not the last run's.
        let _ = fs::remove_file(self.status_file());
        let d = |p: &str| self.dir.join(p);
        let (conf, cmdline, run, var) = (d("agent.d"), d("cmdline"), d("run"), d("var"));
        let (status, motd, reboot) = (d("status.json"), d("motd"), d("reboot.sh"));
        let booted = self.booted_root.clone().expect("booted");
        self.agent = Some(Proc::spawn(
            BIN,
            &[
                "agent",
                "run",
                "--sysroot",
                s(&self.root),
                "--config-dirs",
                s(&conf),
                "--booted-root",
                s(&booted),
                "--kernel-cmdline",
                s(&cmdline),
                "--run-dir",
                s(&run),
                "--var-dir",
                s(&var),
                "--status-file",
                s(&status),
                "--deadend-motd",
                s(&motd),
                "--reboot-command",
                s(&reboot),
            ],
            &self.log,
        ));
    }

    /// SIGTERM: the agent must stop cleanly.
    fn stop(&mut self) {
        let mut p = self.agent.take().expect("agent running");
        let st = p.terminate();
        assert!(st.success(), "agent {} exited with {st}", self.name);
    }

    /// What the agent logged since it was last started.
    fn agent_output(&self) -> String {
        self.agent.as_ref().map(Proc::output).unwrap_or_default()
    }

    /// Recorded reboots: (time, release).
    fn reboots(&self) -> Vec<(f64, String)> {
        fs::read_to_string(self.dir.join("reboots.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (t, v) = l.split_once(' ').unwrap();
                (t.parse().unwrap(), v.to_string())
            })
            .collect()
    }

    fn wait_reboots(&mut self, n: usize, timeout: Duration) -> Vec<(f64, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.reboots();
            if r.len() >= n {
                return r;
            }
            if let Some(a) = &mut self.agent {
                a.assert_running();
            }
            assert!(
                Instant::now() < deadline,
                "{}: {} reboot(s) after {timeout:?}, expected {n}",
                self.name,
                r.len()
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// After the recorded reboot: stop the agent, boot, start the agent again.
    fn reboot(&mut self, healthy: bool) -> String {
        self.stop();
        let v = self.boot(healthy);
        self.start();
        v
    }

    fn status_file(&self) -> PathBuf {
        self.dir.join("status.json")
    }

    /// Polls the status snapshot until `pred` holds.
    fn wait_status(&mut self, what: &str, pred: impl Fn(&AgentStatus) -> bool) -> AgentStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(st) = AgentStatus::read(&self.status_file()) {
                if pred(&st) {
                    return st;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: no status with {what}; last: {st:#?}",
                    self.name
                );
            }
            if let Some(a) = &mut self.agent {
                a.assert_running();
            }
            assert!(Instant::now() < deadline, "{}: no status", self.name);
            sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the agent runs steadily on `version`.
    fn wait_settled_on(&mut self, version: &str) -> AgentStatus {
        self.wait_status(&format!("booted {version}, polling"), |st| {
            st.booted.as_ref().is_some_and(|b| b.version == version) && st.state == "no_new_update"
        })
    }

    /// `ferrocore agent status` as text and as JSON, as an operator sees it.
    fn status_cli(&self) -> (String, AgentStatus) {
        let f = self.status_file();
        let text = ferrocore(&["agent", "status", "--status-file", s(&f)]);
        let json = ferrocore(&["agent", "status", "--json", "--status-file", s(&f)]);
        (text, serde_json::from_str(&json).unwrap())
    }

    fn staged(&self) -> bool {
        self.dir.join("run/ostree/staged-deployment").exists()
    }

    /// The release the next boot starts (the default deployment).
    fn default_release(&self) -> String {
        let sr = Sysroot::load_with(&self.root, BootedSource::None).unwrap();
        let csum = &sr.deployments()[0].csum;
        self.commits
            .iter()
            .find(|(_, c)| *c == csum)
            .map(|(v, _)| v.clone())
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.terminate();
        }
    }
}

fn has_hold(st: &AgentStatus, f: impl Fn(&Hold) -> bool) -> bool {
    st.holds.iter().any(f)
}

fn timed(name: &str, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    eprintln!("scenario {name}: {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn node_updates_and_reports_success() {
    timed("success", || {
        let mut w = World::new("success", 2);
        w.roll_out(B);
        w.start_update_server(3);
        let mut n = Node::new(&w, "n1", "", None);
        n.start();
        let r = n.wait_reboots(1, WAIT);
        assert_eq!(r[0].1, B);
        assert_eq!(n.default_release(), B, "finalized before the reboot");
        assert_eq!(n.reboot(true), B);
        let st = n.wait_settled_on(B);
        assert!(st.holds.is_empty(), "{st:#?}");
        assert!(st.denied.is_empty(), "{st:#?}");
        let (text, _) = n.status_cli();
        assert!(text.contains(&format!("Booted: {B}")), "{text}");
        assert!(text.contains("Held by: nothing"), "{text}");
        // The success report reached the update server.
        let deadline = Instant::now() + WAIT;
        while w.reported(B, "success") < 1 {
            assert!(Instant::now() < deadline, "{}", w.server_status());
            sleep(Duration::from_millis(100));
        }
        assert_eq!(w.rollout(B)["reports"]["success"], 1);
        assert!(n
            .agent_output()
            .contains(&format!("update to {B} succeeded")));
        assert_eq!(n.reboots().len(), 1, "nothing more to do");
    });
}

#[test]
fn crash_between_finalization_and_reboot_still_reboots() {
    timed("crash", || {
        let mut w = World::new("crash", 2);
        w.roll_out(B);
        w.start_update_server(3);
        let mut n = Node::new(&w, "n1", "", None);
        fs::write(n.dir.join("crash-at-reboot"), "").unwrap();
        n.start();
        let st = n.agent.as_mut().unwrap().wait_exit();
        assert!(!st.success(), "the agent was killed at its reboot");
        n.agent = None;
        assert_eq!(n.default_release(), B, "finalized before the crash");
        assert!(n.reboots().is_empty());
        // Restarted by the service manager, without a reboot in between: the
        // reboot into the finalized B is still owed, and nothing else happens.
        n.start();
        let r = n.wait_reboots(1, WAIT);
        assert_eq!(r[0].1, B);
        assert!(n
            .agent_output()
            .contains("finalized but the reboot did not happen"));
        // Once a reboot was started, a restart in the old boot does not reboot
        // again: a boot that fell back must not loop.
        n.stop();
        n.start();
        n.wait_status("polling", |st| st.state == "no_new_update");
        sleep(Duration::from_secs(3));
        assert_eq!(n.reboots().len(), 1);
        n.stop();
        assert_eq!(n.boot(true), B);
        n.start();
        n.wait_settled_on(B);
        let deadline = Instant::now() + WAIT;
        while w.reported(B, "success") < 1 {
            assert!(Instant::now() < deadline, "{}", w.server_status());
            sleep(Duration::from_millis(100));
        }
    });
}

#[test]
fn release_that_cannot_be_staged_is_denied_and_reported() {
    timed("failed_to_deploy", || {
        let mut w = World::new("undeployable", 2);
        // B's commit object is missing from the served repository: every pull
        // of it fails.
        let b = &w.commits[B];
        let obj = w
            .srv_repo
            .join(format!("objects/{}/{}.commit", &b[..2], &b[2..]));
        fs::remove_file(&obj).unwrap();
        w.roll_out(B);
        w.start_update_server(1);
        let mut n = Node::new(&w, "n1", "", None);
        n.start();
        let st = n.wait_status("B given up", |st| {
            st.state == "no_new_update" && st.denied.iter().any(|(v, _)| v == B)
        });
        assert_eq!(
            st.holds,
            [Hold::Denied {
                version: B.into(),
                reason: "failed to deploy".into()
            }]
        );
        let out = n.agent_output();
        assert_eq!(out.matches("failed to stage").count(), 12, "{out}");
        assert!(out.contains(&format!("abandoned and blocked deployment '{B}'")));
        let deadline = Instant::now() + WAIT;
        while w.reported(B, "failed-to-deploy") < 1 {
            assert!(Instant::now() < deadline, "{}", w.server_status());
            sleep(Duration::from_millis(100));
        }
        assert_eq!(w.rollout(B)["paused"], true, "threshold 1");
        assert!(n.reboots().is_empty());
        assert!(!n.staged());
        assert_eq!(n.default_release(), A);
    });
}

/// Weekday name and `HH:MM` (UTC) of unix time `t`.
fn utc_day_time(t: i64) -> (&'static str, String) {
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let day = DAYS[(t.div_euclid(86400) % 7) as usize];
    let m = t.rem_euclid(86400) / 60;
    (day, format!("{:02}:{:02}", m / 60, m % 60))
}

#[test]
fn periodic_window_holds_finalization_until_it_opens() {
    timed("window", || {
        let mut w = World::new("window", 2);
        w.roll_out(B);
        w.start_update_server(3);
        let mut n = Node::new(&w, "n1", "", None);
        // A real window on the real clock: it opens at the first full minute at
        // least 20 s from now, which leaves time to see the node wait.
        let open = ((now() + 20.0) / 60.0).ceil() as i64 * 60;
        let (day, hhmm) = utc_day_time(open);
        n.configure(&format!(
            "[updates]\nstrategy = \"periodic\"\n[updates.periodic]\ntime_zone = \"UTC\"\n\
             [[updates.periodic.window]]\ndays = [\"{day}\"]\nstart_time = \"{hhmm}\"\n\
             length_minutes = 2\n"
        ));
        n.start();
        let st = n.wait_status("window closed", |st| {
            st.state == "update_staged" && has_hold(st, |h| matches!(h, Hold::WindowClosed { .. }))
        });
        assert!(
            now() < open as f64,
            "the window opened too early for the test"
        );
        let Hold::WindowClosed { next_window } = &st.holds[0] else {
            panic!("{st:#?}")
        };
        let next = next_window.as_deref().unwrap_or_default();
        assert!(next.contains(&format!("T{hhmm}:00")), "{next}");
        let (text, json) = n.status_cli();
        assert!(
            text.contains("outside the maintenance windows; next opens"),
            "{text}"
        );
        assert!(text.contains(&format!("Candidate: {B}")), "{text}");
        assert_eq!(json.candidate.as_ref().unwrap().version, B);
        assert!(n.staged(), "staged while waiting");
        assert!(n.dir.join("run/ostree/staged-deployment-locked").exists());
        // Nothing is finalized while the window is closed.
        while now() < open as f64 - 1.0 {
            assert!(n.reboots().is_empty(), "rebooted outside the window");
            assert_eq!(n.default_release(), A);
            sleep(Duration::from_millis(200));
        }
        let r = n.wait_reboots(1, Duration::from_secs(30));
        let (t, v) = &r[0];
        assert_eq!(v, B);
        assert!(
            *t >= open as f64 && *t < open as f64 + 120.0,
            "rebooted at {t}, window [{open}, +120 s)"
        );
        assert_eq!(n.reboot(true), B);
        n.wait_settled_on(B);
    });
}

#[test]
fn fleet_lock_one_slot_three_nodes() {
    timed("fleet_lock", || {
        let mut w = World::new("fleetlock", 2);
        w.roll_out(B);
        w.start_update_server(3);
        w.start_fleetlock(1);
        let extra = format!(
            "[updates]\nstrategy = \"fleet_lock\"\n[updates.fleet_lock]\nbase_url = \"{}\"\n",
            w.fleetlock
        );
        let mut nodes: Vec<Node> = (1..=3)
            .map(|i| Node::new(&w, &format!("n{i}"), &extra, None))
            .collect();
        let status_files: Vec<PathBuf> = nodes.iter().map(Node::status_file).collect();
        let done = AtomicBool::new(false);
        // (time, holders) as the lock server saw them, and whether a node was seen
        // explaining that it waits for the lock.
        let (samples, seen_busy) = std::thread::scope(|sc| {
            let monitor = sc.spawn(|| {
                let mut samples = Vec::new();
                let mut busy = false;
                // (sent, answered, holders): the state seen lies between the two.
                let sample = || {
                    let t0 = now();
                    let h = w.lock_holders();
                    (t0, now(), h)
                };
                while !done.load(Ordering::SeqCst) {
                    samples.push(sample());
                    busy |= status_files.iter().any(|f| {
                        AgentStatus::read(f).is_ok_and(|st| {
                            st.state == "update_staged"
                                && has_hold(&st, |h| matches!(h, Hold::LockBusy { .. }))
                        })
                    });
                    sleep(Duration::from_millis(10));
                }
                samples.push(sample());
                (samples, busy)
            });
            let workers: Vec<_> = nodes
                .iter_mut()
                .map(|n| {
                    sc.spawn(move || {
                        n.start();
                        let r = n.wait_reboots(1, Duration::from_secs(120));
                        assert_eq!(r[0].1, B);
                        assert_eq!(n.reboot(true), B);
                        n.wait_settled_on(B);
                    })
                })
                .collect();
            let results: Vec<_> = workers.into_iter().map(|h| h.join()).collect();
            done.store(true, Ordering::SeqCst);
            let m = monitor.join().unwrap();
            for r in results {
                if let Err(e) = r {
                    std::panic::resume_unwind(e);
                }
            }
            m
        });
        let max = samples.iter().map(|(_, _, h)| h.len()).max().unwrap();
        assert_eq!(max, 1, "one slot: at most one holder at any time");
        assert!(
            samples.last().unwrap().2.is_empty(),
            "every slot given back"
        );
        assert!(seen_busy, "a waiting node's status names the busy lock");
        // Each node rebooted while holding the slot, and was still seen holding
        // it after it was back up: from its reboot to its last sighting as holder,
        // nobody else may reboot.
        let mut windows = Vec::new();
        for n in &nodes {
            let t = n.reboots()[0].0;
            let after: Vec<_> = samples.iter().filter(|(t0, _, _)| *t0 > t).collect();
            assert_eq!(
                after.first().unwrap().2,
                vec![n.uuid.clone()],
                "{} rebooted at {t} without holding the lock",
                n.name
            );
            let held_until = after
                .iter()
                .take_while(|(_, _, h)| h.contains(&n.uuid))
                .map(|(_, t1, _)| *t1)
                .last()
                .unwrap();
            windows.push((t, held_until, n.name.clone()));
        }
        windows.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in windows.windows(2) {
            assert!(
                pair[1].0 > pair[0].1,
                "{} rebooted at {} while {} still held the slot (seen until {})",
                pair[1].2,
                pair[1].0,
                pair[0].2,
                pair[0].1
            );
        }
        let deadline = Instant::now() + WAIT;
        while w.reported(B, "success") < 3 {
            assert!(Instant::now() < deadline, "{}", w.server_status());
            sleep(Duration::from_millis(100));
        }
    });
}

#[test]
fn barrier_then_deadend() {
    timed("barrier_deadend", || {
        let mut w = World::new("barrier", 4);
        w.release(&[
            "barrier",
            "--version",
            B,
            "--reason",
            "https://example.com/barrier-b",
        ]);
        w.roll_out(C);
        w.start_update_server(3);
        let mut n = Node::new(&w, "n1", "", None);
        n.start();
        // A → B: the barrier; the newer C is out of reach from A.
        let r = n.wait_reboots(1, WAIT);
        assert_eq!(r[0].1, B);
        assert_eq!(n.reboot(true), B);
        // B → C.
        let r = n.wait_reboots(2, WAIT);
        assert_eq!(r[1].1, C);
        assert_eq!(n.reboot(true), C);
        n.wait_settled_on(C);

        // C turns out to be a dead-end; D rolls out: C's nodes must stay put.
        w.release(&[
            "deadend",
            "--version",
            C,
            "--reason",
            "https://example.com/deadend-c",
        ]);
        w.roll_out(D);
        let st = n.wait_status("dead-end hold", |st| {
            has_hold(st, |h| matches!(h, Hold::DeadEnd { .. }))
        });
        assert!(
            st.holds.contains(&Hold::DeadEnd {
                reason: "https://example.com/deadend-c".into()
            }),
            "{st:#?}"
        );
        let (text, _) = n.status_cli();
        assert!(
            text.contains("booted release is a dead-end: https://example.com/deadend-c"),
            "{text}"
        );
        let motd = fs::read_to_string(n.dir.join("motd")).unwrap();
        assert!(motd.contains("dead-end"), "{motd}");
        // Several polls later: still on C, nothing staged.
        sleep(Duration::from_secs(4));
        assert_eq!(n.reboots().len(), 2);
        assert!(!n.staged());
        assert_eq!(n.default_release(), C);
        let st = AgentStatus::read(&n.status_file()).unwrap();
        assert!(st.last_check.is_some());
        assert!(
            has_hold(&st, |h| matches!(h, Hold::DeadEnd { .. })),
            "{st:#?}"
        );
    });
}

#[test]
fn wariness_waits_for_the_rollout_ramp() {
    timed("wariness", || {
        let mut w = World::new("wariness", 2);
        w.start_update_server(3);
        let wary = 0.4;
        let mut canary = Node::new(&w, "canary", "[identity]\nrollout_wariness = 0.0\n", None);
        let mut n = Node::new(
            &w,
            "wary",
            &format!("[identity]\nrollout_wariness = {wary}\n"),
            None,
        );
        // B ramps from 0 % to 100 % of the fleet over one minute from now.
        let start = now().ceil() as i64;
        w.release(&[
            "rollout",
            "start",
            "--version",
            B,
            "--start",
            &start.to_string(),
            "--duration-minutes",
            "1",
            "--start-percentage",
            "0",
        ]);
        canary.start();
        n.start();
        // The eager node takes B at once.
        let r = canary.wait_reboots(1, WAIT);
        assert!(r[0].0 < start as f64 + wary * 60.0, "canary too late");
        assert_eq!(canary.reboot(true), B);
        // The wary one is told why it waits.
        let st = n.wait_status("wariness hold", |st| {
            st.state == "no_new_update" && has_hold(st, |h| matches!(h, Hold::Wariness { .. }))
        });
        let Some(Hold::Wariness {
            version,
            rollout_share,
            wariness,
        }) = st.holds.iter().find(|h| matches!(h, Hold::Wariness { .. }))
        else {
            unreachable!()
        };
        assert_eq!(version, B);
        assert_eq!(*wariness, Some(wary));
        assert!(*rollout_share < wary, "{rollout_share}");
        let (text, _) = n.status_cli();
        assert!(
            text.contains(&format!("{B} is rolling out"))
                && text.contains("not yet reaching this node's wariness 0.400000"),
            "{text}"
        );
        assert!(text.contains("Candidate: none"), "{text}");
        while now() < start as f64 + wary * 60.0 - 1.0 {
            assert!(n.reboots().is_empty(), "updated before the ramp reached it");
            assert!(!n.staged());
            sleep(Duration::from_millis(200));
        }
        let r = n.wait_reboots(1, WAIT);
        assert_eq!(r[0].1, B);
        assert!(
            r[0].0 >= start as f64 + wary * 60.0,
            "rebooted at {}, ramp reaches {wary} at {}",
            r[0].0,
            start as f64 + wary * 60.0
        );
        assert_eq!(n.reboot(true), B);
        n.wait_settled_on(B);
        canary.wait_settled_on(B);
    });
}

/// Update to B, which never completes a boot: systemd-boot spends both tries on
/// it, then falls back to A, where boot-complete records the failure.
fn roll_back_from_b(n: &mut Node) {
    n.start();
    let r = n.wait_reboots(1, WAIT);
    assert_eq!(r[0].1, B);
    n.stop();
    assert_eq!(n.boot(false), B, "first try");
    assert_eq!(n.boot(false), B, "second try");
    assert_eq!(n.boot(true), A, "tries spent: fallback");
    n.start();
}

#[test]
fn rolled_back_release_is_denied_and_pauses_rollout() {
    timed("rollback", || {
        let mut w = World::new("rollback", 2);
        w.roll_out(B);
        w.start_update_server(2);
        let mut n1 = Node::new(&w, "n1", "", Some(2));
        roll_back_from_b(&mut n1);
        let st = n1.wait_status("B denied", |st| {
            st.booted.as_ref().is_some_and(|b| b.version == A)
                && st.state == "no_new_update"
                && has_hold(st, |h| matches!(h, Hold::Denied { .. }))
        });
        assert_eq!(
            st.denied,
            vec![(B.to_string(), "rolled back after boot".to_string())]
        );
        let (text, _) = n1.status_cli();
        assert!(
            text.contains(&format!(
                "{B} is denied on this node: rolled back after boot"
            )),
            "{text}"
        );
        let deadline = Instant::now() + WAIT;
        while w.reported(B, "rolled-back") < 1 {
            assert!(Instant::now() < deadline, "{}", w.server_status());
            sleep(Duration::from_millis(100));
        }
        assert_eq!(w.rollout(B)["paused"], false, "one failure is below 2");
        // B is still offered to n1, which keeps polling without staging it again,
        // also across an agent restart.
        sleep(Duration::from_secs(3));
        n1.stop();
        n1.start();
        sleep(Duration::from_secs(3));
        n1.wait_status("B still denied", |st| {
            st.state == "no_new_update"
                && st.holds.contains(&Hold::Denied {
                    version: B.into(),
                    reason: "rolled back after boot".into(),
                })
        });
        assert_eq!(n1.reboots().len(), 1);
        assert!(!n1.staged());
        assert!(
            !n1.agent_output().contains("selected"),
            "{}",
            n1.agent_output()
        );
        let log = fs::read_to_string(&n1.log).unwrap();
        assert_eq!(log.matches("selected, proceeding to stage").count(), 1);

        // A second node fails the same way: the rollout pauses for everyone.
        let mut n2 = Node::new(&w, "n2", "", Some(2));
        roll_back_from_b(&mut n2);
        n2.wait_status("B denied", |st| st.denied.iter().any(|(v, _)| v == B));
        let deadline = Instant::now() + WAIT;
        while w.rollout(B)["paused"] != true {
            assert!(Instant::now() < deadline, "{}", w.server_status());
            sleep(Duration::from_millis(100));
        }
        let reason = w.rollout(B)["pause_reason"].as_str().unwrap().to_string();
        assert!(
            reason.contains("2 node(s) reported a failed update"),
            "{reason}"
        );
        // n1 is not offered B any more (polls since the pause), and still says
        // why it stays on A.
        sleep(Duration::from_secs(3));
        let st = AgentStatus::read(&n1.status_file()).unwrap();
        assert_eq!(st.state, "no_new_update");
        assert_eq!(
            st.holds,
            [Hold::Denied {
                version: B.into(),
                reason: "rolled back after boot".into(),
            }]
        );
        // A fresh node with the lowest wariness is not offered B any more.
        let mut n3 = Node::new(&w, "n3", "[identity]\nrollout_wariness = 0.0\n", None);
        n3.start();
        n3.wait_status("B not offered", |st| {
            st.state == "no_new_update"
                && st.holds.contains(&Hold::NotOffered { version: B.into() })
        });
        sleep(Duration::from_secs(3));
        assert!(n3.reboots().is_empty());
        assert!(!n3.staged());
        let (text, _) = n3.status_cli();
        assert!(
            text.contains(&format!("{B} exists but is not offered to this node")),
            "{text}"
        );
    });
}
