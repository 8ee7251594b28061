//! The harness behind the end-to-end tests and the demo: the local AWS emulator, the fleet table
//! created from template.yaml, a small fleet, real-shaped events and the functions themselves.

pub mod emulator;
pub mod events;
pub mod fleet;
pub mod runtime;
pub mod table;

use std::sync::Arc;

use aws_config::SdkConfig;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use spotkeeper::Deps;
use spotkeeper::config::{Config, Secret};
use tower::ServiceExt;

pub use emulator::Emulator;
pub use fleet::LocalFleet;

pub const TABLE: &str = "spotkeeper-fleet";
pub const TOKEN: &str = "local-test-token";

/// A running emulator with the fleet table and a small fleet in it.
pub struct Harness {
    pub emulator: Emulator,
    pub sdk: SdkConfig,
    pub deps: Deps,
    pub fleet: LocalFleet,
}

impl Harness {
    pub async fn start() -> Self {
        let emulator = Emulator::start();
        let sdk = emulator.sdk_config();
        table::create_table(&aws_sdk_dynamodb::Client::new(&sdk), TABLE).await.expect("the fleet table");
        let fleet = LocalFleet::build(&sdk).await.expect("the local fleet");
        let config = Config::from_lookup(|k| (k == "SPOTKEEPER_TABLE").then(|| TABLE.to_string())).expect("config");
        let deps = Deps::new(&config, &sdk);
        Self { emulator, sdk, deps, fleet }
    }

    /// Calls the `api` function's router in process, as API Gateway would.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let api = api::Api { deps: self.deps.clone(), token: Secret::new(TOKEN) };
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty);
        let response = api::router(Arc::new(api))
            .oneshot(request.header("content-type", "application/json").body(body).expect("a request"))
            .await
            .expect("the router answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("a body");
        let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into())) };
        (status, json)
    }

    /// Sends an event to the `instance-state` function.
    pub async fn instance_state(&self, event: Value) -> Result<Value, spotkeeper::Error> {
        instance_state::handle(&self.deps, event).await
    }

    /// The environment a deployed function would have, pointed at the emulator.
    pub fn function_env(&self) -> Vec<(String, String)> {
        [
            ("SPOTKEEPER_TABLE", TABLE),
            ("AWS_ENDPOINT_URL", self.emulator.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_MAX_ATTEMPTS", "1"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
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

    /// Every instance in the emulator.
    pub async fn instance_count(&self) -> usize {
        let out = self.ec2().describe_instances().send().await.expect("DescribeInstances");
        out.reservations.unwrap_or_default().iter().map(|r| r.instances().len()).sum()
    }
}
