//! Launches whose outcome is unknown, kept under their client token until they are known.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::keys::{ATTEMPT_SK, attempt_pk, s};
use super::write::{conditional, item, parse};
use super::{Store, StoreError};

impl Store {
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
}
