//! Rebalance recommendations: pure decisions — what a recommendation means for a group (its
//! policy, its kind, whether the member still serves) and who holds the group's one rebalance
//! slot. No I/O here; every function is table-tested.

use crate::domain::{GroupKind, GroupStatus, RebalancePolicy, StandaloneSpec};

/// What a rebalance recommendation for one member comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceDecision<'a> {
    /// Recorded in the history, nobody alerted (policy `off`).
    Record,
    /// Recorded and alerted; `action` tells the operator what happens to the instance.
    Notify { action: &'static str },
    /// Nothing to do: `why` answers the event, `outcome` is what it is settled with.
    Skip { why: &'static str, outcome: &'static str },
    /// Launch a replacement from the group's spec now, before the at-risk one goes.
    Replace(&'a StandaloneSpec),
}

/// Decides by the group's policy and kind, and for a replacement whether the member still serves:
/// one already interrupted or retiring has its replacement coming.
pub fn decide(policy: RebalancePolicy, kind: &GroupKind, serving: bool) -> RebalanceDecision<'_> {
    match (policy, kind) {
        (RebalancePolicy::Off, _) => RebalanceDecision::Record,
        // The Auto Scaling group's own Capacity Rebalancing replaces its members.
        (RebalancePolicy::Notify | RebalancePolicy::Replace, GroupKind::Asg(_)) => RebalanceDecision::Notify {
            action: "none by spotkeeper: the Auto Scaling group's Capacity Rebalancing replaces it",
        },
        (RebalancePolicy::Notify, GroupKind::Standalone(_)) => {
            RebalanceDecision::Notify { action: "none: the group's rebalance policy is notify" }
        }
        (RebalancePolicy::Replace, GroupKind::Standalone(_)) if !serving => RebalanceDecision::Skip {
            why: "the instance is already on its way out",
            outcome: "skipped: already on its way out",
        },
        (RebalancePolicy::Replace, GroupKind::Standalone(spec)) => RebalanceDecision::Replace(spec),
    }
}

/// Whether the decision turns on the member still serving: only then are the members read.
pub fn turns_on_serving(policy: RebalancePolicy, kind: &GroupKind) -> bool {
    decide(policy, kind, true) != decide(policy, kind, false)
}

/// Takes the group's one rebalance slot for `instance` if it is free. Runs inside the
/// version-conditional update, so two deliveries racing never both hold it.
pub fn take_slot(status: &mut GroupStatus, instance: &str) {
    if status.rebalance_in_flight.is_none() {
        status.rebalance_in_flight = Some(instance.to_string());
    }
}

/// Who holds a group's rebalance slot, as seen by one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// This instance: its replacement may launch.
    Held,
    /// Another's replacement is in flight (empty when the group is gone): this one waits.
    HeldBy(String),
}

/// Who holds the slot in the status saved after a take (`None`: there is no group any more).
pub fn slot(status: Option<&GroupStatus>, instance: &str) -> Slot {
    match status.and_then(|s| s.rebalance_in_flight.as_deref()) {
        Some(holder) if holder == instance => Slot::Held,
        holder => Slot::HeldBy(holder.unwrap_or_default().to_string()),
    }
}

/// Frees the slot if `instance` holds it: its replacement failed, or it is gone.
pub fn free_slot(status: &mut GroupStatus, instance: &str) {
    if status.rebalance_in_flight.as_deref() == Some(instance) {
        status.rebalance_in_flight = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AsgSpec;

    #[test]
    fn every_policy_kind_and_member_situation_has_its_decision() {
        use RebalancePolicy::{Notify, Off, Replace};
        let asg = GroupKind::Asg(AsgSpec { asg_name: "workers".into() });
        let standalone = GroupKind::Standalone(Box::new(crate::fixtures::standalone_spec()));
        let GroupKind::Standalone(spec) = &standalone else { unreachable!() };
        let by_asg = RebalanceDecision::Notify {
            action: "none by spotkeeper: the Auto Scaling group's Capacity Rebalancing replaces it",
        };
        let by_policy = RebalanceDecision::Notify { action: "none: the group's rebalance policy is notify" };
        let leaving = RebalanceDecision::Skip {
            why: "the instance is already on its way out",
            outcome: "skipped: already on its way out",
        };
        let rows = [
            (Off, &asg, true, RebalanceDecision::Record),
            (Off, &asg, false, RebalanceDecision::Record),
            (Off, &standalone, true, RebalanceDecision::Record),
            (Off, &standalone, false, RebalanceDecision::Record),
            (Notify, &asg, true, by_asg),
            (Notify, &asg, false, by_asg),
            (Notify, &standalone, true, by_policy),
            (Notify, &standalone, false, by_policy),
            (Replace, &asg, true, by_asg),
            (Replace, &asg, false, by_asg),
            (Replace, &standalone, true, RebalanceDecision::Replace(spec)),
            (Replace, &standalone, false, leaving),
        ];
        for (policy, kind, serving, expected) in rows {
            assert_eq!(decide(policy, kind, serving), expected, "{policy:?} {} serving={serving}", kind.label());
            let turns = policy == Replace && matches!(kind, GroupKind::Standalone(_));
            assert_eq!(turns_on_serving(policy, kind), turns, "{policy:?} {}", kind.label());
        }
    }

    #[test]
    fn the_slot_is_taken_when_free_kept_by_its_holder_and_waited_for_otherwise() {
        let held_by = |holder: Option<&str>| GroupStatus {
            rebalance_in_flight: holder.map(str::to_string),
            ..GroupStatus::default()
        };
        // (holder before, taken by, holder after, the slot as the taker sees it)
        let rows = [
            (None, "i-a", Some("i-a"), Slot::Held),
            (Some("i-a"), "i-a", Some("i-a"), Slot::Held),
            (Some("i-b"), "i-a", Some("i-b"), Slot::HeldBy("i-b".into())),
        ];
        for (before, instance, after, answer) in rows {
            let mut status = held_by(before);
            take_slot(&mut status, instance);
            assert_eq!(status, held_by(after), "{before:?} taken by {instance}");
            assert_eq!(slot(Some(&status), instance), answer, "{before:?} taken by {instance}");
        }
        assert_eq!(slot(None, "i-a"), Slot::HeldBy(String::new()), "no group: held by nobody named");
    }

    #[test]
    fn only_the_holder_frees_the_slot() {
        let mut status = GroupStatus { rebalance_in_flight: Some("i-a".into()), ..GroupStatus::default() };
        free_slot(&mut status, "i-b");
        assert_eq!(status.rebalance_in_flight.as_deref(), Some("i-a"), "another's slot stays");
        free_slot(&mut status, "i-a");
        assert_eq!(status.rebalance_in_flight, None);
        free_slot(&mut status, "i-a");
        assert_eq!(status.rebalance_in_flight, None, "freeing a free slot changes nothing");
    }
}
