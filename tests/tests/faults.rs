//! Proof under fire: 500 interruption warnings across five groups while a fifth of every AWS
//! call the function makes fails — 500s, 503s, throttling, slow answers, dropped connections,
//! answers lost after the work was done — redelivered as SQS would. Each warning ends with
//! exactly one replacement or detach, or its failure recorded and its message dead-lettered:
//! checked against the emulator's instances, not only the table.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};
use spotkeeper_tests::proxy::{Call, Fault, Trouble, service_error};
use spotkeeper_tests::queue::{self, QueueSettings};
use spotkeeper_tests::{Harness, TOKEN, events, mass};

/// The seed of the fault draws: the same seed draws the same faults in the same call order.
const SEED: u64 = 0x5107_4ee9;
const FAULT_RATE: f64 = 0.2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_warnings_at_a_fifth_of_calls_failing_are_each_handled_exactly_once() {
    spotkeeper_tests::announce("faults: 500 warnings, a fifth of all calls failing", "a few minutes");
    let h = Harness::start().await;
    let started = std::time::Instant::now();
    let groups = mass::build(&h, 3, 2, 100).await.expect("the fleet");
    println!("fleet built in {:?}", started.elapsed());
    let warnings = mass::warnings(&h, &groups);
    assert_eq!(warnings.len(), 500);
    let settings = QueueSettings::spot_interruption().expect("the queue's settings");
    h.proxy.forget_calls();
    h.proxy.chaos(FAULT_RATE, SEED);

    let delivered = queue::deliver(&h, warnings, &settings, mass::POLLERS, |batch| h.spot_interruption(batch)).await;
    h.proxy.clear_rules();
    println!("delivered in {:?}", started.elapsed());

    let calls = h.proxy.calls();
    let faulted = calls.iter().filter(|c| c.fault.is_some()).count();
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for kind in calls.iter().filter_map(|c| c.fault) {
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    println!(
        "{} calls, {faulted} faulted {kinds:?}; {} invocations, {} redeliveries, {} dead-lettered",
        calls.len(),
        delivered.invocations,
        delivered.redeliveries,
        delivered.dead.len()
    );
    assert!(faulted * 8 > calls.len(), "about a fifth of the calls were faulted: {faulted} of {}", calls.len());

    let handled = mass::check(&h, &groups, &delivered.dead).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(handled.replaced + handled.detached + handled.dead, 500, "{handled:?}");
    println!("{handled:?}, checked at {:?}", started.elapsed());
    // A dead-lettered warning was alerted on as well as recorded (Slack is not behind the faults).
    let slack: Vec<String> = h.slack.received().iter().map(|r| r.body.clone()).collect();
    for event in &delivered.dead {
        let id = event["detail"]["instance-id"].as_str().unwrap_or_default();
        let alerted = slack.iter().any(|m| m.contains("could not act on the interruption") && m.contains(id));
        assert!(alerted, "no alert for the failure on {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_whose_answer_never_came_is_sent_again_by_the_next_delivery_in_any_batch() {
    let h = Harness::start().await;
    let groups = mass::build(&h, 1, 0, 3).await.expect("the fleet");
    let olds = groups[0].members.clone();
    let warnings: Vec<Value> = olds.iter().map(|id| h.now_on(events::spot_warning(id))).collect();
    let before = h.instance_count().await;
    // EC2 launches, and every answer to the request is lost: each of the SDK's tries carries the
    // same client token, so EC2 launched once — but the function cannot know that.
    h.proxy.on(|call| {
        let lost = service_error("ec2", Trouble::InternalError).after_the_work();
        (call.operation == "CreateFleet").then_some(lost)
    });
    let out = h.spot_interruption(events::sqs_batch(&warnings)).await.unwrap();
    assert_eq!(out["batchItemFailures"].as_array().map(Vec::len), Some(3), "{out}");
    assert!(h.proxy.count("CreateFleet") > 1, "the SDK tried again");
    assert_eq!(h.instance_count().await, before + 3, "EC2 launched once for the three");
    h.proxy.clear_rules();

    // The warnings come back after the visibility timeout, and not as they left: one alone first.
    let settings = QueueSettings::spot_interruption().unwrap();
    h.clock.advance(settings.visibility);
    let alone = h.spot_interruption(events::sqs_messages(&[("again-1".into(), warnings[1].clone())])).await.unwrap();
    assert_eq!(alone, json!({"batchItemFailures": []}));
    assert_eq!(h.instance_count().await, before + 3, "the same request again: EC2 answered with what it launched");
    let rest = h.spot_interruption(events::sqs_batch(&[warnings[0].clone(), warnings[2].clone()])).await.unwrap();
    assert_eq!(rest, json!({"batchItemFailures": []}));
    assert_eq!(h.instance_count().await, before + 3, "and the others stand aside: their replacements are recorded");
    let handled = mass::check(&h, &groups, &[]).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(handled.replaced, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_launch_is_retried_with_backoff_not_failed() {
    let h = Harness::start().await;
    let groups = mass::build(&h, 1, 0, 1).await.expect("the fleet");
    let before = h.instance_count().await;
    h.proxy.forget_calls();
    // EC2 throttles the first three tries, as its request token bucket does when empty.
    let tries = std::sync::atomic::AtomicUsize::new(0);
    h.proxy.on(move |call| {
        let throttled = call.operation == "CreateFleet" && tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3;
        throttled.then(|| service_error("ec2", Trouble::Throttled))
    });
    let warning = h.now_on(events::spot_warning(&groups[0].members[0]));
    let out = h.spot_interruption(warning).await.unwrap();
    assert_eq!(out["action"], "replaced", "{out}");
    let launches: Vec<_> = h.proxy.calls().into_iter().filter(|c| c.operation == "CreateFleet").collect();
    assert_eq!(launches.len(), 4, "three throttled tries, then the launch");
    let waits: Vec<_> = launches.windows(2).map(|w| w[1].at.duration_since(w[0].at)).collect();
    assert!(waits.iter().all(|w| !w.is_zero()), "each retry waited (backoff with jitter): {waits:?}");
    assert_eq!(h.instance_count().await, before + 1);
}

/// Two deliveries race on a launch sent again. Its first answer was lost; delivery A brings one
/// of its warnings back and sends the kept launch again; at the moment A next touches the table
/// (`at`), that call is held back and delivery B brings the other warning back. Whoever wins, each
/// warning ends with one replacement.
async fn two_deliveries_race_on_a_launch_sent_again(at: impl Fn(&Call) -> bool + Send + Sync + 'static) {
    let h = Harness::start().await;
    let groups = mass::build(&h, 1, 0, 2).await.expect("the fleet");
    let warnings: Vec<Value> = groups[0].members.iter().map(|id| h.now_on(events::spot_warning(id))).collect();
    let before = h.instance_count().await;
    h.proxy.on(|call| {
        let lost = service_error("ec2", Trouble::InternalError).after_the_work();
        (call.operation == "CreateFleet").then_some(lost)
    });
    let out = h.spot_interruption(events::sqs_batch(&warnings)).await.unwrap();
    assert_eq!(out["batchItemFailures"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(h.instance_count().await, before + 2, "EC2 launched once for the two");
    h.proxy.clear_rules();
    h.clock.advance(QueueSettings::spot_interruption().unwrap().visibility);

    let (go, started) = tokio::sync::oneshot::channel::<()>();
    let go = Mutex::new(Some(go));
    let sent_again = AtomicBool::new(false);
    h.proxy.on(move |call| {
        if call.operation == "CreateFleet" {
            sent_again.store(true, Ordering::SeqCst);
            return None;
        }
        let now = sent_again.load(Ordering::SeqCst) && call.service == "dynamodb" && at(call);
        let go = if now { go.lock().ok()?.take()? } else { return None };
        let _ = go.send(());
        Some(Fault::Slow(Duration::from_millis(1500)))
    });
    let a = h.spot_interruption(events::sqs_messages(&[("a".into(), warnings[1].clone())]));
    let b = async {
        started.await.ok()?;
        Some(h.spot_interruption(events::sqs_messages(&[("b".into(), warnings[0].clone())])).await)
    };
    let (a, b) = tokio::join!(a, b);
    assert_eq!(a.unwrap(), json!({"batchItemFailures": []}));
    let b = b.expect("the race took place").unwrap();
    assert_eq!(b, json!({"batchItemFailures": []}));
    h.proxy.clear_rules();
    assert_eq!(h.instance_count().await, before + 2, "no second replacement for either warning");
    let handled = mass::check(&h, &groups, &[]).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(handled.replaced, 2, "{handled:?}");
    // Later deliveries of either stand aside.
    let again = h.spot_interruption(events::sqs_batch(&warnings)).await.unwrap();
    assert_eq!(again, json!({"batchItemFailures": []}));
    assert_eq!(h.instance_count().await, before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_racing_the_records_of_a_launch_sent_again_launches_nothing_new() {
    // B comes while A records the replacements: the first table write that is neither a claim,
    // nor a read, nor forgetting the kept launch.
    two_deliveries_race_on_a_launch_sent_again(|call: &Call| {
        let claim = call.operation == "TransactWriteItems" && call.body.contains("DEDUP#");
        let forget = call.body.contains("REMOVE attempt");
        !claim && !forget && !call.operation.starts_with("BatchGet") && !call.operation.starts_with("Get")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_racing_the_first_table_call_after_a_launch_sent_again_launches_nothing_new() {
    two_deliveries_race_on_a_launch_sent_again(|_: &Call| true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_interruption_is_recorded_and_alerted_in_one_sentence() {
    let h = Harness::start().await;
    let (_, asg) = h.register_workers().await;
    let id = spotkeeper_tests::member_ids(&asg)[0].clone();
    let denied = "User: arn:aws:sts::123456789012:assumed-role/spotkeeper is not authorized to perform: autoscaling:DetachInstances";
    h.proxy.on(move |call| {
        (call.operation == "DetachInstances").then(|| {
            Fault::answer(
                403,
                "text/xml",
                format!("<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{denied}</Message></Error><RequestId>5f2f6c4e-0c8e-4bd5-9d4f-1f2e3d4c5b6a</RequestId></ErrorResponse>"),
            )
        })
    });
    let out = h.spot_interruption(events::sqs_batch(&[events::spot_warning(&id)])).await.unwrap();
    assert_eq!(out["batchItemFailures"].as_array().map(Vec::len), Some(1), "{out}");

    // The role and account its ARN names are left out of what operators and API clients see.
    let sentence = "DetachInstances failed: AccessDenied: User: (an ARN) is not authorized to perform: autoscaling:DetachInstances";
    let failed = h.history("workers", "interruption-failed").await;
    assert_eq!(failed, vec![format!("could not act on the warning: {sentence}")]);
    let (_, events) = h.call(Method::GET, "/groups/workers/events?limit=100", Some(TOKEN), None).await;
    let slack: Vec<String> = h.slack.received().into_iter().map(|r| r.body).collect();
    let alert = slack.iter().find(|b| b.contains("could not act on the interruption")).expect("an alert");
    assert!(alert.contains(sentence), "{alert}");
    let sns = h.sns_alerts().await;
    let mail = sns.iter().find(|a| a.attributes.get("event").map(String::as_str) == Some("interruption-failed"));
    let mail = mail.expect("an SNS alert");
    assert!(mail.message.contains(&format!("error: {sentence}\n")), "{}", mail.message);
    for text in [alert.as_str(), mail.message.as_str(), &events.to_string()] {
        for dump in ["<ErrorResponse", "content-type", "headers", "x-amzn", "RequestId", "SdkBody", "123456789012"] {
            assert!(!text.contains(dump), "{dump} in {text}");
        }
    }
}
