//! Records of the volumes spotkeeper grows.

use super::keys::s;
use super::write::{item, parse};
use super::{Store, StoreError};
use crate::adapters::aws::AwsError;
use crate::domain::VolumeRecord;

impl Store {
    /// What spotkeeper knows of a volume it grows.
    pub async fn volume(&self, volume_id: &str) -> Result<Option<VolumeRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("VOLUME#{volume_id}")))
            .key("sk", s("VOLUME"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetItem", e))?;
        out.item.map(parse).transpose()
    }

    /// Every volume record (to find the one an SSM command belongs to).
    pub async fn volumes(&self) -> Result<Vec<VolumeRecord>, StoreError> {
        self.query_index("VOLUMES").await
    }

    /// Saves a volume record if nobody changed it since it was read (a new one: if none exists);
    /// returns it at its new version. Of two growths racing on one volume, one is recorded.
    pub async fn save_volume(&self, record: &VolumeRecord) -> Result<VolumeRecord, StoreError> {
        let next = VolumeRecord { version: record.version + 1, ..record.clone() };
        let item = item(
            &next,
            &[
                ("pk", format!("VOLUME#{}", record.volume_id)),
                ("sk", "VOLUME".to_string()),
                ("gsi1pk", "VOLUMES".to_string()),
                ("gsi1sk", record.volume_id.clone()),
            ],
        )?;
        if self.put_versioned(item, record.version).await? {
            Ok(next)
        } else {
            Err(StoreError::Conflict(format!("volume {} (version {}) was changed", record.volume_id, record.version)))
        }
    }
}
