//! The group routes: register, list, show, remove, adopt an instance.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use spotkeeper::Deps;
use spotkeeper::fleet::{GROUP_TAG, Group, GroupKind, GroupName, Member, RebalancePolicy};
use spotkeeper::history::History;
use spotkeeper::images;
use spotkeeper::online::bring_online;
use spotkeeper::plan;
use spotkeeper::recovery;

use crate::Api;
use crate::body::{AdoptBody, PolicyPatch, Registration, Strict, check_instance_id};
use crate::changes;
use crate::register::{self, Registered, adoptable};
use crate::reply::ApiError;

type Reply = Result<(StatusCode, Json<Value>), ApiError>;

fn view(group: &Group, members: &[Member]) -> Value {
    let mut view = serde_json::to_value(group).unwrap_or_else(|_| json!({"name": group.name}));
    // Webhook secrets are kept, never shown.
    let webhooks = view.get_mut("policy").and_then(|p| p.get_mut("webhooks")).and_then(Value::as_array_mut);
    for webhook in webhooks.into_iter().flatten() {
        webhook["secret"] = json!("***");
    }
    if let GroupKind::Standalone(spec) = &group.kind {
        // The pools the group launches into: its types in its subnets, within its volumes' AZ.
        let pools = plan::pools(&spec.instance_types, &spec.subnets, spec.volume_zone.as_deref()).unwrap_or_default();
        view["pools"] = json!(pools);
    }
    view["members"] = json!(members.iter().map(member_view).collect::<Vec<_>>());
    view
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

async fn load(deps: &Deps, name: String) -> Result<(Group, Vec<Member>), ApiError> {
    let name = group_name(name)?;
    let (group, members) = futures::try_join!(deps.store.group(&name), deps.store.members(&name))?;
    let group = group.ok_or_else(|| ApiError::not_found(format!("no group named {name}")))?;
    Ok((group, members))
}

pub async fn register(State(api): State<Arc<Api>>, Strict(body): Strict<Value>) -> Reply {
    let deps = &api.deps;
    let mut history = History::new(deps);
    let Registered { group, members, warnings } = match Registration::from_json(body)? {
        Registration::Asg(body) => register::asg(deps, body, &mut history).await?,
        Registration::Standalone(body) => register::standalone(deps, *body, &mut history).await?,
    };
    history.write(deps, &group.name).await;
    let mut view = view(&group, &members);
    if !warnings.is_empty() {
        view["warnings"] = json!(warnings);
    }
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn list(State(api): State<Arc<Api>>) -> Reply {
    let deps = &api.deps;
    let groups = deps.store.groups().await?;
    let members = futures::future::try_join_all(groups.iter().map(|g| deps.store.members(&g.name))).await?;
    let views: Vec<Value> = groups.iter().zip(&members).map(|(g, m)| view(g, m)).collect();
    Ok((StatusCode::OK, Json(json!({ "groups": views }))))
}

pub async fn show(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Reply {
    let (group, members) = load(&api.deps, name).await?;
    let history = api.deps.store.history(&group.name, 20).await?;
    let mut view = view(&group, &members);
    view["recent_events"] = json!(changes::readable(history));
    Ok((StatusCode::OK, Json(view)))
}

/// Changes a group's policy. The change is conditional on the version read: a concurrent
/// change makes this one a 409, never a silent overwrite.
pub async fn change(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    Strict(patch): Strict<PolicyPatch>,
) -> Reply {
    let deps = &api.deps;
    let (mut group, members) = load(deps, name).await?;
    let before = group.policy.clone();
    group.policy = patch.apply(&group)?;
    // A new cooldown applies to the fallback under way, until its first attempt.
    if let (Some(fallback), 0) = (&group.status.fallback, group.status.recovery.failed_attempts)
        && before.recovery.cooldown != group.policy.recovery.cooldown
    {
        group.status.recovery.next_attempt_at = Some(recovery::next_attempt(&group.policy.recovery, 0, fallback.since));
    }
    if let GroupKind::Asg(spec) = &group.kind
        && (before.rebalance == RebalancePolicy::Off) != (group.policy.rebalance == RebalancePolicy::Off)
    {
        let asg = deps.clients.autoscaling.group(&spec.asg_name).await?.ok_or_else(|| {
            ApiError::unknown_reference("rebalance", format!("Auto Scaling group {} no longer exists", spec.asg_name))
        })?;
        deps.clients.autoscaling.set_capacity_rebalance(&asg, group.policy.rebalance != RebalancePolicy::Off).await?;
    }
    let ids: Vec<String> = members.iter().map(|m| m.instance_id.clone()).collect();
    let saved = deps.store.save_group(&group, &ids).await?;
    let mut history = History::new(deps);
    // What changed, never the policy itself: it holds the webhooks' secrets.
    history.note(None, changes::POLICY_CHANGED, changes::policy_line(&before, &saved.policy));
    history.write(deps, &saved.name).await;
    Ok((StatusCode::OK, Json(view(&saved, &members))))
}

/// Rolls the group's image back on demand: the previous launch template version again, the
/// image marked bad, and members launched from it replaced (each serves until its replacement does).
pub async fn rollback(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Reply {
    let deps = &api.deps;
    let (group, members) = load(deps, name).await?;
    let bad = images::rollback_target(&group.status.images).map(|(image, _)| image).map_err(ApiError::conflict)?;
    let saved = images::rollback(deps, &group, "rolled back by hand (POST /groups/{name}/rollback)").await.map_err(
        |e| match e {
            images::RollbackError::NoPrevious(message) => ApiError::conflict(message),
            images::RollbackError::Failed(err) => err.into(),
        },
    )?;
    let ids: Vec<String> = members.iter().filter(|m| m.is_serving()).map(|m| m.instance_id.clone()).collect();
    let on_bad: Vec<String> = deps
        .clients
        .ec2
        .instances(&ids)
        .await?
        .into_iter()
        .filter(|i| i.image_id.as_deref() == Some(bad.as_str()))
        .map(|i| i.instance_id)
        .collect();
    let olds: Vec<&Member> = members.iter().filter(|m| on_bad.contains(&m.instance_id)).collect();
    let replacements = images::replace_from_previous(deps, &saved, &olds, true, deps.clock.now()).await?;
    let mut view = view(&saved, &members);
    view["rolled_back"] = json!(bad);
    view["replacements"] = json!(replacements);
    Ok((StatusCode::OK, Json(view)))
}

/// Stops managing a group. Its instances keep running; spotkeeper's tag comes off them.
pub async fn remove(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Reply {
    let deps = &api.deps;
    let (group, members) = load(deps, name).await?;
    let ids: Vec<String> = members.iter().map(|m| m.instance_id.clone()).collect();
    if let GroupKind::Standalone(_) = group.kind {
        let existing: Vec<String> =
            deps.clients.ec2.instances(&ids).await?.into_iter().map(|f| f.instance_id).collect();
        deps.clients.ec2.untag(&existing, GROUP_TAG).await?;
    }
    deps.store.delete_group(&group.name, &members).await?;
    let mut history = History::new(deps);
    history.note(None, "group-removed", format!("group removed; its {} instances keep running, unmanaged", ids.len()));
    history.write(deps, &group.name).await;
    Ok((StatusCode::OK, Json(json!({"removed": group.name, "released": ids, "terminated": []}))))
}

/// Adopts a running instance into a group.
pub async fn adopt(State(api): State<Arc<Api>>, Path(name): Path<String>, Strict(body): Strict<AdoptBody>) -> Reply {
    let deps = &api.deps;
    let (group, members) = load(deps, name).await?;
    check_instance_id("instance_id", &body.instance_id)?;
    let facts = adoptable(deps, &group.name, "instance_id", std::slice::from_ref(&body.instance_id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ApiError::unknown_reference("instance_id", format!("instance {} does not exist", body.instance_id))
        })?;
    match &group.kind {
        GroupKind::Asg(spec) => {
            if facts.tag("aws:autoscaling:groupName") != Some(spec.asg_name.as_str()) {
                return Err(ApiError::unknown_reference(
                    "instance_id",
                    format!("instance {} is not in Auto Scaling group {}", facts.instance_id, spec.asg_name),
                ));
            }
        }
        GroupKind::Standalone(spec) => {
            if !spec.subnets.iter().any(|s| Some(&s.id) == facts.subnet_id.as_ref()) {
                return Err(ApiError::unknown_reference(
                    "instance_id",
                    format!("instance {} is not in one of the group's subnets", facts.instance_id),
                ));
            }
            if spec.volume_zone.as_ref().is_some_and(|z| z != &facts.availability_zone) {
                return Err(ApiError::unknown_reference(
                    "instance_id",
                    format!(
                        "instance {} is in {}, not in the AZ of the group's data volumes",
                        facts.instance_id, facts.availability_zone
                    ),
                ));
            }
            if members.len() >= spec.capacity as usize {
                return Err(ApiError::conflict(format!(
                    "group {} already has its capacity of {} instances: remove one or raise the capacity first",
                    group.name, spec.capacity
                )));
            }
        }
    }
    let member = facts.clone().into_member(false);
    deps.store.add_members(&group, std::slice::from_ref(&member)).await?;
    let mut history = History::new(deps);
    history.note(
        Some(&member.instance_id),
        "instance-adopted",
        format!("adopted {} ({})", member.instance_id, member.market),
    );
    if let GroupKind::Standalone(spec) = &group.kind {
        deps.clients.ec2.tag(std::slice::from_ref(&member.instance_id), GROUP_TAG, group.name.as_str()).await?;
        if facts.state == "running" {
            let all: Vec<Member> = members.iter().cloned().chain([member.clone()]).collect();
            let online = bring_online(&deps.clients, spec, &member.instance_id, &all).await?;
            for (kind, line) in online.lines() {
                history.note(Some(&member.instance_id), kind, line);
            }
        }
    }
    history.write(deps, &group.name).await;
    Ok((StatusCode::CREATED, Json(json!(member))))
}
