//! The runtime: what every function shares around its workflows — the dependencies built once at
//! init (`Deps`), `serve`, configuration, logs and metrics, the clock, event envelopes and errors.

pub mod clock;
pub mod config;
pub(crate) mod error;
pub mod event;
pub mod telemetry;

use std::sync::Arc;

pub(crate) use error::Error;

use crate::adapters::aws::{self, Clients};
use crate::adapters::kubernetes::Clusters;
use crate::adapters::notify::Notifier;
use crate::adapters::store::Store;
use crate::domain::Deadline;
use clock::{SharedClock, SystemClock};
use config::{Config, ConfigError};

/// What a handler works with: the AWS clients, the table, alerts and the clock, built once at init.
#[derive(Clone, Debug)]
pub struct Deps {
    pub clients: Clients,
    pub store: Store,
    pub notifier: Notifier,
    pub clock: SharedClock,
    /// The EKS clusters of groups with a `kubernetes` block (nothing is reached until a drain).
    pub clusters: Clusters,
}

impl Deps {
    /// Builds everything a function needs; reads the Slack URL from SSM when configured so.
    pub async fn init(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let clients = Clients::new(sdk);
        let slack = match &config.slack_webhook {
            Some(source) => Some(source.resolve(&clients.ssm).await?),
            None => None,
        };
        let store = Store::new(clients.dynamodb.clone(), &config.table);
        let notifier = Notifier::new(clients.sns.clone(), config.topic_arn.clone(), slack, clients.region.clone());
        let clusters = Clusters::new(aws_sdk_eks::Client::new(sdk), sdk.credentials_provider(), clients.region.clone());
        Ok(Self { clients, store, notifier, clock: Arc::new(SystemClock), clusters })
    }

    pub fn with_clock(self, clock: SharedClock) -> Self {
        Self { clock, ..self }
    }
}

/// Runs an event function: logs, metrics, configuration and clients once at init, then
/// `handler` for every invocation, with the invocation's deadline, its metrics flushed after
/// each. A bad configuration stops init with a message that says what to fix.
pub async fn serve(
    function: &'static str,
    handler: impl AsyncFn(&Deps, serde_json::Value, Deadline) -> Result<serde_json::Value, Error>,
) -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let collector = telemetry::metrics(function);
    let config = Config::from_env()?;
    let deps = Deps::init(&config, &aws::sdk_config().await).await?;
    let handle = async |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
        let deadline = Deadline::at(event.context.deadline());
        let outcome = handler(&deps, event.payload, deadline).await;
        if outcome.is_err() {
            metrics::counter!("Errors").increment(1);
        }
        telemetry::flush(collector);
        outcome
    };
    lambda_runtime::run(lambda_runtime::service_fn(handle)).await
}
