//! Rebalance recommendations: EC2's early word that a Spot instance is at elevated risk of
//! interruption. Per the group's policy: `off` records it, `notify` records and alerts, and
//! `replace` (standalone groups) launches a replacement now; `instance-state` moves DNS and the
//! Elastic IP once it runs, then stops (to move data volumes) and terminates the at-risk one.
//! Never more than one rebalance replacement in flight per group.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::adapters::notify::{Alert, Severity};
use crate::decisions::rebalancing::{self, RebalanceDecision, Slot};
use crate::decisions::{plan, recovery};
use crate::domain::Deadline;
use crate::domain::{
    AlertKind, HistoryKind, LaunchPlan, Market, Member, Old, PoolHealth, Reason, Retiring, StandaloneSpec,
};
use crate::runtime::event::{Batch, RebalanceRecommendation};
use crate::runtime::{Deps, Error};
use crate::workflows::intake::{Answers, Claimed, Intake, intake, release, settle};
use crate::workflows::replacement;
use crate::workflows::report::Report;

/// How long a delivery holds an event and its instance before another may take over.
const LEASE_SECONDS: i64 = 120;
/// How long the at-risk instance stays locked once its replacement is launched: until it is
/// terminated, an interruption warning for it launches nothing more.
const RETIRING_LOCK_HOURS: i64 = 6;

type Recommendation = Claimed<RebalanceRecommendation>;

/// What came of one recommendation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Rebalance {
    /// Recorded in the history (policy `off`).
    Recorded { instance_id: String },
    /// Recorded and alerted.
    Notified { instance_id: String },
    /// Nothing to do, and why.
    Skipped { reason: &'static str, instance_id: String },
    /// Another rebalance replacement of the group is in flight: this one waits.
    Deferred { instance_id: String, in_flight: String },
    /// A replacement launched; the at-risk instance retires once it serves.
    Replacing { instance_id: String, replacement: String, market: Market },
}

/// A batch of recommendations: taken in, then each claimed one decided and acted on, recorded;
/// one report for the batch.
pub async fn recommendations(
    deps: &Deps,
    batch: Batch<RebalanceRecommendation>,
    deadline: Deadline,
) -> Answers<Rebalance> {
    let now = deps.clock.now();
    let Intake { claimed, outcomes, health } =
        intake(deps, batch, |d| d.instance_id.as_str(), now, Duration::seconds(LEASE_SECONDS)).await;
    let mut report = Report::new(deps);
    let mut handled = Vec::new();
    for recommendation in claimed {
        let result = recommended(deps, &recommendation, &health, now, &mut report).await;
        handled.push((recommendation.message, result));
    }
    report.send(deps, deadline).await;
    Answers { intake: outcomes, handled }
}

/// One claimed recommendation: noted, decided by the group's policy and kind (and, where that
/// turns on it, whether the member still serves), then acted on.
async fn recommended(
    deps: &Deps,
    r: &Recommendation,
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Rebalance, Error> {
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
    let instance_id = id.to_string();
    match rebalancing::decide(group.policy.rebalance, &group.kind, serving) {
        RebalanceDecision::Record => {
            close(deps, r, "recorded").await?;
            Ok(Rebalance::Recorded { instance_id })
        }
        RebalanceDecision::Notify { action } => {
            report.alert(at_risk(r, format!("{}: {id} is at elevated risk of interruption", group.name), action));
            close(deps, r, "notified").await?;
            Ok(Rebalance::Notified { instance_id })
        }
        RebalanceDecision::Skip { why, outcome } => {
            close(deps, r, outcome).await?;
            Ok(Rebalance::Skipped { reason: why, instance_id })
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
) -> Result<Rebalance, Error> {
    let group = &r.lookup.config;
    let id = r.instance_id.as_str();
    let taken = deps.store.update_group(&group.name, |g| rebalancing::take_slot(&mut g.status, id)).await?;
    if let Slot::HeldBy(other) = rebalancing::slot(taken.as_ref().map(|g| &g.status), id) {
        note_deferred(r, &other, report);
        close(deps, r, "deferred").await?;
        return Ok(Rebalance::Deferred { instance_id: id.to_string(), in_flight: other });
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
) -> Result<Rebalance, Error> {
    let group = &r.lookup.config;
    let id = r.instance_id.as_str();
    let leaving: Vec<_> = r.lookup.pool.iter().cloned().collect();
    let olds = vec![Old { instance_id: id.to_string(), since: r.at, pool: r.lookup.pool.clone() }];
    let token = plan::token([r.event_id.as_str()]);
    let launch =
        LaunchPlan::new(spec, plan::launch_pools(spec, &leaving, health, now)?, olds, Reason::Rebalance, token)
            .with_on_demand(on_demand)
            .with_fallback(group.policy.fallback);
    let launched = replacement::launch_for(deps, group, &launch).await?;
    let recorded = replacement::record(deps, group, &launch, &launched, health, now).await;
    let Some((_, new)) = recorded.pairs.first() else {
        return Err(Error::NotLaunched { errors: launched.error_summary() });
    };
    let retiring = Retiring { since: now, reason: Reason::Rebalance, replaced_by: new.instance_id.clone() };
    deps.store.update_member(&group.name, id, |m| m.role = m.role.clone().retire(retiring.clone())).await?;
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
    Ok(Rebalance::Replacing { instance_id: id.to_string(), replacement: new.instance_id.clone(), market: new.market })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The answers read as the handler's `json!` literals did (tests and the demo read them).
    #[test]
    fn outcomes_answer_as_before() {
        let id = || "i-1".to_string();
        let cases = [
            (Rebalance::Recorded { instance_id: id() }, json!({"action": "recorded", "instance_id": "i-1"})),
            (Rebalance::Notified { instance_id: id() }, json!({"action": "notified", "instance_id": "i-1"})),
            (
                Rebalance::Skipped { reason: "already out", instance_id: id() },
                json!({"action": "skipped", "reason": "already out", "instance_id": "i-1"}),
            ),
            (
                Rebalance::Deferred { instance_id: id(), in_flight: "i-0".into() },
                json!({"action": "deferred", "instance_id": "i-1", "in_flight": "i-0"}),
            ),
            (
                Rebalance::Replacing { instance_id: id(), replacement: "i-2".into(), market: Market::Spot },
                json!({"action": "replacing", "instance_id": "i-1", "replacement": "i-2", "market": Market::Spot}),
            ),
        ];
        for (outcome, before) in cases {
            assert_eq!(serde_json::to_value(&outcome).unwrap(), before, "{outcome:?}");
        }
    }
}
