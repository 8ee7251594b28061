//! A group's behaviour and its documented defaults.

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveTime;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::GroupKind;

/// What a group does on a rebalance recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebalancePolicy {
    /// Record only.
    Off,
    /// Record and alert.
    Notify,
    /// Launch a replacement now and terminate the at-risk instance once it serves (standalone).
    Replace,
}

/// A UTC time range (it may wrap past midnight) in which recovery may run: held as times,
/// stored and written as `{"start": "HH:MM", "end": "HH:MM"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(with = "hh_mm")]
    pub start: NaiveTime,
    #[serde(with = "hh_mm")]
    pub end: NaiveTime,
}

/// Why two ends make no window.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BadWindow {
    #[error("{0:?} is not a UTC time of day HH:MM")]
    NotATime(String),
    #[error("window {0}-{1} is empty")]
    Empty(String, String),
}

impl Window {
    /// Reads a window from its two ends, `HH:MM` each; an empty one is refused.
    pub fn parse(start: &str, end: &str) -> Result<Window, BadWindow> {
        let window = Window { start: hh_mm::read(start)?, end: hh_mm::read(end)? };
        if window.start == window.end { Err(BadWindow::Empty(start.to_string(), end.to_string())) } else { Ok(window) }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start.format(hh_mm::FORMAT), self.end.format(hh_mm::FORMAT))
    }
}

/// A time of day as `HH:MM`, the way the API and the table write it.
mod hh_mm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::BadWindow;

    pub(super) const FORMAT: &str = "%H:%M";

    pub(super) fn read(text: &str) -> Result<NaiveTime, BadWindow> {
        NaiveTime::parse_from_str(text, FORMAT).map_err(|_| BadWindow::NotATime(text.to_string()))
    }

    pub(super) fn serialize<S: Serializer>(time: &NaiveTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&time.format(FORMAT))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveTime, D::Error> {
        read(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// How a group goes back to Spot after falling back to On-Demand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryPolicy {
    /// Wait this long after a fallback before the first attempt.
    #[serde(with = "humantime_serde", default = "defaults::cooldown")]
    pub cooldown: std::time::Duration,
    /// After a failed attempt, wait this long, doubling with each failure...
    #[serde(with = "humantime_serde", default = "defaults::backoff_base")]
    pub backoff_base: std::time::Duration,
    /// ...up to this.
    #[serde(with = "humantime_serde", default = "defaults::backoff_max")]
    pub backoff_max: std::time::Duration,
    /// When recovery may run (empty: any time).
    #[serde(default)]
    pub windows: Vec<Window>,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        Self {
            cooldown: defaults::cooldown(),
            backoff_base: defaults::backoff_base(),
            backoff_max: defaults::backoff_max(),
            windows: Vec::new(),
        }
    }
}

/// The documented defaults.
pub mod defaults {
    use std::time::Duration;
    pub fn cooldown() -> Duration {
        Duration::from_secs(45 * 60)
    }
    pub fn backoff_base() -> Duration {
        Duration::from_secs(15 * 60)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(4 * 3600)
    }
    pub fn threshold_percent() -> u32 {
        80
    }
    pub fn growth_percent() -> u32 {
        25
    }
    pub fn min_step_gib() -> u32 {
        10
    }
    pub fn max_size_gib() -> u32 {
        1024
    }
    pub fn max_per_day() -> u32 {
        4
    }
    pub fn min_interval() -> Duration {
        Duration::from_secs(6 * 3600)
    }
    pub fn image_schedule() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub fn image_keep() -> u32 {
        3
    }
    pub fn image_probation() -> Duration {
        Duration::from_secs(15 * 60)
    }
}

/// How a group's EBS volumes grow when their filesystems fill up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumePolicy {
    /// Grow when a filesystem is at least this full.
    #[serde(default = "defaults::threshold_percent")]
    pub threshold_percent: u32,
    /// Grow by this share of the size...
    #[serde(default = "defaults::growth_percent")]
    pub growth_percent: u32,
    /// ...and by at least this much.
    #[serde(default = "defaults::min_step_gib")]
    pub min_step_gib: u32,
    /// Never beyond this size.
    #[serde(default = "defaults::max_size_gib")]
    pub max_size_gib: u32,
    /// Mount path → EBS device name (`/data` → `/dev/sdf`); `/` is the root device unless set.
    #[serde(default)]
    pub path_devices: BTreeMap<String, String>,
    /// EBS allows a few modifications a day per volume...
    #[serde(default = "defaults::max_per_day")]
    pub max_per_day: u32,
    /// ...at least six hours apart.
    #[serde(with = "humantime_serde", default = "defaults::min_interval")]
    pub min_interval: std::time::Duration,
}

impl Default for VolumePolicy {
    fn default() -> Self {
        Self {
            threshold_percent: defaults::threshold_percent(),
            growth_percent: defaults::growth_percent(),
            min_step_gib: defaults::min_step_gib(),
            max_size_gib: defaults::max_size_gib(),
            path_devices: BTreeMap::default(),
            max_per_day: defaults::max_per_day(),
            min_interval: defaults::min_interval(),
        }
    }
}

/// How a standalone group keeps a recent image of itself, so replacements come back as the
/// instance was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePolicy {
    #[serde(default)]
    pub enabled: bool,
    /// How often a new image is made.
    #[serde(with = "humantime_serde", default = "defaults::image_schedule")]
    pub schedule: std::time::Duration,
    /// How many images to keep.
    #[serde(default = "defaults::image_keep")]
    pub keep: u32,
    /// Reboot the instance for a consistent image (off: no downtime).
    #[serde(default)]
    pub reboot: bool,
    /// A member launched from a new image that stops or dies this soon rolls the image back.
    #[serde(with = "humantime_serde", default = "defaults::image_probation")]
    pub probation: std::time::Duration,
}

impl Default for ImagePolicy {
    fn default() -> Self {
        Self {
            enabled: false,
            schedule: defaults::image_schedule(),
            keep: defaults::image_keep(),
            reboot: false,
            probation: defaults::image_probation(),
        }
    }
}

/// An outgoing webhook: lifecycle events POSTed as signed JSON. Its `Debug` hides the secret, so
/// a group or policy printed whole (in a log line, an error) never carries it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    /// The HMAC key of the `Spotkeeper-Signature` header (never shown by the API).
    pub secret: String,
    /// The events to send (empty: all).
    #[serde(default)]
    pub events: Vec<String>,
    /// Allow plain `http://` to a loopback address (for local use).
    #[serde(default)]
    pub allow_loopback_http: bool,
    /// Allow private, link-local and metadata addresses.
    #[serde(default)]
    pub allow_private: bool,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &"***")
            .field("events", &self.events)
            .field("allow_loopback_http", &self.allow_loopback_http)
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

/// A group's behaviour, set at registration and changed with `PATCH /groups/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub rebalance: RebalancePolicy,
    /// Members that always stay On-Demand.
    pub on_demand_base: u32,
    /// Fall back to On-Demand when Spot has no capacity.
    pub fallback: bool,
    pub recovery: RecoveryPolicy,
    #[serde(default)]
    pub volumes: VolumePolicy,
    #[serde(default)]
    pub images: ImagePolicy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    /// On-Demand prices (USD per hour) by instance type, over the Price List API's.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub on_demand_prices: std::collections::BTreeMap<String, f64>,
}

impl Policy {
    /// The defaults: standalone groups replace on rebalance, asg groups notify.
    pub fn default_for(kind: &GroupKind) -> Self {
        Self {
            rebalance: match kind {
                GroupKind::Asg(_) => RebalancePolicy::Notify,
                GroupKind::Standalone(_) => RebalancePolicy::Replace,
            },
            on_demand_base: 0,
            fallback: true,
            recovery: RecoveryPolicy::default(),
            volumes: VolumePolicy::default(),
            images: ImagePolicy::default(),
            webhooks: Vec::new(),
            on_demand_prices: BTreeMap::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_prints_without_its_secret() {
        let webhook = Webhook {
            url: "https://hooks.example.com/x".into(),
            secret: "whsec_0123456789abcdef".into(),
            events: Vec::new(),
            allow_loopback_http: false,
            allow_private: false,
        };
        let printed = format!("{webhook:?}");
        assert!(printed.contains("hooks.example.com") && !printed.contains("whsec"), "{printed}");
    }
}
