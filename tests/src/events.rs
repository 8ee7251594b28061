//! The real-shaped sample events of `events/`, with the instance and event ids a test needs.

use serde_json::Value;

use crate::emulator::workspace_root;

/// An event file of `events/`, parsed.
pub fn load(name: &str) -> Value {
    let path = workspace_root().join("events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `EC2 Instance State-change Notification` for `instance_id` reaching `state`, with a fresh id.
pub fn state_change(instance_id: &str, state: &str) -> Value {
    let mut event = load("instance-state-running.json");
    event["id"] = Value::String(format!("{:08x}-test-{instance_id}-{state}", rand_id()));
    event["time"] = Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    event["detail"]["instance-id"] = Value::String(instance_id.to_string());
    event["detail"]["state"] = Value::String(state.to_string());
    event["resources"] = serde_json::json!([format!("arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}")]);
    event
}

fn rand_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) ^ std::process::id()
}

/// An API Gateway (HTTP API, payload 2.0) request for the `api` function, shaped like
/// `events/api-get-groups.json`.
pub fn http(method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Value {
    let mut event = load("api-get-groups.json");
    event["rawPath"] = Value::String(path.to_string());
    event["requestContext"]["http"]["method"] = Value::String(method.to_string());
    event["requestContext"]["http"]["path"] = Value::String(path.to_string());
    let headers = event["headers"].as_object_mut().expect("headers in the fixture");
    headers.remove("authorization");
    if let Some(token) = token {
        headers.insert("authorization".into(), Value::String(format!("Bearer {token}")));
    }
    if let Some(body) = body {
        event["body"] = Value::String(body.to_string());
    }
    event
}

/// `EC2 Spot Instance Interruption Warning` for `instance_id`, with a fresh id.
pub fn spot_warning(instance_id: &str) -> Value {
    let mut event = load("spot-interruption-warning.json");
    event["id"] = Value::String(format!("{:08x}-warning-{instance_id}", rand_id()));
    event["time"] = Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    event["detail"]["instance-id"] = Value::String(instance_id.to_string());
    event["resources"] = serde_json::json!([format!("arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}")]);
    event
}

/// An SQS batch (as the queue delivers it) of these events, message ids `m-0`, `m-1`, ...
pub fn sqs_batch(events: &[Value]) -> Value {
    let messages: Vec<(String, Value)> =
        events.iter().enumerate().map(|(i, e)| (format!("m-{i}"), e.clone())).collect();
    sqs_messages(&messages)
}

/// An SQS batch of these (message id, event) pairs.
pub fn sqs_messages(messages: &[(String, Value)]) -> Value {
    let mut batch = load("sqs-spot-interruption-batch.json");
    let template = batch["Records"][0].clone();
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, event)| {
            let mut record = template.clone();
            record["messageId"] = Value::String(id.clone());
            record["body"] = Value::String(event.to_string());
            record
        })
        .collect();
    batch["Records"] = Value::Array(records);
    batch
}

/// `EC2 Instance Rebalance Recommendation` for `instance_id`, with a fresh id.
pub fn rebalance(instance_id: &str) -> Value {
    let mut event = load("rebalance-recommendation.json");
    event["id"] = Value::String(format!("{:08x}-rebalance-{instance_id}", rand_id()));
    event["time"] = Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    event["detail"]["instance-id"] = Value::String(instance_id.to_string());
    event
}

/// Auto Scaling's `EC2 Instance Launch Unsuccessful` for `asg`, for lack of Spot capacity.
pub fn launch_unsuccessful(asg: &str) -> Value {
    let mut event = load("asg-launch-unsuccessful.json");
    event["id"] = Value::String(format!("{:08x}-launch-failed-{asg}", rand_id()));
    event["detail"]["AutoScalingGroupName"] = Value::String(asg.to_string());
    event
}

/// A `disk_used_percent` alarm on `instance_id`'s `path` going into ALARM at `used` percent.
pub fn disk_alarm(instance_id: &str, path: &str, fstype: &str, used: f64) -> Value {
    let mut event = load("cloudwatch-disk-alarm.json");
    event["id"] = Value::String(format!("{:08x}-alarm-{instance_id}", rand_id()));
    let dimensions = &mut event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"];
    dimensions["InstanceId"] = Value::String(instance_id.to_string());
    dimensions["path"] = Value::String(path.to_string());
    dimensions["fstype"] = Value::String(fstype.to_string());
    event["detail"]["state"]["reasonData"] =
        Value::String(serde_json::json!({"version": "1.0", "queryDate": "2026-11-21T07:20:00.000+0000", "recentDatapoints": [used], "threshold": 80.0}).to_string());
    event
}

/// EBS's `modifyVolume` notification for `volume_id` with `result` (`optimizing`, `completed`).
pub fn volume_modified(volume_id: &str, result: &str) -> Value {
    let mut event = load("ebs-volume-modified.json");
    event["id"] = Value::String(format!("{:08x}-ebs-{volume_id}-{result}", rand_id()));
    event["resources"] = serde_json::json!([format!("arn:aws:ec2:us-east-1:123456789012:volume/{volume_id}")]);
    event["detail"]["result"] = Value::String(result.to_string());
    event
}
