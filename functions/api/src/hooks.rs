//! Inbound webhooks that ask a volume to grow: `POST /hooks/volume`, signed like Stripe's
//! webhooks (so Grafana, Uptime Kuma or any monitor can call it), and Prometheus Alertmanager's
//! webhook on `POST /hooks/alertmanager` (bearer token).

use crate::deadline::RequestDeadline;
use spotkeeper::workflows::report::Report;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use spotkeeper::Error;
use spotkeeper::domain::{MountPath, signature};
use spotkeeper::workflows::volume::{self, Filling, Outcome};

use crate::Api;
use crate::body::{self, Raw, check_instance_id};
use crate::reply::ApiError;

type Reply = Result<(StatusCode, Json<Value>), ApiError>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VolumeHook {
    pub instance_id: String,
    pub path: String,
    pub used_percent: f64,
}

fn grown(result: Result<Outcome, Error>) -> Result<Outcome, ApiError> {
    match result {
        Ok(value) => Ok(value),
        Err(Error::Invalid(message)) => Err(ApiError::invalid("path", message)),
        Err(other) => Err(other.into()),
    }
}

/// The instance id checked, the path parsed: both go into AWS calls and a shell script.
fn check_filling(instance_id: &str, path: String, field_prefix: &str) -> Result<MountPath, ApiError> {
    check_instance_id(&format!("{field_prefix}instance_id"), instance_id)?;
    MountPath::try_from(path).map_err(|m| ApiError::invalid(format!("{field_prefix}path"), m))
}

pub(crate) async fn volume_hook(
    State(api): State<Arc<Api>>,
    RequestDeadline(deadline): RequestDeadline,
    headers: HeaderMap,
    Raw(raw): Raw,
) -> Result<(StatusCode, Json<Outcome>), ApiError> {
    let unauthorized = |message: String| ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", message);
    let Some(secret) = &api.webhook_secret else {
        return Err(unauthorized("inbound webhooks are off: set SPOTKEEPER_WEBHOOK_SECRET (or _PARAM)".into()));
    };
    let header = headers.get(signature::HEADER).and_then(|v| v.to_str().ok());
    signature::verify(secret.expose().as_bytes(), header, &raw, api.deps.clock.now())
        .map_err(|e| unauthorized(e.to_string()))?;
    let hook: VolumeHook = body::parse(&raw)?;
    let path = check_filling(&hook.instance_id, hook.path, "")?;
    if !(0.0..=100.0).contains(&hook.used_percent) {
        return Err(ApiError::invalid("used_percent", "must be 0-100"));
    }
    let filling = Filling {
        instance_id: hook.instance_id,
        path,
        used_percent: Some(hook.used_percent),
        fstype: None,
        source: "webhook",
    };
    let mut report = Report::new(&api.deps);
    let outcome = volume::grow(&api.deps, &filling, &mut report).await;
    report.send(&api.deps, deadline).await;
    Ok((StatusCode::OK, Json(grown(outcome)?)))
}

/// Alertmanager's webhook payload: its schema is Alertmanager's, so extra fields are accepted;
/// what spotkeeper needs is checked.
#[derive(Debug, Deserialize)]
pub(crate) struct Alertmanager {
    pub alerts: Vec<AlertmanagerAlert>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AlertmanagerAlert {
    pub status: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

pub(crate) async fn alertmanager(
    State(api): State<Arc<Api>>,
    RequestDeadline(deadline): RequestDeadline,
    Raw(raw): Raw,
) -> Reply {
    let payload: Alertmanager = body::parse(&raw)?;
    let mut results = Vec::new();
    let mut report = Report::new(&api.deps);
    for (i, alert) in payload.alerts.iter().enumerate().filter(|(_, a)| a.status == "firing") {
        let label = |name: &str| {
            alert.labels.get(name).cloned().ok_or_else(|| {
                ApiError::invalid(
                    format!("alerts[{i}].labels.{name}"),
                    format!("a firing alert needs the label {name}"),
                )
            })
        };
        let (instance_id, path) = (label("instance_id")?, label("path")?);
        let path = check_filling(&instance_id, path, &format!("alerts[{i}].labels."))?;
        let filling = Filling {
            instance_id,
            path,
            used_percent: None,
            fstype: alert.labels.get("fstype").cloned(),
            source: "alertmanager",
        };
        match grown(volume::grow(&api.deps, &filling, &mut report).await) {
            Ok(result) => results.push(result),
            Err(err) => {
                report.send(&api.deps, deadline).await;
                return Err(err);
            }
        }
    }
    report.send(&api.deps, deadline).await;
    Ok((StatusCode::OK, Json(json!({"results": results}))))
}
