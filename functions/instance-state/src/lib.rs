//! `instance-state`: reacts to `EC2 Instance State-change Notification`.
//! - A member of a standalone group reaches `running`: its DNS record, Elastic IP and free data
//!   volumes move to it; for a replacement, the time from warning to switch is recorded and alerted.
//! - An interrupted member stops or terminates: its data volumes move to its replacement, and
//!   once it is gone the group forgets it.

use serde_json::{Value, json};
use spotkeeper::event::{self, Event, INSTANCE_STATE_CHANGE, InstanceStateChange};
use spotkeeper::fleet::GroupKind;
use spotkeeper::history::History;
use spotkeeper::notify::{Alert, Severity};
use spotkeeper::online::{bring_online, move_volumes};
use spotkeeper::{Deps, Error};

/// The function's entry: a bare event or an SQS batch of them.
pub async fn handle(deps: &Deps, payload: Value) -> Result<Value, Error> {
    event::dispatch(payload, INSTANCE_STATE_CHANGE, |e| state_changed(deps, e)).await
}

async fn state_changed(deps: &Deps, event: Event<InstanceStateChange>) -> Result<Value, Error> {
    let InstanceStateChange { instance_id, state } = &event.detail;
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

    let mut history = History::new(deps);
    let mut alerts = Vec::new();
    history.note(Some(instance_id), "instance-state", format!("instance {instance_id} is {state}"));
    let mut done = json!({"action": "recorded", "group": name, "instance_id": instance_id, "state": state});
    let spec = match &group.kind {
        GroupKind::Standalone(spec) => Some(spec),
        GroupKind::Asg(_) => None,
    };
    match (spec, state.as_str()) {
        (Some(spec), "running") => {
            let online = bring_online(&deps.clients, spec, instance_id, &members).await?;
            for (kind, line) in online.lines() {
                history.note(Some(instance_id), kind, line);
            }
            done["action"] = json!("brought-online");
            done["dns"] = json!(online.dns);
            done["address"] = json!(online.address);
            done["volumes"] = json!(online.attached.iter().map(|(v, _)| v).collect::<Vec<_>>());
            if let Some(replaced) = &member.replaces {
                let seconds = (seen_at - replaced.warned_at).num_milliseconds() as f64 / 1000.0;
                history.note(
                    Some(instance_id),
                    "replaced",
                    format!("{} replaced by {instance_id} in {seconds:.1} s (warning to switch)", replaced.instance_id),
                );
                done["replaced_in_seconds"] = json!(seconds);
                let mut alert = Alert::new(
                    "replaced",
                    name.as_str(),
                    Severity::Info,
                    format!("{name}: {} replaced by {instance_id} in {seconds:.1} s", replaced.instance_id),
                )
                .fact("instance", &replaced.instance_id)
                .fact("replacement", instance_id)
                .fact("market", member.market)
                .fact("replaced in", format!("{seconds:.1} s"));
                if let Some(dns) = &online.dns {
                    alert = alert.fact("dns", dns.join(", "));
                }
                if let Some(address) = &online.address {
                    alert = alert.fact("elastic ip", address);
                }
                alerts.push(alert);
            }
        }
        (Some(spec), "stopped" | "terminated") if !spec.data_volumes.is_empty() => {
            if let Some(replacement) = member.interrupted.as_ref().and_then(|i| i.replaced_by.as_ref()) {
                let moved = move_volumes(&deps.clients, spec, instance_id, replacement).await?;
                for (volume, device) in &moved {
                    history.note(
                        Some(replacement),
                        "volume-moved",
                        format!("data volume {volume} moved from {instance_id} to {replacement} as {device}"),
                    );
                }
                done["action"] = json!("volumes-moved");
                done["volumes"] = json!(moved.iter().map(|(v, _)| v).collect::<Vec<_>>());
                alerts.push(
                    Alert::new(
                        "volume-moved",
                        name.as_str(),
                        Severity::Info,
                        format!("{name}: data volumes moved to {replacement}"),
                    )
                    .fact("from", instance_id)
                    .fact("to", replacement)
                    .fact("volumes", moved.iter().map(|(v, d)| format!("{v} as {d}")).collect::<Vec<_>>().join(", ")),
                );
            }
        }
        _ => {}
    }
    if state == "terminated" && member.interrupted.is_some() {
        deps.store.remove_member(&name, instance_id).await?;
        history.note(
            Some(instance_id),
            "member-closed",
            format!("{instance_id} is gone; the group no longer lists it"),
        );
    }
    history.write(deps, &name).await;
    deps.notifier.send(&alerts).await;
    Ok(done)
}
