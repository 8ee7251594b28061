//! The group routes: register, list, show, remove, adopt an instance.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use spotkeeper::Deps;
use spotkeeper::decisions::plan;
use spotkeeper::domain::{ClusterCa, Group, GroupKind, GroupName, Member};
use spotkeeper::workflows::groups::{self, Registered, RolledBack};
use spotkeeper::workflows::report::Report;

use crate::Api;
use crate::body::{AdoptBody, GroupPatch, Registration, Strict, apply_patch, check_instance_id};
use crate::changes;
use crate::deadline::RequestDeadline;
use crate::reply::ApiError;

type Reply = Result<(StatusCode, Json<Value>), ApiError>;

fn view(group: &Group, members: &[Member]) -> Value {
    let mut view = serde_json::to_value(group).unwrap_or_else(|_| json!({"name": group.name}));
    // Webhook secrets are kept, never shown.
    let webhooks = view.get_mut("policy").and_then(|p| p.get_mut("webhooks")).and_then(Value::as_array_mut);
    for webhook in webhooks.into_iter().flatten() {
        webhook["secret"] = json!("***");
    }
    // The cluster CA is public but long: a count and a fingerprint say which one it is.
    if let Some(ca) = group.kubernetes.as_ref().and_then(|k| k.ca.as_ref())
        && let Some(block) = view.get_mut("kubernetes")
    {
        block["ca"] = ca_view(ca);
    }
    if let GroupKind::Standalone(spec) = &group.kind {
        // The pools the group launches into: its types in its subnets, within its volumes' AZ.
        // Valid when registered; should it give none now, the log says why, not just an empty list.
        let pools = plan::pools(&spec.instance_types, &spec.subnets, spec.volume_zone.as_deref())
            .inspect_err(|err| tracing::error!(group = %group.name, error = %err, "the group's spec gives no pools"))
            .unwrap_or_default();
        view["pools"] = json!(pools);
    }
    view["members"] = json!(members.iter().map(member_view).collect::<Vec<_>>());
    view
}

/// `{"certificates": 2, "sha256": "AB:CD:…"}`: the first certificate's SHA-256 fingerprint, as
/// `openssl x509 -noout -fingerprint -sha256` prints it.
fn ca_view(ca: &ClusterCa) -> Value {
    let fingerprint = ca.der().first().map(|der| {
        let digest = Sha256::digest(der);
        digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    });
    json!({"certificates": ca.der().len(), "sha256": fingerprint})
}

/// A member as operators read it: one that is interrupted or retiring may still run, but it is
/// on its way out (an Auto Scaling group member detached, an instance being replaced).
fn member_view(member: &Member) -> Value {
    let mut view = json!(member);
    view["leaving"] = json!(!member.is_serving());
    view
}

fn group_name(name: String) -> Result<GroupName, ApiError> {
    GroupName::try_from(name.clone()).map_err(|_| ApiError::not_found(format!("no group named {name:?}")))
}

/// The group named in the path; 404 when there is none.
pub(crate) async fn find(deps: &Deps, name: String) -> Result<Group, ApiError> {
    let name = group_name(name)?;
    deps.store.group(&name).await?.ok_or_else(|| ApiError::not_found(format!("no group named {name}")))
}

async fn load(deps: &Deps, name: String) -> Result<(Group, Vec<Member>), ApiError> {
    let name = group_name(name)?;
    let (group, members) = futures::try_join!(deps.store.group(&name), deps.store.members(&name))?;
    let group = group.ok_or_else(|| ApiError::not_found(format!("no group named {name}")))?;
    Ok((group, members))
}

pub(crate) async fn register(
    State(api): State<Arc<Api>>,
    RequestDeadline(deadline): RequestDeadline,
    Strict(body): Strict<Value>,
) -> Reply {
    let deps = &api.deps;
    let registration = Registration::from_json(body)?;
    let mut report = Report::new(deps);
    let registered = match registration {
        Registration::Asg(body) => groups::register_asg(deps, body.parse()?, &mut report).await,
        Registration::Standalone(body) => groups::register_standalone(deps, body.parse()?, &mut report).await,
    };
    let Registered { group, members, warnings } = registered?;
    report.send(deps, deadline).await;
    let mut view = view(&group, &members);
    if !warnings.is_empty() {
        view["warnings"] = json!(warnings);
    }
    Ok((StatusCode::CREATED, Json(view)))
}

pub(crate) async fn list(State(api): State<Arc<Api>>) -> Reply {
    let deps = &api.deps;
    let groups = deps.store.groups().await?;
    let members = futures::future::try_join_all(groups.iter().map(|g| deps.store.members(&g.name))).await?;
    let views: Vec<Value> = groups.iter().zip(&members).map(|(g, m)| view(g, m)).collect();
    Ok((StatusCode::OK, Json(json!({ "groups": views }))))
}

pub(crate) async fn show(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Reply {
    let (group, members) = load(&api.deps, name).await?;
    let history = api.deps.store.history(&group.name, 20).await?;
    let mut view = view(&group, &members);
    view["recent_events"] = json!(changes::readable(history));
    Ok((StatusCode::OK, Json(view)))
}

/// Changes a group's policy and its `kubernetes` block (a new block's cluster checked first, a
/// 422 when it cannot be used; `null` removes it). The change is conditional on the version
/// read: a concurrent change makes this one a 409, never a silent overwrite.
pub(crate) async fn change(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    RequestDeadline(deadline): RequestDeadline,
    Strict(body): Strict<Value>,
) -> Reply {
    let deps = &api.deps;
    let GroupPatch { policy, kubernetes } = GroupPatch::from_json(body)?;
    let (group, members) = load(deps, name).await?;
    let policy = apply_patch(policy, &group)?;
    let mut report = Report::new(deps);
    let saved = groups::change_policy(deps, group, &members, policy, kubernetes, &mut report).await?;
    report.send(deps, deadline).await;
    Ok((StatusCode::OK, Json(view(&saved, &members))))
}

/// Rolls the group's image back on demand: the previous launch template version again, the
/// image marked bad, and members launched from it replaced (each serves until its replacement does).
pub(crate) async fn rollback(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    RequestDeadline(deadline): RequestDeadline,
) -> Reply {
    let deps = &api.deps;
    let (group, members) = load(deps, name).await?;
    let mut report = Report::new(deps);
    let rolled = groups::roll_back(deps, &group, &members, &mut report).await;
    report.send(deps, deadline).await;
    let RolledBack { group, bad, replacements } = rolled?;
    let mut view = view(&group, &members);
    view["rolled_back"] = json!(bad);
    view["replacements"] = json!(replacements);
    Ok((StatusCode::OK, Json(view)))
}

/// Stops managing a group. Its instances keep running; spotkeeper's tag comes off them.
pub(crate) async fn remove(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    RequestDeadline(deadline): RequestDeadline,
) -> Reply {
    let deps = &api.deps;
    let (group, members) = load(deps, name).await?;
    let mut report = Report::new(deps);
    let released = groups::remove(deps, &group, &members, &mut report).await?;
    report.send(deps, deadline).await;
    Ok((StatusCode::OK, Json(json!({"removed": group.name, "released": released, "terminated": []}))))
}

/// Adopts a running instance into a group.
pub(crate) async fn adopt(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    RequestDeadline(deadline): RequestDeadline,
    Strict(body): Strict<AdoptBody>,
) -> Reply {
    let deps = &api.deps;
    let (group, members) = load(deps, name).await?;
    check_instance_id("instance_id", &body.instance_id)?;
    let mut report = Report::new(deps);
    let member = groups::adopt(deps, &group, &members, &body.instance_id, &mut report).await?;
    report.send(deps, deadline).await;
    Ok((StatusCode::CREATED, Json(json!(member))))
}
