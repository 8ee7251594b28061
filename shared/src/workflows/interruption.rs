//! Spot interruption warnings: two minutes' notice. For each warning the replacement launch (or
//! the detach from the Auto Scaling group) leaves after one round of table calls — the event's
//! claim with its instance's lock, and the instance's lookup with pool health, sent together —
//! and only then come the records, pool health, history and alerts. (A group with an On-Demand
//! base reads its members first, to know whether the replacement must go On-Demand.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::adapters::aws::AwsError;
use crate::adapters::notify::{Alert, Severity};
use crate::adapters::store::{Claim, Counted};
use crate::decisions::plan::{self, Action, Warning};
use crate::domain::Day;
use crate::domain::Deadline;
use crate::domain::{
    AlertKind, Attempt, Group, GroupName, HistoryKind, InterruptAction, Interrupted, LaunchPlan, Market, Pool,
    PoolHealth,
};
use crate::runtime::event::{Batch, SpotInterruptionWarning};
use crate::runtime::{Deps, Error};
use crate::workflows::intake::{Answers, Intake, intake, release, settle};
use crate::workflows::launch::Launch;
use crate::workflows::replacement;
use crate::workflows::report::Report;

/// How long a delivery holds an event and its instance before another delivery may take over:
/// longer than the function's timeout (60 s), shorter than the queue's visibility timeout (360 s),
/// so a redelivered message always finds the lease of its failed delivery run out.
const LEASE_SECONDS: i64 = 120;

/// What came of one warning.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Interruption {
    /// Detached from its Auto Scaling group, which launches the replacement.
    Detached { instance_id: String, asg: String },
    /// A replacement launched for it.
    Replaced { instance_id: String, replacement: String, market: Market, pool: Option<Pool>, fallen_back: bool },
}

/// Each warning's event id with what came of it.
type Results = Vec<(String, Result<Interruption, Error>)>;

/// A batch of warnings, `arrived` when the invocation began: every action at once, each sending
/// its request first and recording what it did after; one report for the batch.
pub async fn interruptions(
    deps: &Deps,
    batch: Batch<SpotInterruptionWarning>,
    arrived: Instant,
    deadline: Deadline,
) -> Answers<Interruption> {
    let now = deps.clock.now();
    let Intake { claimed, outcomes, health } =
        intake(deps, batch, |d| d.instance_id.as_str(), now, Duration::seconds(LEASE_SECONDS)).await;
    let mut messages = HashMap::new();
    let warnings: Vec<Warning> = claimed
        .into_iter()
        .map(|c| {
            messages.insert(c.event_id.clone(), c.message);
            Warning { event_id: c.event_id, instance_id: c.instance_id, warned_at: c.at, lookup: c.lookup, held: true }
        })
        .collect();
    let (attempts, warnings, unread) = kept_attempts(deps, warnings).await;

    let actions = plan::interruption_actions(warnings, &attempts, &health, now);
    let done = futures::future::join_all(actions.iter().map(|a| act(deps, a, &health, now, arrived))).await;
    let mut report = Report::new(deps);
    let mut handled = Vec::new();
    for (results, part) in done.into_iter().chain([(unread, Report::new(deps))]) {
        report.extend(part);
        for (event_id, result) in results {
            // The other events of a launch sent again answer in their own deliveries.
            if let Some(message) = messages.remove(&event_id) {
                handled.push((message, result));
            }
        }
    }
    report.send(deps, deadline).await;
    Answers { intake: outcomes, handled }
}

/// The launches whose answer was lost on an earlier delivery of these warnings, read back (only
/// a redelivery has any). Warnings whose kept launch cannot be read are given back, not
/// launched anew: that could launch twice.
async fn kept_attempts(deps: &Deps, warnings: Vec<Warning>) -> (Vec<Attempt>, Vec<Warning>, Results) {
    let tokens: Vec<String> = warnings.iter().filter_map(|w| w.lookup.attempt.clone()).collect();
    if tokens.is_empty() {
        return (Vec::new(), warnings, Vec::new());
    }
    match deps.store.attempts::<Attempt>(&tokens).await {
        Ok(attempts) => (attempts, warnings, Vec::new()),
        Err(err) => {
            let err = Arc::new(err);
            let (tried, fresh): (Vec<Warning>, Vec<Warning>) =
                warnings.into_iter().partition(|w| w.lookup.attempt.is_some());
            let mut results = Vec::new();
            for w in tried {
                release(deps, &w.event_id, &w.instance_id, w.lookup.attempt.as_deref()).await;
                results.push((w.event_id, Err(Error::KeptLaunchUnread(err.clone()))));
            }
            (Vec::new(), fresh, results)
        }
    }
}

/// Milliseconds for a log field (a run of 584 million years saturates).
fn millis(elapsed: std::time::Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

fn describe(pool: Option<&Pool>) -> String {
    pool.map_or_else(|| "an unknown pool".into(), Pool::to_string)
}

fn group_of(action: &Action) -> GroupName {
    match action {
        Action::Detach { group, .. } => group.clone(),
        Action::Replace { group, .. } | Action::Replay { group, .. } => group.name.clone(),
    }
}

/// How many of a new launch's replacements go On-Demand to keep the group's On-Demand base
/// (a group with a base reads its members first; the others launch after one table round).
async fn on_demand_of(deps: &Deps, action: &Action) -> u32 {
    let Action::Replace { group, warnings, .. } = action else { return 0 };
    let leaving: Vec<&str> = warnings.iter().map(|w| w.instance_id.as_str()).collect();
    replacement::on_demand_for(deps, group, &leaving).await.unwrap_or_else(|err| {
        tracing::error!(group = %group.name, error = %err, "could not read the members to keep the On-Demand base; the replacements go to Spot");
        0
    })
}

async fn act(
    deps: &Deps,
    action: &Action,
    health: &PoolHealth,
    now: DateTime<Utc>,
    arrived: Instant,
) -> (Results, Report) {
    let group = group_of(action);
    let mut report = Report::new(deps);
    let warnings = action.warnings();
    // Noted first (in memory: nothing is written before the request leaves) so that the history
    // reads in the order things happened: the warning, then what was done about it. The other
    // warnings of a launch sent again are told by the delivery that holds them.
    for w in warnings.iter().filter(|w| w.held) {
        report.note(
            &group,
            Some(&w.instance_id),
            HistoryKind::Interrupted,
            format!("Spot interruption warning for {} in {}", w.instance_id, describe(w.lookup.pool.as_ref())),
        );
    }
    let results = match action {
        Action::Detach { asg_name, .. } => {
            let ids: Vec<String> = warnings.iter().map(|w| w.instance_id.clone()).collect();
            let refused = deps.clients.autoscaling.detach(asg_name, &ids).await;
            tracing::info!(group = %group, elapsed_ms = millis(arrived.elapsed()), "detach request sent");
            detached(deps, &group, asg_name, warnings, refused, &mut report).await
        }
        Action::Replace { group: config, .. } | Action::Replay { group: config, .. } => {
            let on_demand = on_demand_of(deps, action).await;
            match action.launch_plan(on_demand) {
                Some(Ok(plan)) => {
                    let sent = Sent { config, plan: &plan, arrived };
                    launched(deps, action, &sent, health, now, &mut report).await
                }
                // The group's spec was valid when registered: a launch into no pools would hide it.
                Some(Err(err)) => failed(deps, &group, warnings, Error::from(err), None, &mut report).await,
                None => Vec::new(),
            }
        }
    };
    let day = Day::of(now);
    // Counted once handled: a warning that fails is counted on the delivery that handles it.
    let handled = results.iter().filter(|(_, r)| r.is_ok()).count() as u64;
    metrics::counter!("InterruptionsHandled", "group" => group.to_string()).increment(handled);
    if handled > 0
        && let Err(err) = deps.store.count(&group, day, Counted::Interruption, handled).await
    {
        tracing::error!(group = %group, error = %err, "could not count the interruptions in the ledger");
    }
    (results, report)
}

/// A launch for a group (as it is now), sent when the invocation had `arrived` for so long.
struct Sent<'a> {
    config: &'a Group,
    plan: &'a LaunchPlan,
    arrived: Instant,
}

/// Sends the launch, then records what came of it.
async fn launched(
    deps: &Deps,
    action: &Action,
    sent: &Sent<'_>,
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Results {
    let group = &sent.config.name;
    let warnings = action.warnings();
    let launched = replacement::launch_for(deps, sent.config, sent.plan).await;
    let elapsed = sent.arrived.elapsed();
    tracing::info!(group = %group, elapsed_ms = millis(elapsed), "launch request sent");
    let label = group.to_string();
    metrics::histogram!("LaunchRequestLatencyMs", "group" => label.clone()).record(elapsed.as_secs_f64() * 1000.0);
    for w in warnings {
        let since_warning = (now - w.warned_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("WarningToLaunchSeconds", "group" => label.clone()).record(since_warning);
    }
    match launched {
        Ok(launched) => {
            let sent_again = matches!(action, Action::Replay { .. });
            let warnings = if sent_again { hold_others(deps, warnings, now).await } else { warnings.to_vec() };
            let done = Done { launched: &launched, warnings: &warnings, sent_again };
            replaced(deps, sent, &done, health, now, report).await
        }
        Err(err) => {
            let kept = keep_attempt(deps, sent, warnings, now).await;
            failed(deps, group, warnings, err, kept, report).await
        }
    }
}

/// A launch sent again carries warnings this delivery does not hold. EC2 answers it with what it
/// launched the first time, so it may go out first; but a warning is settled, and its kept
/// launch forgotten, only once this delivery holds it. Another delivery that won one of them
/// meanwhile reads the kept launch and sends the very same request: never a new one.
async fn hold_others(deps: &Deps, warnings: &[Warning], now: DateTime<Utc>) -> Vec<Warning> {
    let held = warnings.iter().map(|w| async move {
        let mut w = w.clone();
        if !w.held {
            w.held = match deps.store.claim(&w.event_id, &w.instance_id, now, Duration::seconds(LEASE_SECONDS)).await {
                Ok(claim) => claim == Claim::Won,
                Err(err) => {
                    tracing::warn!(event_id = %w.event_id, error = %err, "could not take a warning of the launch sent again; its own delivery settles it");
                    false
                }
            };
        }
        w
    });
    futures::future::join_all(held).await
}

async fn mark_interrupted(deps: &Deps, w: &Warning, action: InterruptAction, replaced_by: Option<String>) {
    let interrupted = Interrupted { warned_at: w.warned_at, action, replaced_by };
    let result = deps
        .store
        .update_member(&w.lookup.group, &w.instance_id, |m| m.role = m.role.clone().interrupt(interrupted.clone()))
        .await;
    if let Err(err) = result {
        tracing::error!(group = %w.lookup.group, instance_id = %w.instance_id, error = %err, "could not record the interruption on the member");
    }
}

/// Keeps a launch that failed without an answer, so its events' next deliveries send it again:
/// its token, when kept.
async fn keep_attempt<'a>(deps: &Deps, sent: &Sent<'a>, warnings: &[Warning], now: DateTime<Utc>) -> Option<&'a str> {
    let plan = sent.plan;
    let attempt = Attempt { plan: plan.clone(), events: warnings.iter().map(|w| w.event_id.clone()).collect() };
    match deps.store.keep_attempt(&plan.token, &attempt, now).await {
        Ok(()) => Some(plan.token.as_str()),
        Err(err) => {
            tracing::error!(group = %sent.config.name, token = %plan.token, error = %err, "could not keep the failed launch; its next delivery launches anew");
            None
        }
    }
}

/// Forgets a warning's kept launch once it is settled (or needs a launch of its own).
async fn forget_attempt(deps: &Deps, w: &Warning, token: &str) {
    if let Err(err) = deps.store.forget_attempt(&w.instance_id, token).await {
        tracing::error!(token, instance_id = %w.instance_id, error = %err, "could not forget a launch sent again; its next delivery sends it once more, harmlessly");
    }
}

/// Gives the held warnings back for their next delivery, with an alert and a history record each.
async fn failed(
    deps: &Deps,
    group: &GroupName,
    warnings: &[Warning],
    err: Error,
    attempt: Option<&str>,
    report: &mut Report,
) -> Results {
    let reason = err.to_string();
    let err = Arc::new(err);
    let held: Vec<&Warning> = warnings.iter().filter(|w| w.held).collect();
    futures::future::join_all(held.iter().map(|w| release(deps, &w.event_id, &w.instance_id, attempt))).await;
    let mut results = Vec::new();
    for w in held {
        report.note(
            group,
            Some(&w.instance_id),
            HistoryKind::InterruptionFailed,
            format!("could not act on the warning: {reason}"),
        );
        report.alert(
            Alert::new(
                AlertKind::InterruptionFailed,
                group,
                Severity::Critical,
                format!("{group}: could not act on the interruption of {}", w.instance_id),
            )
            .fact("instance", &w.instance_id)
            .fact("error", &reason),
        );
        results.push((w.event_id.clone(), Err(Error::Shared(err.clone()))));
    }
    results
}

/// Records the detached instances; each one AWS refused fails alone, with its reason.
async fn detached(
    deps: &Deps,
    group: &GroupName,
    asg_name: &str,
    warnings: &[Warning],
    refused: Vec<(String, AwsError)>,
    report: &mut Report,
) -> Results {
    let mut results = Vec::new();
    for (id, err) in &refused {
        let refused_warnings: Vec<Warning> = warnings.iter().filter(|w| &w.instance_id == id).cloned().collect();
        results.extend(failed(deps, group, &refused_warnings, err.clone().into(), None, report).await);
    }
    let out: Vec<&Warning> = warnings.iter().filter(|w| !refused.iter().any(|(id, _)| id == &w.instance_id)).collect();
    futures::future::join_all(out.iter().map(|w| async move {
        mark_interrupted(deps, w, InterruptAction::Detached, None).await;
        settle(deps, &w.event_id, "detached").await;
    }))
    .await;
    for w in out {
        report.note(
            group,
            Some(&w.instance_id),
            HistoryKind::Detached,
            format!("detached from {asg_name} without decrement: the group launches its replacement"),
        );
        report.alert(
            Alert::new(
                AlertKind::Interrupted,
                group,
                Severity::Warning,
                format!("{group}: {} interrupted, detached from {asg_name}", w.instance_id),
            )
            .fact("instance", &w.instance_id)
            .fact("pool", describe(w.lookup.pool.as_ref()))
            .fact("action", "detached without decrement; the Auto Scaling group launches the replacement"),
        );
        let outcome = Interruption::Detached { instance_id: w.instance_id.clone(), asg: asg_name.to_string() };
        results.push((w.event_id.clone(), Ok(outcome)));
    }
    results
}

/// What a launch that went out came to: EC2's answer and the warnings it stands for (held by
/// this delivery or not), `sent_again` when it was a kept launch.
struct Done<'a> {
    launched: &'a Launch,
    warnings: &'a [Warning],
    sent_again: bool,
}

async fn replaced(
    deps: &Deps,
    sent: &Sent<'_>,
    done: &Done<'_>,
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Results {
    let Done { launched, warnings, sent_again } = *done;
    let (group, token) = (&sent.config.name, sent.plan.token.as_str());
    let recorded = replacement::record(deps, sent.config, sent.plan, launched, health, now).await;
    let warning_of = |id: &str| warnings.iter().find(|w| w.instance_id == id);
    // Settled first, forgotten after: until its event is done, a warning's kept launch is what
    // keeps any other delivery of it from launching anew.
    let writes = recorded.pairs.iter().filter_map(|(old, member)| {
        let w = warning_of(&old.instance_id)?;
        Some(async move {
            mark_interrupted(deps, w, InterruptAction::Replaced, Some(member.instance_id.clone())).await;
            if w.held && settle(deps, &w.event_id, &format!("replaced by {}", member.instance_id)).await && sent_again {
                forget_attempt(deps, w, token).await;
            }
        })
    });
    futures::future::join_all(writes).await;
    // What this delivery holds is told here; the rest by the deliveries that hold them.
    let warning_of = |id: &str| warning_of(id).filter(|w| w.held);
    let mut results = Vec::new();
    for (old, member) in &recorded.pairs {
        let Some(w) = warning_of(&old.instance_id) else { continue };
        let pool = member.pool();
        report.note(
            group,
            Some(&member.instance_id),
            HistoryKind::ReplacementLaunched,
            format!(
                "replacement {} launched on {} in {} for {}",
                member.instance_id,
                member.market,
                describe(pool.as_ref()),
                w.instance_id
            ),
        );
        report.alert(
            Alert::new(
                AlertKind::Interrupted,
                group,
                Severity::Warning,
                format!(
                    "{group}: {} interrupted, replacement {} launched on {}",
                    w.instance_id, member.instance_id, member.market
                ),
            )
            .fact("instance", &w.instance_id)
            .fact("pool", describe(w.lookup.pool.as_ref()))
            .fact("action", "replaced")
            .fact("replacement", &member.instance_id)
            .fact("replacement pool", describe(pool.as_ref()))
            .fact("market", member.market),
        );
        if member.fallen_back {
            report.note(
                group,
                Some(&member.instance_id),
                HistoryKind::Fallback,
                "no Spot pool had capacity: the replacement runs On-Demand until recovery".to_string(),
            );
            report.alert(
                Alert::new(
                    AlertKind::Fallback,
                    group,
                    Severity::Warning,
                    format!("{group}: no Spot capacity, {} launched On-Demand", member.instance_id),
                )
                .fact("instance", &member.instance_id)
                .fact("replaces", &w.instance_id)
                .fact("market", member.market)
                .fact("spot errors", launched.error_summary()),
            );
        }
        let outcome = Interruption::Replaced {
            instance_id: w.instance_id.clone(),
            replacement: member.instance_id.clone(),
            market: member.market,
            pool,
            fallen_back: member.fallen_back,
        };
        results.push((w.event_id.clone(), Ok(outcome)));
    }
    // Warnings EC2 found no instance for: their messages come back through SQS and try again.
    let unplaced: Vec<Warning> = recorded.unplaced.iter().filter_map(|o| warning_of(&o.instance_id).cloned()).collect();
    if !unplaced.is_empty() {
        // EC2 answers the same request the same way: they need a launch of their own.
        if sent_again {
            futures::future::join_all(unplaced.iter().map(|w| forget_attempt(deps, w, token))).await;
        }
        let err = Error::NotLaunched { errors: launched.error_summary() };
        results.extend(failed(deps, group, &unplaced, err, None, report).await);
    }
    results
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::SubnetId;

    /// The answers read as the handler's `json!` literals did (tests and the demo read them).
    #[test]
    fn outcomes_answer_as_before() {
        let pool = Pool {
            instance_type: "m5.large".into(),
            subnet_id: SubnetId::try_from("subnet-1").unwrap(),
            availability_zone: "a".into(),
        };
        let cases = [
            (
                Interruption::Detached { instance_id: "i-1".into(), asg: "web-asg".into() },
                json!({"action": "detached", "instance_id": "i-1", "asg": "web-asg"}),
            ),
            (
                Interruption::Replaced {
                    instance_id: "i-1".into(),
                    replacement: "i-2".into(),
                    market: Market::OnDemand,
                    pool: Some(pool.clone()),
                    fallen_back: true,
                },
                json!({"action": "replaced", "instance_id": "i-1", "replacement": "i-2", "market": Market::OnDemand, "pool": Some(pool), "fallen_back": true}),
            ),
            (
                Interruption::Replaced {
                    instance_id: "i-1".into(),
                    replacement: "i-2".into(),
                    market: Market::Spot,
                    pool: None,
                    fallen_back: false,
                },
                json!({"action": "replaced", "instance_id": "i-1", "replacement": "i-2", "market": Market::Spot, "pool": None::<Pool>, "fallen_back": false}),
            ),
        ];
        for (outcome, before) in cases {
            assert_eq!(serde_json::to_value(&outcome).unwrap(), before, "{outcome:?}");
        }
    }
}
