//! Fresh images: a standalone group keeps a recent image of itself (made on a schedule, made the
//! group's launch template version once available, old ones pruned), and rolls back to the
//! previous one when a new image proves bad. What to do is decided in `decisions::images`; here
//! the looking up, the acting and the recording.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::adapters::notify::{Alert, Severity};
use crate::decisions::images::{self, Step};
use crate::decisions::plan;
use crate::domain::{AlertKind, HistoryKind};
use crate::domain::{
    GROUP_TAG, Group, GroupKind, ImageRecord, ImageStage, InstanceFacts, LaunchPlan, Member, Old, Reason,
};
use crate::runtime::{Deps, Error};
use crate::workflows::replacement;
use crate::workflows::report::Report;

// Function crates reach these decisions through the workflow they use them with.
pub use crate::decisions::images::{died_in_probation, rollback_target};

/// What a scheduled run did about a group's images (the run's answer shows it).
#[derive(Debug, Serialize)]
pub struct Refreshed {
    #[serde(flatten)]
    pub step: Refresh,
    /// The images deleted this run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<String>,
}

/// The step a scheduled run took.
#[derive(Debug, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Refresh {
    Nothing,
    Pending { image: String },
    Checked { image: String, stage: ImageStage },
    Activated { image: String, template_version: String },
    NoHealthyMember,
    Created { image: String, source: String },
}

/// What the probation check found: with a rollback, what it replaced.
#[derive(Debug, Serialize)]
pub struct Probation {
    pub checked: usize,
    #[serde(flatten)]
    pub rolled_back: Option<RolledBack>,
}

#[derive(Debug, Serialize)]
pub struct RolledBack {
    pub impaired: Vec<String>,
    pub rolled_back: String,
    pub replacements: Vec<String>,
}

/// One scheduled step of a group's images: make one, make a ready one the group's, prune.
pub async fn refresh(
    deps: &Deps,
    group: &Group,
    members: &[Member],
    instances: &[InstanceFacts],
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Refreshed, Error> {
    let done = |step| Refreshed { step, pruned: Vec::new() };
    let GroupKind::Standalone(spec) = &group.kind else { return Ok(done(Refresh::Nothing)) };
    let policy = &group.policy.images;
    let name = &group.name;
    let step = match images::step(policy, &group.status.images, now) {
        Step::Nothing => Refresh::Nothing,
        Step::Check(image_id) => {
            let state = deps.clients.ec2.image(&image_id).await?.map(|(state, _)| state);
            let Some(stage) = images::checked(state.as_deref()) else {
                return Ok(done(Refresh::Pending { image: image_id }));
            };
            set_stage(deps, group, &image_id, stage).await?;
            Refresh::Checked { image: image_id, stage }
        }
        Step::Activate(image_id) => {
            let current = deps.clients.ec2.template_version(&spec.launch_template).await?;
            let version =
                deps.clients.ec2.template_version_with_image(&spec.launch_template, &current, &image_id).await?;
            // The launch template version is configuration: the member lookups carry it too.
            deps.store
                .update_config(name, |g| {
                    if let GroupKind::Standalone(spec) = &mut g.kind {
                        spec.launch_template.version = version.clone();
                    }
                    images::activate(&mut g.status.images, &image_id, &version, &current);
                })
                .await?;
            report.note(
                name,
                None,
                HistoryKind::ImageActivated,
                format!("image {image_id} is the group's now: launch template version {version} (was {current})"),
            );
            report.alert(
                Alert::new(
                    AlertKind::ImageActivated,
                    name,
                    Severity::Info,
                    format!("{name}: replacements now launch from image {image_id}"),
                )
                .fact("image", &image_id)
                .fact("template version", &version)
                .fact("previous version", &current),
            );
            Refresh::Activated { image: image_id, template_version: version }
        }
        Step::Create => match images::source(members, instances) {
            None => Refresh::NoHealthyMember,
            Some(member) => {
                let tags = vec![
                    (GROUP_TAG.to_string(), name.to_string()),
                    ("spotkeeper:source-instance".to_string(), member.instance_id.clone()),
                    ("spotkeeper:created-at".to_string(), now.to_rfc3339()),
                ];
                let image_name = format!("spotkeeper-{name}-{}", now.format("%Y%m%d-%H%M%S"));
                let image_id =
                    deps.clients.ec2.create_image(&member.instance_id, &image_name, policy.reboot, &tags).await?;
                let record = ImageRecord {
                    image_id: image_id.clone(),
                    created_at: now,
                    source_instance: member.instance_id.clone(),
                    stage: ImageStage::Pending,
                    template_version: None,
                    previous_version: None,
                    note: None,
                };
                deps.store.update_group(name, |g| g.status.images.push(record.clone())).await?;
                report.note(
                    name,
                    Some(&member.instance_id),
                    HistoryKind::ImageCreated,
                    format!("image {image_id} being made of {}", member.instance_id),
                );
                report.alert(
                    Alert::new(
                        AlertKind::ImageCreated,
                        name,
                        Severity::Info,
                        format!("{name}: image {image_id} being made"),
                    )
                    .fact("image", &image_id)
                    .fact("source", &member.instance_id),
                );
                Refresh::Created { image: image_id, source: member.instance_id.clone() }
            }
        },
    };
    let in_use: Vec<String> = instances.iter().filter(|i| i.is_live()).filter_map(|i| i.image_id.clone()).collect();
    let current = deps.store.group(name).await?.map(|g| g.status.images).unwrap_or_default();
    let pruned = images::prunable(&current, policy.keep, &in_use);
    for image_id in &pruned {
        deps.clients.ec2.delete_image(image_id).await?;
        set_stage(deps, group, image_id, ImageStage::Pruned).await?;
        report.note(
            name,
            None,
            HistoryKind::ImagePruned,
            format!("image {image_id} and its snapshots deleted (keeping the newest {})", policy.keep),
        );
    }
    Ok(Refreshed { step, pruned })
}

async fn set_stage(deps: &Deps, group: &Group, image_id: &str, stage: ImageStage) -> Result<(), Error> {
    deps.store.update_group(&group.name, |g| images::set_stage(&mut g.status.images, image_id, stage)).await?;
    Ok(())
}

/// Why a rollback could not happen.
#[derive(Debug)]
pub enum RollbackError {
    /// Nothing to go back to (the message says why).
    NoPrevious(String),
    Failed(Error),
}

impl From<Error> for RollbackError {
    fn from(err: Error) -> Self {
        RollbackError::Failed(err)
    }
}

impl From<crate::adapters::store::StoreError> for RollbackError {
    fn from(err: crate::adapters::store::StoreError) -> Self {
        RollbackError::Failed(err.into())
    }
}

/// Goes back to the launch template version before the active image, marks the image bad (never
/// activated again), and says why. Returns the group as saved.
pub async fn rollback(deps: &Deps, group: &Group, why: &str, report: &mut Report) -> Result<Group, RollbackError> {
    let (bad, previous) = rollback_target(&group.status.images).map_err(RollbackError::NoPrevious)?;
    let saved = deps
        .store
        .update_config(&group.name, |g| {
            if let GroupKind::Standalone(spec) = &mut g.kind {
                spec.launch_template.version = previous.clone();
            }
            images::roll_back(&mut g.status.images, &bad, &previous, why);
        })
        .await?
        .ok_or_else(|| RollbackError::NoPrevious(format!("group {} no longer exists", group.name)))?;
    report.note(
        &group.name,
        None,
        HistoryKind::Rollback,
        format!("image {bad} rolled back ({why}): launch template version {previous} again"),
    );
    report.alert(
        Alert::new(
            AlertKind::Rollback,
            &group.name,
            Severity::Critical,
            format!("{}: image {bad} rolled back", group.name),
        )
        .fact("image", &bad)
        .fact("why", why)
        .fact("template version", &previous),
    );
    Ok(saved)
}

/// Members launched from the active image that are still in probation and fail their EC2 status
/// checks: the image is bad. One `DescribeInstanceStatus` call, and only when some member is in
/// probation.
pub async fn probation(
    deps: &Deps,
    group: &Group,
    members: &[Member],
    instances: &[InstanceFacts],
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Probation, Error> {
    let Some(active) = images::active(&group.status.images) else {
        return Ok(Probation { checked: 0, rolled_back: None });
    };
    let on_trial = images::on_trial(group, members, instances, now);
    let impaired = deps.clients.ec2.impaired(&on_trial).await?;
    let Some(first) = impaired.first() else { return Ok(Probation { checked: on_trial.len(), rolled_back: None }) };
    let why = format!("{first}, launched from it, failed its EC2 status checks within the probation period");
    let rolled = rollback(deps, group, &why, report).await.map_err(|e| match e {
        RollbackError::NoPrevious(m) => Error::Invalid(m),
        RollbackError::Failed(e) => e,
    })?;
    let olds: Vec<&Member> = members.iter().filter(|m| impaired.contains(&m.instance_id)).collect();
    let replacements = replace_from_previous(deps, &rolled, &olds, true, now).await?;
    let rolled_back = RolledBack { impaired, rolled_back: active.image_id.clone(), replacements };
    Ok(Probation { checked: on_trial.len(), rolled_back: Some(rolled_back) })
}

/// Replaces members from the group's (rolled back) launch template: one request. With
/// `retire`, each old member serves until its replacement does (launch before terminate).
pub async fn replace_from_previous(
    deps: &Deps,
    group: &Group,
    olds: &[&Member],
    retire: bool,
    now: DateTime<Utc>,
) -> Result<Vec<String>, Error> {
    let GroupKind::Standalone(spec) = &group.kind else { return Ok(Vec::new()) };
    if olds.is_empty() {
        return Ok(Vec::new());
    }
    let (_, health) = deps.store.lookups(&[]).await?;
    let leaving: Vec<&str> = olds.iter().map(|m| m.instance_id.as_str()).collect();
    let on_demand = replacement::on_demand_for(deps, group, &leaving).await?;
    let olds: Vec<Old> =
        olds.iter().map(|m| Old { instance_id: m.instance_id.clone(), since: now, pool: m.pool() }).collect();
    let token = replacement::token(leaving.iter().copied().chain([spec.launch_template.version.as_str(), "rollback"]));
    let pools = plan::launch_pools(spec, &[], &health, now)?;
    let plan = LaunchPlan::new(spec, pools, olds, Reason::Rollback, token)
        .with_on_demand(on_demand)
        .with_fallback(group.policy.fallback);
    let launched = replacement::launch_for(deps, group, &plan).await?;
    let recorded = replacement::record(deps, group, &plan, &launched, &health, now).await;
    let mut new = Vec::new();
    for (old, member) in &recorded.pairs {
        if retire {
            let retiring = crate::domain::Retiring {
                since: now,
                reason: crate::domain::Reason::Rollback,
                replaced_by: member.instance_id.clone(),
            };
            deps.store
                .update_member(&group.name, &old.instance_id, |m| m.role = m.role.clone().retire(retiring.clone()))
                .await?;
        }
        new.push(member.instance_id.clone());
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn answer(outcome: impl Serialize) -> Value {
        serde_json::to_value(outcome).unwrap()
    }

    /// The typed outcomes answer exactly as the `json!` literals they replace.
    #[test]
    fn the_outcomes_answer_as_before() {
        let image = || "ami-1".to_string();
        let refreshed = |step| Refreshed { step, pruned: Vec::new() };
        let cases: Vec<(Value, Value)> = vec![
            (answer(refreshed(Refresh::Nothing)), json!({"step": "nothing"})),
            (answer(refreshed(Refresh::Pending { image: image() })), json!({"step": "pending", "image": "ami-1"})),
            (
                answer(refreshed(Refresh::Checked { image: image(), stage: ImageStage::Ready })),
                json!({"step": "checked", "image": "ami-1", "stage": "ready"}),
            ),
            (
                answer(refreshed(Refresh::Activated { image: image(), template_version: "3".into() })),
                json!({"step": "activated", "image": "ami-1", "template_version": "3"}),
            ),
            (answer(refreshed(Refresh::NoHealthyMember)), json!({"step": "no-healthy-member"})),
            (
                answer(refreshed(Refresh::Created { image: image(), source: "i-1".into() })),
                json!({"step": "created", "image": "ami-1", "source": "i-1"}),
            ),
            (
                answer(Refreshed { step: Refresh::Nothing, pruned: vec!["ami-0".into()] }),
                json!({"step": "nothing", "pruned": ["ami-0"]}),
            ),
            (answer(Probation { checked: 0, rolled_back: None }), json!({"checked": 0})),
            (
                answer(Probation {
                    checked: 2,
                    rolled_back: Some(RolledBack {
                        impaired: vec!["i-1".into()],
                        rolled_back: image(),
                        replacements: vec!["i-2".into()],
                    }),
                }),
                json!({"checked": 2, "impaired": ["i-1"], "rolled_back": "ami-1", "replacements": ["i-2"]}),
            ),
        ];
        for (got, expected) in cases {
            assert_eq!(got, expected);
        }
    }
}
