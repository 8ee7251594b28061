//! Fresh images: a standalone group keeps a recent image of itself (made on a schedule, made the
//! group's launch template version once available, old ones pruned), and rolls back to the
//! previous one when a new image proves bad. The decisions first (pure, unit-tested), then the
//! two actions built on them.

use crate::domain::{AlertKind, HistoryKind};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::adapters::notify::{Alert, Severity};
use crate::decisions::plan;
use crate::domain::{
    GROUP_TAG, Group, GroupKind, ImagePolicy, ImageRecord, ImageStage, InstanceFacts, LaunchPlan, Member, Old, Reason,
};
use crate::runtime::{Deps, Error};
use crate::workflows::replacement;
use crate::workflows::report::Report;

/// What a scheduled run does about a group's images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// An image is being made: see whether it is done.
    Check(String),
    /// An image is ready: make it the group's.
    Activate(String),
    /// Time for a new image.
    Create,
}

pub fn step(policy: &ImagePolicy, images: &[ImageRecord], now: DateTime<Utc>) -> Step {
    if !policy.enabled {
        return Step::Nothing;
    }
    if let Some(pending) = images.iter().find(|i| i.stage == ImageStage::Pending) {
        return Step::Check(pending.image_id.clone());
    }
    if let Some(ready) = images.iter().rev().find(|i| i.stage == ImageStage::Ready) {
        return Step::Activate(ready.image_id.clone());
    }
    let due = images
        .iter()
        .map(|i| i.created_at)
        .max()
        .is_none_or(|last| last + Duration::from_std(policy.schedule).unwrap_or(Duration::MAX) <= now);
    if due { Step::Create } else { Step::Nothing }
}

/// The member to image: serving and running, the longest-lived (the most settled).
pub fn source<'a>(members: &'a [Member], instances: &[InstanceFacts]) -> Option<&'a Member> {
    let mut healthy: Vec<&Member> = members
        .iter()
        .filter(|m| m.is_serving() && instances.iter().any(|i| i.instance_id == m.instance_id && i.state == "running"))
        .collect();
    healthy.sort_by_key(|m| (m.launched_at, m.instance_id.clone()));
    healthy.first().copied()
}

/// The images to prune: beyond the newest `keep`, never the active one or the one a rollback
/// would go back to, never one a running member was launched from.
pub fn prunable(images: &[ImageRecord], keep: u32, in_use: &[String]) -> Vec<String> {
    let mut live: Vec<&ImageRecord> =
        images.iter().filter(|i| !matches!(i.stage, ImageStage::Pruned | ImageStage::Pending)).collect();
    live.sort_by_key(|i| std::cmp::Reverse(i.created_at));
    let active = images.iter().rev().find(|i| i.stage == ImageStage::Active);
    let fallback_image = active
        .and_then(|a| a.previous_version.as_ref())
        .and_then(|previous| images.iter().find(|i| i.template_version.as_ref() == Some(previous)))
        .map(|i| i.image_id.clone());
    live.iter()
        .skip(keep as usize)
        .filter(|i| {
            i.stage != ImageStage::Active
                && Some(&i.image_id) != fallback_image.as_ref()
                && !in_use.contains(&i.image_id)
        })
        .map(|i| i.image_id.clone())
        .collect()
}

/// Where a rollback goes: the active image and the template version before it.
pub fn rollback_target(images: &[ImageRecord]) -> Result<(String, String), String> {
    let active = images
        .iter()
        .rev()
        .find(|i| i.stage == ImageStage::Active)
        .ok_or_else(|| "the group runs no image of spotkeeper's: there is nothing to roll back".to_string())?;
    let previous = active
        .previous_version
        .clone()
        .ok_or_else(|| format!("image {} has no previous launch template version to go back to", active.image_id))?;
    // A version made for an image of spotkeeper's is a target only while that image exists and
    // is sound: a pruned image is deregistered, and a version pointing at it launches nothing.
    let gone = images.iter().find(|i| {
        i.template_version.as_ref() == Some(&previous) && matches!(i.stage, ImageStage::Pruned | ImageStage::Bad)
    });
    if let Some(gone) = gone {
        return Err(format!(
            "there is nothing left to roll back to: launch template version {previous} runs image {}, which is {} (images.keep keeps the newest images only)",
            gone.image_id,
            if gone.stage == ImageStage::Pruned { "pruned" } else { "bad" }
        ));
    }
    Ok((active.image_id.clone(), previous))
}

/// Whether a member that stopped or died had been launched from the active image within the
/// probation period after its activation: then the image is bad.
pub fn died_in_probation(group: &Group, member: &Member, image_id: Option<&str>, now: DateTime<Utc>) -> bool {
    let probation = Duration::from_std(group.policy.images.probation).unwrap_or(Duration::MAX);
    let active = group.status.images.iter().rev().find(|i| i.stage == ImageStage::Active);
    let launched_recently = member.launched_at.is_some_and(|at| now - at <= probation);
    member.is_serving() && launched_recently && active.is_some_and(|a| Some(a.image_id.as_str()) == image_id)
}

/// One scheduled step of a group's images: make one, make a ready one the group's, prune.
pub async fn refresh(
    deps: &Deps,
    group: &Group,
    members: &[Member],
    instances: &[InstanceFacts],
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Value, Error> {
    let GroupKind::Standalone(spec) = &group.kind else { return Ok(json!({"step": "nothing"})) };
    let policy = &group.policy.images;
    let name = &group.name;
    let mut done = match step(policy, &group.status.images, now) {
        Step::Nothing => json!({"step": "nothing"}),
        Step::Check(image_id) => {
            let stage = match deps.clients.ec2.image(&image_id).await?.map(|(state, _)| state).as_deref() {
                Some("available") => ImageStage::Ready,
                Some("pending") => return Ok(json!({"step": "pending", "image": image_id})),
                _ => ImageStage::Bad,
            };
            set_stage(deps, group, &image_id, stage, None).await?;
            json!({"step": "checked", "image": image_id, "stage": stage})
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
                    for image in &mut g.status.images {
                        if image.stage == ImageStage::Active {
                            image.stage = ImageStage::Retired;
                        }
                        if image.image_id == image_id {
                            image.stage = ImageStage::Active;
                            image.template_version = Some(version.clone());
                            image.previous_version = Some(current.clone());
                        }
                    }
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
            json!({"step": "activated", "image": image_id, "template_version": version})
        }
        Step::Create => match source(members, instances) {
            None => json!({"step": "no-healthy-member"}),
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
                json!({"step": "created", "image": image_id, "source": member.instance_id})
            }
        },
    };
    let in_use: Vec<String> = instances.iter().filter(|i| i.is_live()).filter_map(|i| i.image_id.clone()).collect();
    let current = deps.store.group(name).await?.map(|g| g.status.images).unwrap_or_default();
    let prune = prunable(&current, policy.keep, &in_use);
    for image_id in &prune {
        deps.clients.ec2.delete_image(image_id).await?;
        set_stage(deps, group, image_id, ImageStage::Pruned, None).await?;
        report.note(
            name,
            None,
            HistoryKind::ImagePruned,
            format!("image {image_id} and its snapshots deleted (keeping the newest {})", policy.keep),
        );
    }
    if !prune.is_empty() {
        done["pruned"] = json!(prune);
    }
    Ok(done)
}

async fn set_stage(
    deps: &Deps,
    group: &Group,
    image_id: &str,
    stage: ImageStage,
    note: Option<String>,
) -> Result<(), Error> {
    deps.store
        .update_group(&group.name, |g| {
            if let Some(image) = g.status.images.iter_mut().find(|i| i.image_id == image_id) {
                image.stage = stage;
                if note.is_some() {
                    image.note = note.clone();
                }
            }
        })
        .await?;
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
            for image in &mut g.status.images {
                if image.image_id == bad {
                    image.stage = ImageStage::Bad;
                    image.note = Some(why.to_string());
                } else if image.template_version.as_ref() == Some(&previous) && image.stage == ImageStage::Retired {
                    image.stage = ImageStage::Active;
                }
            }
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
) -> Result<Value, Error> {
    let Some(active) = group.status.images.iter().rev().find(|i| i.stage == ImageStage::Active) else {
        return Ok(json!({"checked": 0}));
    };
    let probation = Duration::from_std(group.policy.images.probation).unwrap_or(Duration::MAX);
    let on_trial: Vec<String> = members
        .iter()
        .filter(|m| m.is_serving() && m.launched_at.is_some_and(|at| now - at <= probation))
        .filter(|m| {
            instances
                .iter()
                .any(|i| i.instance_id == m.instance_id && i.image_id.as_deref() == Some(active.image_id.as_str()))
        })
        .map(|m| m.instance_id.clone())
        .collect();
    let impaired = deps.clients.ec2.impaired(&on_trial).await?;
    let Some(first) = impaired.first() else { return Ok(json!({"checked": on_trial.len()})) };
    let why = format!("{first}, launched from it, failed its EC2 status checks within the probation period");
    let rolled = rollback(deps, group, &why, report).await.map_err(|e| match e {
        RollbackError::NoPrevious(m) => Error::Invalid(m),
        RollbackError::Failed(e) => e,
    })?;
    let olds: Vec<&Member> = members.iter().filter(|m| impaired.contains(&m.instance_id)).collect();
    let replacements = replace_from_previous(deps, &rolled, &olds, true, now).await?;
    Ok(
        json!({"checked": on_trial.len(), "impaired": impaired, "rolled_back": active.image_id, "replacements": replacements}),
    )
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
            deps.store.update_member(&group.name, &old.instance_id, |m| m.retiring = Some(retiring.clone())).await?;
        }
        new.push(member.instance_id.clone());
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn image(id: &str, created: &str, stage: ImageStage, version: Option<&str>, previous: Option<&str>) -> ImageRecord {
        ImageRecord {
            image_id: id.into(),
            created_at: at(created),
            source_instance: "i-1".into(),
            stage,
            template_version: version.map(str::to_string),
            previous_version: previous.map(str::to_string),
            note: None,
        }
    }

    #[test]
    fn one_image_a_day_checked_then_activated() {
        let policy = ImagePolicy { enabled: true, ..Default::default() };
        let now = at("2026-11-21T12:00:00Z");
        assert_eq!(step(&ImagePolicy::default(), &[], now), Step::Nothing, "off by default");
        assert_eq!(step(&policy, &[], now), Step::Create);
        let pending = [image("ami-1", "2026-11-21T11:00:00Z", ImageStage::Pending, None, None)];
        assert_eq!(step(&policy, &pending, now), Step::Check("ami-1".into()));
        let ready = [image("ami-1", "2026-11-21T11:00:00Z", ImageStage::Ready, None, None)];
        assert_eq!(step(&policy, &ready, now), Step::Activate("ami-1".into()));
        let active = [image("ami-1", "2026-11-21T11:00:00Z", ImageStage::Active, Some("2"), Some("1"))];
        assert_eq!(step(&policy, &active, now), Step::Nothing);
        assert_eq!(step(&policy, &active, at("2026-11-22T11:00:00Z")), Step::Create);
        let bad = [image("ami-1", "2026-11-21T11:00:00Z", ImageStage::Bad, Some("2"), Some("1"))];
        assert_eq!(step(&policy, &bad, now), Step::Nothing, "a bad image still counts as today's");
    }

    #[test]
    fn pruning_keeps_the_newest_the_active_the_previous_and_those_in_use() {
        let images = [
            image("ami-1", "2026-11-17T00:00:00Z", ImageStage::Retired, Some("2"), Some("1")),
            image("ami-2", "2026-11-18T00:00:00Z", ImageStage::Retired, Some("3"), Some("2")),
            image("ami-3", "2026-11-19T00:00:00Z", ImageStage::Retired, Some("4"), Some("3")),
            image("ami-4", "2026-11-20T00:00:00Z", ImageStage::Retired, Some("5"), Some("4")),
            image("ami-5", "2026-11-21T00:00:00Z", ImageStage::Active, Some("6"), Some("5")),
        ];
        assert_eq!(prunable(&images, 3, &[]), vec!["ami-2", "ami-1"]);
        assert_eq!(prunable(&images, 3, &["ami-1".into()]), vec!["ami-2"], "a running member uses ami-1");
        assert_eq!(prunable(&images, 1, &[]), vec!["ami-3", "ami-2", "ami-1"], "ami-4 is where a rollback goes");
    }

    #[test]
    fn a_rollback_needs_a_previous_version() {
        let none: [ImageRecord; 0] = [];
        assert!(rollback_target(&none).is_err());
        let active = [image("ami-5", "2026-11-21T00:00:00Z", ImageStage::Active, Some("6"), Some("5"))];
        assert_eq!(rollback_target(&active), Ok(("ami-5".into(), "5".into())));
        // keep 1, three activations, one rollback: ami-2 is active again, its predecessor pruned.
        let rolled = [
            image("ami-1", "2026-11-19T00:00:00Z", ImageStage::Pruned, Some("2"), Some("1")),
            image("ami-2", "2026-11-20T00:00:00Z", ImageStage::Active, Some("3"), Some("2")),
            image("ami-3", "2026-11-21T00:00:00Z", ImageStage::Bad, Some("4"), Some("3")),
        ];
        let refused = rollback_target(&rolled).unwrap_err();
        assert!(refused.contains("nothing left") && refused.contains("ami-1"), "{refused}");
    }
}
