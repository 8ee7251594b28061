//! The fleet table: one DynamoDB table, single-table design (DESIGN.md, "State").
//!
//! | item            | pk                 | sk                     | gsi1pk / gsi1sk        |
//! |-----------------|--------------------|------------------------|------------------------|
//! | group           | `GROUP#<name>`     | `CONFIG`               | `GROUPS` / name        |
//! | member          | `GROUP#<name>`     | `INSTANCE#<id>`        | `MEMBERS` / id         |
//! | instance lookup | `INSTANCE#<id>`    | `GROUP`                |                        |
//! | history         | `GROUP#<name>`     | `EVENT#<time>#<id>`    | (TTL `expires_at`)     |
//! | event claim     | `DEDUP#<event id>` | `DEDUP`                | (TTL `expires_at`)     |
//! | unknown launch  | `ATTEMPT#<token>`  | `ATTEMPT`              | (TTL `expires_at`)     |
//! | pool health     | `POOLS`            | `HEALTH`               |                        |
//! | volume growth   | `VOLUME#<id>`      | `VOLUME`               | `VOLUMES` / id         |
//! | savings ledger  | `SAVINGS#<group>`  | `DAY#<yyyy-mm-dd>`     |                        |
//! | price cache     | `PRICE#on-demand`  | `<region>#<type>`      | (TTL `expires_at`)     |
//!
//! The instance lookup carries a snapshot of its group's configuration and the member's pool,
//! and pool health is one item: so the interruption handler reads everything it needs to launch
//! a replacement in one `BatchGetItem`, beside its claim on the event.
//!
//! Every change to an existing item is a conditional write on its `version`: of two writers
//! racing on one item, one wins and the other gets [`StoreError::Conflict`].

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, Put, TransactWriteItem, WriteRequest};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::aws::AwsError;
use crate::fleet::{Group, GroupName, Member, Pool, PoolHealth};
use crate::growth::VolumeRecord;

/// The secondary index that lists groups and members without a scan.
pub const INDEX: &str = "gsi1";
/// The attribute DynamoDB's TTL deletes by.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// How long history is kept.
pub const HISTORY_DAYS: i64 = 90;
/// How long an event's claim is remembered: SQS keeps a message at most 14 days.
pub const CLAIM_DAYS: i64 = 14;

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

fn attempt_pk(token: &str) -> String {
    format!("ATTEMPT#{token}")
}

const ATTEMPT_SK: &str = "ATTEMPT";

/// A table item, or just its key.
type Key = HashMap<String, AttributeValue>;
const HEALTH_PK: &str = "POOLS";
const HEALTH_SK: &str = "HEALTH";
const POOL_PREFIX: &str = "pool:";

/// What a ledger counts besides hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Interruption,
    Fallback,
}

/// What the table knows of a managed instance: its group (as a snapshot) and its pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lookup {
    pub group: GroupName,
    pub config: Group,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Pool>,
    /// The client token of a launch for this instance whose outcome is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
}

/// The outcome of claiming an event for an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This delivery acts; the instance is locked for it.
    Won,
    /// Another delivery of the same event holds it (acting now, or done).
    Taken,
    /// No group manages the instance, or another action (a rebalance, a recovery) is replacing
    /// it already. Nothing was written.
    Busy,
}

const LOCK_CONDITION: &str =
    "attribute_exists(pk) AND (attribute_not_exists(replacing) OR replacing = :holder OR replacing_until < :now)";

fn claim_key(event_id: &str) -> [(&'static str, AttributeValue); 2] {
    [("pk", s(format!("DEDUP#{event_id}"))), ("sk", s("DEDUP"))]
}

fn build_error(operation: &'static str) -> impl Fn(aws_sdk_dynamodb::error::BuildError) -> AwsError {
    move |e| AwsError { operation, code: None, message: e.to_string() }
}

/// A domain value as a table item under the given keys.
fn item<T: Serialize>(value: &T, keys: &[(&str, String)]) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt {
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

/// Sends a conditional update: `false` when its condition did not hold.
async fn conditional(
    request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
) -> Result<bool, StoreError> {
    match request.send().await {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e)) if is_conditional_failure(e.err()) => Ok(false),
        Err(e) => Err(AwsError::from_sdk("UpdateItem", e).into()),
    }
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

    /// Saves a changed group if nobody changed it since it was read, and refreshes the snapshot
    /// its members' lookups carry; returns the group at its new version.
    pub async fn save_group(&self, group: &Group, member_ids: &[String]) -> Result<Group, StoreError> {
        let next = Group { version: group.version + 1, ..group.clone() };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::group_item(&next)?))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", version_value(group.version))
            .build()
            .map_err(build_error("TransactWriteItems"))?;
        let config: AttributeValue = serde_dynamo::to_attribute_value(&next)
            .map_err(|e| StoreError::Corrupt { key: group_pk(&group.name), reason: e.to_string() })?;
        let refresh = |id: &String| {
            aws_sdk_dynamodb::types::Update::builder()
                .table_name(&self.table)
                .key("pk", s(lookup_pk(id)))
                .key("sk", s(LOOKUP_SK))
                .update_expression("SET config = :config")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":config", config.clone())
                .build()
                .map(|u| TransactWriteItem::builder().update(u).build())
                .map_err(build_error("TransactWriteItems"))
        };
        // The group and up to 99 lookups change atomically; a larger group's other lookups follow
        // in further transactions (each lookup carries the group version it was copied at).
        let (first, rest) = member_ids.split_at(member_ids.len().min(99));
        let mut writes = vec![TransactWriteItem::builder().put(put).build()];
        for id in first {
            writes.push(refresh(id)?);
        }
        let result = self.client.transact_write_items().set_transact_items(Some(writes)).send().await;
        if let Err(err) = result {
            let conflict = matches!(&err, SdkError::ServiceError(e) if matches!(e.err(), TransactWriteItemsError::TransactionCanceledException(_)));
            return Err(if conflict {
                StoreError::Conflict(format!("group {} (version {}) was changed or removed", group.name, group.version))
            } else {
                AwsError::from_sdk("TransactWriteItems", err).into()
            });
        }
        for chunk in rest.chunks(100) {
            let writes = chunk.iter().map(refresh).collect::<Result<Vec<_>, _>>()?;
            self.client
                .transact_write_items()
                .set_transact_items(Some(writes))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("TransactWriteItems", e))?;
        }
        Ok(next)
    }

    /// Reads a group, changes its status and saves it, reading again when another writer got
    /// there first (a few times). `None` when there is no such group. The change must not touch
    /// the configuration: member lookups keep their snapshot.
    pub async fn update_group(
        &self,
        name: &GroupName,
        change: impl Fn(&mut Group),
    ) -> Result<Option<Group>, StoreError> {
        self.change_group(name, false, change).await
    }

    /// Read, change, save conditionally on the version; again (a few times) on a conflict. With
    /// `lookups`, the members' lookups take the new configuration in the same transaction.
    async fn change_group(
        &self,
        name: &GroupName,
        lookups: bool,
        change: impl Fn(&mut Group),
    ) -> Result<Option<Group>, StoreError> {
        let mut last = None;
        for _ in 0..4 {
            let Some(mut group) = self.group(name).await? else { return Ok(None) };
            change(&mut group);
            let ids: Vec<String> = if lookups {
                self.members(name).await?.into_iter().map(|m| m.instance_id).collect()
            } else {
                Vec::new()
            };
            match self.save_group(&group, &ids).await {
                Ok(saved) => return Ok(Some(saved)),
                Err(StoreError::Conflict(m)) => last = Some(StoreError::Conflict(m)),
                Err(other) => return Err(other),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Conflict(format!("group {name}"))))
    }

    /// Reads a group, changes its configuration and saves it with its members' lookups, reading
    /// again when another writer got there first (a few times). `None` when there is no such group.
    pub async fn update_config(
        &self,
        name: &GroupName,
        change: impl Fn(&mut Group),
    ) -> Result<Option<Group>, StoreError> {
        self.change_group(name, true, change).await
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
    pub async fn add_members(&self, group: &Group, members: &[Member]) -> Result<(), StoreError> {
        // A transaction holds at most 100 items: 50 members with their lookups.
        for chunk in members.chunks(50) {
            let mut writes = Vec::with_capacity(chunk.len() * 2);
            for member in chunk {
                let lookup =
                    Lookup { group: group.name.clone(), config: group.clone(), pool: member.pool(), attempt: None };
                let lookup = item(&lookup, &[("pk", lookup_pk(&member.instance_id)), ("sk", LOOKUP_SK.to_string())])?;
                for item in [Self::member_item(&group.name, member)?, lookup] {
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .map_err(build_error("TransactWriteItems"))?;
                    writes.push(TransactWriteItem::builder().put(put).build());
                }
            }
            let result = self.client.transact_write_items().set_transact_items(Some(writes)).send().await;
            if let Err(err) = result {
                return Err(Self::transaction_error(err, chunk));
            }
        }
        Ok(())
    }

    /// Forgets one member and its lookup.
    pub async fn remove_member(&self, group: &GroupName, instance_id: &str) -> Result<(), StoreError> {
        let delete = |pk: String, sk: String| {
            aws_sdk_dynamodb::types::Delete::builder()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .build()
                .map(|d| TransactWriteItem::builder().delete(d).build())
                .map_err(build_error("TransactWriteItems"))
        };
        self.client
            .transact_write_items()
            .transact_items(delete(group_pk(group), member_sk(instance_id))?)
            .transact_items(delete(lookup_pk(instance_id), LOOKUP_SK.to_string())?)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("TransactWriteItems", e))?;
        Ok(())
    }

    /// Claims an event for this delivery and locks its instance against other replacements, in
    /// one transaction: either both are written or neither. A claim (or lock) left by a delivery
    /// that died — its lease ran out before it finished — can be taken over; a finished claim
    /// cannot.
    pub async fn claim(
        &self,
        event_id: &str,
        instance_id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let now_ms = AttributeValue::N(now.timestamp_millis().to_string());
        let until_ms = AttributeValue::N((now + lease).timestamp_millis().to_string());
        // Who claims: one value per call, so the SDK's retry of a claim whose answer was lost finds
        // its own claim and goes on, instead of standing aside for itself.
        let holder = hex::encode(rand::random::<[u8; 12]>());
        let mut claim = Put::builder()
            .table_name(&self.table)
            .item("state", s("acting"))
            .item("holder", s(&holder))
            .item("lease_until", until_ms.clone())
            .item(TTL_ATTRIBUTE, AttributeValue::N((now + Duration::days(CLAIM_DAYS)).timestamp().to_string()))
            .condition_expression(
                "attribute_not_exists(pk) OR (#state = :acting AND (lease_until < :now OR holder = :holder))",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":acting", s("acting"))
            .expression_attribute_values(":holder", s(&holder))
            .expression_attribute_values(":now", now_ms.clone());
        for (name, value) in claim_key(event_id) {
            claim = claim.item(name, value);
        }
        let lock = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .key("pk", s(lookup_pk(instance_id)))
            .key("sk", s(LOOKUP_SK))
            .update_expression("SET replacing = :holder, replacing_until = :until")
            .condition_expression(LOCK_CONDITION)
            .expression_attribute_values(":holder", s(event_id))
            .expression_attribute_values(":until", until_ms)
            .expression_attribute_values(":now", now_ms);
        let writes = vec![
            TransactWriteItem::builder().put(claim.build().map_err(build_error("TransactWriteItems"))?).build(),
            TransactWriteItem::builder().update(lock.build().map_err(build_error("TransactWriteItems"))?).build(),
        ];
        let err = match self.client.transact_write_items().set_transact_items(Some(writes)).send().await {
            Ok(_) => return Ok(Claim::Won),
            Err(err) => err,
        };
        if let SdkError::ServiceError(e) = &err
            && let TransactWriteItemsError::TransactionCanceledException(cancelled) = e.err()
        {
            let claim_failed = cancelled
                .cancellation_reasons
                .as_deref()
                .and_then(|r| r.first())
                .is_some_and(|r| r.code.as_deref() == Some("ConditionalCheckFailed"));
            return Ok(if claim_failed { Claim::Taken } else { Claim::Busy });
        }
        Err(AwsError::from_sdk("TransactWriteItems", err).into())
    }

    /// Locks an instance against other replacements for `holder` (a rebalance, a recovery).
    /// `false` when it is not managed or someone else holds it.
    pub async fn lock_instance(
        &self,
        instance_id: &str,
        holder: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let request = self
            .lookup_update(instance_id)
            .update_expression("SET replacing = :holder, replacing_until = :until")
            .condition_expression(LOCK_CONDITION)
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":until", AttributeValue::N((now + lease).timestamp_millis().to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.timestamp_millis().to_string()));
        conditional(request).await
    }

    /// Gives up `holder`'s lock on an instance (nothing when someone else holds it now).
    pub async fn unlock_instance(&self, instance_id: &str, holder: &str) -> Result<(), StoreError> {
        let request = self
            .lookup_update(instance_id)
            .update_expression("REMOVE replacing, replacing_until")
            .condition_expression("replacing = :holder")
            .expression_attribute_values(":holder", s(holder));
        conditional(request).await.map(|_| ())
    }

    fn lookup_update(
        &self,
        instance_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client.update_item().table_name(&self.table).key("pk", s(lookup_pk(instance_id))).key("sk", s(LOOKUP_SK))
    }

    /// Marks a claimed event done, with what was done: later deliveries stand aside for good.
    pub async fn settle(&self, event_id: &str, outcome: &str) -> Result<(), StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .update_expression("SET #state = :done, outcome = :outcome")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":outcome", s(outcome));
        for (name, value) in claim_key(event_id) {
            request = request.key(name, value);
        }
        request.send().await.map_err(|e| AwsError::from_sdk("UpdateItem", e))?;
        Ok(())
    }

    /// Gives a claim and its instance lock back after a failure, so the event's next delivery acts.
    /// With `attempt`, the instance's lookup keeps the token of a launch whose outcome is unknown:
    /// the next delivery sends that launch again instead of a new one.
    pub async fn release(&self, event_id: &str, instance_id: &str, attempt: Option<&str>) -> Result<(), StoreError> {
        let mut request = self.client.delete_item().table_name(&self.table);
        for (name, value) in claim_key(event_id) {
            request = request.key(name, value);
        }
        let mut unlock = self
            .lookup_update(instance_id)
            .condition_expression("replacing = :holder")
            .expression_attribute_values(":holder", s(event_id));
        unlock = match attempt {
            Some(token) => unlock
                .update_expression("REMOVE replacing, replacing_until SET attempt = :attempt")
                .expression_attribute_values(":attempt", s(token)),
            None => unlock.update_expression("REMOVE replacing, replacing_until"),
        };
        let (deleted, unlocked) = tokio::join!(request.send(), conditional(unlock));
        deleted.map_err(|e| AwsError::from_sdk("DeleteItem", e))?;
        unlocked.map(|_| ())
    }

    /// These items, read consistently: 100 keys a `BatchGetItem` (the API's limit), the calls
    /// concurrent.
    async fn batch_get(&self, keys: Vec<Key>) -> Result<Vec<Key>, StoreError> {
        let calls = keys.chunks(100).map(|chunk| async move {
            let mut pending = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(true)
                .build()
                .map_err(build_error("BatchGetItem"))?;
            let mut found = Vec::new();
            // Keys come back unprocessed under throttling: ask again, a bounded number of times.
            for attempt in 0..8u32 {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("BatchGetItem", e))?;
                found.extend(out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default());
                match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    Some(rest) if !rest.keys.is_empty() && attempt < 7 => {
                        pending = rest;
                        tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
                    }
                    Some(rest) if !rest.keys.is_empty() => {
                        return Err(
                            AwsError::malformed("BatchGetItem", "all items after 8 attempts (throttled)").into()
                        );
                    }
                    _ => break,
                }
            }
            Ok::<_, StoreError>(found)
        });
        Ok(futures::future::try_join_all(calls).await?.into_iter().flatten().collect())
    }

    /// Keeps a launch whose outcome is unknown, under its client token, for a day.
    pub async fn keep_attempt<T: Serialize>(
        &self,
        token: &str,
        attempt: &T,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let item = item(attempt, &[("pk", attempt_pk(token)), ("sk", ATTEMPT_SK.to_string())])?;
        self.put_expiring(item, (now + Duration::days(1)).timestamp()).await
    }

    /// Writes an item that the table's TTL deletes after `expires` (epoch seconds).
    async fn put_expiring(&self, mut item: Key, expires: i64) -> Result<(), StoreError> {
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

    /// The kept launches with these tokens (those not found have expired or were never kept).
    pub async fn attempts<T: for<'de> Deserialize<'de>>(&self, tokens: &[String]) -> Result<Vec<T>, StoreError> {
        let mut tokens: Vec<&String> = tokens.iter().collect();
        tokens.sort();
        tokens.dedup();
        let keys = tokens
            .iter()
            .map(|t| HashMap::from([("pk".to_string(), s(attempt_pk(t))), ("sk".to_string(), s(ATTEMPT_SK))]))
            .collect();
        let found = self.batch_get(keys).await?.into_iter().map(parse).collect::<Result<Vec<T>, _>>()?;
        Ok(found)
    }

    /// Forgets an instance's unknown launch once it is known (nothing if another took its place).
    pub async fn forget_attempt(&self, instance_id: &str, token: &str) -> Result<(), StoreError> {
        let request = self
            .lookup_update(instance_id)
            .update_expression("REMOVE attempt")
            .condition_expression("attempt = :attempt")
            .expression_attribute_values(":attempt", s(token));
        conditional(request).await.map(|_| ())
    }

    /// The lookups of these instances and the pool health, in one `BatchGetItem`.
    pub async fn lookups(&self, instance_ids: &[String]) -> Result<(HashMap<String, Lookup>, PoolHealth), StoreError> {
        let mut ids: Vec<&String> = instance_ids.iter().collect();
        ids.sort();
        ids.dedup();
        let key = |pk: String, sk: &str| HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))]);
        let mut keys: Vec<HashMap<String, AttributeValue>> =
            ids.iter().map(|id| key(lookup_pk(id), LOOKUP_SK)).collect();
        keys.push(key(HEALTH_PK.to_string(), HEALTH_SK));
        let found = self.batch_get(keys).await?;
        let mut lookups = HashMap::new();
        let mut health = PoolHealth::default();
        for item in found {
            match item.get("pk") {
                Some(AttributeValue::S(pk)) if pk == HEALTH_PK => {
                    for (name, value) in &item {
                        if let (Some(pool), AttributeValue::N(millis)) = (name.strip_prefix(POOL_PREFIX), value)
                            && let Some(until) = millis.parse().ok().and_then(DateTime::from_timestamp_millis)
                        {
                            health.avoid_until.insert(pool.to_string(), until);
                        }
                    }
                }
                Some(AttributeValue::S(pk)) => {
                    let id = pk.trim_start_matches("INSTANCE#").to_string();
                    lookups.insert(id, parse::<Lookup>(item)?);
                }
                _ => {}
            }
        }
        Ok((lookups, health))
    }

    /// Marks pools to avoid until `until`, and forgets marks that have run out.
    pub async fn avoid_pools(
        &self,
        pools: &[Pool],
        until: DateTime<Utc>,
        known: &PoolHealth,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if pools.is_empty() {
            return Ok(());
        }
        let mut request =
            self.client.update_item().table_name(&self.table).key("pk", s(HEALTH_PK)).key("sk", s(HEALTH_SK));
        let mut sets = Vec::new();
        for (i, pool) in pools.iter().enumerate() {
            request = request
                .expression_attribute_names(format!("#p{i}"), format!("{POOL_PREFIX}{}", pool.key()))
                .expression_attribute_values(format!(":u{i}"), AttributeValue::N(until.timestamp_millis().to_string()));
            sets.push(format!("#p{i} = :u{i}"));
        }
        let marked: Vec<String> = pools.iter().map(Pool::key).collect();
        let mut removes = Vec::new();
        for (i, (key, _)) in known.avoid_until.iter().filter(|(k, t)| **t <= now && !marked.contains(k)).enumerate() {
            request = request.expression_attribute_names(format!("#r{i}"), format!("{POOL_PREFIX}{key}"));
            removes.push(format!("#r{i}"));
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        request.update_expression(expression).send().await.map_err(|e| AwsError::from_sdk("UpdateItem", e))?;
        Ok(())
    }

    fn transaction_error(
        err: SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>,
        members: &[Member],
    ) -> StoreError {
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

    pub async fn member(&self, group: &GroupName, instance_id: &str) -> Result<Option<Member>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(group_pk(group)))
            .key("sk", s(member_sk(instance_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetItem", e))?;
        out.item.map(parse).transpose()
    }

    /// Reads a member, changes it and saves it, reading again when another writer got there
    /// first (a few times). `None` when the group no longer has that member.
    pub async fn update_member(
        &self,
        group: &GroupName,
        instance_id: &str,
        change: impl Fn(&mut Member),
    ) -> Result<Option<Member>, StoreError> {
        let mut last = None;
        for _ in 0..4 {
            let Some(mut member) = self.member(group, instance_id).await? else { return Ok(None) };
            change(&mut member);
            match self.save_member(group, &member).await {
                Ok(saved) => return Ok(Some(saved)),
                Err(StoreError::Conflict(m)) => last = Some(StoreError::Conflict(m)),
                Err(other) => return Err(other),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Conflict(format!("member {instance_id} of group {group}"))))
    }

    /// What spotkeeper knows of a volume it grows.
    pub async fn volume(&self, volume_id: &str) -> Result<Option<VolumeRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("VOLUME#{volume_id}")))
            .key("sk", s("VOLUME"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetItem", e))?;
        out.item.map(parse).transpose()
    }

    /// Every volume record (to find the one an SSM command belongs to).
    pub async fn volumes(&self) -> Result<Vec<VolumeRecord>, StoreError> {
        self.query_index("VOLUMES").await
    }

    /// Saves a volume record if nobody changed it since it was read (a new one: if none exists);
    /// returns it at its new version. Of two growths racing on one volume, one is recorded.
    pub async fn save_volume(&self, record: &VolumeRecord) -> Result<VolumeRecord, StoreError> {
        let next = VolumeRecord { version: record.version + 1, ..record.clone() };
        let item = item(
            &next,
            &[
                ("pk", format!("VOLUME#{}", record.volume_id)),
                ("sk", "VOLUME".to_string()),
                ("gsi1pk", "VOLUMES".to_string()),
                ("gsi1sk", record.volume_id.clone()),
            ],
        )?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR version = :expected")
            .expression_attribute_values(":expected", version_value(record.version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(next),
            Err(SdkError::ServiceError(e)) if is_conditional_failure(e.err()) => Err(StoreError::Conflict(format!(
                "volume {} (version {}) was changed",
                record.volume_id, record.version
            ))),
            Err(e) => Err(AwsError::from_sdk("PutItem", e).into()),
        }
    }

    /// Adds a stretch of usage to a group's ledger for a day (atomic: concurrent runs add up).
    pub async fn add_usage(
        &self,
        group: &GroupName,
        day: &str,
        usage: &crate::savings::Usage,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("SAVINGS#{group}")))
            .key("sk", s(format!("DAY#{day}")))
            .update_expression("SET #day = :day ADD spot_hours :s, on_demand_hours :o, cost :c, on_demand_cost :d")
            .expression_attribute_names("#day", "day")
            .expression_attribute_values(":day", s(day))
            .expression_attribute_values(":s", AttributeValue::N(usage.spot_hours.to_string()))
            .expression_attribute_values(":o", AttributeValue::N(usage.on_demand_hours.to_string()))
            .expression_attribute_values(":c", AttributeValue::N(usage.cost.to_string()))
            .expression_attribute_values(":d", AttributeValue::N(usage.on_demand_cost.to_string()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateItem", e))?;
        Ok(())
    }

    /// Counts an interruption or a fallback in a group's ledger for a day.
    pub async fn count(&self, group: &GroupName, day: &str, what: Counted, by: u64) -> Result<(), StoreError> {
        let field = match what {
            Counted::Interruption => "interruptions",
            Counted::Fallback => "fallbacks",
        };
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("SAVINGS#{group}")))
            .key("sk", s(format!("DAY#{day}")))
            .update_expression(format!("SET #day = :day ADD {field} :by"))
            .expression_attribute_names("#day", "day")
            .expression_attribute_values(":day", s(day))
            .expression_attribute_values(":by", AttributeValue::N(by.to_string()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateItem", e))?;
        Ok(())
    }

    /// A group's ledger from one day to another (inclusive), in day order.
    pub async fn ledger(
        &self,
        group: &GroupName,
        from: &str,
        to: &str,
    ) -> Result<Vec<crate::savings::LedgerDay>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(format!("SAVINGS#{group}")))
            .expression_attribute_values(":from", s(format!("DAY#{from}")))
            .expression_attribute_values(":to", s(format!("DAY#{to}")))
            .into_paginator()
            .items()
            .send();
        let mut days = Vec::new();
        while let Some(item) = pages.next().await {
            days.push(parse(item.map_err(|e| AwsError::from_sdk("Query", e))?)?);
        }
        Ok(days)
    }

    /// A cached On-Demand price, if one was stored today.
    pub async fn cached_price(&self, region: &str, instance_type: &str, day: &str) -> Result<Option<f64>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("PRICE#on-demand"))
            .key("sk", s(format!("{region}#{instance_type}")))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetItem", e))?;
        let item = out.item.unwrap_or_default();
        let fresh = matches!(item.get("day"), Some(AttributeValue::S(d)) if d == day);
        Ok(match item.get("price") {
            Some(AttributeValue::N(price)) if fresh => price.parse().ok(),
            _ => None,
        })
    }

    /// Caches an On-Demand price for the day.
    pub async fn cache_price(
        &self,
        region: &str,
        instance_type: &str,
        day: &str,
        price: f64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("PRICE#on-demand"))
            .item("sk", s(format!("{region}#{instance_type}")))
            .item("day", s(day))
            .item("price", AttributeValue::N(price.to_string()))
            .item(TTL_ATTRIBUTE, AttributeValue::N((now + Duration::days(7)).timestamp().to_string()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutItem", e))?;
        Ok(())
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
        let requests: Vec<WriteRequest> =
            requests.into_iter().collect::<Result<_, _>>().map_err(build_error("BatchWriteItem"))?;
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
