//! The API's error answers: one JSON shape for all of them,
//! `{"error": {"status", "code", "message", "field"?, "request_id"?}}`.
//!
//! A failure on our side (5xx) says what failed in our words and carries a request id; its cause
//! (AWS's own text, which can name roles, accounts and ARNs) goes only to the log, under that id.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use spotkeeper::Error;
use spotkeeper::adapters::aws::AwsError;
use spotkeeper::adapters::kubernetes::ConnectError;
use spotkeeper::adapters::store::StoreError;
use spotkeeper::domain::ClusterName;
use spotkeeper::workflows::groups::{ClusterRefusal, GroupError};

/// The header that repeats a failed request's id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// What really failed, for the log only: never in the answer.
    pub cause: Option<String>,
    /// Set on 5xx answers: the id the cause is logged under.
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, cause: None, request_id: None }
    }

    pub fn on(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Keeps `cause` for the log; the caller sees only the message.
    pub fn caused_by(mut self, cause: impl Into<String>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// 400: the body is not what the route takes.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_body", message).on(field)
    }

    /// 422: the body is well formed but names something AWS does not have.
    pub fn unknown_reference(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_reference", message).on(field)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
}

/// Names an AWS failure in our words: which call, and what kind of failure its code says.
fn upstream(aws: &AwsError, what: &str) -> ApiError {
    let code = aws.code.as_deref().unwrap_or_default();
    let op = aws.operation;
    if code.contains("AccessDenied") || code.contains("Unauthorized") || code.contains("NotAuthorized") {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_denied",
            format!("AWS refused {op} ({what}): spotkeeper's role lacks a permission"),
        )
    } else if code.contains("Throttl") || code.contains("LimitExceeded") || code.contains("Unavailable") {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_busy",
            format!("AWS is busy or throttling {op} ({what}); try again shortly"),
        )
    } else {
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", format!("the AWS call {op} ({what}) failed"))
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let answer = match &err {
            Error::Store(StoreError::Conflict(message)) => return Self::conflict(message.clone()),
            // Our own words about the input: safe to show.
            Error::Invalid(message) => return Self::invalid("", message.clone()),
            Error::Store(StoreError::Aws(aws)) => upstream(aws, "the fleet table"),
            Error::Aws(aws) => upstream(aws, "the fleet's resources"),
            Error::Store(StoreError::Corrupt { .. }) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "a record in the fleet table is unreadable",
            ),
            Error::TableUnread(_)
            | Error::KeptLaunchUnread(_)
            | Error::NotLaunched { .. }
            | Error::Shared(_)
            | Error::AutoScaling(_)
            | Error::Unfinished(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the request could not be done now; try again",
            ),
            Error::Kube(_) | Error::Connect(_) => Self::new(
                StatusCode::BAD_GATEWAY,
                "cluster_error",
                "the group's cluster failed or refused the call; see its history",
            ),
            // Our own words about the Deployment as it is: safe to show.
            Error::Workload(message) => return Self::conflict(message.clone()),
            Error::Config(_) | Error::Event(_) | Error::Outcome(_) | Error::Plan(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "spotkeeper failed internally")
            }
        };
        // The log keeps what the answer leaves out (an ARN in an access refusal, say).
        answer.caused_by(format!("{err:?}"))
    }
}

impl From<GroupError> for ApiError {
    fn from(err: GroupError) -> Self {
        match err {
            GroupError::Unknown { field, message } => ApiError::unknown_reference(field, message),
            GroupError::Conflict(message) => ApiError::conflict(message),
            GroupError::NothingLaunched { codes, summary } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "launch_failed", format!("EC2 launched no instance: {codes}"))
                    .caused_by(summary)
            }
            GroupError::Cluster { cluster, source } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cluster_unusable", cluster_refused(&cluster, &source))
                    .on("kubernetes")
            }
            GroupError::Failed(err) => err.into(),
        }
    }
}

/// Why a group's cluster was refused, in one line: `EKS cluster prod cannot be used: the
/// cluster's API server could not be reached (connection or TLS): ...: Connection refused`.
fn cluster_refused(cluster: &ClusterName, refusal: &ClusterRefusal) -> String {
    let kube = match refusal {
        ClusterRefusal::Check(kube) | ClusterRefusal::Connect(ConnectError::Kube(kube)) => Some(kube),
        _ => None,
    };
    // An answer from the server is told in the refusal's own words; kube's rendering of the same
    // answer only adds its Status struct.
    let why = if kube.is_some_and(|k| k.code().is_some()) { refusal.to_string() } else { chain(refusal) };
    match refusal {
        // These name the cluster themselves.
        ClusterRefusal::Connect(
            ConnectError::NoSuchCluster(_)
            | ConnectError::Describe { .. }
            | ConnectError::NotActive { .. }
            | ConnectError::Described { .. },
        ) => why,
        _ => format!("EKS cluster {cluster} cannot be used: {why}"),
    }
}

/// An error and its causes in one line, `what: why: why`, each cause once: the operator learns
/// why a cluster was refused (an unknown CA, a refused connection) without the logs. The causes
/// are the client's and AWS's own words (AWS's with ARNs masked); a token is never among them,
/// and a line that looked like one would be left out.
fn chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        let token_like = text.contains("k8s-aws-v1.") || text.to_ascii_lowercase().contains("bearer");
        if !text.is_empty() && !token_like && !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        source = cause.source();
    }
    line
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Error::from(err).into()
    }
}

impl From<AwsError> for ApiError {
    fn from(err: AwsError) -> Self {
        Error::from(err).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"status": self.status.as_u16(), "code": self.code, "message": self.message});
        if let Some(field) = &self.field {
            error["field"] = json!(field);
        }
        if let Some(id) = &self.request_id {
            error["request_id"] = json!(id);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(id) = self.request_id.as_deref().and_then(|id| HeaderValue::from_str(id).ok()) {
            response.headers_mut().insert(REQUEST_ID_HEADER, id);
        } else if self.status.is_server_error() {
            // Not yet stamped: `stamp_failures` logs the cause and answers again with the id.
            response.extensions_mut().insert(self);
        }
        response
    }
}

/// API Gateway's id of this request when it came through API Gateway; a fresh one otherwise.
fn request_id(request: &Request) -> String {
    use lambda_http::request::RequestContext;
    let from_gateway = request.extensions().get::<RequestContext>().and_then(|context| match context {
        RequestContext::ApiGatewayV2(c) => c.request_id.clone(),
        _ => None,
    });
    from_gateway.filter(|id| !id.is_empty()).unwrap_or_else(|| format!("sk-{:016x}", rand::random::<u64>()))
}

/// Every 5xx answer carries a request id, and its cause is logged under the same id, so an
/// operator holding the answer finds the cause.
pub async fn stamp_failures(request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let mut response = next.run(request).await;
    match response.extensions_mut().remove::<ApiError>() {
        Some(failure) => {
            tracing::error!(
                request_id = %id,
                status = failure.status.as_u16(),
                code = failure.code,
                cause = failure.cause.as_deref().unwrap_or(&failure.message),
                "request failed"
            );
            ApiError { request_id: Some(id), ..failure }.into_response()
        }
        None => response,
    }
}
