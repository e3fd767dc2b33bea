//! End-to-end tests: boot a real ferrocore disk image under QEMU and check
//! provisioning, first-boot semantics and the booted system's layout.
//!
//! They need an image built by `ferrocore build image`, named by
//! `FERROCORE_E2E_IMAGE`; `scripts/ci.d/e2e-vm.sh` builds one and runs them:
//! `cargo test -p ferrocore-vm --test e2e -- --include-ignored --test-threads=2`.
//! Optional: `FERROCORE_E2E_VERSION` / `FERROCORE_E2E_COMMIT` (what the image
//! must report as booted), `FERROCORE_E2E_PROFILE=single|parallel` (VM size;
//! default parallel: 1 vCPU, 512 MiB), `FERROCORE_E2E_WORKDIR` (overlays and
//! console logs, default `$TMPDIR/ferrocore-e2e`; logs are kept),
//! `FERROCORE_E2E_BIN` (a ferrocore binary relaying guest forwards, which
//! then carry several connections).

mod common;

use common::{boot_timeout, image, profile, LOGIN_BUTANE};
use ferrocore_vm::{Pattern, Ssh, SshKey, Vm, VmOptions, VmState};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);

/// One test's directory, key and VM options.
struct Case {
    dir: PathBuf,
    key: SshKey,
    started: Instant,
}

impl Case {
    fn new(name: &str) -> Case {
        let root = std::env::var_os("FERROCORE_E2E_WORKDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("ferrocore-e2e"));
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = SshKey::generate(&dir).unwrap();
        Case {
            dir,
            key,
            started: Instant::now(),
        }
    }

    /// Translates `butane` (with `@KEY@` replaced by the test's public key)
    /// with our Butane and writes the Ignition config.
    fn ignition(&self, butane_yaml: &str) -> PathBuf {
        let src = butane_yaml.replace("@KEY@", self.key.public());
        let out = butane::translate(src.as_bytes(), &butane::Options::default())
            .unwrap_or_else(|e| panic!("Butane config does not translate: {}", e.message));
        let path = self.dir.join("config.ign");
        std::fs::write(&path, &out.bytes).unwrap();
        path
    }

    fn start(&self, ignition: &Path) -> Vm {
        self.start_with(ignition, |_| {})
    }

    fn start_with(&self, ignition: &Path, tweak: impl FnOnce(&mut VmOptions)) -> Vm {
        let mut o = VmOptions::new(image(), &self.dir);
        o.ignition = Some(ignition.to_path_buf());
        o.profile = profile();
        tweak(&mut o);
        let vm = Vm::start(o).unwrap();
        eprintln!(
            "{}: console {}",
            self.dir.display(),
            vm.log_path().display()
        );
        vm
    }

    fn ssh(&self, vm: &Vm) -> Ssh {
        let t = Instant::now();
        let ssh = vm
            .wait_ssh(&self.key, "core", boot_timeout())
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{}: boot {} -> ssh reachable in {:.1} s",
            self.dir.display(),
            vm.boots(),
            t.elapsed().as_secs_f64()
        );
        ssh
    }

    fn done(self, vm: Vm) {
        let overlay = vm.overlay().to_path_buf();
        drop(vm);
        // Keep the console log; the overlay is hundreds of MB.
        let _ = std::fs::remove_file(overlay);
        eprintln!(
            "{}: passed in {:.1} s",
            self.dir.display(),
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Runs `cmd` and returns its stdout, panicking with the details on failure.
fn sh(ssh: &Ssh, cmd: &str) -> String {
    ssh.check(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// Asks the guest to power off and waits until it has.
fn poweroff(vm: &Vm, ssh: &Ssh) {
    // ssh may lose the connection as the system goes down: its status is moot.
    let _ = ssh.run_timeout("sudo systemctl poweroff", Duration::from_secs(30));
    vm.wait_poweroff(POWEROFF_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The guest runs a container from an image made locally from a few files
/// of its own (echo and the libraries it needs), so no registry is involved.
const CONTAINER_SCRIPT: &str = r#"#!/bin/sh
set -eu
d=$(mktemp -d)
for f in /usr/bin/echo $(ldd /usr/bin/echo | grep -o '/[^ ]*'); do
    cp --parents -L "$f" "$d"
done
tar -C "$d" -cf - . | podman import - localhost/e2e-echo:latest
podman run --rm --network=none localhost/e2e-echo:latest /usr/bin/echo e2e-container-says-hello
"#;

fn container_butane() -> String {
    let script = CONTAINER_SCRIPT
        .lines()
        .map(|l| format!("          {l}\n"))
        .collect::<String>();
    format!(
        r#"{LOGIN_BUTANE}    - path: /etc/e2e/secret.conf
      mode: 0640
      contents:
        inline: "e2e-secret-value\n"
    - path: /etc/e2e/container.sh
      mode: 0755
      contents:
        inline: |
{script}systemd:
  units:
    - name: e2e-container.service
      enabled: true
      contents: |
        [Unit]
        Description=e2e: run a container from a locally made image
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/etc/e2e/container.sh
        [Install]
        WantedBy=multi-user.target
"#
    )
}

/// A host HTTP service on 127.0.0.1 answering every request with `body`;
/// returns its port. The thread lives as long as the test process.
fn serve_http(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().map_while(Result::ok) {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// The login config plus a file readable by its group only.
fn secret_butane() -> String {
    format!(
        "{LOGIN_BUTANE}    - path: /etc/e2e/secret.conf\n      mode: 0640\n      contents:\n        inline: \"e2e-secret-value\\n\"\n"
    )
}

/// Waits until a oneshot unit has finished; its final state.
fn wait_unit(ssh: &Ssh, unit: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let o = ssh
            .run(&format!("systemctl show -P ActiveState {unit}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let state = o.stdout.trim().to_string();
        if state == "active" || state == "failed" || Instant::now() >= deadline {
            return state;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

#[test]
#[ignore = "needs a built image: scripts/ci.d/e2e-vm.sh"]
fn provisioning_applies_user_and_file_then_never_runs_again() {
    let case = Case::new("provisioning");
    let ign = case.ignition(&secret_butane());
    let mut vm = case.start(&ign);
    vm.wait_for("ferrocore-init: ignition", boot_timeout())
        .unwrap_or_else(|e| panic!("{e}"));
    let ssh = case.ssh(&vm);

    assert_eq!(sh(&ssh, "id -un").trim(), "core");
    assert_eq!(
        sh(&ssh, "stat -c '%a %U' /etc/e2e/secret.conf").trim(),
        "640 root"
    );
    assert_eq!(
        sh(&ssh, "sudo cat /etc/e2e/secret.conf"),
        "e2e-secret-value\n"
    );
    let cmdline = sh(&ssh, "cat /proc/cmdline");
    assert!(
        cmdline.contains("ignition.firstboot"),
        "first boot without ignition.firstboot: {cmdline}"
    );
    let result =
        "sudo stat -c '%Y' /etc/.ignition-result.json && sudo sha256sum /etc/.ignition-result.json";
    let result_before = sh(&ssh, result);
    poweroff(&vm, &ssh);
    assert_eq!(vm.boots(), 1);

    // Second boot on the same disk: Ignition must not run again.
    vm.restart().unwrap();
    let ssh = case.ssh(&vm);
    assert_eq!(vm.boots(), 2);
    let cmdline = sh(&ssh, "cat /proc/cmdline");
    assert!(
        !cmdline.contains("ignition.firstboot"),
        "second boot still has ignition.firstboot: {cmdline}"
    );
    assert_eq!(
        sh(&ssh, result),
        result_before,
        "/etc/.ignition-result.json changed: Ignition ran again"
    );
    let boot2 = vm.console_of_boot(2);
    let again: Vec<&str> = boot2
        .iter()
        .map(|l| l.text.as_str())
        .filter(|t| t.contains("ferrocore-init: ignition"))
        .collect();
    assert!(again.is_empty(), "Ignition ran on boot 2: {again:?}");
    assert!(
        boot2
            .iter()
            .any(|l| l.text.contains("ferrocore-init: switch-root")),
        "boot 2 went through the initramfs"
    );
    assert_eq!(sh(&ssh, "stat -c '%a' /etc/e2e/secret.conf").trim(), "640");
    poweroff(&vm, &ssh);
    case.done(vm);
}

#[test]
#[ignore = "needs a built image: scripts/ci.d/e2e-vm.sh"]
fn an_ignition_enabled_unit_runs_a_locally_made_container() {
    let case = Case::new("container");
    let ign = case.ignition(&container_butane());
    let vm = case.start(&ign);
    let ssh = case.ssh(&vm);
    let unit = "e2e-container.service";
    let enabled = ssh.run(&format!("systemctl is-enabled {unit}")).unwrap();
    assert_eq!(
        enabled.stdout.trim(),
        "enabled",
        "Ignition's `enabled: true` did not take: presets {:?}, first-boot journal lines {:?}",
        ssh.run("cat /etc/systemd/system-preset/*.preset")
            .map(|o| o.stdout)
            .unwrap_or_default(),
        ssh.run("sudo journalctl -b -o cat | grep -i 'first boot' | head -3")
            .map(|o| o.stdout)
            .unwrap_or_default(),
    );
    let state = wait_unit(&ssh, unit, Duration::from_secs(300));
    let journal = sh(
        &ssh,
        &format!("sudo journalctl -u {unit} --no-pager -o cat"),
    );
    assert_eq!(state, "active", "unit did not succeed; journal:\n{journal}");
    assert!(
        journal.contains("e2e-container-says-hello"),
        "container output missing from the journal:\n{journal}"
    );
    poweroff(&vm, &ssh);
    case.done(vm);
}

#[test]
#[ignore = "needs a built image: scripts/ci.d/e2e-vm.sh"]
fn a_config_that_cannot_be_applied_stops_the_boot_before_systemd() {
    let case = Case::new("bad-config");
    // The data URL's content does not match the declared hash: Ignition must
    // refuse the file, and the boot must stop in the initramfs.
    let ign = case.ignition(
        &r#"variant: fcos
version: 1.5.0
storage:
  files:
    - path: /etc/e2e-bad
      contents:
        source: "data:,not%20what%20the%20hash%20says"
        verification:
          hash: sha512-@ZEROS@
"#
        .replace("@ZEROS@", &"0".repeat(128)),
    );
    let mut vm = case.start(&ign);
    let line = vm
        .wait_for(
            Pattern::regex(r"ignition: .*\$\.storage\.files\.0\.contents").unwrap(),
            boot_timeout(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("bad-config: {line}");
    // Give a wrongly continuing boot time to show itself: systemd prints its
    // banner within seconds of switch-root.
    let systemd = vm.wait_for(
        Pattern::regex(r"systemd\[1\]|Welcome to |ferrocore-init: switch-root|Kernel panic")
            .unwrap(),
        Duration::from_secs(30),
    );
    assert!(
        systemd.is_err(),
        "the boot went on after the Ignition failure: {systemd:?}"
    );
    assert!(
        matches!(systemd, Err(ferrocore_vm::Error::Timeout { .. })),
        "{systemd:?}"
    );
    assert_eq!(vm.state(), VmState::Running, "pid 1 must not exit");
    case.done(vm);
}

#[test]
#[ignore = "needs a built image: scripts/ci.d/e2e-vm.sh"]
fn booted_system_has_readonly_usr_writable_etc_persistent_var() {
    let case = Case::new("layout");
    let ign = case.ignition(LOGIN_BUTANE);
    let http = serve_http("e2e-host-says-hi\n");
    // With the relay (a ferrocore binary), the forward takes any number of
    // connections; without, QEMU's own forward carries exactly one.
    let relay = std::env::var_os("FERROCORE_E2E_BIN").map(PathBuf::from);
    let requests = if relay.is_some() { 3 } else { 1 };
    let vm = case.start_with(&ign, |o| {
        o.guestfwds = vec![format!("10.0.2.100:80={http}").parse().unwrap()];
        o.relay = relay;
    });
    let ssh = case.ssh(&vm);

    for i in 0..requests {
        assert_eq!(
            sh(&ssh, "curl -sS -m 30 http://10.0.2.100/"),
            "e2e-host-says-hi\n",
            "request {i} through the guest forward"
        );
    }
    let direct = ssh
        .run(&format!("curl -sS -m 5 http://10.0.2.2:{http}/"))
        .unwrap();
    assert!(
        !direct.success(),
        "restrict=on must keep the guest from the host's other ports: {direct:?}"
    );

    let usr = ssh.run("sudo touch /usr/e2e-probe").unwrap();
    assert!(!usr.success(), "/usr is writable: {usr:?}");
    assert!(usr.stderr.contains("Read-only file system"), "{usr:?}");
    sh(&ssh, "sudo touch /etc/e2e-probe");
    let token = format!(
        "{:x}",
        case.started.elapsed().as_nanos() ^ u128::from(std::process::id())
    );
    sh(
        &ssh,
        &format!("echo {token} | sudo tee /var/e2e-persist >/dev/null && sync"),
    );

    let status = sh(&ssh, "sudo ferrocore admin status");
    assert!(
        status.lines().any(|l| l.starts_with('\u{25cf}')),
        "no booted deployment marked in:\n{status}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&sh(&ssh, "sudo ferrocore admin status --json")).unwrap();
    let booted = json["deployments"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["booted"] == true))
        .unwrap_or_else(|| panic!("no booted deployment in {json}"));
    assert_eq!(booted["osname"], "ferrocore", "{json}");
    let version = booted["version"]
        .as_str()
        .unwrap_or_else(|| panic!("booted deployment without a version: {json}"));
    assert!(
        status.contains(&format!("Version: {version}")),
        "{version} not shown in:\n{status}"
    );
    if let Ok(v) = std::env::var("FERROCORE_E2E_VERSION") {
        assert_eq!(version, v, "{status}");
    }
    if let Ok(c) = std::env::var("FERROCORE_E2E_COMMIT") {
        assert_eq!(booted["checksum"], c.as_str(), "{status}");
    }

    // A reboot from inside: QEMU exits (-no-reboot) and the harness relaunches it.
    let _ = ssh.run_timeout("sudo systemctl reboot", Duration::from_secs(30));
    vm.wait_boot(2, POWEROFF_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        vm.console_of_boot(1)
            .iter()
            .any(|l| l.text.contains(ferrocore_vm::REBOOT_MARKER)),
        "boot 1 ended with a reboot"
    );
    let ssh = case.ssh(&vm);
    assert_eq!(sh(&ssh, "cat /var/e2e-persist").trim(), token);
    sh(&ssh, "test -e /etc/e2e-probe");
    assert!(!ssh.run("sudo touch /usr/e2e-probe").unwrap().success());
    poweroff(&vm, &ssh);
    case.done(vm);
}

/// The suite's configs translate and say what the VM tests rely on (this one
/// needs no image, so a broken config shows up in every `cargo test`).
#[test]
fn the_suite_configs_translate() {
    let translate = |src: &str| -> serde_json::Value {
        let out = butane::translate(src.as_bytes(), &butane::Options::default())
            .unwrap_or_else(|e| panic!("{}\n{src}", e.message));
        serde_json::from_slice(&out.bytes).unwrap()
    };
    let p = translate(&container_butane());
    assert_eq!(p["passwd"]["users"][0]["name"], "core");
    assert_eq!(p["passwd"]["users"][0]["sshAuthorizedKeys"][0], "@KEY@");
    assert_eq!(p["storage"]["files"][0]["mode"], 0o440);
    assert_eq!(p["storage"]["files"][1]["path"], "/etc/e2e/secret.conf");
    assert_eq!(p["storage"]["files"][1]["mode"], 0o640);
    assert_eq!(p["storage"]["files"][2]["mode"], 0o755);
    let unit = &p["systemd"]["units"][0];
    assert_eq!(unit["enabled"], true);
    assert!(unit["contents"]
        .as_str()
        .unwrap()
        .contains("ExecStart=/etc/e2e/container.sh"));
    let l = translate(LOGIN_BUTANE);
    assert_eq!(l["passwd"]["users"][0]["name"], "core");
    let f = translate(&secret_butane());
    assert_eq!(f["storage"]["files"][1]["path"], "/etc/e2e/secret.conf");
    assert_eq!(f["storage"]["files"][1]["mode"], 0o640);
}
