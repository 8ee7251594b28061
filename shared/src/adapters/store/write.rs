//! What every item kind's reads and writes share: items to and from domain values, conditional
//! writes, batched reads, expiring items.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::keys::{Key, TTL_ATTRIBUTE, s};
use super::{Store, StoreError};
use crate::adapters::aws::AwsError;
use crate::domain::Member;

pub(super) fn build_error(operation: &'static str) -> impl Fn(aws_sdk_dynamodb::error::BuildError) -> AwsError {
    move |e| AwsError { operation, code: None, message: e.to_string() }
}

/// A domain value as a table item under the given keys.
pub(super) fn item<T: Serialize>(
    value: &T,
    keys: &[(&str, String)],
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt {
        key: keys.first().map(|(_, v)| v.clone()).unwrap_or_default(),
        reason: e.to_string(),
    })?;
    for (name, value) in keys {
        item.insert((*name).to_string(), s(value.clone()));
    }
    Ok(item)
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(item: HashMap<String, AttributeValue>) -> Result<T, StoreError> {
    let key = match (item.get("pk"), item.get("sk")) {
        (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => format!("{pk} / {sk}"),
        _ => "(no key)".to_string(),
    };
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt { key, reason: e.to_string() })
}

pub(super) fn version_value(version: u64) -> AttributeValue {
    AttributeValue::N(version.to_string())
}

pub(super) fn is_conditional_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

impl Store {
    /// Puts a versioned item if nobody changed it since it was read at `expected` (a new one: if
    /// none exists): `false` when another writer came first.
    pub(super) async fn put_versioned(&self, item: Key, expected: u64) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR version = :expected")
            .expression_attribute_values(":expected", version_value(expected))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if is_conditional_failure(e.err()) => Ok(false),
            Err(e) => Err(AwsError::from_sdk("PutItem", e).into()),
        }
    }
}

/// Sends a conditional update: `false` when its condition did not hold.
pub(super) async fn conditional(
    request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
) -> Result<bool, StoreError> {
    match request.send().await {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e)) if is_conditional_failure(e.err()) => Ok(false),
        Err(e) => Err(AwsError::from_sdk("UpdateItem", e).into()),
    }
}

impl Store {
    /// These items, read consistently: 100 keys a `BatchGetItem` (the API's limit), the calls
    /// concurrent.
    pub(super) async fn batch_get(&self, keys: Vec<Key>) -> Result<Vec<Key>, StoreError> {
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

    /// Writes an item that the table's TTL deletes after `expires` (epoch seconds).
    pub(super) async fn put_expiring(&self, mut item: Key, expires: i64) -> Result<(), StoreError> {
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

    pub(super) fn transaction_error(
        err: SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>,
        members: &[Member],
    ) -> StoreError {
        if let SdkError::ServiceError(service) = &err
            && let TransactWriteItemsError::TransactionCanceledException(cancelled) = service.err()
        {
            let reasons = cancelled.cancellation_reasons.as_deref().unwrap_or_default();
            // Writes go in pairs (member, lookup), so the failing index names the instance.
            if let Some(index) = reasons.iter().position(|r| r.code.as_deref() == Some("ConditionalCheckFailed")) {
                let instance = members.get(index / 2).map_or("an instance", |m| m.instance_id.as_str());
                return StoreError::Conflict(format!("instance {instance} is already managed by a group"));
            }
        }
        AwsError::from_sdk("TransactWriteItems", err).into()
    }
}
