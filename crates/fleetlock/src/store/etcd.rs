//! etcd v3 store, spoken through etcd's HTTP/JSON gateway (`/v3/kv/range`,
//! `/v3/kv/txn`) so that no gRPC stack is needed.
//!
//! Layout and value are airlock's (coreos/airlock:internal/lock): one key per group,
//! `<prefix>/groups/<group>/v1/semaphore`, holding
//! `{"total_slots": N, "holders": ["id", ...]}` with holders sorted. ferrocore adds a
//! `holder_info` map (since/lease per holder), which airlock ignores when reading, so
//! an airlock and a ferrocore server can share one etcd during a migration.
//!
//! Writes are compare-and-swap on the key's `mod_revision`: a transaction writes only
//! if nobody wrote since we read, so servers sharing etcd never over-grant. On a lost
//! race the failure branch returns the fresh value and the transition is re-run.
//! Retrying on another endpoint after an ambiguous failure is safe for the same
//! reason: a repeated compare fails and lock/unlock are idempotent.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use super::{BoxFuture, Store, Transition};
use crate::semaphore::{GroupState, Holder};
use crate::Error;

/// airlock's key prefix; keeping it lets airlock and ferrocore share state.
pub const DEFAULT_PREFIX: &str = "com.coreos.airlock";

/// How many compare-and-swap rounds one request may lose before giving up with
/// [`Error::Conflict`]. airlock gives up after one; under a burst of clients that
/// turns most requests into errors the clients then have to retry anyway.
const CAS_ATTEMPTS: u32 = 16;

/// Connection settings of [`EtcdStore`].
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Client URLs of the cluster members, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix ([`DEFAULT_PREFIX`] by default).
    pub prefix: String,
    /// Timeout of one HTTP request to one member.
    pub request_timeout: Duration,
    /// PEM CA certificates to trust for `https://` endpoints (in addition to the
    /// built-in roots).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and private key, for clusters started with
    /// `--client-cert-auth` (airlock's `client_cert_pub_path`/`client_cert_key_path`).
    pub client_identity_pem: Option<Vec<u8>>,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            endpoints: Vec::new(),
            prefix: DEFAULT_PREFIX.to_string(),
            request_timeout: Duration::from_secs(3),
            ca_pem: None,
            client_identity_pem: None,
        }
    }
}

/// Semaphores in an etcd v3 cluster.
pub struct EtcdStore {
    http: reqwest::Client,
    opts: EtcdOptions,
    /// Index of the endpoint that answered last; requests start there.
    preferred: AtomicUsize,
    /// One queue per group: requests of this process take turns, so that
    /// compare-and-swap races only happen between servers, not among the requests
    /// of one server (which would otherwise livelock under a burst of clients).
    group_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl EtcdStore {
    /// Creates a store; no request is made until first use.
    pub fn new(opts: EtcdOptions) -> Result<Self, Error> {
        if opts.endpoints.is_empty() {
            return Err(Error::Etcd("no etcd endpoints configured".into()));
        }
        let mut b = reqwest::Client::builder()
            .timeout(opts.request_timeout)
            .connect_timeout(opts.request_timeout);
        if let Some(pem) = &opts.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Etcd(format!("CA certificates: {}", without_url(&e))))?;
            if certs.is_empty() {
                return Err(Error::Etcd(
                    "CA certificates: no PEM certificate found".into(),
                ));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let Some(pem) = &opts.client_identity_pem {
            let id = reqwest::Identity::from_pem(pem).map_err(|e| {
                Error::Etcd(format!("client certificate and key: {}", without_url(&e)))
            })?;
            b = b.identity(id);
        }
        let http = b
            .build()
            .map_err(|e| Error::Etcd(format!("building HTTP client: {}", without_url(&e))))?;
        Ok(EtcdStore {
            http,
            opts,
            preferred: AtomicUsize::new(0),
            group_locks: Default::default(),
        })
    }

    fn group_lock(&self, group: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.group_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(group.to_string())
            .or_default()
            .clone()
    }

    fn key(&self, group: &str) -> String {
        // Group names are restricted to [a-zA-Z0-9.-], which url.QueryEscape (used
        // by airlock) leaves unchanged, so no escaping is needed.
        format!("{}/groups/{}/v1/semaphore", self.opts.prefix, group)
    }

    /// POSTs `body` to `path` on the preferred member, failing over to the others.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, Error> {
        let n = self.opts.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let base = self.opts.endpoints[idx].trim_end_matches('/');
            match self.call_one(&format!("{base}{path}"), body).await {
                Ok(v) => {
                    if i != 0 {
                        self.preferred.store(idx, Ordering::Relaxed);
                    }
                    return Ok(v);
                }
                Err(e) => errors.push(format!("{base}: {e}")),
            }
        }
        Err(Error::Etcd(errors.join("; ")))
    }

    async fn call_one(&self, url: &str, body: &Value) -> Result<Value, String> {
        let resp = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| without_url(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| without_url(&e))?;
        if !status.is_success() {
            // The gateway reports gRPC errors as {"error", "code", "message"}.
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
                .unwrap_or(text);
            return Err(format!("HTTP {status}: {}", msg.trim()));
        }
        serde_json::from_str(&text).map_err(|e| format!("bad gateway response: {e}"))
    }

    async fn range(&self, key: &str) -> Result<Option<Kv>, Error> {
        let v = self
            .call("/v3/kv/range", &json!({ "key": B64.encode(key) }))
            .await?;
        let r: RangeResponse = serde_json::from_value(v)
            .map_err(|e| Error::Etcd(format!("bad range response: {e}")))?;
        Ok(r.kvs.into_iter().next())
    }
}

fn without_url(e: &reqwest::Error) -> String {
    // reqwest prefixes the URL, which the caller already adds.
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn de_num<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    // grpc-gateway renders int64 as JSON strings.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        I(i64),
    }
    match N::deserialize(d)? {
        N::I(i) => Ok(i),
        N::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct Kv {
    #[serde(default, deserialize_with = "de_num")]
    mod_revision: i64,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<Kv>,
}

#[derive(Deserialize)]
struct TxnResponse {
    // Absent when false: the gateway omits zero values.
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<ResponseOp>,
}

#[derive(Deserialize)]
struct ResponseOp {
    #[serde(default)]
    response_range: Option<RangeResponse>,
}

/// The value airlock stores, plus ferrocore's per-holder details.
#[derive(Serialize, Deserialize)]
struct Semaphore {
    total_slots: u64,
    // Go marshals a nil slice as null.
    #[serde(default, deserialize_with = "null_as_empty")]
    holders: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    holder_info: BTreeMap<String, HolderInfo>,
}

#[derive(Serialize, Deserialize, Default)]
struct HolderInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
}

fn decode(group: &str, kv: Option<&Kv>) -> Result<GroupState, Error> {
    let Some(kv) = kv else {
        return Ok(GroupState::default());
    };
    let corrupt = |detail: String| Error::Corrupt {
        group: group.to_string(),
        detail,
    };
    let raw = B64
        .decode(&kv.value)
        .map_err(|e| corrupt(format!("value is not base64: {e}")))?;
    let mut sem: Semaphore =
        serde_json::from_slice(&raw).map_err(|e| corrupt(format!("value is not JSON: {e}")))?;
    let holders = sem
        .holders
        .into_iter()
        .map(|id| {
            let info = sem.holder_info.remove(&id).unwrap_or_default();
            (
                id,
                Holder {
                    since: info.since,
                    expires: info.expires,
                },
            )
        })
        .collect();
    Ok(GroupState {
        slots: sem.total_slots,
        holders,
    })
}

fn encode(state: &GroupState) -> String {
    let sem = Semaphore {
        total_slots: state.slots,
        holders: state.holders.keys().cloned().collect(),
        holder_info: state
            .holders
            .iter()
            .filter(|(_, h)| h.since.is_some() || h.expires.is_some())
            .map(|(id, h)| {
                (
                    id.clone(),
                    HolderInfo {
                        since: h.since,
                        expires: h.expires,
                    },
                )
            })
            .collect(),
    };
    // Serializing plain strings and integers cannot fail.
    B64.encode(serde_json::to_vec(&sem).unwrap_or_default())
}

impl Store for EtcdStore {
    fn apply<'a>(
        &'a self,
        group: &'a str,
        transition: Transition,
    ) -> BoxFuture<'a, Result<GroupState, Error>> {
        Box::pin(async move {
            let key = self.key(group);
            let key64 = B64.encode(&key);
            // Fast path without queueing: refusals and no-ops (a full group polled
            // by waiting nodes, repeated locks) need no write, and the range read
            // is linearizable, so its answer stands.
            let mut current = self.range(&key).await?;
            let mut probe = decode(group, current.as_ref())?;
            if !transition(&mut probe)? {
                return Ok(probe);
            }
            let turn = self.group_lock(group);
            let _turn = match turn.try_lock() {
                Ok(guard) => guard,
                Err(_) => {
                    // Someone of ours wrote while we waited: our read is stale, and
                    // a fresh one is cheaper than a compare that is bound to fail.
                    let guard = turn.lock().await;
                    current = self.range(&key).await?;
                    guard
                }
            };
            for attempt in 0..CAS_ATTEMPTS {
                let mut state = decode(group, current.as_ref())?;
                if !transition(&mut state)? {
                    return Ok(state);
                }
                // mod_revision 0 compares equal for an absent key, which makes the
                // first write a create-if-absent.
                let observed = current.as_ref().map_or(0, |kv| kv.mod_revision);
                let txn = json!({
                    "compare": [{
                        "key": key64,
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": observed.to_string(),
                    }],
                    "success": [{ "request_put": { "key": key64, "value": encode(&state) } }],
                    "failure": [{ "request_range": { "key": key64 } }],
                });
                let v = self.call("/v3/kv/txn", &txn).await?;
                let resp: TxnResponse = serde_json::from_value(v)
                    .map_err(|e| Error::Etcd(format!("bad txn response: {e}")))?;
                if resp.succeeded {
                    return Ok(state);
                }
                current = resp
                    .responses
                    .into_iter()
                    .next()
                    .and_then(|r| r.response_range)
                    .and_then(|r| r.kvs.into_iter().next());
                if attempt >= 2 {
                    // Back off a little so a herd of servers does not keep colliding.
                    let ms = rand::random::<u64>() % (1 << attempt.min(6));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
            Err(Error::Conflict)
        })
    }

    fn load<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<GroupState, Error>> {
        Box::pin(async move {
            let kv = self.range(&self.key(group)).await?;
            decode(group, kv.as_ref())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airlock_value_round_trip() {
        // Written by airlock: no holder_info, holders sorted.
        let airlock = br#"{"total_slots":2,"holders":["a1","b2"]}"#;
        let kv = Kv {
            mod_revision: 7,
            value: B64.encode(airlock),
        };
        let state = decode("default", Some(&kv)).unwrap();
        assert_eq!(state.slots, 2);
        assert_eq!(state.holders.len(), 2);
        assert_eq!(state.holders["a1"].since, None);
        let back = B64.decode(encode(&state)).unwrap();
        assert_eq!(
            back, airlock,
            "no ferrocore details: exactly airlock's bytes"
        );
    }

    #[test]
    fn holder_details_round_trip() {
        let mut state = GroupState {
            slots: 3,
            ..GroupState::default()
        };
        for (id, since, expires) in [("b", Some(5), Some(65)), ("a", Some(7), None)] {
            state.holders.insert(id.into(), Holder { since, expires });
        }
        let raw = String::from_utf8(B64.decode(encode(&state)).unwrap()).unwrap();
        assert_eq!(
            raw,
            r#"{"total_slots":3,"holders":["a","b"],"holder_info":{"a":{"since":7},"b":{"since":5,"expires":65}}}"#
        );
        let kv = Kv {
            mod_revision: 2,
            value: B64.encode(&raw),
        };
        assert_eq!(decode("g", Some(&kv)).unwrap(), state);
        // Go's nil slice.
        let kv = Kv {
            mod_revision: 2,
            value: B64.encode(r#"{"total_slots":1,"holders":null}"#),
        };
        assert!(decode("g", Some(&kv)).unwrap().holders.is_empty());
    }

    #[test]
    fn corrupt_value_names_group() {
        let kv = Kv {
            mod_revision: 1,
            value: B64.encode("{nope"),
        };
        let err = decode("workers", Some(&kv)).unwrap_err().to_string();
        assert!(
            err.contains("\"workers\"") && err.contains("not JSON"),
            "{err}"
        );
    }
}
