//! EBS volumes that grow before they fill up, against the emulator: the alarm, the limits, the
//! filesystem command, the signed webhook and Alertmanager.

use axum::http::{Method, StatusCode};
use chrono::Duration;
use serde_json::{Value, json};
use spotkeeper_tests::{Harness, Standalone, TOKEN, WEBHOOK_SECRET, events};

/// A standalone group whose one instance carries the data volume at /dev/sdf (in its AZ).
fn web(h: &Harness) -> Standalone<'_> {
    h.standalone("web").types(&["m5.large"]).subnets(&[h.fleet.subnet_b.as_str()]).with_volume()
}

async fn size(h: &Harness, volume_id: &str) -> i32 {
    h.ec2().describe_volumes().volume_ids(volume_id).send().await.unwrap().volumes()[0].size().unwrap()
}

async fn root_volume(h: &Harness, instance_id: &str) -> String {
    let out = h.ec2().describe_instances().instance_ids(instance_id).send().await.unwrap();
    let instance = &out.reservations()[0].instances()[0];
    let root = instance.root_device_name().unwrap().to_string();
    instance
        .block_device_mappings()
        .iter()
        .find(|b| b.device_name() == Some(&root))
        .unwrap()
        .ebs()
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string()
}

/// The script of the SSM command, as the emulator recorded it.
async fn script(h: &Harness, command_id: &str) -> String {
    let out = aws_sdk_ssm::Client::new(&h.sdk).list_commands().command_id(command_id).send().await.unwrap();
    out.commands()[0].parameters().unwrap()["commands"].join("\n")
}

/// The subjects of the `volume-refused` alerts SNS delivered so far.
async fn refused_subjects(h: &Harness) -> Vec<String> {
    let alerts = h.sns_alerts().await;
    alerts
        .into_iter()
        .filter(|a| a.attributes.get("event").map(String::as_str) == Some("volume-refused"))
        .map(|a| a.subject)
        .collect()
}

fn alert_events(alerts: &[spotkeeper_tests::SnsAlert]) -> Vec<String> {
    alerts.iter().filter_map(|a| a.attributes.get("event").cloned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_grows_the_right_volume_and_the_filesystem_follows() {
    let h = Harness::start().await;
    let id = web(&h).policy(json!({"volumes": {"path_devices": {"/data": "/dev/sdf"}}})).online().await.remove(0);
    assert_eq!(size(&h, &h.fleet.volume_id).await, 20);
    let out = h.volume_threshold(events::disk_alarm(&id, "/data", "ext4", 86.3)).await.unwrap();
    assert_eq!(
        (out["action"].as_str(), out["from_gib"].as_u64(), out["to_gib"].as_u64()),
        (Some("grown"), Some(20), Some(30)),
        "{out}"
    );
    assert_eq!(size(&h, &h.fleet.volume_id).await, 30, "max(20 × 1.25, 20 + 10)");

    let out = h.volume_threshold(events::volume_modified(&h.fleet.volume_id, "optimizing")).await.unwrap();
    assert_eq!(out["action"], "filesystem-growing", "{out}");
    let ext4 = script(&h, out["command_id"].as_str().unwrap()).await;
    assert!(ext4.contains("resize2fs") && !ext4.contains("xfs_growfs"), "{ext4}");
    assert!(
        ext4.contains(&h.fleet.volume_id) && ext4.contains("/dev/sdf") && ext4.contains("findmnt -no SOURCE /data"),
        "{ext4}"
    );
    let out = h.volume_threshold(events::volume_modified(&h.fleet.volume_id, "completed")).await.unwrap();
    assert_eq!(out["action"], "recorded", "the command was sent once: {out}");

    // The root filesystem, xfs: the root device's volume grows, with xfs_growfs.
    let root = root_volume(&h, &id).await;
    let before = size(&h, &root).await;
    let out = h.volume_threshold(events::disk_alarm(&id, "/", "xfs", 91.0)).await.unwrap();
    assert_eq!(out["action"], "grown", "{out}");
    assert_eq!(size(&h, &root).await, before + 10);
    let out = h.volume_threshold(events::volume_modified(&root, "optimizing")).await.unwrap();
    let xfs = script(&h, out["command_id"].as_str().unwrap()).await;
    assert!(xfs.contains("xfs_growfs /") && !xfs.contains("resize2fs"), "{xfs}");

    // A failed command is alerted.
    let mut failed = events::load("ssm-command-failed.json");
    failed["detail"]["command-id"] = out["command_id"].clone();
    let out = h.volume_threshold(failed).await.unwrap();
    assert_eq!(out["action"], "alerted");
    let alerts = h.sns_alerts().await;
    assert_eq!(alert_events(&alerts).iter().filter(|e| *e == "volume-grown").count(), 2);
    assert!(alerts.iter().any(|a| a.attributes.get("event").map(String::as_str) == Some("volume-refused")
        && a.subject.contains("did not grow")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_and_ebs_limits_each_refuse_with_a_record_and_an_alert() {
    let h = Harness::start().await;
    let id = web(&h)
        .policy(json!({"volumes": {"path_devices": {"/data": "/dev/sdf"}, "min_interval": "1h", "max_size_gib": 100}}))
        .online()
        .await
        .remove(0);
    let alarm = || events::disk_alarm(&id, "/data", "ext4", 90.0);
    let grow = async |h: &Harness| h.volume_threshold(alarm()).await.unwrap();
    let complete =
        async |h: &Harness| h.volume_threshold(events::volume_modified(&h.fleet.volume_id, "completed")).await.unwrap();
    assert_eq!(grow(&h).await["action"], "grown");
    // In progress: EBS has not completed the previous modification.
    let out = grow(&h).await;
    assert_eq!((out["action"].as_str(), out["reason"].as_str()), (Some("refused"), Some("in-progress")), "{out}");
    complete(&h).await;
    // Too soon: the minimum interval has not passed.
    let out = grow(&h).await;
    assert_eq!(out["reason"], "too-soon", "{out}");
    // Four in 24 hours, then no more.
    for _ in 0..3 {
        h.clock.advance(Duration::minutes(61));
        assert_eq!(grow(&h).await["action"], "grown");
        complete(&h).await;
    }
    h.clock.advance(Duration::minutes(61));
    let out = grow(&h).await;
    assert_eq!(out["reason"], "too-many", "{out}");
    assert_eq!(size(&h, &h.fleet.volume_id).await, 63, "20 → 30 → 40 → 50 (+10 GiB each) → 63 (+25% beats +10 GiB)");
    // At the cap: no change, and the alert says the volume is full-size.
    h.clock.advance(Duration::hours(24));
    h.call(
        Method::PATCH,
        "/groups/web",
        Some(TOKEN),
        Some(json!({"volumes": {"path_devices": {"/data": "/dev/sdf"}, "max_size_gib": 63}})),
    )
    .await;
    let out = grow(&h).await;
    assert_eq!(out["reason"], "full-size", "{out}");
    assert_eq!(size(&h, &h.fleet.volume_id).await, 63);

    let web = h.group("web").await;
    let refusals = web["recent_events"].as_array().unwrap().iter().filter(|e| e["kind"] == "volume-refused").count();
    assert_eq!(refusals, 4, "each refusal is recorded: {web}");
    let refused = refused_subjects(&h).await;
    assert_eq!(refused.len(), 4, "{refused:?}");
    for kind in ["in-progress", "too-soon", "too-many", "full-size"] {
        assert!(refused.iter().any(|s| s.contains(kind)), "{kind} not alerted: {refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signed_webhook_grows_and_a_bad_signature_changes_nothing() {
    let h = Harness::start().await;
    let id = web(&h).policy(json!({"volumes": {"path_devices": {"/data": "/dev/sdf"}}})).online().await.remove(0);
    let body = json!({"instance_id": id, "path": "/data", "used_percent": 88.5}).to_string().into_bytes();
    let now = spotkeeper::clock::Clock::now(h.clock.as_ref());
    let signed = spotkeeper::domain::signature::sign(WEBHOOK_SECRET.as_bytes(), now, &body);
    let stale = spotkeeper::domain::signature::sign(WEBHOOK_SECRET.as_bytes(), now - Duration::minutes(10), &body);
    let forged = spotkeeper::domain::signature::sign(b"not-the-secret", now, &body);
    for (header, why) in [
        (None, "missing"),
        (Some(stale.as_str()), "stale"),
        (Some(forged.as_str()), "forged"),
        (Some("t=1,v1=zz"), "malformed"),
    ] {
        let headers: Vec<(&str, &str)> = header.iter().map(|h| ("spotkeeper-signature", *h)).collect();
        let (status, answer) = h.call_raw(Method::POST, "/hooks/volume", &headers, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {answer}");
        assert_eq!(size(&h, &h.fleet.volume_id).await, 20, "{why} changed nothing");
        assert!(h.deps.store.volume(&h.fleet.volume_id).await.unwrap().is_none(), "{why} recorded nothing");
    }
    // A body changed after signing does not verify either.
    let tampered = json!({"instance_id": id, "path": "/", "used_percent": 88.5}).to_string().into_bytes();
    let (status, _) = h.call_raw(Method::POST, "/hooks/volume", &[("spotkeeper-signature", &signed)], tampered).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) =
        h.call_raw(Method::POST, "/hooks/volume", &[("spotkeeper-signature", &signed)], body.clone()).await;
    assert_eq!((status, answer["action"].as_str()), (StatusCode::OK, Some("grown")), "{answer}");
    assert_eq!(size(&h, &h.fleet.volume_id).await, 30);
    // Below the threshold: signed, but nothing to do.
    let low = json!({"instance_id": id, "path": "/data", "used_percent": 41.0}).to_string().into_bytes();
    let header = spotkeeper::domain::signature::sign(WEBHOOK_SECRET.as_bytes(), now, &low);
    let (_, answer) = h.call_raw(Method::POST, "/hooks/volume", &[("spotkeeper-signature", &header)], low).await;
    assert_eq!(answer["action"], "ignored");
    // A signed body with an unsafe path is refused before anything runs.
    let unsafe_path =
        json!({"instance_id": id, "path": "/data; reboot", "used_percent": 99.0}).to_string().into_bytes();
    let header = spotkeeper::domain::signature::sign(WEBHOOK_SECRET.as_bytes(), now, &unsafe_path);
    let (status, answer) =
        h.call_raw(Method::POST, "/hooks/volume", &[("spotkeeper-signature", &header)], unsafe_path).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("path")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_payloads_grow_volumes() {
    let h = Harness::start().await;
    let id = web(&h).policy(json!({"volumes": {"path_devices": {"/data": "/dev/sdf"}}})).online().await.remove(0);
    let mut payload = events::load("alertmanager-disk-full.json");
    payload["alerts"][0]["labels"]["instance_id"] = json!(id);
    let (status, _) = h.call(Method::POST, "/hooks/alertmanager", None, Some(payload.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "Alertmanager sends the bearer token");
    let (status, answer) = h.call(Method::POST, "/hooks/alertmanager", Some(TOKEN), Some(payload)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"].as_array().map(Vec::len), Some(1), "the resolved alert is skipped: {answer}");
    assert_eq!(answer["results"][0]["action"], "grown");
    assert_eq!(size(&h, &h.fleet.volume_id).await, 30);
    let (status, answer) = h
        .call(
            Method::POST,
            "/hooks/alertmanager",
            Some(TOKEN),
            Some(json!({"alerts": [{"status": "firing", "labels": {"path": "/data"}}]})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("alerts[0].labels.instance_id"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_instances_other_alarms_and_malformed_events_change_nothing() {
    let h = Harness::start().await;
    let id = web(&h).policy(json!({"volumes": {"path_devices": {"/data": "/dev/sdf"}}})).online().await.remove(0);
    let items = h.table_items().await;
    let out = h.volume_threshold(events::disk_alarm("i-0fffffffffffffff0", "/data", "ext4", 95.0)).await.unwrap();
    assert_eq!(out["action"], "ignored");
    let mut cpu = events::disk_alarm(&id, "/data", "ext4", 95.0);
    cpu["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["name"] = json!("CPUUtilization");
    assert_eq!(h.volume_threshold(cpu).await.unwrap()["action"], "ignored");
    let mut ok = events::disk_alarm(&id, "/data", "ext4", 40.0);
    ok["detail"]["state"]["value"] = json!("OK");
    assert_eq!(h.volume_threshold(ok).await.unwrap()["action"], "ignored");
    let err = h.volume_threshold(events::load("malformed/cloudwatch-alarm-no-dimensions.json")).await.unwrap_err();
    assert!(err.to_string().contains("InstanceId"), "{err}");
    let err = h.volume_threshold(events::load("malformed/not-an-event.json")).await.unwrap_err();
    assert!(err.to_string().contains("this function handles"), "{err}");
    assert_eq!(h.table_items().await, items, "nothing written");
    assert_eq!(size(&h, &h.fleet.volume_id).await, 20, "nothing grown");
}

/// The SSM commands the emulator was sent.
async fn command_ids(h: &Harness) -> Vec<String> {
    let out = aws_sdk_ssm::Client::new(&h.sdk).list_commands().send().await.unwrap();
    out.commands().iter().filter_map(|c| c.command_id().map(str::to_string)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_results_of_one_modification_in_one_batch_send_one_resize_in_either_order() {
    let h = Harness::start().await;
    let id = web(&h)
        .policy(json!({"volumes": {"path_devices": {"/data": "/dev/sdf"}, "min_interval": "1h"}}))
        .online()
        .await
        .remove(0);
    let volume = h.fleet.volume_id.clone();
    for (round, order) in [["optimizing", "completed"], ["completed", "optimizing"]].into_iter().enumerate() {
        let out = h.volume_threshold(events::disk_alarm(&id, "/data", "ext4", 90.0)).await.unwrap();
        assert_eq!(out["action"], "grown", "{order:?}: {out}");
        let batch = events::sqs_batch(&order.map(|result| events::volume_modified(&volume, result)));
        let out = h.volume_threshold(batch).await.unwrap();
        assert_eq!(out, json!({"batchItemFailures": []}), "{order:?}");
        let sent = command_ids(&h).await;
        assert_eq!(sent.len(), round + 1, "{order:?}: one resize per modification: {sent:?}");
        let record = h.deps.store.volume(&volume).await.unwrap().unwrap();
        let last = record.modifications.last().unwrap();
        assert!(sent.contains(last.command_id.as_ref().unwrap()), "{order:?}: the command sent is the one recorded");
        assert_eq!(last.stage, spotkeeper::domain::Stage::Completed, "{order:?}");
        h.clock.advance(Duration::minutes(61));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_losing_request_of_two_racing_is_recorded_and_alerted() {
    let h = Harness::start().await;
    let id = web(&h).policy(json!({"volumes": {"path_devices": {"/data": "/dev/sdf"}}})).online().await.remove(0);
    let alarms = [events::disk_alarm(&id, "/data", "ext4", 90.0), events::disk_alarm(&id, "/data", "ext4", 91.0)];
    let out = h.volume_threshold(events::sqs_batch(&alarms)).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(size(&h, &h.fleet.volume_id).await, 30, "grown once");
    let web = h.group("web").await;
    let refusals: Vec<&Value> =
        web["recent_events"].as_array().unwrap().iter().filter(|e| e["kind"] == "volume-refused").collect();
    assert_eq!(refusals.len(), 1, "the loser is recorded: {web}");
    let refused = refused_subjects(&h).await;
    assert_eq!(refused.len(), 1, "and alerted: {refused:?}");
    assert!(refused[0].contains("in-progress"), "{refused:?}");
}
