//! Thin adapters over the AWS SDK clients: one module per service, no decisions.

pub mod autoscaling;
pub mod ec2;
pub mod pricing;
pub mod route53;
pub mod ssm;

use std::error::Error as StdError;
use std::fmt::{self, Debug};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use thiserror::Error;

/// An AWS call that failed, with the service's error code when it sent one. Its text is one
/// sentence, `<Operation> failed: <Code>: <message>`, fit for history and alerts; the SDK's full
/// dump (raw headers and bodies) goes to the log at debug where the error is made.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub operation: &'static str,
    pub code: Option<String>,
    /// The service's own message, or what kind of failure it was when no answer came.
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = shown(&self.message);
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {message}", self.operation),
            None => write!(f, "{} failed: {message}", self.operation),
        }
    }
}

/// A service message as history, alerts and API answers show it: the ARNs in it (an access
/// refusal names the role and the account) and an encoded authorization report are left out;
/// `message` keeps them for the log.
fn shown(message: &str) -> String {
    const ENCODED: &str = "Encoded authorization failure message:";
    let (message, encoded) = match message.split_once(ENCODED) {
        Some((before, _)) => (before.trim_end(), true),
        None => (message, false),
    };
    let words: Vec<&str> = message
        .split(' ')
        .map(|word| if word.trim_start_matches(['(', '\'', '"']).starts_with("arn:") { "(an ARN)" } else { word })
        .collect();
    let mut shown = words.join(" ");
    if encoded {
        shown.push_str(" (the encoded authorization report is in the log)");
    }
    shown
}

impl AwsError {
    pub fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: Debug,
    {
        tracing::debug!(operation, error = %DisplayErrorContext(&err), "AWS call failed");
        let code = err.code().map(str::to_owned);
        let message = match (&err, err.message()) {
            (_, Some(message)) => message.to_string(),
            (SdkError::ServiceError(_), None) => "the service answered with an error and no message".to_string(),
            (SdkError::TimeoutError(_), None) => "no answer in time".to_string(),
            (SdkError::DispatchFailure(failure), None) if failure.is_timeout() => {
                "no answer in time (the connection timed out)".to_string()
            }
            (SdkError::DispatchFailure(failure), None) if failure.is_io() => {
                "the service could not be reached (connection failed)".to_string()
            }
            (SdkError::DispatchFailure(_), None) => "the request could not be sent".to_string(),
            (SdkError::ResponseError(_), None) => "the answer could not be read".to_string(),
            (SdkError::ConstructionFailure(_), None) => "the request could not be built".to_string(),
            (_, None) => "the call failed".to_string(),
        };
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
            ec2: ec2::Ec2::new(aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(sdk)
                    .retry_config(ec2_retries(sdk))
                    .retry_classifier(ec2::CapacityIsFinal)
                    .build(),
            )),
            autoscaling: autoscaling::AutoScaling::new(aws_sdk_autoscaling::Client::new(sdk)),
            route53: route53::Route53::new(aws_sdk_route53::Client::new(sdk)),
            ssm: ssm::Ssm::new(aws_sdk_ssm::Client::new(sdk)),
            // The Price List API answers in us-east-1 only (and a few others), for every region.
            pricing: pricing::Pricing::new(aws_sdk_pricing::Client::from_conf(
                aws_sdk_pricing::config::Builder::from(sdk).region(aws_config::Region::new("us-east-1")).build(),
            )),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(sdk).retry_config(dynamodb_retries(sdk)).build(),
            ),
            sns: aws_sdk_sns::Client::new(sdk),
            region: sdk.region().map_or_else(|| "us-east-1".to_string(), std::string::ToString::to_string),
        }
    }
}

/// Retries with the SDK's exponential backoff and full jitter, at least `attempts` of them.
fn retries(sdk: &SdkConfig, attempts: u32, initial: Duration, cap: Duration) -> RetryConfig {
    let configured = sdk.retry_config().cloned().unwrap_or_else(RetryConfig::standard);
    let attempts = configured.max_attempts().max(attempts);
    configured.with_max_attempts(attempts).with_initial_backoff(initial).with_max_backoff(cap)
}

/// EC2 throttles bursts (a token bucket per kind of call, refilled a few tokens a second): a
/// launch throttled during a mass interruption must wait its turn, not fail. So EC2 calls get
/// more attempts than the SDK's default 3, the backoff capped at 5 s: at most 37 s of waiting,
/// ~19 s on average, inside the interruption function's 60-second timeout. (In the burst test,
/// 1000 warnings, the unluckiest launch needed 5 tries.)
fn ec2_retries(sdk: &SdkConfig) -> RetryConfig {
    retries(sdk, 10, Duration::from_secs(1), Duration::from_secs(5))
}

/// The table is the record of what was launched for what: a write lost after a launch loses the
/// pairing. DynamoDB answers in milliseconds, so its retries start at 50 ms (the SDK's default
/// 1 s would stall the claim on the critical path) and there are more of them.
fn dynamodb_retries(sdk: &SdkConfig) -> RetryConfig {
    retries(sdk, 5, Duration::from_millis(50), Duration::from_secs(2))
}

/// The SDK configuration from the standard variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, ...).
pub async fn sdk_config() -> SdkConfig {
    aws_config::load_defaults(BehaviorVersion::latest()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_without_the_role_and_account() {
        let denied = AwsError {
            operation: "DetachInstances",
            code: Some("AccessDenied".into()),
            message: "User: arn:aws:sts::123456789012:assumed-role/spotkeeper/fn is not authorized to perform: autoscaling:DetachInstances on resource: (arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x) Encoded authorization failure message: AbCdEf0123".into(),
        };
        let text = denied.to_string();
        assert_eq!(
            text,
            "DetachInstances failed: AccessDenied: User: (an ARN) is not authorized to perform: autoscaling:DetachInstances on resource: (an ARN) (the encoded authorization report is in the log)"
        );
        assert!(denied.message.contains("123456789012"), "the raw message stays for the log");
    }
}
