//! `spot-interruption`: two minutes' notice. For each warning the replacement request (or the
//! detach from the Auto Scaling group) leaves after one round of table calls — the event's claim
//! and the instance's lookup, read together — and only then come the records, pool health,
//! history and alerts.

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use spotkeeper::event::{self, Batch, Event, SPOT_INTERRUPTION_WARNING, SpotInterruptionWarning};
use spotkeeper::fleet::{
    GROUP_TAG, Group, GroupKind, Interrupted, Member, Pool, PoolHealth, REPLACES_TAG, Reason, Replaced,
};
use spotkeeper::history::History;
use spotkeeper::launch::{Launch, launch};
use spotkeeper::notify::{Alert, Severity};
use spotkeeper::plan::{self, AVOID_POOL_MINUTES, Action, Warning};
use spotkeeper::recovery;
use spotkeeper::store::Claim;
use spotkeeper::{Deps, Error};

/// How long a delivery holds an event before another delivery may take it over: longer than
/// the function's timeout, shorter than the queue's visibility timeout.
const LEASE_SECONDS: i64 = 120;

type Outcome = (Option<String>, Result<Value, Error>);

/// The function's entry: a bare event or an SQS batch of them.
pub async fn handle(deps: &Deps, payload: Value) -> Result<Value, Error> {
    let arrived = Instant::now();
    let now = deps.clock.now();
    let batch = Batch::<SpotInterruptionWarning>::open(payload, SPOT_INTERRUPTION_WARNING)?;
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut events = Vec::new();
    for (message, parsed) in batch.items {
        match parsed {
            Ok(event) => events.push((message, event)),
            Err(err) => outcomes.push((message, Err(err.into()))),
        }
    }

    // One round of table calls: claim every event and read every lookup (with pool health) at once.
    let ids: Vec<String> = events.iter().map(|(_, e)| e.detail.instance_id.clone()).collect();
    let claims = futures::future::join_all(
        events
            .iter()
            .map(|(_, e)| deps.store.claim(event_id(e), &e.detail.instance_id, now, Duration::seconds(LEASE_SECONDS))),
    );
    let (claims, read) = tokio::join!(claims, deps.store.lookups(&ids));
    let (lookups, health) = match read {
        Ok(read) => read,
        Err(err) => {
            let reason = err.to_string();
            for ((message, event), claim) in events.iter().zip(&claims) {
                if matches!(claim, Ok(Claim::Won)) {
                    release(deps, event_id(event), &event.detail.instance_id).await;
                }
                outcomes
                    .push((message.clone(), Err(Error::Retry(format!("could not read the fleet table: {reason}")))));
            }
            return event::respond(outcomes);
        }
    };

    let mut warnings = Vec::new();
    let mut messages: HashMap<String, Option<String>> = HashMap::new();
    for ((message, event), claim) in events.into_iter().zip(claims) {
        let instance_id = event.detail.instance_id.clone();
        let id = event_id(&event).to_string();
        match claim {
            Err(err) => outcomes.push((message, Err(err.into()))),
            Ok(Claim::Taken) => {
                tracing::info!(instance_id, event_id = id, "another delivery of this event holds it; nothing to do");
                outcomes.push((message, Ok(json!({"action": "duplicate", "instance_id": instance_id}))));
            }
            Ok(Claim::Busy) if lookups.contains_key(&instance_id) => {
                tracing::info!(
                    instance_id,
                    event_id = id,
                    "a replacement is already in flight for this instance; nothing to do"
                );
                outcomes.push((message, Ok(json!({"action": "already-replacing", "instance_id": instance_id}))));
            }
            Ok(Claim::Busy) => {
                tracing::debug!(instance_id, event_id = id, "no group manages this instance; ignored");
                outcomes.push((message, Ok(json!({"action": "ignored", "reason": "no group manages this instance"}))));
            }
            Ok(Claim::Won) => match lookups.get(&instance_id) {
                // Deleted between the lock and the read (the group was removed): give it back.
                None => {
                    release(deps, &id, &instance_id).await;
                    outcomes
                        .push((message, Ok(json!({"action": "ignored", "reason": "no group manages this instance"}))));
                }
                Some(lookup) => {
                    messages.insert(id.clone(), message);
                    warnings.push(Warning {
                        event_id: id,
                        instance_id,
                        warned_at: event.time.unwrap_or(now),
                        lookup: lookup.clone(),
                    });
                }
            },
        }
    }

    // Plan, then act: every launch and detach request of the batch leaves now, concurrently.
    let actions = plan::interruption_actions(warnings, &health, now);
    let done = futures::future::join_all(actions.iter().map(|a| act(deps, a))).await;
    if !actions.is_empty() {
        tracing::info!(
            elapsed_ms = arrived.elapsed().as_millis() as u64,
            actions = actions.len(),
            "interruption requests sent"
        );
    }

    // Record and alert, after the requests.
    let mut alerts = Vec::new();
    for (action, result) in actions.iter().zip(done) {
        let results = record(deps, action, result, &health, now, &mut alerts).await;
        for (event_id, result) in results {
            outcomes.push((messages.remove(&event_id).flatten(), result));
        }
    }
    deps.notifier.send(&alerts).await;
    event::respond(outcomes)
}

fn event_id(event: &Event<SpotInterruptionWarning>) -> &str {
    event.id.as_deref().unwrap_or_default()
}

async fn release(deps: &Deps, event_id: &str, instance_id: &str) {
    if let Err(err) = deps.store.release(event_id, instance_id).await {
        tracing::error!(event_id, error = %err, "could not release the event's claim; it frees itself when its lease runs out");
    }
}

/// Same events, same token: a retried request launches nothing twice.
fn client_token(warnings: &[Warning]) -> String {
    let mut ids: Vec<&str> = warnings.iter().map(|w| w.event_id.as_str()).collect();
    ids.sort_unstable();
    hex::encode(&Sha256::digest(ids.join(",").as_bytes())[..16])
}

enum Done {
    Detached,
    Launched(Launch),
}

async fn act(deps: &Deps, action: &Action) -> Result<Done, Error> {
    match action {
        Action::Detach { asg_name, warnings, .. } => {
            let ids: Vec<String> = warnings.iter().map(|w| w.instance_id.clone()).collect();
            deps.clients.autoscaling.detach(asg_name, &ids).await?;
            Ok(Done::Detached)
        }
        Action::Replace { group, pools, warnings } => {
            let GroupKind::Standalone(spec) = &group.kind else {
                return Err(Error::Retry(format!("group {} is not a standalone group", group.name)));
            };
            let mut tags = vec![
                (GROUP_TAG.to_string(), group.name.to_string()),
                ("Name".to_string(), format!("spotkeeper-{}", group.name)),
            ];
            // One request can carry many instances but only one set of tags: with several
            // replacements, each gets its `replaces` tag right after the request.
            if let [only] = warnings.as_slice() {
                tags.push((REPLACES_TAG.to_string(), only.instance_id.clone()));
            }
            let count = u32::try_from(warnings.len()).unwrap_or(u32::MAX);
            let launched =
                launch(&deps.clients.ec2, &spec.launch_template, pools, count, tags, &client_token(warnings)).await?;
            Ok(Done::Launched(launched))
        }
    }
}

fn describe(pool: Option<&Pool>) -> String {
    pool.map(Pool::to_string).unwrap_or_else(|| "an unknown pool".into())
}

/// Writes what was done (members, pool health, history, claims) and collects the alerts.
/// Returns each warning's outcome.
async fn record(
    deps: &Deps,
    action: &Action,
    result: Result<Done, Error>,
    health: &PoolHealth,
    now: DateTime<Utc>,
    alerts: &mut Vec<Alert>,
) -> Vec<(String, Result<Value, Error>)> {
    let warnings = action.warnings();
    let group = match action {
        Action::Detach { group, .. } => group.clone(),
        Action::Replace { group, .. } => group.name.clone(),
    };
    let mut history = History::new(deps);
    for w in warnings {
        history.note(
            Some(&w.instance_id),
            "interrupted",
            format!("Spot interruption warning for {} in {}", w.instance_id, describe(w.lookup.pool.as_ref())),
        );
    }
    let outcomes = match (action, result) {
        (_, Err(err)) => {
            let reason = err.to_string();
            let mut outcomes = Vec::new();
            for w in warnings {
                release(deps, &w.event_id, &w.instance_id).await;
                history.note(
                    Some(&w.instance_id),
                    "interruption-failed",
                    format!("could not act on the warning: {reason}"),
                );
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
                outcomes.push((w.event_id.clone(), Err(Error::Retry(reason.clone()))));
            }
            outcomes
        }
        (Action::Detach { asg_name, .. }, Ok(_)) => {
            let mut outcomes = Vec::new();
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
                outcomes.push((
                    w.event_id.clone(),
                    Ok(json!({"action": "detached", "instance_id": w.instance_id, "asg": asg_name})),
                ));
            }
            outcomes
        }
        (Action::Replace { group: config, pools, .. }, Ok(Done::Launched(launched))) => {
            replaced(deps, config, pools, warnings, launched, health, now, &mut history, alerts).await
        }
        (Action::Replace { .. }, Ok(Done::Detached)) => Vec::new(),
    };
    history.write(deps, &group).await;
    outcomes
}

async fn mark_interrupted(deps: &Deps, w: &Warning, action: &str, replaced_by: Option<String>) {
    let interrupted = Interrupted { warned_at: w.warned_at, action: action.to_string(), replaced_by };
    let result =
        deps.store.update_member(&w.lookup.group, &w.instance_id, |m| m.interrupted = Some(interrupted.clone())).await;
    if let Err(err) = result {
        tracing::error!(group = %w.lookup.group, instance_id = %w.instance_id, error = %err, "could not record the interruption on the member");
    }
}

async fn settle(deps: &Deps, event_id: &str, outcome: &str) {
    if let Err(err) = deps.store.settle(event_id, outcome).await {
        tracing::error!(event_id, error = %err, "could not mark the event done");
    }
}

#[allow(clippy::too_many_arguments, reason = "the one place that records a replacement")]
async fn replaced(
    deps: &Deps,
    group: &Group,
    pools: &[Pool],
    warnings: &[Warning],
    launched: Launch,
    health: &PoolHealth,
    now: DateTime<Utc>,
    history: &mut History,
    alerts: &mut Vec<Alert>,
) -> Vec<(String, Result<Value, Error>)> {
    let GroupKind::Standalone(spec) = &group.kind else { return Vec::new() };
    let zone_of = |subnet: &Option<String>| {
        spec.subnets
            .iter()
            .find(|s| Some(&s.id) == subnet.as_ref())
            .map(|s| s.availability_zone.clone())
            .unwrap_or_default()
    };
    let pairs: Vec<(&Warning, Member)> = warnings
        .iter()
        .zip(&launched.instances)
        .map(|(w, new)| {
            let member = Member {
                instance_id: new.instance_id.clone(),
                market: new.market,
                instance_type: new.instance_type.clone(),
                availability_zone: zone_of(&new.subnet_id),
                subnet_id: new.subnet_id.clone(),
                state: "pending".into(),
                state_at: None,
                launched_at: Some(now),
                fallen_back: launched.fell_back.contains(&new.instance_id),
                replaces: Some(Replaced {
                    instance_id: w.instance_id.clone(),
                    warned_at: w.warned_at,
                    reason: Reason::Interruption,
                }),
                interrupted: None,
                retiring: None,
                version: 0,
            };
            (w, member)
        })
        .collect();

    let new_members: Vec<Member> = pairs.iter().map(|(_, m)| m.clone()).collect();
    if let Err(err) = deps.store.add_members(group, &new_members).await {
        tracing::error!(group = %group.name, error = %err, "could not record the replacements; the next reconcile adopts them by tag");
    }
    if pairs.len() > 1 {
        let tagging = pairs
            .iter()
            .map(|(w, m)| deps.clients.ec2.tag(std::slice::from_ref(&m.instance_id), REPLACES_TAG, &w.instance_id));
        for result in futures::future::join_all(tagging).await {
            if let Err(err) = result {
                tracing::error!(group = %group.name, error = %err, "could not tag a replacement with the instance it replaces");
            }
        }
    }
    // Avoid the interrupted pools, and those that had no capacity, for a while.
    let mut avoid: Vec<Pool> = warnings.iter().filter_map(|w| w.lookup.pool.clone()).collect();
    for error in launched.errors.iter().filter(|e| plan::is_capacity_error(&e.code)) {
        match &error.pool {
            Some((instance_type, subnet)) => avoid
                .extend(pools.iter().filter(|p| &p.instance_type == instance_type && &p.subnet_id == subnet).cloned()),
            None => avoid.extend(pools.iter().cloned()),
        }
    }
    avoid.sort_by_key(Pool::key);
    avoid.dedup();
    if let Err(err) = deps.store.avoid_pools(&avoid, now + Duration::minutes(AVOID_POOL_MINUTES), health, now).await {
        tracing::error!(group = %group.name, error = %err, "could not record pool health");
    }

    let mut outcomes = Vec::new();
    for (w, member) in &pairs {
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
                group.name.as_str(),
                Severity::Warning,
                format!(
                    "{}: {} interrupted, replacement {} launched on {}",
                    group.name, w.instance_id, member.instance_id, member.market
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
                    group.name.as_str(),
                    Severity::Warning,
                    format!("{}: no Spot capacity, {} launched On-Demand", group.name, member.instance_id),
                )
                .fact("instance", &member.instance_id)
                .fact("replaces", &w.instance_id)
                .fact("market", member.market)
                .fact("spot errors", launched.error_summary()),
            );
        }
        outcomes.push((
            w.event_id.clone(),
            Ok(json!({"action": "replaced", "instance_id": w.instance_id, "replacement": member.instance_id, "market": member.market, "pool": pool, "fallen_back": member.fallen_back})),
        ));
    }
    if pairs.iter().any(|(_, m)| m.fallen_back) {
        let noted = deps
            .store
            .update_group(&group.name, |g| recovery::note_fallback(g, "no Spot capacity in any pool", now, None))
            .await;
        if let Err(err) = noted {
            tracing::error!(group = %group.name, error = %err, "could not record the fallback; the next scheduled run notices it");
        }
    }
    // Warnings EC2 found no instance for: their messages come back through SQS and try again.
    for w in warnings.iter().skip(pairs.len()) {
        release(deps, &w.event_id, &w.instance_id).await;
        let reason = format!("EC2 launched no replacement: {}", launched.error_summary());
        history.note(Some(&w.instance_id), "interruption-failed", reason.clone());
        alerts.push(
            Alert::new(
                "interruption-failed",
                group.name.as_str(),
                Severity::Critical,
                format!("{}: no replacement could be launched for {}", group.name, w.instance_id),
            )
            .fact("instance", &w.instance_id)
            .fact("error", &reason),
        );
        outcomes.push((w.event_id.clone(), Err(Error::Retry(reason))));
    }
    outcomes
}
