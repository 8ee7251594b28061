//! Node drains (`DRAIN#<instance>`): one per instance, held by one delivery at a time through a
//! lease it renews while it works, so duplicates stand aside, a redelivery continues a drain
//! whose delivery died, and a warning takes over from a rebalance.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Duration, Utc};

use super::claims::CLAIM_DAYS;
use super::keys::{TTL_ATTRIBUTE, s};
use super::write::{conditional, is_conditional_failure};
use super::{Store, StoreError};
use crate::adapters::aws::AwsError;
use crate::domain::{DrainRecord, DrainState, DrainTally, DrainTrigger, GroupName, InstanceId};

const DRAIN_SK: &str = "DRAIN";

fn drain_pk(instance: &InstanceId) -> String {
    format!("DRAIN#{instance}")
}

/// What claiming a node's drain came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainClaim {
    /// This delivery drains; what an earlier one did, if any, is given back.
    Won(Option<DrainRecord>),
    /// Another delivery holds it, or it is over for this trigger or a stronger one.
    Taken,
}

fn state_name(state: DrainState) -> &'static str {
    match state {
        DrainState::Acting => "acting",
        DrainState::Done => "done",
        DrainState::Failed => "failed",
    }
}

fn millis(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(at.timestamp_millis().to_string())
}

fn tally_value(tally: &DrainTally) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(tally)
        .map_err(|e| StoreError::Corrupt { key: "drain tally".to_string(), reason: e.to_string() })
}

impl Store {
    fn drain_update(
        &self,
        instance: &InstanceId,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client.update_item().table_name(&self.table).key("pk", s(drain_pk(instance))).key("sk", s(DRAIN_SK))
    }

    /// Claims the instance's drain for `holder` until `now + lease`: when there is none, when
    /// the one there is of a weaker trigger (a rebalance's, taken over by a warning), or when it
    /// is this trigger's, unfinished, and its holder's lease ran out.
    pub async fn claim_drain(
        &self,
        instance: &InstanceId,
        group: &GroupName,
        trigger: DrainTrigger,
        holder: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<DrainClaim, StoreError> {
        let request = self
            .drain_update(instance)
            .update_expression(
                "SET #rank = :rank, #state = :acting, holder = :holder, lease_until = :until, #group = :group, #ttl = :ttl",
            )
            .condition_expression(
                "attribute_not_exists(pk) OR #rank < :rank \
                 OR (#rank = :rank AND #state = :acting \
                     AND (attribute_not_exists(holder) OR lease_until < :now OR holder = :holder))",
            )
            .expression_attribute_names("#rank", "rank")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#group", "group")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":rank", AttributeValue::N(trigger.rank().to_string()))
            .expression_attribute_values(":acting", s(state_name(DrainState::Acting)))
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":until", millis(now + lease))
            .expression_attribute_values(":now", millis(now))
            .expression_attribute_values(":group", s(group.as_str()))
            .expression_attribute_values(
                ":ttl",
                AttributeValue::N((now + Duration::days(CLAIM_DAYS)).timestamp().to_string()),
            )
            .return_values(ReturnValue::AllOld);
        match request.send().await {
            Ok(answer) => Ok(DrainClaim::Won(answer.attributes.map(|item| record(instance, &item)).transpose()?)),
            Err(SdkError::ServiceError(e)) if is_conditional_failure(e.err()) => Ok(DrainClaim::Taken),
            Err(e) => Err(AwsError::from_sdk("UpdateItem", e).into()),
        }
    }

    /// Keeps the drain for `holder` until `until` and saves its tally; `false` when another
    /// delivery (a warning after this rebalance) has taken it over.
    pub async fn renew_drain(
        &self,
        instance: &InstanceId,
        holder: &str,
        until: DateTime<Utc>,
        tally: &DrainTally,
    ) -> Result<bool, StoreError> {
        let request = self
            .drain_update(instance)
            .update_expression("SET lease_until = :until, tally = :tally")
            .condition_expression("holder = :holder")
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":until", millis(until))
            .expression_attribute_values(":tally", tally_value(tally)?);
        conditional(request).await
    }

    /// Ends `holder`'s hold: `Done` or `Failed` for good, or `Acting` with no lease, so the next
    /// delivery continues at once. `false` when another delivery had taken it over.
    pub async fn end_drain(
        &self,
        instance: &InstanceId,
        holder: &str,
        state: DrainState,
        tally: &DrainTally,
    ) -> Result<bool, StoreError> {
        let request = self
            .drain_update(instance)
            .update_expression("SET #state = :state, tally = :tally REMOVE holder, lease_until")
            .condition_expression("holder = :holder")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":state", s(state_name(state)))
            .expression_attribute_values(":tally", tally_value(tally)?);
        conditional(request).await
    }

    /// The instance's drain, if it had one.
    pub async fn drain(&self, instance: &InstanceId) -> Result<Option<DrainRecord>, StoreError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(drain_pk(instance)))
            .key("sk", s(DRAIN_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetItem", e))?;
        answer.item.map(|item| record(instance, &item)).transpose()
    }
}

/// A drain item read back.
fn record(instance: &InstanceId, item: &HashMap<String, AttributeValue>) -> Result<DrainRecord, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt { key: drain_pk(instance), reason: reason.to_string() };
    let trigger = item
        .get("rank")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<u8>().ok())
        .and_then(DrainTrigger::from_rank)
        .ok_or_else(|| corrupt("no trigger rank"))?;
    let state = match item.get("state").and_then(|v| v.as_s().ok()).map(String::as_str) {
        Some("acting") => DrainState::Acting,
        Some("done") => DrainState::Done,
        Some("failed") => DrainState::Failed,
        _ => return Err(corrupt("no state")),
    };
    let tally = match item.get("tally") {
        Some(value) => serde_dynamo::from_attribute_value(value.clone()).map_err(|e| corrupt(&e.to_string()))?,
        None => DrainTally::default(),
    };
    Ok(DrainRecord { instance: instance.clone(), trigger, state, tally })
}
