//! The FleetLock HTTP service.
//!
//! | Route | Auth | Purpose |
//! |---|---|---|
//! | `POST /v1/pre-reboot` | none (protocol) | take a slot (recursive) |
//! | `POST /v1/steady-state` | none (protocol) | give a slot back (idempotent) |
//! | `GET /v1/status` | bearer token if configured | holders per group with since/expiry |
//! | `POST /v1/admin/release` | bearer token if configured | release a named holder |
//! | `GET /metrics` | none | Prometheus text format |
//!
//! Protocol errors use airlock's kinds and status codes (semaphore full is a 500
//! `failed_lock` with airlock's message), so Zincati's logs and metric labels read the
//! same as with airlock.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::protocol::{ClientParams, ErrorBody, ErrorKind, RequestBody, PROTOCOL_HEADER};
use crate::semaphore::{self, GroupState, LockParams};
use crate::store::Store;
use crate::time::{now, rfc3339};
use crate::Error;

/// Settings of a [`FleetLock`] service that do not concern the store.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Group name → slots. Requests for other groups are refused.
    pub groups: BTreeMap<String, u64>,
    /// Bearer token guarding status and admin endpoints; `None` leaves them open.
    pub admin_token: Option<String>,
    /// Lease length in seconds; `None` = holders keep their slot until they release.
    pub lease_ttl_secs: Option<u64>,
}

/// A refused request: HTTP status plus the protocol's `{"kind","value"}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Error kind (also gives the status code).
    pub kind: ErrorKind,
    /// Human-readable detail.
    pub value: String,
}

impl Rejection {
    fn new(kind: ErrorKind, value: impl Into<String>) -> Self {
        Rejection {
            kind,
            value: value.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            kind: self.kind.as_str().to_string(),
            value: self.value,
        };
        let status =
            StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(body)).into_response()
    }
}

/// `GET /v1/status` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Every configured group, sorted by name.
    pub groups: Vec<GroupStatus>,
}

/// One group in [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// Group name.
    pub name: String,
    /// Configured slots.
    pub slots: u64,
    /// Current holders (lapsed leases excluded), sorted by id.
    pub holders: Vec<HolderStatus>,
}

/// One holder in [`GroupStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderStatus {
    /// Node id.
    pub id: String,
    /// When the slot was granted (RFC 3339), if known.
    pub since: Option<String>,
    /// When the lease lapses (RFC 3339), if leases are on.
    pub expires: Option<String>,
}

/// `POST /v1/admin/release` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// Group of the holder.
    pub group: String,
    /// Node id to release.
    pub id: String,
}

/// `POST /v1/admin/release` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseResponse {
    /// Whether `id` held a slot.
    pub released: bool,
}

#[derive(Default)]
struct Counters {
    pre_reboot: AtomicU64,
    steady_state: AtomicU64,
    /// Indexed like `ErrorKind::ALL`, per endpoint (0 pre-reboot, 1 steady-state,
    /// 2 admin).
    errors: [[AtomicU64; ErrorKind::ALL.len()]; 3],
}

/// The service: configuration, a store and metrics.
pub struct FleetLock {
    store: Box<dyn Store>,
    groups: RwLock<BTreeMap<String, u64>>,
    admin_token: Option<String>,
    lease_ttl: Option<u64>,
    counters: Counters,
}

impl FleetLock {
    /// Creates the service over `store`.
    pub fn new(store: Box<dyn Store>, opts: Options) -> Arc<Self> {
        Arc::new(FleetLock {
            store,
            groups: RwLock::new(opts.groups),
            admin_token: opts.admin_token,
            lease_ttl: opts.lease_ttl_secs,
            counters: Counters::default(),
        })
    }

    /// Replaces the group table (e.g. on SIGHUP). New slot counts apply to the next
    /// request; holders beyond a lowered count keep their slots until they release.
    pub fn set_groups(&self, groups: BTreeMap<String, u64>) {
        *self.groups.write().unwrap_or_else(|p| p.into_inner()) = groups;
    }

    fn slots(&self, group: &str) -> Result<u64, Rejection> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(group)
            .copied()
            .ok_or_else(|| {
                Rejection::new(ErrorKind::UnknownGroup, format!("unknown group {group:?}"))
            })
    }

    /// `RecursiveLock` for `p`.
    pub async fn pre_reboot(&self, p: &ClientParams) -> Result<(), Rejection> {
        let slots = self.slots(&p.group)?;
        let id = p.id.clone();
        let ttl = self.lease_ttl;
        let granted = Arc::new(AtomicU64::new(0));
        let granted2 = granted.clone();
        let result = self
            .store
            .apply(
                &p.group,
                Arc::new(move |s| {
                    // Re-run after a conflict: the latest run's answer counts.
                    granted2.store(u64::from(!s.holders.contains_key(&id)), Ordering::Relaxed);
                    semaphore::lock(
                        s,
                        &id,
                        LockParams {
                            slots,
                            now: now(),
                            ttl,
                        },
                    )
                }),
            )
            .await;
        if let Ok(state) = &result {
            if granted.load(Ordering::Relaxed) == 1 {
                log_transition("granted", &p.group, &p.id, state);
            }
        }
        result.map(drop).map_err(|e| match e {
            Error::Full { .. } | Error::Conflict => {
                Rejection::new(ErrorKind::FailedLock, e.to_string())
            }
            other => Rejection::new(
                ErrorKind::FailedSemInit,
                format!("failed to initialize semaphore manager: {other}"),
            ),
        })
    }

    /// `UnlockIfHeld` for `p`; returns whether `p.id` held a slot.
    pub async fn steady_state(&self, p: &ClientParams) -> Result<bool, Rejection> {
        let slots = self.slots(&p.group)?;
        self.unlock(&p.group, &p.id, slots).await
    }

    async fn unlock(&self, group: &str, id: &str, slots: u64) -> Result<bool, Rejection> {
        let held = Arc::new(AtomicU64::new(0));
        let (id2, held2) = (id.to_string(), held.clone());
        let state = self
            .store
            .apply(
                group,
                Arc::new(move |s| {
                    // The transition may be re-run after a conflict: record the
                    // latest run's answer, not a sum.
                    held2.store(u64::from(s.holders.contains_key(&id2)), Ordering::Relaxed);
                    Ok(semaphore::unlock(s, &id2, slots, now()))
                }),
            )
            .await
            .map_err(|e| {
                Rejection::new(
                    ErrorKind::FailedUnlock,
                    format!("failed to release semaphore lock: {e}"),
                )
            })?;
        let held = held.load(Ordering::Relaxed) == 1;
        if held {
            log_transition("released", group, id, &state);
        }
        Ok(held)
    }

    /// Holders of every configured group.
    pub async fn status(&self) -> Result<Status, Rejection> {
        let groups = self
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let t = now();
        let mut out = Vec::with_capacity(groups.len());
        for (name, slots) in groups {
            let state = self.store.load(&name).await.map_err(|e| {
                Rejection::new(
                    ErrorKind::FailedSemInit,
                    format!("reading group {name:?}: {e}"),
                )
            })?;
            let holders = state
                .live_holders(t)
                .map(|(id, h)| HolderStatus {
                    id: id.clone(),
                    since: h.since.map(rfc3339),
                    expires: h.expires.map(rfc3339),
                })
                .collect();
            out.push(GroupStatus {
                name,
                slots,
                holders,
            });
        }
        Ok(Status { groups: out })
    }

    /// Releases `id` in `group` on an operator's behalf (a node that died or was
    /// reinstalled with a new id never sends steady-state).
    pub async fn release(&self, group: &str, id: &str) -> Result<bool, Rejection> {
        let slots = self.slots(group)?;
        self.unlock(group, id, slots).await
    }

    /// The HTTP routes.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(crate::protocol::PRE_REBOOT_PATH, post(pre_reboot))
            .route(crate::protocol::STEADY_STATE_PATH, post(steady_state))
            .route("/v1/status", get(status))
            .route("/v1/admin/release", post(release))
            .route("/metrics", get(metrics))
            .with_state(self)
    }

    fn count_error(&self, endpoint: usize, kind: ErrorKind) {
        if let Some(i) = ErrorKind::ALL.iter().position(|k| *k == kind) {
            self.counters.errors[endpoint][i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn check_token(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let Some(want) = &self.admin_token else {
            return Ok(());
        };
        let got = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(got.as_bytes(), want.as_bytes()) {
            Ok(())
        } else {
            Err(Rejection::new(
                ErrorKind::Unauthorized,
                "missing or wrong bearer token",
            ))
        }
    }

    async fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        let groups = self
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let t = now();
        let mut stored = Vec::new();
        let mut store_up = 1;
        for g in groups.keys() {
            match self.store.load(g).await {
                Ok(s) => stored.push((g, s.live_holders(t).count(), s.slots)),
                Err(_) => store_up = 0,
            }
        }
        let c = &self.counters;
        let mut m = String::new();
        // airlock's metric names first, so that existing dashboards keep working.
        head(
            &mut m,
            "airlock_config_groups",
            "Number of configured lock groups.",
            "gauge",
        );
        let _ = writeln!(m, "airlock_config_groups {}", groups.len());
        head(
            &mut m,
            "airlock_config_semaphore_slots",
            "Configured slots per group.",
            "gauge",
        );
        for (g, s) in &groups {
            let _ = writeln!(m, "airlock_config_semaphore_slots{{group=\"{g}\"}} {s}");
        }
        head(
            &mut m,
            "airlock_database_semaphore_lock_holders",
            "Current holders per group.",
            "gauge",
        );
        for (g, n, _) in &stored {
            let _ = writeln!(
                m,
                "airlock_database_semaphore_lock_holders{{group=\"{g}\"}} {n}"
            );
        }
        head(
            &mut m,
            "airlock_database_semaphore_slots",
            "Slots recorded in the store per group.",
            "gauge",
        );
        for (g, _, s) in &stored {
            let _ = writeln!(m, "airlock_database_semaphore_slots{{group=\"{g}\"}} {s}");
        }
        for (name, path, n) in [
            (
                "airlock_v1_pre_reboot_incoming_requests_total",
                "/v1/pre-reboot",
                &c.pre_reboot,
            ),
            (
                "airlock_v1_steady_state_incoming_requests_total",
                "/v1/steady-state",
                &c.steady_state,
            ),
        ] {
            head(
                &mut m,
                name,
                &format!("Total number of incoming requests to {path}."),
                "counter",
            );
            let _ = writeln!(m, "{name} {}", n.load(Ordering::Relaxed));
        }
        head(
            &mut m,
            "fleetlock_errors_total",
            "Refused requests by endpoint and error kind.",
            "counter",
        );
        for (e, endpoint) in ["pre-reboot", "steady-state", "admin"].iter().enumerate() {
            for (i, kind) in ErrorKind::ALL.iter().enumerate() {
                let n = c.errors[e][i].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        m,
                        "fleetlock_errors_total{{endpoint=\"{endpoint}\",kind=\"{}\"}} {n}",
                        kind.as_str()
                    );
                }
            }
        }
        head(
            &mut m,
            "fleetlock_store_up",
            "Whether this scrape could read the store.",
            "gauge",
        );
        let _ = writeln!(m, "fleetlock_store_up {store_up}");
        m
    }
}

/// The server's record of who held the lock when: one line per slot granted or
/// given back, with the holders right after that transition as the store
/// committed it, so "never more holders than slots" can be checked after the
/// fact from the log alone.
fn log_transition(what: &str, group: &str, id: &str, state: &GroupState) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!("{}", transition_line(t, what, group, id, state));
}

fn transition_line(
    t: std::time::Duration,
    what: &str,
    group: &str,
    id: &str,
    state: &GroupState,
) -> String {
    let holders: Vec<&str> = state.holders.keys().map(String::as_str).collect();
    format!(
        "fleetlock: {}.{:03} {what} group={group} id={id} holders={}/{} [{}]",
        t.as_secs(),
        t.subsec_millis(),
        holders.len(),
        state.slots,
        holders.join(",")
    )
}

fn head(m: &mut String, name: &str, help: &str, kind: &str) {
    use std::fmt::Write as _;
    let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Length is not secret; contents are compared without an early exit.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Validates header and body the way airlock does (same kinds and messages).
fn identity(headers: &HeaderMap, body: &[u8]) -> Result<ClientParams, Rejection> {
    let fail = |why: String| {
        Rejection::new(
            ErrorKind::InvalidClientIdentity,
            format!("failed to validate client identity: {why}"),
        )
    };
    if headers.get(PROTOCOL_HEADER).map(|v| v.as_bytes()) != Some(b"true") {
        return Err(fail("wrong 'fleet-lock-protocol' header".into()));
    }
    let req: RequestBody =
        serde_json::from_slice(body).map_err(|e| fail(format!("invalid JSON body: {e}")))?;
    req.client_params.validate().map_err(fail)?;
    Ok(req.client_params)
}

type App = State<Arc<FleetLock>>;

async fn pre_reboot(State(app): App, headers: HeaderMap, body: Bytes) -> Response {
    app.counters.pre_reboot.fetch_add(1, Ordering::Relaxed);
    let r = match identity(&headers, &body) {
        Ok(p) => app.pre_reboot(&p).await,
        Err(e) => Err(e),
    };
    respond(&app, 0, r.map(|()| StatusCode::OK.into_response()))
}

async fn steady_state(State(app): App, headers: HeaderMap, body: Bytes) -> Response {
    app.counters.steady_state.fetch_add(1, Ordering::Relaxed);
    let r = match identity(&headers, &body) {
        Ok(p) => app.steady_state(&p).await,
        Err(e) => Err(e),
    };
    respond(&app, 1, r.map(|_| StatusCode::OK.into_response()))
}

async fn status(State(app): App, headers: HeaderMap) -> Response {
    let r = match app.check_token(&headers) {
        Ok(()) => app.status().await.map(|s| axum::Json(s).into_response()),
        Err(e) => Err(e),
    };
    respond(&app, 2, r)
}

async fn release(State(app): App, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        app.check_token(&headers)?;
        let req: ReleaseRequest = serde_json::from_slice(&body).map_err(|e| {
            Rejection::new(
                ErrorKind::InvalidRequest,
                format!("invalid release request: {e}"),
            )
        })?;
        crate::protocol::validate_group(&req.group)
            .map_err(|e| Rejection::new(ErrorKind::InvalidRequest, e))?;
        if req.id.is_empty() {
            return Err(Rejection::new(ErrorKind::InvalidRequest, "empty node ID"));
        }
        let released = app.release(&req.group, &req.id).await?;
        Ok(axum::Json(ReleaseResponse { released }).into_response())
    }
    .await;
    respond(&app, 2, r)
}

async fn metrics(State(app): App) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics_text().await,
    )
        .into_response()
}

fn respond(app: &FleetLock, endpoint: usize, r: Result<Response, Rejection>) -> Response {
    match r {
        Ok(resp) => resp,
        Err(e) => {
            app.count_error(endpoint, e.kind);
            // A full semaphore is business as usual; store trouble needs an operator.
            if matches!(e.kind, ErrorKind::FailedSemInit | ErrorKind::FailedUnlock) {
                eprintln!("fleetlock: {}: {}", e.kind.as_str(), e.value);
            }
            e.into_response()
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` completes.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<FleetLock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = crate::tls::TlsListener::new(listener, tls)?;
    axum::serve(listener, app.router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<FleetLock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.router())
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_lines_name_the_holders_after_the_change() {
        let mut st = GroupState::default();
        let p = LockParams {
            slots: 2,
            now: 10,
            ttl: None,
        };
        semaphore::lock(&mut st, "b", p).unwrap();
        semaphore::lock(&mut st, "a", p).unwrap();
        let t = std::time::Duration::from_millis(1_795_700_000_042);
        assert_eq!(
            transition_line(t, "granted", "default", "a", &st),
            "fleetlock: 1795700000.042 granted group=default id=a holders=2/2 [a,b]"
        );
        semaphore::unlock(&mut st, "a", 2, 11);
        semaphore::unlock(&mut st, "b", 2, 11);
        assert_eq!(
            transition_line(t, "released", "default", "b", &st),
            "fleetlock: 1795700000.042 released group=default id=b holders=0/2 []"
        );
    }
}
