//! The outside world as EC2 describes it; a member record is made from it.

use chrono::{DateTime, Utc};

use super::{InstanceState, Market, Member, Role, SubnetId, VolumeId};

/// What EC2 says about an instance, as far as spotkeeper cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFacts {
    pub instance_id: String,
    pub market: Market,
    pub instance_type: String,
    pub availability_zone: String,
    pub subnet_id: Option<SubnetId>,
    /// `None` when EC2 gives no state or one this version does not know.
    pub state: Option<InstanceState>,
    pub launched_at: Option<DateTime<Utc>>,
    pub private_ip: Option<String>,
    /// What an EKS node of it is named after.
    pub private_dns: Option<String>,
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
        matches!(self.state, Some(InstanceState::Pending | InstanceState::Running))
    }

    /// A new member record for this instance.
    /// Made only of instances just launched or live (adopted, strays): one EC2 reports without a
    /// state is taken as just launched.
    pub fn into_member(self, fallen_back: bool) -> Member {
        Member {
            instance_id: self.instance_id,
            market: self.market,
            instance_type: self.instance_type,
            availability_zone: self.availability_zone,
            subnet_id: self.subnet_id,
            state: self.state.unwrap_or(InstanceState::Pending),
            state_at: None,
            launched_at: self.launched_at,
            fallen_back,
            replaces: None,
            role: Role::Serving,
            version: 0,
        }
    }
}

/// What EC2 says about an EBS volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFacts {
    pub volume_id: VolumeId,
    pub availability_zone: String,
    /// `available`, `in-use`, ...
    pub state: String,
    pub size_gib: i32,
    /// (instance id, device) of each attachment.
    pub attachments: Vec<(String, String)>,
}

/// One instance a launch produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchedInstance {
    pub instance_id: String,
    pub market: Market,
    pub instance_type: String,
    pub subnet_id: Option<SubnetId>,
}
