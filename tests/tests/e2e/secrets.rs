//! The canary: one run of the real binaries (under a local Lambda Runtime API) with every kind of
//! secret set to a random string — the API token, an outgoing webhook's secret, the inbound
//! signing key, the Slack URL — drives every API route and the event functions (a node drained
//! in a cluster that takes EKS tokens among them), then looks for the secrets and the EKS token in
//! every API answer, history item, alert, webhook body and log line: none is there.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};

use serde_json::{Value, json};
use spotkeeper_tests::kube::{FakeKube, Options, PodSeed};
use spotkeeper_tests::proxy::access_denied;
use spotkeeper_tests::runtime::Function;
use spotkeeper_tests::{Harness, Receiver, events, member_ids};

/// A string no code path makes up: `canary-<what>-<random>`, fresh each run.
fn canary(what: &str) -> String {
    let random = RandomState::new().hash_one(what) ^ RandomState::new().hash_one(std::process::id());
    format!("canary-{what}-{random:016x}")
}

/// The `api` binary, and what it answered, route by route.
struct Api {
    function: Function,
    answers: Vec<String>,
    routes: BTreeSet<(String, String)>,
}

impl Api {
    /// Calls `route` (`{name}` filled in, a Deployment's routes on `default/web`) as API Gateway
    /// would; answers the status and JSON body.
    async fn call(
        &mut self,
        method: &str,
        route: &str,
        name: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> (u64, Value) {
        let path = route.replace("{name}", name).replace("{namespace}", "default").replace("{deployment}", "web");
        let token = match auth {
            Auth::Token(token) => Some(token),
            Auth::None | Auth::Signed(_) => None,
        };
        let mut event = events::http(method, &path, token, body.as_ref());
        if let Auth::Signed(key) = auth {
            let raw = event["body"].as_str().unwrap_or_default().to_string();
            let signature = spotkeeper::domain::signature::sign(key.as_bytes(), chrono::Utc::now(), raw.as_bytes());
            event["headers"]["spotkeeper-signature"] = json!(signature);
        }
        // API Gateway gives each request its own id.
        event["requestContext"]["requestId"] = json!(format!("gw-{}", self.answers.len()));
        let answer = self.function.invoke(event).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        self.answers.push(answer.to_string());
        self.routes.insert((method.to_string(), route.to_string()));
        let body = serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        (answer["statusCode"].as_u64().unwrap_or_default(), body)
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Token(&'a str),
    Signed(&'a str),
}

/// Every history item in the table, as stored.
async fn history_items(h: &Harness) -> Vec<(String, String)> {
    let out = h.dynamodb().scan().table_name(spotkeeper_tests::TABLE).send().await.expect("Scan");
    out.items
        .unwrap_or_default()
        .into_iter()
        .filter(|item| item.get("sk").and_then(|v| v.as_s().ok()).is_some_and(|sk| sk.starts_with("EVENT#")))
        .map(|item| {
            let kind = item.get("kind").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            (kind, format!("{item:?}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_an_answer_history_an_alert_a_webhook_or_a_log() {
    let h = Harness::start().await;
    let hooks = Receiver::start().await;
    let token = canary("token");
    let inbound = canary("inbound");
    let webhook_secret = canary("whsec");
    let slack_url = format!("{}/slack/{}", h.slack.url, canary("slack"));
    let secrets = [token.as_str(), inbound.as_str(), webhook_secret.as_str(), slack_url.as_str()];
    let mut env: Vec<(String, String)> = h
        .function_env()
        .into_iter()
        .filter(|(k, _)| {
            !matches!(k.as_str(), "SPOTKEEPER_WEBHOOK_SECRET" | "SPOTKEEPER_SLACK_WEBHOOK_URL" | "AWS_ENDPOINT_URL")
        })
        .collect();
    env.extend(
        [
            ("SPOTKEEPER_API_TOKEN", token.as_str()),
            ("SPOTKEEPER_WEBHOOK_SECRET", inbound.as_str()),
            ("SPOTKEEPER_SLACK_WEBHOOK_URL", slack_url.as_str()),
            // Through the proxy, so one AWS call can be made to fail.
            ("AWS_ENDPOINT_URL", h.proxy.endpoint.as_str()),
            // The most the template allows: every line any lower level would log, and more.
            ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let start = |name: &'static str| {
        let env = env.clone();
        async move { Function::start(name, &env).await.unwrap_or_else(|e| panic!("{name}: {e}")) }
    };
    let mut api = Api { function: start("api").await, answers: Vec::new(), routes: BTreeSet::new() };
    let mut state = start("instance-state").await;
    let mut spot = start("spot-interruption").await;
    let mut rebalance = start("rebalance-recommendation").await;
    let mut recovery = start("scheduled-recovery").await;
    let mut volume = start("volume-threshold").await;
    let mut drain = start("node-drain").await;
    // A cluster on real time, as the binaries run: EKS tokens checked, so one is minted and sent.
    let cluster = FakeKube::start_with(Options {
        clock: Some(std::sync::Arc::new(spotkeeper::clock::SystemClock)),
        ..Options::default()
    })
    .await;
    let kubernetes = json!({
        "cluster": cluster.cluster, "endpoint": cluster.url, "ca": cluster.ca_pem,
        "failover": {"namespaces": ["default"]},
    });
    h.fargate_profile(&cluster, "default", &[("spotkeeper.io/compute", "fargate")]).await;
    let t = Auth::Token(&token);

    assert_eq!(api.call("GET", "/healthz", "", Auth::None, None).await.0, 200);
    assert_eq!(api.call("GET", "/", "", Auth::None, None).await.0, 200);
    let (status, _) = api.call("GET", "/groups", "", Auth::Token("wrong-token"), None).await;
    assert_eq!(status, 401);
    let asg = json!({"name": "workers", "kind": "asg", "asg_name": h.fleet.asg_name});
    let (status, workers) = api.call("POST", "/groups", "", t, Some(asg)).await;
    assert_eq!(status, 201, "{workers}");
    let standalone = h.standalone("web").with_dns().body();
    let (status, web) = api.call("POST", "/groups", "", t, Some(standalone)).await;
    assert_eq!(status, 201, "{web}");
    let webhook =
        json!([{"url": format!("{}/hook", hooks.url), "secret": webhook_secret, "allow_loopback_http": true}]);
    for (name, patch) in [
        ("web", json!({"webhooks": webhook, "rebalance": "notify", "on_demand_prices": {"m5.large": 0.1}})),
        ("workers", json!({"webhooks": webhook, "recovery": {"cooldown": "1h"}, "kubernetes": kubernetes})),
    ] {
        let (status, view) = api.call("PATCH", "/groups/{name}", name, t, Some(patch)).await;
        assert_eq!(status, 200, "{view}");
    }

    // The fleet lives: instances run, one is interrupted and replaced, one gets a rebalance
    // recommendation, an Auto Scaling launch fails for lack of capacity, a disk fills up.
    let (web_ids, worker_ids) = (member_ids(&web), member_ids(&workers));
    for id in web_ids.iter().chain(&worker_ids) {
        state.invoke(events::state_change(id, "running")).await.unwrap();
    }
    let out = spot.invoke(events::spot_warning(&web_ids[0])).await.unwrap();
    let replacement = out["replacement"].as_str().unwrap_or_else(|| panic!("a replacement: {out}")).to_string();
    state.invoke(events::state_change(&replacement, "running")).await.unwrap();
    state.invoke(events::state_change(&web_ids[0], "terminated")).await.unwrap();
    let warning = events::spot_warning(&worker_ids[0]);
    cluster.node("ip-10-0-1-10.ec2.internal", "us-east-1a", &worker_ids[0]);
    for name in ["web-1", "web-2"] {
        cluster.pod(PodSeed::new("default", name).on("ip-10-0-1-10.ec2.internal"));
    }
    spot.invoke(warning.clone()).await.unwrap();
    let drained = drain.invoke(warning).await.unwrap();
    assert_eq!(drained["action"], "drained", "{drained}");
    rebalance.invoke(events::rebalance(&worker_ids[1])).await.unwrap();
    recovery.invoke(events::load("scheduled-event.json")).await.unwrap();
    recovery.invoke(events::launch_unsuccessful(&h.fleet.asg_name)).await.unwrap();
    let _ = volume.invoke(events::disk_alarm(&replacement, "/", "ext4", 95.0)).await;
    // An interruption that cannot be acted on: its failure is recorded and alerted.
    h.proxy.on(|call| {
        (call.operation == "DetachInstances").then(|| {
            access_denied("autoscaling:DetachInstances", "arn:aws:sts::123456789012:assumed-role/spotkeeper/spot")
        })
    });
    spot.invoke(events::spot_warning(&worker_ids[1])).await.unwrap_err();
    h.proxy.clear_rules();

    let filling = json!({"instance_id": replacement, "path": "/", "used_percent": 96.0});
    api.call("POST", "/hooks/volume", "", Auth::Signed(&inbound), Some(filling.clone())).await;
    let (status, _) = api.call("POST", "/hooks/volume", "", Auth::Signed("not-the-key"), Some(filling)).await;
    assert_eq!(status, 401);
    api.call("POST", "/hooks/alertmanager", "", t, Some(events::load("alertmanager-disk-full.json"))).await;
    let stray = h.run_by_hand().await;
    api.call("POST", "/groups/{name}/instances", "web", t, Some(json!({"instance_id": stray}))).await;
    api.call("POST", "/groups/{name}/rollback", "web", t, None).await;
    for route in ["/groups", "/instances", "/savings"] {
        assert_eq!(api.call("GET", route, "", t, None).await.0, 200, "{route}");
    }
    // A Deployment failed over by hand (an EKS token minted for it), and its way back refused
    // while its rollout is followed.
    cluster.deployment("default", "web", 1);
    let route = "/groups/{name}/workloads/{namespace}/{deployment}";
    let (status, failed_over) = api.call("POST", &format!("{route}/failover"), "workers", t, None).await;
    assert_eq!(status, 200, "{failed_over}");
    let (status, refused) = api.call("POST", &format!("{route}/recover"), "workers", t, None).await;
    assert_eq!(status, 409, "{refused}");
    for route in ["/groups/{name}", "/groups/{name}/events", "/groups/{name}/workloads"] {
        for name in ["web", "workers"] {
            assert_eq!(api.call("GET", route, name, t, None).await.0, 200, "{route} {name}");
        }
    }
    // A failure on AWS's side: the answer says what failed, in our words, with the request id.
    h.proxy.on(|call| {
        (call.operation == "DescribeAutoScalingGroups").then(|| {
            access_denied(
                "autoscaling:DescribeAutoScalingGroups",
                "arn:aws:sts::123456789012:assumed-role/spotkeeper-api/api",
            )
        })
    });
    let (status, failed) = api.call("PATCH", "/groups/{name}", "workers", t, Some(json!({"rebalance": "off"}))).await;
    h.proxy.clear_rules();
    assert_eq!(status, 502, "{failed}");
    let request_id = failed["error"]["request_id"].as_str().unwrap_or_default().to_string();
    assert!(request_id.starts_with("gw-"), "API Gateway's request id: {failed}");
    assert!(!failed.to_string().contains("arn:aws"), "{failed}");
    let logged = api.function.output();
    assert!(
        logged.lines().any(|l| l.contains(&request_id) && l.contains("arn:aws:sts::123456789012")),
        "the cause is logged under {request_id}:\n{logged}"
    );
    let (status, removed) = api.call("DELETE", "/groups/{name}", "workers", t, None).await;
    assert_eq!(status, 200, "{removed}");

    // The run covered every route, and produced history, alerts, webhook deliveries and logs.
    let served: BTreeSet<(String, String)> = api::ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(api.routes, served, "every route was called");
    let history = history_items(&h).await;
    let kinds: BTreeSet<&str> = history.iter().map(|(k, _)| k.as_str()).collect();
    // Every kind of history and alert an operator's fleet produces in a day went through the scan.
    for kind in [
        "group-registered",
        "policy-changed",
        "instance-launched",
        "instance-state",
        "dns-updated",
        "interrupted",
        "replacement-launched",
        "replaced",
        "member-closed",
        "detached",
        "interruption-failed",
        "rebalance-recommended",
        "capacity-rebalance",
        "fallback",
        "volume-grown",
        "volume-refused",
        "instance-adopted",
        "webhook-delivered",
        "node-cordoned",
        "node-drained",
        "workload-failed-over",
        "group-removed",
    ] {
        assert!(kinds.contains(kind), "the run wrote {kind} history: {kinds:?}");
    }
    let alerts = h.sns_alerts().await;
    let alerted: BTreeSet<&str> = alerts.iter().filter_map(|a| a.attributes.get("event").map(String::as_str)).collect();
    for kind in [
        "interrupted",
        "replaced",
        "interruption-failed",
        "rebalance-recommended",
        "fallback",
        "volume-grown",
        "volume-refused",
        "node-drained",
        "workload-failed-over",
    ] {
        assert!(alerted.contains(kind), "the run alerted {kind}: {alerted:?}");
    }
    let sns: Vec<String> = alerts.iter().map(|a| format!("{} {} {:?}", a.subject, a.message, a.attributes)).collect();
    let slack: Vec<String> = h.slack.received().into_iter().map(|r| format!("{:?} {}", r.headers, r.body)).collect();
    let webhooks: Vec<String> = hooks.received().into_iter().map(|r| format!("{:?} {}", r.headers, r.body)).collect();
    assert!(!sns.is_empty() && !slack.is_empty() && !webhooks.is_empty(), "alerts went out everywhere");
    let logs: Vec<(&str, String)> = [
        ("api", &api.function),
        ("instance-state", &state),
        ("spot-interruption", &spot),
        ("rebalance-recommendation", &rebalance),
        ("scheduled-recovery", &recovery),
        ("volume-threshold", &volume),
        ("node-drain", &drain),
    ]
    .into_iter()
    .map(|(name, f)| (name, f.output()))
    .collect();
    assert!(logs.iter().all(|(_, log)| log.lines().count() > 0), "every function logged");
    // The drain's figures went out as metrics (embedded metric format lines).
    let figures: Vec<Value> = drain
        .output()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    let evicted = figures.iter().find(|d| d.get("PodsEvicted").is_some()).map(|d| d["PodsEvicted"].clone());
    assert_eq!(evicted, Some(json!(2)), "{figures:?}");
    assert!(figures.iter().any(|d| d.get("DrainSecondsToEmpty").is_some()), "{figures:?}");

    let mut places: Vec<(String, &str)> = Vec::new();
    places.extend(api.answers.iter().map(|a| ("an API answer".to_string(), a.as_str())));
    places.extend(history.iter().map(|(kind, item)| (format!("history {kind}"), item.as_str())));
    places.extend(sns.iter().map(|a| ("an SNS alert".to_string(), a.as_str())));
    places.extend(slack.iter().map(|a| ("a Slack message".to_string(), a.as_str())));
    places.extend(webhooks.iter().map(|a| ("a webhook delivery".to_string(), a.as_str())));
    places.extend(logs.iter().flat_map(|(name, log)| log.lines().map(move |l| (format!("{name}'s log"), l))));
    let tokens = cluster.requests().len();
    assert!(tokens > 3, "the drain and the API's check sent EKS tokens: {tokens} requests");
    // An EKS token's mark: any token minted for the cluster begins with it.
    for secret in secrets.into_iter().chain(["k8s-aws-v1."]) {
        for (place, text) in &places {
            assert!(!text.contains(secret), "a secret ({secret}) is in {place}: {text}");
        }
    }
}
