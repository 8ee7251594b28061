//! The domain: groups, their members, pools and markets. Plain data, no I/O.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The tag spotkeeper puts on every instance it launches or adopts.
pub const GROUP_TAG: &str = "spotkeeper:group";
/// The tag a replacement carries: the id of the instance it replaces.
pub const REPLACES_TAG: &str = "spotkeeper:replaces";

/// A group's name: 1–63 lowercase letters, digits and dashes, starting with a letter or digit.
/// It appears in table keys, tags and URLs, so it is kept to characters safe in all three.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupName(String);

impl GroupName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let ok_len = (1..=63).contains(&value.len());
        let ok_chars = value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok_len && ok_chars && !value.starts_with('-') {
            Ok(Self(value))
        } else {
            Err(format!("group name {value:?} must be 1-63 characters of a-z, 0-9 and '-', not starting with '-'"))
        }
    }
}

impl From<GroupName> for String {
    fn from(value: GroupName) -> Self {
        value.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An EC2 instance id as EC2 makes them: `i-` and 8 or 17 lowercase hex digits. Ids from
/// events become table keys and AWS call parameters, so anything else is refused where it
/// arrives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(String);

impl InstanceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `value` is `prefix` and 8 or 17 lowercase hex digits: EC2's resource ids
/// (`i-`, `vol-`, ...).
pub fn is_ec2_id(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl TryFrom<String> for InstanceId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if is_ec2_id(&value, "i-") {
            Ok(Self(value))
        } else {
            let shown: String = value.chars().take(40).collect();
            let more = if value.chars().count() > 40 { "…" } else { "" };
            Err(format!("{shown:?}{more} is not an EC2 instance id (i- and 8 or 17 hex digits)"))
        }
    }
}

impl From<InstanceId> for String {
    fn from(value: InstanceId) -> Self {
        value.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Spot or On-Demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    Spot,
    OnDemand,
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Market::Spot => "spot",
            Market::OnDemand => "on-demand",
        })
    }
}

/// Where an instance can run: one instance type in one subnet (and so one AZ).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pool {
    pub instance_type: String,
    pub subnet_id: String,
    pub availability_zone: String,
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {} ({})", self.instance_type, self.availability_zone, self.subnet_id)
    }
}

impl Pool {
    /// A stable key for the pool, used in the table's pool-health item.
    pub fn key(&self) -> String {
        format!("{}|{}", self.instance_type, self.subnet_id)
    }
}

/// Pools to avoid for a while: one that was just interrupted or had no capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolHealth {
    /// Pool key → avoid until.
    pub avoid_until: std::collections::HashMap<String, DateTime<Utc>>,
}

impl PoolHealth {
    pub fn is_healthy(&self, pool: &Pool, now: DateTime<Utc>) -> bool {
        self.avoid_until.get(&pool.key()).is_none_or(|until| *until <= now)
    }
}

/// A subnet a group may launch into, with the AZ it lies in (looked up at registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub availability_zone: String,
}

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
    pub volume_id: String,
    pub device: String,
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
    pub elastic_ip_allocation_id: Option<String>,
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

/// What a group does on a rebalance recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebalancePolicy {
    /// Record only.
    Off,
    /// Record and alert.
    Notify,
    /// Launch a replacement now and terminate the at-risk instance once it serves (standalone).
    Replace,
}

/// A UTC time range, `HH:MM` to `HH:MM` (it may wrap past midnight), in which recovery may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub start: String,
    pub end: String,
}

/// How a group goes back to Spot after falling back to On-Demand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryPolicy {
    /// Wait this long after a fallback before the first attempt.
    #[serde(with = "humantime_serde", default = "defaults::cooldown")]
    pub cooldown: std::time::Duration,
    /// After a failed attempt, wait this long, doubling with each failure...
    #[serde(with = "humantime_serde", default = "defaults::backoff_base")]
    pub backoff_base: std::time::Duration,
    /// ...up to this.
    #[serde(with = "humantime_serde", default = "defaults::backoff_max")]
    pub backoff_max: std::time::Duration,
    /// When recovery may run (empty: any time).
    #[serde(default)]
    pub windows: Vec<Window>,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        Self {
            cooldown: defaults::cooldown(),
            backoff_base: defaults::backoff_base(),
            backoff_max: defaults::backoff_max(),
            windows: Vec::new(),
        }
    }
}

/// The documented defaults.
pub mod defaults {
    use std::time::Duration;
    pub fn cooldown() -> Duration {
        Duration::from_secs(45 * 60)
    }
    pub fn backoff_base() -> Duration {
        Duration::from_secs(15 * 60)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(4 * 3600)
    }
    pub fn threshold_percent() -> u32 {
        80
    }
    pub fn growth_percent() -> u32 {
        25
    }
    pub fn min_step_gib() -> u32 {
        10
    }
    pub fn max_size_gib() -> u32 {
        1024
    }
    pub fn max_per_day() -> u32 {
        4
    }
    pub fn min_interval() -> Duration {
        Duration::from_secs(6 * 3600)
    }
    pub fn image_schedule() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub fn image_keep() -> u32 {
        3
    }
    pub fn image_probation() -> Duration {
        Duration::from_secs(15 * 60)
    }
}

/// How a group's EBS volumes grow when their filesystems fill up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumePolicy {
    /// Grow when a filesystem is at least this full.
    #[serde(default = "defaults::threshold_percent")]
    pub threshold_percent: u32,
    /// Grow by this share of the size...
    #[serde(default = "defaults::growth_percent")]
    pub growth_percent: u32,
    /// ...and by at least this much.
    #[serde(default = "defaults::min_step_gib")]
    pub min_step_gib: u32,
    /// Never beyond this size.
    #[serde(default = "defaults::max_size_gib")]
    pub max_size_gib: u32,
    /// Mount path → EBS device name (`/data` → `/dev/sdf`); `/` is the root device unless set.
    #[serde(default)]
    pub path_devices: std::collections::BTreeMap<String, String>,
    /// EBS allows a few modifications a day per volume...
    #[serde(default = "defaults::max_per_day")]
    pub max_per_day: u32,
    /// ...at least six hours apart.
    #[serde(with = "humantime_serde", default = "defaults::min_interval")]
    pub min_interval: std::time::Duration,
}

impl Default for VolumePolicy {
    fn default() -> Self {
        Self {
            threshold_percent: defaults::threshold_percent(),
            growth_percent: defaults::growth_percent(),
            min_step_gib: defaults::min_step_gib(),
            max_size_gib: defaults::max_size_gib(),
            path_devices: Default::default(),
            max_per_day: defaults::max_per_day(),
            min_interval: defaults::min_interval(),
        }
    }
}

/// How a standalone group keeps a recent image of itself, so replacements come back as the
/// instance was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePolicy {
    #[serde(default)]
    pub enabled: bool,
    /// How often a new image is made.
    #[serde(with = "humantime_serde", default = "defaults::image_schedule")]
    pub schedule: std::time::Duration,
    /// How many images to keep.
    #[serde(default = "defaults::image_keep")]
    pub keep: u32,
    /// Reboot the instance for a consistent image (off: no downtime).
    #[serde(default)]
    pub reboot: bool,
    /// A member launched from a new image that stops or dies this soon rolls the image back.
    #[serde(with = "humantime_serde", default = "defaults::image_probation")]
    pub probation: std::time::Duration,
}

impl Default for ImagePolicy {
    fn default() -> Self {
        Self {
            enabled: false,
            schedule: defaults::image_schedule(),
            keep: defaults::image_keep(),
            reboot: false,
            probation: defaults::image_probation(),
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

/// An outgoing webhook: lifecycle events POSTed as signed JSON. Its `Debug` hides the secret, so
/// a group or policy printed whole (in a log line, an error) never carries it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    /// The HMAC key of the `Spotkeeper-Signature` header (never shown by the API).
    pub secret: String,
    /// The events to send (empty: all).
    #[serde(default)]
    pub events: Vec<String>,
    /// Allow plain `http://` to a loopback address (for local use).
    #[serde(default)]
    pub allow_loopback_http: bool,
    /// Allow private, link-local and metadata addresses.
    #[serde(default)]
    pub allow_private: bool,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &"***")
            .field("events", &self.events)
            .field("allow_loopback_http", &self.allow_loopback_http)
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

/// A group's behaviour, set at registration and changed with `PATCH /groups/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub rebalance: RebalancePolicy,
    /// Members that always stay On-Demand.
    pub on_demand_base: u32,
    /// Fall back to On-Demand when Spot has no capacity.
    pub fallback: bool,
    pub recovery: RecoveryPolicy,
    #[serde(default)]
    pub volumes: VolumePolicy,
    #[serde(default)]
    pub images: ImagePolicy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    /// On-Demand prices (USD per hour) by instance type, over the Price List API's.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub on_demand_prices: std::collections::BTreeMap<String, f64>,
}

impl Policy {
    /// The defaults: standalone groups replace on rebalance, asg groups notify.
    pub fn default_for(kind: &GroupKind) -> Self {
        Self {
            rebalance: match kind {
                GroupKind::Asg(_) => RebalancePolicy::Notify,
                GroupKind::Standalone(_) => RebalancePolicy::Replace,
            },
            on_demand_base: 0,
            fallback: true,
            recovery: RecoveryPolicy::default(),
            volumes: VolumePolicy::default(),
            images: ImagePolicy::default(),
            webhooks: Vec::new(),
            on_demand_prices: Default::default(),
        }
    }
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
    pub volume_id: String,
    pub device: String,
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
    #[serde(default)]
    pub status: GroupStatus,
    pub created_at: DateTime<Utc>,
    pub version: u64,
}

impl Group {
    /// A new group with its kind's default policy.
    pub fn new(name: GroupName, kind: GroupKind, created_at: DateTime<Utc>) -> Self {
        let policy = Policy::default_for(&kind);
        Self { name, kind, policy, status: GroupStatus::default(), created_at, version: 0 }
    }
}

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
    pub state: String,
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

/// What EC2 says about an instance, as far as spotkeeper cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFacts {
    pub instance_id: String,
    pub market: Market,
    pub instance_type: String,
    pub availability_zone: String,
    pub subnet_id: Option<String>,
    pub state: String,
    pub launched_at: Option<DateTime<Utc>>,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub tags: Vec<(String, String)>,
    pub root_device: Option<String>,
    pub image_id: Option<String>,
    /// (device name, EBS volume id) of each attached volume.
    pub block_devices: Vec<(String, String)>,
}

impl InstanceFacts {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn is_live(&self) -> bool {
        matches!(self.state.as_str(), "pending" | "running")
    }

    /// A new member record for this instance.
    pub fn into_member(self, fallen_back: bool) -> Member {
        Member {
            instance_id: self.instance_id,
            market: self.market,
            instance_type: self.instance_type,
            availability_zone: self.availability_zone,
            subnet_id: self.subnet_id,
            state: self.state,
            state_at: None,
            launched_at: self.launched_at,
            fallen_back,
            replaces: None,
            interrupted: None,
            retiring: None,
            version: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_checked() {
        assert!(GroupName::try_from("web-1".to_string()).is_ok());
        for bad in ["", "-web", "Web", "web_1", "a/b", &"x".repeat(64)] {
            let err = GroupName::try_from(bad.to_string()).unwrap_err();
            assert!(err.contains("must be"), "{bad}: {err}");
        }
    }

    #[test]
    fn instance_ids_have_ec2_shape() {
        for good in ["i-0123abcd", "i-0b22a22eec53b9321"] {
            assert_eq!(InstanceId::try_from(good.to_string()).map(String::from), Ok(good.to_string()));
        }
        let long = format!("i-{}", "a".repeat(200_000));
        for bad in [
            "",
            "i-",
            "i-1",
            "i-0123ABCD",
            "i-0123abcdx",
            "vol-0123abcd",
            "not-an-instance-id; DROP TABLE",
            "../../etc/passwd",
            &long,
        ] {
            let err = InstanceId::try_from(bad.to_string()).unwrap_err();
            assert!(err.contains("is not an EC2 instance id") && err.len() < 120, "{err}");
        }
    }

    #[test]
    fn a_webhook_prints_without_its_secret() {
        let webhook = Webhook {
            url: "https://hooks.example.com/x".into(),
            secret: "whsec_0123456789abcdef".into(),
            events: Vec::new(),
            allow_loopback_http: false,
            allow_private: false,
        };
        let printed = format!("{webhook:?}");
        assert!(printed.contains("hooks.example.com") && !printed.contains("whsec"), "{printed}");
    }

    #[test]
    fn group_kind_serializes_with_a_kind_tag() {
        let kind = GroupKind::Asg(AsgSpec { asg_name: "workers".into() });
        let json = serde_json::to_value(&kind).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "asg", "asg_name": "workers"}));
    }
}
