//! The real function binaries, run against a local Lambda Runtime API and the emulator:
//! init reads and checks the configuration, events arrive as AWS sends them.

use serde_json::{Value, json};
use spotkeeper_tests::runtime::Function;
use spotkeeper_tests::{Harness, events};

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_stops_with_a_clear_message_on_bad_configuration() {
    let h = Harness::start().await;
    let without_table: Vec<(String, String)> =
        h.function_env().into_iter().filter(|(k, _)| k != "SPOTKEEPER_TABLE").collect();
    let mut api = Function::start("api", &without_table).await.unwrap();
    let err = api.invoke(events::load("api-get-healthz.json")).await.unwrap_err();
    assert!(err.contains("SPOTKEEPER_TABLE is required"), "{err}");

    // The API refuses to start without a token rather than serve unauthenticated.
    let mut api = Function::start("api", &h.function_env()).await.unwrap();
    let err = api.invoke(events::load("api-get-healthz.json")).await.unwrap_err();
    assert!(err.contains("SPOTKEEPER_API_TOKEN"), "{err}");

    let mut env = h.function_env();
    env.push(("SPOTKEEPER_API_TOKEN_PARAM".into(), "/spotkeeper/missing".into()));
    let mut api = Function::start("api", &env).await.unwrap();
    let err = api.invoke(events::load("api-get-healthz.json")).await.unwrap_err();
    assert!(err.contains("/spotkeeper/missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_binary_reads_its_token_from_ssm_and_serves_api_gateway_events() {
    let h = Harness::start().await;
    aws_sdk_ssm::Client::new(&h.sdk)
        .put_parameter()
        .name("/spotkeeper/api-token")
        .value("from-ssm-token")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let mut env = h.function_env();
    env.push(("SPOTKEEPER_API_TOKEN_PARAM".into(), "/spotkeeper/api-token".into()));
    let mut api = Function::start("api", &env).await.unwrap();

    let health = api.invoke(events::load("api-get-healthz.json")).await.unwrap();
    assert_eq!(health["statusCode"], 200, "{health}");
    assert!(api.cold_start().is_some());

    let register = json!({"name": "workers", "kind": "asg", "asg_name": h.fleet.asg_name});
    let refused = api.invoke(events::http("POST", "/groups", None, Some(&register))).await.unwrap();
    assert_eq!(refused["statusCode"], 401, "{refused}");
    let created = api.invoke(events::http("POST", "/groups", Some("from-ssm-token"), Some(&register))).await.unwrap();
    assert_eq!(created["statusCode"], 201, "{created}");
    assert_eq!(body(&created)["members"].as_array().map(Vec::len), Some(2));
    let unknown = events::load("malformed/api-post-groups-unknown-field.json");
    let mut unknown_with_token = unknown.clone();
    unknown_with_token["headers"]["authorization"] = json!("Bearer from-ssm-token");
    let refused = api.invoke(unknown_with_token).await.unwrap();
    assert_eq!(
        (refused["statusCode"].clone(), body(&refused)["error"]["field"].clone()),
        (json!(400), json!("colour"))
    );
    assert!(!api.output().contains("from-ssm-token"), "the token never reaches the logs");

    let mut state = Function::start("instance-state", &h.function_env()).await.unwrap();
    let ignored = state.invoke(events::load("instance-state-running.json")).await.unwrap();
    assert_eq!(ignored["action"], "ignored", "{ignored}");
    let err = state.invoke(events::load("malformed/instance-state-no-instance-id.json")).await.unwrap_err();
    assert!(err.contains("EventError") && err.contains("instance-id"), "{err}");
    // The function survives a bad event and handles the next one.
    let again = state.invoke(events::load("instance-state-running.json")).await.unwrap();
    assert_eq!(again["action"], "ignored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spot_interruption_binary_takes_sqs_batches_and_bare_events() {
    let h = Harness::start().await;
    let mut spot = Function::start("spot-interruption", &h.function_env()).await.unwrap();
    // The sample event names an instance no group manages: acknowledged, nothing written.
    let items = h.table_items().await;
    let out = spot.invoke(events::load("spot-interruption-warning.json")).await.unwrap();
    assert_eq!(out["action"], "ignored", "{out}");
    let out = spot.invoke(events::load("sqs-spot-interruption-batch.json")).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(h.table_items().await, items);
    let mut batch = events::load("sqs-spot-interruption-batch.json");
    batch["Records"][0]["body"] = json!("{\"version\": \"0\"");
    let out = spot.invoke(batch).await.unwrap();
    assert_eq!(out["batchItemFailures"][0]["itemIdentifier"], "3f4a8c2e-1b7d-4e9f-a5c6-8d2e1f0b9a37");
    assert!(spot.output().contains("SQS message body is not JSON"), "the reason is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebalance_and_recovery_binaries_take_their_events() {
    let h = Harness::start().await;
    let (status, _) = h.register_workers().await;
    assert_eq!(status.as_u16(), 201);
    let mut rebalance = Function::start("rebalance-recommendation", &h.function_env()).await.unwrap();
    let out = rebalance.invoke(events::load("rebalance-recommendation.json")).await.unwrap();
    assert_eq!(out["action"], "ignored", "the sample names no managed instance: {out}");
    let mut recovery = Function::start("scheduled-recovery", &h.function_env()).await.unwrap();
    let out = recovery.invoke(events::load("scheduled-event.json")).await.unwrap();
    let groups = out["groups"].as_array().unwrap();
    assert_eq!((groups.len(), groups[0]["recovery"]["step"].as_str()), (1, Some("nothing")), "{out}");
    let out = recovery.invoke(events::load("asg-launch-unsuccessful.json")).await.unwrap();
    assert_eq!(out["action"], "fallback", "the sample names the fleet's ASG, workers: {out}");
    let err = recovery.invoke(events::load("instance-state-running.json")).await.unwrap_err();
    assert!(err.contains("Scheduled Event"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_volume_binary_takes_its_three_kinds_of_event() {
    let h = Harness::start().await;
    let mut volume = Function::start("volume-threshold", &h.function_env()).await.unwrap();
    for sample in ["cloudwatch-disk-alarm.json", "ebs-volume-modified.json", "ssm-command-failed.json"] {
        let out = volume.invoke(events::load(sample)).await.unwrap();
        assert_eq!(out["action"], "ignored", "{sample} names nothing spotkeeper manages: {out}");
    }
    let err = volume.invoke(events::load("malformed/cloudwatch-alarm-no-dimensions.json")).await.unwrap_err();
    assert!(err.contains("InstanceId"), "{err}");
}
