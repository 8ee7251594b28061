//! Fresh images every day, and rollback when one is bad — against the emulator, moving time with
//! the test clock.

use axum::http::{Method, StatusCode};
use chrono::Duration;
use serde_json::{Value, json};
use spotkeeper_tests::{Harness, TOKEN, events};

async fn image_of(h: &Harness, instance_id: &str) -> String {
    h.instance(instance_id).await.image_id().unwrap().to_string()
}

async fn image_exists(h: &Harness, image_id: &str) -> bool {
    h.ec2().describe_images().image_ids(image_id).send().await.is_ok_and(|o| !o.images().is_empty())
}

/// One scheduled run; the images step's report.
async fn images_step(h: &Harness) -> Value {
    let run = h.scheduled(None).await.unwrap();
    run["groups"][0]["images"].clone()
}

/// Moves a member out with an interruption and back in with its replacement running.
async fn interrupt(h: &Harness, id: &str) -> String {
    let out = h.spot_interruption(h.now_on(events::spot_warning(id))).await.unwrap();
    let new = out["replacement"].as_str().unwrap_or_else(|| panic!("{out}")).to_string();
    h.instance_state(h.now_on(events::state_change(&new, "running"))).await.unwrap();
    h.ec2().terminate_instances().instance_ids(id).send().await.unwrap();
    h.instance_state(h.now_on(events::state_change(id, "terminated"))).await.unwrap();
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_of_images_are_made_activated_and_pruned_and_replacements_use_them() {
    let h = Harness::start().await;
    let mut member =
        h.standalone("web").latest().policy(json!({"images": {"enabled": true, "keep": 2}})).online().await.remove(0);
    let original = image_of(&h, &member).await;
    let mut activated = Vec::new();
    for day in 0..5 {
        let created = images_step(&h).await;
        assert_eq!(created["step"], "created", "day {day}: {created}");
        let image = created["image"].as_str().unwrap().to_string();
        h.clock.advance(Duration::minutes(5));
        let checked = images_step(&h).await;
        assert_eq!(
            (checked["step"].as_str(), checked["stage"].as_str()),
            (Some("checked"), Some("ready")),
            "{checked}"
        );
        h.clock.advance(Duration::minutes(5));
        let active = images_step(&h).await;
        assert_eq!(active["step"], "activated", "{active}");
        let web = h.group("web").await;
        assert_eq!(
            web["launch_template"]["version"], active["template_version"],
            "the group launches from the new version"
        );
        h.clock.advance(Duration::minutes(5));
        assert_eq!(images_step(&h).await["step"], "nothing", "one image a day");
        // A replacement after that launches with the new image.
        member = interrupt(&h, &member).await;
        assert_eq!(image_of(&h, &member).await, image, "day {day}: the replacement runs the new image");
        activated.push(image);
        h.clock.advance(Duration::hours(24));
    }
    assert_ne!(activated[0], original);
    // keep = 2: the oldest images are gone (deregistered, snapshots deleted), the newest stay.
    let web = h.group("web").await;
    let stages: Vec<(String, String)> = web["status"]["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["image_id"].as_str().unwrap().to_string(), i["stage"].as_str().unwrap().to_string()))
        .collect();
    let pruned: Vec<&String> = stages.iter().filter(|(_, s)| s == "pruned").map(|(i, _)| i).collect();
    // Five images made, two kept (the active one and the one a rollback would go back to).
    assert_eq!(pruned.len(), 3, "{stages:?}");
    for image in &pruned {
        assert!(!image_exists(&h, image).await, "{image} deregistered");
    }
    let newest = activated.last().unwrap();
    assert!(image_exists(&h, newest).await);
    assert_eq!(stages.iter().filter(|(_, s)| s == "active").count(), 1, "{stages:?}");
    let alerts = h.sns_alerts().await;
    for event in ["image-created", "image-activated"] {
        assert!(alerts.iter().any(|a| a.attributes.get("event").map(String::as_str) == Some(event)), "{event}");
    }
    let shown = h.group("web").await;
    assert!(shown["recent_events"].as_array().unwrap().iter().any(|e| e["kind"] == "image-pruned"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_that_dies_in_probation_rolls_the_image_back() {
    let h = Harness::start().await;
    let member = h.standalone("web").latest().policy(json!({"images": {"enabled": true}})).online().await.remove(0);
    let original = image_of(&h, &member).await;
    images_step(&h).await;
    images_step(&h).await;
    let active = images_step(&h).await;
    assert_eq!(active["step"], "activated", "{active}");
    let new_image = active["image"].as_str().unwrap().to_string();
    let previous_version =
        h.group("web").await["status"]["images"][0]["previous_version"].as_str().unwrap().to_string();

    // The replacement from the new image dies within probation, with no interruption.
    let replacement = interrupt(&h, &member).await;
    assert_eq!(image_of(&h, &replacement).await, new_image);
    h.clock.advance(Duration::minutes(3));
    h.ec2().terminate_instances().instance_ids(&replacement).send().await.unwrap();
    let out = h.instance_state(h.now_on(events::state_change(&replacement, "terminated"))).await.unwrap();
    assert_eq!(out["action"], "rolled-back", "{out}");
    let web = h.group("web").await;
    assert_eq!(
        web["launch_template"]["version"].as_str(),
        Some(previous_version.as_str()),
        "the previous version again"
    );
    assert_eq!(web["status"]["images"][0]["stage"], "bad");
    assert!(web["status"]["images"][0]["note"].as_str().unwrap().contains("probation"));
    // The member was replaced from the previous image.
    let next = out["replacement"][0].as_str().unwrap().to_string();
    assert_eq!(image_of(&h, &next).await, original);
    let alerts = h.sns_alerts().await;
    let rollback = alerts
        .iter()
        .find(|a| a.attributes.get("event").map(String::as_str) == Some("rollback"))
        .expect("a rollback alert");
    assert!(rollback.message.contains("probation"), "the alert says why: {}", rollback.message);
    // The bad image is never activated again: the next day makes a new one.
    for _ in 0..3 {
        let step = images_step(&h).await;
        assert_ne!(step["image"].as_str(), Some(new_image.as_str()), "{step}");
        assert_ne!(step["step"], "activated");
    }
    h.clock.advance(Duration::hours(24));
    assert_eq!(images_step(&h).await["step"], "created");
    // A member that dies after the probation period rolls nothing back.
    images_step(&h).await;
    let active = images_step(&h).await;
    assert_eq!(active["step"], "activated");
    let settled = interrupt(&h, &next).await;
    h.clock.advance(Duration::hours(1));
    h.ec2().terminate_instances().instance_ids(&settled).send().await.unwrap();
    let out = h.instance_state(h.now_on(events::state_change(&settled, "terminated"))).await.unwrap();
    assert_ne!(out["action"], "rolled-back", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_rollback_works_and_without_a_previous_version_is_a_conflict() {
    let h = Harness::start().await;
    let member = h.standalone("web").latest().policy(json!({"images": {"enabled": true}})).online().await.remove(0);
    let (status, refused) = h.call(Method::POST, "/groups/web/rollback", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("nothing to roll back"), "{refused}");
    images_step(&h).await;
    images_step(&h).await;
    let active = images_step(&h).await;
    let new_image = active["image"].as_str().unwrap().to_string();
    let on_new = interrupt(&h, &member).await;
    assert_eq!(image_of(&h, &on_new).await, new_image);
    // The group now wants an On-Demand base its only (Spot) member does not hold.
    let (status, _) = h.patch("web", json!({"on_demand_base": 1})).await;
    assert_eq!(status, StatusCode::OK);

    let (status, rolled) = h.call(Method::POST, "/groups/web/rollback", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["rolled_back"], new_image.as_str());
    assert_eq!(rolled["status"]["images"][0]["stage"], "bad");
    // The member on the bad image is replaced from the previous one, launch before terminate,
    // and the replacement keeps the base.
    let replacement = rolled["replacements"][0].as_str().unwrap().to_string();
    assert_ne!(image_of(&h, &replacement).await, new_image);
    let web = h.group("web").await;
    let member = web["members"].as_array().unwrap().iter().find(|m| m["instance_id"] == replacement.as_str());
    assert_eq!(member.map(|m| m["market"].clone()), Some(json!("on-demand")), "{web}");
    h.instance_state(events::state_change(&replacement, "running")).await.unwrap();
    let state = h.ec2().describe_instances().instance_ids(&on_new).send().await.unwrap().reservations()[0].instances()
        [0]
    .state()
    .and_then(|s| s.name())
    .map(|n| n.as_str().to_string());
    assert_eq!(state.as_deref(), Some("terminated"), "retired once its replacement serves");
    let (status, _) = h.call(Method::POST, "/groups/web/rollback", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing left to roll back");
    let (status, err) = h.patch("web", json!({"images": {"enabled": true, "keep": 0}})).await;
    assert_eq!((status, err["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("images.keep")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_failing_its_status_checks_in_probation_rolls_the_image_back() {
    let h = Harness::start().await;
    let member = h.standalone("web").latest().policy(json!({"images": {"enabled": true}})).online().await.remove(0);
    let original = image_of(&h, &member).await;
    images_step(&h).await;
    images_step(&h).await;
    let new_image = images_step(&h).await["image"].as_str().unwrap().to_string();
    let replacement = interrupt(&h, &member).await;
    assert_eq!(image_of(&h, &replacement).await, new_image);
    // EC2 says its status checks fail (the emulator cannot).
    let id = replacement.clone();
    h.proxy.on(move |call| {
        (call.operation == "DescribeInstanceStatus").then(|| spotkeeper_tests::proxy::Fault::answer(200, "text/xml", format!(
                "<DescribeInstanceStatusResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d</requestId><instanceStatusSet><item><instanceId>{id}</instanceId><availabilityZone>us-east-1a</availabilityZone><instanceState><code>16</code><name>running</name></instanceState><systemStatus><status>ok</status><details><item><name>reachability</name><status>passed</status></item></details></systemStatus><instanceStatus><status>impaired</status><details><item><name>reachability</name><status>failed</status></item></details></instanceStatus></item></instanceStatusSet></DescribeInstanceStatusResponse>"
            ),
        ))
    });
    h.clock.advance(Duration::minutes(2));
    let run = h.scheduled(None).await.unwrap();
    let probation = &run["groups"][0]["probation"];
    assert_eq!(probation["rolled_back"], new_image.as_str(), "{run}");
    let next = probation["replacements"][0].as_str().unwrap().to_string();
    assert_eq!(image_of(&h, &next).await, original, "replaced from the previous image");
    let web = h.group("web").await;
    assert_eq!(web["status"]["images"][0]["stage"], "bad");
    assert!(web["status"]["images"][0]["note"].as_str().unwrap().contains("status checks"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_never_goes_back_to_a_pruned_image() {
    let h = Harness::start().await;
    h.standalone("web").latest().policy(json!({"images": {"enabled": true, "keep": 1}})).online().await;
    for day in 0..3 {
        assert_eq!(images_step(&h).await["step"], "created", "day {day}");
        images_step(&h).await;
        assert_eq!(images_step(&h).await["step"], "activated", "day {day}");
        h.clock.advance(Duration::hours(24));
    }
    let (status, rolled) = h.call(Method::POST, "/groups/web/rollback", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    let version = rolled["launch_template"]["version"].clone();

    // The version before is the first image's, pruned with keep 1: nothing is left to go back to.
    let (status, refused) = h.call(Method::POST, "/groups/web/rollback", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("nothing left to roll back"), "{refused}");
    let web = h.group("web").await;
    assert_eq!(web["launch_template"]["version"], version, "the group stays where it was");
    // Where the group launches from still exists.
    let active = web["status"]["images"].as_array().unwrap().iter().find(|i| i["stage"] == "active").cloned();
    let active = active.expect("an active image");
    assert_eq!(active["template_version"], version);
    assert!(image_exists(&h, active["image_id"].as_str().unwrap()).await, "{web}");
}
