//! The library's error: what went wrong, with enough context to act on it.

use std::sync::Arc;

use thiserror::Error;

use crate::adapters::aws::AwsError;
use crate::adapters::kubernetes::{ConnectError, KubeError};
use crate::adapters::store::StoreError;
use crate::decisions::plan::PlanError;
use crate::runtime::config::ConfigError;
use crate::runtime::event::EventError;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The group's spec gives no launch (it was valid when registered): nothing was launched.
    #[error("the group's spec gives no pools to launch into: {0}")]
    Plan(#[from] PlanError),
    /// The input is not acceptable; nothing was done.
    #[error("bad input: {0}")]
    Invalid(String),
    /// The table could not be read for a batch: none of its events was acted on.
    #[error("could not read the fleet table: {0}; the event will be delivered again")]
    TableUnread(#[source] Arc<StoreError>),
    /// A launch kept from an earlier delivery could not be read back; launching anew could launch twice.
    #[error("could not read back an earlier launch for it: {0}; the event will be delivered again")]
    KeptLaunchUnread(#[source] Arc<StoreError>),
    /// EC2 answered a launch with no instance; its errors say why.
    #[error("EC2 launched no replacement: {errors}; the event will be delivered again")]
    NotLaunched { errors: String },
    /// The action on several events failed at once: each event carries the one cause.
    #[error("{0}; the event will be delivered again")]
    Shared(#[source] Arc<Error>),
    /// The Auto Scaling group a group follows is gone, or has no mixed instances policy to change.
    #[error("{0}; the event will be delivered again")]
    AutoScaling(AsgProblem),
    /// Work was left when the invocation's time ran out (or a cluster could not be reached yet):
    /// what was done is kept, and the next delivery continues.
    #[error("{0}; the event will be delivered again")]
    Unfinished(String),
    /// The cluster's API server failed or refused a call.
    #[error("the cluster: {0}")]
    Kube(#[from] KubeError),
    /// The cluster could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A Deployment's failover cannot go on as the Deployment is now.
    #[error("{0}")]
    Workload(String),
    /// A workflow's typed outcome could not become the function's JSON answer.
    #[error("could not write the answer: {0}")]
    Outcome(#[source] serde_json::Error),
}

/// What is wrong with a group's Auto Scaling group.
#[derive(Debug, Error)]
pub enum AsgProblem {
    #[error("Auto Scaling group {0} no longer exists")]
    Gone(String),
    #[error("Auto Scaling group {0} has no mixed instances policy")]
    NoMixedInstancesPolicy(String),
}

impl Error {
    /// Whether the same input could succeed later. Input that can never succeed (an unreadable
    /// or unexpected event, a refused value) is acknowledged, not delivered again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Kube(e) => e.is_retryable(),
            Error::Connect(e) => e.is_retryable(),
            Error::Event(_) | Error::Invalid(_) | Error::Config(_) | Error::Outcome(_) | Error::Workload(_) => false,
            _ => true,
        }
    }

    /// A short name for the kind of failure, as the Lambda runtime reports it.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "ConfigError",
            Error::Event(_) => "EventError",
            Error::Store(_) => "StoreError",
            Error::Aws(_) => "AwsError",
            Error::Plan(_) => "PlanError",
            Error::TableUnread(_)
            | Error::KeptLaunchUnread(_)
            | Error::NotLaunched { .. }
            | Error::Shared(_)
            | Error::AutoScaling(_)
            | Error::Unfinished(_) => "RetryError",
            Error::Kube(_) | Error::Connect(_) => "ClusterError",
            Error::Workload(_) => "WorkloadError",
            Error::Invalid(_) => "InvalidInput",
            Error::Outcome(_) => "OutcomeError",
        }
    }
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(err: Error) -> Self {
        lambda_runtime::Diagnostic { error_type: err.kind().to_string(), error_message: err.to_string() }
    }
}
