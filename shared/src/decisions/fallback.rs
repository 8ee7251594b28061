//! An Auto Scaling group that could not launch, decided: whether the failure means "raise the
//! On-Demand share", to what, and which share to restore once Spot has capacity again.

use crate::domain::{Group, OnDemandShare};

/// What a failed Auto Scaling launch calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not for lack of capacity: recorded only.
    Record,
    /// No Spot capacity, but the group's fallback is off: tell, change nothing.
    Notify,
    /// The group is on On-Demand already: nothing more to do.
    AlreadyOnDemand,
    /// Raise the On-Demand share (see [`shares`]).
    FallBack,
}

/// What a launch failure calls for in this group: `for_capacity` when EC2's message says there
/// was no capacity (the EC2 adapter reads the message).
pub fn answer(group: &Group, for_capacity: bool) -> Answer {
    if !for_capacity {
        Answer::Record
    } else if !group.policy.fallback {
        Answer::Notify
    } else if group.status.fallback.is_some() {
        Answer::AlreadyOnDemand
    } else {
        Answer::FallBack
    }
}

/// A fallback's two shares: the one to set now and the one to restore later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    /// The base kept, every instance above it On-Demand: desired capacity is met without Spot.
    pub raised: OnDemandShare,
    /// The share the group had: the way back to Spot restores it.
    pub restore: OnDemandShare,
}

pub fn shares(current: OnDemandShare) -> Shares {
    Shares { raised: OnDemandShare { base: current.base, percent_above_base: 100 }, restore: current }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AsgSpec, Fallback, GroupKind, GroupName};
    use chrono::Utc;

    const NO_CAPACITY: &str = "We currently do not have sufficient m5.large capacity in the Availability Zone you requested (InsufficientInstanceCapacity).";

    fn group(fallback_on: bool, fallen_back: bool) -> Group {
        let mut group = Group::new(
            GroupName::try_from("workers".to_string()).unwrap(),
            GroupKind::Asg(AsgSpec { asg_name: "w".into() }),
            Utc::now(),
        );
        group.policy.fallback = fallback_on;
        if fallen_back {
            group.status.fallback = Some(Fallback { since: Utc::now(), reason: NO_CAPACITY.into(), restore: None });
        }
        group
    }

    #[test]
    fn only_a_capacity_failure_in_a_group_with_fallback_on_and_not_fallen_back_raises_the_share() {
        let cases = [
            ("not a capacity failure", true, false, false, Answer::Record),
            ("not a capacity failure, though fallen back", true, true, false, Answer::Record),
            ("fallback off", false, false, true, Answer::Notify),
            ("fallback off, fallen back", false, true, true, Answer::Notify),
            ("already on On-Demand", true, true, true, Answer::AlreadyOnDemand),
            ("falls back", true, false, true, Answer::FallBack),
        ];
        for (case, fallback_on, fallen_back, for_capacity, expected) in cases {
            assert_eq!(answer(&group(fallback_on, fallen_back), for_capacity), expected, "{case}");
        }
    }

    #[test]
    fn a_fallback_keeps_the_base_puts_all_above_it_on_demand_and_restores_the_share_it_found() {
        let share = |base, percent_above_base| OnDemandShare { base, percent_above_base };
        let cases = [(share(0, 0), share(0, 100)), (share(2, 20), share(2, 100)), (share(1, 100), share(1, 100))];
        for (current, raised) in cases {
            assert_eq!(shares(current), Shares { raised, restore: current }, "{current:?}");
        }
    }
}
