//! What a member reaching a new EC2 state means for its group: pure, table-tested. The
//! `instance-state` workflow looks up, asks [`decide`], and acts on the step it gets.

use chrono::{DateTime, Utc};

use crate::decisions::recovery;
use crate::domain::{GroupKind, InstanceState, Member, Reason, Replaced, StandaloneSpec};

/// What to do about one state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'a> {
    /// A newer state is recorded already: this late event changes nothing.
    IgnoreStale,
    /// The state is recorded; nothing else follows.
    RecordOnly,
    /// A standalone member runs: its DNS record, Elastic IP and free data volumes move to it; for a
    /// replacement, the switch is recorded and what it replaces settled.
    BringOnline { spec: &'a StandaloneSpec, switch: Option<Switch> },
    /// A serving standalone member stopped or died with no warning: if it was launched from the
    /// active image within its probation period, the image is rolled back and the member replaced.
    RollBackIfInProbation,
    /// A member on its way out stopped or is gone.
    Leave(Leaving<'a>),
}

/// A replacement serves: what follows for the member it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// The member replaced: the time from warning to switch is recorded and alerted.
    pub replaced: Replaced,
    /// The replaced member retires now (it is listed and retiring).
    pub retire: Option<Retire>,
    /// A recovery ends: the replaced On-Demand member goes, and this many stay on On-Demand.
    pub end_recovery: Option<usize>,
}

/// How a retiring member goes once its replacement serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retire {
    /// No data volumes: terminated at once.
    Terminate(String),
    /// Stopped first so its data volumes can move (its `stopped` event moves them and terminates it).
    StopFirst(String),
}

/// A leaving member stopped or is gone: what follows, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaving<'a> {
    /// Its data volumes move to its replacement.
    pub move_volumes: Option<MoveVolumes<'a>>,
    /// It was stopped to move its volumes: it is terminated once none is left pending.
    pub terminate_once_moved: bool,
    /// It is gone: the group forgets it.
    pub close: Option<Close>,
}

/// Data volumes to move from a leaving member to its replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveVolumes<'a> {
    pub spec: &'a StandaloneSpec,
    pub to: String,
}

/// A gone member leaves the group's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Only that.
    Forget,
    /// It was retiring for a rebalance: the group's rebalance slot is freed too.
    ForgetAndFreeSlot,
}

/// Decides what `member` (one of `members`) reaching `state`, as EC2 saw it at `seen_at`, means
/// for a group of `kind`.
pub fn decide<'a>(
    kind: &'a GroupKind,
    member: &Member,
    members: &[Member],
    state: InstanceState,
    seen_at: DateTime<Utc>,
) -> Step<'a> {
    if member.state_at.is_some_and(|at| at > seen_at) {
        return Step::IgnoreStale;
    }
    let spec = match kind {
        GroupKind::Standalone(spec) => Some(spec.as_ref()),
        GroupKind::Asg(_) => None,
    };
    let gone = matches!(state, InstanceState::Stopped | InstanceState::Terminated);
    match spec {
        Some(spec) if state == InstanceState::Running => {
            Step::BringOnline { spec, switch: member.replaces.as_ref().map(|r| switch(spec, r, members)) }
        }
        Some(_) if gone && member.is_serving() => Step::RollBackIfInProbation,
        _ if gone && !member.is_serving() => leave(spec, member, state),
        _ => Step::RecordOnly,
    }
}

/// A replacement of `replaced` serves.
fn switch(spec: &StandaloneSpec, replaced: &Replaced, members: &[Member]) -> Switch {
    let retiring = members.iter().find(|m| m.instance_id == replaced.instance_id && m.retiring().is_some());
    let retire = retiring.map(|old| match spec.data_volumes.is_empty() {
        true => Retire::Terminate(old.instance_id.clone()),
        false => Retire::StopFirst(old.instance_id.clone()),
    });
    // The On-Demand member retires now, so it no longer counts.
    let end_recovery = (replaced.reason == Reason::Recovery)
        .then(|| recovery::fallen_back(members).iter().filter(|m| m.instance_id != replaced.instance_id).count());
    Switch { replaced: replaced.clone(), retire, end_recovery }
}

/// A member that is interrupted or retiring stopped or is gone.
fn leave<'a>(spec: Option<&'a StandaloneSpec>, member: &Member, state: InstanceState) -> Step<'a> {
    let move_volumes = spec
        .filter(|s| !s.data_volumes.is_empty())
        .zip(member.replaced_by())
        .map(|(spec, to)| MoveVolumes { spec, to: to.to_string() });
    // Only spotkeeper stops a standalone member to retire it; an Auto Scaling group's are its own.
    let terminate_once_moved = spec.is_some() && state == InstanceState::Stopped && member.retiring().is_some();
    let close = (state == InstanceState::Terminated).then(|| {
        match member.retiring().is_some_and(|r| r.reason == Reason::Rebalance) {
            true => Close::ForgetAndFreeSlot,
            false => Close::Forget,
        }
    });
    let leaving = Leaving { move_volumes, terminate_once_moved, close };
    match leaving {
        Leaving { move_volumes: None, terminate_once_moved: false, close: None } => Step::RecordOnly,
        leaving => Step::Leave(leaving),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        AsgSpec, DataVolume, DeviceName, InterruptAction, Interrupted, Market, Retiring, Role, VolumeId,
    };
    use crate::fixtures;
    use InstanceState::*;

    fn at(minute: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-21T06:{minute:02}:00Z")).unwrap().with_timezone(&Utc)
    }

    fn interrupted(by: Option<&str>) -> Member {
        let interrupted =
            Interrupted { warned_at: at(0), action: InterruptAction::Replaced, replaced_by: by.map(str::to_string) };
        Member { role: Role::Interrupted { interrupted, retiring: None }, ..fixtures::member("i-old") }
    }

    fn retiring(reason: Reason) -> Member {
        let retiring = Retiring { since: at(0), reason, replaced_by: "i-new".into() };
        Member { role: Role::Retiring(retiring), ..fixtures::member("i-old") }
    }

    fn replacement(reason: Reason) -> Member {
        let replaces = Replaced { instance_id: "i-old".into(), warned_at: at(0), reason };
        Member { replaces: Some(replaces), ..fixtures::member("i-new") }
    }

    fn replaced(reason: Reason) -> Replaced {
        Replaced { instance_id: "i-old".into(), warned_at: at(0), reason }
    }

    fn on_demand(id: &str, fallen_back: bool) -> Member {
        Member { market: Market::OnDemand, fallen_back, ..fixtures::member(id) }
    }

    fn moves<'a>(spec: &'a StandaloneSpec, to: &str) -> Option<MoveVolumes<'a>> {
        Some(MoveVolumes { spec, to: to.into() })
    }

    /// (case, kind, member, members, state, expected)
    type Row<'a> = (&'a str, &'a GroupKind, Member, Vec<Member>, InstanceState, Step<'a>);

    #[test]
    fn every_state_kind_and_lifecycle_has_its_step() {
        let asg = GroupKind::Asg(AsgSpec { asg_name: "workers".into() });
        let bare = GroupKind::Standalone(Box::new(fixtures::standalone_spec()));
        let volume = DataVolume {
            volume_id: VolumeId::try_from("vol-0123abcd").unwrap(),
            device: DeviceName::try_from("/dev/sdf").unwrap(),
        };
        let with_volumes = GroupKind::Standalone(Box::new(StandaloneSpec {
            data_volumes: vec![volume],
            ..fixtures::standalone_spec()
        }));
        let (GroupKind::Standalone(bare_spec), GroupKind::Standalone(volumes_spec)) = (&bare, &with_volumes) else {
            unreachable!()
        };
        let (bare_spec, volumes_spec) = (bare_spec.as_ref(), volumes_spec.as_ref());
        let serving = fixtures::member("i-old");
        let newer = Member { state_at: Some(at(5)), ..fixtures::member("i-old") };
        let same_time = Member { state_at: Some(at(1)), ..fixtures::member("i-old") };
        let rebalance_old = retiring(Reason::Rebalance);
        let recovery_old = Member { market: Market::OnDemand, fallen_back: true, ..retiring(Reason::Recovery) };
        let new = |reason| replacement(reason);
        let (interruption_new, rebalance_new, recovery_new) =
            (new(Reason::Interruption), new(Reason::Rebalance), new(Reason::Recovery));
        let alone = |m: &Member| vec![m.clone()];
        let with_old = |m: &Member, old: &Member| vec![m.clone(), old.clone()];
        let record = Step::RecordOnly;
        let leave = |move_volumes, terminate_once_moved, close| {
            Step::Leave(Leaving { move_volumes, terminate_once_moved, close })
        };
        let online = |spec, switch| Step::BringOnline { spec, switch };
        let switch = |reason, retire, end_recovery| Some(Switch { replaced: replaced(reason), retire, end_recovery });

        let rows: Vec<Row> = vec![
            ("a late event", &bare, newer.clone(), alone(&newer), Running, Step::IgnoreStale),
            ("a late event, Auto Scaling", &asg, newer.clone(), alone(&newer), Terminated, Step::IgnoreStale),
            (
                "as new as the recorded one",
                &bare,
                same_time.clone(),
                alone(&same_time),
                Running,
                online(bare_spec, None),
            ),
            ("pending", &bare, serving.clone(), alone(&serving), Pending, record.clone()),
            ("stopping", &bare, serving.clone(), alone(&serving), Stopping, record.clone()),
            ("shutting down", &bare, rebalance_old.clone(), alone(&rebalance_old), ShuttingDown, record.clone()),
            ("Auto Scaling member runs", &asg, serving.clone(), alone(&serving), Running, record.clone()),
            ("Auto Scaling member stops", &asg, serving.clone(), alone(&serving), Stopped, record.clone()),
            ("Auto Scaling member dies serving", &asg, serving.clone(), alone(&serving), Terminated, record.clone()),
            (
                "interrupted Auto Scaling member stops",
                &asg,
                interrupted(None),
                alone(&interrupted(None)),
                Stopped,
                record.clone(),
            ),
            (
                "interrupted Auto Scaling member is gone",
                &asg,
                interrupted(None),
                alone(&interrupted(None)),
                Terminated,
                leave(None, false, Some(Close::Forget)),
            ),
            ("standalone member runs", &bare, serving.clone(), alone(&serving), Running, online(bare_spec, None)),
            (
                "interruption replacement runs",
                &bare,
                interruption_new.clone(),
                alone(&interruption_new),
                Running,
                online(bare_spec, switch(Reason::Interruption, None, None)),
            ),
            (
                "rebalance replacement runs: the old one terminates",
                &bare,
                rebalance_new.clone(),
                with_old(&rebalance_new, &rebalance_old),
                Running,
                online(bare_spec, switch(Reason::Rebalance, Some(Retire::Terminate("i-old".into())), None)),
            ),
            (
                "rebalance replacement runs: the old one stops to move its volumes",
                &with_volumes,
                rebalance_new.clone(),
                with_old(&rebalance_new, &rebalance_old),
                Running,
                online(volumes_spec, switch(Reason::Rebalance, Some(Retire::StopFirst("i-old".into())), None)),
            ),
            (
                "rebalance replacement runs after the old one is gone",
                &bare,
                rebalance_new.clone(),
                alone(&rebalance_new),
                Running,
                online(bare_spec, switch(Reason::Rebalance, None, None)),
            ),
            (
                "recovery replacement runs: the recovery ends",
                &bare,
                recovery_new.clone(),
                vec![recovery_new.clone(), recovery_old.clone(), on_demand("i-od2", true), on_demand("i-base", false)],
                Running,
                online(bare_spec, switch(Reason::Recovery, Some(Retire::Terminate("i-old".into())), Some(1))),
            ),
            (
                "serving standalone member stops",
                &bare,
                serving.clone(),
                alone(&serving),
                Stopped,
                Step::RollBackIfInProbation,
            ),
            (
                "serving standalone member dies",
                &with_volumes,
                serving.clone(),
                alone(&serving),
                Terminated,
                Step::RollBackIfInProbation,
            ),
            (
                "interrupted member stops, no volumes",
                &bare,
                interrupted(Some("i-new")),
                alone(&interrupted(Some("i-new"))),
                Stopped,
                record.clone(),
            ),
            (
                "interrupted member stops: its volumes move",
                &with_volumes,
                interrupted(Some("i-new")),
                alone(&interrupted(Some("i-new"))),
                Stopped,
                leave(moves(volumes_spec, "i-new"), false, None),
            ),
            (
                "interrupted member with no replacement stops",
                &with_volumes,
                interrupted(None),
                alone(&interrupted(None)),
                Stopped,
                record.clone(),
            ),
            (
                "interrupted member is gone: its volumes move and it is forgotten",
                &with_volumes,
                interrupted(Some("i-new")),
                alone(&interrupted(Some("i-new"))),
                Terminated,
                leave(moves(volumes_spec, "i-new"), false, Some(Close::Forget)),
            ),
            (
                "interrupted member is gone, no volumes",
                &bare,
                interrupted(Some("i-new")),
                alone(&interrupted(Some("i-new"))),
                Terminated,
                leave(None, false, Some(Close::Forget)),
            ),
            (
                "retiring member stopped to move its volumes",
                &with_volumes,
                rebalance_old.clone(),
                alone(&rebalance_old),
                Stopped,
                leave(moves(volumes_spec, "i-new"), true, None),
            ),
            (
                "retiring member stopped, no volumes: it terminates",
                &bare,
                rebalance_old.clone(),
                alone(&rebalance_old),
                Stopped,
                leave(None, true, None),
            ),
            (
                "rebalance-retired member is gone: the slot is freed",
                &bare,
                rebalance_old.clone(),
                alone(&rebalance_old),
                Terminated,
                leave(None, false, Some(Close::ForgetAndFreeSlot)),
            ),
            (
                "recovery-retired member is gone",
                &with_volumes,
                recovery_old.clone(),
                alone(&recovery_old),
                Terminated,
                leave(moves(volumes_spec, "i-new"), false, Some(Close::Forget)),
            ),
            (
                "retiring member runs again",
                &bare,
                rebalance_old.clone(),
                alone(&rebalance_old),
                Running,
                online(bare_spec, None),
            ),
        ];
        for (case, kind, member, members, state, expected) in rows {
            assert_eq!(decide(kind, &member, &members, state, at(1)), expected, "{case}");
        }
    }
}
