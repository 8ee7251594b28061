//! A member's EC2 state changed: look it up, decide what the change means
//! ([`transitions::decide`]), act, and report once.
//! - A member of a standalone group reaches `running`: its DNS record, Elastic IP and free data
//!   volumes move to it; for a replacement, the time from warning to switch is recorded and alerted.
//!   A rebalance or recovery replacement then retires the member it replaces: terminated, or
//!   stopped first when data volumes must move; a recovery switch ends the fallback.
//! - A serving member that stops or dies in its image's probation rolls the image back.
//! - An interrupted or retiring member stops or terminates: its data volumes move to its
//!   replacement, and once it is gone the group forgets it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::adapters::notify::{Alert, Severity};
use crate::decisions::rebalancing;
use crate::decisions::recovery;
use crate::decisions::transitions::{self, Close, Leaving, MoveVolumes, Retire, Step, Switch};
use crate::domain::{
    AlertKind, Deadline, DeviceName, Group, GroupName, HistoryKind, InstanceState, Member, Replaced, StandaloneSpec,
    VolumeId,
};
use crate::runtime::event::{Event, InstanceStateChange};
use crate::runtime::{Deps, Error};
use crate::workflows::images;
use crate::workflows::online::{self, Online};
use crate::workflows::report::Report;

/// What a state change came to: the function's answer.
#[derive(Debug, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Outcome {
    /// Nothing changed, and why.
    Ignored { reason: &'static str },
    /// The state is recorded; nothing else followed.
    Recorded {
        #[serde(flatten)]
        change: Changed,
    },
    /// A standalone member runs and serves.
    BroughtOnline {
        #[serde(flatten)]
        change: Changed,
        /// The addresses the DNS record now holds.
        dns: Option<Vec<String>>,
        /// The Elastic IP allocation now associated.
        address: Option<String>,
        /// The data volumes attached now.
        volumes: Vec<String>,
        /// For a replacement: seconds from warning to switch.
        #[serde(skip_serializing_if = "Option::is_none")]
        replaced_in_seconds: Option<f64>,
        /// The replaced member, retiring now.
        #[serde(skip_serializing_if = "Option::is_none")]
        retiring: Option<String>,
    },
    /// A member died in its image's probation: the image is rolled back and these replace it.
    RolledBack {
        #[serde(flatten)]
        change: Changed,
        replacement: Vec<String>,
    },
    /// A leaving member's data volumes moved to its replacement (or are still detaching).
    VolumesMoved {
        #[serde(flatten)]
        change: Changed,
        volumes: Vec<String>,
        volumes_pending: Vec<String>,
    },
}

/// Which member reached which state.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    pub group: GroupName,
    pub instance_id: String,
    pub state: InstanceState,
}

/// One state change being handled: what was looked up, and when EC2 saw it.
struct Change<'a> {
    deps: &'a Deps,
    group: &'a Group,
    member: &'a Member,
    members: &'a [Member],
    state: InstanceState,
    seen_at: DateTime<Utc>,
    deadline: Deadline,
}

impl Change<'_> {
    fn name(&self) -> &GroupName {
        &self.group.name
    }

    fn instance_id(&self) -> &str {
        &self.member.instance_id
    }

    fn changed(&self) -> Changed {
        Changed { group: self.group.name.clone(), instance_id: self.instance_id().to_string(), state: self.state }
    }

    fn note(&self, report: &mut Report, kind: HistoryKind, message: String) {
        report.note(self.name(), Some(self.instance_id()), kind, message);
    }
}

/// Handles one state change. The report is sent once, when all of it succeeded.
pub async fn state_changed(
    deps: &Deps,
    event: Event<InstanceStateChange>,
    deadline: Deadline,
) -> Result<Outcome, Error> {
    let InstanceStateChange { instance_id, state } = &event.detail;
    let (instance_id, state) = (instance_id.as_str(), *state);
    let event_id = event.id.as_deref().unwrap_or_default();
    let Some(name) = deps.store.group_of(instance_id).await? else {
        tracing::debug!(instance_id, %state, event_id, "no group manages this instance; ignored");
        return Ok(Outcome::Ignored { reason: "no group manages this instance" });
    };
    let (group, members) = futures::try_join!(deps.store.group(&name), deps.store.members(&name))?;
    let (Some(group), Some(member)) = (group, members.iter().find(|m| m.instance_id == instance_id)) else {
        tracing::debug!(instance_id, group = %name, "the group no longer manages this instance; ignored");
        return Ok(Outcome::Ignored { reason: "the group no longer manages this instance" });
    };
    let seen_at = event.time.unwrap_or_else(|| deps.clock.now());
    let step = transitions::decide(&group.kind, member, &members, state, seen_at);
    if step == Step::IgnoreStale {
        tracing::info!(
            instance_id,
            %state,
            event_id,
            "a newer state is already recorded; this late event changes nothing"
        );
        return Ok(Outcome::Ignored { reason: "a newer state is already recorded" });
    }
    let updated = Member { state, state_at: Some(seen_at), ..member.clone() };
    deps.store.save_member(&name, &updated).await?;

    let change = Change { deps, group: &group, member, members: &members, state, seen_at, deadline };
    let mut report = Report::new(deps);
    change.note(&mut report, HistoryKind::InstanceState, format!("instance {instance_id} is {state}"));
    let outcome = match step {
        Step::IgnoreStale | Step::RecordOnly => None,
        Step::BringOnline { spec, switch } => Some(bring_online(&change, spec, switch, &mut report).await?),
        Step::RollBackIfInProbation => roll_back_if_in_probation(&change, &mut report).await?,
        Step::Leave(leaving) => leave(&change, leaving, &mut report).await?,
    };
    report.send(deps, deadline).await;
    Ok(outcome.unwrap_or_else(|| Outcome::Recorded { change: change.changed() }))
}

/// The member runs: it goes online, and a replacement settles what it replaces.
async fn bring_online(
    change: &Change<'_>,
    spec: &StandaloneSpec,
    switch: Option<Switch>,
    report: &mut Report,
) -> Result<Outcome, Error> {
    let deps = change.deps;
    let online = online::bring_online(&deps.clients, spec, change.instance_id(), change.members).await?;
    for (kind, line) in online.lines() {
        change.note(report, kind, line);
    }
    let (mut replaced_in_seconds, mut retiring) = (None, None);
    if let Some(Switch { replaced, retire, end_recovery }) = switch {
        replaced_in_seconds = Some(record_switch(change, &replaced, &online, report));
        if let Some(retire) = retire {
            retiring = Some(self::retire(deps, change.name(), retire, report).await?);
        }
        if let Some(left) = end_recovery {
            end_recovery_by(change, &replaced, left, report).await?;
        }
    }
    let volumes = online.attached.iter().map(|(v, _)| v.to_string()).collect();
    let Online { dns, address, .. } = online;
    Ok(Outcome::BroughtOnline { change: change.changed(), dns, address, volumes, replaced_in_seconds, retiring })
}

/// Records and alerts the switch from `replaced` to this member; returns its seconds from warning.
fn record_switch(change: &Change<'_>, replaced: &Replaced, online: &Online, report: &mut Report) -> f64 {
    let (name, instance_id) = (change.name(), change.instance_id());
    let seconds = (change.seen_at - replaced.warned_at).num_milliseconds() as f64 / 1000.0;
    change.note(
        report,
        HistoryKind::Replaced,
        format!("{} replaced by {instance_id} in {seconds:.1} s ({})", replaced.instance_id, replaced.reason),
    );
    metrics::histogram!("WarningToSwitchSeconds", "group" => name.to_string(), "reason" => replaced.reason.to_string())
        .record(seconds);
    let mut alert = Alert::new(
        AlertKind::Replaced,
        name,
        Severity::Info,
        format!("{name}: {} replaced by {instance_id} in {seconds:.1} s", replaced.instance_id),
    )
    .fact("instance", &replaced.instance_id)
    .fact("replacement", instance_id)
    .fact("reason", replaced.reason)
    .fact("market", change.member.market)
    .fact("replaced in", format!("{seconds:.1} s"));
    if let Some(dns) = &online.dns {
        alert = alert.fact("dns", dns.join(", "));
    }
    if let Some(address) = &online.address {
        alert = alert.fact("elastic ip", address);
    }
    report.alert(alert);
    seconds
}

/// The replacement of a retiring member serves: the member goes (stopped first when its data
/// volumes must move; its `stopped` event moves them, then terminates it). Returns its id.
async fn retire(deps: &Deps, name: &GroupName, retire: Retire, report: &mut Report) -> Result<String, Error> {
    match retire {
        Retire::Terminate(instance_id) => {
            deps.clients.ec2.terminate(std::slice::from_ref(&instance_id)).await?;
            report.note(
                name,
                Some(&instance_id),
                HistoryKind::Terminated,
                format!("{instance_id} terminated: its replacement serves"),
            );
            Ok(instance_id)
        }
        Retire::StopFirst(instance_id) => {
            deps.clients.ec2.stop(std::slice::from_ref(&instance_id)).await?;
            report.note(
                name,
                Some(&instance_id),
                HistoryKind::Stopping,
                format!("{instance_id} stopping so its data volumes can move"),
            );
            Ok(instance_id)
        }
    }
}

/// A Spot replacement of the On-Demand `replaced` serves: the group is back on Spot, with `left`
/// members still on On-Demand.
async fn end_recovery_by(
    change: &Change<'_>,
    replaced: &Replaced,
    left: usize,
    report: &mut Report,
) -> Result<(), Error> {
    let (deps, name, instance_id) = (change.deps, change.name(), change.instance_id());
    let now = deps.clock.now();
    deps.store.update_group(name, |g| recovery::note_recovered(g, left, now)).await?;
    metrics::counter!("Recoveries", "group" => name.to_string()).increment(1);
    change.note(
        report,
        HistoryKind::Recovered,
        format!("back on Spot: {instance_id} serves instead of On-Demand {}", replaced.instance_id),
    );
    report.alert(
        Alert::new(
            AlertKind::Recovered,
            name,
            Severity::Info,
            format!("{name}: back on Spot, {instance_id} replaces On-Demand {}", replaced.instance_id),
        )
        .fact("instance", &replaced.instance_id)
        .fact("replacement", instance_id)
        .fact("still on On-Demand", left),
    );
    Ok(())
}

/// A serving member stopped or died with no warning: if it came from the active image within its
/// probation period, the image is bad — rolled back, and the member replaced from the previous one.
async fn roll_back_if_in_probation(change: &Change<'_>, report: &mut Report) -> Result<Option<Outcome>, Error> {
    let (deps, name, instance_id, state) = (change.deps, change.name(), change.instance_id(), change.state);
    let ids = [instance_id.to_string()];
    let image = deps.clients.ec2.instances(&ids).await?.into_iter().next().and_then(|i| i.image_id);
    if !images::died_in_probation(change.group, change.member, image.as_deref(), change.seen_at) {
        return Ok(None);
    }
    let why = format!("{instance_id}, launched from it, {state} within the probation period");
    let rolled = images::rollback(deps, change.group, &why, report).await.map_err(|e| match e {
        images::RollbackError::NoPrevious(m) => Error::Invalid(m),
        images::RollbackError::Failed(e) => e,
    })?;
    let new = images::replace_from_previous(deps, &rolled, &[change.member], false, change.seen_at).await?;
    if state == InstanceState::Stopped {
        deps.clients.ec2.terminate(&ids).await?;
    }
    deps.store.remove_member(name, instance_id).await?;
    change.note(
        report,
        HistoryKind::MemberClosed,
        format!("{instance_id} {state} in probation; replaced by {} from the previous image", new.join(", ")),
    );
    Ok(Some(Outcome::RolledBack { change: change.changed(), replacement: new }))
}

/// A leaving member stopped or is gone: its volumes move, it is terminated once they are off it,
/// and once gone the group forgets it.
async fn leave(change: &Change<'_>, leaving: Leaving<'_>, report: &mut Report) -> Result<Option<Outcome>, Error> {
    let (deps, name, instance_id) = (change.deps, change.name(), change.instance_id());
    let Leaving { move_volumes, terminate_once_moved, close } = leaving;
    let mut outcome = None;
    let mut pending = false;
    if let Some(moving) = move_volumes {
        let moves = move_volumes_to(change, &moving, terminate_once_moved, report).await?;
        pending = !moves.pending.is_empty();
        let ids = |volumes: &[(VolumeId, DeviceName)]| volumes.iter().map(|(v, _)| v.to_string()).collect();
        outcome = Some(Outcome::VolumesMoved {
            change: change.changed(),
            volumes: ids(&moves.moved),
            volumes_pending: ids(&moves.pending),
        });
    }
    if terminate_once_moved && !pending {
        deps.clients.ec2.terminate(&[instance_id.to_string()]).await?;
        change.note(report, HistoryKind::Terminated, format!("{instance_id} terminated: its replacement serves"));
    }
    if let Some(close) = close {
        deps.store.remove_member(name, instance_id).await?;
        change.note(report, HistoryKind::MemberClosed, format!("{instance_id} is gone; the group no longer lists it"));
        if close == Close::ForgetAndFreeSlot {
            deps.store.update_group(name, |g| rebalancing::free_slot(&mut g.status, instance_id)).await?;
        }
    }
    Ok(outcome)
}

/// Moves the leaving member's data volumes to its replacement and notes what is left pending, so
/// the next event or scheduled run finishes the move.
async fn move_volumes_to(
    change: &Change<'_>,
    moving: &MoveVolumes<'_>,
    terminate_from: bool,
    report: &mut Report,
) -> Result<online::Moved, Error> {
    let (deps, name, from) = (change.deps, change.name(), change.instance_id());
    let to = moving.to.as_str();
    // A detach an earlier invocation asked for is waited for, not asked again.
    let detaching: Vec<VolumeId> =
        change.group.status.volume_moves.iter().filter(|m| m.from == from).map(|m| m.volume_id.clone()).collect();
    let moves =
        online::move_volumes(&deps.clients, moving.spec, from, to, &detaching, change.deadline.remaining()).await?;
    if !(detaching.is_empty() && moves.pending.is_empty()) {
        let now = deps.clock.now();
        let pending = moves.pending.as_slice();
        deps.store
            .update_group(name, |g| {
                online::note_moves(&mut g.status.volume_moves, from, to, pending, terminate_from, now);
            })
            .await?;
    }
    online::record_move(name, from, to, &moves, report);
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The answers keep the JSON the function gave before they were typed: tests and the demo
    /// read them.
    #[test]
    fn outcomes_serialize_as_the_function_answered() {
        let change = || Changed {
            group: GroupName::try_from("web".to_string()).unwrap(),
            instance_id: "i-0abc1234".into(),
            state: InstanceState::ShuttingDown,
        };
        let head = json!({"group": "web", "instance_id": "i-0abc1234", "state": "shutting-down"});
        let with = |action: &str, more: serde_json::Value| {
            let mut value = head.clone();
            value["action"] = json!(action);
            for (k, v) in more.as_object().unwrap() {
                value[k] = v.clone();
            }
            value
        };
        let rows = [
            (
                Outcome::Ignored { reason: "a newer state is already recorded" },
                json!({"action": "ignored", "reason": "a newer state is already recorded"}),
            ),
            (Outcome::Recorded { change: change() }, with("recorded", json!({}))),
            (
                Outcome::BroughtOnline {
                    change: change(),
                    dns: None,
                    address: None,
                    volumes: vec![],
                    replaced_in_seconds: None,
                    retiring: None,
                },
                with("brought-online", json!({"dns": null, "address": null, "volumes": []})),
            ),
            (
                Outcome::BroughtOnline {
                    change: change(),
                    dns: Some(vec!["10.0.0.1".into()]),
                    address: Some("eipalloc-1".into()),
                    volumes: vec!["vol-1".into()],
                    replaced_in_seconds: Some(12.5),
                    retiring: Some("i-old".into()),
                },
                with(
                    "brought-online",
                    json!({"dns": ["10.0.0.1"], "address": "eipalloc-1", "volumes": ["vol-1"],
                           "replaced_in_seconds": 12.5, "retiring": "i-old"}),
                ),
            ),
            (
                Outcome::RolledBack { change: change(), replacement: vec!["i-new".into()] },
                with("rolled-back", json!({"replacement": ["i-new"]})),
            ),
            (
                Outcome::VolumesMoved { change: change(), volumes: vec!["vol-1".into()], volumes_pending: vec![] },
                with("volumes-moved", json!({"volumes": ["vol-1"], "volumes_pending": []})),
            ),
        ];
        for (outcome, expected) in rows {
            assert_eq!(serde_json::to_value(&outcome).unwrap(), expected, "{outcome:?}");
        }
    }
}
