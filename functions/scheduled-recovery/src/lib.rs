//! `scheduled-recovery`: every five minutes, the reconcile (table against EC2), the way back
//! to Spot and the groups' images (made on their schedule, activated, pruned); and, on `EC2 Instance Launch Unsuccessful` for lack of capacity, an Auto Scaling
//! group's fallback to On-Demand.

use spotkeeper::domain::{AlertKind, HistoryKind};
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use spotkeeper::adapters::aws::ec2;
use spotkeeper::adapters::notify::{Alert, Severity};
use spotkeeper::adapters::store::Counted;
use spotkeeper::decisions::recovery::{self, Drift, Step};
use spotkeeper::decisions::{plan, savings};
use spotkeeper::domain::{
    GROUP_TAG, Group, GroupKind, InstanceFacts, Member, OnDemandShare, PoolHealth, Reason, Retiring, StandaloneSpec,
};
use spotkeeper::event::{self, Event, LAUNCH_UNSUCCESSFUL, LaunchUnsuccessful, SCHEDULED_EVENT};
use spotkeeper::workflows::replacement::{self, LaunchPlan, Old};
use spotkeeper::workflows::report::Report;
use spotkeeper::workflows::{images, online};
use spotkeeper::{Deps, Error, metrics};

/// A member on its way back to Spot stays locked this long at most.
const RECOVERY_LOCK_HOURS: i64 = 6;
const RECOVERY_HOLDER: &str = "recovery";

/// The function's entry: the schedule's event, or Auto Scaling's launch failures. Nothing here
/// waits on AWS: what is not done yet (a volume still detaching) is looked at again next run.
pub async fn handle(deps: &Deps, payload: Value, deadline: spotkeeper::Deadline) -> Result<Value, Error> {
    match event::detail_type(&payload).as_deref() {
        Some(SCHEDULED_EVENT) => run(deps, deadline).await,
        Some(LAUNCH_UNSUCCESSFUL) => {
            event::dispatch(payload, LAUNCH_UNSUCCESSFUL, |e| launch_failed(deps, e, deadline)).await
        }
        _ => Err(event::unexpected(&payload, "Scheduled Event or EC2 Instance Launch Unsuccessful").into()),
    }
}

/// One scheduled run over every group.
pub async fn run(deps: &Deps, deadline: spotkeeper::Deadline) -> Result<Value, Error> {
    let now = deps.clock.now();
    let groups = deps.store.groups().await?;
    let members = futures::future::try_join_all(groups.iter().map(|g| deps.store.members(&g.name))).await?;
    // One tag-filtered listing for the whole fleet: never a call per instance.
    let tags = vec![GROUP_TAG.to_string(), "aws:autoscaling:groupName".to_string()];
    let (instances, (_, health)) =
        futures::try_join!(async { deps.clients.ec2.tagged(&tags).await.map_err(Error::from) }, async {
            deps.store.lookups(&[]).await.map_err(Error::from)
        },)?;
    let managed: HashSet<&str> = members.iter().flatten().map(|m| m.instance_id.as_str()).collect();
    // A member missing from the listing may have lost its tag: ask for it by id before calling
    // it vanished (only when something is missing, which is rare).
    let unlisted: Vec<String> =
        managed.iter().filter(|id| !instances.iter().any(|i| i.instance_id == **id)).map(|id| id.to_string()).collect();
    let mut known = instances.clone();
    if !unlisted.is_empty() {
        known.extend(deps.clients.ec2.instances(&unlisted).await?);
    }
    let mut summary = Vec::new();
    let mut report = Report::new(deps);
    let ledger = match savings(deps, &groups, &members, &known, now).await {
        Ok(ledger) => ledger,
        Err(err) => {
            tracing::error!(error = %err, "savings not accrued this run; the next run counts the time");
            json!({"error": err.to_string()})
        }
    };
    for (group, members) in groups.iter().zip(&members) {
        let drift = recovery::drift(group, members, &known, |id| managed.contains(id), recovery::owner_tag(group));
        let reconciled = reconcile(deps, group, members, &drift, &health, now, &mut report).await;
        let step = recovery::recovery_step(group, members, now);
        let recovered = recover(deps, group, members, &step, &health, now, &mut report).await;
        let imaged = reported(images::refresh(deps, group, members, &known, now, &mut report).await, group);
        let probation = reported(images::probation(deps, group, members, &known, now, &mut report).await, group);
        let activities = asg_activities(deps, group, now, &mut report).await;
        let volumes = reported(online::continue_moves(deps, group, &mut report).await, group);
        summary.push(json!({
            "group": group.name, "reconcile": reconciled, "recovery": recovered, "images": imaged,
            "probation": probation, "scaling_activities": activities, "volume_moves": volumes,
        }));
    }
    // What the fallback alarm watches: how many groups are on On-Demand, and for how long.
    let fallen: Vec<i64> =
        groups.iter().filter_map(|g| g.status.fallback.as_ref()).map(|f| (now - f.since).num_minutes()).collect();
    metrics::gauge!("FallbacksActive").set(fallen.len() as f64);
    metrics::gauge!("LongestFallbackMinutes").set(fallen.iter().copied().max().unwrap_or(0) as f64);
    report.send(deps, deadline).await;
    Ok(json!({"groups": summary, "savings": ledger}))
}

/// On-Demand prices of these types: today's cached price, or the Price List API's, or (when it is
/// out of reach) the list price shipped with spotkeeper; what is found is cached for the day, so a
/// failing API is not asked again every run.
async fn on_demand_prices(deps: &Deps, types: &[String], now: DateTime<Utc>) -> HashMap<String, f64> {
    let day = now.format("%Y-%m-%d").to_string();
    let region = &deps.clients.region;
    let mut prices = HashMap::new();
    for instance_type in types {
        if let Some(price) = deps.store.cached_price(region, instance_type, &day).await.ok().flatten() {
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
            if let Err(err) = deps.store.cache_price(region, instance_type, &day, price, now).await {
                tracing::warn!(error = %err, "could not cache a price");
            }
            prices.insert(instance_type.clone(), price);
        }
    }
    prices
}

/// Accrues every group's hours since the last run into its ledger for today: one Spot price
/// call for all pools, On-Demand prices cached for the day.
async fn savings(
    deps: &Deps,
    groups: &[Group],
    members: &[Vec<Member>],
    known: &[InstanceFacts],
    now: DateTime<Utc>,
) -> Result<Value, Error> {
    let mut types: Vec<String> = members.iter().flatten().map(|m| m.instance_type.clone()).collect();
    types.sort();
    types.dedup();
    let spot = deps.clients.ec2.spot_prices(&types, now).await.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "no Spot prices this run: Spot hours are priced On-Demand (no saving claimed)");
        HashMap::new()
    });
    let on_demand = on_demand_prices(deps, &types, now).await;
    let day = now.format("%Y-%m-%d").to_string();
    let mut accrued = Vec::new();
    for (group, members) in groups.iter().zip(members) {
        let since = group.status.accrued_at.unwrap_or(now);
        let price = |t: &str| group.policy.on_demand_prices.get(t).or(on_demand.get(t)).copied();
        let usage = savings::accrue(members, known, since, now, &spot, price);
        if usage.spot_hours + usage.on_demand_hours > 0.0 {
            deps.store.add_usage(&group.name, &day, &usage).await?;
        }
        deps.store.update_group(&group.name, |g| g.status.accrued_at = Some(now)).await?;
        accrued.push(json!({"group": group.name, "day": day, "usage": usage}));
    }
    Ok(json!(accrued))
}

fn reported(result: Result<Value, Error>, group: &Group) -> Value {
    result.unwrap_or_else(|err| {
        tracing::error!(group = %group.name, error = %err, "scheduled step failed; the next run tries again");
        json!({"error": err.to_string()})
    })
}

#[allow(clippy::too_many_arguments, reason = "one step of a scheduled run, with what it records")]
async fn reconcile(
    deps: &Deps,
    group: &Group,
    members: &[Member],
    drift: &Drift,
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Value {
    if drift.is_empty() {
        return json!({"drift": false});
    }
    let result = async {
        let mut done = json!({"drift": true});
        if !drift.strays.is_empty() {
            let strays: Vec<Member> = drift.strays.iter().cloned().map(|f| f.into_member(false)).collect();
            deps.store.add_members(group, &strays).await?;
            for m in &strays {
                report.note(
                    &group.name,
                    Some(&m.instance_id),
                    HistoryKind::InstanceAdopted,
                    format!("{} found running in the group; now a member", m.instance_id),
                );
            }
            done["adopted"] = json!(strays.iter().map(|m| &m.instance_id).collect::<Vec<_>>());
        }
        if let GroupKind::Standalone(spec) = &group.kind {
            let olds: Vec<Old> = drift
                .to_replace()
                .map(|m| Old { instance_id: m.instance_id.clone(), since: now, pool: m.pool() })
                .collect();
            let kept: Vec<Member> = members.iter().filter(|m| !drift.vanished.contains(m)).cloned().collect();
            if !olds.is_empty() || drift.missing > 0 {
                let lost: Vec<_> = olds.iter().filter_map(|o| o.pool.clone()).collect();
                let token = replacement::token([group.name.as_str(), &now.timestamp().to_string(), "reconcile"]);
                let request = LaunchPlan::new(
                    spec,
                    plan::launch_pools(spec, &lost, health, now)?,
                    olds,
                    Reason::Reconcile,
                    token,
                )
                .with_extra(drift.missing)
                .with_on_demand(recovery::on_demand_wanted(group.policy.on_demand_base, &kept))
                .with_fallback(group.policy.fallback);
                let launched = replacement::launch_for(deps, group, &request).await?;
                let recorded = replacement::record(deps, group, &request, &launched, health, now).await;
                for (old, new) in &recorded.pairs {
                    report.note(
                        &group.name,
                        Some(&new.instance_id),
                        HistoryKind::ReplacementLaunched,
                        format!(
                            "{} vanished without an event; {} launched on {} in its place",
                            old.instance_id, new.instance_id, new.market
                        ),
                    );
                }
                for new in &recorded.added {
                    report.note(
                        &group.name,
                        Some(&new.instance_id),
                        HistoryKind::InstanceLaunched,
                        format!("the group was below its capacity; {} launched on {}", new.instance_id, new.market),
                    );
                }
                report.alert(
                    Alert::new(
                        AlertKind::Reconciled,
                        &group.name,
                        Severity::Warning,
                        format!(
                            "{}: {} vanished, {} launched",
                            group.name,
                            drift.vanished.len(),
                            recorded.pairs.len() + recorded.added.len()
                        ),
                    )
                    .fact(
                        "vanished",
                        drift.vanished.iter().map(|m| m.instance_id.as_str()).collect::<Vec<_>>().join(", "),
                    )
                    .fact(
                        "launched",
                        recorded
                            .pairs
                            .iter()
                            .map(|(_, m)| &m.instance_id)
                            .chain(recorded.added.iter().map(|m| &m.instance_id))
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                    .fact("errors", launched.error_summary()),
                );
                done["launched"] = json!(
                    recorded
                        .pairs
                        .iter()
                        .map(|(_, m)| &m.instance_id)
                        .chain(recorded.added.iter().map(|m| &m.instance_id))
                        .collect::<Vec<_>>()
                );
            }
        }
        for m in &drift.vanished {
            deps.store.remove_member(&group.name, &m.instance_id).await?;
            report.note(
                &group.name,
                Some(&m.instance_id),
                HistoryKind::MemberClosed,
                format!("{} no longer exists; the group no longer lists it", m.instance_id),
            );
        }
        done["closed"] = json!(drift.vanished.iter().map(|m| &m.instance_id).collect::<Vec<_>>());
        Ok::<_, Error>(done)
    }
    .await;
    reported(result, group)
}

#[allow(clippy::too_many_arguments, reason = "one step of a scheduled run, with what it records")]
async fn recover(
    deps: &Deps,
    group: &Group,
    members: &[Member],
    step: &Step,
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Value {
    let result = match (step, &group.kind) {
        (Step::Nothing, _) => Ok(json!({"step": "nothing"})),
        (Step::InFlight(member), _) => Ok(json!({"step": "in-flight", "member": member})),
        (Step::Wait(at), _) => Ok(json!({"step": "wait", "until": at})),
        (Step::OutsideWindow, _) => Ok(json!({"step": "outside-window"})),
        (Step::Replace(member), GroupKind::Standalone(spec)) => {
            back_to_spot(deps, group, spec, members, member, health, now, report).await
        }
        (Step::Restore(share), GroupKind::Asg(spec)) => restore(deps, group, &spec.asg_name, *share, now, report).await,
        (Step::Replace(_) | Step::Restore(_), _) => Ok(json!({"step": "nothing"})),
    };
    reported(result, group)
}

/// Launches one Spot replacement for one fallen-back member. No On-Demand fallback here: the
/// point is to leave On-Demand. Failure pushes the next attempt back (doubling, capped).
#[allow(clippy::too_many_arguments, reason = "one recovery attempt, with what it records")]
async fn back_to_spot(
    deps: &Deps,
    group: &Group,
    spec: &StandaloneSpec,
    members: &[Member],
    member_id: &str,
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Value, Error> {
    let name = &group.name;
    // The group's recovery slot, then the member's lock: a recovery and anything else
    // replacing the same member never both act.
    let taken = deps
        .store
        .update_group(name, |g| {
            if g.status.recovery.in_flight.is_none() {
                g.status.recovery.in_flight = Some(member_id.to_string());
            }
        })
        .await?;
    if taken.and_then(|g| g.status.recovery.in_flight).as_deref() != Some(member_id) {
        return Ok(json!({"step": "in-flight"}));
    }
    if !deps.store.lock_instance(member_id, RECOVERY_HOLDER, now, Duration::hours(RECOVERY_LOCK_HOURS)).await? {
        deps.store.update_group(name, |g| g.status.recovery.in_flight = None).await?;
        return Ok(json!({"step": "busy", "member": member_id, "reason": "another replacement holds the member"}));
    }
    let member = members.iter().find(|m| m.instance_id == member_id);
    let attempt = group.status.recovery.failed_attempts.to_string();
    let olds = vec![Old { instance_id: member_id.to_string(), since: now, pool: member.and_then(Member::pool) }];
    let token = replacement::token([RECOVERY_HOLDER, member_id, attempt.as_str()]);
    let outcome = async {
        let request = LaunchPlan::new(spec, plan::launch_pools(spec, &[], health, now)?, olds, Reason::Recovery, token);
        let launched = replacement::launch_for(deps, group, &request).await?;
        let recorded = replacement::record(deps, group, &request, &launched, health, now).await;
        Ok::<_, Error>((launched, recorded))
    }
    .await;
    let (launched, recorded) = match outcome {
        Ok(done) => done,
        Err(err) => return failed_attempt(deps, group, member_id, &err.to_string(), now, report).await,
    };
    let Some((_, new)) = recorded.pairs.first() else {
        let error = format!("no Spot capacity: {}", launched.error_summary());
        return failed_attempt(deps, group, member_id, &error, now, report).await;
    };
    let retiring = Retiring { since: now, reason: Reason::Recovery, replaced_by: new.instance_id.clone() };
    deps.store.update_member(name, member_id, |m| m.retiring = Some(retiring.clone())).await?;
    report.note(
        &group.name,
        Some(&new.instance_id),
        HistoryKind::RecoveryStarted,
        format!("{} launched on Spot to replace On-Demand {member_id}", new.instance_id),
    );
    report.alert(
        Alert::new(
            AlertKind::RecoveryStarted,
            name,
            Severity::Info,
            format!("{name}: moving {member_id} back to Spot with {}", new.instance_id),
        )
        .fact("instance", member_id)
        .fact("replacement", &new.instance_id)
        .fact("pool", new.pool().map(|p| p.to_string()).unwrap_or_default()),
    );
    Ok(json!({"step": "replacing", "member": member_id, "replacement": new.instance_id}))
}

async fn failed_attempt(
    deps: &Deps,
    group: &Group,
    member_id: &str,
    error: &str,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Value, Error> {
    let name = &group.name;
    deps.store.unlock_instance(member_id, RECOVERY_HOLDER).await?;
    let saved = deps.store.update_group(name, |g| recovery::note_failed_attempt(g, error, now)).await?;
    let next = saved.as_ref().and_then(|g| g.status.recovery.next_attempt_at);
    let attempts = saved.as_ref().map(|g| g.status.recovery.failed_attempts).unwrap_or_default();
    report.note(
        &group.name,
        Some(member_id),
        HistoryKind::RecoveryFailed,
        format!("back to Spot failed ({error}); next attempt at {}", next.map(|n| n.to_rfc3339()).unwrap_or_default()),
    );
    report.alert(
        Alert::new(
            AlertKind::RecoveryFailed,
            name,
            Severity::Warning,
            format!("{name}: still no Spot capacity for {member_id}"),
        )
        .fact("instance", member_id)
        .fact("error", error)
        .fact("failed attempts", attempts)
        .fact("next attempt", next.map(|n| n.to_rfc3339()).unwrap_or_default()),
    );
    Ok(json!({"step": "failed", "member": member_id, "next_attempt_at": next, "failed_attempts": attempts}))
}

async fn restore(
    deps: &Deps,
    group: &Group,
    asg_name: &str,
    share: OnDemandShare,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Value, Error> {
    let Some(asg) = deps.clients.autoscaling.group(asg_name).await? else {
        return Err(Error::Retry(format!("Auto Scaling group {asg_name} no longer exists")));
    };
    deps.clients.autoscaling.set_on_demand_share(&asg, share).await?;
    deps.store.update_group(&group.name, |g| recovery::note_recovered(g, 0, now)).await?;
    metrics::counter!("Recoveries", "group" => group.name.to_string()).increment(1);
    let text = format!("On-Demand share restored to base {} + {}% above it", share.base, share.percent_above_base);
    report.note(&group.name, None, HistoryKind::Recovered, text.clone());
    report.alert(
        Alert::new(AlertKind::Recovered, &group.name, Severity::Info, format!("{}: back on Spot, {text}", group.name))
            .fact("asg", asg_name),
    );
    Ok(json!({"step": "restored", "on_demand_share": share}))
}

/// Auto Scaling could not launch (its `EC2 Instance Launch Unsuccessful` event).
async fn launch_failed(
    deps: &Deps,
    event: Event<LaunchUnsuccessful>,
    deadline: spotkeeper::Deadline,
) -> Result<Value, Error> {
    let now = deps.clock.now();
    let detail = &event.detail;
    let groups = deps.store.groups().await?;
    let Some(group) = groups.iter().find(|g| matches!(&g.kind, GroupKind::Asg(s) if s.asg_name == detail.asg_name))
    else {
        tracing::debug!(asg = %detail.asg_name, "no group follows this Auto Scaling group; ignored");
        return Ok(json!({"action": "ignored", "reason": "no group follows this Auto Scaling group"}));
    };
    spotkeeper::workflows::report::reported(deps, deadline, async |report| {
        asg_fallback(deps, group, &detail.asg_name, &detail.status_message, now, report).await
    })
    .await
}

/// An Auto Scaling group failed to launch: for lack of Spot capacity, raise the On-Demand share so
/// desired capacity is met, and record the share to restore.
async fn asg_fallback(
    deps: &Deps,
    group: &Group,
    asg_name: &str,
    message: &str,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Value, Error> {
    if !ec2::mentions_capacity(message) {
        report.note(&group.name, None, HistoryKind::LaunchFailed, format!("{asg_name} could not launch: {message}"));
        return Ok(json!({"action": "recorded", "reason": "not a capacity failure"}));
    }
    if !group.policy.fallback {
        report.alert(
            Alert::new(
                AlertKind::NoCapacity,
                &group.name,
                Severity::Warning,
                format!("{}: no Spot capacity; fallback is off", group.name),
            )
            .fact("message", message),
        );
        return Ok(json!({"action": "notified", "reason": "fallback is off"}));
    }
    if group.status.fallback.is_some() {
        return Ok(json!({"action": "none", "reason": "already on On-Demand"}));
    }
    let asg = deps
        .clients
        .autoscaling
        .group(asg_name)
        .await?
        .ok_or_else(|| Error::Retry(format!("Auto Scaling group {asg_name} is gone")))?;
    let share = asg
        .on_demand_share()
        .ok_or_else(|| Error::Retry(format!("Auto Scaling group {asg_name} has no mixed instances policy")))?;
    let raised = OnDemandShare { base: share.base, percent_above_base: 100 };
    deps.clients.autoscaling.set_on_demand_share(&asg, raised).await?;
    deps.store.update_group(&group.name, |g| recovery::note_fallback(g, message, now, Some(share))).await?;
    deps.store.count(&group.name, &now.format("%Y-%m-%d").to_string(), Counted::Fallback, 1).await?;
    metrics::counter!("Fallbacks", "group" => group.name.to_string()).increment(1);
    let text = format!("On-Demand share raised to 100% above base {} (was {}%)", share.base, share.percent_above_base);
    report.note(&group.name, None, HistoryKind::Fallback, format!("no Spot capacity: {text}"));
    report.alert(
        Alert::new(
            AlertKind::Fallback,
            &group.name,
            Severity::Warning,
            format!("{}: no Spot capacity, {text}", group.name),
        )
        .fact("asg", asg_name)
        .fact("message", message)
        .fact("restore", format!("base {} + {}%", share.base, share.percent_above_base)),
    );
    Ok(json!({"action": "fallback", "restore": share}))
}

/// How far back a scheduled run looks for failed scaling activities: a little more than the
/// schedule, so none falls between two runs.
const ACTIVITY_WINDOW_MINUTES: i64 = 10;

/// An asg group's scaling activities that failed for lack of capacity since the last runs: the
/// same fallback as the launch-failure event (which a missed or filtered rule may not bring).
async fn asg_activities(deps: &Deps, group: &Group, now: DateTime<Utc>, report: &mut Report) -> Value {
    let GroupKind::Asg(spec) = &group.kind else { return json!({"checked": false}) };
    if group.status.fallback.is_some() {
        return json!({"checked": false, "reason": "already on On-Demand"});
    }
    let result = async {
        let failures = deps
            .clients
            .autoscaling
            .failed_activities(&spec.asg_name, now - Duration::minutes(ACTIVITY_WINDOW_MINUTES))
            .await?;
        match failures.iter().find(|m| ec2::mentions_capacity(m)) {
            Some(message) => asg_fallback(deps, group, &spec.asg_name, message, now, report).await,
            None => Ok(json!({"checked": true, "failures": failures.len()})),
        }
    }
    .await;
    reported(result, group)
}
