//! `spot-interruption`: two minutes' notice. For each warning the replacement request (or the
//! detach from the Auto Scaling group) leaves after one round of table calls — the event's claim
//! with its instance's lock, and the instance's lookup with pool health, sent together — and
//! only then come the records, pool health, history and alerts.

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use spotkeeper::event::{self, Batch, SPOT_INTERRUPTION_WARNING, SpotInterruptionWarning};
use spotkeeper::fleet::{GroupKind, GroupName, Interrupted, Pool, PoolHealth, Reason};
use spotkeeper::history::History;
use spotkeeper::intake::{Intake, intake, release, settle};
use spotkeeper::notify::{Alert, Severity};
use spotkeeper::plan::{self, Action, Warning};
use spotkeeper::replacement::{self, Old, Request};
use spotkeeper::store::Counted;
use spotkeeper::{Deps, Error, metrics};

/// How long a delivery holds an event and its instance before another delivery may take over:
/// longer than the function's timeout, shorter than the queue's visibility timeout.
const LEASE_SECONDS: i64 = 120;

type Results = Vec<(String, Result<Value, Error>)>;

/// The function's entry: a bare event or an SQS batch of them.
pub async fn handle(deps: &Deps, payload: Value) -> Result<Value, Error> {
    let arrived = Instant::now();
    let now = deps.clock.now();
    let batch = Batch::<SpotInterruptionWarning>::open(payload, SPOT_INTERRUPTION_WARNING)?;
    let Intake { claimed, mut outcomes, health } =
        intake(deps, batch, |d| d.instance_id.as_str(), now, Duration::seconds(LEASE_SECONDS)).await;
    let mut messages = HashMap::new();
    let warnings: Vec<Warning> = claimed
        .into_iter()
        .map(|c| {
            messages.insert(c.event_id.clone(), c.message);
            Warning { event_id: c.event_id, instance_id: c.instance_id, warned_at: c.at, lookup: c.lookup }
        })
        .collect();

    // Every action at once: each sends its request first, then records what it did.
    let actions = plan::interruption_actions(warnings, &health, now);
    let done = futures::future::join_all(actions.iter().map(|a| act(deps, a, &health, now, arrived))).await;
    let mut alerts = Vec::new();
    for (results, action_alerts) in done {
        alerts.extend(action_alerts);
        outcomes.extend(results.into_iter().map(|(event_id, result)| (messages.remove(&event_id).flatten(), result)));
    }
    deps.alert(&alerts).await;
    event::respond(outcomes)
}

fn describe(pool: Option<&Pool>) -> String {
    pool.map(Pool::to_string).unwrap_or_else(|| "an unknown pool".into())
}

fn group_of(action: &Action) -> GroupName {
    match action {
        Action::Detach { group, .. } => group.clone(),
        Action::Replace { group, .. } => group.name.clone(),
    }
}

async fn act(
    deps: &Deps,
    action: &Action,
    health: &PoolHealth,
    now: DateTime<Utc>,
    arrived: Instant,
) -> (Results, Vec<Alert>) {
    let group = group_of(action);
    let mut history = History::new(deps);
    let mut alerts = Vec::new();
    let warnings = action.warnings();
    let results = match action {
        Action::Detach { asg_name, .. } => {
            let ids: Vec<String> = warnings.iter().map(|w| w.instance_id.clone()).collect();
            let detached = deps.clients.autoscaling.detach(asg_name, &ids).await;
            tracing::info!(group = %group, elapsed_ms = arrived.elapsed().as_millis() as u64, "detach request sent");
            match detached {
                Ok(()) => detached_all(deps, &group, asg_name, warnings, &mut history, &mut alerts).await,
                Err(err) => failed(deps, &group, warnings, &err.into(), &mut history, &mut alerts).await,
            }
        }
        Action::Replace { group: config, pools, .. } => {
            let GroupKind::Standalone(spec) = &config.kind else { return (Vec::new(), alerts) };
            let request = Request {
                group: config,
                spec,
                pools: pools.clone(),
                olds: warnings
                    .iter()
                    .map(|w| Old {
                        instance_id: w.instance_id.clone(),
                        since: w.warned_at,
                        pool: w.lookup.pool.clone(),
                    })
                    .collect(),
                extra: 0,
                reason: Reason::Interruption,
                on_demand: 0,
                fallback: config.policy.fallback,
                token: replacement::token(warnings.iter().map(|w| w.event_id.as_str())),
            };
            let launched = replacement::launch_for(deps, &request).await;
            let elapsed = arrived.elapsed();
            tracing::info!(group = %group, elapsed_ms = elapsed.as_millis() as u64, "launch request sent");
            let label = group.to_string();
            metrics::histogram!("LaunchRequestLatencyMs", "group" => label.clone())
                .record(elapsed.as_secs_f64() * 1000.0);
            for w in warnings {
                let since_warning = (now - w.warned_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!("WarningToLaunchSeconds", "group" => label.clone()).record(since_warning);
            }
            match launched {
                Ok(launched) => {
                    replaced(deps, &request, warnings, &launched, health, now, &mut history, &mut alerts).await
                }
                Err(err) => failed(deps, &group, warnings, &err, &mut history, &mut alerts).await,
            }
        }
    };
    let day = now.format("%Y-%m-%d").to_string();
    metrics::counter!("InterruptionsHandled", "group" => group.to_string()).increment(warnings.len() as u64);
    for w in warnings {
        history.note(
            Some(&w.instance_id),
            "interrupted",
            format!("Spot interruption warning for {} in {}", w.instance_id, describe(w.lookup.pool.as_ref())),
        );
        if let Err(err) = deps.store.count(&group, &day, Counted::Interruption).await {
            tracing::error!(group = %group, error = %err, "could not count the interruption in the ledger");
        }
    }
    history.write(deps, &group).await;
    (results, alerts)
}

async fn mark_interrupted(deps: &Deps, w: &Warning, action: &str, replaced_by: Option<String>) {
    let interrupted = Interrupted { warned_at: w.warned_at, action: action.to_string(), replaced_by };
    let result =
        deps.store.update_member(&w.lookup.group, &w.instance_id, |m| m.interrupted = Some(interrupted.clone())).await;
    if let Err(err) = result {
        tracing::error!(group = %w.lookup.group, instance_id = %w.instance_id, error = %err, "could not record the interruption on the member");
    }
}

async fn failed(
    deps: &Deps,
    group: &GroupName,
    warnings: &[Warning],
    err: &Error,
    history: &mut History,
    alerts: &mut Vec<Alert>,
) -> Results {
    let reason = err.to_string();
    let mut results = Vec::new();
    for w in warnings {
        release(deps, &w.event_id, &w.instance_id).await;
        history.note(Some(&w.instance_id), "interruption-failed", format!("could not act on the warning: {reason}"));
        alerts.push(
            Alert::new(
                "interruption-failed",
                group.as_str(),
                Severity::Critical,
                format!("{group}: could not act on the interruption of {}", w.instance_id),
            )
            .fact("instance", &w.instance_id)
            .fact("error", &reason),
        );
        results.push((w.event_id.clone(), Err(Error::Retry(reason.clone()))));
    }
    results
}

async fn detached_all(
    deps: &Deps,
    group: &GroupName,
    asg_name: &str,
    warnings: &[Warning],
    history: &mut History,
    alerts: &mut Vec<Alert>,
) -> Results {
    let mut results = Vec::new();
    for w in warnings {
        mark_interrupted(deps, w, "detached", None).await;
        settle(deps, &w.event_id, "detached").await;
        history.note(
            Some(&w.instance_id),
            "detached",
            format!("detached from {asg_name} without decrement: the group launches its replacement"),
        );
        alerts.push(
            Alert::new(
                "interrupted",
                group.as_str(),
                Severity::Warning,
                format!("{group}: {} interrupted, detached from {asg_name}", w.instance_id),
            )
            .fact("instance", &w.instance_id)
            .fact("pool", describe(w.lookup.pool.as_ref()))
            .fact("action", "detached without decrement; the Auto Scaling group launches the replacement"),
        );
        results.push((
            w.event_id.clone(),
            Ok(json!({"action": "detached", "instance_id": w.instance_id, "asg": asg_name})),
        ));
    }
    results
}

#[allow(clippy::too_many_arguments, reason = "the one place that records a replacement")]
async fn replaced(
    deps: &Deps,
    request: &Request<'_>,
    warnings: &[Warning],
    launched: &spotkeeper::launch::Launch,
    health: &PoolHealth,
    now: DateTime<Utc>,
    history: &mut History,
    alerts: &mut Vec<Alert>,
) -> Results {
    let group = &request.group.name;
    let recorded = replacement::record(deps, request, launched, health, now).await;
    let warning_of = |id: &str| warnings.iter().find(|w| w.instance_id == id);
    let mut results = Vec::new();
    for (old, member) in &recorded.pairs {
        let Some(w) = warning_of(&old.instance_id) else { continue };
        mark_interrupted(deps, w, "replaced", Some(member.instance_id.clone())).await;
        settle(deps, &w.event_id, &format!("replaced by {}", member.instance_id)).await;
        let pool = member.pool();
        history.note(
            Some(&member.instance_id),
            "replacement-launched",
            format!(
                "replacement {} launched on {} in {} for {}",
                member.instance_id,
                member.market,
                describe(pool.as_ref()),
                w.instance_id
            ),
        );
        alerts.push(
            Alert::new(
                "interrupted",
                group.as_str(),
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
            history.note(
                Some(&member.instance_id),
                "fallback",
                "no Spot pool had capacity: the replacement runs On-Demand until recovery".to_string(),
            );
            alerts.push(
                Alert::new(
                    "fallback",
                    group.as_str(),
                    Severity::Warning,
                    format!("{group}: no Spot capacity, {} launched On-Demand", member.instance_id),
                )
                .fact("instance", &member.instance_id)
                .fact("replaces", &w.instance_id)
                .fact("market", member.market)
                .fact("spot errors", launched.error_summary()),
            );
        }
        results.push((
            w.event_id.clone(),
            Ok(json!({"action": "replaced", "instance_id": w.instance_id, "replacement": member.instance_id, "market": member.market, "pool": pool, "fallen_back": member.fallen_back})),
        ));
    }
    // Warnings EC2 found no instance for: their messages come back through SQS and try again.
    let unplaced: Vec<Warning> = recorded.unplaced.iter().filter_map(|o| warning_of(&o.instance_id).cloned()).collect();
    if !unplaced.is_empty() {
        let err = Error::Retry(format!("EC2 launched no replacement: {}", launched.error_summary()));
        results.extend(failed(deps, group, &unplaced, &err, history, alerts).await);
    }
    results
}
