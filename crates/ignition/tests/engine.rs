//! Engine behaviour without a peer: failure paths and their recording, stage
//! plumbing (cache, state, neednet), base configs, the result file and
//! symlink containment. Needs root (chown, useradd).

mod common;

use std::path::Path;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

struct Run {
    /// Keeps the root and work dirs alive for the test's duration.
    _t: tempfile::TempDir,
    opts: ignition_engine::Options,
}

impl Run {
    fn new(cfg: &str) -> Run {
        common::require_root();
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        common::seed(&root);
        let path = t.path().join("config.ign");
        std::fs::write(&path, cfg).unwrap();
        let opts = common::options(&root, &path, &t.path().join("work"));
        Run { _t: t, opts }
    }
    fn root(&self) -> &Path {
        &self.opts.root
    }
    fn state(&self) -> ignition_engine::State {
        ignition_engine::State::load(&self.opts.state_file).unwrap()
    }
}

fn data(s: &str) -> String {
    format!("data:,{}", utf8_percent_encode(s, NON_ALPHANUMERIC))
}

#[test]
fn invalid_config_fails_fetch_with_its_path_and_is_recorded() {
    let r = Run::new(
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/ok"},{"path":"relative"}]}}"#,
    );
    let e = ignition_engine::run(&r.opts).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.storage.files.1.path"));
    assert!(e.message.contains("path not absolute"), "{e}");
    let f = r.state().failure.expect("failure recorded");
    assert_eq!(f.stage, "fetch");
    assert_eq!(f.path.as_deref(), Some("$.storage.files.1.path"));
    assert!(
        !r.opts.config_cache.exists(),
        "no cache for an invalid config"
    );
    assert!(!r.root().join("ok").exists());
}

#[test]
fn unapplicable_file_names_its_source_and_is_recorded() {
    let r = Run::new(
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[
            {"path":"/etc/a","contents":{"source":"data:,a"}},
            {"path":"/etc/b"},{"path":"/etc/c"},
            {"path":"/etc/d","contents":{"source":"s3://bucket/key"}}]}}"#,
    );
    let e = ignition_engine::run(&r.opts).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.storage.files.3.contents.source"));
    assert!(e.message.contains("unsupported source scheme"), "{e}");
    assert_eq!(
        e.to_string().split(": ").next(),
        Some("$.storage.files.3.contents.source")
    );
    let f = r.state().failure.unwrap();
    assert_eq!(
        (f.stage.as_str(), f.path.as_deref()),
        ("files", Some("$.storage.files.3.contents.source"))
    );
    // Failing closed: the stage stopped, so no result file claims success.
    assert!(!r.root().join("etc/.ignition-result.json").exists());
    assert!(r.root().join("etc/a").exists());
}

#[test]
fn owner_and_unit_failures_name_fields() {
    let r = Run::new(
        r#"{"ignition":{"version":"3.3.0"},"storage":{"directories":[{"path":"/srv/x","group":{"name":"nosuchgroup"}}]}}"#,
    );
    let e = ignition_engine::run(&r.opts).unwrap_err();
    assert_eq!(
        e.path.as_deref(),
        Some("$.storage.directories.0.group.name")
    );
    assert!(e.message.contains("No such group \"nosuchgroup\""), "{e}");

    let r = Run::new(
        r#"{"ignition":{"version":"3.3.0"},"passwd":{"users":[{"name":"ok"},{"name":"bad","primaryGroup":"nope"}]}}"#,
    );
    let e = ignition_engine::run(&r.opts).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.passwd.users.1"));
    assert!(e.message.contains("useradd"), "{e}");
    assert!(common::snapshot(r.root()).contains_key("/home/ok"));
}

#[test]
fn rerun_fails_on_existing_files_like_upstream() {
    let r = Run::new(
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/once","contents":{"source":"data:,x"}}]}}"#,
    );
    ignition_engine::run(&r.opts).unwrap();
    let first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.root().join("etc/.ignition-result.json")).unwrap())
            .unwrap();
    assert_eq!(first["userConfigProvided"], true);
    assert!(first["provisioningDate"].as_str().unwrap().ends_with('Z'));
    let e = ignition_engine::run(&r.opts).unwrap_err();
    assert!(
        e.message
            .contains("A file exists there already and overwrite is false"),
        "{e}"
    );
    assert_eq!(e.path.as_deref(), Some("$.storage.files.0"));
}

#[test]
fn files_stage_needs_the_cache() {
    let r = Run::new(r#"{"ignition":{"version":"3.3.0"}}"#);
    let e = ignition_engine::run_stage(&r.opts, ignition_engine::Stage::Files).unwrap_err();
    assert!(e.message.contains("ignition.json"), "{e}");
    assert_eq!(r.state().failure.unwrap().stage, "files");
}

#[test]
fn fetch_offline_signals_neednet_and_fetch_then_works() {
    let r = Run::new(
        r#"{"ignition":{"version":"3.3.0","config":{"merge":[{"source":"http://127.0.0.1:9/x.ign"}]}}}"#,
    );
    let out = ignition_engine::run_stage(&r.opts, ignition_engine::Stage::FetchOffline).unwrap();
    assert_eq!(out, ignition_engine::Outcome::NeedNet);
    assert!(r.opts.neednet.exists());
    assert!(!r.opts.config_cache.exists());

    let r = Run::new(&format!(
        r#"{{"ignition":{{"version":"3.3.0","config":{{"merge":[{{"source":"{}"}}]}}}}}}"#,
        data(
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/m","contents":{"source":"data:,m"}}]}}"#
        )
    ));
    let out = ignition_engine::run_stage(&r.opts, ignition_engine::Stage::FetchOffline).unwrap();
    assert_eq!(out, ignition_engine::Outcome::Done);
    let cache = std::fs::metadata(&r.opts.config_cache).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(cache.permissions().mode() & 0o777, 0o640);
    ignition_engine::run_stage(&r.opts, ignition_engine::Stage::Files).unwrap();
    assert_eq!(std::fs::read(r.root().join("etc/m")).unwrap(), b"m");
}

#[test]
fn base_configs_merge_under_the_user_config() {
    let r = Run::new(
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/shared","contents":{"source":"data:,user"}}]}}"#,
    );
    let sys = &r.opts.system_config_dir;
    std::fs::create_dir_all(sys.join("base.d")).unwrap();
    std::fs::create_dir_all(sys.join("base.platform.d/file")).unwrap();
    std::fs::write(
        sys.join("base.d/10-base.ign"),
        r#"{"ignition":{"version":"3.0.0"},"storage":{"files":[{"path":"/etc/shared","contents":{"source":"data:,base"}},{"path":"/etc/base-only","contents":{"source":"data:,b"}}]}}"#,
    )
    .unwrap();
    std::fs::write(
        sys.join("base.platform.d/file/20-plat.ign"),
        r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"plat.service","mask":true}]}}"#,
    )
    .unwrap();
    ignition_engine::run(&r.opts).unwrap();
    assert_eq!(std::fs::read(r.root().join("etc/shared")).unwrap(), b"user");
    assert_eq!(std::fs::read(r.root().join("etc/base-only")).unwrap(), b"b");
    assert_eq!(
        std::fs::read_link(r.root().join("etc/systemd/system/plat.service")).unwrap(),
        Path::new("/dev/null")
    );
    let kinds: Vec<String> = r
        .state()
        .fetched_configs
        .iter()
        .map(|c| c.kind.clone())
        .collect();
    assert_eq!(kinds, ["base", "user"]);
}

#[test]
fn empty_config_is_not_an_error() {
    let r = Run::new("");
    ignition_engine::run(&r.opts).unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.root().join("etc/.ignition-result.json")).unwrap())
            .unwrap();
    assert_eq!(v["userConfigProvided"], false);
}

#[test]
fn nested_references_are_bounded() {
    let mut cfg = r#"{"ignition":{"version":"3.3.0"}}"#.to_string();
    for _ in 0..=ignition_engine::MAX_RENDER_DEPTH + 1 {
        cfg = format!(
            r#"{{"ignition":{{"version":"3.3.0","config":{{"replace":{{"source":"{}"}}}}}}}}"#,
            data(&cfg)
        );
    }
    let r = Run::new(&cfg);
    let e = ignition_engine::run(&r.opts).unwrap_err();
    assert!(e.message.contains("nested deeper"), "{e}");
}

#[test]
fn symlinks_in_the_root_cannot_redirect_writes_outside() {
    let outside = tempfile::tempdir().unwrap();
    let r = Run::new(
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/escape/etc/pwned","contents":{"source":"data:,x"}}]},
            "systemd":{"units":[{"name":"x.service","contents":"[Service]\nExecStart=/bin/true\n"}]}}"#,
    );
    std::os::unix::fs::symlink(outside.path(), r.root().join("escape")).unwrap();
    std::os::unix::fs::symlink("../../../../..", r.root().join("etc/systemd")).unwrap_or(());
    ignition_engine::run(&r.opts).unwrap();
    // The absolute link target is taken inside the root.
    let inside = r
        .root()
        .join(outside.path().strip_prefix("/").unwrap())
        .join("etc/pwned");
    assert!(inside.exists());
    assert!(!outside.path().join("etc/pwned").exists());
    assert!(r.root().join("system/x.service").exists());
}

#[test]
fn kernel_cmdline_url_wins() {
    let r = Run::new(
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/from-file"}]}}"#,
    );
    let url = data(
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/from-cmdline"}]}}"#,
    );
    std::fs::write(
        &r.opts.kernel_cmdline,
        format!("quiet ignition.config.url={url} ro\n"),
    )
    .unwrap();
    ignition_engine::run(&r.opts).unwrap();
    assert!(r.root().join("etc/from-cmdline").exists());
    assert!(!r.root().join("etc/from-file").exists());
    assert_eq!(r.state().fetched_configs[0].source, "cmdline");
}

#[test]
fn unknown_platform_and_relative_root_are_rejected() {
    let mut r = Run::new(r#"{"ignition":{"version":"3.3.0"}}"#);
    r.opts.platform = "aws".into();
    let e = ignition_engine::run(&r.opts).unwrap_err();
    assert!(e.message.contains("not supported"), "{e}");
    r.opts.platform = "file".into();
    r.opts.root = "relative/root".into();
    assert!(ignition_engine::run(&r.opts)
        .unwrap_err()
        .message
        .contains("absolute"));
}

#[test]
fn a_second_run_keeps_the_previous_report() {
    let r = Run::new(
        r#"{"ignition":{"version":"3.3.0"},"systemd":{"units":[{"name":"a.service","mask":true}]}}"#,
    );
    ignition_engine::run(&r.opts).unwrap();
    ignition_engine::run(&r.opts).unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.root().join("etc/.ignition-result.json")).unwrap())
            .unwrap();
    assert_eq!(v["previousReport"]["userConfigProvided"], true);
    assert!(v["previousReport"]["provisioningBootID"].is_string());
}
