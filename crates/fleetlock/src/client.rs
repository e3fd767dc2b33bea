//! Async FleetLock client, for the update agent and for operators.
//!
//! Follows Zincati's client (coreos/zincati:src/fleet_lock/mod.rs): the body is built
//! once, every request carries `fleet-lock-protocol: true`, any 2xx is success, and
//! errors expose a bounded [`ClientError::kind`] suitable as a metric label.

use std::time::Duration;

use reqwest::Url;

use crate::protocol::{
    ClientParams, ErrorBody, RequestBody, PRE_REBOOT_PATH, PROTOCOL_HEADER, STEADY_STATE_PATH,
};
use crate::server::{ReleaseRequest, ReleaseResponse, Status};

/// A failed FleetLock call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad base URL or client parameters.
    #[error("client setup: {0}")]
    Build(String),
    /// The request did not complete (connection refused, timeout, ...).
    #[error("request to {url} failed: {detail}")]
    Request {
        /// Requested URL.
        url: String,
        /// Cause, with its source chain.
        detail: String,
    },
    /// The server answered with a non-2xx status.
    #[error("server-side error, code {status}: {value}")]
    Server {
        /// HTTP status.
        status: u16,
        /// `kind` from a protocol error body, if the body was one.
        kind: Option<String>,
        /// `value` from the error body, or the raw body.
        value: String,
    },
}

impl ClientError {
    /// Bounded error label, as Zincati computes it: the server's `kind`, else
    /// `generic_http_<status>`, else `client_failed_build` / `client_failed_request`.
    pub fn kind(&self) -> String {
        match self {
            ClientError::Build(_) => "client_failed_build".into(),
            ClientError::Request { .. } => "client_failed_request".into(),
            ClientError::Server { kind: Some(k), .. } => k.clone(),
            ClientError::Server { status, .. } => format!("generic_http_{status}"),
        }
    }
}

fn chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn base_url(base: &str) -> Result<Url, ClientError> {
    // A base without a trailing slash would lose its last path segment on join
    // (Zincati's docs ask users for the slash; we add it instead).
    let with_slash = if base.ends_with('/') {
        base.to_string()
    } else {
        format!("{base}/")
    };
    Url::parse(&with_slash).map_err(|e| ClientError::Build(format!("base URL {base:?}: {e}")))
}

async fn check(
    url: &Url,
    resp: Result<reqwest::Response, reqwest::Error>,
) -> Result<reqwest::Response, ClientError> {
    let resp = resp.map_err(|e| ClientError::Request {
        url: url.to_string(),
        detail: chain(&e),
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    Err(match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => ClientError::Server {
            status: status.as_u16(),
            kind: Some(b.kind),
            value: b.value,
        },
        Err(_) => ClientError::Server {
            status: status.as_u16(),
            kind: None,
            value: text.trim().to_string(),
        },
    })
}

/// systemd application id Zincati derives its node id with
/// (coreos/zincati:src/identity/mod.rs).
pub const ZINCATI_APP_ID: [u8; 16] = [
    0xde, 0x35, 0x10, 0x6b, 0x6e, 0xc2, 0x46, 0x88, 0xb6, 0x3a, 0xfd, 0xda, 0xa1, 0x56, 0x67, 0x9b,
];

/// The node id Zincati sends for a machine id (32 hex digits, as in
/// `/etc/machine-id`): systemd's app-specific id, i.e. HMAC-SHA256 keyed with the
/// machine id over [`ZINCATI_APP_ID`], truncated to 16 bytes and stamped as a v4
/// UUID (`systemd-id128 machine-id -a de35106b6ec24688b63afddaa156679b`). Lets
/// operators and other agents lock or release exactly the slot Zincati holds.
pub fn zincati_node_id(machine_id: &str) -> Result<String, ClientError> {
    use sha2::{Digest, Sha256};
    let hex = machine_id.trim().replace('-', "");
    let key: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<_>>()
        .filter(|k: &Vec<u8>| k.len() == 16 && hex.len() == 32)
        .ok_or_else(|| {
            ClientError::Build(format!("machine id {machine_id:?}: want 32 hex digits"))
        })?;
    // HMAC (RFC 2104) spelled out: a 16-byte key needs no pre-hashing.
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, b) in key.iter().enumerate() {
        ipad[i] ^= b;
        opad[i] ^= b;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(ZINCATI_APP_ID)
        .finalize();
    let mac = Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&mac[..16]);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    Ok(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// An HTTP client with a request timeout that, given `ca_pem` (PEM certificates),
/// also trusts that CA, for servers with a private certificate.
pub fn http_client(
    timeout: Duration,
    ca_pem: Option<&[u8]>,
) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder().timeout(timeout);
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError::Build(format!("CA certificates: {}", chain(&e))))?;
        if certs.is_empty() {
            return Err(ClientError::Build(
                "CA certificates: no PEM certificate found".into(),
            ));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| ClientError::Build(chain(&e)))
}

/// A node's client: one id, one group, one server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    pre_reboot: Url,
    steady_state: Url,
    body: String,
}

impl Client {
    /// Creates a client for node `id` of `group` against the server at `base`
    /// (e.g. `http://fleetlock.example.com:9090/`). Requests time out after `timeout`.
    pub fn new(base: &str, id: &str, group: &str, timeout: Duration) -> Result<Self, ClientError> {
        Self::with_http_client(base, id, group, http_client(timeout, None)?)
    }

    /// Like [`Client::new`] with a prepared HTTP client (see [`http_client`]), e.g.
    /// one trusting a private CA.
    pub fn with_http_client(
        base: &str,
        id: &str,
        group: &str,
        http: reqwest::Client,
    ) -> Result<Self, ClientError> {
        let params = ClientParams {
            id: id.to_string(),
            group: group.to_string(),
        };
        params.validate().map_err(ClientError::Build)?;
        let base = base_url(base)?;
        let join = |p: &str| {
            base.join(p.trim_start_matches('/'))
                .map_err(|e| ClientError::Build(format!("joining {p:?}: {e}")))
        };
        let body = serde_json::to_string_pretty(&RequestBody {
            client_params: params,
        })
        .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(Client {
            http,
            pre_reboot: join(PRE_REBOOT_PATH)?,
            steady_state: join(STEADY_STATE_PATH)?,
            body,
        })
    }

    async fn call(&self, url: &Url) -> Result<(), ClientError> {
        let resp = self
            .http
            .post(url.clone())
            .header(PROTOCOL_HEADER, "true")
            .body(self.body.clone())
            .send()
            .await;
        check(url, resp).await.map(drop)
    }

    /// Asks for a reboot slot (`/v1/pre-reboot`). Also renews the lease when the
    /// server runs with leases.
    pub async fn pre_reboot(&self) -> Result<(), ClientError> {
        self.call(&self.pre_reboot).await
    }

    /// Renews the slot every `interval` in the background (a pre-reboot call each
    /// time) until the returned guard is dropped. For servers with leases: the agent
    /// keeps its slot alive while it finalizes and shuts down, and a node that dies
    /// stops renewing and loses the slot one lease later. Failed renewals are
    /// retried at the next tick. Needs a Tokio runtime.
    pub fn keep_alive(&self, interval: Duration) -> KeepAlive {
        let me = self.clone();
        KeepAlive(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let _ = me.pre_reboot().await;
            }
        }))
    }

    /// Gives the slot back (`/v1/steady-state`); succeeds if none was held.
    pub async fn steady_state(&self) -> Result<(), ClientError> {
        self.call(&self.steady_state).await
    }
}

/// Guard of [`Client::keep_alive`]; dropping it stops the renewals.
#[derive(Debug)]
pub struct KeepAlive(tokio::task::JoinHandle<()>);

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An operator's client for the status and admin endpoints.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl AdminClient {
    /// Creates an admin client; `token` is sent as `Authorization: Bearer`.
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Result<Self, ClientError> {
        Self::with_http_client(base, token, http_client(timeout, None)?)
    }

    /// Like [`AdminClient::new`] with a prepared HTTP client (see [`http_client`]).
    pub fn with_http_client(
        base: &str,
        token: Option<String>,
        http: reqwest::Client,
    ) -> Result<Self, ClientError> {
        Ok(AdminClient {
            http,
            base: base_url(base)?,
            token,
        })
    }

    fn req(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<(Url, reqwest::RequestBuilder), ClientError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| ClientError::Build(format!("joining {path:?}: {e}")))?;
        let mut rb = self.http.request(method, url.clone());
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        Ok((url, rb))
    }

    /// Holders per group (`GET /v1/status`).
    pub async fn status(&self) -> Result<Status, ClientError> {
        let (url, rb) = self.req(reqwest::Method::GET, "v1/status")?;
        let resp = check(&url, rb.send().await).await?;
        resp.json().await.map_err(|e| ClientError::Request {
            url: url.to_string(),
            detail: format!("bad status body: {}", chain(&e)),
        })
    }

    /// Releases holder `id` of `group`; returns whether it held a slot.
    pub async fn release(&self, group: &str, id: &str) -> Result<bool, ClientError> {
        let (url, rb) = self.req(reqwest::Method::POST, "v1/admin/release")?;
        let body = ReleaseRequest {
            group: group.to_string(),
            id: id.to_string(),
        };
        let resp = check(&url, rb.json(&body).send().await).await?;
        let r: ReleaseResponse = resp.json().await.map_err(|e| ClientError::Request {
            url: url.to_string(),
            detail: format!("bad release body: {}", chain(&e)),
        })?;
        Ok(r.released)
    }

    /// Prometheus metrics text (`GET /metrics`).
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let (url, rb) = self.req(reqwest::Method::GET, "metrics")?;
        let resp = check(&url, rb.send().await).await?;
        resp.text().await.map_err(|e| ClientError::Request {
            url: url.to_string(),
            detail: chain(&e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_base_path() {
        let c = Client::new(
            "http://h:1/fleet_lock",
            "a",
            "default",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(c.pre_reboot.as_str(), "http://h:1/fleet_lock/v1/pre-reboot");
        assert_eq!(
            c.steady_state.as_str(),
            "http://h:1/fleet_lock/v1/steady-state"
        );
        assert!(matches!(
            Client::new("http://h:1/", "a", "bad group", Duration::from_secs(1)),
            Err(ClientError::Build(_))
        ));
    }

    #[test]
    fn zincati_node_id_matches_systemd() {
        // Expected value printed by `systemd-id128 machine-id -a <ZINCATI_APP_ID>` on
        // a machine whose /etc/machine-id is the input.
        let id = zincati_node_id("3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(id, "975228d46dc94622b9bbe16671e2b58d");
        assert_eq!(
            zincati_node_id("3d1219c7-c4c5-404a-aa1f-6d2a48adfda4").unwrap(),
            id
        );
        for bad in ["", "3d1219c7", "zz1219c7c4c5404aaa1f6d2a48adfda4", "é"] {
            assert!(zincati_node_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kinds_like_zincati() {
        let e = ClientError::Server {
            status: 404,
            kind: None,
            value: String::new(),
        };
        assert_eq!(e.kind(), "generic_http_404");
    }
}
