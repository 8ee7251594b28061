//! Event claims and instance locks: one delivery acts on an event, one action replaces an
//! instance.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Duration, Utc};

use super::keys::{LOOKUP_SK, TTL_ATTRIBUTE, claim_key, lookup_pk, s};
use super::write::{build_error, conditional};
use super::{Store, StoreError};
use crate::adapters::aws::AwsError;

/// How long an event's claim is remembered: SQS keeps a message at most 14 days.
pub const CLAIM_DAYS: i64 = 14;

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

impl Store {
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
        let Err(err) = self.client.transact_write_items().set_transact_items(Some(writes)).send().await else {
            return Ok(Claim::Won);
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
}
