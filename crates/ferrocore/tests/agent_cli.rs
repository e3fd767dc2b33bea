//! `ferrocore agent config` and `ferrocore agent status` as processes.

use std::process::{Command, Output};

use agent::status::{AgentStatus, Hold};

const BIN: &str = env!("CARGO_BIN_EXE_ferrocore");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_merges_and_reports_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let (usr, etc) = (tmp.path().join("usr"), tmp.path().join("etc"));
    std::fs::create_dir_all(&usr).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        usr.join("50-base.toml"),
        "[cincinnati]\nbase_url = \"http://127.0.0.1:8080/\"\n[updates]\nstrategy = \"periodic\"\n\
         [[updates.periodic.window]]\ndays = [\"Tuesday\"]\nstart_time = \"23:30\"\nlength_minutes = 90\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("60-tz.toml"),
        "[updates.periodic]\ntime_zone = \"Europe/Berlin\"\n",
    )
    .unwrap();
    let (u, e) = (usr.to_str().unwrap(), etc.to_str().unwrap());
    let out = run(&["agent", "config", "--config-dirs", u, e]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("updates.strategy = \"periodic\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("updates.periodic.time_zone = \"Europe/Berlin\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("updates.periodic.window = Tuesday 23:30 for 90 minutes"),
        "{stdout}"
    );

    std::fs::write(etc.join("70-typo.toml"), "[updates]\nenable = false\n").unwrap();
    let out = run(&["agent", "config", "--config-dirs", u, e]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("70-typo.toml: updates.enable: unknown key"),
        "{stderr}"
    );
}

#[test]
fn status_text_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("status.json");
    let f = file.to_str().unwrap();
    let out = run(&["agent", "status", "--status-file", f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is the agent running?"));

    let st = AgentStatus {
        state: "update_staged".into(),
        summary: "update staged: 41.20250115.3.0; reboot pending due to update strategy".into(),
        updated_at: "2025-02-04T12:00:00Z".into(),
        strategy: "fleet_lock".into(),
        node_uuid: "975228d46dc94622b9bbe16671e2b58d".into(),
        group: "default".into(),
        booted: None,
        last_check: Some("2025-02-04T11:55:00Z".into()),
        candidate: None,
        holds: vec![Hold::LockBusy {
            detail: "server-side error, code 500: all 1 semaphore slots currently locked".into(),
        }],
        denied: vec![],
    };
    st.write(&file).unwrap();
    let out = run(&["agent", "status", "--status-file", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Last check: 2025-02-04T11:55:00Z"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  - reboot slot not granted: server-side error, code 500: all 1 semaphore slots currently locked"),
        "{stdout}"
    );
    let out = run(&["agent", "status", "--status-file", f, "--json"]);
    let back: AgentStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back, st);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["holds"][0]["kind"], "lock_busy");
}

#[test]
fn run_rejects_bad_node_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let missing = tmp.path().join("missing");
    let mid = tmp.path().join("machine-id");
    std::fs::write(&mid, "0123456789abcdef0123456789abcdef\n").unwrap();
    let out = run(&[
        "agent",
        "run",
        "--sysroot",
        d,
        "--config-dirs",
        d,
        "--booted-root",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "--booted-root {}: not a directory",
            missing.display()
        )),
        "{stderr}"
    );
    let out = run(&[
        "agent",
        "run",
        "--sysroot",
        d,
        "--config-dirs",
        d,
        "--machine-id",
        mid.to_str().unwrap(),
        "--reboot-command",
        " ",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("empty reboot command"), "{stderr}");
}
