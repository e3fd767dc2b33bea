//! Test harness: an in-memory sysroot, a reboot recorder, a settable clock, and
//! real FleetLock and update servers on 127.0.0.1.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use agent::{Booted, Clock, LocalDeployment, Os, OsError, OsRelease, Reboot};
use jiff::Timestamp;
use release_meta::index::{release_metadata_url, ArchPayload};
use release_meta::{fsutil, ReleaseIndex, Updates};
use sha2::{Digest, Sha256};

/// Fixture directory of the update stack.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/update-stack/"
    ))
    .join(rel)
}

/// Test commit checksum of a version.
pub fn checksum(version: &str) -> String {
    Sha256::digest(format!("agent-test:{version}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A release as the OS names it.
pub fn rel(version: &str) -> OsRelease {
    OsRelease {
        version: version.into(),
        checksum: checksum(version),
    }
}

#[derive(Debug, Default)]
struct OsState {
    booted: Option<OsRelease>,
    rollback: Option<OsRelease>,
    staged: Option<(OsRelease, bool)>,
    rolled_back: Vec<OsRelease>,
    stage_failures: BTreeSet<String>,
    bad_boot: BTreeSet<String>,
    stage_calls: Vec<String>,
    sessions: Vec<String>,
}

/// In-memory sysroot: deployments, locked staging, and a boot counter that rolls
/// back releases marked bad.
#[derive(Clone)]
pub struct MemoryOs {
    stream: String,
    st: Arc<Mutex<OsState>>,
}

impl MemoryOs {
    /// A node booted into `version` of `stream`.
    pub fn new(stream: &str, version: &str) -> MemoryOs {
        let st = OsState {
            booted: Some(rel(version)),
            ..Default::default()
        };
        MemoryOs {
            stream: stream.into(),
            st: Arc::new(Mutex::new(st)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OsState> {
        self.st.lock().unwrap()
    }

    /// Staging `version` fails.
    pub fn fail_staging(&self, version: &str) {
        self.lock().stage_failures.insert(version.into());
    }

    /// Booting `version` fails every try: the boot counter goes back.
    pub fn fail_boot(&self, version: &str) {
        self.lock().bad_boot.insert(version.into());
    }

    /// Drops the boot counter's failure records, as a cleanup of old deployments
    /// does: only the agent's own deny-list still remembers them.
    pub fn forget_rollbacks(&self) {
        self.lock().rolled_back.clear();
    }

    /// Users logged in on these terminals.
    pub fn set_sessions(&self, ttys: &[&str]) {
        self.lock().sessions = ttys.iter().map(|t| t.to_string()).collect();
    }

    /// Versions `stage` was called with.
    pub fn stage_calls(&self) -> Vec<String> {
        self.lock().stage_calls.clone()
    }

    /// Booted version.
    pub fn booted_version(&self) -> String {
        self.lock().booted.clone().unwrap().version
    }

    /// Reboots: an unlocked staged deployment becomes the default and boots, unless
    /// it is bad, in which case the boot counter records it and the old one boots.
    pub fn reboot(&self) {
        let mut st = self.lock();
        let Some((next, unlocked)) = st.staged.take() else {
            return;
        };
        if !unlocked {
            // Locked finalization: a plain reboot drops the staged deployment.
            return;
        }
        if st.bad_boot.contains(&next.version) {
            st.rolled_back.push(next);
        } else {
            st.rollback = st.booted.replace(next);
        }
    }
}

impl Os for MemoryOs {
    fn booted(&self) -> Result<Booted, OsError> {
        Ok(Booted {
            release: self.lock().booted.clone().unwrap(),
            stream: self.stream.clone(),
        })
    }

    fn deployments(&self) -> Result<Vec<LocalDeployment>, OsError> {
        let st = self.lock();
        let mut v = Vec::new();
        if let Some((r, _)) = &st.staged {
            v.push(LocalDeployment {
                release: r.clone(),
                staged: true,
                booted: false,
            });
        }
        v.push(LocalDeployment {
            release: st.booted.clone().unwrap(),
            staged: false,
            booted: true,
        });
        if let Some(r) = &st.rollback {
            v.push(LocalDeployment {
                release: r.clone(),
                staged: false,
                booted: false,
            });
        }
        Ok(v)
    }

    fn rolled_back(&self) -> Result<Vec<OsRelease>, OsError> {
        Ok(self.lock().rolled_back.clone())
    }

    fn stage(&self, target: &OsRelease) -> Result<(), OsError> {
        let mut st = self.lock();
        st.stage_calls.push(target.version.clone());
        if st.stage_failures.contains(&target.version) {
            return Err(OsError(format!(
                "pulling {}: connection reset",
                target.version
            )));
        }
        st.staged = Some((target.clone(), false));
        Ok(())
    }

    fn finalize(&self, target: &OsRelease) -> Result<(), OsError> {
        let mut st = self.lock();
        match &mut st.staged {
            Some((r, unlocked)) if r == target => {
                *unlocked = true;
                Ok(())
            }
            _ => Err(OsError(format!("{} is not staged", target.version))),
        }
    }

    fn interactive_sessions(&self) -> Vec<String> {
        self.lock().sessions.clone()
    }
}

/// Records reboots instead of rebooting.
#[derive(Clone, Default)]
pub struct RebootRecorder(pub Arc<Mutex<Vec<String>>>);

impl RebootRecorder {
    /// Versions rebooted into.
    pub fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Reboot for RebootRecorder {
    fn reboot(&self, into: &OsRelease) -> Result<(), OsError> {
        self.0.lock().unwrap().push(into.version.clone());
        Ok(())
    }
}

/// A clock that shows a set time; clones share it.
#[derive(Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// At unix second `t`.
    pub fn at(t: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(t)))
    }

    /// Moves to unix second `t`.
    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_second(self.0.load(Ordering::SeqCst)).unwrap()
    }
}

/// A running FleetLock server with an SQLite store.
pub struct LockServer {
    pub url: String,
    pub app: Arc<fleetlock::server::FleetLock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl LockServer {
    /// Starts a server whose `default` group has `slots` slots.
    pub async fn start(dir: &Path, slots: u64) -> LockServer {
        let store = fleetlock::store::SqliteStore::open(&dir.join("fleetlock.db")).unwrap();
        let opts = fleetlock::server::Options {
            groups: BTreeMap::from([("default".to_string(), slots)]),
            ..Default::default()
        };
        let app = fleetlock::server::FleetLock::new(Box::new(store), opts);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(fleetlock::server::serve(listener, app.clone(), async {
            let _ = rx.await;
        }));
        LockServer {
            url,
            app,
            stop: Some(tx),
        }
    }

    /// Current holders of the default group.
    pub async fn holders(&self) -> Vec<String> {
        let st = self.app.status().await.unwrap();
        st.groups
            .iter()
            .find(|g| g.name == "default")
            .map(|g| g.holders.iter().map(|h| h.id.clone()).collect())
            .unwrap_or_default()
    }
}

impl Drop for LockServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Lays out an update-server data directory for `stream` with `versions` (oldest
/// first, x86_64 checksum payloads) and `updates`.
pub fn write_data_dir(root: &Path, stream: &str, versions: &[&str], updates: &Updates) {
    let mut idx = ReleaseIndex::new(stream);
    for v in versions {
        let payload = ArchPayload {
            architecture: std::env::consts::ARCH.into(),
            checksum: Some(checksum(v)),
            oci: None,
        };
        idx.add_arch(v, &release_metadata_url(stream, v), &payload)
            .unwrap();
    }
    let dir = root.join("prod/streams").join(stream);
    std::fs::create_dir_all(&dir).unwrap();
    fsutil::write_json(&dir.join("releases.json"), &idx).unwrap();
    std::fs::create_dir_all(root.join("updates")).unwrap();
    fsutil::write_json(
        &root.join("updates").join(format!("{stream}.json")),
        updates,
    )
    .unwrap();
}

/// A running update server over a data directory.
pub struct UpdateServer {
    pub url: String,
    pub clock: update_server::FixedClock,
    server: Option<update_server::Server>,
}

impl UpdateServer {
    /// Starts a server over `data` whose rollout clock shows `now`; rollouts pause
    /// after `pause_after` failing nodes.
    pub async fn start(data: &Path, now: i64, pause_after: u64) -> UpdateServer {
        let clock = update_server::FixedClock::at(now);
        let mut cfg = update_server::Config::new(data);
        cfg.clock = Arc::new(clock.clone());
        cfg.pause_after_failures = pause_after;
        cfg.reload_interval = std::time::Duration::from_millis(100);
        let server = update_server::Server::start(cfg).await.unwrap();
        UpdateServer {
            url: format!("http://{}/", server.local_addr()),
            clock,
            server: Some(server),
        }
    }

    /// `GET /v1/status` as JSON.
    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(format!("{}v1/status", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.unwrap();
        }
    }
}
