//! Route53: the group's DNS record.

use aws_sdk_route53::Client;
use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};

use super::AwsError;

#[derive(Clone, Debug)]
pub struct Route53 {
    client: Client,
}

impl Route53 {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Whether the hosted zone exists.
    pub async fn zone_exists(&self, zone_id: &str) -> Result<bool, AwsError> {
        match self.client.get_hosted_zone().id(zone_id).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let err = AwsError::from_sdk("GetHostedZone", e);
                if err.is_not_found() { Ok(false) } else { Err(err) }
            }
        }
    }

    /// Points an A record at the given addresses (UPSERT: creates or replaces it).
    pub async fn upsert_a(&self, zone_id: &str, name: &str, ttl: i64, addresses: &[String]) -> Result<(), AwsError> {
        let build = || -> Result<Change, aws_sdk_route53::error::BuildError> {
            let mut set = ResourceRecordSet::builder().name(name).r#type(RrType::A).ttl(ttl);
            for address in addresses {
                set = set.resource_records(ResourceRecord::builder().value(address).build()?);
            }
            Change::builder().action(ChangeAction::Upsert).resource_record_set(set.build()?).build()
        };
        let change = build().map_err(|e| AwsError {
            operation: "ChangeResourceRecordSets",
            code: None,
            message: e.to_string(),
        })?;
        let batch = ChangeBatch::builder()
            .comment("spotkeeper: point the group's record at its running instance")
            .changes(change)
            .build()
            .map_err(|e| AwsError { operation: "ChangeResourceRecordSets", code: None, message: e.to_string() })?;
        self.client
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ChangeResourceRecordSets", e))?;
        Ok(())
    }

    /// The addresses an A record holds now (empty when there is no such record).
    pub async fn a_record(&self, zone_id: &str, name: &str) -> Result<Vec<String>, AwsError> {
        let fqdn = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
        let out = self
            .client
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(&fqdn)
            .start_record_type(RrType::A)
            .max_items(1)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ListResourceRecordSets", e))?;
        Ok(out
            .resource_record_sets
            .into_iter()
            .filter(|set| set.name == fqdn && set.r#type == RrType::A)
            .flat_map(|set| set.resource_records.unwrap_or_default())
            .map(|r| r.value)
            .collect())
    }
}
