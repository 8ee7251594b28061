//! `instance-state`: reacts to `EC2 Instance State-change Notification`. When a member of a
//! standalone group reaches `running`, its DNS record, Elastic IP and free data volumes move to it.

use serde_json::{Value, json};
use spotkeeper::event::{self, Event, INSTANCE_STATE_CHANGE, InstanceStateChange};
use spotkeeper::fleet::GroupKind;
use spotkeeper::online::bring_online;
use spotkeeper::history::History;
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
        tracing::info!(instance_id, state, event_id, "a newer state is already recorded; this late event changes nothing");
        return Ok(json!({"action": "ignored", "reason": "a newer state is already recorded"}));
    }
    let mut updated = member.clone();
    updated.state = state.clone();
    updated.state_at = Some(seen_at);
    deps.store.save_member(&name, &updated).await?;

    let mut history = History::new(deps);
    history.note(Some(instance_id), "instance-state", format!("instance {instance_id} is {state}"));
    let mut done = json!({"action": "recorded", "group": name, "instance_id": instance_id, "state": state});
    if let (GroupKind::Standalone(spec), "running") = (&group.kind, state.as_str()) {
        let online = bring_online(&deps.clients, spec, instance_id, &members).await?;
        for (kind, line) in online.lines() {
            history.note(Some(instance_id), kind, line);
        }
        done["action"] = json!("brought-online");
        done["dns"] = json!(online.dns);
        done["address"] = json!(online.address);
        done["volumes"] = json!(online.attached.iter().map(|(v, _)| v).collect::<Vec<_>>());
    }
    history.write(deps, &name).await;
    Ok(done)
}
