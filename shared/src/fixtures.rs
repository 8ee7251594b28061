//! What the unit tests and the end-to-end tests share (feature `test-support`, on in `cfg(test)`):
//! domain values (a typical member, instance and standalone spec, to adjust with struct update) and
//! the property tests' generated JSON and case count.

use proptest::prelude::*;
use proptest::strategy::Union;
use serde_json::Value;

use crate::domain::{InstanceFacts, InstanceState, LaunchTemplateRef, Market, Member, Role, StandaloneSpec, SubnetId};

/// A running Spot member: m5.large in us-east-1a, subnet-a.
pub fn member(id: &str) -> Member {
    Member {
        instance_id: id.into(),
        market: Market::Spot,
        instance_type: "m5.large".into(),
        availability_zone: "us-east-1a".into(),
        subnet_id: SubnetId::try_from("subnet-a").ok(),
        state: InstanceState::Running,
        state_at: None,
        launched_at: None,
        fallen_back: false,
        replaces: None,
        role: Role::Serving,
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
        state: Some(InstanceState::Running),
        launched_at: None,
        private_ip: None,
        private_dns: None,
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

/// The property tests' settings: 400 cases in `make test`; `make fuzz` runs many more
/// (`PROPTEST_CASES`).
pub fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    }
}

/// Any JSON value, a few levels deep, near an input's real shape: object keys are often one of
/// `keys` (the field names the input knows) and strings sometimes one of `words` (values it
/// knows), each as likely as any other key or leaf.
pub fn json(keys: &'static [&'static str], words: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let mut leaves = vec![
        (1, Just(Value::Null).boxed()),
        (1, any::<bool>().prop_map(Value::Bool).boxed()),
        (1, any::<i64>().prop_map(Value::from).boxed()),
        (1, any::<f64>().prop_map(Value::from).boxed()),
        (1, ".{0,40}".prop_map(Value::String).boxed()),
    ];
    if !words.is_empty() {
        leaves.push((weight(words), prop::sample::select(words).prop_map(|w| Value::String(w.into())).boxed()));
    }
    Union::new_weighted(leaves).prop_recursive(4, 64, 8, move |inner| {
        let mut key = vec![(1, "[a-z_-]{1,12}".boxed())];
        if !keys.is_empty() {
            key.push((weight(keys), prop::sample::select(keys).prop_map(String::from).boxed()));
        }
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(Union::new_weighted(key), inner, 0..10)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The weight of a choice among `n` named ones: each as likely as one other arm.
fn weight(named: &[&str]) -> u32 {
    u32::try_from(named.len()).unwrap_or(u32::MAX)
}
