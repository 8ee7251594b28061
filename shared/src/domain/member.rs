//! One instance a group manages, and where it stands in a replacement.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{InstanceState, Market, Pool, SubnetId};

/// One instance a group manages. Stored (and answered) as [`MemberRecord`]: the lifecycle is one
/// [`Role`] here, and the fields `interrupted` / `retiring` there, as items have always had them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "MemberRecord", into = "MemberRecord")]
pub struct Member {
    pub instance_id: String,
    pub market: Market,
    pub instance_type: String,
    pub availability_zone: String,
    pub subnet_id: Option<SubnetId>,
    /// The EC2 instance state as last seen.
    pub state: InstanceState,
    /// When EC2 reported that state: an older, late-delivered state change is ignored.
    pub state_at: Option<DateTime<Utc>>,
    pub launched_at: Option<DateTime<Utc>>,
    /// On On-Demand because no Spot pool had capacity; recovery moves it back.
    pub fallen_back: bool,
    /// Set on a replacement: the instance it replaces and when that one was warned. Apart from
    /// the role: a replacement serves, and can itself be retired or interrupted later.
    pub replaces: Option<Replaced>,
    /// Serving, retiring or interrupted.
    pub role: Role,
    pub version: u64,
}

/// Where a member stands: it serves until spotkeeper retires it or a Spot warning interrupts it.
/// A retiring member still runs until its replacement serves, so it can be warned too; it then
/// keeps its retirement, which the switch to its replacement and the rebalance slot still read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Serving,
    /// Being replaced by spotkeeper's choice (rebalance, recovery, rollback).
    Retiring(Retiring),
    /// Warned by Spot; `retiring` if it was retiring when the warning came.
    Interrupted { interrupted: Interrupted, retiring: Option<Retiring> },
}

impl Role {
    pub fn interrupted(&self) -> Option<&Interrupted> {
        match self {
            Role::Interrupted { interrupted, .. } => Some(interrupted),
            Role::Serving | Role::Retiring(_) => None,
        }
    }

    pub fn retiring(&self) -> Option<&Retiring> {
        match self {
            Role::Retiring(retiring) | Role::Interrupted { retiring: Some(retiring), .. } => Some(retiring),
            Role::Serving | Role::Interrupted { retiring: None, .. } => None,
        }
    }

    /// The role once a Spot warning came: a retirement under way is kept, an earlier warning's
    /// record replaced.
    #[must_use]
    pub fn interrupt(self, interrupted: Interrupted) -> Role {
        let retiring = match self {
            Role::Serving => None,
            Role::Retiring(retiring) => Some(retiring),
            Role::Interrupted { retiring, .. } => retiring,
        };
        Role::Interrupted { interrupted, retiring }
    }

    /// The role once spotkeeper retires the member: a warning already recorded is kept.
    #[must_use]
    pub fn retire(self, retiring: Retiring) -> Role {
        match self {
            Role::Serving | Role::Retiring(_) => Role::Retiring(retiring),
            Role::Interrupted { interrupted, .. } => Role::Interrupted { interrupted, retiring: Some(retiring) },
        }
    }

    fn from_fields(interrupted: Option<Interrupted>, retiring: Option<Retiring>) -> Role {
        match (interrupted, retiring) {
            (None, None) => Role::Serving,
            (None, Some(retiring)) => Role::Retiring(retiring),
            (Some(interrupted), retiring) => Role::Interrupted { interrupted, retiring },
        }
    }

    fn into_fields(self) -> (Option<Interrupted>, Option<Retiring>) {
        match self {
            Role::Serving => (None, None),
            Role::Retiring(retiring) => (None, Some(retiring)),
            Role::Interrupted { interrupted, retiring } => (Some(interrupted), retiring),
        }
    }
}

/// A member as the table keeps it and the API answers it.
#[derive(Serialize, Deserialize)]
struct MemberRecord {
    instance_id: String,
    market: Market,
    instance_type: String,
    availability_zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subnet_id: Option<SubnetId>,
    state: InstanceState,
    /// When EC2 reported that state: an older, late-delivered state change is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_at: Option<DateTime<Utc>>,
    launched_at: Option<DateTime<Utc>>,
    /// On On-Demand because no Spot pool had capacity; recovery moves it back.
    fallen_back: bool,
    /// Set on a replacement: the instance it replaces and when that one was warned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replaces: Option<Replaced>,
    /// Set on an interrupted member: when the warning came and what replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interrupted: Option<Interrupted>,
    /// Set on a member being replaced by spotkeeper's choice (rebalance, recovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retiring: Option<Retiring>,
    version: u64,
}

/// Why a replacement was launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// A Spot interruption warning: the old instance goes away on its own.
    #[default]
    Interruption,
    /// A rebalance recommendation: launch before terminate.
    Rebalance,
    /// Back to Spot: the On-Demand instance is terminated once the Spot one serves.
    Recovery,
    /// The instance vanished without an event; the scheduled reconcile noticed.
    Reconcile,
    /// Its image was rolled back: the replacement comes from the previous one.
    Rollback,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Interruption => "interruption",
            Reason::Rebalance => "rebalance",
            Reason::Recovery => "recovery",
            Reason::Reconcile => "reconcile",
            Reason::Rollback => "rollback",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    pub instance_id: String,
    /// When the replacement was called for (the warning's time for an interruption).
    pub warned_at: DateTime<Utc>,
    #[serde(default)]
    pub reason: Reason,
}

/// A member on its way out by spotkeeper's choice: it serves until its replacement does, then is
/// stopped (to move its volumes) and terminated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retiring {
    pub since: DateTime<Utc>,
    pub reason: Reason,
    pub replaced_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupted {
    pub warned_at: DateTime<Utc>,
    pub action: InterruptAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
}

/// What was done for an interrupted member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterruptAction {
    /// A standalone member: a replacement was launched.
    Replaced,
    /// An Auto Scaling group member: detached, the group launches the replacement.
    Detached,
}

impl fmt::Display for InterruptAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InterruptAction::Replaced => "replaced",
            InterruptAction::Detached => "detached",
        })
    }
}

impl Member {
    /// The pool the member runs in, when its subnet is known.
    pub fn pool(&self) -> Option<Pool> {
        Some(Pool {
            instance_type: self.instance_type.clone(),
            subnet_id: self.subnet_id.clone()?,
            availability_zone: self.availability_zone.clone(),
        })
    }

    /// Still serving: neither interrupted nor retiring.
    pub fn is_serving(&self) -> bool {
        self.role == Role::Serving
    }

    pub fn interrupted(&self) -> Option<&Interrupted> {
        self.role.interrupted()
    }

    pub fn retiring(&self) -> Option<&Retiring> {
        self.role.retiring()
    }

    /// The instance that replaces this one, if one was launched.
    pub fn replaced_by(&self) -> Option<&str> {
        self.interrupted().and_then(|i| i.replaced_by.as_deref()).or(self.retiring().map(|r| r.replaced_by.as_str()))
    }
}

impl From<MemberRecord> for Member {
    fn from(r: MemberRecord) -> Self {
        Member {
            instance_id: r.instance_id,
            market: r.market,
            instance_type: r.instance_type,
            availability_zone: r.availability_zone,
            subnet_id: r.subnet_id,
            state: r.state,
            state_at: r.state_at,
            launched_at: r.launched_at,
            fallen_back: r.fallen_back,
            replaces: r.replaces,
            role: Role::from_fields(r.interrupted, r.retiring),
            version: r.version,
        }
    }
}

impl From<Member> for MemberRecord {
    fn from(m: Member) -> Self {
        let (interrupted, retiring) = m.role.into_fields();
        MemberRecord {
            instance_id: m.instance_id,
            market: m.market,
            instance_type: m.instance_type,
            availability_zone: m.availability_zone,
            subnet_id: m.subnet_id,
            state: m.state,
            state_at: m.state_at,
            launched_at: m.launched_at,
            fallen_back: m.fallen_back,
            replaces: m.replaces,
            interrupted,
            retiring,
            version: m.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// Items as the table has held them: serving, interrupted (detached, then replaced), retiring,
    /// and warned while retiring.
    fn old_items() -> Vec<Value> {
        let base = json!({
            "instance_id": "i-0123abcd", "market": "spot", "instance_type": "m5.large",
            "availability_zone": "us-east-1a", "subnet_id": "subnet-0a1b2c3d", "state": "running",
            "state_at": "2026-11-21T06:00:00Z", "launched_at": "2026-11-21T05:00:00Z", "fallen_back": false,
            "replaces": {"instance_id": "i-0000000a", "warned_at": "2026-11-21T04:00:00Z", "reason": "interruption"},
            "version": 3
        });
        let interrupted =
            json!({"warned_at": "2026-11-21T06:01:00Z", "action": "replaced", "replaced_by": "i-0000000b"});
        let detached = json!({"warned_at": "2026-11-21T06:01:00Z", "action": "detached"});
        let retiring = json!({"since": "2026-11-21T06:00:30Z", "reason": "rebalance", "replaced_by": "i-0000000c"});
        let with = |fields: &[(&str, &Value)]| {
            let mut item = base.clone();
            for (k, v) in fields {
                item[*k] = (*v).clone();
            }
            item
        };
        let mut bare = base.clone();
        for key in ["subnet_id", "state_at", "replaces"] {
            bare.as_object_mut().unwrap().remove(key);
        }
        bare["launched_at"] = Value::Null;
        vec![
            base.clone(),
            bare,
            with(&[("interrupted", &detached)]),
            with(&[("interrupted", &interrupted)]),
            with(&[("retiring", &retiring)]),
            with(&[("interrupted", &interrupted), ("retiring", &retiring)]),
        ]
    }

    #[test]
    fn old_items_round_trip_unchanged() {
        for item in old_items() {
            let member: Member = serde_json::from_value(item.clone()).unwrap();
            assert_eq!(serde_json::to_value(&member).unwrap(), item);
        }
    }

    #[test]
    fn the_role_follows_the_old_fields() {
        let roles: Vec<Role> =
            old_items().into_iter().map(|i| serde_json::from_value::<Member>(i).unwrap().role).collect();
        assert!(matches!(roles[0], Role::Serving) && matches!(roles[1], Role::Serving));
        assert!(
            matches!(&roles[2], Role::Interrupted { interrupted, retiring: None } if interrupted.action == InterruptAction::Detached)
        );
        assert!(
            matches!(&roles[3], Role::Interrupted { interrupted, retiring: None } if interrupted.action == InterruptAction::Replaced)
        );
        assert!(matches!(&roles[4], Role::Retiring(r) if r.reason == Reason::Rebalance));
        assert!(matches!(&roles[5], Role::Interrupted { retiring: Some(_), .. }));
    }

    #[test]
    fn a_warning_keeps_a_retirement_and_a_retirement_keeps_a_warning() {
        let [_, _, _, interrupted, retiring, both] = old_items().try_into().unwrap();
        let member = |v: Value| serde_json::from_value::<Member>(v).unwrap();
        let (warned, retired, both) = (member(interrupted), member(retiring), member(both));
        let warning = warned.interrupted().unwrap().clone();
        let retirement = retired.retiring().unwrap().clone();
        assert_eq!(retired.role.clone().interrupt(warning.clone()), both.role);
        assert_eq!(warned.role.clone().retire(retirement.clone()), both.role);
        assert_eq!(Role::Serving.interrupt(warning.clone()), warned.role);
        assert_eq!(Role::Serving.retire(retirement), retired.role);
        assert_eq!(both.replaced_by(), Some("i-0000000b"));
        assert_eq!(retired.replaced_by(), Some("i-0000000c"));
        assert!(!both.is_serving() && !warned.is_serving() && !retired.is_serving());
        for action in [InterruptAction::Replaced, InterruptAction::Detached] {
            assert_eq!(serde_json::to_value(action).unwrap(), json!(action.to_string()));
        }
    }
}
