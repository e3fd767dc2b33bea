//! The state machine against the in-memory OS and real FleetLock and update servers
//! on 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::status::Hold;
use agent::{Agent, Config, Env, Paths, State};
use common::*;
use release_meta::updates::Rollout;
use release_meta::Updates;

const A: &str = "41.20250101.3.0";
const B: &str = "41.20250115.3.0";
const C: &str = "41.20250129.3.0";
/// 2025-02-04T12:00:00Z, a Tuesday.
const T0: i64 = 1_738_670_400;

fn uuid(n: u32) -> String {
    format!("{n:032x}")
}

fn load_config(dir: &Path, text: &str) -> Config {
    let etc = dir.join("agent.d");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("50-test.toml"), text).unwrap();
    Config::load(&[etc]).unwrap()
}

struct Node {
    os: MemoryOs,
    reboots: RebootRecorder,
    clock: ManualClock,
    config: Config,
    var: PathBuf,
    uuid: String,
}

impl Node {
    fn new(dir: &Path, name: &str, version: &str, config_text: &str, clock: &ManualClock) -> Node {
        let d = dir.join(name);
        Node {
            os: MemoryOs::new("stable", version),
            reboots: RebootRecorder::default(),
            clock: clock.clone(),
            config: load_config(&d, config_text),
            var: d.join("var"),
            uuid: uuid(name.bytes().map(u32::from).sum()),
        }
    }

    /// A fresh agent process (state is only what is persisted under `var`).
    fn agent(&self) -> Agent {
        self.agent_notifying(None)
    }

    /// [`Node::agent`], notifying a service manager socket.
    fn agent_notifying(&self, notify: Option<agent::notify::Notifier>) -> Agent {
        Agent::new(
            self.config.clone(),
            Env {
                os: std::sync::Arc::new(self.os.clone()),
                reboot: std::sync::Arc::new(self.reboots.clone()),
                clock: std::sync::Arc::new(self.clock.clone()),
                paths: Paths {
                    var_dir: self.var.clone(),
                    status_file: self.var.join("status.json"),
                    deadend_motd: self.var.join("motd"),
                },
                node_uuid: self.uuid.clone(),
                platform: Some("qemu".into()),
                basearch: std::env::consts::ARCH.into(),
                notify,
            },
        )
    }
}

/// Ticks until `done(state)` or `max` ticks; returns the states visited.
async fn tick_until(a: &mut Agent, max: usize, done: impl Fn(&State) -> bool) -> Vec<String> {
    let mut seen = vec![a.state().name().to_string()];
    for _ in 0..max {
        if done(a.state()) {
            break;
        }
        a.tick().await.unwrap();
        seen.push(a.state().name().to_string());
    }
    seen
}

fn completed(u: &mut Updates, v: &str) {
    u.entry_mut(v).metadata.rollout = Some(Rollout::completed());
}

fn immediate(url: &str) -> String {
    format!("[cincinnati]\nbase_url = \"{url}\"\n[updates]\nstrategy = \"immediate\"\n")
}

async fn report_counts(srv: &UpdateServer, version: &str) -> serde_json::Value {
    let st = srv.status().await;
    st["streams"]["stable"]["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == version)
        .map(|r| r["reports"].clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn updates_a_to_b_and_reports_success() {
    let tmp = tempfile::tempdir().unwrap();
    let mut u = Updates::new("stable");
    completed(&mut u, B);
    write_data_dir(&tmp.path().join("data"), "stable", &[A, B], &u);
    let srv = UpdateServer::start(&tmp.path().join("data"), T0, 3).await;
    let clock = ManualClock::at(T0);
    let node = Node::new(tmp.path(), "n1", A, &immediate(&srv.url), &clock);

    // A real datagram socket standing in for systemd's NOTIFY_SOCKET.
    let sock_path = tmp.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut a = node.agent_notifying(Some(agent::notify::Notifier::new(&sock_path)));
    let seen = tick_until(&mut a, 10, |s| *s == State::End).await;
    let mut msgs = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        msgs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(msgs.len(), 6, "{msgs:?}");
    assert_eq!(msgs[0], "READY=1\nSTATUS=initialization complete");
    assert_eq!(msgs[3], format!("STATUS=update staged: {B}"));
    assert_eq!(msgs[5], "STATUS=finished");
    assert_eq!(
        seen,
        [
            "start",
            "initialized",
            "reported_steady",
            "update_available",
            "update_staged",
            "update_finalized",
            "end"
        ]
    );
    assert_eq!(node.reboots.calls(), [B]);
    assert_eq!(a.store().pending, Some((rel(A), rel(B))));

    node.os.reboot();
    assert_eq!(node.os.booted_version(), B);
    let mut a = node.agent();
    tick_until(&mut a, 4, |s| *s == State::NoNewUpdate).await;
    assert!(a.store().outbox.is_empty(), "{:?}", a.store().outbox);
    assert_eq!(a.store().pending, None);
    assert_eq!(report_counts(&srv, B).await["success"], 1);
    // B is the newest release: nothing holds the node, nothing to do.
    let st = a.status();
    assert_eq!(st.candidate, None);
    assert_eq!(st.holds, vec![]);
    // The status file written by the daemon says the same.
    let from_file = agent::status::AgentStatus::read(&node.var.join("status.json")).unwrap();
    assert_eq!(from_file.state, "no_new_update");
    assert!(from_file.last_check.is_some());
    srv.stop().await;
}

#[tokio::test]
async fn daemon_loop_runs_to_the_reboot_and_stops_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let mut u = Updates::new("stable");
    completed(&mut u, B);
    write_data_dir(&tmp.path().join("data"), "stable", &[A, B], &u);
    let srv = UpdateServer::start(&tmp.path().join("data"), T0, 3).await;
    let clock = ManualClock::at(T0);
    let node = Node::new(tmp.path(), "n1", A, &immediate(&srv.url), &clock);
    let sock_path = tmp.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    let a = node.agent_notifying(Some(agent::notify::Notifier::new(&sock_path)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(a.run(async {
        let _ = stopped.await;
    }));
    // Every transition ticks at once, so the reboot comes without waiting.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while node.reboots.calls().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no reboot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(node.reboots.calls(), [B]);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let st = agent::status::AgentStatus::read(&node.var.join("status.json")).unwrap();
    assert_eq!(st.state, "end");
    sock.set_nonblocking(true).unwrap();
    let mut last = String::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        last = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
    assert_eq!(last, "STOPPING=1\nSTATUS=");
    srv.stop().await;
}

#[tokio::test]
async fn periodic_window_with_injected_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let mut u = Updates::new("stable");
    completed(&mut u, B);
    write_data_dir(&tmp.path().join("data"), "stable", &[A, B], &u);
    let srv = UpdateServer::start(&tmp.path().join("data"), T0, 3).await;
    // T0 is Tuesday 07:00 in New York (EST); the window opens Tuesday 09:30 local.
    let clock = ManualClock::at(T0);
    let cfg = format!(
        "{}[updates.periodic]\ntime_zone = \"America/New_York\"\n[[updates.periodic.window]]\ndays = [\"Tuesday\"]\nstart_time = \"9:30\"\nlength_minutes = 60\n",
        immediate(&srv.url).replace("immediate", "periodic")
    );
    let node = Node::new(tmp.path(), "n1", A, &cfg, &clock);
    let mut a = node.agent();
    tick_until(&mut a, 10, |s| matches!(s, State::UpdateStaged { .. })).await;
    for step in 0..5 {
        clock.set(T0 + step * 1800); // 07:00 .. 09:00 local
        a.tick().await.unwrap();
        assert!(
            matches!(a.state(), State::UpdateStaged { .. }),
            "{:?}",
            a.state()
        );
        match &a.status().holds[..] {
            [Hold::WindowClosed {
                next_window: Some(n),
            }] => {
                assert!(n.starts_with("2025-02-04T09:30:00-05:00"), "{n}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(node.reboots.calls().is_empty());
    let text = a.status().render();
    assert!(text.contains("State: update_staged (update staged: 41.20250115.3.0; reboot pending due to update strategy)"), "{text}");
    assert!(text.contains("  - outside the maintenance windows; next opens 2025-02-04T09:30:00-05:00[America/New_York]"), "{text}");
    clock.set(T0 + 2 * 3600 + 45 * 60); // 09:45 local
    tick_until(&mut a, 3, |s| *s == State::End).await;
    assert_eq!(node.reboots.calls(), [B]);
    srv.stop().await;
}

#[tokio::test]
async fn fleet_lock_one_slot_three_agents() {
    let tmp = tempfile::tempdir().unwrap();
    let mut u = Updates::new("stable");
    completed(&mut u, B);
    write_data_dir(&tmp.path().join("data"), "stable", &[A, B], &u);
    let srv = UpdateServer::start(&tmp.path().join("data"), T0, 3).await;
    let lock = LockServer::start(tmp.path(), 1).await;
    let clock = ManualClock::at(T0);
    let cfg = format!(
        "{}[updates.fleet_lock]\nbase_url = \"{}\"\n",
        immediate(&srv.url).replace("immediate", "fleet_lock"),
        lock.url
    );
    let nodes: Vec<Node> = (0..3)
        .map(|i| Node::new(tmp.path(), &format!("n{i}"), A, &cfg, &clock))
        .collect();
    let mut agents: Vec<Agent> = nodes.iter().map(Node::agent).collect();
    let mut max_finalizing = 0;
    for _round in 0..40 {
        for (i, a) in agents.iter_mut().enumerate() {
            a.tick().await.unwrap();
            if *a.state() == State::End {
                // Reboot and start the agent again, as systemd would.
                nodes[i].os.reboot();
                *a = nodes[i].agent();
            }
        }
        // Finalized and not yet back in steady state: those hold a slot.
        let finalizing = agents
            .iter()
            .filter(|a| matches!(a.state(), State::UpdateFinalized { .. }))
            .count();
        max_finalizing = max_finalizing.max(finalizing);
        assert!(lock.holders().await.len() <= 1);
        if nodes.iter().all(|n| n.os.booted_version() == B)
            && agents.iter().all(|a| *a.state() == State::NoNewUpdate)
        {
            break;
        }
    }
    assert!(max_finalizing <= 1);
    for n in &nodes {
        assert_eq!(n.os.booted_version(), B);
        assert_eq!(n.reboots.calls(), [B]);
    }
    // Every node gave its slot back after rebooting.
    assert!(lock.holders().await.is_empty());
    assert_eq!(report_counts(&srv, B).await["success"], 3);
    srv.stop().await;
}

#[tokio::test]
async fn lock_busy_is_a_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let mut u = Updates::new("stable");
    completed(&mut u, B);
    write_data_dir(&tmp.path().join("data"), "stable", &[A, B], &u);
    let srv = UpdateServer::start(&tmp.path().join("data"), T0, 3).await;
    let lock = LockServer::start(tmp.path(), 1).await;
    let other = fleetlock::client::Client::new(
        &lock.url,
        "someone-else",
        "default",
        Duration::from_secs(5),
    )
    .unwrap();
    other.pre_reboot().await.unwrap();
    let clock = ManualClock::at(T0);
    let cfg = format!(
        "{}[updates.fleet_lock]\nbase_url = \"{}\"\n",
        immediate(&srv.url).replace("immediate", "fleet_lock"),
        lock.url
    );
    let node = Node::new(tmp.path(), "n1", A, &cfg, &clock);
    let mut a = node.agent();
    tick_until(&mut a, 10, |s| matches!(s, State::UpdateStaged { .. })).await;
    a.tick().await.unwrap();
    assert!(matches!(a.state(), State::UpdateStaged { .. }));
    match &a.status().holds[..] {
        [Hold::LockBusy { detail }] => assert!(detail.contains("semaphore slots"), "{detail}"),
        other => panic!("{other:?}"),
    }
    other.steady_state().await.unwrap();
    tick_until(&mut a, 3, |s| *s == State::End).await;
    assert_eq!(node.reboots.calls(), [B]);
    srv.stop().await;
}

#[tokio::test]
async fn barrier_then_deadend() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut u = Updates::new("stable");
    u.set_barrier(B, "https://example.com/barrier");
    completed(&mut u, C);
    write_data_dir(&data, "stable", &[A, B, C], &u);
    let srv = UpdateServer::start(&data, T0, 3).await;
    let clock = ManualClock::at(T0);
    let node = Node::new(tmp.path(), "n1", A, &immediate(&srv.url), &clock);

    let mut a = node.agent();
    tick_until(&mut a, 3, |s| *s == State::ReportedSteady).await;
    a.tick().await.unwrap();
    assert_eq!(a.status().candidate.unwrap().version, B);
    assert!(
        matches!(&a.status().holds[..], [Hold::Barrier { barrier, newest, .. }] if barrier == B && newest == C)
    );
    tick_until(&mut a, 6, |s| *s == State::End).await;
    node.os.reboot();
    let mut a = node.agent();
    tick_until(&mut a, 10, |s| *s == State::End).await;
    node.os.reboot();
    assert_eq!(node.reboots.calls(), [B, C]);
    assert_eq!(node.os.booted_version(), C);

    // C becomes a dead-end: a node on it stops updating even when D appears.
    const D: &str = "41.20250212.3.0";
    let mut u = Updates::new("stable");
    u.set_barrier(B, "https://example.com/barrier");
    completed(&mut u, C);
    u.set_deadend(C, "https://example.com/deadend");
    completed(&mut u, D);
    write_data_dir(&data, "stable", &[A, B, C, D], &u);
    tokio::time::sleep(Duration::from_millis(1200)).await; // server reload
    let mut a = node.agent();
    tick_until(&mut a, 4, |s| *s == State::NoNewUpdate).await;
    assert_eq!(a.status().candidate, None);
    assert_eq!(
        a.status().holds,
        [Hold::DeadEnd {
            reason: "https://example.com/deadend".into()
        }]
    );
    a.tick().await.unwrap();
    assert_eq!(*a.state(), State::NoNewUpdate);
    let motd = node.var.join("motd");
    assert_eq!(
        std::fs::read_to_string(&motd).unwrap(),
        "This release is a dead-end and will not further auto-update: https://example.com/deadend\n"
    );
    // The dead-end is lifted: the notice goes and the update to D proceeds.
    let mut u = Updates::new("stable");
    u.set_barrier(B, "https://example.com/barrier");
    completed(&mut u, C);
    completed(&mut u, D);
    write_data_dir(&data, "stable", &[A, B, C, D], &u);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    a.tick().await.unwrap();
    assert!(matches!(a.state(), State::UpdateAvailable { release, .. } if release.version == D));
    assert!(!motd.exists());
    srv.stop().await;
}

#[tokio::test]
async fn wariness_holds_until_rollout_passes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut u = Updates::new("stable");
    // 0 % at T0, everyone 100 minutes later.
    u.start_rollout(B, T0, 0.0, 100).unwrap();
    write_data_dir(&data, "stable", &[A, B], &u);
    let srv = UpdateServer::start(&data, T0 + 25 * 60, 3).await;
    let clock = ManualClock::at(T0 + 25 * 60);
    let cfg = format!(
        "{}[identity]\nrollout_wariness = 0.5\n",
        immediate(&srv.url)
    );
    let node = Node::new(tmp.path(), "n1", A, &cfg, &clock);
    let mut a = node.agent();
    tick_until(&mut a, 4, |s| *s == State::NoNewUpdate).await;
    match &a.status().holds[..] {
        [Hold::Wariness {
            version,
            rollout_share,
            wariness,
        }] => {
            assert_eq!(version, B);
            assert!((rollout_share - 0.25).abs() < 1e-9);
            assert_eq!(*wariness, Some(0.5));
        }
        other => panic!("{other:?}"),
    }
    // At 45 % still hidden; at 55 % offered.
    srv.clock.set(T0 + 45 * 60);
    clock.set(T0 + 45 * 60);
    a.tick().await.unwrap();
    assert_eq!(*a.state(), State::NoNewUpdate);
    srv.clock.set(T0 + 55 * 60);
    clock.set(T0 + 55 * 60);
    a.tick().await.unwrap();
    assert!(matches!(a.state(), State::UpdateAvailable { release, .. } if release.version == B));
    srv.stop().await;
}

#[tokio::test]
async fn rolled_back_release_is_never_staged_again_and_pauses_rollout() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut u = Updates::new("stable");
    completed(&mut u, B);
    write_data_dir(&data, "stable", &[A, B], &u);
    // Three failing nodes pause the rollout for everyone.
    let srv = UpdateServer::start(&data, T0, 3).await;
    let clock = ManualClock::at(T0);
    let nodes: Vec<Node> = (0..4)
        .map(|i| {
            Node::new(
                tmp.path(),
                &format!("n{i}"),
                A,
                &immediate(&srv.url),
                &clock,
            )
        })
        .collect();
    for n in &nodes[..3] {
        n.os.fail_boot(B);
        let mut a = n.agent();
        tick_until(&mut a, 10, |s| *s == State::End).await;
        n.os.reboot();
        assert_eq!(n.os.booted_version(), A, "boot counter went back");
        // The agents restart repeatedly: B stays denied across restarts.
        for _ in 0..2 {
            let mut a = n.agent();
            tick_until(&mut a, 6, |s| *s == State::NoNewUpdate).await;
            a.tick().await.unwrap();
            assert_eq!(*a.state(), State::NoNewUpdate);
            assert!(a.store().denied.contains_key(&checksum(B)));
        }
        assert_eq!(n.os.stage_calls(), [B], "B staged exactly once");
        assert_eq!(n.reboots.calls(), [B]);
    }
    let counts = report_counts(&srv, B).await;
    assert_eq!(counts["rolled-back"], 3, "{counts}");
    let status = srv.status().await;
    let rollout = &status["streams"]["stable"]["rollouts"][0];
    assert_eq!(rollout["paused"], true, "{status}");
    // The fourth node, healthy, is not offered B any more.
    let mut a = nodes[3].agent();
    tick_until(&mut a, 6, |s| *s == State::NoNewUpdate).await;
    a.tick().await.unwrap();
    assert_eq!(*a.state(), State::NoNewUpdate);
    assert!(matches!(&a.status().holds[..], [Hold::NotOffered { version }] if version == B));
    assert!(nodes[3].os.stage_calls().is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn logged_in_users_get_a_ten_minute_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let mut u = Updates::new("stable");
    completed(&mut u, B);
    write_data_dir(&tmp.path().join("data"), "stable", &[A, B], &u);
    let srv = UpdateServer::start(&tmp.path().join("data"), T0, 3).await;
    let clock = ManualClock::at(T0);
    let node = Node::new(tmp.path(), "n1", A, &immediate(&srv.url), &clock);
    node.os.set_sessions(&["pts/0", "tty1"]);
    let mut a = node.agent();
    tick_until(&mut a, 10, |s| matches!(s, State::UpdateStaged { .. })).await;
    for left in (0..10).rev() {
        let delay = a.tick().await.unwrap();
        assert_eq!(delay, Duration::from_secs(60), "no jitter while postponing");
        assert!(
            matches!(a.state(), State::UpdateStaged { postponements_left, .. } if *postponements_left == left)
        );
        assert_eq!(
            a.status().holds,
            [Hold::ActiveSessions {
                ttys: vec!["pts/0".into(), "tty1".into()],
                postponements_left: left
            }]
        );
        assert!(a
            .status()
            .summary
            .ends_with("reboot delayed due to active user sessions"));
    }
    assert!(node.reboots.calls().is_empty());
    // Grace period over: reboot with the users still there.
    tick_until(&mut a, 3, |s| *s == State::End).await;
    assert_eq!(node.reboots.calls(), [B]);

    // Users who log out end the wait early.
    let node = Node::new(tmp.path(), "n2", A, &immediate(&srv.url), &clock);
    node.os.set_sessions(&["pts/3"]);
    let mut a = node.agent();
    tick_until(&mut a, 10, |s| matches!(s, State::UpdateStaged { .. })).await;
    a.tick().await.unwrap();
    a.tick().await.unwrap();
    assert!(node.reboots.calls().is_empty());
    node.os.set_sessions(&[]);
    tick_until(&mut a, 3, |s| *s == State::End).await;
    assert_eq!(node.reboots.calls(), [B]);
    srv.stop().await;
}

#[tokio::test]
async fn deny_list_outlives_the_boot_counter_record() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut u = Updates::new("stable");
    completed(&mut u, B);
    write_data_dir(&data, "stable", &[A, B], &u);
    let srv = UpdateServer::start(&data, T0, 3).await;
    let clock = ManualClock::at(T0);
    let node = Node::new(tmp.path(), "n1", A, &immediate(&srv.url), &clock);
    node.os.fail_boot(B);
    let mut a = node.agent();
    tick_until(&mut a, 10, |s| *s == State::End).await;
    node.os.reboot();
    let mut a = node.agent();
    tick_until(&mut a, 6, |s| *s == State::NoNewUpdate).await;
    // The sysroot forgets; the agent (restarted) does not (Zincati would re-apply B,
    // fedora-coreos-tracker#1938).
    node.os.forget_rollbacks();
    let mut a = node.agent();
    tick_until(&mut a, 6, |s| *s == State::NoNewUpdate).await;
    a.tick().await.unwrap();
    assert_eq!(*a.state(), State::NoNewUpdate);
    assert!(
        matches!(&a.status().holds[..], [Hold::Denied { version, reason }]
        if version == B && reason == "rolled back after boot")
    );
    assert_eq!(
        a.status().denied,
        [(B.to_string(), "rolled back after boot".to_string())]
    );
    assert_eq!(node.os.stage_calls(), [B]);
    // The state file is plain JSON under the var directory.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.var.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["denied"][checksum(B)]["reason"], "rolled-back");
    srv.stop().await;
}

#[tokio::test]
async fn failed_staging_is_abandoned_denied_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut u = Updates::new("stable");
    completed(&mut u, B);
    write_data_dir(&data, "stable", &[A, B], &u);
    let srv = UpdateServer::start(&data, T0, 3).await;
    let clock = ManualClock::at(T0);
    let node = Node::new(tmp.path(), "n1", A, &immediate(&srv.url), &clock);
    node.os.fail_staging(B);
    let mut a = node.agent();
    tick_until(&mut a, 4, |s| matches!(s, State::UpdateAvailable { .. })).await;
    for i in 1..agent::agent::MAX_DEPLOY_ATTEMPTS {
        a.tick().await.unwrap();
        assert!(
            matches!(a.state(), State::UpdateAvailable { attempts, .. } if *attempts == i),
            "{:?}",
            a.state()
        );
    }
    a.tick().await.unwrap();
    assert_eq!(*a.state(), State::NoNewUpdate);
    a.tick().await.unwrap(); // delivers the report, then checks again
    assert_eq!(*a.state(), State::NoNewUpdate);
    assert_eq!(
        node.os.stage_calls().len(),
        agent::agent::MAX_DEPLOY_ATTEMPTS as usize
    );
    assert_eq!(report_counts(&srv, B).await["failed-to-deploy"], 1);
    assert!(matches!(&a.status().holds[..], [Hold::Denied { version, .. }] if version == B));
    srv.stop().await;
}

#[tokio::test]
async fn disabled_updates_end_without_contacting_anyone() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(T0);
    // A port nobody listens on: the agent must not need it.
    let cfg = "[cincinnati]\nbase_url = \"http://127.0.0.1:9/\"\n[updates]\nenabled = false\n";
    let node = Node::new(tmp.path(), "n1", A, cfg, &clock);
    let mut a = node.agent();
    let d = a.tick().await.unwrap();
    assert_eq!(*a.state(), State::End);
    assert_eq!(a.status().holds, [Hold::UpdatesDisabled]);
    assert_eq!(d, Duration::ZERO);
    let d = a.tick().await.unwrap();
    assert!(
        d >= Duration::from_secs(10800) && d <= Duration::from_secs(11880),
        "{d:?}"
    );
}

#[tokio::test]
async fn no_update_check_before_steady_state_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut u = Updates::new("stable");
    completed(&mut u, B);
    write_data_dir(&data, "stable", &[A, B], &u);
    let srv = UpdateServer::start(&data, T0, 3).await;
    let lock = LockServer::start(tmp.path(), 1).await;
    let clock = ManualClock::at(T0);
    let cfg = format!(
        "{}[updates.fleet_lock]\nbase_url = \"{}\"\n[identity]\ngroup = \"workers\"\n",
        immediate(&srv.url).replace("immediate", "fleet_lock"),
        lock.url
    );
    let node = Node::new(tmp.path(), "n1", A, &cfg, &clock);
    let mut a = node.agent();
    for _ in 0..3 {
        a.tick().await.unwrap();
    }
    // The lock server does not know group "workers": stuck before checking.
    assert_eq!(*a.state(), State::Initialized);
    match &a.status().holds[..] {
        [Hold::SteadyStateFailed { error }] => assert!(error.contains("workers"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.status().last_check, None);
    lock.app.set_groups(std::collections::BTreeMap::from([
        ("default".to_string(), 1),
        ("workers".to_string(), 1),
    ]));
    tick_until(&mut a, 6, |s| matches!(s, State::UpdateStaged { .. })).await;
    assert!(a.status().last_check.is_some());
    srv.stop().await;
}
