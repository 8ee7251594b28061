//! Opted-in Deployments' failovers (`WORKLOAD#<cluster>` / `DEPLOYMENT#<namespace>/<name>`): one
//! partition per cluster, so the way back sees at once whether another of its Deployments is on
//! its way.

use super::keys::s;
use super::write::{item, parse};
use super::{Store, StoreError};
use crate::adapters::aws::AwsError;
use crate::domain::{ClusterName, WorkloadRecord, WorkloadRef};

const SK_PREFIX: &str = "DEPLOYMENT#";

fn workload_pk(cluster: &ClusterName) -> String {
    format!("WORKLOAD#{cluster}")
}

fn workload_sk(workload: &WorkloadRef) -> String {
    format!("{SK_PREFIX}{workload}")
}

impl Store {
    /// One Deployment's failover, if it has one.
    pub async fn workload(
        &self,
        cluster: &ClusterName,
        workload: &WorkloadRef,
    ) -> Result<Option<WorkloadRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(workload_pk(cluster)))
            .key("sk", s(workload_sk(workload)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetItem", e))?;
        out.item.map(parse).transpose()
    }

    /// Every failover of a cluster's Deployments.
    pub async fn workloads(&self, cluster: &ClusterName) -> Result<Vec<WorkloadRecord>, StoreError> {
        self.query_partition(workload_pk(cluster), SK_PREFIX, false, None).await
    }

    /// Saves a failover if nobody changed it since it was read (a new one: if none exists) and
    /// returns it at its new version; `None` when another writer came first. Every step of a
    /// failover is won this way, so of two deliveries only one patches.
    pub async fn save_workload(
        &self,
        cluster: &ClusterName,
        record: &WorkloadRecord,
    ) -> Result<Option<WorkloadRecord>, StoreError> {
        let next = WorkloadRecord { version: record.version + 1, ..record.clone() };
        let item = item(&next, &[("pk", workload_pk(cluster)), ("sk", workload_sk(&record.workload))])?;
        Ok(self.put_versioned(item, record.version).await?.then_some(next))
    }
}
