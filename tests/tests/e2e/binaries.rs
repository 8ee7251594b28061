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
    // A state EC2 does not have makes the event malformed: refused and counted for the alarm.
    let counted = |output: &str| emf(output).iter().filter(|d| d.get("MalformedEvents").is_some()).count();
    let before = counted(&state.output());
    let mut unknown = events::load("instance-state-running.json");
    unknown["detail"]["state"] = json!("rebooting");
    let err = state.invoke(unknown).await.unwrap_err();
    assert!(err.contains("EventError") && err.contains("detail.state"), "{err}");
    assert!(counted(&state.output()) > before, "counted as MalformedEvents");
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
    // A message that can never succeed is acknowledged (not delivered again five times), logged
    // with its message id, and counted for the MalformedEvents alarm.
    let out = spot.invoke(batch).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    let refused = spot
        .output()
        .lines()
        .find(|l| l.contains("SQS message body is not JSON"))
        .map(str::to_string)
        .expect("the reason is in the log");
    assert!(refused.contains("3f4a8c2e-1b7d-4e9f-a5c6-8d2e1f0b9a37"), "with its message id: {refused}");
    let counted = emf(&spot.output()).into_iter().find(|d| d.get("MalformedEvents").is_some());
    let counted = counted.expect("a MalformedEvents metric");
    assert_eq!(
        (counted["MalformedEvents"].as_u64(), counted["function"].as_str()),
        (Some(1), Some("spot-interruption"))
    );
    let alarmed = alarmed_functions("MalformedEvents");
    for function in [
        "spot-interruption",
        "rebalance-recommendation",
        "instance-state",
        "volume-threshold",
        "scheduled-recovery",
        "node-drain",
    ] {
        assert!(alarmed.iter().any(|f| f == function), "the alarm watches {function}: {alarmed:?}");
    }
}

/// The functions whose `metric` an alarm of template.yaml watches.
fn alarmed_functions(metric: &str) -> Vec<String> {
    let path = spotkeeper_tests::emulator::workspace_root().join("template.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let template: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut functions = Vec::new();
    for resource in template["Resources"].as_mapping().unwrap().values() {
        let queries = resource["Properties"]["Metrics"].as_sequence().cloned().unwrap_or_default();
        for query in queries {
            let watched = &query["MetricStat"]["Metric"];
            if watched["MetricName"].as_str() == Some(metric) {
                let dimensions = watched["Dimensions"].as_sequence().cloned().unwrap_or_default();
                functions.extend(dimensions.iter().filter_map(|d| d["Value"].as_str().map(str::to_string)));
            }
        }
    }
    functions
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

/// The EMF documents among a function's output lines.
fn emf(output: &str) -> Vec<Value> {
    output.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("_aws").is_some()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_emit_metrics_as_embedded_metric_format_lines() {
    let h = Harness::start().await;
    let id = h.standalone("web").subnets(&[h.fleet.subnet_a.as_str()]).online().await.remove(0);

    let mut spot = Function::start("spot-interruption", &h.function_env()).await.unwrap();
    let out = spot.invoke(events::spot_warning(&id)).await.unwrap();
    assert_eq!(out["action"], "replaced", "{out}");
    let documents = emf(&spot.output());
    let named = |name: &str| {
        documents
            .iter()
            .find(|d| {
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|x| x["Name"] == name))
            })
            .cloned()
    };
    let handled = named("InterruptionsHandled").unwrap_or_else(|| panic!("no InterruptionsHandled in {documents:?}"));
    let directive = &handled["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "spotkeeper");
    let dimensions: Vec<&str> =
        directive["Dimensions"][0].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert!(dimensions.contains(&"function") && dimensions.contains(&"group"), "{dimensions:?}");
    assert_eq!((handled["function"].as_str(), handled["group"].as_str()), (Some("spot-interruption"), Some("web")));
    assert_eq!(handled["InterruptionsHandled"], 1);
    assert!(handled["_aws"]["Timestamp"].is_u64());
    let latency = named("LaunchRequestLatencyMs").expect("the launch latency");
    assert!(
        latency["LaunchRequestLatencyMs"].is_number()
            || latency["LaunchRequestLatencyMs"].is_object()
            || latency["LaunchRequestLatencyMs"].is_array(),
        "{latency}"
    );

    // A failed invocation is counted.
    spot.invoke(events::load("malformed/spot-interruption-no-instance-id.json")).await.unwrap_err();
    let errors = emf(&spot.output()).into_iter().find(|d| d.get("Errors").is_some()).expect("an Errors metric");
    assert_eq!(errors["function"], "spot-interruption");

    let mut recovery = Function::start("scheduled-recovery", &h.function_env()).await.unwrap();
    recovery.invoke(events::load("scheduled-event.json")).await.unwrap();
    let gauges = emf(&recovery.output());
    assert!(
        gauges.iter().any(|d| d.get("FallbacksActive").is_some() && d.get("LongestFallbackMinutes").is_some()),
        "{gauges:?}"
    );
}
