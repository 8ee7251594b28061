//! What the bodies' property tests share: generated JSON near the real bodies, and what an
//! acceptable refusal is.

use proptest::prelude::*;
use serde_json::Value;

use crate::reply::ApiError;

pub(super) use spotkeeper::fixtures::proptest_config as config;

/// The fields and values of the API's bodies, for generated JSON near them.
const KEYS: &[&str] = &[
    "name",
    "kind",
    "asg_name",
    "launch_template",
    "instance_types",
    "subnets",
    "capacity",
    "dns",
    "data_volumes",
    "rebalance",
    "recovery",
    "volumes",
    "webhooks",
];
const WORDS: &[&str] = &["standalone", "asg", "subnet-1"];

pub(super) fn json() -> impl Strategy<Value = Value> {
    spotkeeper::fixtures::json(KEYS, WORDS)
}

pub(super) fn explained(err: &ApiError) -> bool {
    !err.message.trim().is_empty() && err.status.is_client_error()
}
