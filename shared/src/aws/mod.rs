//! Thin adapters over the AWS SDK clients: one module per service, no decisions.

pub mod autoscaling;
pub mod ec2;
pub mod pricing;
pub mod route53;
pub mod ssm;

use std::error::Error as StdError;
use std::fmt::Debug;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use thiserror::Error;

/// An AWS call that failed, with the service's error code when it sent one.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{operation} failed: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: Debug,
    {
        let code = err.code().map(str::to_owned);
        // DisplayErrorContext keeps the code and message that a bare `?` would lose.
        let message = DisplayErrorContext(&err).to_string();
        Self { operation, code, message }
    }

    /// A response that did not carry what the API promises.
    pub fn malformed(operation: &'static str, what: &str) -> Self {
        Self { operation, code: None, message: format!("the response lacks {what}") }
    }

    /// The error says the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code.as_deref().is_some_and(|c| c.contains("NotFound") || c.starts_with("NoSuch"))
    }
}

/// Every client a function may need, built once at init from one SDK configuration.
#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: ec2::Ec2,
    pub autoscaling: autoscaling::AutoScaling,
    pub route53: route53::Route53,
    pub ssm: ssm::Ssm,
    pub pricing: pricing::Pricing,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sns: aws_sdk_sns::Client,
    /// The fleet's region (for prices and console links).
    pub region: String,
}

impl Clients {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            ec2: ec2::Ec2::new(aws_sdk_ec2::Client::new(sdk)),
            autoscaling: autoscaling::AutoScaling::new(aws_sdk_autoscaling::Client::new(sdk)),
            route53: route53::Route53::new(aws_sdk_route53::Client::new(sdk)),
            ssm: ssm::Ssm::new(aws_sdk_ssm::Client::new(sdk)),
            // The Price List API answers in us-east-1 only (and a few others), for every region.
            pricing: pricing::Pricing::new(aws_sdk_pricing::Client::from_conf(
                aws_sdk_pricing::config::Builder::from(sdk).region(aws_config::Region::new("us-east-1")).build(),
            )),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
            region: sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".to_string()),
        }
    }
}

/// The SDK configuration from the standard variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, ...).
pub async fn sdk_config() -> SdkConfig {
    aws_config::load_defaults(BehaviorVersion::latest()).await
}
