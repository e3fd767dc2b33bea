//! Fragment precedence, merging and error reporting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::config::{Config, StrategyConfig};
use jiff::civil::Weekday;

struct Dirs {
    _tmp: tempfile::TempDir,
    usr: PathBuf,
    run: PathBuf,
    etc: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let [usr, run, etc] = ["usr", "run", "etc"].map(|d| tmp.path().join(d));
        for d in [&usr, &run, &etc] {
            std::fs::create_dir_all(d).unwrap();
        }
        Dirs {
            _tmp: tmp,
            usr,
            run,
            etc,
        }
    }

    fn list(&self) -> Vec<PathBuf> {
        vec![self.usr.clone(), self.run.clone(), self.etc.clone()]
    }

    fn load(&self) -> Result<Config, agent::ConfigError> {
        Config::load(&self.list())
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// Zincati's shipped fragments (coreos/zincati:dist/config.d), as a distribution
/// would install them under /usr/lib.
fn zincati_defaults(usr: &Path) {
    write(
        usr,
        "10-agent.toml",
        "[agent.timing]\nsteady_interval_secs = 300\n",
    );
    write(usr, "10-auto-updates.toml", "[updates]\nenabled = true\n");
    write(usr, "10-identity.toml", "[identity]\ngroup = \"default\"\n");
    write(
        usr,
        "30-updates-strategy.toml",
        "[updates]\nstrategy = \"immediate\"\n",
    );
    write(
        usr,
        "50-fedora-coreos-cincinnati.toml",
        "[cincinnati]\nbase_url= \"https://updates.coreos.fedoraproject.org\"\n",
    );
}

#[test]
fn defaults_and_shipped_fragments() {
    let d = Dirs::new();
    let c = d.load().unwrap();
    assert_eq!(c.group, "default");
    assert!(c.updates_enabled);
    assert!(matches!(c.strategy, StrategyConfig::Immediate));
    assert_eq!(c.steady_interval, Duration::from_secs(300));
    assert_eq!(
        c.retry_interval,
        Duration::from_secs(300),
        "Zincati's fixed period"
    );
    assert_eq!(c.cincinnati_base_url, None);

    zincati_defaults(&d.usr);
    let c = d.load().unwrap();
    assert_eq!(
        c.cincinnati_base_url.as_deref(),
        Some("https://updates.coreos.fedoraproject.org")
    );
    assert_eq!(c.fragments.len(), 5);
}

#[test]
fn later_directory_replaces_same_name_and_names_order_merging() {
    let d = Dirs::new();
    zincati_defaults(&d.usr);
    // Same name in /etc replaces the /usr/lib file entirely.
    write(
        &d.etc,
        "10-agent.toml",
        "[agent.timing]\nsteady_interval_secs = 60\nretry_interval_secs = 5\n",
    );
    // /etc beats /run for the same name (Zincati's scan order).
    write(
        &d.run,
        "40-group.toml",
        "[identity]\ngroup = \"from-run\"\n",
    );
    write(
        &d.etc,
        "40-group.toml",
        "[identity]\ngroup = \"from-etc\"\n",
    );
    let c = d.load().unwrap();
    assert_eq!(c.steady_interval, Duration::from_secs(60));
    assert_eq!(c.retry_interval, Duration::from_secs(5));
    assert_eq!(c.group, "from-etc");
    // But a later *name* wins over directory: 90- in /run overrides 40- in /etc.
    write(&d.run, "90-group.toml", "[identity]\ngroup = \"ninety\"\n");
    assert_eq!(d.load().unwrap().group, "ninety");
    // An empty group does not override (last non-empty wins).
    write(&d.etc, "95-group.toml", "[identity]\ngroup = \"\"\n");
    assert_eq!(d.load().unwrap().group, "ninety");
}

#[test]
fn dev_null_symlink_masks() {
    let d = Dirs::new();
    zincati_defaults(&d.usr);
    std::os::unix::fs::symlink("/dev/null", d.etc.join("50-fedora-coreos-cincinnati.toml"))
        .unwrap();
    let c = d.load().unwrap();
    assert_eq!(c.cincinnati_base_url, None);
    assert_eq!(c.fragments.len(), 4);
}

#[test]
fn non_toml_files_are_ignored_with_a_warning() {
    let d = Dirs::new();
    write(&d.etc, "99-disable.yaml", "updates.enabled=false\n");
    let c = d.load().unwrap();
    assert!(c.updates_enabled);
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].contains("99-disable.yaml"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn periodic_windows_append_across_fragments() {
    let d = Dirs::new();
    write(
        &d.usr,
        "50-windows.toml",
        r#"
[updates]
strategy = "periodic"
[[updates.periodic.window]]
days = [ "Sat", "Sunday" ]
start_time = "23:30"
length_minutes = 60
"#,
    );
    write(
        &d.etc,
        "60-more.toml",
        r#"
[updates.periodic]
time_zone = "Europe/Paris"
[[updates.periodic.window]]
days = [ "Tuesday", "wed" ]
start_time = "4:05"
length_minutes = 10080
"#,
    );
    let c = d.load().unwrap();
    let StrategyConfig::Periodic(cal) = &c.strategy else {
        panic!("{:?}", c.strategy)
    };
    assert_eq!(cal.tz_name(), "Europe/Paris");
    let days: Vec<Weekday> = cal.windows().iter().map(|w| w.day).collect();
    assert_eq!(
        days,
        [
            Weekday::Saturday,
            Weekday::Sunday,
            Weekday::Tuesday,
            Weekday::Wednesday
        ]
    );
    assert_eq!(cal.windows()[2].start_minute, 4 * 60 + 5);
    assert_eq!(cal.length_minutes(), 10080);
}

#[test]
fn fleet_lock_needs_url() {
    let d = Dirs::new();
    write(
        &d.etc,
        "50-s.toml",
        "[updates]\nstrategy = \"fleet_lock\"\n",
    );
    let e = d.load().unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.problems[0].key, "updates.strategy");
    assert!(e.problems[0].file.ends_with("etc/50-s.toml"));
    write(
        &d.usr,
        "40-url.toml",
        "[updates.fleet_lock]\nbase_url = \"http://lock.example.com:9090/fleet_lock/\"\n",
    );
    match d.load().unwrap().strategy {
        StrategyConfig::FleetLock { base_url } => {
            assert_eq!(base_url, "http://lock.example.com:9090/fleet_lock/")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_problem_is_reported_with_file_and_key() {
    let d = Dirs::new();
    write(
        &d.etc,
        "50-bad.toml",
        r#"
[identity]
group = "bad group"
rollout_wariness = 1.5
node_uuid = "xyz"
colour = "blue"

[updates]
enable = false
strategy = "marker_file"

[updates.periodic]
time_zone = "Mars/Olympus_Mons"

[[updates.periodic.window]]
days = [ "Tuesady", 3 ]
start_time = "24:00"
length_minutes = 0

[[updates.fleet_lock.window]]
days = [ "Mon" ]

[agent.timing]
steady_interval_secs = 0
retry_interval_secs = -1
"#,
    );
    write(&d.run, "10-broken.toml", "[updates\nenabled = true\n");
    let e = d.load().unwrap_err();
    let got: Vec<(String, String)> = e
        .problems
        .iter()
        .map(|p| {
            (
                p.file.file_name().unwrap().to_string_lossy().into_owned(),
                p.key.clone(),
            )
        })
        .collect();
    let want = [
        ("10-broken.toml", ""),
        ("50-bad.toml", "identity.colour"),
        ("50-bad.toml", "identity.group"),
        ("50-bad.toml", "identity.node_uuid"),
        ("50-bad.toml", "identity.rollout_wariness"),
        ("50-bad.toml", "updates.enable"),
        ("50-bad.toml", "updates.strategy"),
        ("50-bad.toml", "updates.fleet_lock.window"),
        ("50-bad.toml", "updates.periodic.time_zone"),
        ("50-bad.toml", "updates.periodic.window[0].days[0]"),
        ("50-bad.toml", "updates.periodic.window[0].days[1]"),
        ("50-bad.toml", "updates.periodic.window[0].start_time"),
        ("50-bad.toml", "updates.periodic.window[0].length_minutes"),
        ("50-bad.toml", "agent.timing.steady_interval_secs"),
        ("50-bad.toml", "agent.timing.retry_interval_secs"),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut want_sorted: Vec<(String, String)> = want
        .iter()
        .map(|(f, k)| (f.to_string(), k.to_string()))
        .collect();
    want_sorted.sort();
    assert_eq!(got_sorted, want_sorted, "{e}");
    let text = e.to_string();
    assert!(text.contains("\"Tuesady\" is not a day name"), "{text}");
    assert!(
        text.contains("unsupported strategy \"marker_file\""),
        "{text}"
    );
    assert!(
        text.contains("line 1"),
        "TOML errors carry the line: {text}"
    );
}

#[test]
fn wariness_and_uuid_forms() {
    let d = Dirs::new();
    write(
        &d.etc,
        "50-id.toml",
        "[identity]\nrollout_wariness = 0\nnode_uuid = \"3D1219C7-C4C5-404A-AA1F-6D2A48ADFDA4\"\n",
    );
    let c = d.load().unwrap();
    assert_eq!(c.rollout_wariness, Some(0.0));
    assert_eq!(
        c.node_uuid.as_deref(),
        Some("3d1219c7c4c5404aaa1f6d2a48adfda4")
    );
}

/// The node environment: Zincati's node id from the machine id (the value
/// `systemd-id128 machine-id -a de35106b6ec24688b63afddaa156679b` prints), the
/// platform from the kernel command line; a configured node_uuid wins.
#[test]
fn node_environment() {
    struct NoOs;
    impl agent::Os for NoOs {
        fn booted(&self) -> Result<agent::Booted, agent::OsError> {
            Err(agent::OsError("unused".into()))
        }
        fn deployments(&self) -> Result<Vec<agent::LocalDeployment>, agent::OsError> {
            Ok(vec![])
        }
        fn rolled_back(&self) -> Result<Vec<agent::OsRelease>, agent::OsError> {
            Ok(vec![])
        }
        fn stage(&self, _: &agent::OsRelease) -> Result<(), agent::OsError> {
            Err(agent::OsError("unused".into()))
        }
        fn finalize(&self, _: &agent::OsRelease) -> Result<(), agent::OsError> {
            Err(agent::OsError("unused".into()))
        }
    }
    let d = Dirs::new();
    let mid = d.etc.join("machine-id");
    let cmdline = d.etc.join("cmdline");
    std::fs::write(&mid, "3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
    std::fs::write(&cmdline, "BOOT_IMAGE=/x ignition.platform.id=metal rw\n").unwrap();
    let c = d.load().unwrap();
    let os = std::sync::Arc::new(NoOs);
    let env = agent::Env::for_node_at(&c, os.clone(), &mid, &cmdline).unwrap();
    assert_eq!(env.node_uuid, "975228d46dc94622b9bbe16671e2b58d");
    assert_eq!(env.platform.as_deref(), Some("metal"));
    write(
        &d.etc,
        "50-id.toml",
        "[identity]\nnode_uuid = \"0123456789abcdef0123456789ABCDEF\"\n",
    );
    let c = d.load().unwrap();
    let env = agent::Env::for_node_at(&c, os.clone(), Path::new("/nonexistent"), &cmdline).unwrap();
    assert_eq!(env.node_uuid, "0123456789abcdef0123456789abcdef");
    std::fs::write(&mid, "not-an-id\n").unwrap();
    let c = Config::load(std::slice::from_ref(&d.usr)).unwrap();
    let e = agent::Env::for_node_at(&c, os, &mid, &cmdline)
        .err()
        .unwrap();
    assert!(e.to_string().contains("machine-id"), "{e}");
}
