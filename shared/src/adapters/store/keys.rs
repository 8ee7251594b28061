//! Where each item kind lives in the table (the module's table of items), and the names of
//! the index and the TTL attribute.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::GroupName;

/// The secondary index that lists groups and members without a scan.
pub const INDEX: &str = "gsi1";
/// The attribute DynamoDB's TTL deletes by.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// A table item, or just its key.
pub(super) type Key = HashMap<String, AttributeValue>;

pub(super) const GROUP_SK: &str = "CONFIG";
pub(super) const LOOKUP_SK: &str = "GROUP";
pub(super) const ATTEMPT_SK: &str = "ATTEMPT";
pub(super) const HEALTH_PK: &str = "POOLS";
pub(super) const HEALTH_SK: &str = "HEALTH";

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn group_pk(name: &GroupName) -> String {
    format!("GROUP#{name}")
}

pub(super) fn member_sk(instance_id: &str) -> String {
    format!("INSTANCE#{instance_id}")
}

pub(super) fn lookup_pk(instance_id: &str) -> String {
    format!("INSTANCE#{instance_id}")
}

pub(super) fn attempt_pk(token: &str) -> String {
    format!("ATTEMPT#{token}")
}

pub(super) fn claim_key(event_id: &str) -> [(&'static str, AttributeValue); 2] {
    [("pk", s(format!("DEDUP#{event_id}"))), ("sk", s("DEDUP"))]
}
