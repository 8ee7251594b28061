//! One instance a group manages, and where it stands in a replacement.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{InstanceState, Market, Pool};

/// One instance a group manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub instance_id: String,
    pub market: Market,
    pub instance_type: String,
    pub availability_zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// The EC2 instance state as last seen (`pending`, `running`, `stopped`, ...).
    pub state: InstanceState,
    /// When EC2 reported that state: an older, late-delivered state change is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_at: Option<DateTime<Utc>>,
    pub launched_at: Option<DateTime<Utc>>,
    /// On On-Demand because no Spot pool had capacity; recovery moves it back.
    pub fallen_back: bool,
    /// Set on a replacement: the instance it replaces and when that one was warned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<Replaced>,
    /// Set on an interrupted member: when the warning came and what replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interrupted>,
    /// Set on a member being replaced by spotkeeper's choice (rebalance, recovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring: Option<Retiring>,
    pub version: u64,
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
    /// `replaced` (a standalone member) or `detached` (an Auto Scaling group member).
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
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
        self.interrupted.is_none() && self.retiring.is_none()
    }

    /// The instance that replaces this one, if one was launched.
    pub fn replaced_by(&self) -> Option<&str> {
        self.interrupted
            .as_ref()
            .and_then(|i| i.replaced_by.as_deref())
            .or(self.retiring.as_ref().map(|r| r.replaced_by.as_str()))
    }
}
