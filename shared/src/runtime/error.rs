//! The library's error: what went wrong, with enough context to act on it.

use thiserror::Error;

use crate::adapters::aws::AwsError;
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
    /// Nothing was done and the event should come again (SQS redelivers it).
    #[error("{0}; the event will be delivered again")]
    Retry(String),
}

impl Error {
    /// Whether the same input could succeed later. Input that can never succeed (an unreadable
    /// or unexpected event, a refused value) is acknowledged, not delivered again.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Error::Event(_) | Error::Invalid(_) | Error::Config(_))
    }

    /// A short name for the kind of failure, as the Lambda runtime reports it.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "ConfigError",
            Error::Event(_) => "EventError",
            Error::Store(_) => "StoreError",
            Error::Aws(_) => "AwsError",
            Error::Plan(_) => "PlanError",
            Error::Retry(_) => "RetryError",
            Error::Invalid(_) => "InvalidInput",
        }
    }
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(err: Error) -> Self {
        lambda_runtime::Diagnostic { error_type: err.kind().to_string(), error_message: err.to_string() }
    }
}
