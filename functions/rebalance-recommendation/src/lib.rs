//! `rebalance-recommendation`: EC2's early word that a Spot instance is at elevated risk of
//! interruption. Per the group's policy: `off` records it, `notify` records and alerts, and
//! `replace` (standalone groups) launches a replacement now; `instance-state` moves DNS and the
//! Elastic IP once it runs, then stops (to move data volumes) and terminates the at-risk one.
//! Never more than one rebalance replacement in flight per group.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use spotkeeper::event::{self, Batch, REBALANCE_RECOMMENDATION, RebalanceRecommendation};
use spotkeeper::fleet::{GroupKind, PoolHealth, Reason, RebalancePolicy, Retiring, StandaloneSpec};
use spotkeeper::history::History;
use spotkeeper::intake::{Claimed, Intake, intake, release, settle};
use spotkeeper::notify::{Alert, Severity};
use spotkeeper::replacement::{self, Old, Request};
use spotkeeper::{Deps, Error, plan, recovery};

/// How long a delivery holds an event and its instance before another may take over.
const LEASE_SECONDS: i64 = 120;
/// How long the at-risk instance stays locked once its replacement is launched: until it is
/// terminated, an interruption warning for it launches nothing more.
const RETIRING_LOCK_HOURS: i64 = 6;

type Recommendation = Claimed<RebalanceRecommendation>;

/// The function's entry: a bare event or an SQS batch of them.
pub async fn handle(deps: &Deps, payload: Value, _deadline: spotkeeper::Deadline) -> Result<Value, Error> {
    let now = deps.clock.now();
    let batch = Batch::<RebalanceRecommendation>::open(payload, REBALANCE_RECOMMENDATION)?;
    let Intake { claimed, mut outcomes, health } =
        intake(deps, batch, |d| d.instance_id.as_str(), now, Duration::seconds(LEASE_SECONDS)).await;
    let mut alerts = Vec::new();
    for recommendation in claimed {
        let mut history = History::new(deps);
        let result = recommended(deps, &recommendation, &health, now, &mut history, &mut alerts).await;
        history.write(deps, &recommendation.lookup.group).await;
        outcomes.push((recommendation.message, result));
    }
    deps.alert(&alerts).await;
    event::respond(outcomes)
}

/// Done with an event that replaces nothing: it is settled and the instance unlocked.
async fn close(deps: &Deps, r: &Recommendation, outcome: &str) -> Result<(), Error> {
    settle(deps, &r.event_id, outcome).await;
    deps.store.unlock_instance(&r.instance_id, &r.event_id).await?;
    Ok(())
}

async fn recommended(
    deps: &Deps,
    r: &Recommendation,
    health: &PoolHealth,
    now: DateTime<Utc>,
    history: &mut History,
    alerts: &mut Vec<Alert>,
) -> Result<Value, Error> {
    let group = &r.lookup.config;
    let id = r.instance_id.as_str();
    history.note(
        Some(id),
        "rebalance-recommended",
        format!("EC2 recommends rebalancing {id}: it is at elevated risk of interruption"),
    );
    let notify = |alerts: &mut Vec<Alert>, headline: String, action: &str| {
        alerts.push(
            Alert::new("rebalance-recommended", group.name.as_str(), Severity::Warning, headline)
                .fact("instance", id)
                .fact("pool", r.lookup.pool.as_ref().map(ToString::to_string).unwrap_or_default())
                .fact("action", action),
        );
    };
    let spec = match (group.policy.rebalance, &group.kind) {
        (RebalancePolicy::Off, _) => {
            close(deps, r, "recorded").await?;
            return Ok(json!({"action": "recorded", "instance_id": id}));
        }
        (RebalancePolicy::Notify, _) | (RebalancePolicy::Replace, GroupKind::Asg(_)) => {
            let action = match group.kind {
                GroupKind::Asg(_) => "none by spotkeeper: the Auto Scaling group's Capacity Rebalancing replaces it",
                GroupKind::Standalone(_) => "none: the group's rebalance policy is notify",
            };
            notify(alerts, format!("{}: {id} is at elevated risk of interruption", group.name), action);
            close(deps, r, "notified").await?;
            return Ok(json!({"action": "notified", "instance_id": id}));
        }
        (RebalancePolicy::Replace, GroupKind::Standalone(spec)) => spec,
    };
    let members = deps.store.members(&group.name).await?;
    if !members.iter().any(|m| m.instance_id == id && m.is_serving()) {
        close(deps, r, "skipped: already on its way out").await?;
        return Ok(json!({"action": "skipped", "reason": "the instance is already on its way out", "instance_id": id}));
    }
    // One rebalance replacement in flight per group: taken with a version-conditional write.
    let taken = deps
        .store
        .update_group(&group.name, |g| {
            if g.status.rebalance_in_flight.is_none() {
                g.status.rebalance_in_flight = Some(id.to_string());
            }
        })
        .await?;
    let holder = taken.and_then(|g| g.status.rebalance_in_flight);
    if holder.as_deref() != Some(id) {
        let other = holder.unwrap_or_default();
        history.note(
            Some(id),
            "rebalance-deferred",
            format!("a rebalance replacement for {other} is in flight; {id} waits"),
        );
        notify(
            alerts,
            format!("{}: {id} is at elevated risk; a rebalance for {other} is already in flight", group.name),
            "none for now",
        );
        close(deps, r, "deferred").await?;
        return Ok(json!({"action": "deferred", "instance_id": id, "in_flight": other}));
    }
    let on_demand = recovery::on_demand_replacing(group.policy.on_demand_base, &members, &[id]);
    match replace(deps, r, spec, on_demand, health, now, history, alerts).await {
        Ok(value) => Ok(value),
        Err(err) => {
            let cleared = deps
                .store
                .update_group(&group.name, |g| {
                    if g.status.rebalance_in_flight.as_deref() == Some(id) {
                        g.status.rebalance_in_flight = None;
                    }
                })
                .await;
            if let Err(e) = cleared {
                tracing::error!(group = %group.name, error = %e, "could not clear the rebalance in flight");
            }
            release(deps, &r.event_id, id, None).await;
            alerts.push(
                Alert::new(
                    "rebalance-failed",
                    group.name.as_str(),
                    Severity::Critical,
                    format!("{}: no replacement for at-risk {id}", group.name),
                )
                .fact("instance", id)
                .fact("error", &err),
            );
            Err(err)
        }
    }
}

#[allow(clippy::too_many_arguments, reason = "the replacement with all it is recorded in")]
async fn replace(
    deps: &Deps,
    r: &Recommendation,
    spec: &StandaloneSpec,
    on_demand: u32,
    health: &PoolHealth,
    now: DateTime<Utc>,
    history: &mut History,
    alerts: &mut Vec<Alert>,
) -> Result<Value, Error> {
    let group = &r.lookup.config;
    let id = r.instance_id.as_str();
    let all = plan::pools(&spec.instance_types, &spec.subnets, spec.volume_zone.as_deref()).unwrap_or_default();
    let leaving: Vec<_> = r.lookup.pool.iter().cloned().collect();
    let request = Request {
        group,
        spec,
        pools: plan::replacement_pools(&all, &leaving, health, now),
        olds: vec![Old { instance_id: id.to_string(), since: r.at, pool: r.lookup.pool.clone() }],
        extra: 0,
        reason: Reason::Rebalance,
        on_demand,
        fallback: group.policy.fallback,
        token: replacement::token([r.event_id.as_str()]),
    };
    let launched = replacement::launch_for(deps, &request).await?;
    let recorded = replacement::record(deps, &request, &launched, health, now).await;
    let Some((_, new)) = recorded.pairs.first() else {
        return Err(Error::Retry(format!("EC2 launched no replacement: {}", launched.error_summary())));
    };
    let retiring = Retiring { since: now, reason: Reason::Rebalance, replaced_by: new.instance_id.clone() };
    deps.store.update_member(&group.name, id, |m| m.retiring = Some(retiring.clone())).await?;
    // Until it is gone, an interruption warning for it launches nothing more.
    deps.store.lock_instance(id, &r.event_id, now, Duration::hours(RETIRING_LOCK_HOURS)).await?;
    settle(deps, &r.event_id, &format!("replaced by {}", new.instance_id)).await;
    history.note(
        Some(&new.instance_id),
        "replacement-launched",
        format!("rebalance replacement {} launched on {} for {id}", new.instance_id, new.market),
    );
    let outage = if spec.data_volumes.is_empty() {
        "it is terminated once the replacement serves"
    } else {
        "once the replacement serves it is stopped so its data volumes can move: a short outage of what uses them"
    };
    alerts.push(
        Alert::new(
            "rebalance-replacing",
            group.name.as_str(),
            Severity::Warning,
            format!("{}: {id} at elevated risk, replacement {} launched", group.name, new.instance_id),
        )
        .fact("instance", id)
        .fact("replacement", &new.instance_id)
        .fact("market", new.market)
        .fact("next", outage),
    );
    Ok(json!({"action": "replacing", "instance_id": id, "replacement": new.instance_id, "market": new.market}))
}
