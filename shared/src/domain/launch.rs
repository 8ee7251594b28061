//! Launches: what is decided (`LaunchPlan`), what the table keeps of one whose answer never came
//! (`Attempt`), and what EC2 refused (`LaunchError`, classified by the EC2 adapter).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Pool, Reason, StandaloneSpec, SubnetId};

/// An instance being replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Old {
    pub instance_id: String,
    /// When its replacement was called for (the warning's time for an interruption).
    pub since: DateTime<Utc>,
    pub pool: Option<Pool>,
}

/// One launch for a group, as decided: a replacement per `olds`, plus `extra` new instances (to
/// fill the group up to its capacity), from `spec`'s template into the best of `pools`. The
/// group's current configuration (its name and tags, the lookups of the new members) comes from
/// the caller: a launch sent again goes out as it was decided, for the group as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    pub spec: StandaloneSpec,
    pub pools: Vec<Pool>,
    pub olds: Vec<Old>,
    pub extra: u32,
    pub reason: Reason,
    /// How many of the new instances go On-Demand from the start (to keep the group's base).
    pub on_demand: u32,
    /// Launch On-Demand what Spot could not place for lack of capacity.
    pub fallback: bool,
    /// Same work, same token: a retried launch launches nothing twice.
    pub token: String,
}

impl LaunchPlan {
    /// A Spot launch replacing `olds`, nothing more: no extra instances, none On-Demand from the
    /// start, no fallback (`with_extra`, `with_on_demand` and `with_fallback` say otherwise).
    pub fn new(spec: &StandaloneSpec, pools: Vec<Pool>, olds: Vec<Old>, reason: Reason, token: String) -> Self {
        Self { spec: spec.clone(), pools, olds, extra: 0, reason, on_demand: 0, fallback: false, token }
    }

    #[must_use]
    pub fn with_extra(self, extra: u32) -> Self {
        Self { extra, ..self }
    }

    #[must_use]
    pub fn with_on_demand(self, on_demand: u32) -> Self {
        Self { on_demand, ..self }
    }

    #[must_use]
    pub fn with_fallback(self, fallback: bool) -> Self {
        Self { fallback, ..self }
    }

    /// How many instances the launch asks for in all.
    pub fn count(&self) -> u32 {
        u32::try_from(self.olds.len()).unwrap_or(u32::MAX).saturating_add(self.extra)
    }
}

/// A launch whose answer never came: EC2 may or may not have launched. The next delivery of any
/// of its events sends the very same plan again (same client token, same parameters), and EC2
/// answers with what the first one launched instead of launching twice — whichever batch that
/// delivery arrives in.
///
/// The table keeps it flat, in the fields the launch shapes before `LaunchPlan` wrote (`Kept`):
/// a launch kept just before a deploy is read back by the code deployed after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Kept", into = "Kept")]
pub struct Attempt {
    pub plan: LaunchPlan,
    /// The event behind each of the plan's `olds`, in the same order.
    pub events: Vec<String>,
}

/// An `Attempt` as the table keeps it.
#[derive(Clone, Serialize, Deserialize)]
struct Kept {
    token: String,
    spec: StandaloneSpec,
    pools: Vec<Pool>,
    olds: Vec<Old>,
    events: Vec<String>,
    extra: u32,
    reason: Reason,
    on_demand: u32,
    fallback: bool,
}

impl From<Kept> for Attempt {
    fn from(k: Kept) -> Self {
        let plan = LaunchPlan {
            spec: k.spec,
            pools: k.pools,
            olds: k.olds,
            extra: k.extra,
            reason: k.reason,
            on_demand: k.on_demand,
            fallback: k.fallback,
            token: k.token,
        };
        Self { plan, events: k.events }
    }
}

impl From<Attempt> for Kept {
    fn from(a: Attempt) -> Self {
        let LaunchPlan { spec, pools, olds, extra, reason, on_demand, fallback, token } = a.plan;
        Self { token, spec, pools, olds, events: a.events, extra, reason, on_demand, fallback }
    }
}

/// What kind of refusal a launch error is: decisions turn on this, never on EC2's codes (the EC2
/// adapter knows those and classifies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchErrorKind {
    /// No capacity in the pool right now (or the Spot price is above the maximum): another pool,
    /// or On-Demand, may have it.
    Capacity,
    /// Anything else: a mistake in the request or the account, the same in every pool.
    Other,
}

/// An error EC2 reported for part of a launch (an instant fleet answers 200 with these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchError {
    pub kind: LaunchErrorKind,
    pub code: String,
    pub message: String,
    /// The pool the error is about (instance type, subnet), when EC2 says.
    pub pool: Option<(String, SubnetId)>,
}

impl LaunchError {
    pub fn is_capacity(&self) -> bool {
        self.kind == LaunchErrorKind::Capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attempt as the code before `LaunchPlan` kept it: the table may hold one across a deploy.
    const KEPT_BEFORE: &str = r#"{
        "token": "abc123",
        "spec": {
            "launch_template": {"id": "lt-1", "version": "$Latest"},
            "instance_types": ["m5.large"],
            "subnets": [{"id": "subnet-1", "availability_zone": "us-east-1a"}],
            "capacity": 2
        },
        "pools": [{"instance_type": "m5.large", "subnet_id": "subnet-1", "availability_zone": "us-east-1a"}],
        "olds": [{"instance_id": "i-1", "since": "2026-01-01T00:00:00Z", "pool": null}],
        "events": ["e-1"],
        "extra": 1,
        "reason": "interruption",
        "on_demand": 1,
        "fallback": true
    }"#;

    #[test]
    fn an_attempt_kept_before_launch_plans_reads_back_and_is_written_the_same() {
        let before: serde_json::Value = serde_json::from_str(KEPT_BEFORE).unwrap();
        let attempt: Attempt = serde_json::from_value(before.clone()).unwrap();
        assert_eq!(attempt.plan.token, "abc123");
        assert_eq!(attempt.plan.olds[0].instance_id, "i-1");
        assert_eq!(attempt.events, vec!["e-1".to_string()]);
        assert_eq!((attempt.plan.extra, attempt.plan.on_demand, attempt.plan.fallback), (1, 1, true));
        assert_eq!(attempt.plan.reason, Reason::Interruption);
        let written = serde_json::to_value(&attempt).unwrap();
        let reread: Attempt = serde_json::from_value(written.clone()).unwrap();
        assert_eq!(reread, attempt);
        for field in ["token", "spec", "pools", "olds", "events", "extra", "reason", "on_demand", "fallback"] {
            assert_eq!(written[field], before[field], "{field}");
        }
    }
}
