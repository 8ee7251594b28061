//! `volume-threshold`: grows an EBS volume before its filesystem fills up. A disk-usage alarm
//! going into ALARM asks for the growth; EBS's `modifyVolume` notification says when the
//! filesystem can grow (an SSM command does it); SSM's status says whether it did.

use serde_json::Value;
use spotkeeper::domain::{InstanceId, MountPath, is_ec2_id};
use spotkeeper::event::EventError;
use spotkeeper::event::{
    self, ALARM_STATE_CHANGE, AlarmStateChange, COMMAND_STATUS, CommandStatus, Event, VOLUME_NOTIFICATION,
    VolumeNotification,
};
use spotkeeper::workflows::report::reported;
use spotkeeper::workflows::volume::{self, Filling, Outcome, ignored};
use spotkeeper::{Deadline, Deps, Error};

/// The function's entry: a bare event or an SQS batch of them, of any of its three kinds.
pub async fn handle(deps: &Deps, payload: Value, deadline: Deadline) -> Result<Value, Error> {
    match event::detail_type(&payload).as_deref() {
        Some(ALARM_STATE_CHANGE) => event::dispatch(payload, ALARM_STATE_CHANGE, |e| alarm(deps, e, deadline)).await,
        Some(VOLUME_NOTIFICATION) => event::dispatch(payload, VOLUME_NOTIFICATION, |e| modified(deps, e, deadline)).await,
        Some(COMMAND_STATUS) => event::dispatch(payload, COMMAND_STATUS, |e| command(deps, e, deadline)).await,
        _ => Err(event::unexpected(&payload, "CloudWatch Alarm State Change, EBS Volume Notification or EC2 Command Invocation Status-change Notification").into()),
    }
}

async fn alarm(deps: &Deps, event: Event<AlarmStateChange>, deadline: Deadline) -> Result<Outcome, Error> {
    let alarm = &event.detail;
    if alarm.state.value != "ALARM" {
        return Ok(ignored(format!("the alarm is {}", alarm.state.value)));
    }
    let Some(metric) = alarm.disk_metric() else {
        tracing::debug!(alarm = %alarm.alarm_name, "not a disk_used_percent alarm; ignored");
        return Ok(ignored("not a disk_used_percent alarm"));
    };
    let dimension = |name: &str| {
        metric.dimensions.get(name).cloned().ok_or_else(|| {
            EventError::Malformed(format!(
                "alarm {}: the disk_used_percent metric has no {name} dimension",
                alarm.alarm_name
            ))
        })
    };
    // The dimension becomes a table key and an SSM target: an EC2 instance id or nothing.
    let instance_id = InstanceId::try_from(dimension("InstanceId")?)
        .map_err(|why| EventError::Malformed(format!("alarm {}: InstanceId dimension: {why}", alarm.alarm_name)))?;
    let filling = Filling {
        instance_id: instance_id.into(),
        // A path that cannot be one is refused as before: invalid input, not retried.
        path: MountPath::try_from(dimension("path")?).map_err(Error::Invalid)?,
        used_percent: alarm.latest_value(),
        fstype: metric.dimensions.get("fstype").cloned(),
        source: "alarm",
    };
    reported(deps, deadline, async |report| volume::grow(deps, &filling, report).await).await
}

async fn modified(deps: &Deps, event: Event<VolumeNotification>, deadline: Deadline) -> Result<Outcome, Error> {
    if event.detail.event != "modifyVolume" {
        return Ok(ignored(format!("EBS event {}", event.detail.event)));
    }
    let volume_id = event
        .resources
        .iter()
        .flatten()
        .find_map(|arn| arn.rsplit_once("volume/").map(|(_, id)| id.to_string()))
        .filter(|id| is_ec2_id(id, "vol-"))
        .ok_or_else(|| {
            EventError::Malformed("EBS Volume Notification names no volume (vol-…) in its resources".into())
        })?;
    let result = &event.detail.result;
    reported(deps, deadline, async |report| volume::modified(deps, &volume_id, result, report).await).await
}

async fn command(deps: &Deps, event: Event<CommandStatus>, deadline: Deadline) -> Result<Outcome, Error> {
    let CommandStatus { command_id, status, .. } = &event.detail;
    reported(deps, deadline, async |report| volume::command_finished(deps, command_id, status, report).await).await
}
