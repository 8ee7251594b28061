//! The savings ledger (a group's usage, interruptions and fallbacks per day) and the cache of
//! On-Demand prices it is priced with.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};

use super::keys::{TTL_ATTRIBUTE, s};
use super::write::parse;
use super::{Store, StoreError};
use crate::adapters::aws::AwsError;
use crate::domain::{Day, GroupName};

/// What a ledger counts besides hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Interruption,
    Fallback,
}

impl Store {
    /// Adds a stretch of usage to a group's ledger for a day (atomic: concurrent runs add up).
    pub async fn add_usage(&self, group: &GroupName, day: Day, usage: &crate::domain::Usage) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("SAVINGS#{group}")))
            .key("sk", s(format!("DAY#{day}")))
            .update_expression("SET #day = :day ADD spot_hours :s, on_demand_hours :o, cost :c, on_demand_cost :d")
            .expression_attribute_names("#day", "day")
            .expression_attribute_values(":day", s(day.to_string()))
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
    pub async fn count(&self, group: &GroupName, day: Day, what: Counted, by: u64) -> Result<(), StoreError> {
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
            .expression_attribute_values(":day", s(day.to_string()))
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
        from: Day,
        to: Day,
    ) -> Result<Vec<crate::domain::LedgerDay>, StoreError> {
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
    pub async fn cached_price(&self, region: &str, instance_type: &str, day: Day) -> Result<Option<f64>, StoreError> {
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
        let fresh = matches!(item.get("day"), Some(AttributeValue::S(d)) if *d == day.to_string());
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
        day: Day,
        price: f64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("PRICE#on-demand"))
            .item("sk", s(format!("{region}#{instance_type}")))
            .item("day", s(day.to_string()))
            .item("price", AttributeValue::N(price.to_string()))
            .item(TTL_ATTRIBUTE, AttributeValue::N((now + Duration::days(7)).timestamp().to_string()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutItem", e))?;
        Ok(())
    }
}
