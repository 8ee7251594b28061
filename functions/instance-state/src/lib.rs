//! `instance-state`: reacts to `EC2 Instance State-change Notification`.
//! - A member of a standalone group reaches `running`: its DNS record, Elastic IP and free data
//!   volumes move to it; for a replacement, the time from warning to switch is recorded and alerted.
//!   A rebalance or recovery replacement then retires the member it replaces: terminated, or
//!   stopped first when data volumes must move; a recovery switch ends the fallback.
//! - An interrupted or retiring member stops or terminates: its data volumes move to its
//!   replacement, and once it is gone the group forgets it.

use serde_json::{Value, json};
use spotkeeper::adapters::notify::{Alert, Severity};
use spotkeeper::decisions::{rebalancing, recovery};
use spotkeeper::domain::{AlertKind, HistoryKind};
use spotkeeper::domain::{GroupKind, GroupName, Reason, StandaloneSpec};
use spotkeeper::event::{self, Event, INSTANCE_STATE_CHANGE, InstanceStateChange};
use spotkeeper::workflows::images;
use spotkeeper::workflows::online::{self, bring_online, move_volumes};
use spotkeeper::workflows::report::Report;
use spotkeeper::{Deadline, Deps, Error, metrics};

/// The function's entry: a bare event or an SQS batch of them. Every wait ends before the
/// invocation's `deadline`.
pub async fn handle(deps: &Deps, payload: Value, deadline: Deadline) -> Result<Value, Error> {
    event::dispatch(payload, INSTANCE_STATE_CHANGE, |e| state_changed(deps, e, deadline)).await
}

async fn state_changed(deps: &Deps, event: Event<InstanceStateChange>, deadline: Deadline) -> Result<Value, Error> {
    let InstanceStateChange { instance_id, state } = &event.detail;
    let instance_id = &instance_id.to_string();
    let event_id = event.id.as_deref().unwrap_or_default();
    let Some(name) = deps.store.group_of(instance_id).await? else {
        tracing::debug!(instance_id, state, event_id, "no group manages this instance; ignored");
        return Ok(json!({"action": "ignored", "reason": "no group manages this instance"}));
    };
    let (group, members) = futures::try_join!(deps.store.group(&name), deps.store.members(&name))?;
    let (Some(group), Some(member)) = (group, members.iter().find(|m| &m.instance_id == instance_id)) else {
        tracing::debug!(instance_id, group = %name, "the group no longer manages this instance; ignored");
        return Ok(json!({"action": "ignored", "reason": "the group no longer manages this instance"}));
    };
    let seen_at = event.time.unwrap_or_else(|| deps.clock.now());
    if member.state_at.is_some_and(|at| at > seen_at) {
        tracing::info!(
            instance_id,
            state,
            event_id,
            "a newer state is already recorded; this late event changes nothing"
        );
        return Ok(json!({"action": "ignored", "reason": "a newer state is already recorded"}));
    }
    let mut updated = member.clone();
    updated.state = state.clone();
    updated.state_at = Some(seen_at);
    deps.store.save_member(&name, &updated).await?;

    let mut report = Report::new(deps);
    report.note(&name, Some(instance_id), HistoryKind::InstanceState, format!("instance {instance_id} is {state}"));
    let mut done = json!({"action": "recorded", "group": name, "instance_id": instance_id, "state": state});
    let spec = match &group.kind {
        GroupKind::Standalone(spec) => Some(spec),
        GroupKind::Asg(_) => None,
    };
    match (spec, state.as_str()) {
        (Some(spec), "running") => {
            let online = bring_online(&deps.clients, spec, instance_id, &members).await?;
            for (kind, line) in online.lines() {
                report.note(&name, Some(instance_id), kind, line);
            }
            done["action"] = json!("brought-online");
            done["dns"] = json!(online.dns);
            done["address"] = json!(online.address);
            done["volumes"] = json!(online.attached.iter().map(|(v, _)| v).collect::<Vec<_>>());
            if let Some(replaced) = &member.replaces {
                let seconds = (seen_at - replaced.warned_at).num_milliseconds() as f64 / 1000.0;
                report.note(
                    &name,
                    Some(instance_id),
                    HistoryKind::Replaced,
                    format!(
                        "{} replaced by {instance_id} in {seconds:.1} s ({})",
                        replaced.instance_id, replaced.reason
                    ),
                );
                done["replaced_in_seconds"] = json!(seconds);
                metrics::histogram!("WarningToSwitchSeconds", "group" => name.to_string(), "reason" => replaced.reason.to_string()).record(seconds);
                let mut alert = Alert::new(
                    AlertKind::Replaced,
                    &name,
                    Severity::Info,
                    format!("{name}: {} replaced by {instance_id} in {seconds:.1} s", replaced.instance_id),
                )
                .fact("instance", &replaced.instance_id)
                .fact("replacement", instance_id)
                .fact("reason", replaced.reason)
                .fact("market", member.market)
                .fact("replaced in", format!("{seconds:.1} s"));
                if let Some(dns) = &online.dns {
                    alert = alert.fact("dns", dns.join(", "));
                }
                if let Some(address) = &online.address {
                    alert = alert.fact("elastic ip", address);
                }
                report.alert(alert);
                let retiring = members.iter().find(|m| m.instance_id == replaced.instance_id && m.retiring.is_some());
                if let Some(old) = retiring {
                    retire(deps, &name, spec, &old.instance_id, &mut report).await?;
                    done["retiring"] = json!(old.instance_id);
                }
                if replaced.reason == Reason::Recovery {
                    let now = deps.clock.now();
                    // The On-Demand member is retiring now, so it no longer counts.
                    let left = recovery::fallen_back(&members)
                        .iter()
                        .filter(|m| m.instance_id != replaced.instance_id)
                        .count();
                    deps.store.update_group(&name, |g| recovery::note_recovered(g, left, now)).await?;
                    metrics::counter!("Recoveries", "group" => name.to_string()).increment(1);
                    report.note(
                        &name,
                        Some(instance_id),
                        HistoryKind::Recovered,
                        format!("back on Spot: {instance_id} serves instead of On-Demand {}", replaced.instance_id),
                    );
                    report.alert(
                        Alert::new(
                            AlertKind::Recovered,
                            &name,
                            Severity::Info,
                            format!("{name}: back on Spot, {instance_id} replaces On-Demand {}", replaced.instance_id),
                        )
                        .fact("instance", &replaced.instance_id)
                        .fact("replacement", instance_id)
                        .fact("still on On-Demand", left),
                    );
                }
            }
        }
        (Some(_), "stopped" | "terminated") if member.is_serving() => {
            // A member from a new image that dies in probation, with no warning: the image is bad.
            let image = deps
                .clients
                .ec2
                .instances(std::slice::from_ref(instance_id))
                .await?
                .into_iter()
                .next()
                .and_then(|i| i.image_id);
            if images::died_in_probation(&group, member, image.as_deref(), seen_at) {
                let why = format!("{instance_id}, launched from it, {state} within the probation period");
                let rolled = images::rollback(deps, &group, &why, &mut report).await.map_err(|e| match e {
                    images::RollbackError::NoPrevious(m) => Error::Invalid(m),
                    images::RollbackError::Failed(e) => e,
                })?;
                let new = images::replace_from_previous(deps, &rolled, &[member], false, seen_at).await?;
                if state == "stopped" {
                    deps.clients.ec2.terminate(std::slice::from_ref(instance_id)).await?;
                }
                deps.store.remove_member(&name, instance_id).await?;
                report.note(
                    &name,
                    Some(instance_id),
                    HistoryKind::MemberClosed,
                    format!(
                        "{instance_id} {state} in probation; replaced by {} from the previous image",
                        new.join(", ")
                    ),
                );
                done["action"] = json!("rolled-back");
                done["replacement"] = json!(new);
            }
        }
        (Some(spec), "stopped" | "terminated") => {
            let retiring = state == "stopped" && member.retiring.is_some();
            let mut pending = false;
            if let Some(replacement) = member.replaced_by().filter(|_| !spec.data_volumes.is_empty()) {
                // A detach an earlier invocation asked for is waited for, not asked again.
                let detaching: Vec<String> = group
                    .status
                    .volume_moves
                    .iter()
                    .filter(|m| &m.from == instance_id)
                    .map(|m| m.volume_id.clone())
                    .collect();
                let moves =
                    move_volumes(&deps.clients, spec, instance_id, replacement, &detaching, deadline.remaining())
                        .await?;
                if !(detaching.is_empty() && moves.pending.is_empty()) {
                    let now = deps.clock.now();
                    let (from, pending) = (instance_id.as_str(), moves.pending.as_slice());
                    deps.store
                        .update_group(&name, |g| {
                            online::note_moves(&mut g.status.volume_moves, from, replacement, pending, retiring, now)
                        })
                        .await?;
                }
                online::record_move(&name, instance_id, replacement, &moves, &mut report);
                done["action"] = json!("volumes-moved");
                done["volumes"] = json!(moves.moved.iter().map(|(v, _)| v).collect::<Vec<_>>());
                done["volumes_pending"] = json!(moves.pending.iter().map(|(v, _)| v).collect::<Vec<_>>());
                pending = !moves.pending.is_empty();
            }
            // Stopped to move its volumes; now it goes (once they are off it).
            if retiring && !pending {
                deps.clients.ec2.terminate(std::slice::from_ref(instance_id)).await?;
                report.note(
                    &name,
                    Some(instance_id),
                    HistoryKind::Terminated,
                    format!("{instance_id} terminated: its replacement serves"),
                );
            }
        }
        _ => {}
    }
    if state == "terminated" && !member.is_serving() {
        deps.store.remove_member(&name, instance_id).await?;
        report.note(
            &name,
            Some(instance_id),
            HistoryKind::MemberClosed,
            format!("{instance_id} is gone; the group no longer lists it"),
        );
        if member.retiring.as_ref().is_some_and(|r| r.reason == Reason::Rebalance) {
            deps.store.update_group(&name, |g| rebalancing::free_slot(&mut g.status, instance_id.as_str())).await?;
        }
    }
    report.send(deps, deadline).await;
    Ok(done)
}

/// The replacement of a retiring member serves: the member goes. With data volumes it is stopped
/// first, so they can move (its `stopped` event does that, then terminates it).
async fn retire(
    deps: &Deps,
    name: &GroupName,
    spec: &StandaloneSpec,
    instance_id: &str,
    report: &mut Report,
) -> Result<(), Error> {
    let ids = [instance_id.to_string()];
    if spec.data_volumes.is_empty() {
        deps.clients.ec2.terminate(&ids).await?;
        report.note(
            name,
            Some(instance_id),
            HistoryKind::Terminated,
            format!("{instance_id} terminated: its replacement serves"),
        );
    } else {
        deps.clients.ec2.stop(&ids).await?;
        report.note(
            name,
            Some(instance_id),
            HistoryKind::Stopping,
            format!("{instance_id} stopping so its data volumes can move"),
        );
    }
    Ok(())
}
