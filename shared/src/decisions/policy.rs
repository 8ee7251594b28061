//! Policy patches: a group's policy with a patch applied, and the invariants every policy keeps
//! (ranges, what an asg group leaves to its Auto Scaling group, safe webhooks, sane prices).

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;

use crate::domain::{
    DeviceName, Group, GroupKind, MountPath, Policy, PolicyPatch, RebalancePolicy, VolumePolicy, Window,
};

/// Why a patch is refused: the field at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct Refusal {
    pub field: String,
    pub message: String,
}

impl Refusal {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

const SHORTEST: Duration = Duration::from_secs(60);
const LONGEST: Duration = Duration::from_secs(7 * 24 * 3600);

/// The group's policy with `patch` applied, checked: the policy's invariants hold or the patch is
/// refused, naming the field.
pub fn apply(patch: PolicyPatch, group: &Group) -> Result<Policy, Refusal> {
    let mut policy = group.policy.clone();
    if let Some(rebalance) = patch.rebalance {
        if matches!(group.kind, GroupKind::Asg(_)) && rebalance == RebalancePolicy::Replace {
            return Err(Refusal::new(
                "rebalance",
                "an asg group leaves replacement to the Auto Scaling group's Capacity Rebalancing: choose off or notify",
            ));
        }
        policy.rebalance = rebalance;
    }
    if let Some(base) = patch.on_demand_base {
        match &group.kind {
            GroupKind::Asg(_) => {
                return Err(Refusal::new(
                    "on_demand_base",
                    "set OnDemandBaseCapacity on the Auto Scaling group itself",
                ));
            }
            GroupKind::Standalone(spec) if base > spec.capacity => {
                return Err(Refusal::new(
                    "on_demand_base",
                    format!("must be at most the group's capacity ({})", spec.capacity),
                ));
            }
            GroupKind::Standalone(_) => policy.on_demand_base = base,
        }
    }
    if let Some(fallback) = patch.fallback {
        policy.fallback = fallback;
    }
    if let Some(recovery) = patch.recovery {
        let r = &mut policy.recovery;
        for (field, value, target) in [
            ("recovery.cooldown", recovery.cooldown, &mut r.cooldown),
            ("recovery.backoff_base", recovery.backoff_base, &mut r.backoff_base),
            ("recovery.backoff_max", recovery.backoff_max, &mut r.backoff_max),
        ] {
            if let Some(value) = value {
                if !(SHORTEST..=LONGEST).contains(&value) {
                    return Err(Refusal::new(field, "must be between 1m and 7d"));
                }
                *target = value;
            }
        }
        if r.backoff_base > r.backoff_max {
            return Err(Refusal::new("recovery.backoff_base", "must not be longer than recovery.backoff_max"));
        }
        if let Some(windows) = recovery.windows {
            r.windows = windows
                .iter()
                .map(|w| Window::parse(&w.start, &w.end))
                .collect::<Result<_, _>>()
                .map_err(|e| Refusal::new("recovery.windows", e.to_string()))?;
        }
    }
    if let Some(images) = patch.images {
        if matches!(group.kind, GroupKind::Asg(_)) && images.enabled {
            return Err(Refusal::new(
                "images.enabled",
                "an asg group's images come from its launch template: spotkeeper refreshes standalone groups only",
            ));
        }
        if images.schedule < Duration::from_secs(3600) {
            return Err(Refusal::new("images.schedule", "must be at least 1h"));
        }
        if !(1..=20).contains(&images.keep) {
            return Err(Refusal::new("images.keep", "must be 1-20"));
        }
        if !(SHORTEST..=Duration::from_secs(24 * 3600)).contains(&images.probation) {
            return Err(Refusal::new("images.probation", "must be between 1m and 24h"));
        }
        policy.images = images;
    }
    if let Some(webhooks) = patch.webhooks {
        if webhooks.len() > 10 {
            return Err(Refusal::new("webhooks", "at most 10 webhooks a group"));
        }
        for (i, webhook) in webhooks.iter().enumerate() {
            webhook.check().map_err(|m| Refusal::new(format!("webhooks[{i}]"), m))?;
        }
        policy.webhooks = webhooks;
    }
    if let Some(volumes) = patch.volumes {
        check_volumes(&volumes)?;
        policy.volumes = volumes;
    }
    if let Some(prices) = patch.on_demand_prices {
        check_prices(&prices)?;
        policy.on_demand_prices = prices;
    }
    Ok(policy)
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

fn check_prices(prices: &BTreeMap<String, f64>) -> Result<(), Refusal> {
    if prices.len() > MAX_PRICES {
        return Err(Refusal::new("on_demand_prices", format!("at most {MAX_PRICES} instance types")));
    }
    for (instance_type, price) in prices {
        if !instance_type_like(instance_type) {
            let shown: String = instance_type.chars().take(40).collect();
            return Err(Refusal::new("on_demand_prices", format!("{shown:?} is not an instance type (like m5.large)")));
        }
        if !(price.is_finite() && *price > 0.0 && *price <= HIGHEST_PRICE) {
            return Err(Refusal::new(
                format!("on_demand_prices.{instance_type}"),
                format!("must be a price in USD per hour, above 0 and at most {HIGHEST_PRICE}"),
            ));
        }
    }
    Ok(())
}

fn check_volumes(v: &VolumePolicy) -> Result<(), Refusal> {
    let range = |field: &str, value: u32, low: u32, high: u32| {
        if (low..=high).contains(&value) {
            Ok(())
        } else {
            Err(Refusal::new(format!("volumes.{field}"), format!("must be {low}-{high}")))
        }
    };
    range("threshold_percent", v.threshold_percent, 1, 99)?;
    range("growth_percent", v.growth_percent, 1, 500)?;
    range("min_step_gib", v.min_step_gib, 1, 16_384)?;
    // The largest EBS volume is 64 TiB.
    range("max_size_gib", v.max_size_gib, 1, 65_536)?;
    range("max_per_day", v.max_per_day, 1, 24)?;
    if v.min_interval < SHORTEST {
        return Err(Refusal::new(
            "volumes.min_interval",
            "must be at least 1m (EBS itself allows one modification per volume every 6h)",
        ));
    }
    for (path, device) in &v.path_devices {
        MountPath::try_from(path.as_str()).map_err(|m| Refusal::new("volumes.path_devices", m))?;
        DeviceName::try_from(device.as_str()).map_err(|_| {
            Refusal::new("volumes.path_devices", format!("{device:?} is not a device name (like /dev/sdf)"))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::{AsgSpec, GroupName};

    fn group(kind: GroupKind) -> Group {
        Group::new(GroupName::try_from("web".to_string()).unwrap(), kind, chrono::Utc::now())
    }

    fn asg() -> Group {
        group(GroupKind::Asg(AsgSpec { asg_name: "workers".into() }))
    }

    fn standalone() -> Group {
        group(GroupKind::Standalone(Box::new(crate::fixtures::standalone_spec())))
    }

    fn patched(group: &Group, patch: Value) -> Result<Policy, Refusal> {
        apply(serde_json::from_value(patch).unwrap(), group)
    }

    #[test]
    fn refusals_name_the_field_at_fault() {
        let capacity = match &standalone().kind {
            GroupKind::Standalone(spec) => spec.capacity,
            GroupKind::Asg(_) => unreachable!(),
        };
        let table: &[(&str, Group, Value, &str)] = &[
            ("asg replaces nothing itself", asg(), json!({"rebalance": "replace"}), "rebalance"),
            ("asg base is the ASG's", asg(), json!({"on_demand_base": 1}), "on_demand_base"),
            ("base above capacity", standalone(), json!({"on_demand_base": capacity + 1}), "on_demand_base"),
            ("cooldown too short", asg(), json!({"recovery": {"cooldown": "30s"}}), "recovery.cooldown"),
            ("backoff too long", asg(), json!({"recovery": {"backoff_max": "8d"}}), "recovery.backoff_max"),
            (
                "base above max",
                asg(),
                json!({"recovery": {"backoff_base": "2h", "backoff_max": "1h"}}),
                "recovery.backoff_base",
            ),
            (
                "window unreadable",
                asg(),
                json!({"recovery": {"windows": [{"start": "25:00", "end": "02:00"}]}}),
                "recovery.windows",
            ),
            ("asg images", asg(), json!({"images": {"enabled": true}}), "images.enabled"),
            ("images too often", standalone(), json!({"images": {"schedule": "30m"}}), "images.schedule"),
            ("images keep none", standalone(), json!({"images": {"keep": 0}}), "images.keep"),
            ("probation too long", standalone(), json!({"images": {"probation": "2d"}}), "images.probation"),
            (
                "too many webhooks",
                asg(),
                json!({"webhooks": (0..11).map(|i| json!({"url": format!("https://h{i}.example.com"), "secret": "0123456789abcdef"})).collect::<Vec<_>>()}),
                "webhooks",
            ),
            (
                "webhook to metadata",
                asg(),
                json!({"webhooks": [{"url": "https://169.254.169.254/", "secret": "0123456789abcdef"}]}),
                "webhooks[0]",
            ),
            (
                "threshold 100",
                standalone(),
                json!({"volumes": {"threshold_percent": 100}}),
                "volumes.threshold_percent",
            ),
            ("volume interval", standalone(), json!({"volumes": {"min_interval": "10s"}}), "volumes.min_interval"),
            (
                "device name",
                standalone(),
                json!({"volumes": {"path_devices": {"/data": "sdf"}}}),
                "volumes.path_devices",
            ),
            ("price zero", asg(), json!({"on_demand_prices": {"m5.large": 0}}), "on_demand_prices.m5.large"),
            ("price negative", asg(), json!({"on_demand_prices": {"m5.large": -1.0}}), "on_demand_prices.m5.large"),
            ("price absurd", asg(), json!({"on_demand_prices": {"m5.large": 1e9}}), "on_demand_prices.m5.large"),
            ("not a type", asg(), json!({"on_demand_prices": {"M5 large": 0.05}}), "on_demand_prices"),
            ("family only", asg(), json!({"on_demand_prices": {"m5": 0.05}}), "on_demand_prices"),
        ];
        for (case, group, patch, field) in table {
            let refusal = patched(group, patch.clone()).expect_err(case);
            assert_eq!(refusal.field, *field, "{case}: {refusal}");
            assert!(!refusal.message.is_empty(), "{case}");
        }
    }

    #[test]
    fn accepted_patches_change_what_they_name() {
        type Case = (&'static str, Group, Value, fn(&Policy) -> bool);
        let table: &[Case] = &[
            ("fallback off", asg(), json!({"fallback": false}), |p| !p.fallback),
            ("asg notify", asg(), json!({"rebalance": "notify"}), |p| p.rebalance == RebalancePolicy::Notify),
            ("standalone replace", standalone(), json!({"rebalance": "replace"}), |p| {
                p.rebalance == RebalancePolicy::Replace
            }),
            ("base", standalone(), json!({"on_demand_base": 1}), |p| p.on_demand_base == 1),
            ("cooldown", asg(), json!({"recovery": {"cooldown": "1h"}}), |p| {
                p.recovery.cooldown == Duration::from_secs(3600)
            }),
            ("prices", asg(), json!({"on_demand_prices": {"m5.large": 0.05, "u-6tb1.metal": 44}}), |p| {
                p.on_demand_prices.get("m5.large") == Some(&0.05)
            }),
            ("prices cleared", asg(), json!({"on_demand_prices": {}}), |p| p.on_demand_prices.is_empty()),
            ("nothing", asg(), json!({}), |p| *p == asg().policy),
        ];
        for (case, group, patch, holds) in table {
            let policy = patched(group, patch.clone()).unwrap_or_else(|r| panic!("{case}: {r}"));
            assert!(holds(&policy), "{case}: {policy:?}");
        }
    }
}
