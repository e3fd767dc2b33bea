//! Server configuration (TOML).
//!
//! ```toml
//! listen = "0.0.0.0:9090"
//! admin_token_file = "/etc/ferrocore/fleetlock-token"   # optional
//! lease_ttl_secs = 3600                                  # optional, off by default
//!
//! [tls]                                                  # optional
//! cert = "/etc/ferrocore/fleetlock.crt"
//! key = "/etc/ferrocore/fleetlock.key"
//!
//! [store]
//! kind = "sqlite"                                        # default
//! path = "/var/lib/ferrocore/fleetlock.sqlite"
//! # kind = "etcd"
//! # endpoints = ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
//! # ca_cert = "/etc/ferrocore/etcd-ca.pem"                # optional, https
//! # client_cert = "/etc/ferrocore/etcd-client.pem"        # optional, with client_key
//! # client_key = "/etc/ferrocore/etcd-client.key"
//!
//! [lock]                                                 # as in airlock
//! default_group_name = "default"
//! default_slots = 1
//! [[lock.groups]]
//! name = "workers"
//! slots = 2
//! ```
//!
//! Unknown keys are errors: airlock and Zincati silently ignore misspelt keys, which
//! users have been bitten by (coreos/airlock#81).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::protocol::validate_group;
use crate::store::{EtcdOptions, EtcdStore, SqliteStore, Store};
use crate::Error;

/// A configuration problem, naming the file and, for syntax errors, the line.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct ConfigError {
    /// The config file.
    pub path: String,
    /// What is wrong (toml's message includes line and column).
    pub msg: String,
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen address, `0.0.0.0:9090` (airlock's default port) if absent.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token for `/v1/status` and the admin endpoints.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// File holding the bearer token (trailing whitespace ignored); keeps the secret
    /// out of a world-readable config.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// Lease length: a holder that does not renew (by calling pre-reboot again)
    /// within this many seconds loses its slot. Off by default, as in the protocol.
    #[serde(default)]
    pub lease_ttl_secs: Option<u64>,
    /// Where semaphores are kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// Serve HTTPS instead of HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Groups and slots.
    #[serde(default)]
    pub lock: LockConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9090))
}

/// `[tls]`: PEM files of the server certificate (chain, leaf first) and its key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Private key file.
    pub key: PathBuf,
}

/// Store selection.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// Embedded SQLite file.
    Sqlite {
        /// Database file.
        #[serde(default = "default_db")]
        path: PathBuf,
    },
    /// etcd v3 cluster.
    Etcd {
        /// Member client URLs.
        endpoints: Vec<String>,
        /// Key prefix; airlock's by default so both can share a cluster.
        #[serde(default = "default_prefix")]
        prefix: String,
        /// Per-request timeout in milliseconds (airlock's `transaction_timeout_ms`).
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
        /// PEM file of the CA that signed the members' certificates.
        #[serde(default)]
        ca_cert: Option<PathBuf>,
        /// PEM client certificate for `--client-cert-auth` clusters.
        #[serde(default)]
        client_cert: Option<PathBuf>,
        /// PEM private key of `client_cert`.
        #[serde(default)]
        client_key: Option<PathBuf>,
    },
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Sqlite { path: default_db() }
    }
}

fn default_db() -> PathBuf {
    PathBuf::from("/var/lib/ferrocore/fleetlock.sqlite")
}
fn default_prefix() -> String {
    crate::store::DEFAULT_PREFIX.to_string()
}
fn default_timeout_ms() -> u64 {
    3000
}

impl StoreConfig {
    /// Opens the configured store.
    pub fn open(&self) -> Result<Box<dyn Store>, Error> {
        Ok(match self {
            StoreConfig::Sqlite { path } => Box::new(SqliteStore::open(path)?),
            StoreConfig::Etcd {
                endpoints,
                prefix,
                timeout_ms,
                ca_cert,
                client_cert,
                client_key,
            } => {
                let read = |p: &PathBuf, what: &str| {
                    std::fs::read(p)
                        .map_err(|e| Error::Etcd(format!("store.{what} {}: {e}", p.display())))
                };
                let ca_pem = ca_cert.as_ref().map(|p| read(p, "ca_cert")).transpose()?;
                // reqwest wants certificate chain and key in one PEM buffer.
                let client_identity_pem = match (client_cert, client_key) {
                    (Some(c), Some(k)) => {
                        let mut pem = read(c, "client_cert")?;
                        pem.push(b'\n');
                        pem.extend(read(k, "client_key")?);
                        Some(pem)
                    }
                    _ => None,
                };
                Box::new(EtcdStore::new(EtcdOptions {
                    endpoints: endpoints.clone(),
                    prefix: prefix.clone(),
                    request_timeout: Duration::from_millis(*timeout_ms),
                    ca_pem,
                    client_identity_pem,
                })?)
            }
        })
    }
}

/// `[lock]`, with airlock's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockConfig {
    /// Name of the group that always exists.
    #[serde(default = "default_group_name")]
    pub default_group_name: String,
    /// Slots of the default group and of groups without `slots`.
    #[serde(default = "default_slots")]
    pub default_slots: u64,
    /// Further groups.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            default_group_name: default_group_name(),
            default_slots: default_slots(),
            groups: Vec::new(),
        }
    }
}

fn default_group_name() -> String {
    "default".into()
}
fn default_slots() -> u64 {
    1
}

/// `[[lock.groups]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Group name, `^[a-zA-Z0-9.-]+$`.
    pub name: String,
    /// Slots; `default_slots` if absent.
    pub slots: Option<u64>,
}

impl LockConfig {
    /// Group name → slots, after validating names and rejecting duplicates.
    pub fn slots_by_group(&self) -> Result<BTreeMap<String, u64>, String> {
        let mut out = BTreeMap::new();
        validate_group(&self.default_group_name)
            .map_err(|e| format!("lock.default_group_name: {e}"))?;
        out.insert(self.default_group_name.clone(), self.default_slots);
        for (i, g) in self.groups.iter().enumerate() {
            validate_group(&g.name).map_err(|e| format!("lock.groups[{i}].name: {e}"))?;
            if g.name != self.default_group_name && out.contains_key(&g.name) {
                return Err(format!(
                    "lock.groups[{i}]: group {:?} defined twice",
                    g.name
                ));
            }
            out.insert(g.name.clone(), g.slots.unwrap_or(self.default_slots));
        }
        Ok(out)
    }
}

impl Config {
    /// Parses and validates a configuration; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let err = |msg: String| ConfigError {
            path: path.display().to_string(),
            msg,
        };
        let cfg: Config = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        cfg.lock.slots_by_group().map_err(err)?;
        if let StoreConfig::Etcd {
            endpoints,
            client_cert,
            client_key,
            ..
        } = &cfg.store
        {
            if client_cert.is_some() != client_key.is_some() {
                return Err(err(
                    "store.client_cert and store.client_key must be given together".into(),
                ));
            }
            if endpoints.is_empty() {
                return Err(err("store.endpoints: no etcd endpoints configured".into()));
            }
            if let Some(bad) = endpoints
                .iter()
                .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
            {
                return Err(err(format!(
                    "store.endpoints: {bad:?} is not an http:// or https:// URL"
                )));
            }
        }
        if cfg.admin_token.is_some() && cfg.admin_token_file.is_some() {
            return Err(err(
                "admin_token and admin_token_file are mutually exclusive".into(),
            ));
        }
        if cfg.lease_ttl_secs == Some(0) {
            return Err(err(
                "lease_ttl_secs: must be positive (omit it to disable leases)".into(),
            ));
        }
        Ok(cfg)
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        Config::parse(&text, path)
    }

    /// The admin token, read from `admin_token_file` if that is how it is given.
    pub fn admin_token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(file) = &self.admin_token_file {
            let t = std::fs::read_to_string(file).map_err(|e| ConfigError {
                path: file.display().to_string(),
                msg: format!("admin_token_file: {e}"),
            })?;
            let t = t.trim_end().to_string();
            if t.is_empty() {
                return Err(ConfigError {
                    path: file.display().to_string(),
                    msg: "admin_token_file: file is empty".into(),
                });
            }
            return Ok(Some(t));
        }
        Ok(self.admin_token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("test.toml"))
    }

    #[test]
    fn defaults_match_airlock() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.port(), 9090);
        let groups = c.lock.slots_by_group().unwrap();
        assert_eq!(
            groups.into_iter().collect::<Vec<_>>(),
            [("default".into(), 1)]
        );
        assert!(matches!(c.store, StoreConfig::Sqlite { .. }));
        assert_eq!(c.lease_ttl_secs, None);
    }

    #[test]
    fn groups_and_etcd() {
        let c = parse(
            r#"
listen = "127.0.0.1:3333"
[store]
kind = "etcd"
endpoints = ["http://127.0.0.1:2379"]
[lock]
default_slots = 2
[[lock.groups]]
name = "workers"
slots = 5
[[lock.groups]]
name = "controllers"
"#,
        )
        .unwrap();
        let g = c.lock.slots_by_group().unwrap();
        assert_eq!((g["default"], g["workers"], g["controllers"]), (2, 5, 2));
        match c.store {
            StoreConfig::Etcd {
                prefix, timeout_ms, ..
            } => assert_eq!((prefix.as_str(), timeout_ms), ("com.coreos.airlock", 3000)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse("[lock]\ndefault_slot = 3\n").unwrap_err().to_string();
        assert!(
            e.contains("test.toml") && e.contains("default_slot") && e.contains("line 2"),
            "{e}"
        );
        let e = parse("[[lock.groups]]\nname = \"a b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lock.groups[0].name"), "{e}");
        let e = parse("[[lock.groups]]\nname = \"w\"\n[[lock.groups]]\nname = \"w\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("defined twice"), "{e}");
        let e = parse("[store]\nkind = \"etcd\"\nendpoints = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no etcd endpoints"), "{e}");
        let e = parse("[store]\nkind = \"redis\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("redis"), "{e}");
        let e = parse(
            "[store]\nkind = \"etcd\"\nendpoints = [\"https://e:2379\"]\nclient_cert = \"c.pem\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("must be given together"), "{e}");
        let e = parse("lease_ttl_secs = 0\n").unwrap_err().to_string();
        assert!(e.contains("lease_ttl_secs"), "{e}");
    }
}
