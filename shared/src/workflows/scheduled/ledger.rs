//! The savings ledger: every group's hours since the last run, priced and added to today's.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::decisions::savings;
use crate::domain::{Day, Group, GroupName, InstanceFacts, Member, Usage};
use crate::runtime::{Deps, Error};

/// What one group's ledger gained this run.
#[derive(Debug, Serialize)]
pub struct Accrued {
    pub group: GroupName,
    pub day: Day,
    pub usage: Usage,
}

/// On-Demand prices of these types: today's cached price, or the Price List API's, or (when it is
/// out of reach) the list price shipped with spotkeeper; what is found is cached for the day, so a
/// failing API is not asked again every run.
async fn on_demand_prices(deps: &Deps, types: &[String], now: DateTime<Utc>) -> HashMap<String, f64> {
    let day = Day::of(now);
    let region = &deps.clients.region;
    let mut prices = HashMap::new();
    for instance_type in types {
        if let Some(price) = deps.store.cached_price(region, instance_type, day).await.ok().flatten() {
            prices.insert(instance_type.clone(), price);
            continue;
        }
        let asked = deps.clients.pricing.on_demand_price(instance_type, region).await;
        let price = match asked {
            Ok(Some(price)) => Some(price),
            Ok(None) => savings::list_price(instance_type),
            Err(err) => {
                tracing::info!(instance_type, error = %err, "the Price List API is out of reach; using the shipped list price");
                savings::list_price(instance_type)
            }
        };
        if let Some(price) = price {
            if let Err(err) = deps.store.cache_price(region, instance_type, day, price, now).await {
                tracing::warn!(error = %err, "could not cache a price");
            }
            prices.insert(instance_type.clone(), price);
        }
    }
    prices
}

/// Accrues every group's hours since the last run into its ledger for today: one Spot price
/// call for all pools, On-Demand prices cached for the day.
pub(super) async fn accrue(
    deps: &Deps,
    groups: &[Group],
    members: &[Vec<Member>],
    known: &[InstanceFacts],
    now: DateTime<Utc>,
) -> Result<Vec<Accrued>, Error> {
    let mut types: Vec<String> = members.iter().flatten().map(|m| m.instance_type.clone()).collect();
    types.sort();
    types.dedup();
    let spot = deps.clients.ec2.spot_prices(&types, now).await.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "no Spot prices this run: Spot hours are priced On-Demand (no saving claimed)");
        HashMap::new()
    });
    let on_demand = on_demand_prices(deps, &types, now).await;
    let day = Day::of(now);
    let mut accrued = Vec::new();
    for (group, members) in groups.iter().zip(members) {
        let since = group.status.accrued_at.unwrap_or(now);
        let price = |t: &str| group.policy.on_demand_prices.get(t).or(on_demand.get(t)).copied();
        let usage = savings::accrue(members, known, since, now, &spot, price);
        if usage.spot_hours + usage.on_demand_hours > 0.0 {
            deps.store.add_usage(&group.name, day, &usage).await?;
        }
        deps.store.update_group(&group.name, |g| g.status.accrued_at = Some(now)).await?;
        accrued.push(Accrued { group: group.name.clone(), day, usage });
    }
    Ok(accrued)
}
