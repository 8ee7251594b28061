//! `PATCH /groups/{name}`: the policy patch, applied to a group's policy and checked.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use spotkeeper::domain::{Group, GroupKind, ImagePolicy, Policy, RebalancePolicy, VolumePolicy, Webhook, Window};

use crate::reply::ApiError;

/// `PATCH /groups/{name}`: the policy fields to change; what is left out stays.
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

/// A recovery window as written, `HH:MM` each end: read into a [`Window`] by the patch, so a bad
/// one is refused as `recovery.windows` whichever end is wrong.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowPatch {
    pub start: String,
    pub end: String,
}

const SHORTEST: Duration = Duration::from_secs(60);
const LONGEST: Duration = Duration::from_secs(7 * 24 * 3600);

impl PolicyPatch {
    /// The group's policy with this patch applied, checked.
    pub fn apply(self, group: &Group) -> Result<Policy, ApiError> {
        let mut policy = group.policy.clone();
        if let Some(rebalance) = self.rebalance {
            if matches!(group.kind, GroupKind::Asg(_)) && rebalance == RebalancePolicy::Replace {
                return Err(ApiError::invalid(
                    "rebalance",
                    "an asg group leaves replacement to the Auto Scaling group's Capacity Rebalancing: choose off or notify",
                ));
            }
            policy.rebalance = rebalance;
        }
        if let Some(base) = self.on_demand_base {
            match &group.kind {
                GroupKind::Asg(_) => {
                    return Err(ApiError::invalid(
                        "on_demand_base",
                        "set OnDemandBaseCapacity on the Auto Scaling group itself",
                    ));
                }
                GroupKind::Standalone(spec) if base > spec.capacity => {
                    return Err(ApiError::invalid(
                        "on_demand_base",
                        format!("must be at most the group's capacity ({})", spec.capacity),
                    ));
                }
                GroupKind::Standalone(_) => policy.on_demand_base = base,
            }
        }
        if let Some(fallback) = self.fallback {
            policy.fallback = fallback;
        }
        if let Some(recovery) = self.recovery {
            let r = &mut policy.recovery;
            for (field, value, target) in [
                ("recovery.cooldown", recovery.cooldown, &mut r.cooldown),
                ("recovery.backoff_base", recovery.backoff_base, &mut r.backoff_base),
                ("recovery.backoff_max", recovery.backoff_max, &mut r.backoff_max),
            ] {
                if let Some(value) = value {
                    if !(SHORTEST..=LONGEST).contains(&value) {
                        return Err(ApiError::invalid(field, "must be between 1m and 7d"));
                    }
                    *target = value;
                }
            }
            if r.backoff_base > r.backoff_max {
                return Err(ApiError::invalid("recovery.backoff_base", "must not be longer than recovery.backoff_max"));
            }
            if let Some(windows) = recovery.windows {
                r.windows = windows
                    .iter()
                    .map(|w| Window::parse(&w.start, &w.end))
                    .collect::<Result<_, _>>()
                    .map_err(|e| ApiError::invalid("recovery.windows", e.to_string()))?;
            }
        }
        if let Some(images) = self.images {
            if matches!(group.kind, GroupKind::Asg(_)) && images.enabled {
                return Err(ApiError::invalid(
                    "images.enabled",
                    "an asg group's images come from its launch template: spotkeeper refreshes standalone groups only",
                ));
            }
            if images.schedule < Duration::from_secs(3600) {
                return Err(ApiError::invalid("images.schedule", "must be at least 1h"));
            }
            if !(1..=20).contains(&images.keep) {
                return Err(ApiError::invalid("images.keep", "must be 1-20"));
            }
            if !(SHORTEST..=Duration::from_secs(24 * 3600)).contains(&images.probation) {
                return Err(ApiError::invalid("images.probation", "must be between 1m and 24h"));
            }
            policy.images = images;
        }
        if let Some(webhooks) = self.webhooks {
            if webhooks.len() > 10 {
                return Err(ApiError::invalid("webhooks", "at most 10 webhooks a group"));
            }
            for (i, webhook) in webhooks.iter().enumerate() {
                spotkeeper::adapters::webhooks::check(webhook)
                    .map_err(|m| ApiError::invalid(format!("webhooks[{i}]"), m))?;
            }
            policy.webhooks = webhooks;
        }
        if let Some(volumes) = self.volumes {
            check_volumes(&volumes)?;
            policy.volumes = volumes;
        }
        if let Some(prices) = self.on_demand_prices {
            check_prices(&prices)?;
            policy.on_demand_prices = prices;
        }
        Ok(policy)
    }
}

/// Instance types a group may price, at most.
const MAX_PRICES: usize = 100;
/// No instance costs more an hour (the largest cost a few hundred dollars).
const HIGHEST_PRICE: f64 = 10_000.0;

/// `m5.large`, `u-6tb1.metal`, `m7i.metal-24xl`: a family and a size, of a-z, 0-9 and '-'.
fn instance_type_like(name: &str) -> bool {
    let part = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    name.len() <= 32 && name.split_once('.').is_some_and(|(family, size)| part(family) && part(size))
}

fn check_prices(prices: &BTreeMap<String, f64>) -> Result<(), ApiError> {
    if prices.len() > MAX_PRICES {
        return Err(ApiError::invalid("on_demand_prices", format!("at most {MAX_PRICES} instance types")));
    }
    for (instance_type, price) in prices {
        if !instance_type_like(instance_type) {
            let shown: String = instance_type.chars().take(40).collect();
            return Err(ApiError::invalid(
                "on_demand_prices",
                format!("{shown:?} is not an instance type (like m5.large)"),
            ));
        }
        if !(price.is_finite() && *price > 0.0 && *price <= HIGHEST_PRICE) {
            return Err(ApiError::invalid(
                format!("on_demand_prices.{instance_type}"),
                format!("must be a price in USD per hour, above 0 and at most {HIGHEST_PRICE}"),
            ));
        }
    }
    Ok(())
}

fn check_volumes(v: &VolumePolicy) -> Result<(), ApiError> {
    let range = |field: &str, value: u32, low: u32, high: u32| {
        if (low..=high).contains(&value) {
            Ok(())
        } else {
            Err(ApiError::invalid(format!("volumes.{field}"), format!("must be {low}-{high}")))
        }
    };
    range("threshold_percent", v.threshold_percent, 1, 99)?;
    range("growth_percent", v.growth_percent, 1, 500)?;
    range("min_step_gib", v.min_step_gib, 1, 16_384)?;
    // The largest EBS volume is 64 TiB.
    range("max_size_gib", v.max_size_gib, 1, 65_536)?;
    range("max_per_day", v.max_per_day, 1, 24)?;
    if v.min_interval < SHORTEST {
        return Err(ApiError::invalid(
            "volumes.min_interval",
            "must be at least 1m (EBS itself allows one modification per volume every 6h)",
        ));
    }
    for (path, device) in &v.path_devices {
        spotkeeper::decisions::growth::check_path(path).map_err(|m| ApiError::invalid("volumes.path_devices", m))?;
        let device_ok =
            device.strip_prefix("/dev/").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !device_ok {
            return Err(ApiError::invalid(
                "volumes.path_devices",
                format!("{device:?} is not a device name (like /dev/sdf)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;
    use spotkeeper::domain::GroupName;

    use super::*;
    use crate::body::strict::from_value;

    #[test]
    fn on_demand_prices_are_checked() {
        let group = Group::new(
            GroupName::try_from("web".to_string()).unwrap(),
            GroupKind::Asg(spotkeeper::domain::AsgSpec { asg_name: "workers".into() }),
            chrono::Utc::now(),
        );
        let patch = |prices: serde_json::Value| from_value::<PolicyPatch>(json!({"on_demand_prices": prices}));
        let policy = patch(json!({"m5.large": 0.05, "u-6tb1.metal": 44})).unwrap().apply(&group).unwrap();
        assert_eq!(policy.on_demand_prices.get("m5.large"), Some(&0.05));
        for (prices, field) in [
            (json!({"m5.large": 0}), "on_demand_prices.m5.large"),
            (json!({"m5.large": -1.0}), "on_demand_prices.m5.large"),
            (json!({"m5.large": 1e9}), "on_demand_prices.m5.large"),
            (json!({"m5.large": "0.05"}), "on_demand_prices.m5.large"),
            (json!({"M5 large": 0.05}), "on_demand_prices"),
            (json!({"m5": 0.05}), "on_demand_prices"),
            (json!(["m5.large"]), "on_demand_prices"),
        ] {
            let err = patch(prices.clone()).and_then(|p| p.apply(&group)).unwrap_err();
            assert_eq!((err.status, err.field.as_deref()), (StatusCode::BAD_REQUEST, Some(field)), "{prices}");
        }
    }
}

/// Bad policy patches, generated: applying never panics, and every refusal names what is wrong.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use spotkeeper::domain::GroupName;

    use super::*;
    use crate::body::fuzzing::{self, explained, json};
    use crate::body::strict::from_value;

    proptest! {
        #![proptest_config(fuzzing::config())]

        #[test]
        fn policy_patches_never_panic(value in json()) {
            let group = Group::new(
                GroupName::try_from("web".to_string()).unwrap(),
                GroupKind::Asg(spotkeeper::domain::AsgSpec { asg_name: "workers".into() }),
                chrono::Utc::now(),
            );
            match from_value::<PolicyPatch>(value) {
                Ok(patch) => {
                    if let Err(err) = patch.apply(&group) {
                        prop_assert!(explained(&err));
                    }
                }
                Err(err) => prop_assert!(explained(&err)),
            }
        }
    }
}
