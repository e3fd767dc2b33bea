//! Fetching resources (file contents, referenced configs, CA bundles): `data:`
//! URLs and http(s), then gzip decompression and hash verification, as upstream's
//! `internal/resource/url.go` and `http.go` do.
//!
//! HTTP follows upstream's retry loop: every connection error and every 5xx
//! status is retried, sleeping 200 ms, 400 ms, ... capped at 5 s, until
//! `ignition.timeouts.httpTotal` runs out (0 or unset: retry forever). 200 and
//! 204 are success, 404 is "resource not found", anything else fails. Custom
//! headers are dropped on redirects. tftp, s3, gs and arn sources fail with
//! "unsupported source scheme" (see the crate README).

use std::io::Read;
use std::time::Duration;

use base64::Engine as _;
use ignition_config::types::{Proxy, Resource, Timeouts};
use sha2::Digest;

/// Upstream's initial backoff; it doubles before the first sleep.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Default `httpResponseHeaders` (seconds), as upstream.
const DEFAULT_RESPONSE_HEADERS: i64 = 10;

/// Why a fetch failed. `field` says which part of the resource is to blame
/// (`source`, `compression`, `verification.hash`), so callers can build paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    /// `source`, `compression` or `verification.hash`.
    pub field: &'static str,
    /// The cause.
    pub message: String,
}

impl FetchError {
    fn source(message: impl Into<String>) -> FetchError {
        FetchError {
            field: "source",
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// HTTP client settings taken from the config (`ignition.timeouts`,
/// `ignition.security.tls`, `ignition.proxy`), and the client built from them.
#[derive(Default)]
pub struct Fetcher {
    /// `httpTotal`: the deadline over all attempts of one fetch (None = forever).
    total: Option<Duration>,
    /// `httpResponseHeaders`.
    response_headers: Option<Duration>,
    /// Extra trusted CAs from the config.
    cas: Vec<reqwest::Certificate>,
    proxy: Proxy,
    /// `fetch-offline`: anything but `data:` needs the network.
    offline: bool,
    client: Option<reqwest::Client>,
}

/// Returned by [`Fetcher::fetch`] in offline mode for network sources.
pub const NEED_NET: &str = "resource requires networking";

impl Fetcher {
    /// A fetcher with upstream's defaults (no total deadline, 10 s headers).
    pub fn new() -> Fetcher {
        Fetcher {
            response_headers: Some(Duration::from_secs(DEFAULT_RESPONSE_HEADERS as u64)),
            ..Fetcher::default()
        }
    }

    /// Only `data:` (and empty) sources may be fetched.
    pub fn set_offline(&mut self, offline: bool) {
        self.offline = offline;
    }

    /// Applies a config's timeouts, CAs and proxy (upstream
    /// `UpdateHttpTimeoutsAndCAs`). CA resources are fetched with the settings
    /// in force before the call, as upstream does.
    pub fn update(
        &mut self,
        timeouts: &Timeouts,
        cas: &[Resource],
        proxy: &Proxy,
    ) -> Result<(), (usize, FetchError)> {
        let secs = |v: Option<i64>, d: i64| match v.unwrap_or(d) {
            n if n <= 0 => None,
            n => Some(Duration::from_secs(n as u64)),
        };
        let mut bundles = Vec::new();
        for (i, ca) in cas.iter().enumerate() {
            let pem = self.fetch(ca).map_err(|e| (i, e))?;
            // A bundle without certificates would silently trust nothing extra;
            // fail on it like on any other unusable resource.
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| (i, FetchError::source("CA bundle holds no PEM certificate")))?;
            bundles.extend(certs);
        }
        self.total = secs(timeouts.http_total, 0);
        self.response_headers = secs(timeouts.http_response_headers, DEFAULT_RESPONSE_HEADERS);
        self.cas = bundles;
        self.proxy = proxy.clone();
        self.client = None;
        Ok(())
    }

    /// Fetches `res`: download, decompress, verify. An unset or empty source
    /// yields no bytes, as upstream's "" scheme does.
    pub fn fetch(&mut self, res: &Resource) -> Result<Vec<u8>, FetchError> {
        let source = res.source.as_deref().unwrap_or("");
        let scheme = source.split_once(':').map(|(s, _)| s).unwrap_or("");
        let raw = match scheme {
            "" => Vec::new(),
            "data" => decode_data_url(source).map_err(FetchError::source)?,
            "http" | "https" => {
                if self.offline {
                    return Err(FetchError::source(NEED_NET));
                }
                self.http_get(source, res)?
            }
            "tftp" | "s3" | "gs" | "arn" => {
                return Err(FetchError::source(format!(
                    "unsupported source scheme {scheme:?}: ferrocore fetches only data, http and https sources"
                )))
            }
            _ => return Err(FetchError::source("unsupported source scheme")),
        };
        let data = match res.compression.as_deref().unwrap_or("") {
            "" => raw,
            "gzip" => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_end(&mut out)
                    .map_err(|e| FetchError {
                        field: "compression",
                        message: format!("gzip: {}", crate::error::io_msg(&e)),
                    })?;
                out
            }
            _ => {
                return Err(FetchError {
                    field: "compression",
                    message: "invalid compression method".into(),
                })
            }
        };
        if let Some(h) = &res.verification.hash {
            verify(h, &data)?;
        }
        Ok(data)
    }

    fn client(&mut self) -> Result<reqwest::Client, FetchError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("Ignition/ferrocore-", env!("CARGO_PKG_VERSION")))
            // Custom headers must not follow redirects (upstream clears
            // them); reqwest drops only sensitive ones, so redirects are
            // followed by hand in `get_following_redirects`.
            .redirect(reqwest::redirect::Policy::none());
        for c in &self.cas {
            b = b.add_root_certificate(c.clone());
        }
        // Only the config's proxies apply, never the environment's.
        let no_proxy = reqwest::NoProxy::from_string(&self.proxy.no_proxy.join(","));
        if let Some(p) = &self.proxy.http_proxy {
            let px = reqwest::Proxy::http(p)
                .map_err(|e| FetchError::source(format!("invalid httpProxy: {e}")))?;
            b = b.proxy(px.no_proxy(no_proxy.clone()));
        }
        if let Some(p) = &self.proxy.https_proxy {
            let px = reqwest::Proxy::https(p)
                .map_err(|e| FetchError::source(format!("invalid httpsProxy: {e}")))?;
            b = b.proxy(px.no_proxy(no_proxy));
        }
        if self.proxy.http_proxy.is_none() && self.proxy.https_proxy.is_none() {
            b = b.no_proxy();
        }
        let c = b
            .build()
            .map_err(|e| FetchError::source(format!("building HTTP client: {e}")))?;
        self.client = Some(c.clone());
        Ok(c)
    }

    /// The retry loop. It runs on a private current-thread runtime so that
    /// `httpResponseHeaders` can bound exactly the wait for response headers
    /// (the blocking client has no such timeout) while bodies take as long as
    /// the `httpTotal` deadline allows.
    fn http_get(&mut self, url: &str, res: &Resource) -> Result<Vec<u8>, FetchError> {
        let headers = request_headers(res)?;
        let client = self.client()?;
        let header_timeout = self.response_headers;
        let total = self.total;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| FetchError::source(format!("starting HTTP runtime: {e}")))?;
        rt.block_on(async move {
            let deadline = total.map(|t| tokio::time::Instant::now() + t);
            let too_late = || FetchError::source("unable to fetch resource in time");
            let mut backoff = INITIAL_BACKOFF;
            loop {
                let attempt = get_following_redirects(&client, url, &headers, header_timeout);
                let result = match deadline {
                    Some(d) => tokio::time::timeout_at(d, attempt)
                        .await
                        .map_err(|_| too_late())?,
                    None => attempt.await,
                };
                if let Ok((status, body)) = result {
                    if status < 500 {
                        return match status {
                            200 | 204 => Ok(body),
                            404 => Err(FetchError::source("resource not found")),
                            s => Err(FetchError::source(format!(
                                "failed to fetch resource: HTTP status {s}"
                            ))),
                        };
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                let wake = tokio::time::Instant::now() + backoff;
                match deadline {
                    Some(d) if d <= wake => {
                        tokio::time::sleep_until(d).await;
                        return Err(too_late());
                    }
                    _ => tokio::time::sleep_until(wake).await,
                }
            }
        })
    }
}

/// The request headers: upstream's defaults, replaced by the resource's headers
/// of the same name (Go `Header.Set`). A header that HTTP cannot carry fails the
/// fetch instead of being dropped.
fn request_headers(res: &Resource) -> Result<reqwest::header::HeaderMap, FetchError> {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut headers = default_headers();
    for (i, h) in res.http_headers.iter().enumerate() {
        let Some(v) = &h.value else { continue };
        let bad = |what: &str| FetchError {
            field: "httpHeaders",
            message: format!("header {i} ({:?}): invalid {what}", h.name),
        };
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("name"))?;
        let val = HeaderValue::from_str(v).map_err(|_| bad("value"))?;
        headers.insert(name, val);
    }
    Ok(headers)
}

/// Sent on every request, as upstream's `configHeaders`.
fn default_headers() -> reqwest::header::HeaderMap {
    use reqwest::header::{HeaderValue, ACCEPT, ACCEPT_ENCODING};
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    headers.insert(
        ACCEPT,
        HeaderValue::from_static("application/vnd.coreos.ignition+json;version=3.6.0, */*;q=0.1"),
    );
    headers
}

/// One GET; custom headers go to the first URL only, redirects are followed
/// with the defaults alone (upstream clears headers on redirect). Transport
/// errors and header timeouts are `Err` (retried by the caller).
async fn get_following_redirects(
    client: &reqwest::Client,
    url: &str,
    headers: &reqwest::header::HeaderMap,
    header_timeout: Option<Duration>,
) -> Result<(u16, Vec<u8>), ()> {
    let mut url = url.to_string();
    let mut with_headers = true;
    for _ in 0..10 {
        let h = if with_headers {
            headers.clone()
        } else {
            default_headers()
        };
        let send = client.get(&url).headers(h).send();
        let resp = match header_timeout {
            Some(t) => tokio::time::timeout(t, send).await.map_err(|_| ())?,
            None => send.await,
        }
        .map_err(|_| ())?;
        if resp.status().is_redirection() {
            if let Some(loc) = resp.headers().get("location").and_then(|l| l.to_str().ok()) {
                url = resp.url().join(loc).map_err(|_| ())?.to_string();
                with_headers = false;
                continue;
            }
        }
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|_| ())?.to_vec();
        return Ok((status, body));
    }
    // Too many redirects: treated like a server-side failure and retried.
    Ok((599, Vec::new()))
}

/// Checks `sha512-<hex>` / `sha256-<hex>` against `data`.
fn verify(spec: &str, data: &[u8]) -> Result<(), FetchError> {
    let bad = |m: &str| FetchError {
        field: "verification.hash",
        message: m.to_string(),
    };
    let (func, sum) = spec
        .split_once('-')
        .ok_or_else(|| bad("malformed hash specifier"))?;
    let calc = match func {
        "sha512" => hex::encode(sha2::Sha512::digest(data)),
        "sha256" => hex::encode(sha2::Sha256::digest(data)),
        _ => return Err(bad("unrecognized hash function")),
    };
    if !calc.eq_ignore_ascii_case(sum) {
        return Err(bad(&format!(
            "hash verification failed: calculated {func} {calc}, expected {sum}"
        )));
    }
    Ok(())
}

/// Decodes an RFC 2397 `data:` URL: `data:[<mediatype>][;base64],<data>`.
/// The data part is percent-decoded; with `;base64` it is then base64 (standard
/// alphabet; unpadded input accepted).
pub fn decode_data_url(url: &str) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("data:")
        .ok_or_else(|| "not a data URL".to_string())?;
    let (meta, data) = rest
        .split_once(',')
        .ok_or_else(|| "invalid data URL: missing comma".to_string())?;
    let is_b64 = meta
        .rsplit(';')
        .next()
        .is_some_and(|p| p.eq_ignore_ascii_case("base64"));
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(data).collect();
    if !is_b64 {
        return Ok(bytes);
    }
    let cleaned: Vec<u8> = bytes
        .into_iter()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let trimmed: &[u8] = {
        let mut end = cleaned.len();
        while end > 0 && cleaned[end - 1] == b'=' {
            end -= 1;
        }
        &cleaned[..end]
    };
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .map_err(|e| format!("invalid data URL: bad base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls() {
        assert_eq!(
            decode_data_url("data:,Hello%2C%20world%21%0A").unwrap(),
            b"Hello, world!\n"
        );
        assert_eq!(
            decode_data_url("data:text/plain;base64,IyEvYmluL3NoCmVjaG8gaGkK").unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(decode_data_url("data:;base64,YQ==").unwrap(), b"a");
        assert!(decode_data_url("data:;base64,!!").is_err());
        assert!(decode_data_url("data:abc").is_err());
    }

    #[test]
    fn hashes() {
        let s = "sha256-2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert!(verify(s, b"hello").is_ok());
        let e = verify(s, b"hellO").unwrap_err();
        assert_eq!(e.field, "verification.hash");
        assert!(e.message.contains("hash verification failed"), "{e}");
        assert!(verify("md5-00", b"").is_err());
    }

    #[test]
    fn unsupported_schemes_are_named() {
        let mut f = Fetcher::new();
        for src in ["tftp://h/x", "s3://b/k", "gs://b/k", "arn:aws:s3:::b/k"] {
            let r = Resource {
                source: Some(src.into()),
                ..Default::default()
            };
            let e = f.fetch(&r).unwrap_err();
            assert!(e.message.contains("unsupported source scheme"), "{e}");
        }
    }

    #[test]
    fn gzip_and_hash_over_decompressed() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"hello").unwrap();
        let gz = enc.finish().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(gz);
        let r = Resource {
            source: Some(format!("data:;base64,{b64}")),
            compression: Some("gzip".into()),
            verification: ignition_config::types::Verification {
                hash: Some(
                    "sha256-2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
                        .into(),
                ),
            },
            ..Default::default()
        };
        assert_eq!(Fetcher::new().fetch(&r).unwrap(), b"hello");
    }
}
