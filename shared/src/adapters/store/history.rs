//! A group's history: what happened and what spotkeeper did, kept for [`HISTORY_DAYS`].

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::keys::{group_pk, s};
use super::write::{item, parse};
use super::{Store, StoreError};
use crate::adapters::aws::AwsError;
use crate::domain::GroupName;

/// How long history is kept.
pub const HISTORY_DAYS: i64 = 90;

/// One entry of a group's history: something that happened or something spotkeeper did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    /// What happened, in kebab-case: `group-registered`, `instance-launched`, `dns-updated`, ...
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub message: String,
}

impl Store {
    /// Appends an entry to a group's history.
    pub async fn record(&self, group: &GroupName, entry: &HistoryEntry) -> Result<(), StoreError> {
        let unique = rand::random::<u32>();
        let sk = format!("EVENT#{}#{unique:08x}", entry.at.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
        let expires = (entry.at + Duration::days(HISTORY_DAYS)).timestamp();
        self.put_expiring(item(entry, &[("pk", group_pk(group)), ("sk", sk)])?, expires).await
    }

    /// A page of a group's history, newest first, after the entry `after` (the sort key a previous
    /// page ended at). Returns the entries and where the next page starts, if there is one.
    pub async fn history_page(
        &self,
        group: &GroupName,
        limit: i32,
        after: Option<&str>,
    ) -> Result<(Vec<HistoryEntry>, Option<String>), StoreError> {
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(group_pk(group)))
            .expression_attribute_values(":prefix", s("EVENT#"))
            .scan_index_forward(false)
            .limit(limit);
        if let Some(after) = after {
            request = request.exclusive_start_key("pk", s(group_pk(group))).exclusive_start_key("sk", s(after));
        }
        let out = request.send().await.map_err(|e| AwsError::from_sdk("Query", e))?;
        let next = out.last_evaluated_key.and_then(|k| match k.get("sk") {
            Some(AttributeValue::S(sk)) => Some(sk.clone()),
            _ => None,
        });
        let entries = out.items.unwrap_or_default().into_iter().map(parse).collect::<Result<Vec<_>, _>>()?;
        Ok((entries, next))
    }

    /// The newest `limit` entries of a group's history, newest first.
    pub async fn history(&self, group: &GroupName, limit: i32) -> Result<Vec<HistoryEntry>, StoreError> {
        self.query_partition(group_pk(group), "EVENT#", true, Some(limit)).await
    }
}
