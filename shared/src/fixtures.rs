//! Domain values for unit tests: a typical member, instance and standalone spec, to adjust with
//! struct update.

use crate::domain::{InstanceFacts, LaunchTemplateRef, Market, Member, StandaloneSpec};

/// A running Spot member: m5.large in us-east-1a, subnet-a.
pub fn member(id: &str) -> Member {
    Member {
        instance_id: id.into(),
        market: Market::Spot,
        instance_type: "m5.large".into(),
        availability_zone: "us-east-1a".into(),
        subnet_id: Some("subnet-a".into()),
        state: "running".into(),
        state_at: None,
        launched_at: None,
        fallen_back: false,
        replaces: None,
        interrupted: None,
        retiring: None,
        version: 0,
    }
}

/// What EC2 says of a running Spot instance: m5.large in us-east-1a, no tags.
pub fn instance(id: &str) -> InstanceFacts {
    InstanceFacts {
        instance_id: id.into(),
        market: Market::Spot,
        instance_type: "m5.large".into(),
        availability_zone: "us-east-1a".into(),
        subnet_id: None,
        state: "running".into(),
        launched_at: None,
        private_ip: None,
        public_ip: None,
        tags: vec![],
        root_device: None,
        image_id: None,
        block_devices: vec![],
    }
}

/// A standalone group of one m5.large from launch template `lt-1`: no subnets, DNS or volumes.
pub fn standalone_spec() -> StandaloneSpec {
    StandaloneSpec {
        launch_template: LaunchTemplateRef { id: Some("lt-1".into()), name: None, version: "$Latest".into() },
        instance_types: vec!["m5.large".into()],
        subnets: vec![],
        capacity: 1,
        dns: None,
        elastic_ip_allocation_id: None,
        data_volumes: vec![],
        volume_zone: None,
    }
}
