//! The failover routes: a group's Deployments' failovers, a failover to Fargate and a way back to
//! Spot asked for by hand.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use spotkeeper::domain::{Group, WorkloadRecord, WorkloadRef, WorkloadState, is_namespace};
use spotkeeper::workflows::failover::{self, FailedOver, RecoveredByHand};
use spotkeeper::workflows::report::Report;
use spotkeeper::{Deadline, Deps};

use crate::Api;
use crate::deadline::RequestDeadline;
use crate::groups;
use crate::reply::ApiError;

type Reply = Result<(StatusCode, Json<Value>), ApiError>;

/// One Deployment's failover as operators read it.
fn view(record: &WorkloadRecord) -> Value {
    json!({
        "workload": record.workload, "state": record.state, "since": record.since, "reason": record.reason,
        "failed_attempts": record.failed_attempts, "next_attempt": record.next_attempt,
        "migrated_at": record.migrated_at, "last_recovered_at": record.last_recovered_at,
    })
}

/// The path's namespace and Deployment name, checked before anything is read or changed.
fn workload_ref(namespace: &str, deployment: &str) -> Result<WorkloadRef, ApiError> {
    WorkloadRef::new(namespace, deployment).map_err(|message| {
        let field = if is_namespace(namespace) { "deployment" } else { "namespace" };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", message).on(field)
    })
}

fn gone(workload: &str) -> ApiError {
    ApiError::not_found(format!("no Deployment {workload} in the group's cluster"))
}

/// An opted-in Deployment that never failed over: where its annotations say it stands.
fn unrecorded((workload, state): &(WorkloadRef, WorkloadState)) -> Value {
    json!({
        "workload": workload, "state": state, "since": null, "reason": "opted in; never failed over",
        "failed_attempts": 0, "next_attempt": null, "migrated_at": null, "last_recovered_at": null,
    })
}

/// The group's opted-in Deployments: their failovers from the table, and the others the
/// cluster lists (the table alone, and why, when the cluster cannot be read); an empty list for
/// a group without a `kubernetes.failover` block.
pub(crate) async fn list(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Reply {
    let group = groups::find(&api.deps, name).await?;
    let listed = failover::listed(&api.deps, &group).await?;
    let mut views: Vec<Value> =
        listed.records.iter().map(view).chain(listed.unrecorded.iter().map(unrecorded)).collect();
    views.sort_by(|a, b| a["workload"].as_str().cmp(&b["workload"].as_str()));
    let mut answer = json!({ "workloads": views });
    if let Some(error) = listed.cluster_error {
        answer["cluster_error"] = json!(error);
    }
    Ok((StatusCode::OK, Json(answer)))
}

/// A step by hand on the Deployment the path names: its group found and its names checked
/// before anything is read, and the step's report sent whatever came of it.
async fn by_hand<T>(
    api: &Api,
    (name, namespace, deployment): (String, String, String),
    deadline: Deadline,
    step: impl AsyncFnOnce(&Deps, &Group, &WorkloadRef, &mut Report) -> Result<T, spotkeeper::Error>,
) -> Result<T, ApiError> {
    let deps = &api.deps;
    let group = groups::find(deps, name).await?;
    let workload = workload_ref(&namespace, &deployment)?;
    let mut report = Report::new(deps);
    let done = step(deps, &group, &workload, &mut report).await;
    report.send(deps, deadline).await;
    Ok(done?)
}

/// Fails a Deployment over to Fargate by hand (no opt-in annotation needed): patched once,
/// already there, or refused with the reasons its pods cannot run on Fargate.
pub(crate) async fn fail_over(
    State(api): State<Arc<Api>>,
    Path(path): Path<(String, String, String)>,
    RequestDeadline(deadline): RequestDeadline,
) -> Reply {
    let done = by_hand(&api, path, deadline, failover::fail_over_by_hand).await?;
    match &done {
        FailedOver::Patched { .. } | FailedOver::Already { .. } | FailedOver::Taken { .. } => {
            Ok((StatusCode::OK, Json(json!(done))))
        }
        FailedOver::Refused { workload, reasons } => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "workload_refused",
            format!("{workload} cannot run on Fargate: {}", reasons.join("; ")),
        )
        .on("deployment")),
        FailedOver::Skipped { workload, reason } => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "outside_failover",
            format!("{workload} does not fail over: {reason}"),
        )
        .on("namespace")),
        FailedOver::Gone { workload } => Err(gone(workload)),
    }
}

/// Takes a Deployment on Fargate back to Spot now, its cooldown skipped; one Deployment of a
/// cluster at a time.
pub(crate) async fn recover(
    State(api): State<Arc<Api>>,
    Path(path): Path<(String, String, String)>,
    RequestDeadline(deadline): RequestDeadline,
) -> Reply {
    let done = by_hand(&api, path, deadline, failover::recover_by_hand).await?;
    match &done {
        RecoveredByHand::Started { .. } => Ok((StatusCode::OK, Json(json!(done)))),
        RecoveredByHand::NotOnFargate { workload, state } => Err(ApiError::conflict(format!(
            "{workload} is not on Fargate (its failover is {state}): nothing to take back"
        ))),
        RecoveredByHand::Busy { workload, recovering } => Err(ApiError::conflict(format!(
            "{recovering} of the same cluster is on its way back to Spot: one at a time; ask for {workload} once it is back"
        ))),
        RecoveredByHand::Gone { workload } => Err(gone(workload)),
        RecoveredByHand::Idle { workload, reason } => {
            Err(ApiError::conflict(format!("{workload} was not taken back: {reason}")))
        }
    }
}
