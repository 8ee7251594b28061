//! spotkeeper: keeps an EC2 fleet on Spot capacity. This crate holds everything that is not a
//! Lambda function's `main`: the domain (`fleet`), the decisions (`plan`), the table (`store`),
//! the AWS adapters (`aws`), events, configuration and logs.

#[cfg(test)]
mod architecture;
pub mod aws;
pub mod clock;
pub mod config;
pub mod deadline;
pub mod error;
pub mod event;
#[cfg(test)]
mod fixtures;
pub mod fleet;
pub mod growth;
pub mod history;
pub mod images;
pub mod intake;
pub mod launch;
pub mod notify;
pub mod online;
pub mod outbound;
pub mod plan;
pub mod rebalancing;
pub mod recovery;
pub mod replacement;
pub mod savings;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod volume;
pub mod webhooks;

use std::sync::Arc;

pub use deadline::Deadline;
pub use error::Error;
/// The metrics facade, for the functions' counters, gauges and histograms (emitted as EMF).
pub use metrics;

use aws::Clients;
use clock::{SharedClock, SystemClock};
use config::{Config, ConfigError};
use notify::Notifier;
use store::Store;

/// What a handler works with: the AWS clients, the table, alerts and the clock, built once at init.
#[derive(Clone, Debug)]
pub struct Deps {
    pub clients: Clients,
    pub store: Store,
    pub notifier: Notifier,
    pub clock: SharedClock,
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
        Ok(Self { clients, store, notifier, clock: Arc::new(SystemClock) })
    }

    pub fn with_clock(self, clock: SharedClock) -> Self {
        Self { clock, ..self }
    }

    /// Alerts: SNS, Slack and the groups' webhooks, a flood of one kind folded into a digest.
    /// After the action, never before it; a failed alert is logged (or recorded, for webhooks),
    /// never a failed action.
    pub async fn alert(&self, alerts: &[notify::Alert]) {
        let alerts = notify::digest(alerts, notify::DIGEST_OVER);
        tokio::join!(self.notifier.send(&alerts), webhooks::send(self, &alerts));
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
