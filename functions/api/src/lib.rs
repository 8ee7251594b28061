//! `api`: the HTTP API behind API Gateway (payload v2). Every route but `GET /healthz` takes the
//! bearer token.

mod body;
mod changes;
mod deadline;
mod groups;
mod hooks;
pub mod reply;
mod views;
mod workloads;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use spotkeeper::Deps;
use spotkeeper::config::{Config, ConfigError, Secret};
use subtle::ConstantTimeEq;

use crate::reply::ApiError;

/// What the routes share: the dependencies and the token callers must present.
#[derive(Debug)]
pub struct Api {
    pub deps: Deps,
    pub token: Secret,
    /// The key of signed inbound webhooks; without it they are refused.
    pub webhook_secret: Option<Secret>,
}

impl Api {
    /// Reads the API token once, from the environment or SSM; without one the API does not start.
    pub async fn new(config: &Config, deps: Deps) -> Result<Self, ConfigError> {
        let source = config
            .api_token
            .as_ref()
            .ok_or(ConfigError::MissingSecret("SPOTKEEPER_API_TOKEN", "SPOTKEEPER_API_TOKEN_PARAM"))?;
        let token = source.resolve(&deps.clients.ssm).await?;
        let webhook_secret = match &config.webhook_secret {
            Some(source) => Some(source.resolve(&deps.clients.ssm).await?),
            None => None,
        };
        Ok(Self { deps, token, webhook_secret })
    }
}

/// Compares digests so that neither the content nor the length of the token leaks through timing.
fn token_matches(presented: &str, expected: &Secret) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.expose().as_bytes());
    a.ct_eq(&b).into()
}

async fn require_token(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let refusal = match presented {
        Some(token) if token_matches(token, &api.token) => return next.run(request).await,
        // A token was sent: saying how to send one would send the operator looking elsewhere.
        Some(_) => "the API token sent was refused: it is not this deployment's token",
        None => "send the API token as 'Authorization: Bearer <token>'",
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", refusal).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}

async fn wrong_method() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
}

/// Every route the API serves (method, path), as `openapi.yaml` documents them; a test checks
/// the two match and that each route answers.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/groups"),
    ("POST", "/groups"),
    ("GET", "/groups/{name}"),
    ("PATCH", "/groups/{name}"),
    ("DELETE", "/groups/{name}"),
    ("POST", "/groups/{name}/instances"),
    ("POST", "/groups/{name}/rollback"),
    ("GET", "/groups/{name}/events"),
    ("GET", "/groups/{name}/workloads"),
    ("POST", "/groups/{name}/workloads/{namespace}/{deployment}/failover"),
    ("POST", "/groups/{name}/workloads/{namespace}/{deployment}/recover"),
    ("GET", "/instances"),
    ("GET", "/savings"),
    ("POST", "/hooks/volume"),
    ("POST", "/hooks/alertmanager"),
];

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/groups", get(groups::list).post(groups::register))
        .route("/groups/{name}", get(groups::show).patch(groups::change).delete(groups::remove))
        .route("/groups/{name}/instances", post(groups::adopt))
        .route("/groups/{name}/rollback", post(groups::rollback))
        .route("/hooks/alertmanager", post(hooks::alertmanager))
        .route("/groups/{name}/events", get(views::events))
        .route("/groups/{name}/workloads", get(workloads::list))
        .route("/groups/{name}/workloads/{namespace}/{deployment}/failover", post(workloads::fail_over))
        .route("/groups/{name}/workloads/{namespace}/{deployment}/recover", post(workloads::recover))
        .route("/instances", get(views::instances))
        .route("/savings", get(views::savings))
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token))
        // Signed instead of bearer: monitors that call it carry a shared secret, not our token.
        .route("/hooks/volume", post(hooks::volume_hook))
        .route("/healthz", get(healthz))
        .route("/", get(views::dashboard))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(body::MAX_BODY))
        .layer(middleware::from_fn(reply::stamp_failures))
        .with_state(api)
}
