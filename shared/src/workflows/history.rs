//! What a request did, collected while it runs and written to the group's history at the end,
//! so history never sits between two AWS calls.

use crate::adapters::store::HistoryEntry;
use crate::domain::GroupName;
use crate::runtime::Deps;
use crate::runtime::clock::SharedClock;

#[derive(Debug)]
pub struct History {
    entries: Vec<HistoryEntry>,
    clock: SharedClock,
}

impl History {
    pub fn new(deps: &Deps) -> Self {
        Self { entries: Vec::new(), clock: deps.clock.clone() }
    }

    pub fn note(&mut self, instance_id: Option<&str>, kind: &str, message: impl Into<String>) {
        self.entries.push(HistoryEntry {
            at: self.clock.now(),
            kind: kind.to_string(),
            instance_id: instance_id.map(str::to_string),
            message: message.into(),
        });
    }

    /// Writes the entries; a failure here is logged, never a failed request: the action is done.
    pub async fn write(self, deps: &Deps, group: &GroupName) {
        let writes = self.entries.iter().map(|entry| async move {
            tracing::info!(group = %group, instance_id = entry.instance_id.as_deref(), kind = %entry.kind, "{}", entry.message);
            if let Err(err) = deps.store.record(group, entry).await {
                tracing::error!(group = %group, error = %err, "could not write history");
            }
        });
        futures::future::join_all(writes).await;
    }
}
