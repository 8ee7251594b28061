//! Groups: create, change (with the configuration snapshot their members' lookups carry), list
//! and forget; and the queries other item kinds list by.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, Put, TransactWriteItem, WriteRequest};
use serde::Deserialize;

use super::keys::{GROUP_SK, INDEX, LOOKUP_SK, group_pk, lookup_pk, member_sk, s};
use super::write::{build_error, is_conditional_failure, item, parse, version_value};
use super::{Store, StoreError};
use crate::adapters::aws::AwsError;
use crate::domain::{Group, GroupName, Member};

impl Store {
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

    pub(super) async fn query_index<T: for<'de> Deserialize<'de>>(
        &self,
        partition: &str,
    ) -> Result<Vec<T>, StoreError> {
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

    pub(super) async fn query_partition<T: for<'de> Deserialize<'de>>(
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
}
