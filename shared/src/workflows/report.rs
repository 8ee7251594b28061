//! What a request did: history entries and alerts, collected while it runs and written and sent
//! once at its end — history never sits between two AWS calls, and alerts follow the action:
//! SNS, Slack and the groups' webhooks, a flood of one kind folded into a digest. A failed alert
//! is logged (or recorded, for webhooks), never a failed action.

use std::future::Future;

use serde_json::json;

use crate::adapters::notify::{self, Alert};
use crate::adapters::store::HistoryEntry;
use crate::adapters::webhooks::{self, Delivery};
use crate::domain::{Deadline, GroupName, HistoryKind, Webhook};
use crate::runtime::Deps;
use crate::runtime::clock::SharedClock;

#[derive(Debug)]
pub struct Report {
    clock: SharedClock,
    entries: Vec<(GroupName, HistoryEntry)>,
    alerts: Vec<Alert>,
}

impl Report {
    pub fn new(deps: &Deps) -> Self {
        Self { clock: deps.clock.clone(), entries: Vec::new(), alerts: Vec::new() }
    }

    /// Notes what happened to a group (and one of its instances), at the clock's now.
    pub fn note(
        &mut self,
        group: &GroupName,
        instance_id: Option<&str>,
        kind: HistoryKind,
        message: impl Into<String>,
    ) {
        let entry = HistoryEntry {
            at: self.clock.now(),
            kind: kind.as_str().to_string(),
            instance_id: instance_id.map(str::to_string),
            message: message.into(),
        };
        self.entries.push((group.clone(), entry));
    }

    pub fn alert(&mut self, alert: Alert) {
        self.alerts.push(alert);
    }

    /// Takes in what a part of the request (run beside the others) reported.
    pub fn extend(&mut self, part: Report) {
        self.entries.extend(part.entries);
        self.alerts.extend(part.alerts);
    }

    /// Writes the history and sends the alerts, once, within what is left of the invocation.
    /// A failure here is logged, never a failed request: the action is done.
    pub async fn send(self, deps: &Deps, deadline: Deadline) {
        let Self { entries, alerts, .. } = self;
        let work = async { tokio::join!(write(deps, &entries), alert(deps, &alerts)) };
        within(deadline, work, entries.len(), alerts.len()).await;
    }
}

/// Runs one request's work with a report of its own, then sends the report, whatever the outcome.
pub async fn reported<T>(deps: &Deps, deadline: Deadline, work: impl AsyncFnOnce(&mut Report) -> T) -> T {
    let mut report = Report::new(deps);
    let outcome = work(&mut report).await;
    report.send(deps, deadline).await;
    outcome
}

/// Writes history entries, each logged as it goes.
async fn write(deps: &Deps, entries: &[(GroupName, HistoryEntry)]) {
    let writes = entries.iter().map(|(group, entry)| async move {
        tracing::info!(group = %group, instance_id = entry.instance_id.as_deref(), kind = %entry.kind, "{}", entry.message);
        if let Err(err) = deps.store.record(group, entry).await {
            tracing::error!(group = %group, error = %err, "could not write history");
        }
    });
    futures::future::join_all(writes).await;
}

/// Runs the report's work until the deadline; what is cut short is said in the log.
async fn within(deadline: Deadline, work: impl Future, entries: usize, alerts: usize) {
    if tokio::time::timeout(deadline.to_end(), work).await.is_err() {
        tracing::error!(entries, alerts, "the invocation's time ran out before its history and alerts were all out");
    }
}

/// Sends the alerts everywhere they go.
async fn alert(deps: &Deps, alerts: &[Alert]) {
    let alerts = notify::digest(alerts, notify::DIGEST_OVER);
    tokio::join!(deps.notifier.send(&alerts), to_webhooks(deps, &alerts));
}

/// Sends each alert to its group's webhooks that want it, and records each outcome.
async fn to_webhooks(deps: &Deps, alerts: &[Alert]) {
    for alert in alerts {
        let Ok(Some(group)) = deps.store.group(&alert.group).await else { continue };
        let wanted: Vec<&Webhook> = group
            .policy
            .webhooks
            .iter()
            .filter(|w| w.events.is_empty() || w.events.iter().any(|e| e == alert.event.as_str()))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let now = deps.clock.now();
        let facts: serde_json::Map<String, serde_json::Value> =
            alert.facts.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let payload = json!({
            "id": format!("evt_{}", hex::encode(rand::random::<[u8; 12]>())),
            "event": alert.event.as_str(),
            "group": alert.group.as_str(),
            "severity": alert.severity.to_string(),
            "at": now,
            "headline": alert.headline,
            "facts": facts,
        });
        let body = payload.to_string().into_bytes();
        let deliveries = wanted.iter().map(|w| webhooks::deliver(deps.notifier.senders(), w, &body, now));
        let outcomes = futures::future::join_all(deliveries).await;
        let mut entries: Vec<(GroupName, HistoryEntry)> = Vec::new();
        for (webhook, Delivery { delivered, attempts, detail }) in wanted.iter().zip(outcomes) {
            let host = reqwest::Url::parse(&webhook.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            let (kind, verb) = if delivered {
                (HistoryKind::WebhookDelivered, "delivered")
            } else {
                (HistoryKind::WebhookFailed, "not delivered")
            };
            let entry = HistoryEntry {
                at: deps.clock.now(),
                kind: kind.as_str().to_string(),
                instance_id: None,
                message: format!("{} {verb} to {host} after {attempts} attempt(s): {detail}", alert.event),
            };
            entries.push((alert.group.clone(), entry));
        }
        write(deps, &entries).await;
    }
}
