//! The first round for a batch of instance warnings (interruptions, rebalance recommendations):
//! every event's claim with its instance's lock, and every lookup with pool health, sent
//! together — one round of table calls — then each message sorted into what is left to do.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::adapters::store::{Claim, Lookup};
use crate::domain::PoolHealth;
use crate::runtime::event::{Batch, Event};
use crate::runtime::{Deps, Error};

/// A message's answer: its SQS message id (none for a bare event) and its outcome.
pub type Outcome = (Option<String>, Result<Answered, Error>);

/// What the intake answered for a message it did not hand on to the workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Answered {
    /// Another delivery of the same event holds it.
    Duplicate { instance_id: String },
    /// A replacement is already in flight for the instance.
    AlreadyReplacing { instance_id: String },
    /// No group manages the instance.
    Ignored { reason: &'static str },
}

const UNMANAGED: Answered = Answered::Ignored { reason: "no group manages this instance" };

/// What became of a batch's messages: those the intake answered (unreadable, duplicates, foreign
/// instances...) and those the workflow handled, in its own outcome type (serialized at the edge).
#[derive(Debug)]
pub struct Answers<T> {
    pub intake: Vec<Outcome>,
    pub handled: Vec<(Option<String>, Result<T, Error>)>,
}

/// A warning this delivery won, for an instance a group manages.
#[derive(Debug)]
pub struct Claimed<D: Serialize + DeserializeOwned> {
    pub message: Option<String>,
    pub event_id: String,
    pub instance_id: String,
    pub at: DateTime<Utc>,
    pub lookup: Lookup,
    pub event: Event<D>,
}

#[derive(Debug)]
pub struct Intake<D: Serialize + DeserializeOwned> {
    pub claimed: Vec<Claimed<D>>,
    /// Messages already answered: unreadable, duplicates, foreign instances, instances being
    /// replaced already.
    pub outcomes: Vec<Outcome>,
    pub health: PoolHealth,
}

/// Gives a claim and its lock back, so the event's next delivery acts (sending `attempt`, a launch
/// whose outcome is unknown, again).
pub async fn release(deps: &Deps, event_id: &str, instance_id: &str, attempt: Option<&str>) {
    if let Err(err) = deps.store.release(event_id, instance_id, attempt).await {
        tracing::error!(event_id, instance_id, error = %err, "could not release the event's claim; it frees itself when its lease runs out");
    }
}

/// Marks a claimed event done: later deliveries stand aside for good. `true` once it is so.
pub async fn settle(deps: &Deps, event_id: &str, outcome: &str) -> bool {
    match deps.store.settle(event_id, outcome).await {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(event_id, error = %err, "could not mark the event done");
            false
        }
    }
}

pub async fn intake<D: Serialize + DeserializeOwned>(
    deps: &Deps,
    batch: Batch<D>,
    instance_of: impl Fn(&D) -> &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Intake<D> {
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut events = Vec::new();
    for (message, parsed) in batch.items {
        match parsed {
            Ok(event) => events.push((message, event)),
            Err(err) => outcomes.push((message, Err(err.into()))),
        }
    }
    if events.is_empty() {
        return Intake { claimed: Vec::new(), outcomes, health: PoolHealth::default() };
    }
    let ids: Vec<String> = events.iter().map(|(_, e)| instance_of(&e.detail).to_string()).collect();
    let claims = futures::future::join_all(
        events
            .iter()
            .map(|(_, e)| deps.store.claim(e.id.as_deref().unwrap_or_default(), instance_of(&e.detail), now, lease)),
    );
    let (claims, read) = tokio::join!(claims, deps.store.lookups(&ids));
    let (lookups, health): (HashMap<String, Lookup>, PoolHealth) = match read {
        Ok(read) => read,
        Err(err) => {
            let err = Arc::new(err);
            for ((message, event), claim) in events.iter().zip(&claims) {
                if matches!(claim, Ok(Claim::Won)) {
                    release(deps, event.id.as_deref().unwrap_or_default(), instance_of(&event.detail), None).await;
                }
                outcomes.push((message.clone(), Err(Error::TableUnread(err.clone()))));
            }
            return Intake { claimed: Vec::new(), outcomes, health: PoolHealth::default() };
        }
    };
    let mut claimed = Vec::new();
    for ((message, event), claim) in events.into_iter().zip(claims) {
        let instance_id = instance_of(&event.detail).to_string();
        let event_id = event.id.clone().unwrap_or_default();
        let lookup = lookups.get(&instance_id).cloned();
        match (claim, lookup) {
            (Err(err), _) => outcomes.push((message, Err(err.into()))),
            (Ok(Claim::Taken), _) => {
                tracing::info!(instance_id, event_id, "another delivery of this event holds it; nothing to do");
                outcomes.push((message, Ok(Answered::Duplicate { instance_id })));
            }
            (Ok(Claim::Busy), Some(_)) => {
                tracing::info!(
                    instance_id,
                    event_id,
                    "a replacement is already in flight for this instance; nothing to do"
                );
                outcomes.push((message, Ok(Answered::AlreadyReplacing { instance_id })));
            }
            (Ok(Claim::Busy), None) => {
                tracing::debug!(instance_id, event_id, "no group manages this instance; ignored");
                outcomes.push((message, Ok(UNMANAGED)));
            }
            (Ok(Claim::Won), None) => {
                // The group let go of it between the lock and the read: give the claim back.
                release(deps, &event_id, &instance_id, None).await;
                outcomes.push((message, Ok(UNMANAGED)));
            }
            (Ok(Claim::Won), Some(lookup)) => {
                let at = event.time.unwrap_or(now);
                claimed.push(Claimed { message, event_id, instance_id, at, lookup, event });
            }
        }
    }
    Intake { claimed, outcomes, health }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The intake's answers read as the `json!` literals they replace (tests and the demo read them).
    #[test]
    fn answers_read_as_before() {
        let cases = [
            (Answered::Duplicate { instance_id: "i-1".into() }, json!({"action": "duplicate", "instance_id": "i-1"})),
            (
                Answered::AlreadyReplacing { instance_id: "i-1".into() },
                json!({"action": "already-replacing", "instance_id": "i-1"}),
            ),
            (UNMANAGED, json!({"action": "ignored", "reason": "no group manages this instance"})),
        ];
        for (answer, before) in cases {
            assert_eq!(serde_json::to_value(&answer).unwrap(), before, "{answer:?}");
        }
    }
}
