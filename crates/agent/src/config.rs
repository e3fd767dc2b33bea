//! Configuration: Zincati's TOML fragments, keys and precedence, with strict checking.
//!
//! Fragments are `*.toml` files in a list of directories, lowest precedence first
//! (default [`DEFAULT_DIRS`]: `/usr/lib`, then `/run`, then `/etc`, the order
//! Zincati scans them in coreos/zincati:src/config/mod.rs). A file name present in a
//! later directory replaces the earlier file entirely; a file symlinked to
//! `/dev/null` masks it. The surviving files are then applied in lexical order of
//! their *names*, later ones overriding earlier keys, so `99-x.toml` in `/run` beats
//! `50-y.toml` in `/etc`. Maintenance windows are appended across fragments.
//!
//! Unlike Zincati, an unknown key is an error rather than silently ignored (a
//! mistyped `updates.enable = false` must not lead to an unexpected reboot,
//! coreos/zincati#1160), and every problem of every file is reported at once, each
//! naming its file and dotted key.
//!
//! One key is a ferrocore extension: `agent.timing.retry_interval_secs`, the delay
//! Zincati hard-codes at 300 s for a staged update re-asking its strategy (window,
//! lock) and for retried staging or steady-state reports.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::tz::TimeZone;
use toml::{Table, Value};

use crate::weekly::{parse_day, parse_time, Calendar, Window, WEEK_MINUTES};

/// Default fragment directories, lowest precedence first.
pub const DEFAULT_DIRS: [&str; 3] = [
    "/usr/lib/ferrocore/agent.d",
    "/run/ferrocore/agent.d",
    "/etc/ferrocore/agent.d",
];

/// Default polling period (Zincati's shipped `10-agent.toml`).
pub const DEFAULT_STEADY_INTERVAL_SECS: u64 = 300;

/// Default delay before retrying a step that must wait for someone else
/// (Zincati's fixed `DEFAULT_REFRESH_PERIOD_SECS`).
pub const DEFAULT_RETRY_INTERVAL_SECS: u64 = 300;

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Fragment the problem is in (or the directory, for scan errors).
    pub file: PathBuf,
    /// Dotted key, e.g. `updates.periodic.window[0].days[1]`; empty for whole-file problems.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Every problem found while loading the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid agent configuration")?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// When a staged update may be finalized.
#[derive(Debug, Clone)]
pub enum StrategyConfig {
    /// As soon as it is staged.
    Immediate,
    /// Inside one of the weekly windows.
    Periodic(Calendar),
    /// Once a FleetLock server grants a reboot slot.
    FleetLock {
        /// Server base URL (may contain `${...}` variables).
        base_url: String,
    },
}

impl StrategyConfig {
    /// Zincati's name of the strategy.
    pub fn name(&self) -> &'static str {
        match self {
            StrategyConfig::Immediate => "immediate",
            StrategyConfig::Periodic(_) => "periodic",
            StrategyConfig::FleetLock { .. } => "fleet_lock",
        }
    }
}

/// The merged, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `identity.group` (default `default`).
    pub group: String,
    /// `identity.node_uuid`, if set (32 lowercase hex digits).
    pub node_uuid: Option<String>,
    /// `identity.rollout_wariness`, if set (0.0–1.0).
    pub rollout_wariness: Option<f64>,
    /// `cincinnati.base_url` (may contain `${...}` variables); `None` if unset.
    pub cincinnati_base_url: Option<String>,
    /// `updates.enabled` (default true).
    pub updates_enabled: bool,
    /// `updates.allow_downgrade` (default false).
    pub allow_downgrade: bool,
    /// `updates.strategy` with its settings.
    pub strategy: StrategyConfig,
    /// `agent.timing.steady_interval_secs`.
    pub steady_interval: Duration,
    /// `agent.timing.retry_interval_secs` (ferrocore extension): delay before a
    /// staged update asks its strategy again, and before staging or reporting
    /// steady state is retried. Zincati hard-codes 300 s.
    pub retry_interval: Duration,
    /// Fragments applied, in order.
    pub fragments: Vec<PathBuf>,
    /// Non-fatal findings, e.g. files ignored for not ending in `.toml`.
    pub warnings: Vec<String>,
}

/// Values read from one fragment, each with the key it came from.
#[derive(Default)]
struct Fragment {
    group: Option<String>,
    node_uuid: Option<String>,
    wariness: Option<f64>,
    cincinnati: Option<String>,
    enabled: Option<bool>,
    allow_downgrade: Option<bool>,
    strategy: Option<String>,
    fleet_lock_url: Option<String>,
    time_zone: Option<String>,
    windows: Vec<Window>,
    steady: Option<u64>,
    retry: Option<u64>,
}

struct Reader<'a> {
    file: &'a Path,
    problems: &'a mut Vec<Problem>,
}

impl Reader<'_> {
    fn bad(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// The sub-table at `key`, reporting any key of it not in `known`.
    fn table<'v>(&mut self, v: &'v Value, key: &str, known: &[&str]) -> Option<&'v Table> {
        let Some(t) = v.as_table() else {
            self.bad(key, format!("expected a table, found {}", v.type_str()));
            return None;
        };
        for k in t.keys() {
            if !known.contains(&k.as_str()) {
                self.bad(&join(key, k), "unknown key");
            }
        }
        Some(t)
    }

    fn string(&mut self, v: &Value, key: &str) -> Option<String> {
        match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.bad(key, format!("expected a string, found {}", v.type_str()));
                None
            }
        }
    }

    fn boolean(&mut self, v: &Value, key: &str) -> Option<bool> {
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.bad(
                    key,
                    format!("expected true or false, found {}", v.type_str()),
                );
                None
            }
        }
    }

    fn integer(&mut self, v: &Value, key: &str, min: i64, max: i64) -> Option<i64> {
        match v.as_integer() {
            Some(i) if (min..=max).contains(&i) => Some(i),
            Some(i) => {
                self.bad(key, format!("{i} is out of range {min}..={max}"));
                None
            }
            None => {
                self.bad(key, format!("expected an integer, found {}", v.type_str()));
                None
            }
        }
    }

    fn fragment(&mut self, root: &Table) -> Fragment {
        let mut f = Fragment::default();
        for (k, v) in root {
            match k.as_str() {
                "identity" => self.identity(v, &mut f),
                "cincinnati" => {
                    if let Some(t) = self.table(v, "cincinnati", &["base_url"]) {
                        if let Some(u) = t.get("base_url") {
                            f.cincinnati = self.url(u, "cincinnati.base_url");
                        }
                    }
                }
                "updates" => self.updates(v, &mut f),
                "agent" => {
                    if let Some(t) = self.table(v, "agent", &["timing"]) {
                        if let Some(timing) = t.get("timing") {
                            let key = "agent.timing";
                            let known = ["steady_interval_secs", "retry_interval_secs"];
                            if let Some(t) = self.table(timing, key, &known) {
                                if let Some(s) = t.get("steady_interval_secs") {
                                    let key = "agent.timing.steady_interval_secs";
                                    f.steady = self.integer(s, key, 1, i64::MAX).map(|i| i as u64);
                                }
                                if let Some(s) = t.get("retry_interval_secs") {
                                    let key = "agent.timing.retry_interval_secs";
                                    f.retry = self.integer(s, key, 1, i64::MAX).map(|i| i as u64);
                                }
                            }
                        }
                    }
                }
                other => self.bad(other, "unknown key"),
            }
        }
        f
    }

    fn url(&mut self, v: &Value, key: &str) -> Option<String> {
        let s = self.string(v, key)?;
        if s.trim().is_empty() {
            self.bad(key, "empty URL");
            return None;
        }
        // Variables are substituted later; check the rest parses as a URL.
        let probe = s
            .replace("${basearch}", "x")
            .replace("${group}", "x")
            .replace("${platform}", "x")
            .replace("${stream}", "x");
        match url::Url::parse(&probe) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(s),
            Ok(u) => {
                self.bad(key, format!("unsupported URL scheme {:?}", u.scheme()));
                None
            }
            Err(e) => {
                self.bad(key, format!("invalid URL {s:?}: {e}"));
                None
            }
        }
    }

    fn identity(&mut self, v: &Value, f: &mut Fragment) {
        let known = ["group", "node_uuid", "rollout_wariness"];
        let Some(t) = self.table(v, "identity", &known) else {
            return;
        };
        if let Some(g) = t.get("group") {
            if let Some(g) = self.string(g, "identity.group") {
                // Zincati: the last non-empty value wins.
                if !g.is_empty() {
                    if valid_group(&g) {
                        f.group = Some(g);
                    } else {
                        self.bad(
                            "identity.group",
                            format!("{g:?} does not match ^[a-zA-Z0-9.-]+$"),
                        );
                    }
                }
            }
        }
        if let Some(u) = t.get("node_uuid") {
            if let Some(u) = self.string(u, "identity.node_uuid") {
                if !u.is_empty() {
                    match normalize_uuid(&u) {
                        Some(n) => f.node_uuid = Some(n),
                        None => self.bad(
                            "identity.node_uuid",
                            format!("{u:?} is not a 128-bit id (32 hex digits, dashes allowed)"),
                        ),
                    }
                }
            }
        }
        if let Some(w) = t.get("rollout_wariness") {
            let key = "identity.rollout_wariness";
            let n = match w {
                Value::Float(x) => Some(*x),
                Value::Integer(i) => Some(*i as f64),
                other => {
                    self.bad(
                        key,
                        format!("expected a number, found {}", other.type_str()),
                    );
                    None
                }
            };
            if let Some(x) = n {
                if (0.0..=1.0).contains(&x) {
                    f.wariness = Some(x);
                } else {
                    self.bad(key, format!("{x} is outside 0.0..=1.0"));
                }
            }
        }
    }

    fn updates(&mut self, v: &Value, f: &mut Fragment) {
        let known = [
            "enabled",
            "allow_downgrade",
            "strategy",
            "fleet_lock",
            "periodic",
        ];
        let Some(t) = self.table(v, "updates", &known) else {
            return;
        };
        if let Some(b) = t.get("enabled") {
            f.enabled = self.boolean(b, "updates.enabled");
        }
        if let Some(b) = t.get("allow_downgrade") {
            f.allow_downgrade = self.boolean(b, "updates.allow_downgrade");
        }
        if let Some(s) = t.get("strategy") {
            if let Some(s) = self.string(s, "updates.strategy") {
                match s.as_str() {
                    // Zincati treats an empty strategy as the default.
                    "" | "immediate" | "periodic" | "fleet_lock" => f.strategy = Some(s),
                    other => self.bad(
                        "updates.strategy",
                        format!(
                            "unsupported strategy {other:?} (immediate, periodic or fleet_lock)"
                        ),
                    ),
                }
            }
        }
        if let Some(fl) = t.get("fleet_lock") {
            if let Some(t) = self.table(fl, "updates.fleet_lock", &["base_url"]) {
                if let Some(u) = t.get("base_url") {
                    f.fleet_lock_url = self.url(u, "updates.fleet_lock.base_url");
                }
            }
        }
        if let Some(p) = t.get("periodic") {
            self.periodic(p, f);
        }
    }

    fn periodic(&mut self, v: &Value, f: &mut Fragment) {
        let Some(t) = self.table(v, "updates.periodic", &["time_zone", "window"]) else {
            return;
        };
        if let Some(z) = t.get("time_zone") {
            if let Some(z) = self.string(z, "updates.periodic.time_zone") {
                match resolve_time_zone(&z) {
                    Ok(_) => f.time_zone = Some(z),
                    Err(e) => self.bad("updates.periodic.time_zone", e),
                }
            }
        }
        let Some(ws) = t.get("window") else {
            return;
        };
        let Some(ws) = ws.as_array() else {
            let found = ws.type_str();
            self.bad(
                "updates.periodic.window",
                format!("expected an array of tables ([[updates.periodic.window]]), found {found}"),
            );
            return;
        };
        for (i, w) in ws.iter().enumerate() {
            let key = format!("updates.periodic.window[{i}]");
            let Some(t) = self.table(w, &key, &["days", "start_time", "length_minutes"]) else {
                continue;
            };
            let mut days = Vec::new();
            match t.get("days").map(|d| (d, d.as_array())) {
                None => self.bad(&key, "missing key \"days\""),
                Some((d, None)) => self.bad(
                    &format!("{key}.days"),
                    format!("expected an array of day names, found {}", d.type_str()),
                ),
                Some((_, Some(list))) => {
                    if list.is_empty() {
                        self.bad(&format!("{key}.days"), "no days given");
                    }
                    for (j, d) in list.iter().enumerate() {
                        let dkey = format!("{key}.days[{j}]");
                        if let Some(s) = self.string(d, &dkey) {
                            match parse_day(&s) {
                                Some(day) => days.push(day),
                                None => self.bad(
                                    &dkey,
                                    format!("{s:?} is not a day name (e.g. \"Mon\" or \"Monday\")"),
                                ),
                            }
                        }
                    }
                }
            }
            let start = match t.get("start_time") {
                None => {
                    self.bad(&key, "missing key \"start_time\"");
                    None
                }
                Some(s) => {
                    let skey = format!("{key}.start_time");
                    self.string(s, &skey).and_then(|s| {
                        let m = parse_time(&s);
                        if m.is_none() {
                            self.bad(&skey, format!("{s:?} is not a 24-hour time H:MM"));
                        }
                        m
                    })
                }
            };
            let length = match t.get("length_minutes") {
                None => {
                    self.bad(&key, "missing key \"length_minutes\"");
                    None
                }
                Some(l) => self
                    .integer(
                        l,
                        &format!("{key}.length_minutes"),
                        1,
                        i64::from(WEEK_MINUTES),
                    )
                    .map(|l| l as u32),
            };
            if let (Some(start), Some(length)) = (start, length) {
                for day in days {
                    f.windows.push(Window {
                        day,
                        start_minute: start,
                        length_minutes: length,
                    });
                }
            }
        }
    }
}

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

/// Whether `g` is a valid update group (`^[a-zA-Z0-9.-]+$`, Zincati and FleetLock).
pub fn valid_group(g: &str) -> bool {
    !g.is_empty()
        && g.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// 32 lowercase hex digits from an sd-id128 string (dashes allowed), as Zincati sends it.
pub fn normalize_uuid(s: &str) -> Option<String> {
    let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
    (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// Resolves `UTC`, `localtime` (the system zone) or an IANA name from the system
/// tzdb (`/usr/share/zoneinfo`, Debian package `tzdata`).
pub fn resolve_time_zone(name: &str) -> Result<TimeZone, String> {
    match name {
        "UTC" => Ok(TimeZone::UTC),
        "localtime" => {
            TimeZone::try_system().map_err(|e| format!("cannot determine the local time zone: {e}"))
        }
        _ => jiff::tz::db()
            .get(name)
            .map_err(|e| format!("unknown time zone {name:?}: {e}")),
    }
}

/// Lists the fragments that survive masking, in application order.
fn scan(dirs: &[PathBuf], problems: &mut Vec<Problem>, warnings: &mut Vec<String>) -> Vec<PathBuf> {
    // Keyed by file name: a later directory replaces an earlier entry.
    let mut by_name: BTreeMap<String, Option<PathBuf>> = BTreeMap::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                problems.push(Problem {
                    file: dir.clone(),
                    key: String::new(),
                    message: format!("cannot read directory: {e}"),
                });
                continue;
            }
        };
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for e in entries {
            match e {
                Ok(e) => names.push((e.file_name().to_string_lossy().into_owned(), e.path())),
                Err(e) => problems.push(Problem {
                    file: dir.clone(),
                    key: String::new(),
                    message: format!("cannot read directory: {e}"),
                }),
            }
        }
        names.sort();
        for (name, path) in names {
            if !name.ends_with(".toml") {
                warnings.push(format!(
                    "{}: ignored, only *.toml files are configuration fragments",
                    path.display()
                ));
                continue;
            }
            let masked = std::fs::read_link(&path).is_ok_and(|t| t == Path::new("/dev/null"));
            by_name.insert(name, (!masked).then_some(path));
        }
    }
    by_name.into_values().flatten().collect()
}

impl Config {
    /// Loads the fragments of `dirs` (lowest precedence first); see the module docs.
    pub fn load(dirs: &[PathBuf]) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let files = scan(dirs, &mut problems, &mut warnings);
        let mut frags = Vec::new();
        for file in &files {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(Problem {
                        file: file.clone(),
                        key: String::new(),
                        message: format!("cannot read: {e}"),
                    });
                    continue;
                }
            };
            let table: Table = match text.parse() {
                Ok(t) => t,
                Err(e) => {
                    problems.push(Problem {
                        file: file.clone(),
                        key: String::new(),
                        message: format!("invalid TOML: {}", e.to_string().trim_end()),
                    });
                    continue;
                }
            };
            let mut r = Reader {
                file,
                problems: &mut problems,
            };
            frags.push((file.clone(), r.fragment(&table)));
        }
        Self::merge(frags, files, warnings, problems)
    }

    /// Loads from the default directories.
    pub fn load_default() -> Result<Config, ConfigError> {
        let dirs: Vec<PathBuf> = DEFAULT_DIRS.iter().map(PathBuf::from).collect();
        Self::load(&dirs)
    }

    fn merge(
        frags: Vec<(PathBuf, Fragment)>,
        files: Vec<PathBuf>,
        warnings: Vec<String>,
        mut problems: Vec<Problem>,
    ) -> Result<Config, ConfigError> {
        let mut group = None;
        let mut node_uuid = None;
        let mut wariness = None;
        let mut cincinnati = None;
        let mut enabled = None;
        let mut allow_downgrade = None;
        let mut strategy: Option<(PathBuf, String)> = None;
        let mut fleet_lock_url = None;
        let mut time_zone: Option<(PathBuf, String)> = None;
        let mut windows = Vec::new();
        let mut steady = None;
        let mut retry = None;
        for (file, f) in frags {
            group = f.group.or(group);
            node_uuid = f.node_uuid.or(node_uuid);
            wariness = f.wariness.or(wariness);
            cincinnati = f.cincinnati.or(cincinnati);
            enabled = f.enabled.or(enabled);
            allow_downgrade = f.allow_downgrade.or(allow_downgrade);
            strategy = f.strategy.map(|s| (file.clone(), s)).or(strategy);
            fleet_lock_url = f.fleet_lock_url.or(fleet_lock_url);
            time_zone = f.time_zone.map(|z| (file.clone(), z)).or(time_zone);
            windows.extend(f.windows);
            steady = f.steady.or(steady);
            retry = f.retry.or(retry);
        }
        let (strategy_file, strategy_name) =
            strategy.unwrap_or_else(|| (PathBuf::new(), String::new()));
        let strategy = match strategy_name.as_str() {
            "periodic" => {
                let (tz_name, tz) = match &time_zone {
                    Some((_, z)) => (z.clone(), resolve_time_zone(z).unwrap_or(TimeZone::UTC)),
                    None => ("UTC".to_string(), TimeZone::UTC),
                };
                let cal = Calendar::new(windows, tz, tz_name);
                if cal.length_minutes() == 0 {
                    problems.push(Problem {
                        file: strategy_file,
                        key: "updates.strategy".into(),
                        message: "\"periodic\" needs at least one [[updates.periodic.window]]"
                            .into(),
                    });
                }
                StrategyConfig::Periodic(cal)
            }
            "fleet_lock" => match fleet_lock_url {
                Some(base_url) => StrategyConfig::FleetLock { base_url },
                None => {
                    problems.push(Problem {
                        file: strategy_file,
                        key: "updates.strategy".into(),
                        message: "\"fleet_lock\" needs updates.fleet_lock.base_url".into(),
                    });
                    StrategyConfig::Immediate
                }
            },
            _ => StrategyConfig::Immediate,
        };
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Config {
            group: group.unwrap_or_else(|| "default".into()),
            node_uuid,
            rollout_wariness: wariness,
            cincinnati_base_url: cincinnati,
            updates_enabled: enabled.unwrap_or(true),
            allow_downgrade: allow_downgrade.unwrap_or(false),
            strategy,
            steady_interval: Duration::from_secs(steady.unwrap_or(DEFAULT_STEADY_INTERVAL_SECS)),
            retry_interval: Duration::from_secs(retry.unwrap_or(DEFAULT_RETRY_INTERVAL_SECS)),
            fragments: files,
            warnings,
        })
    }
}
