//! The fleet table: one DynamoDB table, single-table design (DESIGN.md, "State").
//!
//! | item            | pk                 | sk                     | gsi1pk / gsi1sk        |
//! |-----------------|--------------------|------------------------|------------------------|
//! | group           | `GROUP#<name>`     | `CONFIG`               | `GROUPS` / name        |
//! | member          | `GROUP#<name>`     | `INSTANCE#<id>`        | `MEMBERS` / id         |
//! | instance lookup | `INSTANCE#<id>`    | `GROUP`                |                        |
//! | history         | `GROUP#<name>`     | `EVENT#<time>#<id>`    | (TTL `expires_at`)     |
//!
//! Every change to an existing item is a conditional write on its `version`: of two writers
//! racing on one item, one wins and the other gets [`StoreError::Conflict`].

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, Put, TransactWriteItem, WriteRequest,
};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::aws::AwsError;
use crate::fleet::{Group, GroupName, Member};

/// The secondary index that lists groups and members without a scan.
pub const INDEX: &str = "gsi1";
/// The attribute DynamoDB's TTL deletes by.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// How long history is kept.
pub const HISTORY_DAYS: i64 = 90;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0}: someone else changed it first; read it again and retry")]
    Conflict(String),
    #[error("table item {key} cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

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

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn group_pk(name: &GroupName) -> String {
    format!("GROUP#{name}")
}

fn member_sk(instance_id: &str) -> String {
    format!("INSTANCE#{instance_id}")
}

fn lookup_pk(instance_id: &str) -> String {
    format!("INSTANCE#{instance_id}")
}

const GROUP_SK: &str = "CONFIG";
const LOOKUP_SK: &str = "GROUP";

/// A domain value as a table item under the given keys.
fn item<T: Serialize>(
    value: &T,
    keys: &[(&str, String)],
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt {
            key: keys.first().map(|(_, v)| v.clone()).unwrap_or_default(),
            reason: e.to_string(),
        })?;
    for (name, value) in keys {
        item.insert((*name).to_string(), s(value.clone()));
    }
    Ok(item)
}

fn parse<T: for<'de> Deserialize<'de>>(item: HashMap<String, AttributeValue>) -> Result<T, StoreError> {
    let key = match (item.get("pk"), item.get("sk")) {
        (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => format!("{pk} / {sk}"),
        _ => "(no key)".to_string(),
    };
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt { key, reason: e.to_string() })
}

fn version_value(version: u64) -> AttributeValue {
    AttributeValue::N(version.to_string())
}

fn is_conditional_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    table: String,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn group_item(group: &Group) -> Result<HashMap<String, AttributeValue>, StoreError> {
        item(
            group,
            &[
                ("pk", group_pk(&group.name)),
                ("sk", GROUP_SK.to_string()),
                ("gsi1pk", "GROUPS".to_string()),
                ("gsi1sk", group.name.to_string()),
            ],
        )
    }

    fn member_item(group: &GroupName, member: &Member) -> Result<HashMap<String, AttributeValue>, StoreError> {
        item(
            member,
            &[
                ("pk", group_pk(group)),
                ("sk", member_sk(&member.instance_id)),
                ("gsi1pk", "MEMBERS".to_string()),
                ("gsi1sk", member.instance_id.clone()),
                ("group", group.to_string()),
            ],
        )
    }

    /// Writes a new group; `Conflict` when one of that name exists.
    pub async fn create_group(&self, group: &Group) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::group_item(group)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if is_conditional_failure(e.err()) => {
                Err(StoreError::Conflict(format!("group {} already exists", group.name)))
            }
            Err(e) => Err(AwsError::from_sdk("PutItem", e).into()),
        }
    }

    /// Saves a changed group if nobody changed it since it was read; returns it at its new version.
    pub async fn save_group(&self, group: &Group) -> Result<Group, StoreError> {
        let next = Group { version: group.version + 1, ..group.clone() };
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::group_item(&next)?))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", version_value(group.version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(next),
            Err(SdkError::ServiceError(e)) if is_conditional_failure(e.err()) => Err(StoreError::Conflict(
                format!("group {} (version {}) was changed or removed", group.name, group.version),
            )),
            Err(e) => Err(AwsError::from_sdk("PutItem", e).into()),
        }
    }

    pub async fn group(&self, name: &GroupName) -> Result<Option<Group>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(group_pk(name)))
            .key("sk", s(GROUP_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetItem", e))?;
        out.item.map(parse).transpose()
    }

    /// Every group, in name order.
    pub async fn groups(&self) -> Result<Vec<Group>, StoreError> {
        self.query_index("GROUPS").await
    }

    async fn query_index<T: for<'de> Deserialize<'de>>(&self, partition: &str) -> Result<Vec<T>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INDEX)
            .key_condition_expression("gsi1pk = :p")
            .expression_attribute_values(":p", s(partition))
            .into_paginator()
            .items()
            .send();
        let mut found = Vec::new();
        while let Some(item) = pages.next().await {
            found.push(parse(item.map_err(|e| AwsError::from_sdk("Query", e))?)?);
        }
        Ok(found)
    }

    async fn query_partition<T: for<'de> Deserialize<'de>>(
        &self,
        pk: String,
        sk_prefix: &str,
        newest_first: bool,
        limit: Option<i32>,
    ) -> Result<Vec<T>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(sk_prefix))
            .scan_index_forward(!newest_first)
            .consistent_read(true);
        let mut found = Vec::new();
        match limit {
            Some(limit) => {
                let out = request.limit(limit).send().await.map_err(|e| AwsError::from_sdk("Query", e))?;
                for item in out.items.unwrap_or_default() {
                    found.push(parse(item)?);
                }
            }
            None => {
                let mut pages = request.into_paginator().items().send();
                while let Some(item) = pages.next().await {
                    found.push(parse(item.map_err(|e| AwsError::from_sdk("Query", e))?)?);
                }
            }
        }
        Ok(found)
    }

    /// A group's members, in instance-id order.
    pub async fn members(&self, group: &GroupName) -> Result<Vec<Member>, StoreError> {
        self.query_partition(group_pk(group), "INSTANCE#", false, None).await
    }

    /// Adds members to a group, each with its instance → group lookup. An instance that some
    /// group already manages is a `Conflict` naming it, and nothing of that batch is written.
    pub async fn add_members(&self, group: &GroupName, members: &[Member]) -> Result<(), StoreError> {
        // A transaction holds at most 100 items: 50 members with their lookups.
        for chunk in members.chunks(50) {
            let mut writes = Vec::with_capacity(chunk.len() * 2);
            for member in chunk {
                let mut lookup = HashMap::new();
                lookup.insert("pk".to_string(), s(lookup_pk(&member.instance_id)));
                lookup.insert("sk".to_string(), s(LOOKUP_SK));
                lookup.insert("group".to_string(), s(group.to_string()));
                for item in [Self::member_item(group, member)?, lookup] {
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .map_err(|e| AwsError { operation: "TransactWriteItems", code: None, message: e.to_string() })?;
                    writes.push(TransactWriteItem::builder().put(put).build());
                }
            }
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(writes))
                .send()
                .await;
            if let Err(err) = result {
                return Err(Self::transaction_error(err, chunk));
            }
        }
        Ok(())
    }

    fn transaction_error(err: SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>, members: &[Member]) -> StoreError {
        if let SdkError::ServiceError(service) = &err
            && let TransactWriteItemsError::TransactionCanceledException(cancelled) = service.err()
        {
            let reasons = cancelled.cancellation_reasons.as_deref().unwrap_or_default();
            // Writes go in pairs (member, lookup), so the failing index names the instance.
            if let Some(index) = reasons.iter().position(|r| r.code.as_deref() == Some("ConditionalCheckFailed")) {
                let instance = members.get(index / 2).map(|m| m.instance_id.as_str()).unwrap_or("an instance");
                return StoreError::Conflict(format!("instance {instance} is already managed by a group"));
            }
        }
        AwsError::from_sdk("TransactWriteItems", err).into()
    }

    /// Saves a changed member if nobody changed it since it was read; returns it at its new version.
    pub async fn save_member(&self, group: &GroupName, member: &Member) -> Result<Member, StoreError> {
        let next = Member { version: member.version + 1, ..member.clone() };
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::member_item(group, &next)?))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", version_value(member.version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(next),
            Err(SdkError::ServiceError(e)) if is_conditional_failure(e.err()) => Err(StoreError::Conflict(format!(
                "member {} of group {group} (version {}) was changed or removed",
                member.instance_id, member.version
            ))),
            Err(e) => Err(AwsError::from_sdk("PutItem", e).into()),
        }
    }

    /// The group that manages an instance, if any.
    pub async fn group_of(&self, instance_id: &str) -> Result<Option<GroupName>, StoreError> {
        #[derive(Deserialize)]
        struct Lookup {
            group: GroupName,
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(lookup_pk(instance_id)))
            .key("sk", s(LOOKUP_SK))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetItem", e))?;
        Ok(out.item.map(parse::<Lookup>).transpose()?.map(|l| l.group))
    }

    /// Forgets a group: its configuration, members and lookups (its history stays until its TTL).
    pub async fn delete_group(&self, group: &GroupName, members: &[Member]) -> Result<(), StoreError> {
        let key = |pk: String, sk: String| {
            DeleteRequest::builder()
                .key("pk", s(pk))
                .key("sk", s(sk))
                .build()
                .map(|d| WriteRequest::builder().delete_request(d).build())
        };
        let mut requests = vec![key(group_pk(group), GROUP_SK.to_string())];
        for m in members {
            requests.push(key(group_pk(group), member_sk(&m.instance_id)));
            requests.push(key(lookup_pk(&m.instance_id), LOOKUP_SK.to_string()));
        }
        let requests: Vec<WriteRequest> = requests
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| AwsError { operation: "BatchWriteItem", code: None, message: e.to_string() })?;
        for chunk in requests.chunks(25) {
            let mut pending = HashMap::from([(self.table.clone(), chunk.to_vec())]);
            // Unprocessed items come back under throttling; send them again, a bounded number of times.
            for attempt in 0..8u32 {
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("BatchWriteItem", e))?;
                pending = out.unprocessed_items.unwrap_or_default();
                if pending.values().all(Vec::is_empty) {
                    break;
                }
                if attempt == 7 {
                    return Err(AwsError {
                        operation: "BatchWriteItem",
                        code: None,
                        message: "items were still unprocessed after 8 attempts; run the delete again".into(),
                    }
                    .into());
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
        }
        Ok(())
    }

    /// Appends an entry to a group's history.
    pub async fn record(&self, group: &GroupName, entry: &HistoryEntry) -> Result<(), StoreError> {
        let unique = rand::random::<u32>();
        let sk = format!("EVENT#{}#{unique:08x}", entry.at.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
        let expires = (entry.at + Duration::days(HISTORY_DAYS)).timestamp();
        let mut item = item(entry, &[("pk", group_pk(group)), ("sk", sk)])?;
        item.insert(TTL_ATTRIBUTE.to_string(), AttributeValue::N(expires.to_string()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutItem", e))?;
        Ok(())
    }

    /// The newest `limit` entries of a group's history, newest first.
    pub async fn history(&self, group: &GroupName, limit: i32) -> Result<Vec<HistoryEntry>, StoreError> {
        self.query_partition(group_pk(group), "EVENT#", true, Some(limit)).await
    }
}
