//! Spot interruption warnings end to end, against the emulator: replace or detach, exactly once,
//! with DNS, Elastic IP and data volume following, and the alerts.

use axum::http::Method;
use serde_json::{Value, json};
use spotkeeper_tests::proxy::{Fault, ec2_error, is_spot_fleet};
use spotkeeper_tests::{Harness, TOKEN, events, member_ids, tag};

const DYNAMODB_500: &str =
    r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#;

/// The emulator's Auto Scaling group `workers`, as AWS describes it.
async fn auto_scaling_group(h: &Harness) -> aws_sdk_autoscaling::types::AutoScalingGroup {
    let out = aws_sdk_autoscaling::Client::new(&h.sdk)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&h.fleet.asg_name)
        .send()
        .await
        .unwrap();
    out.auto_scaling_groups()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_member_is_replaced_and_dns_address_and_volume_follow() {
    let h = Harness::start().await;
    let old = h.standalone("web").latest().with_dns().with_address().with_volume().online().await.remove(0);
    assert_eq!(h.instance(&old).await.subnet_id(), Some(h.fleet.subnet_b.as_str()), "the volume's AZ");
    h.sns_alerts().await;
    h.proxy.forget_calls();

    let out = h.spot_interruption(events::sqs_batch(&[events::spot_warning(&old)])).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}), "{out}");

    // The launch request was the third call: the claim with the lock, and the lookup (with pool
    // health), sent together; then CreateFleet.
    let calls = h.proxy.calls();
    let launch_at = calls.iter().position(|c| c.operation == "CreateFleet").expect("a launch request");
    let before: Vec<&str> = calls[..launch_at].iter().map(|c| c.operation.as_str()).collect();
    assert!(before.len() <= 2, "calls before the launch request: {before:?}");
    // The claim and the instance lock are one transaction.
    assert_eq!(before.iter().filter(|o| **o == "TransactWriteItems").count(), 1, "{before:?}");
    assert_eq!(before.iter().filter(|o| **o == "BatchGetItem").count(), 1, "{before:?}");
    let after: Vec<&str> = calls[launch_at..].iter().map(|c| c.operation.as_str()).collect();
    assert!(after.contains(&"Publish"), "the alert is published, after the launch request: {after:?}");
    assert!(!before.contains(&"Publish"), "no alert before the launch request");
    // How many sequential rounds that makes is timing, measured by `make bench` (BENCHMARKS.md):
    // the two are sent together, so under load one may be answered before the other leaves.

    // A tagged Spot replacement in the other pool of the volume's AZ.
    let web = h.member("web", &old).await.expect("the old member is still listed until it is gone");
    let new = web["interrupted"]["replaced_by"].as_str().expect("replaced_by").to_string();
    assert_eq!(web["interrupted"]["action"], "replaced");
    let replacement = h.instance(&new).await;
    assert_eq!(tag(&replacement, "spotkeeper:group"), Some("web"));
    assert_eq!(tag(&replacement, "spotkeeper:replaces"), Some(old.as_str()));
    assert_eq!(replacement.instance_lifecycle().map(aws_sdk_ec2::types::InstanceLifecycleType::as_str), Some("spot"));
    assert_eq!(replacement.subnet_id(), Some(h.fleet.subnet_b.as_str()));
    assert_eq!(
        replacement.instance_type().map(aws_sdk_ec2::types::InstanceType::as_str),
        Some("m5a.large"),
        "not the interrupted pool m5.large"
    );
    let new_member = h.member("web", &new).await.expect("the replacement is a member");
    assert_eq!(
        (new_member["replaces"]["instance_id"].as_str(), new_member["market"].as_str()),
        (Some(old.as_str()), Some("spot"))
    );

    // Running: DNS and the Elastic IP move to the replacement; the volume waits for the old one.
    let out = h.instance_state(events::state_change(&new, "running")).await.unwrap();
    assert!(out["replaced_in_seconds"].as_f64().is_some(), "{out}");
    assert_eq!(h.web_dns().await, vec![replacement.private_ip_address().unwrap().to_string()]);
    let address = h.ec2().describe_addresses().allocation_ids(&h.fleet.allocation_id).send().await.unwrap();
    assert_eq!(address.addresses()[0].instance_id(), Some(new.as_str()));
    let volume = h.ec2().describe_volumes().volume_ids(&h.fleet.volume_id).send().await.unwrap();
    assert_eq!(volume.volumes()[0].attachments()[0].instance_id(), Some(old.as_str()));

    // The old one terminates: the volume follows, at the same device; the old member is closed.
    h.ec2().terminate_instances().instance_ids(&old).send().await.unwrap();
    let out = h.instance_state(events::state_change(&old, "terminated")).await.unwrap();
    assert_eq!(out["action"], "volumes-moved", "{out}");
    let volume = h.ec2().describe_volumes().volume_ids(&h.fleet.volume_id).send().await.unwrap();
    let attachment = &volume.volumes()[0].attachments()[0];
    assert_eq!((attachment.instance_id(), attachment.device()), (Some(new.as_str()), Some("/dev/sdf")));
    assert!(h.member("web", &old).await.is_none(), "the old member is closed");
    assert!(h.deps.store.group_of(&old).await.unwrap().is_none());

    // Alerts: SNS (filterable attributes, an e-mail subject) and Slack carry the facts.
    let alerts = h.sns_alerts().await;
    let interrupted = alerts
        .iter()
        .find(|a| a.attributes.get("event").map(String::as_str) == Some("interrupted"))
        .expect("an interrupted alert");
    assert_eq!(interrupted.attributes.get("group").map(String::as_str), Some("web"));
    assert_eq!(interrupted.attributes.get("severity").map(String::as_str), Some("warning"));
    assert!(interrupted.subject.len() <= 100 && interrupted.subject.contains(&old), "{}", interrupted.subject);
    for fact in [old.as_str(), new.as_str(), "m5.large", "m5a.large", "replaced", "market: spot"] {
        assert!(interrupted.message.contains(fact), "{fact} missing from {}", interrupted.message);
    }
    let replaced = alerts
        .iter()
        .find(|a| a.attributes.get("event").map(String::as_str) == Some("replaced"))
        .expect("a replaced alert");
    assert!(replaced.subject.contains("replaced by") && replaced.subject.contains(" s"), "{}", replaced.subject);
    assert!(alerts.iter().any(|a| a.attributes.get("event").map(String::as_str) == Some("volume-moved")));
    let slack = h.slack.received();
    let slack_interrupted = slack.iter().find(|r| r.body.contains("interrupted")).expect("a Slack message");
    let body: Value = serde_json::from_str(&slack_interrupted.body).unwrap();
    let text = body.to_string();
    for fact in [old.as_str(), new.as_str(), "m5a.large", "replaced"] {
        assert!(text.contains(fact), "{fact} missing from Slack: {text}");
    }
    assert!(
        text.contains(&format!("console.aws.amazon.com/ec2/home?region=us-east-1#InstanceDetails:instanceId={new}")),
        "a console link: {text}"
    );
    assert_eq!(body["blocks"][0]["type"], "header", "Block Kit, headed by the severity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spot_capacity_anywhere_means_an_on_demand_replacement_marked_fallen_back() {
    let h = Harness::start().await;
    let old = h.standalone("web").latest().with_dns().with_address().online().await.remove(0);
    h.sns_alerts().await;
    // Every Spot pool answers "no capacity" inside the instant fleet's 200 response.
    h.no_spot_capacity();
    let out = h.spot_interruption(events::spot_warning(&old)).await.unwrap();
    assert_eq!(
        (out["action"].as_str(), out["market"].as_str(), out["fallen_back"].as_bool()),
        (Some("replaced"), Some("on-demand"), Some(true)),
        "{out}"
    );
    let new = out["replacement"].as_str().unwrap().to_string();
    assert_eq!(h.instance(&new).await.instance_lifecycle(), None, "On-Demand has no lifecycle");
    let shown = h.member("web", &new).await.unwrap();
    assert_eq!((shown["fallen_back"].as_bool(), shown["market"].as_str()), (Some(true), Some("on-demand")));
    let alerts = h.sns_alerts().await;
    let fallback = alerts
        .iter()
        .find(|a| a.attributes.get("event").map(String::as_str) == Some("fallback"))
        .expect("a fallback alert");
    assert!(
        fallback.subject.contains("On-Demand") && fallback.message.contains("InsufficientInstanceCapacity"),
        "{fallback:?}"
    );
    // The pools that had no capacity are avoided for a while.
    let (_, health) = h.deps.store.lookups(&[]).await.unwrap();
    assert!(health.avoid_until.contains_key(&format!("m5a.large|{}", h.fleet.subnet_b)), "{health:?}");
    assert!(
        health.avoid_until.contains_key(&format!("m5.large|{}", h.fleet.subnet_a)),
        "the interrupted pool: {health:?}"
    );
    // The group is in fallback, and recovery is scheduled after the cooldown.
    let group = h.group("web").await;
    assert!(group["status"]["fallback"]["since"].is_string(), "{group}");
    assert!(group["status"]["recovery"]["next_attempt_at"].is_string(), "{group}");

    // The same through an API error (as RunInstances-style calls report it).
    h.proxy.clear_rules();
    h.proxy.on(|call| {
        is_spot_fleet(call).then(|| {
            Fault::answer(
                500,
                "text/xml",
                ec2_error("InsufficientInstanceCapacity", "We currently do not have sufficient capacity."),
            )
        })
    });
    h.instance_state(events::state_change(&new, "running")).await.unwrap();
    let out = h.spot_interruption(events::spot_warning(&new)).await.unwrap();
    assert_eq!((out["market"].as_str(), out["fallen_back"].as_bool()), (Some("on-demand"), Some(true)), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asg_members_are_detached_without_decrement_in_one_call() {
    let h = Harness::start().await;
    let (_, asg) = h.register_workers().await;
    let ids: Vec<String> =
        asg["members"].as_array().unwrap().iter().map(|m| m["instance_id"].as_str().unwrap().to_string()).collect();
    h.proxy.forget_calls();
    let batch = events::sqs_batch(&ids.iter().map(|id| events::spot_warning(id)).collect::<Vec<_>>());
    let out = h.spot_interruption(batch).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(h.proxy.count("DetachInstances"), 1, "two warnings of one ASG, one call");
    let group = auto_scaling_group(&h).await;
    assert_eq!(group.desired_capacity(), Some(2), "desired capacity kept");
    let now: Vec<&str> = group.instances().iter().filter_map(|i| i.instance_id()).collect();
    assert_eq!(now.len(), 2, "the ASG launched replacements: {now:?}");
    assert!(ids.iter().all(|id| !now.contains(&id.as_str())), "the warned instances are out of the group");
    let workers = h.group("workers").await;
    assert!(
        workers["members"].as_array().unwrap().iter().all(|m| m["interrupted"]["action"] == "detached"),
        "{workers}"
    );
}

/// AWS's answer to a detach that names `id` when it cannot detach it: the whole call refused,
/// that one instance named (the emulator refuses nothing).
fn refuse_detach(h: &Harness, id: &str, why: String) {
    let id = id.to_string();
    h.proxy.on(move |call| {
        let refused = call.operation == "DetachInstances" && call.body.contains(&id);
        refused.then(|| {
            Fault::answer(
                400,
                "text/xml",
                format!("<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code><Message>The instance {id} {why}.</Message></Error><RequestId>5f2f6c4e-0c8e-4bd5-9d4f-1f2e3d4c5b6a</RequestId></ErrorResponse>"),
            )
        })
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detach_sent_again_skips_the_instances_already_out_of_the_group() {
    let h = Harness::start().await;
    let (_, asg) = h.register_workers().await;
    let ids = member_ids(&asg);
    let autoscaling = aws_sdk_autoscaling::Client::new(&h.sdk);
    // The first detach went through, its answer lost: the first instance is out already.
    autoscaling
        .detach_instances()
        .auto_scaling_group_name(&h.fleet.asg_name)
        .instance_ids(&ids[0])
        .should_decrement_desired_capacity(false)
        .send()
        .await
        .unwrap();
    // AWS refuses a detach naming an instance that is not in the group (the emulator does not).
    refuse_detach(&h, &ids[0], format!("is not part of Auto Scaling group {}", h.fleet.asg_name));
    h.proxy.forget_calls();
    let batch = events::sqs_batch(&ids.iter().map(|id| events::spot_warning(id)).collect::<Vec<_>>());
    let out = h.spot_interruption(batch).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}), "both warnings done");
    let calls = h.proxy.calls();
    let detaches: Vec<&str> =
        calls.iter().filter(|c| c.operation == "DetachInstances").map(|c| c.body.as_str()).collect();
    assert_eq!(detaches.len(), 2, "refused, then sent again without the instance already out");
    assert!(!detaches[1].contains(&ids[0]) && detaches[1].contains(&ids[1]), "{detaches:?}");
    let group =
        autoscaling.describe_auto_scaling_groups().auto_scaling_group_names(&h.fleet.asg_name).send().await.unwrap();
    let now: Vec<&str> = group.auto_scaling_groups()[0].instances().iter().filter_map(|i| i.instance_id()).collect();
    assert!(ids.iter().all(|id| !now.contains(&id.as_str())), "both out of the group: {now:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_cannot_be_detached_fails_alone() {
    let h = Harness::start().await;
    let (_, asg) = h.register_workers().await;
    let ids = member_ids(&asg);
    // AWS refuses the whole call for one instance that is neither InService nor Standby.
    let (stuck, asg_name) = (ids[0].clone(), h.fleet.asg_name.clone());
    refuse_detach(&h, &stuck, "is not in InService or Standby".to_string());
    h.proxy.forget_calls();
    let batch = events::sqs_batch(&ids.iter().map(|id| events::spot_warning(id)).collect::<Vec<_>>());
    let out = h.spot_interruption(batch).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": [{"itemIdentifier": "m-0"}]}), "only the stuck one comes back");
    let detaches: Vec<String> =
        h.proxy.calls().iter().filter(|c| c.operation == "DetachInstances").map(|c| c.body.clone()).collect();
    assert_eq!(detaches.len(), 2, "refused, then the others at once: {detaches:?}");
    assert!(!detaches[1].contains(&stuck) && detaches[1].contains(&ids[1]), "{detaches:?}");
    let group = aws_sdk_autoscaling::Client::new(&h.sdk)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&asg_name)
        .send()
        .await
        .unwrap();
    let now: Vec<&str> = group.auto_scaling_groups()[0].instances().iter().filter_map(|i| i.instance_id()).collect();
    assert!(now.contains(&stuck.as_str()) && !now.contains(&ids[1].as_str()), "{now:?}");
    let (_, events) = h.call(Method::GET, "/groups/workers/events", Some(TOKEN), None).await;
    let of = |id: &str, kind: &str| {
        events["events"].as_array().unwrap().iter().any(|e| e["instance_id"] == id && e["kind"] == kind)
    };
    assert!(of(&ids[1], "detached") && !of(&ids[1], "interruption-failed"), "{events}");
    let failure = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["instance_id"] == stuck.as_str() && e["kind"] == "interruption-failed")
        .unwrap_or_else(|| panic!("no failure recorded for {stuck}: {events}"));
    assert!(failure["message"].as_str().unwrap().contains("not in InService or Standby"), "{failure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_three_times_at_once_acts_once() {
    let h = Harness::start().await;
    let old = h.standalone("web").latest().with_dns().with_address().online().await.remove(0);
    let before = h.instance_count().await;
    h.proxy.forget_calls();
    let warning = events::spot_warning(&old);
    let (a, b, c) = tokio::join!(
        h.spot_interruption(warning.clone()),
        h.spot_interruption(events::sqs_batch(std::slice::from_ref(&warning))),
        h.spot_interruption(warning.clone()),
    );
    let actions: Vec<String> = [a.unwrap(), b.unwrap(), c.unwrap()]
        .iter()
        .map(|o| {
            o["action"]
                .as_str()
                .unwrap_or(if o == &json!({"batchItemFailures": []}) { "sqs-ok" } else { "?" })
                .to_string()
        })
        .collect();
    assert_eq!(h.proxy.count("CreateFleet"), 1, "one launch request: {actions:?}");
    assert_eq!(h.instance_count().await, before + 1, "one replacement");
    // A later redelivery, after the first finished, does nothing either.
    let again = h.spot_interruption(warning).await.unwrap();
    assert_eq!(again["action"], "duplicate");
    assert_eq!(h.instance_count().await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_instances_and_malformed_messages_change_nothing() {
    let h = Harness::start().await;
    h.standalone("web").latest().with_dns().with_address().online().await;
    h.proxy.forget_calls();
    let items = h.table_items().await;
    let instances = h.instance_count().await;
    let out = h.spot_interruption(events::spot_warning("i-0fffffffffffffff0")).await.unwrap();
    assert_eq!(out["action"], "ignored");
    let mut batch = events::sqs_batch(&[
        events::spot_warning("i-0ffffffffffffff01"),
        events::load("malformed/spot-interruption-no-instance-id.json"),
    ]);
    batch["Records"].as_array_mut().unwrap().push(json!({"messageId": "m-garbage", "body": "not json at all"}));
    // Messages that can never succeed are acknowledged, not delivered again five times.
    let out = h.spot_interruption(batch).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    let err = h.spot_interruption(events::load("malformed/spot-interruption-no-instance-id.json")).await.unwrap_err();
    assert!(err.to_string().contains("instance-id"), "{err}");
    // Ids of any other shape are malformed input: refused, never looked up.
    let long = format!("i-{}", "0".repeat(200_000));
    let bad = ["not-an-instance-id; DROP TABLE", "../../etc/passwd", "vol-0123456789abcdef0", long.as_str()];
    h.proxy.forget_calls();
    let out = h.spot_interruption(events::sqs_batch(&bad.map(events::spot_warning))).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}), "acknowledged");
    assert!(h.proxy.calls().is_empty(), "no AWS call for them: {:?}", h.proxy.calls().first());
    for id in bad {
        let err = h.spot_interruption(events::spot_warning(id)).await.unwrap_err();
        assert!(err.to_string().contains("not an EC2 instance id") && err.to_string().len() < 400, "{err}");
    }
    assert_eq!(h.table_items().await, items, "nothing written");
    assert_eq!(h.instance_count().await, instances, "nothing launched");
    assert_eq!(h.proxy.count("CreateFleet") + h.proxy.count("DetachInstances"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_warnings_for_one_group_share_one_launch_request() {
    let h = Harness::start().await;
    let web = h.standalone("web").template_by_name().capacity(3).register().await;
    let ids = member_ids(&web);
    h.proxy.forget_calls();
    let out = h
        .spot_interruption(events::sqs_batch(&ids.iter().map(|id| events::spot_warning(id)).collect::<Vec<_>>()))
        .await
        .unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(h.proxy.count("CreateFleet"), 1, "three replacements, one request");
    assert_eq!(h.proxy.count("CreateTags"), 0, "and no tag call per replacement");
    let web = h.group("web").await;
    let members = web["members"].as_array().unwrap();
    assert_eq!(members.len(), 6, "{web}");
    for old in &ids {
        let new = members.iter().find(|m| m["instance_id"] == old.as_str()).unwrap()["interrupted"]["replaced_by"]
            .as_str()
            .unwrap()
            .to_string();
        let replacement = members.iter().find(|m| m["instance_id"] == new.as_str()).unwrap();
        assert_eq!(replacement["replaces"]["instance_id"], old.as_str(), "each replacement names its own");
        assert_eq!(tag(&h.instance(&new).await, "spotkeeper:group"), Some("web"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_the_claim_does_not_lose_the_warning() {
    let h = Harness::start().await;
    let old = h.standalone("web").latest().with_dns().with_address().online().await.remove(0);
    // The claim reaches the table, but its answer is lost: the SDK tries again, and that retry
    // must find its own claim, not stand aside as if another delivery held it.
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = lost.clone();
    h.proxy.on(move |call| {
        let first = call.operation == "TransactWriteItems" && !once.swap(true, std::sync::atomic::Ordering::SeqCst);
        first.then(|| Fault::lost(500, "application/x-amz-json-1.0", DYNAMODB_500.into()))
    });
    let before = h.instance_count().await;
    let out = h.spot_interruption(events::spot_warning(&old)).await.unwrap();
    assert!(lost.load(std::sync::atomic::Ordering::SeqCst), "the first claim's answer was lost");
    assert_eq!(out["action"], "replaced", "{out}");
    assert_eq!(h.instance_count().await, before + 1, "one replacement, not none");
    let claims =
        h.proxy.calls().iter().filter(|c| c.operation == "TransactWriteItems" && c.body.contains("DEDUP#")).count();
    assert_eq!(claims, 2, "the SDK retried the claim once");
}

/// The kinds of a group's history, newest first, as the API pages it.
async fn kinds(h: &Harness, group: &str) -> Vec<String> {
    let (_, page) = h.call(Method::GET, &format!("/groups/{group}/events?limit=100"), Some(TOKEN), None).await;
    page["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_read_newest_first_shows_what_was_done_above_the_warning() {
    let h = Harness::start().await;
    let old = h.standalone("web").latest().with_dns().with_address().online().await.remove(0);
    h.spot_interruption(events::sqs_batch(&[events::spot_warning(&old)])).await.unwrap();
    let web = kinds(&h, "web").await;
    let at = |kind: &str| web.iter().position(|k| k == kind).unwrap_or_else(|| panic!("{kind} in {web:?}"));
    assert!(at("replacement-launched") < at("interrupted"), "the warning came first: {web:?}");

    let (_, registered) = h.register_workers().await;
    let id = registered["members"][0]["instance_id"].as_str().unwrap().to_string();
    h.spot_interruption(events::sqs_batch(&[events::spot_warning(&id)])).await.unwrap();
    let workers = kinds(&h, "workers").await;
    let at = |kind: &str| workers.iter().position(|k| k == kind).unwrap_or_else(|| panic!("{kind} in {workers:?}"));
    assert!(at("detached") < at("interrupted"), "the warning came first: {workers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_member_shows_as_leaving_and_the_asg_replacement_as_a_member_once_it_runs() {
    let h = Harness::start().await;
    let (_, registered) = h.register_workers().await;
    let ids = spotkeeper_tests::member_ids(&registered);
    assert!(registered["members"].as_array().unwrap().iter().all(|m| m["leaving"] == false), "{registered}");
    h.spot_interruption(events::sqs_batch(&[events::spot_warning(&ids[0])])).await.unwrap();
    let (_, workers) = h.call(Method::GET, "/groups/workers", Some(TOKEN), None).await;
    let members = workers["members"].as_array().unwrap();
    let leaving: Vec<&str> =
        members.iter().filter(|m| m["leaving"] == true).filter_map(|m| m["instance_id"].as_str()).collect();
    assert_eq!(leaving, [ids[0].as_str()], "the detached instance is on its way out: {workers}");

    // The scheduled reconcile makes the ASG's replacement a member.
    h.scheduled(None).await.unwrap();
    let in_asg: Vec<String> =
        auto_scaling_group(&h).await.instances().iter().filter_map(|i| i.instance_id().map(str::to_string)).collect();
    let replacement = in_asg.iter().find(|id| !ids.contains(id)).expect("the ASG launched a replacement");
    let (_, workers) = h.call(Method::GET, "/groups/workers", Some(TOKEN), None).await;
    let member = workers["members"].as_array().unwrap().iter().find(|m| m["instance_id"] == replacement.as_str());
    assert!(member.is_some_and(|m| m["leaving"] == false), "{replacement} is a serving member: {workers}");
}
