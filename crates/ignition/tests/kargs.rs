//! The kargs stage calls `ignition-kargs-helper` with the same arguments as the
//! real Ignition 2.14 does (its invocation recorded by the peer script's stub).
//! A single test in its own binary: it changes PATH for the process.

mod common;

use std::path::Path;

#[test]
fn kargs_helper_gets_the_same_arguments_as_upstream() {
    common::require_root();
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("kargs.ign");
    std::fs::write(
        &cfg,
        r#"{"ignition":{"version":"3.3.0"},"kernelArguments":{"shouldExist":["quiet","foo bar","console=ttyS0,115200"],"shouldNotExist":["rhgb"]}}"#,
    )
    .unwrap();

    let peer = std::process::Command::new("sh")
        .arg(Path::new(common::SHARED).join("peers/run-real-ignition.sh"))
        .arg(&cfg)
        .arg(t.path().join("peer"))
        .arg("kargs")
        .env("LIST", "0")
        .output()
        .unwrap();
    assert!(peer.status.success());
    let stderr = String::from_utf8_lossy(&peer.stderr);
    let peer_args = stderr
        .split("# ignition-kargs-helper called with:\n")
        .nth(1)
        .and_then(|s| s.lines().next())
        .map(|l| l.trim_start_matches('#').trim().to_string())
        .expect("peer called the helper");

    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = t.path().join("kargs.log");
    std::fs::write(
        bin.join("ignition-kargs-helper"),
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        bin.join("ignition-kargs-helper"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::env::set_var("PATH", path);

    let root = t.path().join("ours");
    common::seed(&root);
    let opts = common::options(&root, &cfg, &t.path().join("work"));
    ignition_engine::run_stage(&opts, ignition_engine::Stage::Fetch).unwrap();
    ignition_engine::run_stage(&opts, ignition_engine::Stage::Kargs).unwrap();
    let ours = std::fs::read_to_string(&log).unwrap();
    assert_eq!(ours.trim(), peer_args);

    // A failing helper fails the stage, naming the config section.
    std::fs::write(
        bin.join("ignition-kargs-helper"),
        "#!/bin/sh\necho nope >&2\nexit 3\n",
    )
    .unwrap();
    let e = ignition_engine::run_stage(&opts, ignition_engine::Stage::Kargs).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.kernelArguments"));
    assert!(e.message.contains("nope"), "{e}");
}
