//! Logs and metrics. Logs: JSON through `tracing`, honouring Lambda's logging controls
//! (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`) and `RUST_LOG`. Metrics: CloudWatch Embedded
//! Metric Format lines on stdout (no CloudWatch API call on any path), namespace `spotkeeper`,
//! dimension `function` (and `group` where a metric is about one).

use metrics_cloudwatch_embedded::Collector;

pub const NAMESPACE: &str = "spotkeeper";

/// The crates whose TRACE lines may be logged: spotkeeper's own (the library and the functions).
const OWN_CRATES: &[&str] = &[
    "spotkeeper",
    "api",
    "instance_state",
    "rebalance_recommendation",
    "scheduled_recovery",
    "spot_interruption",
    "volume_threshold",
];

/// Installs the log subscriber; call once, first thing in `main`. It is Lambda's default one
/// (level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else INFO; JSON when
/// `AWS_LAMBDA_LOG_FORMAT=JSON`), with other crates held to DEBUG: at TRACE the runtime logs each
/// raw event (the API's `Authorization` header, signed webhook bodies) and the SDK what it sends and
/// receives (decrypted SSM parameters, the group items with their webhook secrets).
pub fn init() {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
    use tracing_subscriber::prelude::*;

    let format = std::env::var("AWS_LAMBDA_LOG_FORMAT").unwrap_or_default();
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG"));
    let level = level.as_deref().unwrap_or("INFO").parse::<LevelFilter>().unwrap_or(LevelFilter::INFO);
    let asked = EnvFilter::builder().with_default_directive(level.into()).from_env_lossy();
    let capped = OWN_CRATES.iter().fold(Targets::new().with_default(LevelFilter::DEBUG), |targets, own| {
        targets.with_target(*own, LevelFilter::TRACE)
    });
    let logs = tracing_subscriber::fmt().with_target(false).without_time().with_env_filter(asked);
    if format.eq_ignore_ascii_case("json") {
        logs.json().finish().with(capped).init();
    } else {
        logs.finish().with(capped).init();
    }
}

/// Installs the metrics recorder for this process (once); `None` if one is installed already.
pub fn metrics(function: &'static str) -> Option<&'static Collector> {
    metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension("function", function)
        .init()
        .map_err(|e| tracing::warn!(error = %e, "no metrics recorder"))
        .ok()
}

/// Writes the metrics gathered since the last flush as one EMF line.
pub fn flush(collector: Option<&'static Collector>) {
    if let Some(collector) = collector
        && let Err(err) = collector.flush(std::io::stdout())
    {
        tracing::warn!(error = %err, "metrics not written");
    }
}
