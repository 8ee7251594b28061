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
//! | node drain      | `DRAIN#<instance>` | `DRAIN`                | (TTL `expires_at`)     |
//! | failover        | `WORKLOAD#<cluster>` | `DEPLOYMENT#<ns>/<name>` |                    |
//!
//! The instance lookup carries a snapshot of its group's configuration and the member's pool,
//! and pool health is one item: so the interruption handler reads everything it needs to launch
//! a replacement in one `BatchGetItem`, beside its claim on the event.
//!
//! Every change to an existing item is a conditional write on its `version`: of two writers
//! racing on one item, one wins and the other gets [`StoreError::Conflict`].

mod attempts;
mod claims;
mod drains;
mod groups;
mod history;
mod keys;
mod ledger;
mod lookups;
mod members;
mod volumes;
mod workloads;
mod write;

use aws_sdk_dynamodb::Client;
use thiserror::Error;

use crate::adapters::aws::AwsError;

pub use claims::{CLAIM_DAYS, Claim};
pub use drains::DrainClaim;
pub use history::{HISTORY_DAYS, HistoryEntry};
pub use keys::{INDEX, TTL_ATTRIBUTE};
pub use ledger::Counted;
pub use lookups::Lookup;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0}: someone else changed it first; read it again and retry")]
    Conflict(String),
    #[error("table item {key} cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
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
}
