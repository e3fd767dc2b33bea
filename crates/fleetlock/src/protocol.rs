//! FleetLock wire format (coreos/zincati:docs/development/fleetlock/protocol.md).
//!
//! Requests are `POST <base>/v1/pre-reboot` and `POST <base>/v1/steady-state` with the
//! header `fleet-lock-protocol: true` and a body `{"client_params": {"id", "group"}}`.
//! Any 2xx is success; failures carry `{"kind", "value"}` where `kind` has bounded
//! cardinality because clients use it as a metric label.

use serde::{Deserialize, Serialize};

/// Path of the lock ("give me a reboot slot") endpoint.
pub const PRE_REBOOT_PATH: &str = "/v1/pre-reboot";
/// Path of the unlock ("I am back and healthy") endpoint.
pub const STEADY_STATE_PATH: &str = "/v1/steady-state";
/// The guard header every FleetLock request carries; it must equal `true`.
pub const PROTOCOL_HEADER: &str = "fleet-lock-protocol";

/// Request body of both protocol endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBody {
    /// Who asks, and for which group.
    pub client_params: ClientParams,
}

/// Client identity: a node id (Zincati sends its app-specific machine id) and a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientParams {
    /// Non-empty, case-sensitive node id.
    pub id: String,
    /// Reboot group, `^[a-zA-Z0-9.-]+$`.
    pub group: String,
}

impl ClientParams {
    /// Checks the identity as the protocol asks servers to: non-empty id, and a group
    /// matching `^[a-zA-Z0-9.-]+$`. The error text names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        validate_group(&self.group)?;
        if self.id.is_empty() {
            return Err("empty node ID".into());
        }
        Ok(())
    }
}

/// Checks a group name against `^[a-zA-Z0-9.-]+$`.
///
/// The restriction is what keeps group names safe as etcd key segments and SQL values
/// without escaping.
pub fn validate_group(group: &str) -> Result<(), String> {
    if group.is_empty() {
        return Err("empty group".into());
    }
    if let Some(c) = group
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '-'))
    {
        return Err(format!(
            "invalid group {group:?}: character {c:?} outside [a-zA-Z0-9.-]"
        ));
    }
    Ok(())
}

/// Error body: `{"kind": ..., "value": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-friendly, bounded set of values.
    pub kind: String,
    /// Human-friendly description, logged by clients.
    pub value: String,
}

/// Every error kind this server sends. airlock's kinds are kept verbatim so that
/// dashboards built on Zincati's `kind` label keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad header, bad JSON, empty or malformed id/group (400).
    InvalidClientIdentity,
    /// The group is not configured (400).
    UnknownGroup,
    /// The semaphore is full, or a compare-and-swap kept conflicting (500).
    FailedLock,
    /// Releasing failed (500).
    FailedUnlock,
    /// The store could not be reached or read (500).
    FailedSemInit,
    /// Admin endpoint called without the right bearer token (401).
    Unauthorized,
    /// Malformed admin request (400).
    InvalidRequest,
}

impl ErrorKind {
    /// The `kind` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidClientIdentity => "invalid_client_identity",
            ErrorKind::UnknownGroup => "unknown_group",
            ErrorKind::FailedLock => "failed_lock",
            ErrorKind::FailedUnlock => "failed_unlock",
            ErrorKind::FailedSemInit => "failed_sem_init",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::InvalidRequest => "invalid_request",
        }
    }

    /// The HTTP status airlock uses for this kind (semaphore full is a 500 there).
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidClientIdentity
            | ErrorKind::UnknownGroup
            | ErrorKind::InvalidRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::FailedLock | ErrorKind::FailedUnlock | ErrorKind::FailedSemInit => 500,
        }
    }

    /// All kinds, for metrics that must list each label value.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::InvalidClientIdentity,
        ErrorKind::UnknownGroup,
        ErrorKind::FailedLock,
        ErrorKind::FailedUnlock,
        ErrorKind::FailedSemInit,
        ErrorKind::Unauthorized,
        ErrorKind::InvalidRequest,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_syntax() {
        assert!(validate_group("default").is_ok());
        assert!(validate_group("mock-workers.v2").is_ok());
        assert!(validate_group("").unwrap_err().contains("empty group"));
        assert!(validate_group("a/b").unwrap_err().contains("'/'"));
        assert!(validate_group("a_b").is_err());
        assert!(validate_group("ä").is_err());
    }

    #[test]
    fn id_required() {
        let p = ClientParams {
            id: String::new(),
            group: "default".into(),
        };
        assert_eq!(p.validate().unwrap_err(), "empty node ID");
    }
}
