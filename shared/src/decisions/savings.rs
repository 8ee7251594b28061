//! The cost-and-savings ledger: what the fleet ran, what it paid, what On-Demand would have cost.
//! Pure decisions first (prices, accrual, sums), unit-tested; the scheduled run and the API call
//! them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::InstanceState;
use crate::domain::{Day, InstanceFacts, LedgerDay, Market, Member, Usage};

/// On-Demand list prices (USD per hour, Linux, us-east-1) of the `large` size of common
/// families; other sizes scale with their vCPUs. The fallback when the Price List API cannot be
/// reached; a group can override any type (`on_demand_prices`).
const LIST_PRICES: &[(&str, f64)] = &[
    ("t3", 0.0832),
    ("t3a", 0.0752),
    ("t4g", 0.0672),
    ("m5", 0.096),
    ("m5a", 0.086),
    ("m5n", 0.119),
    ("m6i", 0.096),
    ("m6a", 0.0864),
    ("m6g", 0.077),
    ("m7i", 0.1008),
    ("m7a", 0.11592),
    ("m7g", 0.0816),
    ("c5", 0.085),
    ("c5a", 0.077),
    ("c6i", 0.085),
    ("c6a", 0.0765),
    ("c6g", 0.068),
    ("c7i", 0.08925),
    ("c7g", 0.0725),
    ("r5", 0.126),
    ("r5a", 0.113),
    ("r6i", 0.126),
    ("r6a", 0.1134),
    ("r6g", 0.1008),
    ("r7i", 0.1323),
    ("r7g", 0.1071),
];

/// How a size compares with `large`.
fn size_factor(size: &str) -> Option<f64> {
    Some(match size {
        "nano" => 1.0 / 16.0,
        "micro" => 1.0 / 8.0,
        "small" => 0.25,
        "medium" => 0.5,
        "large" => 1.0,
        "xlarge" => 2.0,
        "metal" => 48.0,
        other => other.strip_suffix("xlarge")?.parse::<f64>().ok()? * 2.0,
    })
}

/// The shipped list price of an instance type, if its family is known.
pub fn list_price(instance_type: &str) -> Option<f64> {
    let (family, size) = instance_type.split_once('.')?;
    let large = LIST_PRICES.iter().find(|(f, _)| *f == family)?.1;
    Some(large * size_factor(size)?)
}

/// Accrues the running members' hours since `since` (or since each was launched, if later).
/// A Spot hour costs its pool's Spot price (the On-Demand price when none is known: no saving is
/// claimed that cannot be shown); an On-Demand hour costs the On-Demand price.
pub fn accrue(
    members: &[Member],
    instances: &[InstanceFacts],
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    spot_prices: &HashMap<(String, String), f64>,
    on_demand_price: impl Fn(&str) -> Option<f64>,
) -> Usage {
    let mut usage = Usage::default();
    for member in members {
        let running =
            instances.iter().any(|i| i.instance_id == member.instance_id && i.state == Some(InstanceState::Running));
        let Some(on_demand) = on_demand_price(&member.instance_type).filter(|_| running) else { continue };
        let start = member.launched_at.map_or(since, |launched| launched.max(since));
        let hours = (now - start).num_milliseconds().max(0) as f64 / 3_600_000.0;
        let paid = match member.market {
            Market::Spot => {
                usage.spot_hours += hours;
                spot_prices
                    .get(&(member.instance_type.clone(), member.availability_zone.clone()))
                    .copied()
                    .unwrap_or(on_demand)
            }
            Market::OnDemand => {
                usage.on_demand_hours += hours;
                on_demand
            }
        };
        usage.cost += hours * paid;
        usage.on_demand_cost += hours * on_demand;
    }
    usage
}

/// Totals over a period, as `GET /savings` answers them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub spot_hours: f64,
    pub on_demand_hours: f64,
    pub cost: f64,
    pub on_demand_cost: f64,
    pub savings: f64,
    /// `None` when nothing ran.
    pub savings_percent: Option<f64>,
    pub interruptions: u64,
    pub fallbacks: u64,
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Totals {
    fn of<'a>(days: impl IntoIterator<Item = &'a LedgerDay>) -> Self {
        let mut usage = Usage::default();
        let (mut interruptions, mut fallbacks) = (0, 0);
        for day in days {
            usage.add(&day.usage);
            interruptions += day.interruptions;
            fallbacks += day.fallbacks;
        }
        let savings = usage.on_demand_cost - usage.cost;
        Totals {
            spot_hours: (usage.spot_hours * 100.0).round() / 100.0,
            on_demand_hours: (usage.on_demand_hours * 100.0).round() / 100.0,
            cost: cents(usage.cost),
            on_demand_cost: cents(usage.on_demand_cost),
            savings: cents(savings),
            savings_percent: (usage.on_demand_cost > 0.0)
                .then(|| (savings / usage.on_demand_cost * 1000.0).round() / 10.0),
            interruptions,
            fallbacks,
        }
    }
}

/// `GET /savings`: per group and in total, and per day for the chart.
pub fn summary(ledgers: &BTreeMap<String, Vec<LedgerDay>>) -> serde_json::Value {
    let groups: Vec<serde_json::Value> = ledgers
        .iter()
        .map(|(group, days)| {
            let mut value = serde_json::to_value(Totals::of(days)).unwrap_or_default();
            value["group"] = serde_json::json!(group);
            value
        })
        .collect();
    let mut by_day: BTreeMap<Day, Vec<&LedgerDay>> = BTreeMap::new();
    for day in ledgers.values().flatten() {
        by_day.entry(day.day).or_default().push(day);
    }
    let days: Vec<serde_json::Value> = by_day
        .iter()
        .map(|(day, entries)| {
            let t = Totals::of(entries.iter().copied());
            serde_json::json!({"day": day, "cost": t.cost, "on_demand_cost": t.on_demand_cost, "savings": t.savings})
        })
        .collect();
    serde_json::json!({"groups": groups, "total": Totals::of(ledgers.values().flatten()), "days": days})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_prices_scale_with_size() {
        assert_eq!(list_price("m5.large"), Some(0.096));
        assert_eq!(list_price("m5.2xlarge"), Some(0.384));
        assert_eq!(list_price("t3.micro"), Some(0.0104));
        assert_eq!(list_price("x9.large"), None);
        assert_eq!(list_price("m5"), None);
    }

    fn member(id: &str, market: Market, hours_ago: i64, now: DateTime<Utc>) -> Member {
        let launched_at = Some(now - chrono::Duration::hours(hours_ago));
        Member { market, launched_at, fallen_back: market == Market::OnDemand, ..crate::fixtures::member(id) }
    }

    fn running(id: &str) -> InstanceFacts {
        crate::fixtures::instance(id)
    }

    #[test]
    fn an_hour_of_spot_and_one_of_on_demand() {
        let now = Utc::now();
        let members = [
            member("i-spot", Market::Spot, 5, now),
            member("i-od", Market::OnDemand, 5, now),
            member("i-gone", Market::Spot, 5, now),
        ];
        let spot = HashMap::from([(("m5.large".to_string(), "us-east-1a".to_string()), 0.03)]);
        let usage = accrue(
            &members,
            &[running("i-spot"), running("i-od")],
            now - chrono::Duration::hours(1),
            now,
            &spot,
            list_price,
        );
        assert_eq!((usage.spot_hours, usage.on_demand_hours), (1.0, 1.0), "i-gone is not running");
        assert!((usage.cost - (0.03 + 0.096)).abs() < 1e-9);
        assert!((usage.on_demand_cost - 0.192).abs() < 1e-9);
    }

    #[test]
    fn the_summary_adds_groups_and_days() {
        let day = |d: &str, cost: f64, od: f64, i: u64| LedgerDay {
            day: d.parse().unwrap(),
            usage: Usage { spot_hours: 10.0, on_demand_hours: 0.0, cost, on_demand_cost: od },
            interruptions: i,
            fallbacks: 0,
        };
        let ledgers = BTreeMap::from([
            ("web".to_string(), vec![day("2026-11-20", 1.0, 4.0, 1), day("2026-11-21", 1.0, 4.0, 0)]),
            ("workers".to_string(), vec![day("2026-11-21", 2.0, 2.0, 0)]),
        ]);
        let s = summary(&ledgers);
        assert_eq!(s["total"]["savings"], 6.0);
        assert_eq!(s["total"]["savings_percent"], 60.0);
        assert_eq!(s["total"]["interruptions"], 1);
        assert_eq!(s["groups"][0]["group"], "web");
        assert_eq!(s["groups"][1]["savings_percent"], 0.0);
        assert_eq!(s["days"].as_array().unwrap().len(), 2);
        assert_eq!(
            s["days"][1],
            serde_json::json!({"day": "2026-11-21", "cost": 3.0, "on_demand_cost": 6.0, "savings": 3.0})
        );
    }
}
