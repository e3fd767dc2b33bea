//! HTTP handlers: `/v1/graph` (upstream's URL and parameters), `/v1/report`,
//! `/v1/status`, `/metrics`.

use crate::metrics::Metrics;
use crate::reports::{Pause, Report, ReportStore};
use crate::source::Snapshot;
use crate::{policy, Clock};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use release_meta::sign::SigningKey;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Paused rollouts by (stream, version).
pub(crate) type PausedMap = BTreeMap<(String, String), Pause>;

/// Response header carrying the base64 ed25519 signature of the exact body bytes.
pub const SIGNATURE_HEADER: &str = "x-ferrocore-signature";

/// Shared state of all handlers.
pub(crate) struct AppState {
    pub(crate) snapshot: RwLock<Arc<Snapshot>>,
    pub(crate) paused: RwLock<Arc<PausedMap>>,
    pub(crate) store: Arc<ReportStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Metrics,
    pub(crate) signing_key: Option<SigningKey>,
    pub(crate) inputs: crate::Inputs,
    pub(crate) verify_inputs: Option<release_meta::sign::VerifyingKey>,
    pub(crate) http: reqwest::Client,
}

impl AppState {
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn paused(&self) -> Arc<PausedMap> {
        self.paused
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn refresh_paused(&self) -> Result<(), crate::Error> {
        let fresh = Arc::new(self.store.paused()?);
        *self.paused.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/graph", get(graph))
        .route("/v1/report", post(report))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Error body in the Cincinnati protocol's shape, which Zincati decodes and shows
/// (`server-side error, code 400: <value>`).
fn error(status: StatusCode, kind: &str, value: String) -> Response {
    let body = serde_json::to_vec(&json!({ "kind": kind, "value": value })).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The parameters `/v1/graph` reads; the others Zincati sends (`os_version`,
/// `os_checksum`, `group`, `platform`) are accepted and ignored, as upstream.
#[derive(Default)]
struct GraphParams {
    basearch: Option<String>,
    stream: Option<String>,
    oci: Option<String>,
    rollout_wariness: Option<String>,
    node_uuid: Option<String>,
}

fn parse_params(raw: Option<&str>) -> GraphParams {
    let mut p = GraphParams::default();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let slot = match &*k {
            "basearch" => &mut p.basearch,
            "stream" => &mut p.stream,
            "oci" => &mut p.oci,
            "rollout_wariness" => &mut p.rollout_wariness,
            "node_uuid" => &mut p.node_uuid,
            _ => continue,
        };
        // First occurrence wins.
        if slot.is_none() {
            *slot = Some(v.into_owned());
        }
    }
    p
}

async fn graph(State(st): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    st.metrics.graph_request();
    let resp = graph_response(&st, raw.as_deref());
    st.metrics.graph_response(resp.status().as_u16());
    resp
}

fn graph_response(st: &AppState, raw: Option<&str>) -> Response {
    let p = parse_params(raw);
    let missing: Vec<&str> = [("basearch", &p.basearch), ("stream", &p.stream)]
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k)
        .collect();
    if !missing.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_params",
            format!(
                "mandatory client parameters missing: {}",
                missing.join(", ")
            ),
        );
    }
    let (basearch, stream) = (p.basearch.unwrap_or_default(), p.stream.unwrap_or_default());
    for (name, v) in [("basearch", &basearch), ("stream", &stream)] {
        if v.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_params",
                format!("empty {name}"),
            );
        }
    }
    let oci = match p.oci.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_params",
                format!("invalid oci '{other}': expected 'true' or 'false'"),
            )
        }
    };
    let wariness = match policy::wariness(p.rollout_wariness.as_deref(), p.node_uuid.as_deref()) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_params", e.to_string()),
    };
    let snap = st.snapshot();
    let Some(data) = snap.streams.get(&stream) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_stream",
            format!("no update graph for stream '{stream}'"),
        );
    };
    let Some(scope) = data.graphs.get(&(basearch.clone(), oci)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_params",
            format!("unsupported basearch '{basearch}' for stream '{stream}'"),
        );
    };
    st.metrics.observe_wariness(wariness);
    let now = st.clock.now();
    let paused = st.paused();
    let mut hidden = 0u64;
    for (k, r) in scope.rollouts.iter().enumerate().take(64) {
        // Pauses are rare: skip building lookup keys on the hot path when none exist.
        let is_paused =
            !paused.is_empty() && paused.contains_key(&(stream.clone(), r.version.clone()));
        if is_paused || r.hidden_for(wariness, now) {
            hidden |= 1 << k;
        }
    }
    let (body, sig) = scope.body(hidden, st.signing_key.as_ref());
    let mut resp = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            // Upstream allows any origin (graph visualizers fetch from browsers).
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
        ],
        body,
    )
        .into_response();
    if let Some(sig) = sig.and_then(|s| HeaderValue::from_str(&s).ok()) {
        resp.headers_mut().insert(SIGNATURE_HEADER, sig);
    }
    resp
}

async fn report(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let r: Report = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_report", e.to_string()),
    };
    for (name, v) in [
        ("node_uuid", &r.node_uuid),
        ("stream", &r.stream),
        ("from", &r.from),
        ("to", &r.to),
    ] {
        if v.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_report",
                format!("empty {name}"),
            );
        }
    }
    {
        let snap = st.snapshot();
        let Some(data) = snap.streams.get(&r.stream) else {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_stream",
                format!("no update graph for stream '{}'", r.stream),
            );
        };
        if data.index.position(&r.to).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_report",
                format!("release '{}' is not in stream '{}'", r.to, r.stream),
            );
        }
    }
    st.metrics.report(r.outcome);
    let now = st.clock.now();
    let st2 = st.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let pause = st2.store.record(&r, now)?;
        if pause.is_some() {
            st2.refresh_paused()?;
        }
        Ok::<_, crate::Error>(pause)
    })
    .await;
    match outcome {
        Ok(Ok(pause)) => axum::Json(json!({
            "recorded": true,
            "paused": pause.is_some(),
            "reason": pause.map(|p| p.reason),
        }))
        .into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "report_store",
            e.to_string(),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "report_store",
            e.to_string(),
        ),
    }
}

async fn status(State(st): State<Arc<AppState>>) -> Response {
    let st2 = st.clone();
    let result = tokio::task::spawn_blocking(move || status_json(&st2)).await;
    match result {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "report_store",
            e.to_string(),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "report_store",
            e.to_string(),
        ),
    }
}

/// Per stream: inputs, then every rollout with its ramp position now, its reports
/// and, when paused, why; then the reports of every target release.
fn status_json(st: &AppState) -> Result<serde_json::Value, crate::Error> {
    let snap = st.snapshot();
    let paused = st.paused();
    let now = st.clock.now();
    let mut streams = serde_json::Map::new();
    for (name, data) in &snap.streams {
        let mut rollouts = Vec::new();
        for e in &data.updates.releases {
            let Some(r) = &e.metadata.rollout else {
                continue;
            };
            let pause = paused.get(&(name.clone(), e.version.clone()));
            rollouts.push(json!({
                "version": e.version,
                "start_epoch": r.start_epoch,
                "start_percentage": r.start_percentage,
                "duration_minutes": r.duration_minutes,
                "threshold_now": r.threshold_at(now),
                "paused_in_metadata": r.paused.is_some(),
                "paused": pause.is_some(),
                "pause_reason": pause.map(|p| p.reason.clone()),
                "paused_at": pause.map(|p| p.paused_at),
                "reports": st.store.counts(name, &e.version)?,
            }));
        }
        let other_pauses: Vec<_> = paused
            .iter()
            .filter(|((s, v), _)| s == name && !rollouts.iter().any(|r| r["version"] == **v))
            .map(|((_, v), p)| json!({"version": v, "reason": p.reason, "paused_at": p.paused_at}))
            .collect();
        streams.insert(
            name.clone(),
            json!({
                "releases": data.index.releases.len(),
                "newest_release": data.index.releases.last().map(|r| &r.version),
                "updates_last_modified": data.updates.metadata.last_modified,
                "rollouts": rollouts,
                "other_pauses": other_pauses,
                "reports": st.store.counts_by_version(name)?,
            }),
        );
    }
    Ok(json!({
        "now": now,
        "inputs": st.inputs.to_string(),
        "inputs_signature_required": st.verify_inputs.is_some(),
        "inputs_loaded_at": snap.loaded_at,
        "pause_after_failures": st.store.threshold(),
        "streams": streams,
    }))
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let text = st.metrics.render(&st.snapshot(), st.paused().len());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}
