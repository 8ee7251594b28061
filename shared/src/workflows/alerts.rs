//! Alerts go out after the action: SNS, Slack and the groups' webhooks, a flood of one kind folded
//! into a digest. A failed alert is logged (or recorded, for webhooks), never a failed action.

use serde_json::json;

use crate::adapters::notify::{self, Alert};
use crate::adapters::webhooks::{self, Delivery};
use crate::domain::Webhook;
use crate::runtime::Deps;
use crate::workflows::history::History;

/// Sends the alerts everywhere they go.
pub async fn send(deps: &Deps, alerts: &[Alert]) {
    let alerts = notify::digest(alerts, notify::DIGEST_OVER);
    tokio::join!(deps.notifier.send(&alerts), to_webhooks(deps, &alerts));
}

/// Sends each alert to its group's webhooks that want it, and records each outcome.
async fn to_webhooks(deps: &Deps, alerts: &[Alert]) {
    for alert in alerts {
        let Ok(name) = crate::domain::GroupName::try_from(alert.group.clone()) else { continue };
        let Ok(Some(group)) = deps.store.group(&name).await else { continue };
        let wanted: Vec<&Webhook> =
            group.policy.webhooks.iter().filter(|w| w.events.is_empty() || w.events.contains(&alert.event)).collect();
        if wanted.is_empty() {
            continue;
        }
        let now = deps.clock.now();
        let facts: serde_json::Map<String, serde_json::Value> =
            alert.facts.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let payload = json!({
            "id": format!("evt_{}", hex::encode(rand::random::<[u8; 12]>())),
            "event": alert.event,
            "group": alert.group,
            "severity": alert.severity.to_string(),
            "at": now,
            "headline": alert.headline,
            "facts": facts,
        });
        let body = payload.to_string().into_bytes();
        let deliveries = wanted.iter().map(|w| webhooks::deliver(deps.notifier.senders(), w, &body, now));
        let outcomes = futures::future::join_all(deliveries).await;
        let mut history = History::new(deps);
        for (webhook, Delivery { delivered, attempts, detail }) in wanted.iter().zip(outcomes) {
            let host = reqwest::Url::parse(&webhook.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            let (kind, verb) =
                if delivered { ("webhook-delivered", "delivered") } else { ("webhook-failed", "not delivered") };
            history.note(None, kind, format!("{} {verb} to {host} after {attempts} attempt(s): {detail}", alert.event));
        }
        history.write(deps, &name).await;
    }
}
