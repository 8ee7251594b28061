//! The way back to Spot and the reconcile: pure decisions over a group, its members and what EC2
//! reports. No I/O here; every function is unit-tested.

use chrono::{DateTime, Duration, Timelike, Utc};

use crate::domain::InstanceState;
use crate::domain::{Fallback, Group, GroupKind, InstanceFacts, Member, OnDemandShare, RecoveryPolicy, Window};

/// When the next attempt back to Spot may run: the cooldown after a fallback, then after each
/// failed attempt `backoff_base` doubled per failure, never more than `backoff_max`.
pub fn next_attempt(policy: &RecoveryPolicy, failed_attempts: u32, from: DateTime<Utc>) -> DateTime<Utc> {
    let wait = if failed_attempts == 0 {
        policy.cooldown
    } else {
        let doubled = policy.backoff_base.saturating_mul(1u32.checked_shl(failed_attempts - 1).unwrap_or(u32::MAX));
        doubled.min(policy.backoff_max)
    };
    from + Duration::from_std(wait).unwrap_or(Duration::MAX)
}

/// Records that the group fell back (if it had not already) and when recovery may first try.
/// An asg group also records the On-Demand share to restore.
pub fn note_fallback(group: &mut Group, reason: &str, now: DateTime<Utc>, restore: Option<OnDemandShare>) {
    if group.status.fallback.is_some() {
        return;
    }
    group.status.fallback = Some(Fallback { since: now, reason: reason.to_string(), restore });
    let failed = group.status.recovery.failed_attempts;
    group.status.recovery.next_attempt_at = Some(next_attempt(&group.policy.recovery, failed, now));
}

/// Records a recovery attempt that failed: the wait doubles, up to the maximum.
pub fn note_failed_attempt(group: &mut Group, error: &str, now: DateTime<Utc>) {
    let recovery = &mut group.status.recovery;
    recovery.failed_attempts = recovery.failed_attempts.saturating_add(1);
    recovery.in_flight = None;
    recovery.last_error = Some(error.to_string());
    recovery.next_attempt_at = Some(next_attempt(&group.policy.recovery, recovery.failed_attempts, now));
}

/// Records a member (or the asg's share) back on Spot. The fallback ends when nothing is left
/// on On-Demand for lack of capacity; otherwise the next member may go at once.
pub fn note_recovered(group: &mut Group, still_fallen_back: usize, now: DateTime<Utc>) {
    let recovery = &mut group.status.recovery;
    recovery.in_flight = None;
    recovery.failed_attempts = 0;
    recovery.last_error = None;
    if still_fallen_back == 0 {
        group.status.fallback = None;
        recovery.next_attempt_at = None;
    } else {
        recovery.next_attempt_at = Some(now);
    }
}

/// How many On-Demand instances a group needs to launch to keep its On-Demand base: the base
/// less the serving On-Demand members that are not there for lack of Spot.
pub fn on_demand_wanted(base: u32, members: &[Member]) -> u32 {
    let held = members
        .iter()
        .filter(|m| m.is_serving() && m.market == crate::domain::Market::OnDemand && !m.fallen_back)
        .count();
    base.saturating_sub(u32::try_from(held).unwrap_or(u32::MAX))
}

/// How many of the replacements for `leaving` go On-Demand so the group keeps its base: every
/// path that launches asks this (the members being replaced no longer count).
pub fn on_demand_replacing(base: u32, members: &[Member], leaving: &[&str]) -> u32 {
    let staying: Vec<Member> = members.iter().filter(|m| !leaving.contains(&m.instance_id.as_str())).cloned().collect();
    on_demand_wanted(base, &staying)
}

/// Whether `now` falls in one of the windows (none: any time). A window may wrap past midnight.
pub fn in_window(windows: &[Window], now: DateTime<Utc>) -> bool {
    if windows.is_empty() {
        return true;
    }
    let t = now.time().with_nanosecond(0).unwrap_or(now.time());
    windows.iter().any(|w| if w.start < w.end { w.start <= t && t < w.end } else { t >= w.start || t < w.end })
}

/// What a scheduled run does about a group's way back to Spot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing fell back.
    Nothing,
    /// One member is already on its way back.
    InFlight(String),
    Wait(DateTime<Utc>),
    OutsideWindow,
    /// Launch a Spot replacement for this On-Demand member.
    Replace(String),
    /// Restore this On-Demand share of the Auto Scaling group.
    Restore(OnDemandShare),
}

/// The fallen-back members that may go back to Spot: serving, On-Demand because Spot had no
/// capacity (not the `on_demand_base` ones), oldest first.
pub fn fallen_back(members: &[Member]) -> Vec<&Member> {
    let mut back: Vec<&Member> = members.iter().filter(|m| m.fallen_back && m.is_serving()).collect();
    back.sort_by_key(|m| (m.launched_at, m.instance_id.clone()));
    back
}

pub fn recovery_step(group: &Group, members: &[Member], now: DateTime<Utc>) -> Step {
    let status = &group.status;
    // The member on its way back retires (no longer serving), so look for it first.
    if let Some(member) = &status.recovery.in_flight {
        return Step::InFlight(member.clone());
    }
    let candidate = match &group.kind {
        GroupKind::Standalone(_) => fallen_back(members).first().map(|m| Step::Replace(m.instance_id.clone())),
        GroupKind::Asg(_) => status.fallback.as_ref().and_then(|f| f.restore).map(Step::Restore),
    };
    let Some(candidate) = candidate else { return Step::Nothing };
    if let Some(at) = status.recovery.next_attempt_at.filter(|at| *at > now) {
        return Step::Wait(at);
    }
    if !in_window(&group.policy.recovery.windows, now) {
        return Step::OutsideWindow;
    }
    candidate
}

/// What a reconcile found for one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    /// Members whose instance no longer runs though no event said so: close them; for a
    /// standalone group, those that were serving are also replaced.
    pub vanished: Vec<Member>,
    /// Live instances that belong to the group but are not members (an ASG's new instances).
    pub strays: Vec<InstanceFacts>,
    /// New instances a standalone group needs on top of the replacements to reach its capacity.
    pub missing: u32,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.vanished.is_empty() && self.strays.is_empty() && self.missing == 0
    }

    /// Serving members that vanished: each needs a replacement.
    pub fn to_replace(&self) -> impl Iterator<Item = &Member> {
        self.vanished.iter().filter(|m| m.is_serving())
    }
}

fn gone(state: Option<InstanceState>) -> bool {
    matches!(state, Some(InstanceState::ShuttingDown | InstanceState::Terminated))
}

/// Compares a group's members with the instances EC2 reports (one tag-filtered listing) and
/// with the group's capacity. `managed` says whether an instance is some group's member already.
pub fn drift(
    group: &Group,
    members: &[Member],
    instances: &[InstanceFacts],
    managed: impl Fn(&str) -> bool,
    tag: &str,
) -> Drift {
    let vanished: Vec<Member> = members
        .iter()
        .filter(|m| instances.iter().find(|i| i.instance_id == m.instance_id).is_none_or(|i| gone(i.state)))
        .cloned()
        .collect();
    let owner = match &group.kind {
        GroupKind::Asg(spec) => spec.asg_name.as_str(),
        GroupKind::Standalone(_) => group.name.as_str(),
    };
    let strays: Vec<InstanceFacts> = instances
        .iter()
        .filter(|i| i.is_live() && i.tag(tag) == Some(owner))
        .filter(|i| !members.iter().any(|m| m.instance_id == i.instance_id) && !managed(&i.instance_id))
        .cloned()
        .collect();
    let missing = match &group.kind {
        GroupKind::Asg(_) => 0,
        GroupKind::Standalone(spec) => {
            let serving = members.iter().filter(|m| m.is_serving() && !vanished.contains(m)).count();
            let replacing = vanished.iter().filter(|m| m.is_serving()).count();
            let strays = strays.len();
            spec.capacity.saturating_sub(u32::try_from(serving + replacing + strays).unwrap_or(u32::MAX))
        }
    };
    Drift { vanished, strays, missing }
}

/// The tag that says which group an instance belongs to: spotkeeper's for standalone groups,
/// the Auto Scaling group's own for asg groups.
pub fn owner_tag(group: &Group) -> &'static str {
    match group.kind {
        GroupKind::Asg(_) => "aws:autoscaling:groupName",
        GroupKind::Standalone(_) => crate::domain::GROUP_TAG,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AsgSpec, BadWindow, GroupName, Market, StandaloneSpec};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_maximum() {
        let policy = RecoveryPolicy::default();
        let t0 = at("2026-11-21T00:00:00Z");
        let minutes = |n| (next_attempt(&policy, n, t0) - t0).num_minutes();
        assert_eq!(minutes(0), 45, "the cooldown first");
        assert_eq!([minutes(1), minutes(2), minutes(3), minutes(4), minutes(5)], [15, 30, 60, 120, 240]);
        assert_eq!(minutes(6), 240, "capped at 4h");
        assert_eq!(minutes(40), 240, "no overflow");
    }

    #[test]
    fn a_fallback_schedules_recovery_and_failures_push_it_back() {
        let t0 = at("2026-11-21T00:00:00Z");
        let mut group = standalone(1);
        note_fallback(&mut group, "no capacity", t0, None);
        assert_eq!(group.status.recovery.next_attempt_at, Some(t0 + Duration::minutes(45)));
        note_fallback(&mut group, "again", t0 + Duration::hours(1), None);
        assert_eq!(group.status.fallback.as_ref().map(|f| f.since), Some(t0), "the first fallback stands");
        let mut at_time = t0 + Duration::minutes(45);
        for expected in [15, 30, 60, 120, 240, 240] {
            note_failed_attempt(&mut group, "still no capacity", at_time);
            let next = group.status.recovery.next_attempt_at.unwrap();
            assert_eq!((next - at_time).num_minutes(), expected);
            at_time = next;
        }
        note_recovered(&mut group, 1, at_time);
        assert_eq!((group.status.recovery.failed_attempts, group.status.recovery.next_attempt_at), (0, Some(at_time)));
        assert!(group.status.fallback.is_some(), "one member is still On-Demand");
        note_recovered(&mut group, 0, at_time);
        assert!(group.status.fallback.is_none() && group.status.recovery.next_attempt_at.is_none());
    }

    #[test]
    fn the_on_demand_base_counts_only_members_that_are_on_demand_by_choice() {
        let mut base_member = member("i-base", false);
        base_member.market = Market::OnDemand;
        let members = [base_member, member("i-od", true), member("i-spot", false)];
        assert_eq!(on_demand_wanted(2, &members), 1, "the fallen-back one does not count");
        assert_eq!(on_demand_wanted(0, &members), 0);
        // Replacing a member: what it held no longer counts, whatever path replaces it.
        assert_eq!(on_demand_replacing(1, &members, &["i-spot"]), 0, "the base stands: a Spot replacement");
        assert_eq!(on_demand_replacing(1, &members, &["i-base"]), 1, "the base member leaves: On-Demand");
        assert_eq!(on_demand_replacing(2, &members, &["i-spot"]), 1);
        assert_eq!(on_demand_replacing(1, &members[1..], &["i-spot"]), 1, "a base not met is met again");
    }

    #[test]
    fn windows_may_wrap_past_midnight() {
        let window = |start, end| Window::parse(start, end).unwrap();
        let cases = [
            (vec![window("22:00", "06:00")], "2026-11-21T23:30:00Z", true),
            (vec![window("22:00", "06:00")], "2026-11-21T05:59:00Z", true),
            (vec![window("22:00", "06:00")], "2026-11-21T06:00:00Z", false),
            (vec![window("22:00", "06:00")], "2026-11-21T12:00:00Z", false),
            (vec![window("01:00", "02:00")], "2026-11-21T01:00:00Z", true),
            (vec![window("01:00", "02:00")], "2026-11-21T01:59:59.900Z", true),
            (vec![window("01:00", "02:00")], "2026-11-21T02:00:00Z", false),
            (vec![window("01:00", "02:00"), window("22:00", "06:00")], "2026-11-21T23:00:00Z", true),
            (vec![], "2026-11-21T12:00:00Z", true),
        ];
        for (windows, now, expected) in cases {
            assert_eq!(in_window(&windows, at(now)), expected, "{now} in {windows:?}");
        }
    }

    #[test]
    fn a_window_is_two_times_of_day_apart_and_written_as_it_was_read() {
        let cases = [
            ("22:00", "06:00", Ok("22:00-06:00")),
            ("00:00", "23:59", Ok("00:00-23:59")),
            ("25:00", "06:00", Err(BadWindow::NotATime("25:00".into()))),
            ("22:00", "6pm", Err(BadWindow::NotATime("6pm".into()))),
            ("06:00", "06:00", Err(BadWindow::Empty("06:00".into(), "06:00".into()))),
        ];
        for (start, end, expected) in cases {
            let window = Window::parse(start, end);
            assert_eq!(window.as_ref().map(ToString::to_string).map_err(Clone::clone), expected.map(str::to_string));
            if let Ok(window) = window {
                let written = serde_json::json!({"start": start, "end": end});
                assert_eq!(serde_json::to_value(window).unwrap(), written);
                assert_eq!(serde_json::from_value::<Window>(written).unwrap(), window);
            }
        }
        let stored = serde_json::json!({"start": "25:00", "end": "06:00"});
        assert!(serde_json::from_value::<Window>(stored).is_err(), "never a window that is none");
    }

    fn member(id: &str, fallen_back: bool) -> Member {
        let market = if fallen_back { Market::OnDemand } else { Market::Spot };
        Member { market, fallen_back, ..crate::fixtures::member(id) }
    }

    fn standalone(capacity: u32) -> Group {
        let spec = StandaloneSpec { capacity, ..crate::fixtures::standalone_spec() };
        Group::new(GroupName::try_from("web".to_string()).unwrap(), GroupKind::Standalone(Box::new(spec)), Utc::now())
    }

    #[test]
    fn recovery_waits_for_its_time_and_window_and_goes_one_member_at_a_time() {
        let now = at("2026-11-21T12:00:00Z");
        let mut group = standalone(2);
        let members = [member("i-spot", false), member("i-od", true)];
        assert_eq!(recovery_step(&group, &members[..1], now), Step::Nothing);
        let mut in_flight = group.clone();
        in_flight.status.recovery.in_flight = Some("i-od".into());
        assert_eq!(
            recovery_step(&in_flight, &members[..1], now),
            Step::InFlight("i-od".into()),
            "even once it retires"
        );
        group.status.recovery.next_attempt_at = Some(now + Duration::minutes(5));
        assert_eq!(recovery_step(&group, &members, now), Step::Wait(now + Duration::minutes(5)));
        group.status.recovery.next_attempt_at = Some(now);
        group.policy.recovery.windows = vec![Window::parse("01:00", "02:00").unwrap()];
        assert_eq!(recovery_step(&group, &members, now), Step::OutsideWindow);
        group.policy.recovery.windows.clear();
        assert_eq!(recovery_step(&group, &members, now), Step::Replace("i-od".into()));
        group.status.recovery.in_flight = Some("i-od".into());
        assert_eq!(recovery_step(&group, &members, now), Step::InFlight("i-od".into()));
    }

    #[test]
    fn an_asg_group_restores_its_recorded_share() {
        let now = Utc::now();
        let mut group = Group::new(
            GroupName::try_from("workers".to_string()).unwrap(),
            GroupKind::Asg(AsgSpec { asg_name: "w".into() }),
            now,
        );
        assert_eq!(recovery_step(&group, &[], now), Step::Nothing);
        let share = OnDemandShare { base: 0, percent_above_base: 0 };
        group.status.fallback = Some(Fallback { since: now, reason: "no capacity".into(), restore: Some(share) });
        assert_eq!(recovery_step(&group, &[], now), Step::Restore(share));
    }

    fn facts(id: &str, state: &str, group: &str) -> InstanceFacts {
        InstanceFacts {
            state: state.parse().ok(),
            tags: vec![(crate::domain::GROUP_TAG.into(), group.into())],
            ..crate::fixtures::instance(id)
        }
    }

    #[test]
    fn drift_finds_vanished_members_strays_and_missing_capacity() {
        let group = standalone(3);
        let members = [member("i-1", false), member("i-2", false)];
        let instances =
            [facts("i-1", "running", "web"), facts("i-2", "terminated", "web"), facts("i-9", "running", "other")];
        let d = drift(&group, &members, &instances, |_| false, owner_tag(&group));
        assert_eq!(d.vanished.iter().map(|m| m.instance_id.as_str()).collect::<Vec<_>>(), vec!["i-2"]);
        assert_eq!(d.to_replace().count(), 1);
        assert!(d.strays.is_empty(), "another group's instance is not ours");
        assert_eq!(d.missing, 1, "capacity 3: one serving, one to replace, one more to launch");
        let all_there = drift(&group, &members[..1], &instances[..1], |_| true, owner_tag(&group));
        assert_eq!((all_there.vanished.len(), all_there.missing), (0, 2));
    }
}
