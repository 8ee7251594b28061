//! What spotkeeper keeps of a volume it grows: where it is mounted and each modification.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{GroupName, MountPath};

/// Where a modification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Asked of EBS; not optimizing yet.
    Requested,
    /// EBS has the new size; the filesystem can grow now.
    Optimizing,
    Completed,
    Failed,
}

/// One growth of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modification {
    pub at: DateTime<Utc>,
    pub from_gib: u32,
    pub to_gib: u32,
    pub stage: Stage,
    /// The SSM command that grows the filesystem, once sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// When one handler claimed the sending of that command (a version-checked write before
    /// SendCommand): of two EBS results handled at once, only the claimant sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_claimed_at: Option<DateTime<Utc>>,
    /// What asked for it: `alarm`, `webhook`, `alertmanager`.
    pub source: String,
}

/// What spotkeeper knows of a volume it grows: where it is mounted and its modifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub volume_id: String,
    pub group: GroupName,
    pub instance_id: String,
    pub path: MountPath,
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
    #[serde(default)]
    pub modifications: Vec<Modification>,
    pub version: u64,
}
