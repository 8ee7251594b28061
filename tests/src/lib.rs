//! The harness behind the end-to-end tests and the demo: the local AWS emulator, the fleet table
//! created from template.yaml, a small fleet, real-shaped events and the functions themselves.

pub mod clock;
pub mod eks;
pub mod emulator;
pub mod events;
pub mod fleet;
pub mod groups;
pub mod kube;
pub mod mass;
pub mod proxy;
pub mod queue;
pub mod receiver;
pub mod runtime;
pub mod table;

use std::sync::Arc;

use aws_config::SdkConfig;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use spotkeeper::config::{Config, Secret};
use spotkeeper::{Deadline, Deps};
use tower::ServiceExt;

pub use emulator::Emulator;
pub use fleet::LocalFleet;
pub use groups::{Standalone, member_in, tag};
pub use proxy::FaultProxy;
pub use receiver::Receiver;

pub const TABLE: &str = "spotkeeper-fleet";
/// The API token everywhere on this machine: the tests, the demo, `make emulator` and the API
/// events in events/.
pub const TOKEN: &str = "local-demo-token";
pub const WEBHOOK_SECRET: &str = "local-webhook-secret";

/// A running emulator with the fleet table and a small fleet in it. The functions under test
/// reach it through a fault-injecting proxy (which counts their calls); the test's own checks
/// go to the emulator directly. Alerts go to an SNS topic (read through an SQS subscription)
/// and to a local stand-in for Slack.
pub struct Harness {
    pub emulator: Emulator,
    pub proxy: FaultProxy,
    pub slack: Receiver,
    /// Straight to the emulator: for setting up and checking.
    pub sdk: SdkConfig,
    /// The functions' dependencies, through the proxy.
    pub deps: Deps,
    pub fleet: LocalFleet,
    pub topic_arn: String,
    pub alert_queue_url: String,
    /// The functions' clock: it moves only when a test moves it (and a millisecond per reading).
    pub clock: std::sync::Arc<clock::TestClock>,
}

/// A server the harness started; it stops on drop.
pub struct ServerHandle(tokio::task::JoinHandle<()>);

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An alert as an SNS subscriber receives it.
#[derive(Debug, Clone)]
pub struct SnsAlert {
    pub subject: String,
    pub message: String,
    pub attributes: std::collections::HashMap<String, String>,
}

impl Harness {
    pub async fn start() -> Self {
        let emulator = Emulator::start();
        let sdk = emulator.sdk_config();
        let proxy = FaultProxy::start(&emulator.endpoint).await;
        let slack = Receiver::start().await;
        table::create_table(&aws_sdk_dynamodb::Client::new(&sdk), TABLE).await.expect("the fleet table");
        let fleet = LocalFleet::build(&sdk).await.expect("the local fleet");
        let (topic_arn, alert_queue_url) = alert_subscription(&sdk).await;
        let slack_url = format!("{}/slack/hook", slack.url);
        let config = Config::from_lookup(|k| match k {
            "SPOTKEEPER_TABLE" => Some(TABLE.to_string()),
            "SPOTKEEPER_TOPIC_ARN" => Some(topic_arn.clone()),
            "SPOTKEEPER_SLACK_WEBHOOK_URL" => Some(slack_url.clone()),
            _ => None,
        })
        .expect("config");
        let clock = std::sync::Arc::new(clock::TestClock::starting_now());
        let deps = Deps::init(&config, &emulator::sdk_config_at(&proxy.endpoint))
            .await
            .expect("deps")
            .with_clock(clock.clone());
        Self { emulator, proxy, slack, sdk, deps, fleet, topic_arn, alert_queue_url, clock }
    }

    /// The alerts SNS delivered so far (read from the subscribed queue).
    pub async fn sns_alerts(&self) -> Vec<SnsAlert> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut alerts = Vec::new();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(&self.alert_queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("ReceiveMessage");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return alerts;
            }
            for m in messages {
                let envelope: Value = serde_json::from_str(m.body().unwrap_or("{}")).expect("an SNS envelope");
                let attributes = envelope["MessageAttributes"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v["Value"].as_str().unwrap_or_default().to_string()))
                    .collect();
                alerts.push(SnsAlert {
                    subject: envelope["Subject"].as_str().unwrap_or_default().to_string(),
                    message: envelope["Message"].as_str().unwrap_or_default().to_string(),
                    attributes,
                });
                if let Some(handle) = m.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(&self.alert_queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("DeleteMessage");
                }
            }
        }
    }

    /// Makes every Spot launch fail for lack of capacity (an instant fleet's 200 answer with an
    /// error per pool), as EC2 does when Spot is gone: the emulator cannot.
    pub fn no_spot_capacity(&self) {
        let pools = [("m5.large", self.fleet.subnet_a.clone()), ("m5a.large", self.fleet.subnet_b.clone())];
        self.proxy.on(move |call| {
            proxy::is_spot_fleet(call).then(|| {
                proxy::Fault::answer(
                    200,
                    "text/xml",
                    proxy::fleet_without_capacity(
                        &pools.iter().map(|(t, s)| (*t, s.as_str())).collect::<Vec<_>>(),
                        "spot",
                    ),
                )
            })
        });
    }

    /// Sends an event to the `rebalance-recommendation` function.
    pub async fn rebalance(&self, event: Value) -> Result<Value, spotkeeper::Error> {
        rebalance_recommendation::handle(&self.deps, event, invocation("RebalanceRecommendationFunction")).await
    }

    /// Sends an event (or an SQS batch) to the `node-drain` function.
    pub async fn node_drain(&self, event: Value) -> Result<Value, spotkeeper::Error> {
        self.node_drain_by(event, invocation("NodeDrainFunction")).await
    }

    /// Sends an event to the `node-drain` function, as an invocation ending at `deadline`.
    pub async fn node_drain_by(&self, event: Value, deadline: Deadline) -> Result<Value, spotkeeper::Error> {
        node_drain::handle(&self.deps, event, deadline).await
    }

    /// Sends an event to the `scheduled-recovery` function (the schedule's, unless given).
    pub async fn scheduled(&self, event: Option<Value>) -> Result<Value, spotkeeper::Error> {
        let event = event.unwrap_or_else(|| events::load("scheduled-event.json"));
        scheduled_recovery::handle(&self.deps, event, invocation("ScheduledRecoveryFunction")).await
    }

    /// Sends an event to the `spot-interruption` function.
    pub async fn spot_interruption(&self, event: Value) -> Result<Value, spotkeeper::Error> {
        spot_interruption::handle(&self.deps, event, invocation("SpotInterruptionFunction")).await
    }

    /// Calls the `api` function's router in process, as API Gateway would.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.call_raw(method, path, &headers, body.map(|b| b.to_string().into_bytes()).unwrap_or_default()).await
    }

    /// Calls the router with these headers and exactly these body bytes (for signed webhooks).
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let api = api::Api {
            deps: self.deps.clone(),
            token: Secret::new(TOKEN),
            webhook_secret: Some(Secret::new(WEBHOOK_SECRET)),
        };
        let mut request = Request::builder().method(method).uri(path).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = api::router(Arc::new(api))
            .oneshot(request.body(Body::from(body)).expect("a request"))
            .await
            .expect("the router answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("a body");
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, json)
    }

    /// Serves the `api` function's router on a free port of 127.0.0.1 (for a browser); the
    /// server stops when the handle drops.
    pub async fn serve_api(&self) -> (String, ServerHandle) {
        self.serve_api_beside(axum::Router::new()).await
    }

    /// Serves the `api` function's router with `beside`'s routes on the same origin (a page
    /// that drives the dashboard in a frame, as an operator would).
    pub async fn serve_api_beside(&self, beside: axum::Router) -> (String, ServerHandle) {
        let api = api::Api {
            deps: self.deps.clone(),
            token: Secret::new(TOKEN),
            webhook_secret: Some(Secret::new(WEBHOOK_SECRET)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port on 127.0.0.1");
        let address = listener.local_addr().expect("the server's address");
        let router = api::router(Arc::new(api)).merge(beside);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (format!("http://{address}"), ServerHandle(task))
    }

    /// Sends an event to the `volume-threshold` function.
    pub async fn volume_threshold(&self, event: Value) -> Result<Value, spotkeeper::Error> {
        volume_threshold::handle(&self.deps, event, invocation("VolumeThresholdFunction")).await
    }

    /// Registers the fleet's Auto Scaling group as the group `workers` through the API.
    pub async fn register_workers(&self) -> (StatusCode, Value) {
        let body = serde_json::json!({"name": "workers", "kind": "asg", "asg_name": self.fleet.asg_name});
        self.call(Method::POST, "/groups", Some(TOKEN), Some(body)).await
    }

    /// Sends an event to the `instance-state` function.
    pub async fn instance_state(&self, event: Value) -> Result<Value, spotkeeper::Error> {
        self.instance_state_by(event, invocation("InstanceStateFunction")).await
    }

    /// Sends an event to the `instance-state` function, as an invocation ending at `deadline`.
    pub async fn instance_state_by(&self, event: Value, deadline: Deadline) -> Result<Value, spotkeeper::Error> {
        instance_state::handle(&self.deps, event, deadline).await
    }

    /// The environment a deployed function would have, pointed at the emulator.
    pub fn function_env(&self) -> Vec<(String, String)> {
        [
            ("SPOTKEEPER_TABLE", TABLE),
            ("SPOTKEEPER_TOPIC_ARN", self.topic_arn.as_str()),
            ("SPOTKEEPER_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("AWS_ENDPOINT_URL", self.emulator.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_MAX_ATTEMPTS", "3"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("SPOTKEEPER_SLACK_WEBHOOK_URL", &format!("{}/slack/hook", self.slack.url)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk)
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    /// Every item in the table, for "nothing was written" checks.
    pub async fn table_items(&self) -> usize {
        let out = self.dynamodb().scan().table_name(TABLE).send().await.expect("Scan");
        out.items.unwrap_or_default().len()
    }

    /// What the record `web.fleet.internal` (the tests' standalone group's) points to.
    pub async fn web_dns(&self) -> Vec<String> {
        spotkeeper::adapters::aws::route53::Route53::new(aws_sdk_route53::Client::new(&self.sdk))
            .a_record(&self.fleet.zone_id, "web.fleet.internal")
            .await
            .expect("ListResourceRecordSets")
    }

    /// Midnight (UTC) of the test clock's day.
    pub fn clock_midnight(&self) -> chrono::DateTime<chrono::Utc> {
        let now = spotkeeper::clock::Clock::now(self.clock.as_ref());
        now.date_naive().and_hms_opt(0, 0, 0).map_or(now, |t| t.and_utc())
    }

    /// Stamps an event with the test clock's time (as EventBridge stamps it with the real time).
    pub fn now_on(&self, mut event: Value) -> Value {
        let now = spotkeeper::clock::Clock::now(self.clock.as_ref());
        event["time"] = Value::String(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        event
    }

    /// Starts an instance by hand (from the fleet's launch template, in subnet A), as an operator
    /// would before adopting it.
    pub async fn run_by_hand(&self) -> String {
        let template = aws_sdk_ec2::types::LaunchTemplateSpecification::builder()
            .launch_template_id(&self.fleet.template_id)
            .build();
        let run = self
            .ec2()
            .run_instances()
            .launch_template(template)
            .subnet_id(&self.fleet.subnet_a)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("RunInstances");
        run.instances()[0].instance_id().expect("an instance id").to_string()
    }

    /// The messages of one kind in a group's history (its newest 100 events), newest first.
    pub async fn history(&self, group: &str, kind: &str) -> Vec<String> {
        let path = format!("/groups/{group}/events?limit=100");
        let (_, events) = self.call(Method::GET, &path, Some(TOKEN), None).await;
        events["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == kind)
            .filter_map(|e| e["message"].as_str().map(str::to_string))
            .collect()
    }

    /// Every instance in the emulator.
    pub async fn instance_count(&self) -> usize {
        let out = self.ec2().describe_instances().send().await.expect("DescribeInstances");
        out.reservations.unwrap_or_default().iter().map(|r| r.instances().len()).sum()
    }
}

/// Says on the terminal, past the test harness's output capture, that a long test has started
/// and about how long it takes, so that a run does not look hung.
pub fn announce(test: &str, takes: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "    {test}: started; it takes {takes} on 2 cores, quiet until it ends");
}

/// The deadline of an invocation of `function` (its logical id in template.yaml) starting now:
/// the function's timeout there, or the template's global one.
pub fn invocation(function: &str) -> Deadline {
    static TIMEOUTS: std::sync::OnceLock<serde_yaml::Value> = std::sync::OnceLock::new();
    let template = TIMEOUTS.get_or_init(|| {
        let path = emulator::workspace_root().join("template.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("template.yaml: {e}"))
    });
    let seconds = template["Resources"][function]["Properties"]["Timeout"]
        .as_u64()
        .or_else(|| template["Globals"]["Function"]["Timeout"].as_u64())
        .unwrap_or_else(|| panic!("template.yaml gives {function} no timeout"));
    Deadline::after(std::time::Duration::from_secs(seconds))
}

/// The member ids of a group view, as the API answers it.
pub fn member_ids(group: &Value) -> Vec<String> {
    group["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["instance_id"].as_str().map(str::to_string))
        .collect()
}

/// The messages of the history entries of `kind` in a list of them (as the API answers it).
pub fn messages_of<'a>(entries: &'a Value, kind: &str) -> Vec<&'a str> {
    entries
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == kind)
        .filter_map(|e| e["message"].as_str())
        .collect()
}

/// An SNS topic for alerts with an SQS queue subscribed to it, as an e-mail subscriber would be.
async fn alert_subscription(sdk: &SdkConfig) -> (String, String) {
    let sns = aws_sdk_sns::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let topic_arn =
        sns.create_topic().name("spotkeeper-alerts").send().await.expect("CreateTopic").topic_arn.expect("a topic ARN");
    let queue_url = sqs
        .create_queue()
        .queue_name("spotkeeper-alerts-inbox")
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("a queue URL");
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("the queue ARN");
    sns.subscribe().topic_arn(&topic_arn).protocol("sqs").endpoint(queue_arn).send().await.expect("Subscribe");
    (topic_arn, queue_url)
}
