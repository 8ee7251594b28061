//! Incoming events: a bare EventBridge event (as `cargo lambda invoke` sends it) or an SQS batch
//! of them (as deployed), with partial batch failures so one bad message never re-runs a batch.

use std::future::Future;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::domain::{InstanceId, InstanceState};
use crate::runtime::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EventError {
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("unexpected event {detail_type:?} from {origin:?}: this function handles {expected} events")]
    Unexpected { detail_type: String, origin: String, expected: String },
}

/// An EventBridge event whose detail is `D`.
pub type Event<D> = EventBridgeEvent<D>;

/// `EC2 Instance State-change Notification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStateChange {
    #[serde(rename = "instance-id")]
    pub instance_id: InstanceId,
    /// An unknown state makes the event malformed: acknowledged, counted, nothing changed.
    pub state: InstanceState,
}

pub const INSTANCE_STATE_CHANGE: &str = "EC2 Instance State-change Notification";

/// `EC2 Spot Instance Interruption Warning`: two minutes' notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpotInterruptionWarning {
    #[serde(rename = "instance-id")]
    pub instance_id: InstanceId,
    /// `terminate`, `stop` or `hibernate`.
    #[serde(rename = "instance-action")]
    pub instance_action: String,
}

pub const SPOT_INTERRUPTION_WARNING: &str = "EC2 Spot Instance Interruption Warning";

/// `EC2 Instance Rebalance Recommendation`: a Spot instance is at elevated risk of interruption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalanceRecommendation {
    #[serde(rename = "instance-id")]
    pub instance_id: InstanceId,
}

pub const REBALANCE_RECOMMENDATION: &str = "EC2 Instance Rebalance Recommendation";

/// What `node-drain` reads: an interruption warning or a rebalance recommendation (the event's
/// `detail-type` tells which); both name the instance, the warning also its action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    #[serde(rename = "instance-id")]
    pub instance_id: InstanceId,
}

/// The detail-types `node-drain` takes.
pub const NODE_EVENTS: &[&str] = &[SPOT_INTERRUPTION_WARNING, REBALANCE_RECOMMENDATION];

/// `EC2 Instance Launch Unsuccessful` from Auto Scaling: the group could not launch an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchUnsuccessful {
    #[serde(rename = "AutoScalingGroupName")]
    pub asg_name: String,
    #[serde(rename = "StatusMessage", default)]
    pub status_message: String,
    #[serde(rename = "StatusCode", default)]
    pub status_code: String,
}

pub const LAUNCH_UNSUCCESSFUL: &str = "EC2 Instance Launch Unsuccessful";
/// The EventBridge schedule's event.
pub const SCHEDULED_EVENT: &str = "Scheduled Event";

/// `CloudWatch Alarm State Change`: the part spotkeeper reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmStateChange {
    #[serde(rename = "alarmName")]
    pub alarm_name: String,
    pub state: AlarmState,
    #[serde(default)]
    pub configuration: AlarmConfiguration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmState {
    pub value: String,
    #[serde(rename = "reasonData", default, skip_serializing_if = "Option::is_none")]
    pub reason_data: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlarmConfiguration {
    #[serde(default)]
    pub metrics: Vec<AlarmMetric>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmMetric {
    #[serde(rename = "metricStat", default, skip_serializing_if = "Option::is_none")]
    pub metric_stat: Option<MetricStat>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricStat {
    pub metric: Metric,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    #[serde(default)]
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub dimensions: std::collections::BTreeMap<String, String>,
}

impl AlarmStateChange {
    /// The disk metric the alarm watches (`disk_used_percent` of the CloudWatch agent), if any.
    pub fn disk_metric(&self) -> Option<&Metric> {
        self.configuration
            .metrics
            .iter()
            .filter_map(|m| m.metric_stat.as_ref())
            .map(|s| &s.metric)
            .find(|m| m.name == "disk_used_percent")
    }

    /// The latest value the alarm saw (from its reason data), if it says.
    pub fn latest_value(&self) -> Option<f64> {
        let data: Value = serde_json::from_str(self.state.reason_data.as_deref()?).ok()?;
        data.get("recentDatapoints")?.as_array()?.last()?.as_f64()
    }
}

pub const ALARM_STATE_CHANGE: &str = "CloudWatch Alarm State Change";

/// `EBS Volume Notification` (a `modifyVolume` result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeNotification {
    pub event: String,
    pub result: String,
    #[serde(default)]
    pub cause: String,
}

pub const VOLUME_NOTIFICATION: &str = "EBS Volume Notification";

/// `EC2 Command Invocation Status-change Notification` from Systems Manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStatus {
    #[serde(rename = "command-id")]
    pub command_id: String,
    #[serde(rename = "instance-id", default)]
    pub instance_id: String,
    pub status: String,
}

pub const COMMAND_STATUS: &str = "EC2 Command Invocation Status-change Notification";

/// The error for an event a function does not handle (for functions that take several kinds).
pub fn unexpected(payload: &Value, expected: &'static str) -> EventError {
    EventError::Unexpected {
        detail_type: detail_type(payload).unwrap_or_else(|| "(none)".to_string()),
        origin: payload.get("source").and_then(Value::as_str).unwrap_or("(none)").to_string(),
        expected: format!("{expected:?}"),
    }
}

/// The `detail-type` of an event (or of the first message of an SQS batch), to pick a handler.
pub fn detail_type(payload: &Value) -> Option<String> {
    let event = match payload.get("Records").and_then(|r| r.get(0)).and_then(|r| r.get("body")).and_then(Value::as_str)
    {
        Some(body) => serde_json::from_str(body).ok()?,
        None => payload.clone(),
    };
    event.get("detail-type").and_then(Value::as_str).map(str::to_string)
}

/// Reads one EventBridge event of the expected detail-type.
pub fn parse<D: Serialize + DeserializeOwned>(value: Value, expected: &'static str) -> Result<Event<D>, EventError> {
    parse_any(value, &[expected])
}

/// Reads one EventBridge event of one of the `accepted` detail-types.
pub fn parse_any<D: Serialize + DeserializeOwned>(value: Value, accepted: &[&str]) -> Result<Event<D>, EventError> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(rename = "detail-type")]
        detail_type: String,
        source: String,
    }
    let head: Head = serde_json::from_value(value.clone())
        .map_err(|e| EventError::Malformed(format!("not an EventBridge event ({e})")))?;
    if !accepted.contains(&head.detail_type.as_str()) {
        let expected = accepted.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(" or ");
        return Err(EventError::Unexpected { detail_type: head.detail_type, origin: head.source, expected });
    }
    let kind = head.detail_type;
    let event: Event<D> = serde_path_to_error::deserialize(value)
        .map_err(|e| EventError::Malformed(format!("{kind} event: {} at {}", e.inner(), e.path())))?;
    if event.id.as_deref().is_none_or(str::is_empty) {
        return Err(EventError::Malformed(format!("{kind} event has no id")));
    }
    Ok(event)
}

/// One message of a batch: its id (none for a bare event) and its event, or why it could not be read.
pub type Item<D> = (Option<String>, Result<Event<D>, EventError>);

/// What arrived in one invocation: a bare event, or the messages of an SQS batch.
#[derive(Debug)]
pub struct Batch<D: Serialize + DeserializeOwned> {
    pub items: Vec<Item<D>>,
}

impl<D: Serialize + DeserializeOwned> Batch<D> {
    /// Reads a bare event or an SQS batch; an unreadable message fails alone, not the batch.
    pub fn open(payload: Value, expected: &'static str) -> Result<Self, EventError> {
        Self::open_any(payload, &[expected])
    }

    /// As [`Batch::open`], for a function that takes events of several detail-types.
    pub fn open_any(payload: Value, accepted: &[&str]) -> Result<Self, EventError> {
        if payload.get("Records").is_none() {
            return Ok(Self { items: vec![(None, parse_any(payload, accepted))] });
        }
        let batch: SqsEvent =
            serde_json::from_value(payload).map_err(|e| EventError::Malformed(format!("not an SQS batch ({e})")))?;
        let items = batch
            .records
            .into_iter()
            .map(|record| {
                let event = record
                    .body
                    .ok_or_else(|| EventError::Malformed("SQS message has no body".into()))
                    .and_then(|body| {
                        serde_json::from_str::<Value>(&body)
                            .map_err(|e| EventError::Malformed(format!("SQS message body is not JSON ({e})")))
                    })
                    .and_then(|value| parse_any(value, accepted));
                (Some(record.message_id.unwrap_or_default()), event)
            })
            .collect();
        Ok(Self { items })
    }
}

/// The answer to a batch: for SQS, the messages that failed and may succeed later (so only they
/// come back; a message that can never succeed is logged, counted as `MalformedEvents` and
/// acknowledged); for a bare event, its result or its error.
pub fn respond(results: Vec<(Option<String>, Result<Value, Error>)>) -> Result<Value, Error> {
    let mut response = SqsBatchResponse::default();
    let mut bare = None;
    for (id, outcome) in results {
        if let Err(err) = &outcome
            && !err.is_retryable()
        {
            metrics::counter!("MalformedEvents").increment(1);
            let message_id = id.as_deref().unwrap_or("(bare event)");
            tracing::warn!(message_id, error = %err, "event refused for good: acknowledged, not delivered again");
        }
        match (id, outcome) {
            (None, outcome) => bare = Some(outcome),
            (Some(id), Err(err)) if err.is_retryable() => {
                tracing::error!(message_id = %id, error = %err, "message failed; SQS will deliver it again");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
            (Some(_), _) => {}
        }
    }
    match bare {
        Some(outcome) => outcome,
        None => serde_json::to_value(response).map_err(|e| EventError::Malformed(e.to_string()).into()),
    }
}

/// The answer to a batch, as [`respond`], for a workflow that answers its messages in its own
/// outcome type beside those the intake answered.
pub fn respond_typed<A: Serialize, T: Serialize>(
    answered: Vec<(Option<String>, Result<A, Error>)>,
    handled: Vec<(Option<String>, Result<T, Error>)>,
) -> Result<Value, Error> {
    respond(answered.into_iter().map(serialized).chain(handled.into_iter().map(serialized)).collect())
}

/// The answer to a batch whose every message a workflow answered in its outcome type.
pub fn respond_outcomes<T: Serialize>(handled: Vec<(Option<String>, Result<T, Error>)>) -> Result<Value, Error> {
    respond(handled.into_iter().map(serialized).collect())
}

fn serialized<T: Serialize>(
    (id, outcome): (Option<String>, Result<T, Error>),
) -> (Option<String>, Result<Value, Error>) {
    (id, outcome.and_then(|o| serde_json::to_value(o).map_err(Error::Outcome)))
}

/// Runs `handle` on each event of the payload, concurrently, and answers as [`respond`] does.
pub async fn dispatch<D, T, F, Fut>(payload: Value, expected: &'static str, handle: F) -> Result<Value, Error>
where
    D: Serialize + DeserializeOwned,
    T: Serialize,
    F: Fn(Event<D>) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let batch = Batch::open(payload, expected)?;
    let handle = &handle;
    let results = futures::future::join_all(batch.items.into_iter().map(|(id, event)| async move {
        let outcome = match event {
            Ok(event) => handle(event).await,
            Err(err) => Err(err.into()),
        };
        serialized((id, outcome))
    }))
    .await;
    respond(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state_change(id: &str) -> Value {
        json!({
            "version": "0", "id": id, "detail-type": INSTANCE_STATE_CHANGE, "source": "aws.ec2",
            "account": "123456789012", "time": "2026-11-21T06:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"],
            "detail": {"instance-id": "i-0abc1234", "state": "running"}
        })
    }

    #[test]
    fn parses_a_state_change() {
        let event: Event<InstanceStateChange> = parse(state_change("e-1"), INSTANCE_STATE_CHANGE).unwrap();
        assert_eq!(event.detail.instance_id.as_str(), "i-0abc1234");
        assert_eq!(event.detail.state, InstanceState::Running);
    }

    #[test]
    fn refuses_other_detail_types_and_missing_fields() {
        let mut other = state_change("e-1");
        other["detail-type"] = json!("EC2 Spot Instance Interruption Warning");
        assert!(matches!(
            parse::<InstanceStateChange>(other, INSTANCE_STATE_CHANGE),
            Err(EventError::Unexpected { .. })
        ));
        let mut missing = state_change("e-1");
        missing["detail"] = json!({"state": "running"});
        let err = parse::<InstanceStateChange>(missing, INSTANCE_STATE_CHANGE).unwrap_err();
        assert!(err.to_string().contains("instance-id"), "{err}");
    }

    #[test]
    fn refuses_instance_ids_of_any_other_shape() {
        let long = format!("i-{}", "0".repeat(200_000));
        for bad in ["not-an-instance-id; DROP TABLE", "../../etc/passwd", "vol-0123abcd", "", long.as_str()] {
            let mut event = state_change("e-1");
            event["detail"]["instance-id"] = json!(bad);
            let err = parse::<InstanceStateChange>(event, INSTANCE_STATE_CHANGE).unwrap_err();
            assert!(matches!(err, EventError::Malformed(_)), "{err}");
            assert!(err.to_string().contains("not an EC2 instance id") && err.to_string().len() < 300, "{err}");
        }
    }

    #[test]
    fn refuses_states_ec2_does_not_have() {
        for bad in ["rebooting", "Running", "", "stopped; rm -rf /"] {
            let mut event = state_change("e-1");
            event["detail"]["state"] = json!(bad);
            let err = parse::<InstanceStateChange>(event, INSTANCE_STATE_CHANGE).unwrap_err();
            assert!(matches!(err, EventError::Malformed(_)), "{bad}: {err}");
            assert!(err.to_string().contains("detail.state"), "says where: {err}");
        }
    }

    #[tokio::test]
    async fn a_batch_reports_only_its_bad_messages() {
        let batch = json!({"Records": [
            {"messageId": "m-good", "body": state_change("e-1").to_string()},
            {"messageId": "m-bad", "body": "{not json"},
        ]});
        let out = dispatch(batch, INSTANCE_STATE_CHANGE, |e: Event<InstanceStateChange>| async move {
            Ok(json!({"instance": e.detail.instance_id}))
        })
        .await
        .unwrap();
        assert_eq!(out, json!({"batchItemFailures": []}), "a message that can never succeed is not retried");
    }

    #[test]
    fn only_failures_that_may_pass_later_come_back() {
        let results = vec![
            (Some("m-ok".to_string()), Ok(json!({}))),
            (Some("m-malformed".to_string()), Err(EventError::Malformed("no id".into()).into())),
            (Some("m-invalid".to_string()), Err(Error::Invalid("bad value".into()))),
            (Some("m-throttled".to_string()), Err(Error::NotLaunched { errors: "throttled".into() })),
        ];
        assert_eq!(respond(results).unwrap(), json!({"batchItemFailures": [{"itemIdentifier": "m-throttled"}]}));
        let bare = respond(vec![(None, Err(EventError::Malformed("no id".into()).into()))]);
        assert!(matches!(bare, Err(Error::Event(_))), "a bare event's invoker still hears why");
    }
}

/// Bad input, generated: parsing never panics, and every refusal says what is wrong.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// The field names events use, mixed into the generated JSON.
    const KEYS: &[&str] = &[
        "detail-type",
        "detail",
        "id",
        "source",
        "time",
        "Records",
        "body",
        "messageId",
        "instance-id",
        "instance-action",
    ];

    fn json() -> impl Strategy<Value = Value> {
        crate::fixtures::json(KEYS, &[])
    }

    fn explained(err: &EventError) -> bool {
        !err.to_string().trim().is_empty()
    }

    proptest! {
        #![proptest_config(crate::fixtures::proptest_config())]

        #[test]
        fn bare_events_never_panic(value in json()) {
            if let Err(err) = parse::<SpotInterruptionWarning>(value.clone(), SPOT_INTERRUPTION_WARNING) {
                prop_assert!(explained(&err));
            }
            if let Err(err) = parse::<InstanceStateChange>(value, INSTANCE_STATE_CHANGE) {
                prop_assert!(explained(&err));
            }
        }

        #[test]
        fn sqs_batches_never_panic(bodies in prop::collection::vec(prop_oneof![json().prop_map(|v| v.to_string()), ".{0,80}"], 0..10)) {
            let records: Vec<Value> = bodies.iter().enumerate().map(|(i, b)| serde_json::json!({"messageId": format!("m-{i}"), "body": b})).collect();
            match Batch::<SpotInterruptionWarning>::open(serde_json::json!({"Records": records}), SPOT_INTERRUPTION_WARNING) {
                Ok(batch) => {
                    prop_assert_eq!(batch.items.len(), bodies.len());
                    for (_, item) in &batch.items {
                        if let Err(err) = item {
                            prop_assert!(explained(err));
                        }
                    }
                }
                Err(err) => prop_assert!(explained(&err)),
            }
        }

        #[test]
        fn sqs_shaped_garbage_never_panics(value in json()) {
            let wrapped = serde_json::json!({"Records": value});
            if let Err(err) = Batch::<RebalanceRecommendation>::open(wrapped, REBALANCE_RECOMMENDATION) {
                prop_assert!(explained(&err));
            }
        }
    }
}
