//! Logs and metrics. Logs: JSON through `tracing`, honouring Lambda's logging controls
//! (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`) and `RUST_LOG`. Metrics: CloudWatch Embedded
//! Metric Format lines on stdout (no CloudWatch API call on any path), namespace `spotkeeper`,
//! dimension `function` (and `group` where a metric is about one).

use metrics_cloudwatch_embedded::Collector;

pub const NAMESPACE: &str = "spotkeeper";

/// Installs the log subscriber; call once, first thing in `main`.
pub fn init() {
    lambda_runtime::tracing::init_default_subscriber();
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
