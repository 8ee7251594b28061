//! A node's drain, decided: which pods to evict and which to leave (as `kubectl drain
//! --ignore-daemonsets` leaves them), what to do with a pod a PodDisruptionBudget holds as the
//! warning's two minutes run out, and when the drain is over.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{DrainTrigger, PdbPolicy, PodGrace, PodPhase, PodView, RebalanceAction};

/// How long an instance lives after its interruption warning.
pub const WARNING_LEAD: Duration = Duration::from_secs(120);
/// How often a pod a PDB holds is asked for again (kubectl's own pace).
pub const RETRY_EVERY: Duration = Duration::from_secs(5);
/// The shortest grace a pod deleted at the deadline gets: 0 would kill it without SIGTERM.
pub const MIN_GRACE: Duration = Duration::from_secs(1);
/// Kept back before the instance's end: a pod told to stop within the time left stops this
/// much before the instance does (the kubelet's own reaction time and a clock's drift).
pub const MARGIN: Duration = Duration::from_secs(5);

/// What an event does to its node, by its trigger and the group's rebalance action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Nothing (acknowledged): the reason.
    Ignore(&'static str),
    /// No new pods; the pods stay.
    Cordon,
    /// Cordon, then move the pods off.
    Drain,
}

/// A warning always drains; a rebalance does what the group says.
pub fn begin(trigger: DrainTrigger, rebalance: RebalanceAction) -> Begin {
    match (trigger, rebalance) {
        (DrainTrigger::Warning, _) | (DrainTrigger::Rebalance, RebalanceAction::Drain) => Begin::Drain,
        (DrainTrigger::Rebalance, RebalanceAction::Cordon) => Begin::Cordon,
        (DrainTrigger::Rebalance, RebalanceAction::Off) => Begin::Ignore("the group's rebalance action is off"),
    }
}

/// The grace an eviction asks for: `None` for the pod's own. Under `fit`, a pod whose own grace
/// would outlast the instance gets what is left less the margin (at least `MIN_GRACE`), so it
/// stops cleanly instead of being cut off. With no instance end (a rebalance), always its own.
pub fn eviction_grace(
    now: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    pod_grace: Duration,
    grace: PodGrace,
) -> Option<Duration> {
    let end = end.filter(|_| grace == PodGrace::Fit)?;
    let left = (end - now).to_std().unwrap_or_default();
    (pod_grace.saturating_add(MARGIN) > left).then(|| left.saturating_sub(MARGIN).max(MIN_GRACE))
}

/// Why a pod is left on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Its DaemonSet would put it back at once (and tolerates the cordon).
    DaemonSet,
    /// A static pod's mirror: only the kubelet's files can remove it.
    Mirror,
    /// Succeeded or Failed: nothing runs.
    Finished,
    /// Its deletion is under way; it goes by itself after its grace.
    Terminating,
}

impl Skip {
    /// Whether a pod skipped for this reason stays for good (so the drain may end with it there);
    /// a terminating pod is still leaving.
    pub fn stays(self) -> bool {
        !matches!(self, Self::Terminating)
    }
}

/// The node's pods, sorted into those to evict and those to leave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan<'a> {
    pub evict: Vec<&'a PodView>,
    pub skip: Vec<(&'a PodView, Skip)>,
}

/// Why a pod would be left, or `None` when it is to be evicted.
pub fn skip_reason(pod: &PodView) -> Option<Skip> {
    if pod.mirror {
        Some(Skip::Mirror)
    } else if pod.owner_kinds.iter().any(|k| k == "DaemonSet") {
        Some(Skip::DaemonSet)
    } else if matches!(pod.phase, PodPhase::Succeeded | PodPhase::Failed) {
        Some(Skip::Finished)
    } else if pod.deletion.is_some() {
        Some(Skip::Terminating)
    } else {
        None
    }
}

/// Sorts a node's pods.
pub fn plan(pods: &[PodView]) -> Plan<'_> {
    let mut plan = Plan::default();
    for pod in pods {
        match skip_reason(pod) {
            Some(why) => plan.skip.push((pod, why)),
            None => plan.evict.push(pod),
        }
    }
    plan
}

/// When the node is gone: the warning's time plus its two minutes.
pub fn deadline(warned_at: DateTime<Utc>) -> DateTime<Utc> {
    warned_at + chrono::Duration::from_std(WARNING_LEAD).unwrap_or_else(|_| chrono::Duration::seconds(120))
}

/// What to do with a pod whose eviction a PodDisruptionBudget refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// Ask again after this long.
    Retry { after: Duration },
    /// Delete it now (the PDB is not consulted) with this grace period.
    DeleteNow { grace: Duration },
    /// Leave it to the instance's end, and report it (the `respect` policy).
    GiveUp,
}

/// A blocked pod, at `now`: retried while its grace and the `margin` still fit before the
/// `deadline`; after that, the group's `policy` decides. Deleted, it gets what is left less the
/// margin as its grace (at least `MIN_GRACE`), so it stops before the instance does.
pub fn when_blocked(
    now: DateTime<Utc>,
    deadline: DateTime<Utc>,
    pod_grace: Duration,
    margin: Duration,
    policy: PdbPolicy,
) -> Blocked {
    let left = (deadline - now).to_std().unwrap_or_default();
    let act_within = pod_grace.saturating_add(margin);
    if left > act_within {
        return Blocked::Retry { after: RETRY_EVERY.min(left - act_within) };
    }
    match policy {
        PdbPolicy::Respect => Blocked::GiveUp,
        PdbPolicy::DeleteAtDeadline => Blocked::DeleteNow { grace: left.saturating_sub(margin).max(MIN_GRACE) },
    }
}

/// Whether the drain is over: the deadline has passed, or only pods that stay are left.
pub fn done(pods: &[PodView], now: DateTime<Utc>, deadline: DateTime<Utc>) -> bool {
    now >= deadline || pods.iter().all(|p| skip_reason(p).is_some_and(Skip::stays))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    fn pod(name: &str) -> PodView {
        PodView {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            owner_kinds: vec!["ReplicaSet".into()],
            replica_set: Some("web-5d8f".into()),
            mirror: false,
            phase: PodPhase::Running,
            deletion: None,
            grace_seconds: 30,
        }
    }

    #[test]
    fn pods_are_sorted_into_evicted_and_left() {
        let daemon = PodView { owner_kinds: vec!["DaemonSet".into()], ..pod("ds") };
        let mirror = PodView { mirror: true, owner_kinds: vec!["Node".into()], ..pod("mirror") };
        let done = PodView { phase: PodPhase::Succeeded, ..pod("job") };
        let failed = PodView { phase: PodPhase::Failed, ..pod("crashed") };
        let leaving = PodView { deletion: Some(at(0)), ..pod("leaving") };
        let pending = PodView { phase: PodPhase::Pending, ..pod("pending") };
        let bare = PodView { owner_kinds: vec![], ..pod("bare") };
        // A terminating DaemonSet pod is left as a DaemonSet's: it stays whatever happens.
        let ds_leaving = PodView { deletion: Some(at(0)), ..daemon.clone() };
        let table = [
            (pod("web"), None),
            (pending, None),
            (bare, None),
            (daemon, Some(Skip::DaemonSet)),
            (mirror, Some(Skip::Mirror)),
            (done, Some(Skip::Finished)),
            (failed, Some(Skip::Finished)),
            (leaving, Some(Skip::Terminating)),
            (ds_leaving, Some(Skip::DaemonSet)),
        ];
        for (p, want) in &table {
            assert_eq!(skip_reason(p), *want, "{}", p.name);
        }
        let pods: Vec<PodView> = table.iter().map(|(p, _)| p.clone()).collect();
        let plan = plan(&pods);
        let names = |ps: &[&PodView]| ps.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&plan.evict), ["web", "pending", "bare"]);
        assert_eq!(plan.skip.len(), 6);
    }

    #[test]
    fn a_blocked_pod_is_retried_then_the_policy_decides() {
        use Blocked::{DeleteNow, GiveUp, Retry};
        use PdbPolicy::{DeleteAtDeadline, Respect};

        let deadline = deadline(at(0));
        assert_eq!(deadline, at(120));
        let s = Duration::from_secs;
        let margin = s(5);
        // (now, pod grace, policy) → what to do
        let table = [
            (at(1), s(30), DeleteAtDeadline, Retry { after: s(5) }),
            (at(1), s(30), Respect, Retry { after: s(5) }),
            // 2 s before the act point (120 - 30 - 5 = 85): retried once more, just in time.
            (at(83), s(30), DeleteAtDeadline, Retry { after: s(2) }),
            (at(85), s(30), DeleteAtDeadline, DeleteNow { grace: s(30) }),
            (at(85), s(30), Respect, GiveUp),
            (at(100), s(30), DeleteAtDeadline, DeleteNow { grace: s(15) }),
            (at(114), s(30), DeleteAtDeadline, DeleteNow { grace: s(1) }),
            (at(119), s(30), DeleteAtDeadline, DeleteNow { grace: s(1) }),
            (at(130), s(30), DeleteAtDeadline, DeleteNow { grace: s(1) }),
            (at(130), s(30), Respect, GiveUp),
            // A long grace that can never fit: acted on at once.
            (at(0), s(600), DeleteAtDeadline, DeleteNow { grace: s(115) }),
            (at(0), s(600), Respect, GiveUp),
            // A 0 s grace: retried until the margin.
            (at(110), s(0), DeleteAtDeadline, Retry { after: s(5) }),
            (at(115), s(0), DeleteAtDeadline, DeleteNow { grace: s(1) }),
        ];
        for (now, grace, policy, want) in table {
            assert_eq!(when_blocked(now, deadline, grace, margin, policy), want, "{now} {grace:?} {policy:?}");
        }
    }

    #[test]
    fn a_warning_drains_and_a_rebalance_does_as_the_group_says() {
        use RebalanceAction::{Cordon, Drain, Off};
        let table = [
            (DrainTrigger::Warning, Off, Begin::Drain),
            (DrainTrigger::Warning, Cordon, Begin::Drain),
            (DrainTrigger::Warning, Drain, Begin::Drain),
            (DrainTrigger::Rebalance, Off, Begin::Ignore("the group's rebalance action is off")),
            (DrainTrigger::Rebalance, Cordon, Begin::Cordon),
            (DrainTrigger::Rebalance, Drain, Begin::Drain),
        ];
        for (trigger, action, want) in table {
            assert_eq!(begin(trigger, action), want, "{trigger:?} {action:?}");
        }
    }

    #[test]
    fn an_evicted_pod_is_given_what_fits_before_the_instance_ends() {
        let s = Duration::from_secs;
        let end = Some(at(120));
        // (now, its own grace, handling, instance end) → the grace asked for
        let table = [
            (at(0), s(30), PodGrace::Fit, end, None),
            (at(0), s(115), PodGrace::Fit, end, None),
            (at(0), s(116), PodGrace::Fit, end, Some(s(115))),
            (at(0), s(600), PodGrace::Fit, end, Some(s(115))),
            (at(100), s(30), PodGrace::Fit, end, Some(s(15))),
            (at(118), s(30), PodGrace::Fit, end, Some(s(1))),
            (at(130), s(30), PodGrace::Fit, end, Some(s(1))),
            (at(100), s(30), PodGrace::Own, end, None),
            (at(100), s(600), PodGrace::Fit, None, None),
        ];
        for (now, own, handling, end, want) in table {
            assert_eq!(eviction_grace(now, end, own, handling), want, "{now} {own:?} {handling:?} {end:?}");
        }
    }

    #[test]
    fn the_drain_ends_when_only_staying_pods_remain_or_time_is_up() {
        let daemon = PodView { owner_kinds: vec!["DaemonSet".into()], ..pod("ds") };
        let mirror = PodView { mirror: true, ..pod("mirror") };
        let finished = PodView { phase: PodPhase::Succeeded, ..pod("job") };
        let leaving = PodView { deletion: Some(at(0)), ..pod("leaving") };
        let end = at(120);
        let table = [
            (vec![], at(10), true),
            (vec![daemon.clone(), mirror.clone(), finished.clone()], at(10), true),
            (vec![daemon.clone(), pod("web")], at(10), false),
            (vec![daemon.clone(), leaving.clone()], at(10), false),
            (vec![daemon, leaving, pod("web")], at(120), true),
            (vec![pod("web")], at(121), true),
        ];
        for (pods, now, want) in table {
            assert_eq!(done(&pods, now, end), want, "{:?} at {now}", pods.iter().map(|p| &p.name).collect::<Vec<_>>());
        }
    }
}
