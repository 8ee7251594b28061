//! Members of a group, each written with its instance → group lookup.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::keys::{LOOKUP_SK, group_pk, lookup_pk, member_sk, s};
use super::lookups::Lookup;
use super::write::{build_error, is_conditional_failure, item, parse, version_value};
use super::{Store, StoreError};
use crate::adapters::aws::AwsError;
use crate::domain::{Group, GroupName, Member};

impl Store {
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
}
