//! `ferrocore fleetlock-server` and `ferrocore fleetlock` as processes: config file,
//! SIGHUP reload of slots, and a SIGKILL of the server that must not lose a holder.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ferrocore");

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(config: &Path, port: u16) -> Killed {
    let child = Command::new(BIN)
        .args(["fleetlock-server", "--config"])
        .arg(config)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Killed(child)
}

fn fl(port: u16, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("fleetlock")
        .arg(format!("--url=http://127.0.0.1:{port}/"))
        .args(args)
        .output()
        .unwrap()
}

fn signal(child: &Killed, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[test]
fn server_process_reload_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("fleetlock.toml");
    let write_cfg = |slots: u64| {
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:{port}\"\n[store]\nkind = \"sqlite\"\npath = \"{}\"\n[lock]\ndefault_slots = {slots}\n",
                dir.path().join("state/fl.sqlite").display()
            ),
        )
        .unwrap()
    };
    write_cfg(1);
    let srv = start(&cfg, port);

    assert!(fl(port, &["lock", "--id", "a"]).status.success());
    let busy = fl(port, &["lock", "--id", "b"]);
    assert!(!busy.status.success());
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(
        err.contains("all 1 semaphore slots currently locked"),
        "{err}"
    );

    // Raising the slots in the file and sending SIGHUP lets b in.
    write_cfg(2);
    signal(&srv, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fl(port, &["lock", "--id", "b"]).status.success() {
        assert!(Instant::now() < deadline, "reload did not take effect");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Crash the server: both holders must still be there after a restart.
    signal(&srv, "-KILL");
    drop(srv);
    let _srv = start(&cfg, port);
    let st = fl(port, &["status"]);
    assert!(st.status.success());
    let out = String::from_utf8_lossy(&st.stdout);
    assert!(out.contains("group: default (2 of 2 slots taken)"), "{out}");
    assert!(
        out.contains("\n  a since 20") && out.contains("\n  b since 20"),
        "{out}"
    );
    assert!(!fl(port, &["lock", "--id", "c"]).status.success());

    assert!(fl(port, &["unlock", "--id", "a"]).status.success());
    assert!(fl(port, &["release", "--id", "b"]).status.success());
    let again = fl(port, &["release", "--id", "b"]);
    assert!(
        !again.status.success(),
        "releasing a non-holder is reported"
    );
    assert!(fl(port, &["lock", "--id", "c"]).status.success());

    // A broken config names the key and line.
    std::fs::write(&cfg, "[lock]\ndefault_slot = 3\n").unwrap();
    let bad = Command::new(BIN)
        .args(["fleetlock-server", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("line 2") && err.contains("default_slot"),
        "{err}"
    );
}
