//! The `instance-state` function against the emulator: what it ignores and what it refuses.

use axum::http::{Method, StatusCode};
use serde_json::json;
use spotkeeper_tests::{Harness, TOKEN, events};

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

    // An SQS batch: the bad message is reported, the good one handled.
    let (_, group) = h.call(Method::GET, "/groups/workers", Some(TOKEN), None).await;
    let member = group["members"][0]["instance_id"].as_str().unwrap().to_string();
    let mut batch = events::load("sqs-instance-state-batch.json");
    batch["Records"][0]["body"] = json!(events::state_change(&member, "stopping").to_string());
    let out = h.instance_state(batch).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": [{"itemIdentifier": "4c2a8f0e-bad0-4b1e-9a43-0d7f5c1e2b77"}]}));
    let (_, group) = h.call(Method::GET, "/groups/workers", Some(TOKEN), None).await;
    let state =
        group["members"].as_array().unwrap().iter().find(|m| m["instance_id"] == member.as_str()).unwrap()["state"]
            .clone();
    assert_eq!(state, "stopping");
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
    let (_, group) = h.call(Method::GET, "/groups/workers", Some(TOKEN), None).await;
    let member = group["members"].as_array().unwrap().iter().find(|m| m["instance_id"] == id.as_str()).unwrap().clone();
    assert_eq!(member["state"], "stopped");
}
