//! Stage driver (IG:internal/exec/engine.go): acquire the config (fetch stages)
//! or read the cache (later stages), merge the system base configs, run the stage,
//! and keep the state file between stages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ignition_config::types::{Config, Proxy, Resource, Timeouts};
use ignition_config::SpecVersion;

use crate::error::{io_msg, path_err, Error, Result};
use crate::files;
use crate::resource::{Fetcher, NEED_NET};
use crate::state::{FetchedConfig, State};

/// Nesting allowed for `ignition.config.merge/replace` chains (upstream has no
/// limit; a cycle there recurses until the fetch timeout).
pub const MAX_RENDER_DEPTH: usize = 10;

/// The stages `ferrocore ignition run --stage` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Fetch with `data:` sources only; signals `neednet` otherwise.
    FetchOffline,
    /// Fetch, render, validate and cache the config.
    Fetch,
    /// Kernel arguments, through the distro's `ignition-kargs-helper`.
    Kargs,
    /// Partitions, RAID arrays, LUKS volumes, filesystems.
    Disks,
    /// Mount filesystems that have a `path` under the root.
    Mount,
    /// Unmount them again.
    Umount,
    /// Users, groups, files, directories, links, units, result file.
    Files,
}

impl Stage {
    /// Upstream's stage name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::FetchOffline => "fetch-offline",
            Stage::Fetch => "fetch",
            Stage::Kargs => "kargs",
            Stage::Disks => "disks",
            Stage::Mount => "mount",
            Stage::Umount => "umount",
            Stage::Files => "files",
        }
    }
}

impl std::str::FromStr for Stage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Stage> {
        Ok(match s {
            "fetch-offline" => Stage::FetchOffline,
            "fetch" => Stage::Fetch,
            "files" => Stage::Files,
            "kargs" => Stage::Kargs,
            "mount" => Stage::Mount,
            "umount" => Stage::Umount,
            "disks" => Stage::Disks,
            _ => return Err(Error::new(format!("invalid stage {s:?}"))),
        })
    }
}

/// Everything a run needs; defaults are upstream's initramfs paths.
#[derive(Debug, Clone)]
pub struct Options {
    /// Platform id (`file` and `qemu` supported).
    pub platform: String,
    /// Target root (what the initramfs calls `/sysroot`); must be absolute.
    pub root: PathBuf,
    /// Platform `file`: the config (default `$IGNITION_CONFIG_FILE`, else
    /// `config.ign`).
    pub config_file: Option<PathBuf>,
    /// System config dir holding `base.d`, `base.platform.d/<platform>`, `user.ign`.
    pub system_config_dir: PathBuf,
    /// Rendered config cached between stages (JSON, 0640).
    pub config_cache: PathBuf,
    /// State shared between stages (JSON, 0600).
    pub state_file: PathBuf,
    /// Flag file written by `fetch-offline` when the config needs the network.
    pub neednet: PathBuf,
    /// Kernel command line (`ignition.config.url=` there beats everything).
    pub kernel_cmdline: PathBuf,
    /// Fetch deadline for the provider config (`-fetch-timeout`, default 2 min).
    pub fetch_timeout: Duration,
    /// How long the disks stage waits for each device node to appear
    /// (upstream waits on systemd's device units: 90 s by default).
    pub device_timeout: Duration,
    /// Run every external tool — shadow-utils, `systemctl`, and the disk
    /// and mount tools — inside the root, as `chroot ROOT useradd ...`,
    /// instead of the host's (shadow-utils and systemctl then get no
    /// `--root`): ferrocore's initramfs has no tools of its own.
    pub tools_in_root: bool,
}

impl Options {
    /// Upstream's defaults for `platform` and `root`; `config_file` and the
    /// system config dir come from `IGNITION_CONFIG_FILE` and
    /// `IGNITION_SYSTEM_CONFIG_DIR` when set.
    pub fn new(platform: &str, root: impl Into<PathBuf>) -> Options {
        Options {
            platform: platform.to_string(),
            root: root.into(),
            config_file: std::env::var_os("IGNITION_CONFIG_FILE").map(PathBuf::from),
            system_config_dir: std::env::var_os("IGNITION_SYSTEM_CONFIG_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/lib/ignition")),
            config_cache: PathBuf::from("/run/ignition.json"),
            state_file: PathBuf::from("/run/ignition/state"),
            neednet: PathBuf::from("/run/ignition/neednet"),
            kernel_cmdline: PathBuf::from("/proc/cmdline"),
            fetch_timeout: Duration::from_secs(120),
            device_timeout: Duration::from_secs(90),
            tools_in_root: false,
        }
    }
}

/// What a successful stage did (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The stage ran to completion.
    Done,
    /// `fetch-offline` found a source needing the network and wrote the
    /// neednet flag; `fetch` must run later.
    NeedNet,
}

/// Runs one stage. On failure the error is also recorded in the state file
/// (`failure`), so a later look at the machine shows why provisioning stopped.
pub fn run_stage(opts: &Options, stage: Stage) -> Result<Outcome> {
    let _tools = crate::tools::in_root(opts.tools_in_root.then_some(opts.root.as_path()));
    let res = run_inner(opts, stage);
    if let Err(e) = &res {
        let mut st = State::load(&opts.state_file).unwrap_or_default();
        st.failure = Some(crate::state::Failure {
            stage: stage.name().to_string(),
            path: e.path.clone(),
            message: e.message.clone(),
        });
        // The stage error is what matters; a state write failure is secondary.
        let _ = st.save(&opts.state_file);
    }
    res
}

fn run_inner(opts: &Options, stage: Stage) -> Result<Outcome> {
    if !opts.root.is_absolute() {
        return Err(Error::new(format!(
            "root {} must be an absolute path",
            opts.root.display()
        )));
    }
    let mut state = State::load(&opts.state_file)?;
    let (base, found_base) = system_base_config(opts)?;
    let mut fetcher = Fetcher::new();
    match stage {
        Stage::Fetch | Stage::FetchOffline => {
            state.fetched_configs.clear();
            state.failure = None;
            if found_base {
                state
                    .fetched_configs
                    .push(FetchedConfig::new("base", "system", false));
            }
            fetcher.set_offline(stage == Stage::FetchOffline);
            match acquire_provider_config(opts, &mut fetcher, &mut state) {
                Err(e) if stage == Stage::FetchOffline && e.message.contains(NEED_NET) => {
                    write_flag(&opts.neednet)?;
                    state.save(&opts.state_file)?;
                    Ok(Outcome::NeedNet)
                }
                Err(e) => Err(e),
                Ok(cfg) => {
                    write_cache(&opts.config_cache, &cfg)?;
                    state.save(&opts.state_file)?;
                    Ok(Outcome::Done)
                }
            }
        }
        Stage::Kargs => {
            let cfg = read_cache(&opts.config_cache)?;
            let full = ignition_config::merge(&base, &cfg);
            kargs(&full.kernel_arguments)?;
            Ok(Outcome::Done)
        }
        Stage::Disks => {
            let cfg = read_cache(&opts.config_cache)?;
            update_fetcher(&mut fetcher, &cfg, "$")?;
            let full = ignition_config::merge(&base, &cfg);
            let res = crate::disks::run(&full, &mut state, &mut fetcher, opts.device_timeout);
            // LUKS keys recorded before a later failure still belong in the state.
            state.save(&opts.state_file)?;
            res.map(|_| Outcome::Done)
        }
        Stage::Mount => {
            let cfg = read_cache(&opts.config_cache)?;
            let full = ignition_config::merge(&base, &cfg);
            let res = crate::mount::mount(&opts.root, &full);
            // Record what was created even when a later mount failed.
            let created = match &res {
                Ok(c) => c.clone(),
                Err(_) => Vec::new(),
            };
            if !created.is_empty() {
                state
                    .notated_directories
                    .get_or_insert_with(Vec::new)
                    .extend(created);
                state.save(&opts.state_file)?;
            }
            res.map(|_| Outcome::Done)
        }
        Stage::Umount => {
            let cfg = read_cache(&opts.config_cache)?;
            crate::mount::umount(&opts.root, &ignition_config::merge(&base, &cfg))?;
            Ok(Outcome::Done)
        }
        Stage::Files => {
            let cfg = read_cache(&opts.config_cache)?;
            update_fetcher(&mut fetcher, &cfg, "$")?;
            let full = ignition_config::merge(
                &Config::with_version(SpecVersion::LATEST),
                &ignition_config::merge(&base, &cfg),
            );
            let info = files::RunInfo {
                notated_directories: state.notated_directories.clone().unwrap_or_default(),
                user_config_provided: state.fetched_configs.iter().any(|c| c.kind == "user"),
                boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default(),
                date: rfc3339_now(),
            };
            files::run(&opts.root, &full, &mut fetcher, &info)?;
            crate::disks::write_crypttab(&opts.root, &full, &state)?;
            state.failure = None;
            state.save(&opts.state_file)?;
            Ok(Outcome::Done)
        }
    }
}

/// What the disks, mount and umount stages of the fetched config need from
/// the machine, for an initramfs that prepares only what is used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceNeeds {
    /// Kernel modules for the configured RAID levels, LUKS and filesystem
    /// formats (module names as `modprobe` takes them), sorted, unique.
    pub kernel_modules: Vec<String>,
}

/// Reads the config cached by `fetch` (merged with the system base configs)
/// and says what its device stages need; `None` when it configures no disk,
/// array, LUKS volume or filesystem, so those stages have nothing to do.
pub fn device_needs(opts: &Options) -> Result<Option<DeviceNeeds>> {
    let cfg = read_cache(&opts.config_cache)?;
    let (base, _) = system_base_config(opts)?;
    let s = ignition_config::merge(&base, &cfg).storage;
    if s.disks.is_empty() && s.raid.is_empty() && s.luks.is_empty() && s.filesystems.is_empty() {
        return Ok(None);
    }
    let mut m: Vec<String> = Vec::new();
    for r in &s.raid {
        m.push("md_mod".into());
        // The kernel's personality modules (`md-<level>` aliases).
        m.push(match r.level.as_deref().unwrap_or_default() {
            "raid4" | "raid5" | "raid6" => "raid456".into(),
            "linear" => "linear".into(),
            l => l.to_string(),
        });
    }
    if !s.luks.is_empty() {
        m.extend(["dm_mod".into(), "dm_crypt".into()]);
    }
    for fs in &s.filesystems {
        if let Some(f @ ("ext4" | "xfs" | "vfat" | "btrfs")) = fs.format.as_deref() {
            m.push(f.to_string());
        }
    }
    m.retain(|x| !x.is_empty());
    m.sort();
    m.dedup();
    Ok(Some(DeviceNeeds { kernel_modules: m }))
}

/// Upstream's kargs stage: hands the wanted arguments to the distro's
/// `ignition-kargs-helper` (on PATH), which edits the bootloader config and
/// reboots if needed. Nothing to do without kernelArguments.
fn kargs(k: &ignition_config::types::KernelArguments) -> Result<()> {
    if k.should_exist.is_empty() && k.should_not_exist.is_empty() {
        return Ok(());
    }
    let mut args: Vec<&str> = Vec::new();
    for a in &k.should_exist {
        args.extend(["--should-exist", a]);
    }
    for a in &k.should_not_exist {
        args.extend(["--should-not-exist", a]);
    }
    let out = std::process::Command::new("ignition-kargs-helper")
        .args(&args)
        .output()
        .map_err(|e| {
            Error::at(
                "$.kernelArguments",
                format!("running ignition-kargs-helper: {}", io_msg(&e)),
            )
        })?;
    if !out.status.success() {
        return Err(Error::at(
            "$.kernelArguments",
            format!(
                "ignition-kargs-helper {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// Merges `base.d/*` then `base.platform.d/<platform>/*` (file-name order).
/// Returns whether any base config exists.
fn system_base_config(opts: &Options) -> Result<(Config, bool)> {
    let mut cfg = Config::with_version(SpecVersion::LATEST);
    let mut found = false;
    let dirs = [
        opts.system_config_dir.join("base.d"),
        opts.system_config_dir
            .join("base.platform.d")
            .join(&opts.platform),
    ];
    for dir in dirs {
        let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(path_err("open", &dir, &e)),
        };
        names.sort();
        for p in names {
            let raw = std::fs::read(&p).map_err(|e| path_err("open", &p, &e))?;
            let (c, _) = parse(&raw).map_err(|e| {
                e.context(format!(
                    "failed to acquire system base config {}",
                    p.display()
                ))
            })?;
            cfg = ignition_config::merge(&cfg, &c);
            found = true;
        }
    }
    Ok((cfg, found))
}

/// `config.Parse` with the report folded into the error (first error's path).
fn parse(raw: &[u8]) -> Result<(Config, ignition_config::report::Report)> {
    ignition_config::parse(raw).map_err(|e| match e.report() {
        Some(r) => {
            let first = r
                .entries
                .iter()
                .find(|x| x.kind == ignition_config::report::Kind::Error);
            let text = r.to_string();
            Error {
                path: first.map(|x| x.path.to_string()),
                message: format!("{e}: {}", text.trim()),
            }
        }
        None => Error::new(e.to_string()),
    })
}

/// The user config: `ignition.config.url=` on the kernel command line, else
/// `user.ign` in the system config dir, else the platform's.
fn acquire_provider_config(
    opts: &Options,
    fetcher: &mut Fetcher,
    state: &mut State,
) -> Result<Config> {
    let secs = opts.fetch_timeout.as_secs() as i64;
    update_fetcher_with(
        fetcher,
        &Timeouts {
            http_total: Some(secs),
            ..Default::default()
        },
        &[],
        &Proxy::default(),
        "$",
    )?;
    let (raw, provider) = provider_config(opts, fetcher)?;
    if raw.is_empty() {
        // Upstream: an empty provider config is not an error.
        return Ok(Config::with_version(SpecVersion::LATEST));
    }
    let (cfg, _report) = parse(&raw)?;
    state
        .fetched_configs
        .push(FetchedConfig::new("user", &provider, false));
    update_fetcher(fetcher, &cfg, "$")?;
    let mut chain = Vec::new();
    let cfg = render(cfg, fetcher, state, &mut chain)?;
    update_fetcher(fetcher, &cfg, "$")?;
    let rpt = ignition_config::validate(&cfg, SpecVersion::LATEST);
    if rpt.is_fatal() {
        let first = rpt
            .entries
            .iter()
            .find(|x| x.kind == ignition_config::report::Kind::Error);
        return Err(Error {
            path: first.map(|x| x.path.to_string()),
            message: format!(
                "merging configs resulted in an invalid config: {}",
                rpt.to_string().trim()
            ),
        });
    }
    Ok(cfg)
}

fn provider_config(opts: &Options, fetcher: &mut Fetcher) -> Result<(Vec<u8>, String)> {
    if let Some(url) = cmdline_config_url(&opts.kernel_cmdline) {
        let r = Resource {
            source: Some(url.clone()),
            ..Default::default()
        };
        let raw = fetcher.fetch(&r).map_err(|e| {
            Error::new(format!(
                "fetching config from ignition.config.url {url}: {e}"
            ))
        })?;
        return Ok((raw, "cmdline".into()));
    }
    let user = opts.system_config_dir.join("user.ign");
    match std::fs::read(&user) {
        Ok(raw) => return Ok((raw, "system".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(path_err("open", &user, &e)),
    }
    match opts.platform.as_str() {
        "file" => {
            let p = opts
                .config_file
                .clone()
                .unwrap_or_else(|| PathBuf::from("config.ign"));
            let raw = std::fs::read(&p).map_err(|e| path_err("open", &p, &e))?;
            Ok((raw, "file".into()))
        }
        "qemu" => {
            let p = Path::new("/sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw");
            match std::fs::read(p) {
                Ok(raw) => Ok((raw, "qemu".into())),
                // No fw_cfg entry: no config, which upstream treats as empty.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Ok((Vec::new(), "qemu".into()))
                }
                Err(e) => Err(path_err("open", p, &e)),
            }
        }
        other => Err(Error::new(format!(
            "platform {other:?} is not supported by ferrocore (file and qemu are)"
        ))),
    }
}

/// `ignition.config.url=...` from the kernel command line (last one wins).
fn cmdline_config_url(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix("ignition.config.url="))
        .filter(|u| !u.is_empty())
        .map(String::from)
}

fn update_fetcher(fetcher: &mut Fetcher, cfg: &Config, at: &str) -> Result<()> {
    let ig = &cfg.ignition;
    update_fetcher_with(
        fetcher,
        &ig.timeouts,
        &ig.security.tls.certificate_authorities,
        &ig.proxy,
        at,
    )
}

fn update_fetcher_with(
    fetcher: &mut Fetcher,
    t: &Timeouts,
    cas: &[Resource],
    proxy: &Proxy,
    at: &str,
) -> Result<()> {
    fetcher.update(t, cas, proxy).map_err(|(i, e)| {
        Error::at(
            format!(
                "{at}.ignition.security.tls.certificateAuthorities.{i}.{}",
                e.field
            ),
            e.message,
        )
    })
}

/// Upstream `renderConfig`: replace wins; else merge each child in order, each
/// rendered recursively. `chain` holds the sources being rendered, to stop cycles.
fn render(
    cfg: Config,
    fetcher: &mut Fetcher,
    state: &mut State,
    chain: &mut Vec<String>,
) -> Result<Config> {
    if chain.len() > MAX_RENDER_DEPTH {
        return Err(Error::at(
            "$.ignition.config",
            format!("config references nested deeper than {MAX_RENDER_DEPTH} levels"),
        ));
    }
    if cfg.ignition.config.replace.source.is_some() {
        let r = cfg.ignition.config.replace.clone();
        let child = fetch_referenced(&r, "$.ignition.config.replace", fetcher, state, chain)?;
        update_fetcher(fetcher, &child, "$")?;
        chain.push(r.key().to_string());
        let out = render(child, fetcher, state, chain);
        chain.pop();
        return out;
    }
    let mut merged = cfg.clone();
    for (i, r) in cfg.ignition.config.merge.iter().enumerate() {
        let at = format!("$.ignition.config.merge.{i}");
        let child = fetch_referenced(r, &at, fetcher, state, chain)?;
        update_fetcher(fetcher, &ignition_config::merge(&merged, &child), "$")?;
        chain.push(r.key().to_string());
        let child = render(child, fetcher, state, chain);
        chain.pop();
        merged = ignition_config::merge(&merged, &child?);
    }
    Ok(merged)
}

fn fetch_referenced(
    r: &Resource,
    at: &str,
    fetcher: &mut Fetcher,
    state: &mut State,
    chain: &[String],
) -> Result<Config> {
    let src = r.key();
    if src.is_empty() {
        return Err(Error::at(format!("{at}.source"), "source is required"));
    }
    if chain.iter().any(|s| s == src) {
        return Err(Error::at(
            format!("{at}.source"),
            format!("config reference cycle: {src} is already being rendered"),
        ));
    }
    let nested = |e: Error| match chain.last() {
        Some(parent) => e.context(format!("in config referenced as {parent}")),
        None => e,
    };
    let raw = crate::files::fetch(fetcher, r, at).map_err(nested)?;
    let url_path = if src.starts_with("data:") {
        String::new()
    } else {
        reqwest::Url::parse(src)
            .map(|u| u.path().to_string())
            .unwrap_or_default()
    };
    state
        .fetched_configs
        .push(FetchedConfig::new("user", &url_path, true));
    let (cfg, _) = parse(&raw).map_err(|e| {
        let inner = e.path.clone().unwrap_or_else(|| "$".into());
        nested(Error::at(
            format!("{at}.source"),
            format!("referenced config {inner}: {}", e.message),
        ))
    })?;
    Ok(cfg)
}

fn write_flag(p: &Path) -> Result<()> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| path_err("mkdir", d, &e))?;
    }
    std::fs::write(p, b"").map_err(|e| path_err("create", p, &e))
}

/// Writes the cache atomically with mode 0640 (upstream `renameio.WriteFile`).
fn write_cache(p: &Path, cfg: &Config) -> Result<()> {
    crate::state::write_atomic(p, ignition_config::to_json(cfg).as_bytes(), 0o640)
}

fn read_cache(p: &Path) -> Result<Config> {
    let raw = std::fs::read(p).map_err(|e| path_err("open", p, &e))?;
    serde_json::from_slice(&raw).map_err(|e| {
        Error::new(format!(
            "failed to parse cached config {}: {}",
            p.display(),
            io_msg(&std::io::Error::other(e))
        ))
    })
}

/// Now as RFC 3339 UTC (`2006-01-02T15:04:05Z`).
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339(secs)
}

/// Formats Unix seconds as RFC 3339 UTC.
pub(crate) fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| format!("@{secs}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_680_565), "2026-11-26T08:09:25Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn stages_parse() {
        assert_eq!("files".parse::<Stage>().unwrap(), Stage::Files);
        assert_eq!("disks".parse::<Stage>().unwrap(), Stage::Disks);
        assert!("bogus".parse::<Stage>().is_err());
    }

    fn needs_of(cfg: &str) -> Option<DeviceNeeds> {
        let t = tempfile::tempdir().unwrap();
        let mut opts = Options::new("file", t.path().join("root"));
        opts.config_file = Some(t.path().join("config.ign"));
        opts.config_cache = t.path().join("ignition.json");
        opts.state_file = t.path().join("state");
        opts.system_config_dir = t.path().join("sys");
        opts.kernel_cmdline = t.path().join("cmdline");
        std::fs::write(&opts.kernel_cmdline, "").unwrap();
        std::fs::write(opts.config_file.as_ref().unwrap(), cfg).unwrap();
        run_stage(&opts, Stage::Fetch).unwrap();
        device_needs(&opts).unwrap()
    }

    #[test]
    fn device_needs_follow_the_config() {
        let files_only =
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/x"}]}}"#;
        assert_eq!(needs_of(files_only), None);
        let disks = r#"{"ignition":{"version":"3.3.0"},"storage":{
            "disks":[{"device":"/dev/vdb","partitions":[{"label":"a"},{"label":"b"}]}],
            "raid":[{"name":"data","level":"raid1","devices":["/dev/vdb1","/dev/vdc1"]},
                    {"name":"big","level":"raid5","devices":["/dev/vdb2","/dev/vdc2","/dev/vdd2"]}],
            "luks":[{"name":"secret","device":"/dev/md/data"}],
            "filesystems":[{"device":"/dev/mapper/secret","format":"xfs","path":"/var/x"},
                           {"device":"/dev/md/big","format":"ext4"},
                           {"device":"/dev/vdb3","format":"swap"}]}}"#;
        let want = [
            "dm_crypt", "dm_mod", "ext4", "md_mod", "raid1", "raid456", "xfs",
        ];
        assert_eq!(needs_of(disks).unwrap().kernel_modules, want);
    }
}
