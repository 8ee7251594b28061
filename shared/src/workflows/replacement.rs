//! Replacements for a standalone group's members: one launch request per group (the request
//! first, on its own, so nothing delays it), then the records — the new members, their
//! `replaces` tags, pool health and the group's fallback.

use chrono::{DateTime, Duration, Utc};

pub use crate::decisions::plan::token;
use crate::decisions::plan::{self, AVOID_POOL_MINUTES};
use crate::decisions::recovery;
use crate::domain::InstanceState;
pub use crate::domain::{Attempt, LaunchPlan, Old};
use crate::domain::{Group, LaunchedInstance, Member, PoolHealth, Replaced, Role, StandaloneSpec};
use crate::runtime::Deps;
use crate::runtime::Error;
use crate::workflows::launch::{Launch, launch};

/// What a launch produced, paired up.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Each replaced instance with its new member.
    pub pairs: Vec<(Old, Member)>,
    /// New members that replace nothing (the `extra` ones).
    pub added: Vec<Member>,
    /// Instances EC2 placed no replacement for.
    pub unplaced: Vec<Old>,
}

/// How many of the replacements for `leaving` go On-Demand so `group` keeps its On-Demand base.
/// Only a group that has a base reads its members for it.
pub async fn on_demand_for(deps: &Deps, group: &Group, leaving: &[&str]) -> Result<u32, Error> {
    let base = group.policy.on_demand_base;
    if base == 0 {
        return Ok(0);
    }
    let members = deps.store.members(&group.name).await?;
    Ok(recovery::on_demand_replacing(base, &members, leaving))
}

/// Sends the group's launch: nothing else happens before it.
pub async fn launch_for(deps: &Deps, group: &Group, plan: &LaunchPlan) -> Result<Launch, Error> {
    Ok(launch(&deps.clients.ec2, &group.name, plan).await?)
}

fn new_member(
    spec: &StandaloneSpec,
    new: &LaunchedInstance,
    fell_back: bool,
    replaces: Option<Replaced>,
    now: DateTime<Utc>,
) -> Member {
    let zone = spec
        .subnets
        .iter()
        .find(|s| Some(&s.id) == new.subnet_id.as_ref())
        .map(|s| s.availability_zone.clone())
        .unwrap_or_default();
    Member {
        instance_id: new.instance_id.clone(),
        market: new.market,
        instance_type: new.instance_type.clone(),
        availability_zone: zone,
        subnet_id: new.subnet_id.clone(),
        state: InstanceState::Pending,
        state_at: None,
        launched_at: Some(now),
        fallen_back: fell_back,
        replaces,
        role: Role::Serving,
        version: 0,
    }
}

/// Records what a launch produced. Failures here are logged, not returned: the instances run,
/// and the next reconcile adopts any that were not recorded (they carry the group's tag).
pub async fn record(
    deps: &Deps,
    group_config: &Group,
    plan: &LaunchPlan,
    launched: &Launch,
    health: &PoolHealth,
    now: DateTime<Utc>,
) -> Recorded {
    let group = &group_config.name;
    let mut instances = launched.instances.iter();
    let mut recorded = Recorded::default();
    for old in &plan.olds {
        match instances.next() {
            Some(new) => {
                let replaces =
                    Replaced { instance_id: old.instance_id.clone(), warned_at: old.since, reason: plan.reason };
                let member =
                    new_member(&plan.spec, new, launched.fell_back.contains(&new.instance_id), Some(replaces), now);
                recorded.pairs.push((old.clone(), member));
            }
            None => recorded.unplaced.push(old.clone()),
        }
    }
    recorded.added = instances
        .map(|new| new_member(&plan.spec, new, launched.fell_back.contains(&new.instance_id), None, now))
        .collect();

    let members: Vec<Member> =
        recorded.pairs.iter().map(|(_, m)| m.clone()).chain(recorded.added.iter().cloned()).collect();
    if let Err(err) = deps.store.add_members(group_config, &members).await {
        tracing::error!(group = %group, error = %err, "could not record the new members; the next reconcile adopts them by tag");
    }
    // Avoid the pools being left, and those that had no capacity, for a while.
    let avoid = plan::pools_to_avoid(plan.reason, &plan.olds, &plan.pools, &launched.errors);
    if let Err(err) = deps.store.avoid_pools(&avoid, now + Duration::minutes(AVOID_POOL_MINUTES), health, now).await {
        tracing::error!(group = %group, error = %err, "could not record pool health");
    }
    let day = crate::domain::Day::of(now);
    let fell_back = members.iter().filter(|m| m.fallen_back).count() as u64;
    if fell_back > 0 {
        metrics::counter!("Fallbacks", "group" => group.to_string()).increment(fell_back);
        if let Err(err) = deps.store.count(group, day, crate::adapters::store::Counted::Fallback, fell_back).await {
            tracing::error!(group = %group, error = %err, "could not count the fallbacks in the ledger");
        }
    }
    if members.iter().any(|m| m.fallen_back) {
        let noted = deps
            .store
            .update_group(group, |g| recovery::note_fallback(g, "no Spot capacity in any pool", now, None))
            .await;
        if let Err(err) = noted {
            tracing::error!(group = %group, error = %err, "could not record the fallback; the next scheduled run notices it");
        }
    }
    recorded
}
