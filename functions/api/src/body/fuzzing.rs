//! What the bodies' property tests share: generated JSON near the real bodies, and what an
//! acceptable refusal is.

use proptest::prelude::*;
use serde_json::Value;

use crate::reply::ApiError;

/// 400 cases in `make test`; `make fuzz` runs many more (PROPTEST_CASES).
pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    }
}

pub fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,30}".prop_map(Value::String),
        Just(Value::String("standalone".into())),
        Just(Value::String("asg".into())),
        Just(Value::String("subnet-1".into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let key = prop_oneof![
            Just("name".to_string()),
            Just("kind".to_string()),
            Just("asg_name".to_string()),
            Just("launch_template".to_string()),
            Just("instance_types".to_string()),
            Just("subnets".to_string()),
            Just("capacity".to_string()),
            Just("dns".to_string()),
            Just("data_volumes".to_string()),
            Just("rebalance".to_string()),
            Just("recovery".to_string()),
            Just("volumes".to_string()),
            Just("webhooks".to_string()),
            "[a-z_]{1,12}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..10).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

pub fn explained(err: &ApiError) -> bool {
    !err.message.trim().is_empty() && err.status.is_client_error()
}
