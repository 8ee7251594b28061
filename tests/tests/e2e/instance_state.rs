//! The `instance-state` function against the emulator: what it ignores and what it refuses.

use axum::http::StatusCode;
use serde_json::json;
use spotkeeper::Deadline;
use spotkeeper_tests::proxy::Fault;
use spotkeeper_tests::{Harness, events};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_instances_are_ignored_and_bad_events_refused_without_a_change() {
    let h = Harness::start().await;
    let (status, _) = h.register_workers().await;
    assert_eq!(status, StatusCode::CREATED);
    let items = h.table_items().await;

    // An instance no group manages.
    let out = h.instance_state(events::state_change("i-0fffffffffffffff0", "running")).await.unwrap();
    assert_eq!(out["action"], "ignored");
    assert_eq!(h.table_items().await, items, "nothing written for a foreign instance");

    // Malformed events: each a clear error, nothing written.
    for (name, needle) in [
        ("malformed/instance-state-no-instance-id.json", "instance-id"),
        ("malformed/wrong-detail-type.json", "EC2 Instance State-change Notification"),
        ("malformed/not-an-event.json", "not an EventBridge event"),
    ] {
        let err = h.instance_state(events::load(name)).await.unwrap_err();
        assert!(err.to_string().contains(needle), "{name}: {err}");
        assert_eq!(h.table_items().await, items, "{name} wrote to the table");
    }

    // An SQS batch: the good message handled; the bad one, which can never succeed, acknowledged
    // (not delivered again), nothing failing.
    let group = h.group("workers").await;
    let member = group["members"][0]["instance_id"].as_str().unwrap().to_string();
    let mut batch = events::load("sqs-instance-state-batch.json");
    batch["Records"][0]["body"] = json!(events::state_change(&member, "stopping").to_string());
    let out = h.instance_state(batch).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    let group = h.group("workers").await;
    let state =
        group["members"].as_array().unwrap().iter().find(|m| m["instance_id"] == member.as_str()).unwrap()["state"]
            .clone();
    assert_eq!(state, "stopping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_ec2_does_not_have_is_refused_without_a_change() {
    let h = Harness::start().await;
    let (_, asg) = h.register_workers().await;
    let member = asg["members"][0]["instance_id"].as_str().unwrap().to_string();
    let items = h.table_items().await;

    // A bare event: a clear error naming the field, nothing written.
    let err = h.instance_state(events::state_change(&member, "rebooting")).await.unwrap_err();
    assert!(matches!(err, spotkeeper::Error::Event(_)) && err.to_string().contains("detail.state"), "{err}");
    assert_eq!(h.table_items().await, items, "an unknown state is not recorded");

    // In an SQS batch: acknowledged (it can never succeed), nothing written.
    let mut batch = events::load("sqs-instance-state-batch.json");
    batch["Records"][0]["body"] = json!(events::state_change(&member, "hibernated").to_string());
    let out = h.instance_state(batch).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(h.table_items().await, items, "an unknown state is not recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_does_not_overwrite_a_newer_state() {
    let h = Harness::start().await;
    let (_, asg) = h.register_workers().await;
    let id = asg["members"][0]["instance_id"].as_str().unwrap().to_string();
    let mut stopped = events::state_change(&id, "stopped");
    stopped["time"] = json!("2026-11-21T07:00:00Z");
    let mut late_running = events::state_change(&id, "running");
    late_running["time"] = json!("2026-11-21T06:59:00Z");
    h.instance_state(stopped).await.unwrap();
    let out = h.instance_state(late_running).await.unwrap();
    assert_eq!(out["action"], "ignored", "{out}");
    let group = h.group("workers").await;
    let member = group["members"].as_array().unwrap().iter().find(|m| m["instance_id"] == id.as_str()).unwrap().clone();
    assert_eq!(member["state"], "stopped");
}

/// EC2's answer while a volume's detach goes on (the emulator detaches at once).
fn detaching(volume_id: &str, zone: &str, instance_id: &str) -> String {
    format!(
        "<DescribeVolumesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d</requestId><volumeSet><item><volumeId>{volume_id}</volumeId><size>20</size><availabilityZone>{zone}</availabilityZone><status>in-use</status><createTime>2026-11-21T06:00:00.000Z</createTime><attachmentSet><item><volumeId>{volume_id}</volumeId><instanceId>{instance_id}</instanceId><device>/dev/sdf</device><status>detaching</status><attachTime>2026-11-21T06:00:00.000Z</attachTime><deleteOnTermination>false</deleteOnTermination></item></attachmentSet><volumeType>gp3</volumeType></item></volumeSet></DescribeVolumesResponse>"
    )
}

/// A standalone group with a data volume whose member was interrupted, stopped, and its volume's
/// detach outlasting the `instance-state` invocation of its `stopped` event. Returns (volume,
/// old member, replacement).
async fn a_detach_left_pending(h: &Harness) -> (String, String, String) {
    let volume = h.fleet.volume_id.clone();
    let old = h
        .standalone("web")
        .types(&["m5.large"])
        .subnets(&[h.fleet.subnet_b.as_str()])
        .with_volume()
        .online()
        .await
        .remove(0);
    let out = h.spot_interruption(events::spot_warning(&old)).await.unwrap();
    let new = out["replacement"].as_str().unwrap_or_else(|| panic!("{out}")).to_string();
    h.instance_state(events::state_change(&new, "running")).await.unwrap();
    h.ec2().stop_instances().instance_ids(&old).send().await.unwrap();
    let zone = h.ec2().describe_volumes().volume_ids(&volume).send().await.unwrap().volumes()[0]
        .availability_zone()
        .unwrap()
        .to_string();

    // The detach takes longer than the invocation has: EC2 keeps saying "detaching".
    let (id, at) = (volume.clone(), old.clone());
    h.proxy.on(move |call| {
        (call.operation == "DescribeVolumes").then(|| Fault::answer(200, "text/xml", detaching(&id, &zone, &at)))
    });
    let deadline = Deadline::after(spotkeeper::domain::deadline::MARGIN + std::time::Duration::from_secs(1));
    let out = h.instance_state_by(events::state_change(&old, "stopped"), deadline).await.unwrap();
    assert_eq!(out["volumes_pending"], json!([volume]), "{out}");
    assert_eq!(out["volumes"], json!([]), "{out}");
    let web = h.group("web").await;
    let moves = &web["status"]["volume_moves"];
    assert_eq!(
        (moves[0]["volume_id"].as_str(), moves[0]["to"].as_str()),
        (Some(volume.as_str()), Some(new.as_str())),
        "{web}"
    );
    assert!(web["recent_events"].to_string().contains("still detaching"), "{web}");
    // The detach finishes.
    h.proxy.clear_rules();
    (volume, old, new)
}

/// The volume is on the replacement, and the group has no move left.
async fn moved_to(h: &Harness, volume: &str, new: &str) {
    let attached = h.ec2().describe_volumes().volume_ids(volume).send().await.unwrap();
    let holders: Vec<&str> = attached.volumes()[0].attachments().iter().filter_map(|a| a.instance_id()).collect();
    assert_eq!(holders, vec![new]);
    let web = h.group("web").await;
    assert!(web["status"].get("volume_moves").is_none(), "nothing left to move: {web}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detach_longer_than_the_invocation_is_finished_by_the_scheduled_run() {
    let h = Harness::start().await;
    let (volume, _, new) = a_detach_left_pending(&h).await;
    let run = h.scheduled(None).await.unwrap();
    assert_eq!(run["groups"][0]["volume_moves"]["moved"], json!([volume]), "{run}");
    moved_to(&h, &volume, &new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detach_longer_than_the_invocation_is_finished_by_the_next_event() {
    let h = Harness::start().await;
    let (volume, old, new) = a_detach_left_pending(&h).await;
    h.ec2().terminate_instances().instance_ids(&old).send().await.unwrap();
    let out = h.instance_state(events::state_change(&old, "terminated")).await.unwrap();
    assert_eq!((out["volumes"].clone(), out["volumes_pending"].clone()), (json!([volume]), json!([])), "{out}");
    moved_to(&h, &volume, &new).await;
}
