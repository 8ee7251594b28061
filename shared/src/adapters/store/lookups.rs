//! Instance lookups (instance → group, with the group's configuration snapshot and the pool)
//! and pool health, read together in one batch.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::keys::{HEALTH_PK, HEALTH_SK, LOOKUP_SK, lookup_pk, s};
use super::write::parse;
use super::{Store, StoreError};
use crate::adapters::aws::AwsError;
pub use crate::domain::Lookup;
use crate::domain::{GroupName, Pool, PoolHealth};

const POOL_PREFIX: &str = "pool:";

impl Store {
    /// An update of an instance's lookup (its lock, its unknown launch).
    pub(super) fn lookup_update(
        &self,
        instance_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client.update_item().table_name(&self.table).key("pk", s(lookup_pk(instance_id))).key("sk", s(LOOKUP_SK))
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
}
