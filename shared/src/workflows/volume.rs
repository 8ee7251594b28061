//! Growing a group's EBS volume when its filesystem fills up: the request (from a CloudWatch
//! alarm, the signed webhook or Alertmanager), EBS's modification events, and the SSM command
//! that grows the filesystem. Decisions live in `growth`; this reads, acts and records.

use serde::Serialize;

use crate::domain::{AlertKind, HistoryKind};

use crate::adapters::notify::{Alert, Severity};
use crate::adapters::store::StoreError;
use crate::decisions::growth;
use crate::domain::{Modification, MountPath, Stage, VolumeRecord};
use crate::runtime::{Deps, Error};
use crate::workflows::report::Report;

/// A filesystem that is filling up.
#[derive(Debug, Clone, PartialEq)]
pub struct Filling {
    pub instance_id: String,
    /// Checked where it arrives: it goes into the resize script.
    pub path: MountPath,
    /// How full it is, when the caller says; a firing alarm is taken as over the threshold.
    pub used_percent: Option<f64>,
    pub fstype: Option<String>,
    /// What asked: `alarm`, `webhook`, `alertmanager`.
    pub source: &'static str,
}

/// What a growth request, an EBS result or an SSM status came to: the function's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Outcome {
    /// Nothing to do, and why.
    Ignored { reason: String },
    /// The growth was refused (recorded and alerted): `reason` is its kind, `message` the detail.
    Refused { reason: &'static str, message: String },
    /// EBS was asked to grow the volume.
    Grown { volume_id: String, device: String, from_gib: u32, to_gib: u32 },
    /// EBS's result is recorded on the open modification.
    Recorded { volume_id: String, result: String },
    /// The modification's resize was sent through SSM.
    FilesystemGrowing { volume_id: String, result: String, command_id: String },
    /// Another delivery of the modification sends its resize.
    Duplicate { volume_id: String, result: String, reason: &'static str },
    /// The SSM command ended well, and is recorded.
    #[serde(rename = "recorded")]
    CommandRecorded { command_id: String, status: String },
    /// The SSM command failed: recorded and alerted.
    Alerted { command_id: String, status: String },
}

pub fn ignored(reason: impl Into<String>) -> Outcome {
    Outcome::Ignored { reason: reason.into() }
}

/// Grows the volume behind `filling.path` on its instance, within the group's bounds and EBS's
/// limits. A refusal is recorded and alerted, never silent.
pub async fn grow(deps: &Deps, filling: &Filling, report: &mut Report) -> Result<Outcome, Error> {
    let Some(name) = deps.store.group_of(&filling.instance_id).await? else {
        tracing::debug!(instance_id = %filling.instance_id, "no group manages this instance; ignored");
        return Ok(ignored("no group manages this instance"));
    };
    let Some(group) = deps.store.group(&name).await? else { return Ok(ignored("no group manages this instance")) };
    let policy = &group.policy.volumes;
    if filling.used_percent.is_some_and(|used| used < f64::from(policy.threshold_percent)) {
        return Ok(ignored("below the group's threshold"));
    }
    let now = deps.clock.now();
    let Some(instance) =
        deps.clients.ec2.instances(std::slice::from_ref(&filling.instance_id)).await?.into_iter().next()
    else {
        return Ok(ignored("the instance no longer exists"));
    };
    let refuse = |report: &mut Report, kind: &'static str, why: String| {
        metrics::counter!("VolumeRefusals", "group" => name.to_string()).increment(1);
        report.note(
            &name,
            Some(&filling.instance_id),
            HistoryKind::VolumeRefused,
            format!("{} not grown: {why}", filling.path),
        );
        report.alert(
            Alert::new(
                AlertKind::VolumeRefused,
                &name,
                Severity::Warning,
                format!("{name}: {} on {} not grown ({kind})", filling.path, filling.instance_id),
            )
            .fact("instance", &filling.instance_id)
            .fact("path", filling.path.as_str())
            .fact("reason", &why),
        );
        Ok::<_, Error>(Outcome::Refused { reason: kind, message: why })
    };
    let Some(device) = growth::device_for(filling.path.as_str(), policy, instance.root_device.as_deref()) else {
        return refuse(
            report,
            "no-device",
            format!("the group maps no device to {} (set volumes.path_devices)", filling.path),
        );
    };
    let Some(volume_id) = instance.block_devices.iter().find(|(d, _)| same_device(d, &device)).map(|(_, v)| v.clone())
    else {
        return refuse(report, "no-volume", format!("no EBS volume is attached as {device}"));
    };
    let size = deps
        .clients
        .ec2
        .volumes(std::slice::from_ref(&volume_id))
        .await?
        .first()
        .map(|v| v.size_gib)
        .unwrap_or_default();
    let size = u32::try_from(size).unwrap_or_default();
    let mut record = deps.store.volume(&volume_id).await?.unwrap_or_else(|| VolumeRecord {
        volume_id: volume_id.clone(),
        group: name.clone(),
        instance_id: filling.instance_id.clone(),
        path: filling.path.clone(),
        device: device.clone(),
        fstype: None,
        modifications: Vec::new(),
        version: 0,
    });
    let new_size =
        match growth::may_modify(&record.modifications, policy, now).and_then(|()| growth::grown_size(size, policy)) {
            Ok(new_size) => new_size,
            Err(refusal) => {
                return refuse(report, refusal.kind(), format!("{volume_id}: {refusal}"));
            }
        };
    // The modification is recorded before EBS is asked: of two requests racing on one
    // volume, one is recorded and only that one asks.
    record.group = name.clone();
    record.instance_id = filling.instance_id.clone();
    record.path = filling.path.clone();
    record.device = device.clone();
    record.fstype = filling.fstype.clone().or(record.fstype);
    record.modifications.push(Modification {
        at: now,
        from_gib: size,
        to_gib: new_size,
        stage: Stage::Requested,
        command_id: None,
        resize_claimed_at: None,
        source: filling.source.to_string(),
    });
    let keep_from = record.modifications.len().saturating_sub(20);
    record.modifications.drain(..keep_from);
    let mut record = match deps.store.save_volume(&record).await {
        Ok(saved) => saved,
        Err(StoreError::Conflict(_)) => {
            return refuse(report, "in-progress", format!("{volume_id}: another request is growing it now"));
        }
        Err(err) => return Err(err.into()),
    };
    if let Err(err) = deps.clients.ec2.modify_volume(&volume_id, i32::try_from(new_size).unwrap_or(i32::MAX)).await {
        if let Some(last) = record.modifications.last_mut() {
            last.stage = Stage::Failed;
        }
        deps.store.save_volume(&record).await?;
        report.alert(
            Alert::new(
                AlertKind::VolumeRefused,
                &name,
                Severity::Critical,
                format!("{name}: EBS refused to grow {volume_id}"),
            )
            .fact("volume", &volume_id)
            .fact("error", &err),
        );
        return Err(err.into());
    }
    metrics::counter!("VolumeGrowths", "group" => name.to_string()).increment(1);
    report.note(
        &name,
        Some(&filling.instance_id),
        HistoryKind::VolumeGrown,
        format!("{volume_id} ({device}, {}) growing from {size} to {new_size} GiB", filling.path),
    );
    report.alert(
        Alert::new(
            AlertKind::VolumeGrown,
            &name,
            Severity::Info,
            format!("{name}: {} on {} growing to {new_size} GiB", filling.path, filling.instance_id),
        )
        .fact("volume", &volume_id)
        .fact("device", &device)
        .fact("from", format!("{size} GiB"))
        .fact("to", format!("{new_size} GiB"))
        .fact("used", filling.used_percent.map_or_else(|| "over the threshold".into(), |u| format!("{u:.1}%"))),
    );
    Ok(Outcome::Grown { volume_id, device, from_gib: size, to_gib: new_size })
}

/// `/dev/sdf` and `/dev/xvdf` name the same attachment (the kernel's name differs by driver).
fn same_device(a: &str, b: &str) -> bool {
    let bare = |d: &str| d.trim_start_matches("/dev/").trim_start_matches("xv").trim_start_matches('s').to_string();
    a == b || bare(a) == bare(b)
}

/// EBS reports a modification's progress: at `optimizing` the new size is usable, so the
/// filesystem grows (through SSM); at `completed` the modification is done. One resize per
/// modification, whatever the delivery: the sending is claimed by a version-checked write before
/// SendCommand, so of two results handled at once only the claimant sends.
pub async fn modified(deps: &Deps, volume_id: &str, result: &str, report: &mut Report) -> Result<Outcome, Error> {
    let now = deps.clock.now();
    let Some((record, at, claimed)) = note_result(deps, volume_id, result, now).await? else {
        return Ok(ignored("spotkeeper did not grow this volume, or none of its modifications is open"));
    };
    let mut done = Outcome::Recorded { volume_id: volume_id.to_string(), result: result.to_string() };
    let open = record.modifications.iter().find(|m| m.at == at);
    match (result, open) {
        ("optimizing" | "completed", Some(modification)) if claimed => {
            let to_gib = modification.to_gib;
            let command = send_resize(deps, &record, at).await?;
            report.note(
                &record.group,
                Some(&record.instance_id),
                HistoryKind::FilesystemGrowing,
                format!("{} on {volume_id} growing to {to_gib} GiB (SSM command {command})", record.path),
            );
            done = Outcome::FilesystemGrowing {
                volume_id: volume_id.to_string(),
                result: result.to_string(),
                command_id: command,
            };
        }
        ("optimizing" | "completed", Some(modification)) if modification.command_id.is_none() => {
            tracing::info!(volume_id, result, "another delivery is sending this modification's resize; a duplicate");
            done = Outcome::Duplicate {
                volume_id: volume_id.to_string(),
                result: result.to_string(),
                reason: "another delivery of this modification sends its resize",
            };
        }
        ("failed", _) => {
            report.note(
                &record.group,
                Some(&record.instance_id),
                HistoryKind::VolumeRefused,
                format!("EBS failed to modify {volume_id}"),
            );
            report.alert(
                Alert::new(
                    AlertKind::VolumeRefused,
                    &record.group,
                    Severity::Critical,
                    format!("{}: EBS failed to grow {volume_id}", record.group),
                )
                .fact("volume", volume_id),
            );
        }
        _ => {}
    }
    Ok(done)
}

/// Attempts at a version-checked write of a volume's record before giving up.
const WRITES: usize = 5;

/// Records an EBS result on the open modification, claiming the resize when nobody has: the
/// record as saved, the modification's time, and whether this call claimed. `None` when no
/// modification is open.
async fn note_result(
    deps: &Deps,
    volume_id: &str,
    result: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<(VolumeRecord, chrono::DateTime<chrono::Utc>, bool)>, Error> {
    let mut last = None;
    for _ in 0..WRITES {
        let Some(mut record) = deps.store.volume(volume_id).await? else { return Ok(None) };
        // Open: EBS is still at it, or done while its resize is still to send (a send that failed).
        let Some(open) = record.modifications.iter_mut().rev().find(|m| match m.stage {
            Stage::Requested | Stage::Optimizing => true,
            Stage::Completed => m.command_id.is_none() && m.resize_claimed_at.is_none(),
            Stage::Failed => false,
        }) else {
            return Ok(None);
        };
        let at = open.at;
        let resizes = matches!(result, "optimizing" | "completed");
        let claimed = resizes && open.command_id.is_none() && open.resize_claimed_at.is_none();
        if claimed {
            open.resize_claimed_at = Some(now);
        }
        match result {
            "completed" => open.stage = Stage::Completed,
            "optimizing" if open.stage != Stage::Completed => open.stage = Stage::Optimizing,
            "failed" => open.stage = Stage::Failed,
            _ => {}
        }
        match deps.store.save_volume(&record).await {
            Ok(saved) => return Ok(Some((saved, at, claimed))),
            Err(StoreError::Conflict(why)) => last = Some(StoreError::Conflict(why)),
            Err(err) => return Err(err.into()),
        }
    }
    Err(last.unwrap_or_else(|| StoreError::Conflict(format!("volume {volume_id}"))).into())
}

/// Sends the claimed resize and keeps its command id. When SSM refuses, the claim is given
/// back, so the event's next delivery sends it.
async fn send_resize(deps: &Deps, record: &VolumeRecord, at: chrono::DateTime<chrono::Utc>) -> Result<String, Error> {
    let volume_id = &record.volume_id;
    let script = growth::resize_script(&record.path, record.fstype.as_deref(), volume_id, &record.device);
    let comment = format!("spotkeeper: grow {} on {volume_id}", record.path);
    let sent = deps.clients.ssm.run_shell(&record.instance_id, &comment, &script).await;
    let command = sent.as_ref().ok().cloned();
    update_modification(deps, volume_id, at, |m| match &command {
        Some(id) => m.command_id = Some(id.clone()),
        None => m.resize_claimed_at = None,
    })
    .await?;
    Ok(sent?)
}

/// Changes one modification (known by its time), retrying the version-checked write.
async fn update_modification(
    deps: &Deps,
    volume_id: &str,
    at: chrono::DateTime<chrono::Utc>,
    change: impl Fn(&mut Modification),
) -> Result<(), Error> {
    let mut last = None;
    for _ in 0..WRITES {
        let Some(mut record) = deps.store.volume(volume_id).await? else { return Ok(()) };
        let Some(modification) = record.modifications.iter_mut().find(|m| m.at == at) else { return Ok(()) };
        change(modification);
        match deps.store.save_volume(&record).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict(why)) => last = Some(StoreError::Conflict(why)),
            Err(err) => return Err(err.into()),
        }
    }
    Err(last.unwrap_or_else(|| StoreError::Conflict(format!("volume {volume_id}"))).into())
}

/// SSM reports how the command that grows a filesystem ended: a failure is alerted.
pub async fn command_finished(
    deps: &Deps,
    command_id: &str,
    status: &str,
    report: &mut Report,
) -> Result<Outcome, Error> {
    let records = deps.store.volumes().await?;
    let Some(record) =
        records.iter().find(|r| r.modifications.iter().any(|m| m.command_id.as_deref() == Some(command_id)))
    else {
        return Ok(ignored("not a spotkeeper command"));
    };
    let failed = matches!(status, "Failed" | "TimedOut" | "Cancelled" | "Undeliverable" | "Terminated");
    if failed {
        report.note(
            &record.group,
            Some(&record.instance_id),
            HistoryKind::FilesystemNotGrown,
            format!("SSM command {command_id} {status}: {} on {} did not grow", record.path, record.volume_id),
        );
        let alert = Alert::new(
            AlertKind::VolumeRefused,
            &record.group,
            Severity::Critical,
            format!("{}: the filesystem at {} did not grow ({status})", record.group, record.path),
        )
        .fact("instance", &record.instance_id)
        .fact("volume", &record.volume_id)
        .fact("command", command_id)
        .fact("next", "run the command's script by hand; the volume itself has grown");
        report.alert(alert);
    } else {
        report.note(
            &record.group,
            Some(&record.instance_id),
            HistoryKind::FilesystemGrown,
            format!("{} on {} grown (SSM command {command_id} {status})", record.path, record.volume_id),
        );
    }
    let (command_id, status) = (command_id.to_string(), status.to_string());
    Ok(if failed { Outcome::Alerted { command_id, status } } else { Outcome::CommandRecorded { command_id, status } })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The answers read as the `json!` literals they replace (tests, Alertmanager's caller and the
    /// demo read them).
    #[test]
    fn outcomes_read_as_before() {
        let (vol, cmd) = ("vol-1".to_string(), "c-1".to_string());
        let cases = [
            (ignored("not a spotkeeper command"), json!({"action": "ignored", "reason": "not a spotkeeper command"})),
            (
                Outcome::Refused { reason: "no-device", message: "why".into() },
                json!({"action": "refused", "reason": "no-device", "message": "why"}),
            ),
            (
                Outcome::Grown { volume_id: vol.clone(), device: "/dev/sdf".into(), from_gib: 10, to_gib: 20 },
                json!({"action": "grown", "volume_id": "vol-1", "device": "/dev/sdf", "from_gib": 10, "to_gib": 20}),
            ),
            (
                Outcome::Recorded { volume_id: vol.clone(), result: "failed".into() },
                json!({"action": "recorded", "volume_id": "vol-1", "result": "failed"}),
            ),
            (
                Outcome::FilesystemGrowing {
                    volume_id: vol.clone(),
                    result: "optimizing".into(),
                    command_id: cmd.clone(),
                },
                json!({"action": "filesystem-growing", "volume_id": "vol-1", "result": "optimizing", "command_id": "c-1"}),
            ),
            (
                Outcome::Duplicate { volume_id: vol, result: "completed".into(), reason: "another" },
                json!({"action": "duplicate", "volume_id": "vol-1", "result": "completed", "reason": "another"}),
            ),
            (
                Outcome::CommandRecorded { command_id: cmd.clone(), status: "Success".into() },
                json!({"action": "recorded", "command_id": "c-1", "status": "Success"}),
            ),
            (
                Outcome::Alerted { command_id: cmd, status: "Failed".into() },
                json!({"action": "alerted", "command_id": "c-1", "status": "Failed"}),
            ),
        ];
        for (outcome, before) in cases {
            assert_eq!(serde_json::to_value(&outcome).unwrap(), before, "{outcome:?}");
        }
    }
}
