//! `rebalance-recommendation`: EC2's early word that a Spot instance is at elevated risk of
//! interruption. Per the group's policy: `off` records it, `notify` records and alerts, and
//! `replace` (standalone groups) launches a replacement now; `instance-state` moves DNS and the
//! Elastic IP once it runs, then stops (to move data volumes) and terminates the at-risk one.
//! Never more than one rebalance replacement in flight per group.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use spotkeeper::adapters::notify::{Alert, Severity};
use spotkeeper::decisions::rebalancing::{self, RebalanceDecision, Slot};
use spotkeeper::decisions::{plan, recovery};
use spotkeeper::domain::{AlertKind, HistoryKind};
use spotkeeper::domain::{Member, PoolHealth, Reason, Retiring, StandaloneSpec};
use spotkeeper::event::{self, Batch, REBALANCE_RECOMMENDATION, RebalanceRecommendation};
use spotkeeper::workflows::intake::{Claimed, Intake, intake, release, settle};
use spotkeeper::workflows::replacement::{self, Old, Request};
use spotkeeper::workflows::report::Report;
use spotkeeper::{Deps, Error};

/// How long a delivery holds an event and its instance before another may take over.
const LEASE_SECONDS: i64 = 120;
/// How long the at-risk instance stays locked once its replacement is launched: until it is
/// terminated, an interruption warning for it launches nothing more.
const RETIRING_LOCK_HOURS: i64 = 6;

type Recommendation = Claimed<RebalanceRecommendation>;

/// The function's entry: parse the event (bare or an SQS batch), take it in, then per claimed
/// recommendation decide and act, record; alert once and answer the batch.
pub async fn handle(deps: &Deps, payload: Value, deadline: spotkeeper::Deadline) -> Result<Value, Error> {
    let now = deps.clock.now();
    let batch = Batch::<RebalanceRecommendation>::open(payload, REBALANCE_RECOMMENDATION)?;
    let Intake { claimed, mut outcomes, health } =
        intake(deps, batch, |d| d.instance_id.as_str(), now, Duration::seconds(LEASE_SECONDS)).await;
    let mut report = Report::new(deps);
    for recommendation in claimed {
        let result = recommended(deps, &recommendation, &health, now, &mut report).await;
        outcomes.push((recommendation.message, result));
    }
    report.send(deps, deadline).await;
    event::respond(outcomes)
}

/// One claimed recommendation: noted, decided by the group's policy and kind (and, where that
/// turns on it, whether the member still serves), then acted on.
async fn recommended(
    deps: &Deps,
    r: &Recommendation,
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Value, Error> {
    let group = &r.lookup.config;
    let id = r.instance_id.as_str();
    report.note(
        &r.lookup.group,
        Some(id),
        HistoryKind::RebalanceRecommended,
        format!("EC2 recommends rebalancing {id}: it is at elevated risk of interruption"),
    );
    let members = members_if_asked(deps, r).await?;
    let serving = members.iter().any(|m| m.instance_id == id && m.is_serving());
    match rebalancing::decide(group.policy.rebalance, &group.kind, serving) {
        RebalanceDecision::Record => {
            close(deps, r, "recorded").await?;
            Ok(json!({"action": "recorded", "instance_id": id}))
        }
        RebalanceDecision::Notify { action } => {
            report.alert(at_risk(r, format!("{}: {id} is at elevated risk of interruption", group.name), action));
            close(deps, r, "notified").await?;
            Ok(json!({"action": "notified", "instance_id": id}))
        }
        RebalanceDecision::Skip { why, outcome } => {
            close(deps, r, outcome).await?;
            Ok(json!({"action": "skipped", "reason": why, "instance_id": id}))
        }
        RebalanceDecision::Replace(spec) => in_turn(deps, r, spec, &members, health, now, report).await,
    }
}

/// The group's members, read only when the decision turns on whether this one still serves.
async fn members_if_asked(deps: &Deps, r: &Recommendation) -> Result<Vec<Member>, Error> {
    let group = &r.lookup.config;
    if !rebalancing::turns_on_serving(group.policy.rebalance, &group.kind) {
        return Ok(Vec::new());
    }
    Ok(deps.store.members(&group.name).await?)
}

/// Done with an event that replaces nothing: it is settled and the instance unlocked.
async fn close(deps: &Deps, r: &Recommendation, outcome: &str) -> Result<(), Error> {
    settle(deps, &r.event_id, outcome).await;
    deps.store.unlock_instance(&r.instance_id, &r.event_id).await?;
    Ok(())
}

/// The warning that the recommended instance is at risk, and what is done about it.
fn at_risk(r: &Recommendation, headline: String, action: &str) -> Alert {
    Alert::new(AlertKind::RebalanceRecommended, &r.lookup.config.name, Severity::Warning, headline)
        .fact("instance", r.instance_id.as_str())
        .fact("pool", r.lookup.pool.as_ref().map(ToString::to_string).unwrap_or_default())
        .fact("action", action)
}

/// A replacement in its turn: the group's one rebalance slot is taken with a version-conditional
/// write; while another holds it this one waits. A failed replacement frees the slot again.
#[allow(clippy::too_many_arguments, reason = "the replacement with all it is recorded in")]
async fn in_turn(
    deps: &Deps,
    r: &Recommendation,
    spec: &StandaloneSpec,
    members: &[Member],
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Value, Error> {
    let group = &r.lookup.config;
    let id = r.instance_id.as_str();
    let taken = deps.store.update_group(&group.name, |g| rebalancing::take_slot(&mut g.status, id)).await?;
    if let Slot::HeldBy(other) = rebalancing::slot(taken.as_ref().map(|g| &g.status), id) {
        note_deferred(r, &other, report);
        close(deps, r, "deferred").await?;
        return Ok(json!({"action": "deferred", "instance_id": id, "in_flight": other}));
    }
    let on_demand = recovery::on_demand_replacing(group.policy.on_demand_base, members, &[id]);
    let result = replace(deps, r, spec, on_demand, health, now, report).await;
    if let Err(err) = &result {
        failed(deps, r, err, report).await;
    }
    result
}

/// Another rebalance replacement is in flight for the group: this one is noted and alerted, and waits.
fn note_deferred(r: &Recommendation, other: &str, report: &mut Report) {
    let id = r.instance_id.as_str();
    report.note(
        &r.lookup.group,
        Some(id),
        HistoryKind::RebalanceDeferred,
        format!("a rebalance replacement for {other} is in flight; {id} waits"),
    );
    let headline =
        format!("{}: {id} is at elevated risk; a rebalance for {other} is already in flight", r.lookup.config.name);
    report.alert(at_risk(r, headline, "none for now"));
}

/// The replacement failed: the slot and the event are freed for another try, and it is alerted.
async fn failed(deps: &Deps, r: &Recommendation, err: &Error, report: &mut Report) {
    let group = &r.lookup.config;
    let id = r.instance_id.as_str();
    let cleared = deps.store.update_group(&group.name, |g| rebalancing::free_slot(&mut g.status, id)).await;
    if let Err(e) = cleared {
        tracing::error!(group = %group.name, error = %e, "could not clear the rebalance in flight");
    }
    release(deps, &r.event_id, id, None).await;
    report.alert(
        Alert::new(
            AlertKind::RebalanceFailed,
            &group.name,
            Severity::Critical,
            format!("{}: no replacement for at-risk {id}", group.name),
        )
        .fact("instance", id)
        .fact("error", err),
    );
}

/// Launches the replacement, marks the at-risk member retiring and keeps it locked until it goes.
#[allow(clippy::too_many_arguments, reason = "the replacement with all it is recorded in")]
async fn replace(
    deps: &Deps,
    r: &Recommendation,
    spec: &StandaloneSpec,
    on_demand: u32,
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
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
    report.note(
        &r.lookup.group,
        Some(&new.instance_id),
        HistoryKind::ReplacementLaunched,
        format!("rebalance replacement {} launched on {} for {id}", new.instance_id, new.market),
    );
    let outage = if spec.data_volumes.is_empty() {
        "it is terminated once the replacement serves"
    } else {
        "once the replacement serves it is stopped so its data volumes can move: a short outage of what uses them"
    };
    report.alert(
        Alert::new(
            AlertKind::RebalanceReplacing,
            &group.name,
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
