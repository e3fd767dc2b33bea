//! Body of `POST /v1/report`: how an update attempt ended on a node. The agent sends it
//! and the update server stores it, so the wire type lives here, beside the other
//! update metadata both sides share.

use serde::{Deserialize, Serialize};

/// Outcome of one update attempt, as reported by a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Outcome {
    /// The node booted the new release and stayed on it.
    #[serde(rename = "success")]
    Success,
    /// The node booted the new release and went back to the previous one.
    #[serde(rename = "rolled-back")]
    RolledBack,
    /// The new release could not even be staged.
    #[serde(rename = "failed-to-deploy")]
    FailedToDeploy,
}

impl Outcome {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::RolledBack => "rolled-back",
            Outcome::FailedToDeploy => "failed-to-deploy",
        }
    }

    /// The outcome named `s` on the wire, if any.
    pub fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Success,
            Outcome::RolledBack,
            Outcome::FailedToDeploy,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// Body of `POST /v1/report`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeReport {
    /// Reporting node (Zincati's `node_uuid`).
    pub node_uuid: String,
    /// Stream the node follows.
    pub stream: String,
    /// Release the node updated from.
    pub from: String,
    /// Release the node tried to update to.
    pub to: String,
    /// What happened.
    pub outcome: Outcome,
}
