//! A registered group: its kind and spec (configuration), and its status (what changes while it runs).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AllocationId, DeviceName, GroupName, KubernetesSpec, Policy, Subnet, SubnetId, VolumeId};

/// A launch template by id or by name, at a version (`$Latest`, `$Default` or a number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub version: String,
}

/// Which address of the instance the DNS record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AddressKind {
    #[default]
    Private,
    Public,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSpec {
    pub hosted_zone_id: String,
    pub record_name: String,
    pub ttl: i64,
    pub address: AddressKind,
}

/// An EBS volume that follows the group's instance (EBS is bound to one AZ).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataVolume {
    pub volume_id: VolumeId,
    pub device: DeviceName,
}

/// A group of named instances that spotkeeper launches itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandaloneSpec {
    pub launch_template: LaunchTemplateRef,
    pub instance_types: Vec<String>,
    pub subnets: Vec<Subnet>,
    pub capacity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic_ip_allocation_id: Option<AllocationId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_volumes: Vec<DataVolume>,
    /// The AZ the data volumes live in; the group's pools are restricted to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_zone: Option<String>,
}

/// A group backed by an existing Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsgSpec {
    pub asg_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum GroupKind {
    Asg(AsgSpec),
    Standalone(Box<StandaloneSpec>),
}

impl GroupKind {
    pub fn label(&self) -> &'static str {
        match self {
            GroupKind::Asg(_) => "asg",
            GroupKind::Standalone(_) => "standalone",
        }
    }
}

/// Where one of a group's images stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageStage {
    /// Being made.
    Pending,
    /// Made; the next run makes it the group's.
    Ready,
    /// The group's launch template version uses it.
    Active,
    /// Was active; kept for rollback.
    Retired,
    /// Rolled back: never activated again.
    Bad,
    /// Deregistered.
    Pruned,
}

/// One image of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub image_id: String,
    pub created_at: DateTime<Utc>,
    pub source_instance: String,
    pub stage: ImageStage,
    /// The launch template version made for it, once active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<String>,
    /// The version it replaced: where a rollback goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An Auto Scaling group's On-Demand share, as its mixed instances policy sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnDemandShare {
    pub base: i32,
    pub percent_above_base: i32,
}

/// The group is (partly) On-Demand because Spot had no capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fallback {
    pub since: DateTime<Utc>,
    pub reason: String,
    /// For an asg group: the share to restore on recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<OnDemandShare>,
}

/// Where the way back to Spot stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Failed attempts since the fallback (each doubles the wait, up to the maximum).
    pub failed_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The On-Demand member being replaced by Spot now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What changes while the group runs (as opposed to its configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    #[serde(default)]
    pub recovery: Recovery,
    /// The at-risk member a rebalance replacement is in flight for (at most one per group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance_in_flight: Option<String>,
    /// The group's images, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageRecord>,
    /// Until when the savings ledger has counted the group's hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrued_at: Option<DateTime<Utc>>,
    /// Data volumes detached from a stopped member that did not free in one invocation's time:
    /// the next event or scheduled run attaches them to the replacement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_moves: Vec<VolumeMove>,
}

/// A data volume on its way from a stopped member to its replacement, its detach requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMove {
    pub volume_id: VolumeId,
    pub device: DeviceName,
    pub from: String,
    pub to: String,
    pub since: DateTime<Utc>,
    /// The member `from` retires: terminated once its volumes are off it.
    #[serde(default)]
    pub terminate_from: bool,
}

/// A registered group: its configuration, policy, status and the version that guards every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub name: GroupName,
    #[serde(flatten)]
    pub kind: GroupKind,
    pub policy: Policy,
    /// The EKS cluster its instances are nodes of: their pods are drained on a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSpec>,
    #[serde(default)]
    pub status: GroupStatus,
    pub created_at: DateTime<Utc>,
    pub version: u64,
}

impl Group {
    /// A new group with its kind's default policy.
    pub fn new(name: GroupName, kind: GroupKind, created_at: DateTime<Utc>) -> Self {
        let policy = Policy::default_for(&kind);
        Self { name, kind, policy, kubernetes: None, status: GroupStatus::default(), created_at, version: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_kind_serializes_with_a_kind_tag() {
        let kind = GroupKind::Asg(AsgSpec { asg_name: "workers".into() });
        let json = serde_json::to_value(&kind).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "asg", "asg_name": "workers"}));
    }
}

/// A standalone group to register, its shape checked; what its references name is checked
/// against AWS when it is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStandalone {
    pub name: GroupName,
    pub launch_template: LaunchTemplateRef,
    pub instance_types: Vec<String>,
    pub subnets: Vec<SubnetId>,
    pub capacity: u32,
    pub dns: Option<DnsSpec>,
    pub elastic_ip_allocation_id: Option<AllocationId>,
    pub data_volumes: Vec<DataVolume>,
    /// Running instances that join the group instead of being launched.
    pub adopt: Vec<String>,
    pub kubernetes: Option<KubernetesSpec>,
}

/// An Auto Scaling group to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAsg {
    pub name: GroupName,
    pub asg_name: String,
    pub kubernetes: Option<KubernetesSpec>,
}
