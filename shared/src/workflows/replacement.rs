//! Replacements for a standalone group's members: one launch request per group (the request
//! first, on its own, so nothing delays it), then the records — the new members, their
//! `replaces` tags, pool health and the group's fallback.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::decisions::plan::{self, AVOID_POOL_MINUTES};
use crate::decisions::recovery;
pub use crate::domain::{Attempt, Old};
use crate::domain::{
    GROUP_TAG, Group, LaunchedInstance, Member, Pool, PoolHealth, REPLACES_TAG, Reason, Replaced, StandaloneSpec,
};
use crate::runtime::Deps;
use crate::runtime::Error;
use crate::workflows::launch::{Launch, Order, launch};

/// One launch for a group: a replacement per `olds`, plus `extra` new instances (to fill the
/// group up to its capacity).
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub group: &'a Group,
    pub spec: &'a StandaloneSpec,
    pub pools: Vec<Pool>,
    pub olds: Vec<Old>,
    pub extra: u32,
    pub reason: Reason,
    /// How many of the new instances go On-Demand from the start (to keep the group's base).
    pub on_demand: u32,
    /// Launch On-Demand when Spot has no capacity.
    pub fallback: bool,
    /// Same work, same token: a retried request launches nothing twice.
    pub token: String,
}

impl Attempt {
    pub fn of(request: &Request<'_>, events: Vec<String>) -> Self {
        Self {
            token: request.token.clone(),
            spec: request.spec.clone(),
            pools: request.pools.clone(),
            olds: request.olds.clone(),
            events,
            extra: request.extra,
            reason: request.reason,
            on_demand: request.on_demand,
            fallback: request.fallback,
        }
    }

    /// The same request again, for `group` (its current configuration; the launch itself
    /// uses the attempt's own).
    pub fn request<'a>(&'a self, group: &'a Group) -> Request<'a> {
        Request {
            group,
            spec: &self.spec,
            pools: self.pools.clone(),
            olds: self.olds.clone(),
            extra: self.extra,
            reason: self.reason,
            on_demand: self.on_demand,
            fallback: self.fallback,
            token: self.token.clone(),
        }
    }
}

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

/// A client token from the ids of the work it stands for.
pub fn token<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut ids: Vec<&str> = ids.into_iter().collect();
    ids.sort_unstable();
    hex::encode(&Sha256::digest(ids.join(",").as_bytes())[..16])
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

/// Sends the launch request: nothing else happens before it.
pub async fn launch_for(deps: &Deps, request: &Request<'_>) -> Result<Launch, Error> {
    let mut tags = vec![
        (GROUP_TAG.to_string(), request.group.name.to_string()),
        ("Name".to_string(), format!("spotkeeper-{}", request.group.name)),
    ];
    // One request can carry many instances but only one set of tags: a lone replacement is
    // tagged with what it replaces; several are paired in the table only (a tag call each would
    // spend EC2's mutating-call budget just when a mass interruption needs it).
    if let ([only], 0) = (request.olds.as_slice(), request.extra) {
        tags.push((REPLACES_TAG.to_string(), only.instance_id.clone()));
    }
    let order = Order {
        template: &request.spec.launch_template,
        pools: &request.pools,
        count: u32::try_from(request.olds.len()).unwrap_or(u32::MAX).saturating_add(request.extra),
        on_demand: request.on_demand,
        tags,
        client_token: &request.token,
        fallback: request.fallback,
    };
    Ok(launch(&deps.clients.ec2, &order).await?)
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
        state: "pending".into(),
        state_at: None,
        launched_at: Some(now),
        fallen_back: fell_back,
        replaces,
        interrupted: None,
        retiring: None,
        version: 0,
    }
}

/// Records what a launch produced. Failures here are logged, not returned: the instances run,
/// and the next reconcile adopts any that were not recorded (they carry the group's tag).
pub async fn record(
    deps: &Deps,
    request: &Request<'_>,
    launched: &Launch,
    health: &PoolHealth,
    now: DateTime<Utc>,
) -> Recorded {
    let group = &request.group.name;
    let mut instances = launched.instances.iter();
    let mut recorded = Recorded::default();
    for old in &request.olds {
        match instances.next() {
            Some(new) => {
                let replaces =
                    Replaced { instance_id: old.instance_id.clone(), warned_at: old.since, reason: request.reason };
                let member =
                    new_member(request.spec, new, launched.fell_back.contains(&new.instance_id), Some(replaces), now);
                recorded.pairs.push((old.clone(), member));
            }
            None => recorded.unplaced.push(old.clone()),
        }
    }
    recorded.added = instances
        .map(|new| new_member(request.spec, new, launched.fell_back.contains(&new.instance_id), None, now))
        .collect();

    let members: Vec<Member> =
        recorded.pairs.iter().map(|(_, m)| m.clone()).chain(recorded.added.iter().cloned()).collect();
    if let Err(err) = deps.store.add_members(request.group, &members).await {
        tracing::error!(group = %group, error = %err, "could not record the new members; the next reconcile adopts them by tag");
    }
    // Avoid the pools being left, and those that had no capacity, for a while.
    let leaving_risky_pools = matches!(request.reason, Reason::Interruption | Reason::Rebalance);
    let mut avoid: Vec<Pool> =
        request.olds.iter().filter(|_| leaving_risky_pools).filter_map(|o| o.pool.clone()).collect();
    for error in launched.errors.iter().filter(|e| plan::is_capacity_error(&e.code)) {
        match &error.pool {
            Some((instance_type, subnet)) => avoid.extend(
                request.pools.iter().filter(|p| &p.instance_type == instance_type && &p.subnet_id == subnet).cloned(),
            ),
            None => avoid.extend(request.pools.iter().cloned()),
        }
    }
    avoid.sort_by_key(Pool::key);
    avoid.dedup();
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
