//! Registering groups through the `api` function, against the emulator.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use spotkeeper_tests::proxy::access_denied;
use spotkeeper_tests::{Harness, Standalone, TOKEN, member_ids, messages_of};

/// The standalone group `web` with everything that follows its instance: DNS record, Elastic IP
/// and data volume.
fn web_with_all(h: &Harness) -> Standalone<'_> {
    h.standalone("web").latest().capacity(1).with_dns().with_address().with_volume()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_kinds_register_and_the_standalone_instance_comes_online() {
    let h = Harness::start().await;

    let (status, asg) = h.register_workers().await;
    assert_eq!(status, StatusCode::CREATED, "{asg}");
    assert_eq!(asg["kind"], "asg");
    assert_eq!(asg["members"].as_array().unwrap().len(), 2, "{asg}");

    let web = web_with_all(&h).register().await;
    let members = web["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{web}");
    let id = members[0]["instance_id"].as_str().unwrap().to_string();
    assert_eq!(members[0]["market"], "spot");
    assert_eq!(members[0]["fallen_back"], false);
    // The data volume lies in us-east-1b, so the group's pools are there only.
    assert_eq!(members[0]["availability_zone"], "us-east-1b");
    let pools = web["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 2, "two types in the one subnet of the volume's AZ: {web}");
    assert!(pools.iter().all(|p| p["subnet_id"] == h.fleet.subnet_b.as_str()), "{web}");

    let instance = h.instance(&id).await;
    let tags: Vec<(String, String)> =
        instance.tags().iter().map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string())).collect();
    assert!(tags.contains(&("spotkeeper:group".into(), "web".into())), "{tags:?}");
    assert_eq!(instance.subnet_id(), Some(h.fleet.subnet_b.as_str()));
    assert_eq!(instance.instance_lifecycle().map(aws_sdk_ec2::types::InstanceLifecycleType::as_str), Some("spot"));

    let out = h.instance_state(spotkeeper_tests::events::state_change(&id, "running")).await.unwrap();
    assert_eq!(out["action"], "brought-online", "{out}");

    let private_ip = instance.private_ip_address().unwrap().to_string();
    let record = spotkeeper::adapters::aws::route53::Route53::new(aws_sdk_route53::Client::new(&h.sdk))
        .a_record(&h.fleet.zone_id, "web.fleet.internal")
        .await
        .unwrap();
    assert_eq!(record, vec![private_ip]);
    let address = h.ec2().describe_addresses().allocation_ids(&h.fleet.allocation_id).send().await.unwrap();
    assert_eq!(address.addresses()[0].instance_id(), Some(id.as_str()));
    let volume = h.ec2().describe_volumes().volume_ids(&h.fleet.volume_id).send().await.unwrap();
    let attachment = &volume.volumes()[0].attachments()[0];
    assert_eq!((attachment.instance_id(), attachment.device()), (Some(id.as_str()), Some("/dev/sdf")));

    let (status, listed) = h.call(Method::GET, "/groups", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = listed["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["web", "workers"]);
    let (status, shown) = h.call(Method::GET, "/groups/web", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["members"][0]["state"], "running", "{shown}");
    let kinds: Vec<&str> =
        shown["recent_events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["group-registered", "instance-launched", "dns-updated", "address-associated", "volume-attached"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_change_nothing() {
    let h = Harness::start().await;
    let instances = h.instance_count().await;
    let good = web_with_all(&h).body();
    let with = |path: &[&str], value: Value| {
        let mut body = good.clone();
        let mut at = &mut body;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        body
    };
    let cases: Vec<(Value, Option<&str>, StatusCode, &str)> = vec![
        (with(&["colour"], json!("red")), Some(TOKEN), StatusCode::BAD_REQUEST, "colour"),
        (with(&["dns", "tll"], json!(5)), Some(TOKEN), StatusCode::BAD_REQUEST, "dns.tll"),
        (with(&["capacity"], json!(0)), Some(TOKEN), StatusCode::BAD_REQUEST, "capacity"),
        (
            with(&["launch_template", "id"], json!("lt-0123456789abcdef0")),
            Some(TOKEN),
            StatusCode::UNPROCESSABLE_ENTITY,
            "launch_template",
        ),
        (
            with(&["subnets"], json!([h.fleet.subnet_a, "subnet-0000000000000000f"])),
            Some(TOKEN),
            StatusCode::UNPROCESSABLE_ENTITY,
            "subnets",
        ),
        (
            with(&["dns", "hosted_zone_id"], json!("Z0000000000000000000")),
            Some(TOKEN),
            StatusCode::UNPROCESSABLE_ENTITY,
            "dns.hosted_zone_id",
        ),
        (
            with(&["data_volumes"], json!([{"volume_id": "vol-0000000000000000f", "device": "/dev/sdf"}])),
            Some(TOKEN),
            StatusCode::UNPROCESSABLE_ENTITY,
            "data_volumes",
        ),
        (
            with(&["elastic_ip_allocation_id"], json!("eipalloc-0000000000000000f")),
            Some(TOKEN),
            StatusCode::UNPROCESSABLE_ENTITY,
            "elastic_ip_allocation_id",
        ),
        (with(&["subnets"], json!([h.fleet.subnet_a])), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "subnets"),
        (
            json!({"name": "workers", "kind": "asg", "asg_name": "no-such-asg"}),
            Some(TOKEN),
            StatusCode::UNPROCESSABLE_ENTITY,
            "asg_name",
        ),
        (good.clone(), None, StatusCode::UNAUTHORIZED, ""),
        (good.clone(), Some("wrong-token"), StatusCode::UNAUTHORIZED, ""),
    ];
    for (body, token, status, field) in cases {
        let (got, answer) = h.call(Method::POST, "/groups", token, Some(body.clone())).await;
        assert_eq!(got, status, "{body} -> {answer}");
        if !field.is_empty() {
            assert_eq!(answer["error"]["field"], field, "{answer}");
        }
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
        assert_eq!(h.table_items().await, 0, "{body} wrote to the table");
        assert_eq!(h.instance_count().await, instances, "{body} launched an instance");
    }
    for (method, path) in [(Method::GET, "/groups"), (Method::GET, "/groups/web"), (Method::DELETE, "/groups/web")] {
        let (status, _) = h.call(method.clone(), path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    let (status, health) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, health), (StatusCode::OK, json!({"status": "ok"})));
    let (status, _) = h.call(Method::GET, "/groups/web", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_and_removing_a_group_terminates_nothing() {
    let h = Harness::start().await;
    h.standalone("web").latest().capacity(2).register().await;

    // An instance started by hand in one of the group's subnets: adopted as the second member.
    let pet = h.run_by_hand().await;
    let (status, full) =
        h.call(Method::POST, "/groups/web/instances", Some(TOKEN), Some(json!({"instance_id": pet}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "the group is at capacity: {full}");

    let (status, _) = h.call(Method::DELETE, "/groups/web", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let web = h.standalone("web").latest().capacity(3).adopting(&[&pet]).register().await;
    let ids = member_ids(&web);
    assert_eq!(ids.len(), 3, "one adopted, two launched: {web}");
    assert!(ids.contains(&pet));

    let (status, again) =
        h.call(Method::POST, "/groups/web/instances", Some(TOKEN), Some(json!({"instance_id": pet}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    let (status, gone) = h
        .call(Method::POST, "/groups/web/instances", Some(TOKEN), Some(json!({"instance_id": "i-0000000000000000f"})))
        .await;
    assert_eq!((status, gone["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("instance_id")));

    let before = h.instance_count().await;
    let (status, removed) = h.call(Method::DELETE, "/groups/web", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["released"].as_array().unwrap().len(), 3);
    assert_eq!(h.instance_count().await, before);
    let running = h.ec2().describe_instances().instance_ids(&pet).send().await.unwrap();
    let instance = &running.reservations()[0].instances()[0];
    assert_eq!(
        instance.state().and_then(|s| s.name()).map(aws_sdk_ec2::types::InstanceStateName::as_str),
        Some("running")
    );
    assert!(instance.tags().iter().all(|t| t.key() != Some("spotkeeper:group")), "tag removed");
    assert!(h.deps.store.group_of(&pet).await.unwrap().is_none());
    let (status, _) = h.call(Method::GET, "/groups/web", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Its instances are free again: a new group may adopt one.
    let (status, asg) = h.register_workers().await;
    assert_eq!(status, StatusCode::CREATED, "{asg}");
}

const DENIED_ARN: &str = "arn:aws:sts::123456789012:assumed-role/spotkeeper-api-role/api";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_refusal_answers_in_our_words_with_a_request_id() {
    let h = Harness::start().await;
    h.proxy.on(|call| {
        (call.operation == "DescribeAutoScalingGroups")
            .then(|| access_denied("autoscaling:DescribeAutoScalingGroups", DENIED_ARN))
    });
    let (status, answer) = h.register_workers().await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    let text = answer.to_string();
    for leak in ["arn:aws", "123456789012", "spotkeeper-api-role", "not authorized"] {
        assert!(!text.contains(leak), "the answer carries AWS's text ({leak}): {answer}");
    }
    let error = &answer["error"];
    assert_eq!(error["code"], "upstream_denied", "{answer}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("DescribeAutoScalingGroups")), "{answer}");
    let id = error["request_id"].as_str().unwrap_or_default();
    assert!(id.len() >= 8, "a request id: {answer}");
    // Each failed request has its own id.
    let (_, again) = h.register_workers().await;
    assert_ne!(again["error"]["request_id"].as_str(), Some(id), "{again}");
    assert_eq!(h.table_items().await, 0, "nothing was written");
    // 4xx answers are ours from the start: no request id needed.
    h.proxy.clear_rules();
    let (status, answer) = h.call(Method::GET, "/groups/nope", Some(TOKEN), None).await;
    assert_eq!((status, answer["error"].get("request_id")), (StatusCode::NOT_FOUND, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_is_recorded_as_a_diff_without_secrets() {
    let h = Harness::start().await;
    let (status, _) = h.register_workers().await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = "whsec_policy_diff_0123456789";
    let hook = |url: &str| json!({"url": url, "secret": secret, "allow_loopback_http": true});
    let patch = json!({
        "fallback": false,
        "recovery": {"cooldown": "30m"},
        "webhooks": [hook("http://127.0.0.1:9/a"), hook("http://127.0.0.1:9/b")],
    });
    let (status, view) = h.patch("workers", patch).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert!(!view.to_string().contains(secret), "{view}");
    let (_, page) = h.call(Method::GET, "/groups/workers/events", Some(TOKEN), None).await;
    assert_eq!(
        messages_of(&page["events"], "policy-changed"),
        vec!["policy changed: fallback: on → off; recovery.cooldown: 45m → 30m; webhooks: 2 added"],
        "{page}"
    );

    // History written before changes were diffs held the whole policy: it is withheld.
    let legacy = spotkeeper::adapters::store::HistoryEntry {
        at: spotkeeper::clock::Clock::now(h.clock.as_ref()),
        kind: "policy-changed".into(),
        instance_id: None,
        message: format!(r#"policy changed: {{"webhooks":[{{"url":"https://x","secret":"{secret}"}}]}}"#),
    };
    let name = spotkeeper::domain::GroupName::try_from("workers".to_string()).unwrap();
    h.deps.store.record(&name, &legacy).await.unwrap();
    for path in ["/groups/workers", "/groups/workers/events"] {
        let (status, answer) = h.call(Method::GET, path, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!answer.to_string().contains(secret), "{path}: {answer}");
    }
}
