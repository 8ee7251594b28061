//! A change to a group's policy, as `PATCH /groups/{name}` carries it: what is left out stays.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ImagePolicy, RebalancePolicy, VolumePolicy, Webhook};

/// The policy fields to change; what is left out stays.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    pub rebalance: Option<RebalancePolicy>,
    pub on_demand_base: Option<u32>,
    pub fallback: Option<bool>,
    pub recovery: Option<RecoveryPatch>,
    /// Replaces the volume settings as a whole; fields left out take their defaults.
    pub volumes: Option<VolumePolicy>,
    /// Replaces the image settings as a whole; fields left out take their defaults.
    pub images: Option<ImagePolicy>,
    /// Replaces the group's outgoing webhooks.
    pub webhooks: Option<Vec<Webhook>>,
    /// Replaces the group's On-Demand prices (USD per hour by instance type) that the savings
    /// ledger uses over the Price List API's; `{}` clears them.
    pub on_demand_prices: Option<BTreeMap<String, f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryPatch {
    #[serde(default, with = "humantime_serde")]
    pub cooldown: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backoff_base: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backoff_max: Option<Duration>,
    pub windows: Option<Vec<WindowPatch>>,
}

/// A recovery window as written, `HH:MM` each end: read into a [`Window`](super::Window) by the
/// patch, so a bad one is refused as `recovery.windows` whichever end is wrong.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowPatch {
    pub start: String,
    pub end: String,
}
