//! Rebalance recommendations, On-Demand fallback and the way back to Spot, and the reconcile,
//! against the emulator. Time moves by the test clock, never by sleeping.

use axum::http::{Method, StatusCode};
use chrono::Duration;
use serde_json::json;
use spotkeeper_tests::{Harness, TOKEN, events, member_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_replace_switches_dns_before_the_old_instance_goes() {
    let h = Harness::start().await;
    let old = h.standalone("web").latest().capacity(1).with_dns().with_address().with_volume().online().await.remove(0);
    let out = h.rebalance(events::rebalance(&old)).await.unwrap();
    assert_eq!(out["action"], "replacing", "{out}");
    let new = out["replacement"].as_str().unwrap().to_string();
    assert_eq!(h.ec2_state(&old).await, "running", "launch before terminate");
    let web = h.group("web").await;
    assert_eq!(member_in(&web, &old).unwrap()["retiring"]["replaced_by"], new.as_str());
    assert_eq!(web["status"]["rebalance_in_flight"], old.as_str());

    // The replacement runs: DNS and the address move to it, and only then is the old one
    // stopped (it holds a data volume) — not terminated yet.
    let out = h.instance_state(events::state_change(&new, "running")).await.unwrap();
    assert_eq!(out["retiring"], old.as_str(), "{out}");
    let new_ip = h.ec2().describe_instances().instance_ids(&new).send().await.unwrap().reservations()[0].instances()[0]
        .private_ip_address()
        .unwrap()
        .to_string();
    assert_eq!(h.web_dns().await, vec![new_ip]);
    assert_eq!(h.ec2_state(&old).await, "stopped", "stopped to move its volume, after the switch");

    // Stopped: the volume moves, and the old one is terminated.
    let out = h.instance_state(events::state_change(&old, "stopped")).await.unwrap();
    assert_eq!(out["action"], "volumes-moved", "{out}");
    let volume = h.ec2().describe_volumes().volume_ids(&h.fleet.volume_id).send().await.unwrap();
    assert_eq!(volume.volumes()[0].attachments()[0].instance_id(), Some(new.as_str()));
    assert_eq!(h.ec2_state(&old).await, "terminated");
    h.instance_state(events::state_change(&old, "terminated")).await.unwrap();
    let web = h.group("web").await;
    assert!(member_in(&web, &old).is_none(), "closed");
    assert!(web["status"]["rebalance_in_flight"].is_null(), "the group's rebalance slot is free: {web}");
    let alerts = h.sns_alerts().await;
    let replacing = alerts
        .iter()
        .find(|a| a.attributes.get("event").map(String::as_str) == Some("rebalance-replacing"))
        .expect("an alert");
    assert!(
        replacing.message.contains("short outage"),
        "the alert says moving volumes costs an outage: {}",
        replacing.message
    );

    // An interruption warning for the new instance while a rebalance replacement is in flight
    // for it launches one replacement, not two.
    let out = h.rebalance(events::rebalance(&new)).await.unwrap();
    assert_eq!(out["action"], "replacing");
    let before = h.instance_count().await;
    let out = h.spot_interruption(events::spot_warning(&new)).await.unwrap();
    assert_eq!(out["action"], "already-replacing", "{out}");
    assert_eq!(h.instance_count().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_notify_and_off_change_nothing_and_duplicates_do_nothing() {
    let h = Harness::start().await;
    let ids = h.standalone("web").latest().capacity(2).online().await;
    let (status, patched) = h.patch("web", json!({"rebalance": "notify"})).await;
    assert_eq!((status, patched["policy"]["rebalance"].as_str()), (StatusCode::OK, Some("notify")), "{patched}");
    h.sns_alerts().await;
    let instances = h.instance_count().await;
    let recommendation = events::rebalance(&ids[0]);
    let out = h.rebalance(recommendation.clone()).await.unwrap();
    assert_eq!(out["action"], "notified");
    let again = h.rebalance(recommendation).await.unwrap();
    assert_eq!(again["action"], "duplicate");
    assert_eq!(h.instance_count().await, instances, "notify launches nothing");
    let alerts = h.sns_alerts().await;
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a.attributes.get("event").map(String::as_str) == Some("rebalance-recommended"))
            .count(),
        1
    );
    assert!(member_in(&h.group("web").await, &ids[0]).unwrap()["retiring"].is_null());

    h.patch("web", json!({"rebalance": "off"})).await;
    let out = h.rebalance(events::rebalance(&ids[1])).await.unwrap();
    assert_eq!(out["action"], "recorded");
    assert!(h.sns_alerts().await.is_empty(), "off alerts nobody");
    assert_eq!(h.instance_count().await, instances);

    // One rebalance replacement in flight per group: the second waits.
    h.patch("web", json!({"rebalance": "replace"})).await;
    let first = h.rebalance(events::rebalance(&ids[0])).await.unwrap();
    assert_eq!(first["action"], "replacing", "{first}");
    let second = h.rebalance(events::rebalance(&ids[1])).await.unwrap();
    assert_eq!(
        (second["action"].as_str(), second["in_flight"].as_str()),
        (Some("deferred"), Some(ids[0].as_str())),
        "{second}"
    );
    assert_eq!(h.instance_count().await, instances + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallen_back_member_returns_to_spot_after_the_cooldown_with_doubling_backoff() {
    let h = Harness::start().await;
    let old = h.standalone("web").latest().capacity(1).online().await.remove(0);
    h.no_spot_capacity();
    let out = h.spot_interruption(events::spot_warning(&old)).await.unwrap();
    let on_demand = out["replacement"].as_str().unwrap().to_string();
    assert_eq!(out["fallen_back"], true);
    h.instance_state(events::state_change(&on_demand, "running")).await.unwrap();
    h.ec2().terminate_instances().instance_ids(&old).send().await.unwrap();
    h.instance_state(events::state_change(&old, "terminated")).await.unwrap();
    let web = h.group("web").await;
    let first_attempt =
        chrono::DateTime::parse_from_rfc3339(web["status"]["recovery"]["next_attempt_at"].as_str().unwrap()).unwrap();

    // Before the cooldown: nothing happens.
    h.proxy.forget_calls();
    h.clock.advance(Duration::minutes(10));
    let run = h.scheduled(None).await.unwrap();
    assert_eq!(run["groups"][0]["recovery"]["step"], "wait", "{run}");
    assert_eq!(h.proxy.count("CreateFleet"), 0);
    assert_eq!(h.proxy.count("DescribeInstances"), 1, "one listing per run");

    // Spot still has no capacity: attempts come 15m, 30m, 60m, 2h, 4h, 4h apart.
    h.clock.set(first_attempt.with_timezone(&chrono::Utc));
    let mut gaps = Vec::new();
    for _ in 0..6 {
        let run = h.scheduled(None).await.unwrap();
        let recovery = &run["groups"][0]["recovery"];
        assert_eq!(recovery["step"], "failed", "{run}");
        let next = chrono::DateTime::parse_from_rfc3339(recovery["next_attempt_at"].as_str().unwrap()).unwrap();
        let now = h.clock.as_ref();
        let gap = (next.with_timezone(&chrono::Utc) - spotkeeper::clock::Clock::now(now)).num_minutes();
        gaps.push(gap + 1);
        // A run just before the next attempt does nothing.
        h.clock.set(next.with_timezone(&chrono::Utc) - Duration::seconds(5));
        assert_eq!(h.scheduled(None).await.unwrap()["groups"][0]["recovery"]["step"], "wait");
        h.clock.set(next.with_timezone(&chrono::Utc));
    }
    assert_eq!(gaps, vec![15, 30, 60, 120, 240, 240]);
    assert!(
        h.sns_alerts().await.iter().any(|a| a.attributes.get("event").map(String::as_str) == Some("recovery-failed"))
    );

    // Spot is back: a Spot replacement, then the switch, then the On-Demand one goes.
    h.proxy.clear_rules();
    let run = h.scheduled(None).await.unwrap();
    let recovery = &run["groups"][0]["recovery"];
    assert_eq!(recovery["step"], "replacing", "{run}");
    let spot = recovery["replacement"].as_str().unwrap().to_string();
    let instance =
        h.ec2().describe_instances().instance_ids(&spot).send().await.unwrap().reservations()[0].instances()[0].clone();
    assert_eq!(instance.instance_lifecycle().map(aws_sdk_ec2::types::InstanceLifecycleType::as_str), Some("spot"));
    assert_eq!(h.ec2_state(&on_demand).await, "running", "the On-Demand one serves until the Spot one does");
    assert_eq!(h.scheduled(None).await.unwrap()["groups"][0]["recovery"]["step"], "in-flight");
    h.instance_state(events::state_change(&spot, "running")).await.unwrap();
    assert_eq!(h.ec2_state(&on_demand).await, "terminated");
    let web = h.group("web").await;
    assert!(web["status"]["fallback"].is_null(), "the fallback is over: {web}");
    assert_eq!(web["status"]["recovery"]["failed_attempts"], 0);
    assert!(h.sns_alerts().await.iter().any(|a| a.attributes.get("event").map(String::as_str) == Some("recovered")));
    h.instance_state(events::state_change(&on_demand, "terminated")).await.unwrap();
    let web = h.group("web").await;
    assert_eq!(web["members"].as_array().unwrap().len(), 1);
    assert_eq!(
        (web["members"][0]["instance_id"].as_str(), web["members"][0]["market"].as_str()),
        (Some(spot.as_str()), Some("spot"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asg_falls_back_by_raising_its_on_demand_share_and_recovery_restores_it() {
    let h = Harness::start().await;
    h.proxy.forget_calls();
    let (status, _) = h.register_workers().await;
    assert_eq!(status, StatusCode::CREATED);
    let rebalancing = h
        .proxy
        .calls()
        .into_iter()
        .find(|c| c.operation == "UpdateAutoScalingGroup")
        .expect("Capacity Rebalancing turned on");
    assert!(rebalancing.body.contains("CapacityRebalance=true"), "{}", rebalancing.body);
    let autoscaling = aws_sdk_autoscaling::Client::new(&h.sdk);
    let share = |g: &aws_sdk_autoscaling::types::AutoScalingGroup| {
        g.mixed_instances_policy()
            .and_then(aws_sdk_autoscaling::types::MixedInstancesPolicy::instances_distribution)
            .and_then(aws_sdk_autoscaling::types::InstancesDistribution::on_demand_percentage_above_base_capacity)
    };
    let describe = || autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(&h.fleet.asg_name).send();
    assert_eq!(share(&describe().await.unwrap().auto_scaling_groups()[0]), Some(0));

    let out = h.scheduled(Some(events::launch_unsuccessful(&h.fleet.asg_name))).await.unwrap();
    assert_eq!(out["action"], "fallback", "{out}");
    assert_eq!(share(&describe().await.unwrap().auto_scaling_groups()[0]), Some(100), "desired capacity met On-Demand");
    let workers = h.group("workers").await;
    assert_eq!(workers["status"]["fallback"]["restore"], json!({"base": 0, "percent_above_base": 0}));
    // A second failure changes nothing more.
    let again = h.scheduled(Some(events::launch_unsuccessful(&h.fleet.asg_name))).await.unwrap();
    assert_eq!(again["action"], "none");

    h.clock.advance(Duration::minutes(46));
    let run = h.scheduled(None).await.unwrap();
    assert_eq!(run["groups"][0]["recovery"]["step"], "restored", "{run}");
    assert_eq!(share(&describe().await.unwrap().auto_scaling_groups()[0]), Some(0), "the recorded share is back");
    assert!(h.group("workers").await["status"]["fallback"].is_null());
    // A failure that is not about capacity is recorded, not a fallback.
    let mut other = events::launch_unsuccessful(&h.fleet.asg_name);
    other["detail"]["StatusMessage"] = json!("The security group 'sg-0123' does not exist.");
    assert_eq!(h.scheduled(Some(other)).await.unwrap()["action"], "recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_replaces_what_vanished_with_one_listing() {
    let h = Harness::start().await;
    let ids = h.standalone("web").latest().capacity(2).online().await;
    h.register_workers().await;
    // Terminated behind spotkeeper's back: no event arrives.
    h.ec2().terminate_instances().instance_ids(&ids[0]).send().await.unwrap();
    h.proxy.forget_calls();
    let run = h.scheduled(None).await.unwrap();
    assert_eq!(h.proxy.count("DescribeInstances"), 1, "one tag-filtered listing: {run}");
    let web_run = run["groups"].as_array().unwrap().iter().find(|g| g["group"] == "web").unwrap().clone();
    assert_eq!(web_run["reconcile"]["closed"], json!([ids[0]]), "{run}");
    let launched = web_run["reconcile"]["launched"].as_array().unwrap();
    assert_eq!(launched.len(), 1, "{run}");
    let web = h.group("web").await;
    let members: Vec<&str> =
        web["members"].as_array().unwrap().iter().map(|m| m["instance_id"].as_str().unwrap()).collect();
    assert_eq!(members.len(), 2);
    assert!(members.contains(&ids[1].as_str()) && !members.contains(&ids[0].as_str()));
    assert_eq!(member_in(&web, launched[0].as_str().unwrap()).unwrap()["replaces"]["reason"], "reconcile");

    // An Auto Scaling group's new instances (launched after a detach) become members.
    let workers = h.group("workers").await;
    let detached = workers["members"][0]["instance_id"].as_str().unwrap().to_string();
    h.spot_interruption(events::spot_warning(&detached)).await.unwrap();
    let run = h.scheduled(None).await.unwrap();
    let workers_run = run["groups"].as_array().unwrap().iter().find(|g| g["group"] == "workers").unwrap().clone();
    assert_eq!(workers_run["reconcile"]["adopted"].as_array().map(Vec::len), Some(1), "{run}");
    // Nothing left to do: the next run changes nothing.
    let quiet = h.scheduled(None).await.unwrap();
    assert!(quiet["groups"].as_array().unwrap().iter().all(|g| g["reconcile"]["drift"] == false), "{quiet}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_and_an_interruption_at_once_make_one_replacement() {
    let h = Harness::start().await;
    let old = h.standalone("web").latest().capacity(1).online().await.remove(0);
    h.no_spot_capacity();
    let on_demand =
        h.spot_interruption(events::spot_warning(&old)).await.unwrap()["replacement"].as_str().unwrap().to_string();
    h.instance_state(events::state_change(&on_demand, "running")).await.unwrap();
    h.ec2().terminate_instances().instance_ids(&old).send().await.unwrap();
    h.instance_state(events::state_change(&old, "terminated")).await.unwrap();
    h.proxy.clear_rules();
    h.clock.advance(Duration::minutes(46));
    h.proxy.forget_calls();
    let (run, warned) = tokio::join!(h.scheduled(None), h.spot_interruption(events::spot_warning(&on_demand)));
    let (run, warned) = (run.unwrap(), warned.unwrap());
    assert_eq!(h.proxy.count("CreateFleet"), 1, "exactly one replacement: {run} / {warned}");
    let acted = [run["groups"][0]["recovery"]["step"] == "replacing", warned["action"] == "replaced"];
    assert_eq!(acted.iter().filter(|a| **a).count(), 1, "{run} / {warned}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_are_checked_and_reach_the_lookups() {
    let h = Harness::start().await;
    let ids = h.standalone("web").latest().capacity(2).online().await;
    for (body, field) in [
        (json!({"rebalance": "sometimes"}), "rebalance"),
        (json!({"colour": "red"}), "colour"),
        (json!({"recovery": {"cooldown": "5s"}}), "recovery.cooldown"),
        (json!({"recovery": {"backoff_base": "5h", "backoff_max": "4h"}}), "recovery.backoff_base"),
        (json!({"recovery": {"windows": [{"start": "25:00", "end": "06:00"}]}}), "recovery.windows"),
        (json!({"on_demand_base": 3}), "on_demand_base"),
    ] {
        let (status, err) = h.patch("web", body.clone()).await;
        assert_eq!((status, err["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {err}");
    }
    let (status, _) = h.patch("nope", json!({"fallback": false})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, web) = h
        .call(Method::PATCH, "/groups/web", Some(TOKEN), Some(json!({"fallback": false, "recovery": {"cooldown": "10m", "windows": [{"start": "22:00", "end": "06:00"}]}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{web}");
    assert_eq!(
        (web["policy"]["fallback"].as_bool(), web["policy"]["recovery"]["cooldown"].as_str()),
        (Some(false), Some("10m"))
    );
    // The interruption path reads the policy from the lookups: they carry the change.
    let (lookups, _) = h.deps.store.lookups(&ids).await.unwrap();
    assert!(lookups.values().all(|l| !l.config.policy.fallback && l.config.policy.recovery.cooldown.as_secs() == 600));
    h.register_workers().await;
    let (status, err) = h.patch("workers", json!({"rebalance": "replace"})).await;
    assert_eq!((status, err["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("rebalance")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_on_demand_base_is_kept_by_what_spotkeeper_launches() {
    let h = Harness::start().await;
    let ids = h.standalone("web").latest().capacity(2).online().await;
    let (status, _) = h.patch("web", json!({"on_demand_base": 1})).await;
    assert_eq!(status, StatusCode::OK);
    h.ec2().terminate_instances().instance_ids(&ids[0]).send().await.unwrap();
    let run = h.scheduled(None).await.unwrap();
    let launched = run["groups"][0]["reconcile"]["launched"][0].as_str().expect("a replacement").to_string();
    let web = h.group("web").await;
    let new = member_in(&web, &launched).unwrap();
    assert_eq!((new["market"].as_str(), new["fallen_back"].as_bool()), (Some("on-demand"), Some(false)), "{web}");
    // On-Demand by choice, not for lack of Spot: recovery leaves it be.
    h.clock.advance(Duration::hours(1));
    assert_eq!(h.scheduled(None).await.unwrap()["groups"][0]["recovery"]["step"], "nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_and_interruption_replacements_keep_the_on_demand_base() {
    let h = Harness::start().await;
    let ids = h.standalone("web").latest().capacity(2).online().await;
    let (status, _) = h.patch("web", json!({"on_demand_base": 1})).await;
    assert_eq!(status, StatusCode::OK);
    // Both members run on Spot: the base is not met, so the first replacement goes On-Demand.
    let out = h.rebalance(events::rebalance(&ids[0])).await.unwrap();
    assert_eq!((out["action"].as_str(), out["market"].as_str()), (Some("replacing"), Some("on-demand")), "{out}");
    let by_rebalance = out["replacement"].as_str().unwrap().to_string();
    let web = h.group("web").await;
    assert_eq!(member_in(&web, &by_rebalance).unwrap()["fallen_back"], false, "On-Demand by choice: {web}");
    // Now the base is held: the other Spot member's replacement stays on Spot.
    let out = h.spot_interruption(events::spot_warning(&ids[1])).await.unwrap();
    assert_eq!((out["action"].as_str(), out["market"].as_str()), (Some("replaced"), Some("spot")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_scaling_activities_make_an_asg_fall_back_too() {
    let h = Harness::start().await;
    h.register_workers().await;
    let quiet = h.scheduled(None).await.unwrap();
    assert_eq!(quiet["groups"][0]["scaling_activities"]["checked"], true, "{quiet}");
    // Auto Scaling reports a Spot launch that failed for lack of capacity (the emulator cannot).
    let at = spotkeeper::clock::Clock::now(h.clock.as_ref()).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let asg = h.fleet.asg_name.clone();
    h.proxy.on(move |call| {
        (call.operation == "DescribeScalingActivities").then(|| spotkeeper_tests::proxy::Fault::answer(200, "text/xml", format!(
                "<DescribeScalingActivitiesResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><DescribeScalingActivitiesResult><Activities><member><ActivityId>0c7a8b9d-1e2f-3a4b-5c6d-7e8f9a0b1c2d</ActivityId><AutoScalingGroupName>{asg}</AutoScalingGroupName><Cause>At {at} an instance was started in response to a difference between desired and actual capacity.</Cause><Description>Launching a new EC2 instance.  Status Reason: Could not launch Spot Instances.</Description><StartTime>{at}</StartTime><EndTime>{at}</EndTime><StatusCode>Failed</StatusCode><StatusMessage>Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity available that matches your request. Launching EC2 instance failed.</StatusMessage><Progress>100</Progress></member></Activities></DescribeScalingActivitiesResult><ResponseMetadata><RequestId>5f2f6c4e-0c8e-4bd5-9d4f-1f2e3d4c5b6a</RequestId></ResponseMetadata></DescribeScalingActivitiesResponse>"
            ),
        ))
    });
    let run = h.scheduled(None).await.unwrap();
    assert_eq!(run["groups"][0]["scaling_activities"]["action"], "fallback", "{run}");
    let workers = h.group("workers").await;
    assert_eq!(workers["status"]["fallback"]["restore"], json!({"base": 0, "percent_above_base": 0}), "{workers}");
}
