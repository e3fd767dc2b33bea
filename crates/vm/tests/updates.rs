//! Issue #10: nodes that update themselves safely, on real VMs booted from the
//! image `ferrocore build image` made. The host plays release engineering and
//! the services: release index and updates metadata edited with `ferrocore
//! release`, the update server (`ferrocore update-server serve`), the FleetLock
//! server (`ferrocore fleetlock-server`) and the archive repository served by
//! upstream's `ostree-trivial-httpd`, all on 127.0.0.1, which the guests reach
//! as 10.0.2.2 (QEMU user networking). Each node is provisioned by a Butane
//! config: the agent's configuration, the remote's URL and a health check
//! (`ssh-health.service`: the ssh server runs) under `ferrocore-health.target`.
//!
//! Releases come from `scripts/lib/releases.sh` (`ferrocore build` of changed
//! copies of os/): A is the image's commit, B changes /etc/motd, C ships an
//! sshd drop-in sshd refuses, so its health check fails.
//!
//! Environment (set by `scripts/ci.d/e2e-vm.sh`): `FERROCORE_E2E_IMAGE` (A's
//! qcow2), `FERROCORE_E2E_BIN` (ferrocore for the host services),
//! `FERROCORE_E2E_RELEASES` (directory with `releases.txt` and `repo/`),
//! `FERROCORE_E2E_WORKDIR`, `FERROCORE_E2E_PROFILE`. Each test prints its
//! figures with `--nocapture`.

mod common;

use common::{profile, LOGIN_BUTANE};
use ferrocore_vm::{Ssh, SshKey, Vm, VmOptions};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HTTPD: &str = "/usr/libexec/libostree/ostree-trivial-httpd";
const STREAM: &str = "stable";
/// The host as the guests see it.
const HOST: &str = "10.0.2.2";
/// Agent check interval on the nodes.
const INTERVAL_SECS: u64 = 10;

fn var(name: &str) -> PathBuf {
    let v = std::env::var_os(name).unwrap_or_else(|| {
        panic!("{name} is not set: these tests need the image and releases that scripts/ci.d/e2e-vm.sh builds")
    });
    PathBuf::from(v)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test paths")
}

/// A boot from the relaunch to ssh: generous, TCG VMs share 2 cores.
const BOOT: Duration = Duration::from_secs(420);

/// The releases: name (A, B, C) → (version, commit).
fn releases() -> BTreeMap<String, (String, String)> {
    let dir = var("FERROCORE_E2E_RELEASES");
    let f = dir.join("releases.txt");
    let text = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            w.len(),
            3,
            "{}:{}: expected NAME VERSION COMMIT",
            f.display(),
            i + 1
        );
        out.insert(w[0].to_string(), (w[1].to_string(), w[2].to_string()));
    }
    for r in ["A", "B", "C"] {
        assert!(out.contains_key(r), "{}: no release {r}", f.display());
    }
    out
}

/// A host process whose output goes to a log file; killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(program: &Path, args: &[&str], log: &Path) -> Proc {
        let f = fs::File::create(log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        Proc {
            child,
            log: log.to_path_buf(),
        }
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The rest of the first output line containing `needle`.
    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = self.output().lines().find_map(|l| {
                l.find(needle)
                    .map(|i| l[i + needle.len()..].trim().to_string())
            }) {
                return l;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("{} exited ({st}): {}", self.log.display(), self.output());
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {needle:?}",
                self.log.display()
            );
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host side of a scenario: release metadata, the archive repository over
/// HTTP, the update server and (optionally) the FleetLock server.
struct Host {
    dir: PathBuf,
    bin: PathBuf,
    releases: BTreeMap<String, (String, String)>,
    index: PathBuf,
    updates: PathBuf,
    /// Port of the archive repository's HTTP server.
    repo_port: u16,
    /// Update server, as the host reaches it.
    cincinnati: String,
    /// FleetLock server, as the host reaches it.
    fleetlock: Option<String>,
    http: reqwest::blocking::Client,
    procs: Vec<Proc>,
    started: Instant,
}

/// `http://127.0.0.1:PORT...` as the guests reach it.
fn guest_url(url: &str) -> String {
    url.replace("127.0.0.1", HOST)
}

impl Host {
    /// Release A is in the stream's index; nothing is a target yet.
    fn new(name: &str) -> Host {
        let root = std::env::var_os("FERROCORE_E2E_WORKDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("ferrocore-e2e"));
        let dir = root.join(format!("updates-{name}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data/updates")).unwrap();
        fs::create_dir_all(dir.join(format!("data/prod/streams/{STREAM}"))).unwrap();
        let mut h = Host {
            index: dir.join(format!("data/prod/streams/{STREAM}/releases.json")),
            updates: dir.join(format!("data/updates/{STREAM}.json")),
            dir,
            bin: var("FERROCORE_E2E_BIN"),
            releases: releases(),
            repo_port: 0,
            cincinnati: String::new(),
            fleetlock: None,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            procs: Vec::new(),
            started: Instant::now(),
        };
        h.add_to_index("A");
        fs::write(
            &h.updates,
            format!(
                "{{\"stream\":\"{STREAM}\",\"metadata\":{{\"last-modified\":\"2026-01-01T00:00:00Z\"}},\"releases\":[]}}\n"
            ),
        )
        .unwrap();
        h.serve_repo();
        h.start_update_server();
        h
    }

    fn version(&self, r: &str) -> &str {
        &self.releases[r].0
    }

    fn commit(&self, r: &str) -> &str {
        &self.releases[r].1
    }

    fn ferrocore(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ferrocore {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn add_to_index(&self, r: &str) {
        self.ferrocore(&[
            "release",
            "add",
            "--index",
            s(&self.index),
            "--stream",
            STREAM,
            "--version",
            self.version(r),
            "--checksum",
            self.commit(r),
        ]);
    }

    /// Publishes release `r`: adds it to the index and starts its rollout at
    /// `start_share` of the fleet, reaching all of it after `minutes`.
    /// Returns the publication time.
    fn publish(&self, r: &str, start_share: f64, minutes: u32) -> f64 {
        self.add_to_index(r);
        let start = now().floor();
        self.ferrocore(&[
            "release",
            "rollout",
            "start",
            "--updates",
            s(&self.updates),
            "--version",
            self.version(r),
            "--start",
            &format!("{start}"),
            "--start-percentage",
            &start_share.to_string(),
            "--duration-minutes",
            &minutes.to_string(),
        ]);
        eprintln!(
            "{}: published {r} ({}) at +{:.0} s",
            self.dir.display(),
            self.version(r),
            self.started.elapsed().as_secs_f64()
        );
        now()
    }

    fn serve_repo(&mut self) {
        assert!(
            Path::new(HTTPD).exists(),
            "{HTTPD} is missing (Debian package ostree-tests)"
        );
        let port_file = self.dir.join("httpd-port");
        let repo_dir = var("FERROCORE_E2E_RELEASES");
        let p = Proc::spawn(
            Path::new(HTTPD),
            &[
                "-p",
                s(&port_file),
                "--log-file",
                s(&self.dir.join("httpd-access.log")),
                s(&repo_dir),
            ],
            &self.dir.join("httpd.log"),
        );
        self.procs.push(p);
        let deadline = Instant::now() + Duration::from_secs(60);
        self.repo_port = loop {
            if let Ok(t) = fs::read_to_string(&port_file) {
                if t.ends_with('\n') {
                    break t.trim().parse().unwrap();
                }
            }
            assert!(
                Instant::now() < deadline,
                "ostree-trivial-httpd gave no port"
            );
            sleep(Duration::from_millis(50));
        };
    }

    fn start_update_server(&mut self) {
        let mut p = Proc::spawn(
            &self.bin,
            &[
                "update-server",
                "serve",
                "--data-dir",
                s(&self.dir.join("data")),
                "--listen",
                "127.0.0.1:0",
                "--db",
                s(&self.dir.join("reports.sqlite")),
                // One node's rollback is enough to stop the rollout.
                "--pause-after-failures",
                "1",
                "--reload-interval-secs",
                "1",
            ],
            &self.dir.join("update-server.log"),
        );
        self.cincinnati = p.wait_for_line("listening on ");
        self.procs.push(p);
    }

    fn start_fleetlock(&mut self, slots: u32) {
        let cfg = self.dir.join("fleetlock.toml");
        fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:0\"\n[store]\nkind = \"sqlite\"\npath = \"{}\"\n\
                 [lock]\ndefault_slots = {slots}\n",
                s(&self.dir.join("fleetlock.sqlite"))
            ),
        )
        .unwrap();
        let mut p = Proc::spawn(
            &self.bin,
            &["fleetlock-server", "--config", s(&cfg)],
            &self.dir.join("fleetlock-server.log"),
        );
        self.fleetlock = Some(p.wait_for_line("listening on "));
        self.procs.push(p);
    }

    /// The FleetLock server's record: (unix time, event, node id, holders).
    fn lock_record(&self) -> Vec<(f64, String, String, Vec<String>)> {
        let log = self.dir.join("fleetlock-server.log");
        let text = fs::read_to_string(&log).unwrap_or_default();
        let mut out = Vec::new();
        for l in text.lines() {
            let Some(rest) = l.strip_prefix("fleetlock: ") else {
                continue;
            };
            let w: Vec<&str> = rest.split_whitespace().collect();
            if w.len() < 6 || !(w[1] == "granted" || w[1] == "released") {
                continue;
            }
            let id = w[3].strip_prefix("id=").unwrap().to_string();
            let list = w[5].trim_start_matches('[').trim_end_matches(']');
            let holders = list
                .split(',')
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect();
            out.push((w[0].parse().unwrap(), w[1].to_string(), id, holders));
        }
        out
    }

    fn get_json(&self, url: &str) -> serde_json::Value {
        let r = self.http.get(url).send().unwrap();
        assert!(r.status().is_success(), "GET {url}: {}", r.status());
        r.json().unwrap()
    }

    /// The update server's `/v1/status` for the stream.
    fn server_status(&self) -> serde_json::Value {
        self.get_json(&format!("{}/v1/status", self.cincinnati))["streams"][STREAM].clone()
    }

    /// Nodes that reported `outcome` for an update to release `r`.
    fn reported(&self, r: &str, outcome: &str) -> u64 {
        self.server_status()["reports"][self.version(r)][outcome]
            .as_u64()
            .unwrap_or(0)
    }

    fn wait_reported(&self, r: &str, outcome: &str, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.reported(r, outcome) < n {
            assert!(
                Instant::now() < deadline,
                "the update server has no {n} '{outcome}' report(s) for {r}: {}",
                self.server_status()
            );
            sleep(Duration::from_secs(1));
        }
    }

    fn rollout(&self, r: &str) -> serde_json::Value {
        let st = self.server_status();
        st["rollouts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["version"] == self.version(r))
            .cloned()
            .unwrap_or_else(|| panic!("no rollout of {r} in {st}"))
    }

    /// Butane for a node: login, the agent's configuration (`agent_toml`
    /// appended), the remote and the health check.
    fn node_butane(&self, agent_toml: &str) -> String {
        let mut agent = format!(
            "[cincinnati]\nbase_url = \"{}\"\n[agent.timing]\nsteady_interval_secs = {INTERVAL_SECS}\nretry_interval_secs = {INTERVAL_SECS}\n{agent_toml}",
            guest_url(&self.cincinnati)
        );
        if let Some(fl) = &self.fleetlock {
            agent.push_str(&format!(
                "[updates]\nstrategy = \"fleet_lock\"\n[updates.fleet_lock]\nbase_url = \"{}\"\n",
                guest_url(fl)
            ));
        }
        let indent = |t: &str| {
            t.lines()
                .map(|l| format!("          {l}\n"))
                .collect::<String>()
        };
        format!(
            r#"{LOGIN_BUTANE}    - path: /etc/ostree/remotes.d/ferrocore.conf
      contents:
        inline: |
          [remote "ferrocore"]
          url=http://{HOST}:{port}/repo
          gpg-verify=false
    - path: /etc/ferrocore/agent.d/50-e2e.toml
      contents:
        inline: |
{agent}systemd:
  units:
    - name: ssh-health.service
      enabled: true
      contents: |
        [Unit]
        Description=Health check: the ssh server runs
        After=ssh.service
        Before=ferrocore-health.target
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/usr/bin/systemctl is-active --quiet ssh.service
        [Install]
        RequiredBy=ferrocore-health.target
"#,
            port = self.repo_port,
            agent = indent(&agent),
        )
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for p in &self.procs {
            let text = p.output();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("===== {} (last {} lines)", p.log.display(), tail.len());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A VM provisioned from a Butane config, with its ssh key.
struct Node {
    name: String,
    vm: Vm,
    key: SshKey,
}

impl Node {
    fn start(host: &Host, name: &str, agent_toml: &str) -> Node {
        let dir = host.dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        let key = SshKey::generate(&dir).unwrap();
        let bu = host.node_butane(agent_toml).replace("@KEY@", key.public());
        let out = butane::translate(bu.as_bytes(), &butane::Options::default())
            .unwrap_or_else(|e| panic!("Butane config does not translate: {}", e.message));
        let ign = dir.join("config.ign");
        fs::write(&ign, &out.bytes).unwrap();
        let mut o = VmOptions::new(var("FERROCORE_E2E_IMAGE"), &dir);
        o.name = name.into();
        o.ignition = Some(ign);
        o.profile = profile();
        // The guest reaches the host's 127.0.0.1 services at 10.0.2.2.
        o.restrict = false;
        o.max_boots = 10;
        let vm = Vm::start(o).unwrap();
        eprintln!("{name}: console {}", vm.log_path().display());
        Node {
            name: name.into(),
            vm,
            key,
        }
    }

    fn ssh(&self) -> Ssh {
        let t = Instant::now();
        let ssh = self
            .vm
            .wait_ssh(&self.key, "core", BOOT)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        eprintln!(
            "{}: boot {}: ssh reachable after {:.0} s",
            self.name,
            self.vm.boots(),
            t.elapsed().as_secs_f64()
        );
        ssh
    }

    fn wait_boot(&self, n: u32, timeout: Duration) {
        self.vm
            .wait_boot(n, timeout)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
    }

    /// `ferrocore admin status --json` on the node.
    fn admin_status(&self, ssh: &Ssh) -> serde_json::Value {
        let out = sh(ssh, "sudo ferrocore admin status --json");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Waits until this boot was judged good (health checks passed,
    /// `ferrocore-boot-complete.service` ran).
    fn wait_boot_complete(&self, ssh: &Ssh) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !ssh
            .run("systemctl is-active --quiet ferrocore-boot-complete.service")
            .is_ok_and(|o| o.success())
        {
            assert!(
                Instant::now() < deadline,
                "{}: boot {} never completed",
                self.name,
                self.vm.boots()
            );
            sleep(Duration::from_secs(2));
        }
    }

    /// Waits until the agent has checked the graph on this boot and says why
    /// it does not update; returns its status.
    fn wait_agent_idle(&self, ssh: &Ssh) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let out = ssh
                .run("sudo ferrocore agent status --json")
                .map(|o| o.stdout)
                .unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) {
                if v["state"] == "no_new_update" {
                    return v;
                }
            }
            if Instant::now() > deadline {
                let journal = ssh
                    .run("sudo journalctl -b -u ferrocore-agent --no-pager | tail -40")
                    .map(|o| o.stdout)
                    .unwrap_or_default();
                panic!("{}: agent not idle: {out}\n{journal}", self.name);
            }
            sleep(Duration::from_secs(2));
        }
    }

    /// The booted deployment's version and the others', from the node.
    fn deployments(&self, ssh: &Ssh) -> (String, Vec<String>) {
        let st = self.admin_status(ssh);
        let list = st["deployments"]
            .as_array()
            .unwrap_or_else(|| panic!("no deployments in {st}"));
        let mut booted = None;
        let mut others = Vec::new();
        for d in list {
            let v = d["version"].as_str().unwrap_or("").to_string();
            if d["booted"] == true {
                booted = Some(v);
            } else {
                others.push(v);
            }
        }
        (
            booted.unwrap_or_else(|| panic!("nothing booted: {st}")),
            others,
        )
    }
}

/// Runs `cmd` on the node and returns its stdout, panicking with the details on failure.
fn sh(ssh: &Ssh, cmd: &str) -> String {
    ssh.check(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// Scenarios 1 and 3 on one node: A → B when B is published (the /etc change
/// merged, the agent's success reported), then C, whose health check fails:
/// the node boots C until its tries are spent, falls back to B on its own,
/// the agent denies C and never stages it again, and the update server pauses
/// C's rollout from the node's report.
#[test]
#[ignore = "boots VMs: run by scripts/ci.d/e2e-vm.sh"]
fn update_then_automatic_rollback() {
    let t0 = Instant::now();
    let h = Host::new("rollback");
    let node = Node::start(&h, "node", "");
    let ssh = node.ssh();
    let (booted, _) = node.deployments(&ssh);
    assert_eq!(booted, h.version("A"));
    node.wait_agent_idle(&ssh);
    // The health check passed on A: the boot was marked good.
    sh(&ssh, "systemctl is-active --quiet boot-complete.target");
    sh(&ssh, "systemctl is-active --quiet ssh-health.service");

    // 1. B is published for everyone.
    let published = h.publish("B", 1.0, 1);
    node.wait_boot(2, Duration::from_secs(600));
    let rebooting = now() - published;
    let ssh = node.ssh();
    let on_b = now() - published;
    let (booted, others) = node.deployments(&ssh);
    assert_eq!(booted, h.version("B"));
    assert_eq!(
        others,
        vec![h.version("A").to_string()],
        "A stays as the rollback"
    );
    let motd = sh(&ssh, "cat /etc/motd");
    assert!(motd.contains("ferrocore release B"), "/etc/motd: {motd}");
    let status = sh(&ssh, "sudo ferrocore admin status");
    eprintln!("node on B:\n{status}");
    h.wait_reported("B", "success", 1, Duration::from_secs(180));
    eprintln!("figure: publish B -> node reboots {rebooting:.0} s, -> node on B (ssh) {on_b:.0} s");
    node.wait_agent_idle(&ssh);

    // 3. C is published; its sshd refuses its own configuration.
    let published = h.publish("C", 1.0, 1);
    node.wait_boot(3, Duration::from_secs(600));
    eprintln!("node rebooting into C after {:.0} s", now() - published);
    // Three tries on C (boots 3, 4, 5), each ended by ferrocore-boot-failed,
    // then the boot loader falls back to B (boot 6).
    node.wait_boot(6, Duration::from_secs(1500));
    let ssh = node.ssh();
    let back = now() - published;
    for boot in 3..=5 {
        let console = node.vm.console_of_boot(boot);
        assert!(
            console
                .iter()
                .any(|l| l.text.contains("health checks failed on deployment")
                    && l.text.contains("on probation")),
            "boot {boot} (C) did not fail its health check on the console ({})",
            node.vm.log_path().display()
        );
    }
    let (booted, others) = node.deployments(&ssh);
    assert_eq!(booted, h.version("B"), "fell back to B");
    assert!(others.contains(&h.version("C").to_string()), "{others:?}");
    node.wait_boot_complete(&ssh);
    let failed = node.admin_status(&ssh)["failed-deployments"].clone();
    assert!(
        failed.to_string().contains(h.commit("C")),
        "C is not recorded as failed: {failed}"
    );
    eprintln!("failure record: {failed}");
    let motd = sh(&ssh, "cat /etc/motd");
    assert!(motd.contains("ferrocore release B"), "{motd}");
    // The agent denies C; the update server paused C's rollout.
    let st = node.wait_agent_idle(&ssh);
    let denied = st["denied"].to_string();
    assert!(denied.contains(h.version("C")), "agent status: {st}");
    h.wait_reported("C", "rolled-back", 1, Duration::from_secs(180));
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.rollout("C")["paused"] != true {
        assert!(Instant::now() < deadline, "{}", h.server_status());
        sleep(Duration::from_secs(1));
    }
    // Several check intervals later, still on B, nothing staged, no reboot.
    sleep(Duration::from_secs(4 * INTERVAL_SECS));
    assert_eq!(node.vm.boots(), 6, "the node rebooted again");
    let st = node.admin_status(&ssh);
    assert!(st["staged"].is_null(), "something is staged: {st}");
    let journal = sh(
        &ssh,
        "sudo journalctl -b -u ferrocore-agent --no-pager -o cat",
    );
    assert!(
        !journal.contains("proceeding to stage"),
        "the agent staged again after the rollback:\n{journal}"
    );
    eprintln!(
        "figure: publish C -> node back on B by itself {back:.0} s; scenario {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let _ = ssh.run_timeout("sudo systemctl poweroff", Duration::from_secs(30));
    let _ = node.vm.wait_stopped(Duration::from_secs(120));
}

/// Scenario 2: three nodes with the fleet_lock strategy and one slot. The
/// FleetLock server's record never shows two holders, each node reboots
/// while it holds the slot, and all end on B.
#[test]
#[ignore = "boots VMs: run by scripts/ci.d/e2e-vm.sh"]
fn fleet_lock_one_at_a_time() {
    let t0 = Instant::now();
    let mut h = Host::new("fleet");
    h.start_fleetlock(1);
    let nodes: Vec<Node> = (1..=3)
        .map(|i| Node::start(&h, &format!("n{i}"), ""))
        .collect();
    let mut ids = BTreeMap::new();
    for n in &nodes {
        let ssh = n.ssh();
        let st = n.wait_agent_idle(&ssh);
        ids.insert(
            n.name.clone(),
            st["node_uuid"].as_str().unwrap().to_string(),
        );
    }
    // Host-side record of when each VM was relaunched (its reboot).
    let reboots: Arc<Mutex<Vec<(f64, String)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let published = h.publish("B", 1.0, 1);
    std::thread::scope(|sc| {
        let watch = sc.spawn(|| {
            let mut seen: Vec<u32> = nodes.iter().map(|n| n.vm.boots()).collect();
            while !done.load(Ordering::SeqCst) {
                for (i, n) in nodes.iter().enumerate() {
                    let b = n.vm.boots();
                    if b != seen[i] {
                        seen[i] = b;
                        reboots.lock().unwrap().push((now(), n.name.clone()));
                    }
                }
                sleep(Duration::from_millis(100));
            }
        });
        for n in &nodes {
            n.wait_boot(2, Duration::from_secs(1500));
        }
        for n in &nodes {
            let ssh = n.ssh();
            let (booted, _) = n.deployments(&ssh);
            assert_eq!(booted, h.version("B"), "{}", n.name);
            n.wait_agent_idle(&ssh);
        }
        done.store(true, Ordering::SeqCst);
        watch.join().unwrap();
    });
    h.wait_reported("B", "success", 3, Duration::from_secs(180));
    // Every slot given back once all are steady.
    let deadline = Instant::now() + Duration::from_secs(120);
    while h.lock_record().iter().filter(|e| e.1 == "released").count() < 3 {
        assert!(Instant::now() < deadline, "{:?}", h.lock_record());
        sleep(Duration::from_secs(1));
    }
    let record = h.lock_record();
    eprintln!("FleetLock record:");
    for (t, what, id, holders) in &record {
        eprintln!("  {:.1} {what} {id} holders={holders:?}", t - published);
    }
    assert!(
        record.iter().all(|e| e.3.len() <= 1),
        "two nodes held the lock at once: {record:?}"
    );
    for n in &nodes {
        let id = &ids[&n.name];
        let grants = record
            .iter()
            .filter(|e| e.1 == "granted" && &e.2 == id)
            .count();
        assert_eq!(
            grants, 1,
            "{} ({id}) was granted the slot {grants} times",
            n.name
        );
    }
    // Each reboot lies inside its node's holding window.
    let reboots = reboots.lock().unwrap().clone();
    assert_eq!(reboots.len(), 3, "{reboots:?}");
    for (t, name) in &reboots {
        let id = &ids[name];
        let granted = record
            .iter()
            .find(|e| e.1 == "granted" && &e.2 == id)
            .unwrap()
            .0;
        let released = record
            .iter()
            .find(|e| e.1 == "released" && &e.2 == id)
            .unwrap()
            .0;
        assert!(
            granted < *t && *t < released,
            "{name} rebooted at {t:.1}, held the slot {granted:.1}..{released:.1}"
        );
    }
    eprintln!(
        "figure: fleet of 3, one slot: last reboot into B {:.0} s after publishing, \
         last slot given back (node steady on B) at {:.0} s; scenario {:.0} s",
        reboots.iter().map(|r| r.0).fold(0.0, f64::max) - published,
        record.iter().map(|r| r.0).fold(0.0, f64::max) - published,
        t0.elapsed().as_secs_f64()
    );
    for n in &nodes {
        let ssh = n.ssh();
        let _ = ssh.run_timeout("sudo systemctl poweroff", Duration::from_secs(30));
    }
}

/// Scenario 4: a rollout ramping over three minutes reaches the node with
/// wariness 0.1 first, the one with 0.9 only once the ramp has passed 0.9.
#[test]
#[ignore = "boots VMs: run by scripts/ci.d/e2e-vm.sh"]
fn wariness_orders_the_rollout() {
    let t0 = Instant::now();
    let h = Host::new("wariness");
    let minutes = 3;
    let eager = Node::start(&h, "eager", "[identity]\nrollout_wariness = 0.1\n");
    let wary = Node::start(&h, "wary", "[identity]\nrollout_wariness = 0.9\n");
    for n in [&eager, &wary] {
        let ssh = n.ssh();
        n.wait_agent_idle(&ssh);
    }
    let published = h.publish("B", 0.0, minutes);
    let ramp = f64::from(minutes) * 60.0;
    // The wary node must not move before the ramp reaches it.
    eager.wait_boot(2, Duration::from_secs(900));
    let t_eager = now() - published;
    assert_eq!(wary.vm.boots(), 1, "the wary node rebooted first");
    wary.wait_boot(2, Duration::from_secs(1200));
    let t_wary = now() - published;
    assert!(
        t_eager < t_wary,
        "eager at {t_eager:.0} s, wary at {t_wary:.0} s"
    );
    assert!(
        t_wary >= 0.9 * ramp,
        "wary node rebooted at {t_wary:.0} s, before the ramp reached 0.9 ({:.0} s)",
        0.9 * ramp
    );
    for n in [&eager, &wary] {
        let ssh = n.ssh();
        let (booted, _) = n.deployments(&ssh);
        assert_eq!(booted, h.version("B"), "{}", n.name);
        let _ = ssh.run_timeout("sudo systemctl poweroff", Duration::from_secs(30));
    }
    eprintln!(
        "figure: ramp {ramp:.0} s; wariness 0.1 rebooted at {t_eager:.0} s, 0.9 at {t_wary:.0} s; scenario {:.0} s",
        t0.elapsed().as_secs_f64()
    );
}
