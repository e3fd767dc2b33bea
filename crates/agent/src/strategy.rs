//! Update strategies: when a staged update may be finalized
//! (coreos/zincati:src/strategy). Errors count as "not now", as upstream.

use std::time::Duration;

use jiff::Timestamp;

use crate::config::StrategyConfig;
use crate::status::Hold;
use crate::weekly::Calendar;

/// A configured strategy, ready to answer.
#[derive(Debug, Clone)]
pub enum Strategy {
    /// Finalize as soon as staged.
    Immediate,
    /// Finalize inside a maintenance window.
    Periodic(Calendar),
    /// Finalize once the FleetLock server grants a slot.
    FleetLock(fleetlock::client::Client),
}

impl Strategy {
    /// Builds the strategy; `fleet_lock` gets a client for node `id` of `group`, with
    /// `expand` substituting URL variables.
    pub fn new(
        cfg: &StrategyConfig,
        id: &str,
        group: &str,
        expand: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Strategy, String> {
        Ok(match cfg {
            StrategyConfig::Immediate => Strategy::Immediate,
            StrategyConfig::Periodic(c) => Strategy::Periodic(c.clone()),
            StrategyConfig::FleetLock { base_url } => {
                let url = expand(base_url)?;
                // Zincati allows a FleetLock call up to 30 minutes; a stalled
                // server should not stall the agent that long.
                let c = fleetlock::client::Client::new(&url, id, group, Duration::from_secs(120))
                    .map_err(|e| format!("updates.fleet_lock.base_url: {e}"))?;
                Strategy::FleetLock(c)
            }
        })
    }

    /// Zincati's name.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Immediate => "immediate",
            Strategy::Periodic(_) => "periodic",
            Strategy::FleetLock(_) => "fleet_lock",
        }
    }

    /// Reports that the node is up and healthy (fleet_lock: gives the slot back).
    pub async fn report_steady(&self) -> Result<(), String> {
        match self {
            Strategy::FleetLock(c) => c
                .steady_state()
                .await
                .map_err(|e| format!("lock-manager steady-state failure: {e}")),
            _ => Ok(()),
        }
    }

    /// Whether the staged update may be finalized at `now`; otherwise what holds it.
    pub async fn can_finalize(&self, now: Timestamp) -> Result<(), Hold> {
        match self {
            Strategy::Immediate => Ok(()),
            Strategy::Periodic(cal) => {
                if cal.is_open(now) {
                    Ok(())
                } else {
                    Err(Hold::WindowClosed {
                        next_window: cal.next_open(now).map(|z| z.to_string()),
                    })
                }
            }
            Strategy::FleetLock(c) => c.pre_reboot().await.map_err(|e| Hold::LockBusy {
                detail: e.to_string(),
            }),
        }
    }
}
