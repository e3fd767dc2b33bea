//! The update state machine (Zincati's, coreos/zincati:src/update_agent).
//!
//! ```text
//! Start ─▶ Initialized ─▶ ReportedSteady ─▶ NoNewUpdate ⟲ (poll)
//!                               │               │
//!                               ▼               ▼
//!                     UpdateAvailable(r, n) ─▶ UpdateStaged(r) ─▶ UpdateFinalized(r) ─▶ End
//! ```
//!
//! One [`Agent::tick`] performs one step and returns the delay until the next one,
//! with Zincati's timers and jitter: a change of state ticks again at once (except
//! ReportedSteady → NoNewUpdate, which waits a polling period). Time comes from an
//! injectable [`Clock`], the OS from an [`Os`], and the reboot is an injected
//! [`Reboot`] action, so tests drive the machine step by step.
//!
//! In UpdateStaged, once the strategy allows it, logged-in terminal users get
//! Zincati's grace period ([`MAX_FINALIZE_POSTPONEMENTS`] × [`POSTPONEMENT_SECS`])
//! before the reboot. Before finalizing, the agent durably records the attempt
//! (from, to); the next start compares it with the booted release and the boot
//! counter's record to conclude success or rollback, or, if the agent died
//! between finalizing and starting the reboot, reboots first.
//!
//! Beyond Zincati: the deny-list survives restarts, releases the boot counter rolled
//! back from are denied, staging that fails [`MAX_DEPLOY_ATTEMPTS`] times denies the
//! release, and every outcome (success, rolled-back, failed-to-deploy) is reported to
//! the update server (`POST /v1/report`), retried until the server accepts or
//! refuses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::cincinnati::{self, CincinnatiError, Identity, Outcome, OutcomeReport, Release};
use crate::config::Config;
use crate::notify::{deadend_motd, Notifier};
use crate::os::{Booted, Os, OsError, OsRelease, Reboot};
use crate::persist::{Denied, DenyReason, Store, StorePath};
use crate::status::{AgentStatus, Hold};
use crate::strategy::Strategy;

/// Staging attempts before a release is given up (and, here, denied).
pub const MAX_DEPLOY_ATTEMPTS: u32 = 12;
/// Delay in states without a specific timer, unless configured
/// (`agent.timing.retry_interval_secs`).
pub const DEFAULT_REFRESH_SECS: u64 = crate::config::DEFAULT_RETRY_INTERVAL_SECS;
/// Finalization postponements while interactive users are logged in.
pub const MAX_FINALIZE_POSTPONEMENTS: u32 = 10;
/// Delay between those postponements: with the count, a 10-minute grace period.
pub const POSTPONEMENT_SECS: u64 = 60;
/// Delay once finished (Zincati: 3 hours).
pub const END_STATE_REFRESH_SECS: u64 = 3 * 3600;

/// Source of the current time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Where the agent keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Persistent state (deny-list, pending update, report outbox).
    pub var_dir: PathBuf,
    /// Status snapshot read by `ferrocore agent status`.
    pub status_file: PathBuf,
    /// Message of the day shown while the booted release is a dead-end.
    pub deadend_motd: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            var_dir: PathBuf::from("/var/lib/ferrocore/agent"),
            status_file: PathBuf::from("/run/ferrocore/agent/status.json"),
            deadend_motd: PathBuf::from("/run/motd.d/85-ferrocore-deadend.motd"),
        }
    }
}

/// Everything the agent gets from its environment.
pub struct Env {
    /// The sysroot.
    pub os: Arc<dyn Os>,
    /// The reboot action.
    pub reboot: Arc<dyn Reboot>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Files.
    pub paths: Paths,
    /// Node id (32 lowercase hex digits).
    pub node_uuid: String,
    /// `ignition.platform.id`, if known.
    pub platform: Option<String>,
    /// CPU architecture sent as `basearch`.
    pub basearch: String,
    /// Service manager notification socket (`Type=notify`), if any.
    pub notify: Option<Notifier>,
}

impl Env {
    /// A real node's environment: node id from `identity.node_uuid` or else derived
    /// from `/etc/machine-id` as Zincati does, platform from `/proc/cmdline`, default
    /// paths, system clock, `systemctl reboot`.
    pub fn for_node(config: &Config, os: Arc<dyn Os>) -> Result<Env, Error> {
        Self::for_node_at(
            config,
            os,
            Path::new("/etc/machine-id"),
            Path::new("/proc/cmdline"),
        )
    }

    /// [`Env::for_node`] reading the machine id and kernel command line from the
    /// given files.
    pub fn for_node_at(
        config: &Config,
        os: Arc<dyn Os>,
        machine_id: &Path,
        cmdline: &Path,
    ) -> Result<Env, Error> {
        let node_uuid = match &config.node_uuid {
            Some(u) => u.clone(),
            None => {
                let id = std::fs::read_to_string(machine_id)
                    .map_err(|e| Error::Setup(format!("{}: {e}", machine_id.display())))?;
                node_uuid_from_machine_id(&id)
                    .map_err(|e| Error::Setup(format!("{}: {e}", machine_id.display())))?
            }
        };
        let platform = std::fs::read_to_string(cmdline)
            .ok()
            .and_then(|c| platform_from_cmdline(&c));
        Ok(Env {
            os,
            reboot: Arc::new(crate::os::SystemctlReboot),
            clock: Arc::new(SystemClock),
            paths: Paths::default(),
            node_uuid,
            platform,
            basearch: std::env::consts::ARCH.into(),
            notify: Notifier::from_env(),
        })
    }
}

/// A state of the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Not initialized yet.
    Start,
    /// Initialized; steady state not yet reported to the strategy.
    Initialized,
    /// Steady state reported; about to check for updates.
    ReportedSteady,
    /// Last check found nothing (or failed).
    NoNewUpdate,
    /// A target was found; staging it.
    UpdateAvailable {
        /// Target.
        release: Release,
        /// Failed staging attempts so far.
        attempts: u32,
    },
    /// Staged with locked finalization; waiting for the strategy.
    UpdateStaged {
        /// Target.
        release: Release,
        /// Postponements left while interactive users are logged in.
        postponements_left: u32,
    },
    /// Finalized; rebooting.
    UpdateFinalized {
        /// Target.
        release: Release,
    },
    /// Nothing more to do until restarted (updates disabled, or reboot started).
    End,
}

impl State {
    /// Snake-case name.
    pub fn name(&self) -> &'static str {
        match self {
            State::Start => "start",
            State::Initialized => "initialized",
            State::ReportedSteady => "reported_steady",
            State::NoNewUpdate => "no_new_update",
            State::UpdateAvailable { .. } => "update_available",
            State::UpdateStaged { .. } => "update_staged",
            State::UpdateFinalized { .. } => "update_finalized",
            State::End => "end",
        }
    }

    fn target(&self) -> Option<&Release> {
        match self {
            State::UpdateAvailable { release, .. }
            | State::UpdateStaged { release, .. }
            | State::UpdateFinalized { release } => Some(release),
            _ => None,
        }
    }
}

/// A fatal agent error (bad setup); runtime failures are retried instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Setup impossible with this configuration or environment.
    #[error("{0}")]
    Setup(String),
    /// The OS could not be queried at initialization.
    #[error("os: {0}")]
    Os(#[from] OsError),
    /// Persistent state unreadable or unwritable.
    #[error("state: {0}")]
    State(String),
}

/// Base delay after a tick that left the machine in `state`, before jitter, and
/// whether jitter applies (Zincati's `get_refresh_delay`; its fixed 300 s for the
/// other states is `retry_interval`, `agent.timing.retry_interval_secs`).
pub fn refresh_period(
    state: &State,
    steady_interval: Duration,
    retry_interval: Duration,
) -> (Duration, bool) {
    match state {
        State::ReportedSteady | State::NoNewUpdate => (steady_interval, true),
        // Just postponed for logged-in users: come back in a minute, on time.
        State::UpdateStaged {
            postponements_left, ..
        } if *postponements_left < MAX_FINALIZE_POSTPONEMENTS => {
            (Duration::from_secs(POSTPONEMENT_SECS), false)
        }
        State::End => (Duration::from_secs(END_STATE_REFRESH_SECS), true),
        _ => (retry_interval, true),
    }
}

/// Adds Zincati's jitter: `r × period/100` with `r` uniform in 0..=10, i.e. up to
/// +10 %, so a fleet started together does not poll in lockstep.
///
/// Zincati counts in whole seconds with a floor of 1 s per step, which for periods
/// under 100 s means up to +10 s: a 1 s poll would wait up to 11 s. Periods of
/// 100 s and more get Zincati's exact values; shorter ones keep the +10 % bound.
pub fn with_jitter(period: Duration, r: u32) -> Duration {
    let step = if period >= Duration::from_secs(100) {
        Duration::from_secs(period.as_secs() / 100)
    } else {
        period / 100
    };
    period + step * r.min(10)
}

/// The update agent.
pub struct Agent {
    config: Config,
    env: Env,
    store_path: StorePath,
    store: Store,
    /// Local non-staged deployments (payload → why), rebuilt at each start as
    /// Zincati does: an administrator's rollback is not undone.
    local_denied: BTreeMap<String, String>,
    booted: Option<Booted>,
    identity: Option<Identity>,
    cincinnati: Option<cincinnati::Client>,
    strategy: Option<Strategy>,
    state: State,
    last_check: Option<Timestamp>,
    holds: Vec<Hold>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OsError> + Send + 'static,
) -> Result<T, OsError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(OsError(format!("OS task failed: {e}"))))
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("agent: {msg}");
}

impl Agent {
    /// An agent in state Start. Nothing is read until the first tick.
    pub fn new(config: Config, env: Env) -> Agent {
        let store_path = StorePath::new(&env.paths.var_dir);
        Agent {
            config,
            env,
            store_path,
            store: Store::default(),
            local_denied: BTreeMap::new(),
            booted: None,
            identity: None,
            cincinnati: None,
            strategy: None,
            state: State::Start,
            last_check: None,
            holds: Vec::new(),
        }
    }

    /// Current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The persisted state (deny-list, pending update, outbox) as last saved.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Status snapshot.
    pub fn status(&self) -> AgentStatus {
        let summary = match &self.state {
            State::Start => "starting".to_string(),
            State::Initialized => "initialization complete".into(),
            State::ReportedSteady | State::NoNewUpdate => match self.last_check {
                Some(t) => format!("periodically polling for updates (last checked {t})"),
                None => "periodically polling for updates".into(),
            },
            State::UpdateAvailable { release, attempts } => format!(
                "trying to stage {} (failed attempts: {attempts})",
                release.version
            ),
            State::UpdateStaged { release, .. } if self.holds.is_empty() => {
                format!("update staged: {}", release.version)
            }
            State::UpdateStaged { release, .. }
                if matches!(self.holds[..], [Hold::ActiveSessions { .. }]) =>
            {
                format!(
                    "update staged: {}; reboot delayed due to active user sessions",
                    release.version
                )
            }
            State::UpdateStaged { release, .. } => format!(
                "update staged: {}; reboot pending due to update strategy",
                release.version
            ),
            State::UpdateFinalized { release } => {
                format!("update applied, waiting for reboot: {}", release.version)
            }
            State::End if !self.config.updates_enabled => {
                "initialization complete, auto-updates logic disabled by configuration".into()
            }
            State::End => "finished".into(),
        };
        AgentStatus {
            state: self.state.name().into(),
            summary,
            updated_at: self.env.clock.now().to_string(),
            strategy: self.config.strategy.name().into(),
            node_uuid: self.env.node_uuid.clone(),
            group: self.config.group.clone(),
            booted: self.booted.as_ref().map(|b| b.release.clone()),
            last_check: self.last_check.map(|t| t.to_string()),
            candidate: self.state.target().cloned(),
            holds: self.holds.clone(),
            denied: self
                .store
                .denied
                .values()
                .map(|d| (d.version.clone(), d.reason.to_string()))
                .collect(),
        }
    }

    /// Performs one step; returns the delay until the next. A fatal error means the
    /// configuration or environment cannot work (the service manager restarts us).
    pub async fn tick(&mut self) -> Result<Duration, Error> {
        let before = self.state.clone();
        if self.cincinnati.is_some() {
            self.flush_outbox().await;
        }
        let next = self.step().await?;
        let changed = std::mem::discriminant(&next) != std::mem::discriminant(&before);
        let immediate = changed && !(before == State::ReportedSteady && next == State::NoNewUpdate);
        if changed {
            log(format!("state {} -> {}", before.name(), next.name()));
        }
        self.state = next;
        let status = self.status();
        if let Err(e) = status.write(&self.env.paths.status_file) {
            log(format!("cannot write status: {e}"));
        }
        if let Some(n) = &self.env.notify {
            // Like Zincati: ready once initialization ran, status at every step
            // (rpm-ostree shows it as DriverState). Newlines would end the field.
            let mut msg = format!("STATUS={}", status.summary.replace('\n', " "));
            if before == State::Start {
                msg = format!("READY=1\n{msg}");
            }
            if let Err(e) = n.send(&msg) {
                log(format!("cannot notify the service manager: {e}"));
            }
        }
        if immediate {
            return Ok(Duration::ZERO);
        }
        let (period, jitter) = refresh_period(
            &self.state,
            self.config.steady_interval,
            self.config.retry_interval,
        );
        Ok(if jitter {
            with_jitter(period, rand::thread_rng().gen_range(0..=10))
        } else {
            period
        })
    }

    /// Runs until `shutdown` completes (a step in progress is finished first), then
    /// tells the service manager it is stopping, as Zincati does on SIGTERM.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), Error> {
        tokio::pin!(shutdown);
        loop {
            let delay = self.tick().await?;
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut shutdown => break,
            }
        }
        if let Some(n) = &self.env.notify {
            let _ = n.send("STOPPING=1\nSTATUS=");
        }
        Ok(())
    }

    async fn step(&mut self) -> Result<State, Error> {
        let state = self.state.clone();
        Ok(match state {
            State::Start => self.initialize().await?,
            State::Initialized => {
                let strategy = self.strategy.as_ref().expect("initialized");
                match strategy.report_steady().await {
                    Ok(()) => {
                        self.holds.clear();
                        State::ReportedSteady
                    }
                    Err(e) => {
                        log(&e);
                        self.holds = vec![Hold::SteadyStateFailed { error: e }];
                        State::Initialized
                    }
                }
            }
            State::ReportedSteady | State::NoNewUpdate => self.check().await,
            State::UpdateAvailable { release, attempts } => self.stage(release, attempts).await,
            State::UpdateStaged {
                release,
                postponements_left,
            } => self.try_finalize(release, postponements_left).await?,
            State::UpdateFinalized { release } => {
                let reboot = self.env.reboot.clone();
                let into = release.os_release();
                match blocking(move || reboot.reboot(&into)).await {
                    Ok(()) => {
                        self.store.reboot_started = true;
                        if let Err(e) = self.save() {
                            log(e);
                        }
                        State::End
                    }
                    Err(e) => {
                        log(format!("reboot failed, retrying: {e}"));
                        State::UpdateFinalized { release }
                    }
                }
            }
            State::End => State::End,
        })
    }

    fn save(&self) -> Result<(), Error> {
        self.store_path.save(&self.store).map_err(Error::State)
    }

    fn queue_report(&mut self, from: &str, to: &str, outcome: Outcome) {
        let Some(b) = &self.booted else { return };
        self.store.outbox.push(OutcomeReport {
            node_uuid: self.env.node_uuid.clone(),
            stream: b.stream.clone(),
            from: from.to_string(),
            to: to.to_string(),
            outcome,
        });
    }

    fn deny(&mut self, r: &OsRelease, reason: DenyReason) {
        log(format!(
            "release {} ({}) denied: {reason}",
            r.version, r.checksum
        ));
        let since = self.env.clock.now().as_second();
        self.store
            .denied
            .entry(r.checksum.clone())
            .or_insert(Denied {
                version: r.version.clone(),
                reason,
                since,
            });
    }

    async fn initialize(&mut self) -> Result<State, Error> {
        let os = self.env.os.clone();
        let booted = blocking(move || os.booted()).await?;
        let os = self.env.os.clone();
        let deployments = blocking(move || os.deployments()).await?;
        let os = self.env.os.clone();
        let rolled_back = blocking(move || os.rolled_back()).await?;
        self.store = self.store_path.load().map_err(Error::State)?;
        self.booted = Some(booted.clone());

        // Conclude the update finalized before the last reboot.
        if let Some((from, to)) = self.store.pending.clone() {
            if booted.release == to {
                log(format!("update to {} succeeded", to.version));
                self.queue_report(&from.version, &to.version, Outcome::Success);
                self.store.pending = None;
            } else if rolled_back.iter().any(|r| r.checksum == to.checksum) {
                log(format!("update to {} was rolled back", to.version));
                self.deny(&to, DenyReason::RolledBack);
                self.queue_report(&from.version, &to.version, Outcome::RolledBack);
                self.store.pending = None;
            } else if !deployments.iter().any(|d| d.release == to) {
                // The finalized deployment is gone without a recorded failure: an
                // administrator removed it. Nothing to conclude or report.
                self.store.pending = None;
            }
        }
        // Finalized, but the agent died before rebooting (the service manager
        // restarted it): the default deployment is the target, so the reboot the
        // strategy allowed is still owed. Going through Initialized instead would
        // give a FleetLock slot back and leave the node waiting for a reboot that
        // nobody starts, with the finalized release denied as a local deployment.
        let owed = self
            .store
            .pending
            .as_ref()
            .map(|(_, to)| to.clone())
            .filter(|to| {
                !self.store.reboot_started
                    && booted.release != *to
                    && deployments
                        .iter()
                        .find(|d| !d.staged)
                        .is_some_and(|d| d.release == *to)
            });
        for r in &rolled_back {
            self.deny(r, DenyReason::RolledBack);
        }
        self.local_denied = deployments
            .iter()
            .filter(|d| !d.staged)
            .map(|d| {
                (
                    d.release.checksum.clone(),
                    format!("{} is already a local deployment", d.release.version),
                )
            })
            .collect();
        self.save()?;

        let identity = Identity {
            basearch: self.env.basearch.clone(),
            stream: booted.stream.clone(),
            platform: self.env.platform.clone(),
            group: self.config.group.clone(),
            node_uuid: self.env.node_uuid.clone(),
            rollout_wariness: self.config.rollout_wariness,
            booted: booted.release.clone(),
        };
        let base = self
            .config
            .cincinnati_base_url
            .as_deref()
            .ok_or_else(|| Error::Setup("cincinnati.base_url is not set".into()))?;
        let base = identity
            .expand(base)
            .map_err(|e| Error::Setup(format!("cincinnati.base_url: {e}")))?;
        // Zincati allows 30 minutes per request; a graph is small, so a stalled
        // server is better retried at the next poll.
        self.cincinnati = Some(
            cincinnati::Client::new(&base, Duration::from_secs(120))
                .map_err(|e| Error::Setup(format!("cincinnati.base_url: {e}")))?,
        );
        self.strategy = Some(
            Strategy::new(
                &self.config.strategy,
                &self.env.node_uuid,
                &self.config.group,
                |u| identity.expand(u),
            )
            .map_err(Error::Setup)?,
        );
        self.identity = Some(identity);
        self.flush_outbox().await;
        if self.config.updates_enabled {
            log(format!(
                "agent running on node '{}', in update group '{}', strategy {}",
                self.env.node_uuid,
                self.config.group,
                self.config.strategy.name()
            ));
            if let Some(to) = owed {
                log(format!(
                    "update to {} was finalized but the reboot did not happen; rebooting",
                    to.version
                ));
                return Ok(State::UpdateFinalized {
                    release: Release {
                        version: to.version,
                        payload: to.checksum,
                        // Not persisted; only the graph needs it, and the graph
                        // is not consulted again before the reboot.
                        age_index: 0,
                    },
                });
            }
            Ok(State::Initialized)
        } else {
            self.holds = vec![Hold::UpdatesDisabled];
            Ok(State::End)
        }
    }

    async fn flush_outbox(&mut self) {
        let Some(client) = self.cincinnati.clone() else {
            return;
        };
        if self.store.outbox.is_empty() {
            return;
        }
        let mut kept = Vec::new();
        for r in std::mem::take(&mut self.store.outbox) {
            match client.report(&r).await {
                Ok(()) => log(format!(
                    "reported {:?} for {} -> {}",
                    r.outcome, r.from, r.to
                )),
                // The server understood and refused (or has no /v1/report): retrying
                // cannot help.
                Err(CincinnatiError::Server { status, value, .. })
                    if (400..500).contains(&status) && status != 408 && status != 429 =>
                {
                    log(format!("update server refused report ({status}): {value}"));
                }
                Err(e) => {
                    log(format!("report not delivered, will retry: {e}"));
                    kept.push(r);
                }
            }
        }
        self.store.outbox = kept;
        if let Err(e) = self.save() {
            log(e);
        }
    }

    fn denied_map(&self) -> BTreeMap<String, String> {
        let mut m = self.local_denied.clone();
        for (payload, d) in &self.store.denied {
            m.insert(payload.clone(), d.reason.to_string());
        }
        m
    }

    async fn check(&mut self) -> State {
        let (Some(client), Some(id)) = (&self.cincinnati, &self.identity) else {
            return State::NoNewUpdate;
        };
        let now = self.env.clock.now();
        self.last_check = Some(now);
        let graph = match client.fetch_graph(id).await {
            Ok(g) => g,
            Err(e) => {
                log(format!("failed to check Cincinnati for updates: {e}"));
                self.holds = vec![Hold::CheckFailed {
                    error: e.to_string(),
                }];
                return State::NoNewUpdate;
            }
        };
        let sel = cincinnati::find_update(
            &graph,
            &id.booted,
            &self.denied_map(),
            self.config.allow_downgrade,
            self.config.rollout_wariness,
            now.as_second(),
        );
        match sel {
            Ok(sel) => {
                if sel.booted.is_some() {
                    let reason = sel.holds.iter().find_map(|h| match h {
                        Hold::DeadEnd { reason } => Some(reason.as_str()),
                        _ => None,
                    });
                    if let Err(e) = deadend_motd(&self.env.paths.deadend_motd, reason) {
                        log(format!("cannot update the dead-end notice: {e}"));
                    }
                }
                self.holds = sel.holds;
                match sel.target {
                    Some(release) => {
                        log(format!(
                            "target release '{}' selected, proceeding to stage it",
                            release.version
                        ));
                        State::UpdateAvailable {
                            release,
                            attempts: 0,
                        }
                    }
                    None => State::NoNewUpdate,
                }
            }
            Err(e) => {
                log(format!("failed to check Cincinnati for updates: {e}"));
                self.holds = vec![Hold::CheckFailed { error: e }];
                State::NoNewUpdate
            }
        }
    }

    async fn stage(&mut self, release: Release, attempts: u32) -> State {
        let target = release.os_release();
        let os = self.env.os.clone();
        let t = target.clone();
        let result = blocking(move || {
            os.stage(&t)?;
            // Trust but verify: the staged deployment must be the target.
            let staged = os.deployments()?.into_iter().find(|d| d.staged);
            match staged {
                Some(d) if d.release == t => Ok(()),
                Some(d) => Err(OsError(format!(
                    "staged deployment is {} ({}), not the target",
                    d.release.version, d.release.checksum
                ))),
                None => Err(OsError("no staged deployment after staging".into())),
            }
        })
        .await;
        match result {
            Ok(()) => {
                log(format!("update staged: {}", release.version));
                self.holds.clear();
                State::UpdateStaged {
                    release,
                    postponements_left: MAX_FINALIZE_POSTPONEMENTS,
                }
            }
            Err(e) => {
                let attempts = attempts + 1;
                log(format!(
                    "failed to stage {} (attempt {attempts}): {e}",
                    release.version
                ));
                if attempts < MAX_DEPLOY_ATTEMPTS {
                    return State::UpdateAvailable { release, attempts };
                }
                log(format!(
                    "abandoned and blocked deployment '{}'",
                    release.version
                ));
                self.deny(&target, DenyReason::FailedToDeploy);
                let from = self
                    .booted
                    .as_ref()
                    .map(|b| b.release.version.clone())
                    .unwrap_or_default();
                self.queue_report(&from, &release.version, Outcome::FailedToDeploy);
                if let Err(e) = self.save() {
                    log(e);
                }
                self.holds = vec![Hold::Denied {
                    version: release.version.clone(),
                    reason: DenyReason::FailedToDeploy.to_string(),
                }];
                State::NoNewUpdate
            }
        }
    }

    async fn try_finalize(&mut self, release: Release, left: u32) -> Result<State, Error> {
        let strategy = self.strategy.as_ref().expect("initialized");
        if let Err(hold) = strategy.can_finalize(self.env.clock.now()).await {
            self.holds = vec![hold];
            // The grace period restarts whenever the strategy says no (Zincati).
            return Ok(State::UpdateStaged {
                release,
                postponements_left: MAX_FINALIZE_POSTPONEMENTS,
            });
        }
        let os = self.env.os.clone();
        let ttys = blocking(move || Ok(os.interactive_sessions()))
            .await
            .unwrap_or_default();
        if !ttys.is_empty() && left > 0 {
            log(format!(
                "interactive sessions detected ({}), postponing the reboot into {} ({} more time(s))",
                ttys.join(", "),
                release.version,
                left - 1
            ));
            self.holds = vec![Hold::ActiveSessions {
                ttys,
                postponements_left: left - 1,
            }];
            return Ok(State::UpdateStaged {
                release,
                postponements_left: left - 1,
            });
        }
        if !ttys.is_empty() {
            log("reached end of grace period while waiting for interactive sessions");
        }
        self.holds.clear();
        let target = release.os_release();
        let from = self
            .booted
            .as_ref()
            .map(|b| b.release.clone())
            .ok_or_else(|| Error::Setup("booted release unknown".into()))?;
        // Recorded before finalizing: after the reboot, this is how the next start
        // knows what it was trying to do.
        self.store.pending = Some((from, target.clone()));
        self.store.reboot_started = false;
        self.save()?;
        let os = self.env.os.clone();
        let t = target.clone();
        match blocking(move || os.finalize(&t)).await {
            Ok(()) => {
                log(format!("update finalized: {}", release.version));
                Ok(State::UpdateFinalized { release })
            }
            Err(e) => {
                log(format!("failed to finalize {}: {e}", release.version));
                self.store.pending = None;
                self.save()?;
                Ok(State::UpdateStaged {
                    release,
                    postponements_left: MAX_FINALIZE_POSTPONEMENTS,
                })
            }
        }
    }
}

/// The node id for `/etc/machine-id` contents: Zincati's app-specific id.
pub fn node_uuid_from_machine_id(machine_id: &str) -> Result<String, String> {
    fleetlock::client::zincati_node_id(machine_id).map_err(|e| e.to_string())
}

/// `ignition.platform.id` from kernel command line text (first non-empty value).
pub fn platform_from_cmdline(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .filter_map(|a| a.strip_prefix("ignition.platform.id="))
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_bounds() {
        let p = Duration::from_secs(300);
        assert_eq!(with_jitter(p, 0), p);
        assert_eq!(with_jitter(p, 10), Duration::from_secs(330));
        // Short periods keep the +10 % bound instead of Zincati's 1 s floor.
        assert_eq!(
            with_jitter(Duration::from_secs(60), 10),
            Duration::from_secs(66)
        );
        assert_eq!(
            with_jitter(Duration::from_secs(1), 10),
            Duration::from_millis(1100)
        );
        assert_eq!(
            with_jitter(Duration::from_secs(10800), 5),
            Duration::from_secs(10800 + 540)
        );
    }

    #[test]
    fn periods() {
        let s = Duration::from_secs(42);
        let r = Duration::from_secs(300);
        assert_eq!(refresh_period(&State::NoNewUpdate, s, r).0, s);
        assert_eq!(
            refresh_period(&State::End, s, r).0,
            Duration::from_secs(10800)
        );
        assert_eq!(refresh_period(&State::Initialized, s, r).0, r);
        assert_eq!(
            refresh_period(&State::Initialized, s, Duration::from_secs(2)).0,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn cmdline() {
        assert_eq!(
            platform_from_cmdline("root=x ignition.platform.id= ignition.platform.id=qemu quiet"),
            Some("qemu".into())
        );
        assert_eq!(platform_from_cmdline("root=x"), None);
    }
}
