//! A queue (spot-interruption's, node-drain's) as Lambda's event source mapping drives it, with
//! the settings in template.yaml: the messages in batches of up to `BatchSize`, split among a few
//! pollers whose invocations run at once; the messages a function reports failed (all of a batch
//! whose invocation failed) come back once the visibility timeout has passed — the test clock
//! moves by it — up to `maxReceiveCount` receives, and then go to the dead-letter queue.

use std::collections::HashSet;
use std::future::Future;

use chrono::Duration;
use futures::StreamExt;
use serde_json::Value;

use crate::Harness;
use crate::emulator::workspace_root;

#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub batch_size: usize,
    pub visibility: Duration,
    pub max_receives: u32,
}

impl QueueSettings {
    /// The spot-interruption queue's and event source's settings, from template.yaml.
    pub fn spot_interruption() -> Result<Self, String> {
        Self::of("SpotInterruptionQueue", "SpotInterruptionFunction", "Warnings")
    }

    /// The node-drain queue's and event source's settings, from template.yaml.
    pub fn node_drain() -> Result<Self, String> {
        Self::of("NodeDrainQueue", "NodeDrainFunction", "Drains")
    }

    /// A queue's settings and those of the event source `event` of `function` that reads it.
    fn of(queue: &str, function: &str, event: &str) -> Result<Self, String> {
        let path = workspace_root().join("template.yaml");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let template: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| format!("template.yaml: {e}"))?;
        let resources = &template["Resources"];
        let queue = &resources[queue]["Properties"];
        let source = &resources[function]["Properties"]["Events"][event]["Properties"];
        Ok(Self {
            batch_size: number(&source["BatchSize"], "the warnings' BatchSize")?,
            visibility: Duration::seconds(number(&queue["VisibilityTimeout"], "the queue's VisibilityTimeout")?),
            max_receives: number(&queue["RedrivePolicy"]["maxReceiveCount"], "the queue's maxReceiveCount")?,
        })
    }
}

/// A whole number of the template that fits `T`.
fn number<T: TryFrom<u64>>(v: &serde_yaml::Value, what: &str) -> Result<T, String> {
    v.as_u64().and_then(|n| T::try_from(n).ok()).ok_or_else(|| format!("template.yaml lacks {what}"))
}

/// What the queue saw.
#[derive(Debug, Default)]
pub struct Delivered {
    /// The events that ended in the dead-letter queue.
    pub dead: Vec<Value>,
    pub invocations: usize,
    /// Deliveries of the messages that came back (after a failure).
    pub redeliveries: usize,
}

struct Message {
    id: String,
    event: Value,
    receives: u32,
}

/// Delivers `events` to `handler` until each is done or dead-lettered.
pub async fn deliver<F, Fut>(
    h: &Harness,
    events: Vec<Value>,
    settings: &QueueSettings,
    pollers: usize,
    handler: F,
) -> Delivered
where
    F: Fn(Value) -> Fut,
    Fut: Future<Output = Result<Value, spotkeeper::Error>>,
{
    let mut pending: Vec<Message> = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Message { id: format!("msg-{i}"), event, receives: 0 })
        .collect();
    let mut delivered = Delivered::default();
    while !pending.is_empty() {
        delivered.redeliveries += pending.iter().filter(|m| m.receives > 0).count();
        let count = pending.len().div_ceil(settings.batch_size.max(1)).max(pollers.min(pending.len()));
        let size = pending.len().div_ceil(count);
        let mut batches: Vec<Vec<Message>> = Vec::new();
        for (i, mut message) in pending.drain(..).enumerate() {
            message.receives += 1;
            if i % size == 0 {
                batches.push(Vec::new());
            }
            if let Some(batch) = batches.last_mut() {
                batch.push(message);
            }
        }
        delivered.invocations += batches.len();
        let handler = &handler;
        let done: Vec<(Vec<Message>, Result<Value, spotkeeper::Error>)> = futures::stream::iter(batches)
            .map(|batch| async move {
                let payload: Vec<(String, Value)> = batch.iter().map(|m| (m.id.clone(), m.event.clone())).collect();
                let out = handler(crate::events::sqs_messages(&payload)).await;
                (batch, out)
            })
            .buffer_unordered(pollers.max(1))
            .collect()
            .await;
        for (batch, out) in done {
            let failed: Option<HashSet<String>> = out.ok().map(|answer| {
                answer["batchItemFailures"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
                    .collect()
            });
            for message in batch {
                if failed.as_ref().is_some_and(|f| !f.contains(&message.id)) {
                    continue;
                }
                if message.receives >= settings.max_receives {
                    delivered.dead.push(message.event);
                } else {
                    pending.push(message);
                }
            }
        }
        if !pending.is_empty() {
            h.clock.advance(settings.visibility);
        }
    }
    delivered
}
