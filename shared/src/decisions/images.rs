//! A group's images, decided: when to make one, check it or make it the group's; which member to
//! image; which images to prune; where a rollback goes; and how each of those changes the images'
//! stages. Pure: the images workflow looks up, calls these, and acts.

use chrono::{DateTime, Duration, Utc};

use crate::domain::InstanceState;
use crate::domain::{Group, ImagePolicy, ImageRecord, ImageStage, InstanceFacts, Member};

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

/// What EC2's state of an image being made means: `None` while it is still pending; ready once
/// available; bad otherwise (failed, deregistered, or gone).
pub fn checked(state: Option<&str>) -> Option<ImageStage> {
    match state {
        Some("available") => Some(ImageStage::Ready),
        Some("pending") => None,
        _ => Some(ImageStage::Bad),
    }
}

/// The image the group launches from now, if one of spotkeeper's.
pub fn active(images: &[ImageRecord]) -> Option<&ImageRecord> {
    images.iter().rev().find(|i| i.stage == ImageStage::Active)
}

/// The member to image: serving and running, the longest-lived (the most settled).
pub fn source<'a>(members: &'a [Member], instances: &[InstanceFacts]) -> Option<&'a Member> {
    let mut healthy: Vec<&Member> = members
        .iter()
        .filter(|m| {
            m.is_serving()
                && instances.iter().any(|i| i.instance_id == m.instance_id && i.state == Some(InstanceState::Running))
        })
        .collect();
    healthy.sort_by_key(|m| (m.launched_at, m.instance_id.clone()));
    healthy.first().copied()
}

/// Makes `image_id` the group's image at launch template `version` (made from `previous`, where
/// a rollback goes); the image active before it retires.
pub fn activate(images: &mut [ImageRecord], image_id: &str, version: &str, previous: &str) {
    for image in images {
        if image.stage == ImageStage::Active {
            image.stage = ImageStage::Retired;
        }
        if image.image_id == image_id {
            image.stage = ImageStage::Active;
            image.template_version = Some(version.to_string());
            image.previous_version = Some(previous.to_string());
        }
    }
}

/// Sets one image's stage (checked, or pruned).
pub fn set_stage(images: &mut [ImageRecord], image_id: &str, stage: ImageStage) {
    if let Some(image) = images.iter_mut().find(|i| i.image_id == image_id) {
        image.stage = stage;
    }
}

/// The images to prune: beyond the newest `keep`, never the active one or the one a rollback
/// would go back to, never one a running member was launched from.
pub fn prunable(images: &[ImageRecord], keep: u32, in_use: &[String]) -> Vec<String> {
    let mut live: Vec<&ImageRecord> =
        images.iter().filter(|i| !matches!(i.stage, ImageStage::Pruned | ImageStage::Pending)).collect();
    live.sort_by_key(|i| std::cmp::Reverse(i.created_at));
    let fallback_image = active(images)
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
    let active = active(images)
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

/// A rollback's effect on the images: the `bad` one is never activated again (`why` says so),
/// and the retired image launch template version `previous` was made for is active again.
pub fn roll_back(images: &mut [ImageRecord], bad: &str, previous: &str, why: &str) {
    for image in images {
        if image.image_id == bad {
            image.stage = ImageStage::Bad;
            image.note = Some(why.to_string());
        } else if image.template_version.as_deref() == Some(previous) && image.stage == ImageStage::Retired {
            image.stage = ImageStage::Active;
        }
    }
}

/// Whether a member was launched within `probation` of `now` (and still serves).
fn in_probation(member: &Member, probation: Duration, now: DateTime<Utc>) -> bool {
    member.is_serving() && member.launched_at.is_some_and(|at| now - at <= probation)
}

/// Whether a member that stopped or died had been launched from the active image within the
/// probation period after its activation: then the image is bad.
pub fn died_in_probation(group: &Group, member: &Member, image_id: Option<&str>, now: DateTime<Utc>) -> bool {
    let probation = Duration::from_std(group.policy.images.probation).unwrap_or(Duration::MAX);
    let active = active(&group.status.images);
    in_probation(member, probation, now) && active.is_some_and(|a| Some(a.image_id.as_str()) == image_id)
}

/// The members on trial: serving, launched from the active image within the probation period.
pub fn on_trial(group: &Group, members: &[Member], instances: &[InstanceFacts], now: DateTime<Utc>) -> Vec<String> {
    let Some(active) = active(&group.status.images) else { return Vec::new() };
    let probation = Duration::from_std(group.policy.images.probation).unwrap_or(Duration::MAX);
    members
        .iter()
        .filter(|m| in_probation(m, probation, now))
        .filter(|m| {
            instances
                .iter()
                .any(|i| i.instance_id == m.instance_id && i.image_id.as_deref() == Some(active.image_id.as_str()))
        })
        .map(|m| m.instance_id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GroupKind, GroupName, Reason, Retiring, Role};

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

    /// A table's row: what it shows, the input, the expected decision.
    type Case<I, E> = (&'static str, I, E);
    type Case2<I, J, E> = (&'static str, I, J, E);
    type Case3<I, J, K, E> = (&'static str, I, J, K, E);
    /// A rollback's target, or the words its refusal must hold.
    type Refusal = Result<(&'static str, &'static str), &'static [&'static str]>;
    type Stages = Vec<(&'static str, ImageStage)>;
    type Ids = Vec<&'static str>;

    fn stages(images: &[ImageRecord]) -> Vec<(&str, ImageStage)> {
        images.iter().map(|i| (i.image_id.as_str(), i.stage)).collect()
    }

    /// Five images a day apart, the newest active: the history `prunable` and `roll_back` read.
    fn five_days() -> Vec<ImageRecord> {
        vec![
            image("ami-1", "2026-11-17T00:00:00Z", ImageStage::Retired, Some("2"), Some("1")),
            image("ami-2", "2026-11-18T00:00:00Z", ImageStage::Retired, Some("3"), Some("2")),
            image("ami-3", "2026-11-19T00:00:00Z", ImageStage::Retired, Some("4"), Some("3")),
            image("ami-4", "2026-11-20T00:00:00Z", ImageStage::Retired, Some("5"), Some("4")),
            image("ami-5", "2026-11-21T00:00:00Z", ImageStage::Active, Some("6"), Some("5")),
        ]
    }

    #[test]
    fn one_image_a_day_checked_then_activated() {
        let on = ImagePolicy { enabled: true, ..Default::default() };
        let today = "2026-11-21T12:00:00Z";
        let made = "2026-11-21T11:00:00Z";
        let cases: Vec<(&str, ImagePolicy, Vec<ImageRecord>, &str, Step)> = vec![
            ("off by default", ImagePolicy::default(), vec![], today, Step::Nothing),
            ("none yet", on.clone(), vec![], today, Step::Create),
            (
                "pending",
                on.clone(),
                vec![image("ami-1", made, ImageStage::Pending, None, None)],
                today,
                Step::Check("ami-1".into()),
            ),
            (
                "ready",
                on.clone(),
                vec![image("ami-1", made, ImageStage::Ready, None, None)],
                today,
                Step::Activate("ami-1".into()),
            ),
            (
                "the newest ready one",
                on.clone(),
                vec![
                    image("ami-1", made, ImageStage::Ready, None, None),
                    image("ami-2", today, ImageStage::Ready, None, None),
                ],
                today,
                Step::Activate("ami-2".into()),
            ),
            (
                "pending before ready",
                on.clone(),
                vec![
                    image("ami-1", made, ImageStage::Ready, None, None),
                    image("ami-2", today, ImageStage::Pending, None, None),
                ],
                today,
                Step::Check("ami-2".into()),
            ),
            (
                "active today",
                on.clone(),
                vec![image("ami-1", made, ImageStage::Active, Some("2"), Some("1"))],
                today,
                Step::Nothing,
            ),
            (
                "a day later",
                on.clone(),
                vec![image("ami-1", made, ImageStage::Active, Some("2"), Some("1"))],
                "2026-11-22T11:00:00Z",
                Step::Create,
            ),
            (
                "a bad image still counts as today's",
                on.clone(),
                vec![image("ami-1", made, ImageStage::Bad, Some("2"), Some("1"))],
                today,
                Step::Nothing,
            ),
        ];
        for (case, policy, images, now, expected) in cases {
            assert_eq!(step(&policy, &images, at(now)), expected, "{case}");
        }
    }

    #[test]
    fn an_image_being_made_is_ready_once_available_and_bad_unless_pending() {
        let cases = [
            (Some("available"), Some(ImageStage::Ready)),
            (Some("pending"), None),
            (Some("failed"), Some(ImageStage::Bad)),
            (Some("deregistered"), Some(ImageStage::Bad)),
            (None, Some(ImageStage::Bad)),
        ];
        for (state, expected) in cases {
            assert_eq!(checked(state), expected, "{state:?}");
        }
    }

    #[test]
    fn the_source_is_the_longest_lived_running_serving_member() {
        let launched = |id: &str, when: &str| Member { launched_at: Some(at(when)), ..crate::fixtures::member(id) };
        let retiring = Member {
            role: Role::Retiring(Retiring {
                since: at("2026-11-21T00:00:00Z"),
                reason: Reason::Recovery,
                replaced_by: "i-x".into(),
            }),
            ..launched("i-old", "2026-11-01T00:00:00Z")
        };
        let stopped = InstanceFacts { state: Some(InstanceState::Stopped), ..crate::fixtures::instance("i-stopped") };
        let cases: Vec<Case2<Vec<Member>, Vec<InstanceFacts>, Option<&str>>> = vec![
            ("no members", vec![], vec![], None),
            ("not listed by EC2", vec![launched("i-1", "2026-11-10T00:00:00Z")], vec![], None),
            (
                "the oldest",
                vec![launched("i-2", "2026-11-12T00:00:00Z"), launched("i-1", "2026-11-10T00:00:00Z")],
                vec![crate::fixtures::instance("i-1"), crate::fixtures::instance("i-2")],
                Some("i-1"),
            ),
            (
                "not a retiring one",
                vec![retiring, launched("i-2", "2026-11-12T00:00:00Z")],
                vec![crate::fixtures::instance("i-old"), crate::fixtures::instance("i-2")],
                Some("i-2"),
            ),
            (
                "not a stopped one",
                vec![launched("i-stopped", "2026-11-01T00:00:00Z"), launched("i-2", "2026-11-12T00:00:00Z")],
                vec![stopped, crate::fixtures::instance("i-2")],
                Some("i-2"),
            ),
        ];
        for (case, members, instances, expected) in cases {
            assert_eq!(source(&members, &instances).map(|m| m.instance_id.as_str()), expected, "{case}");
        }
    }

    #[test]
    fn activation_retires_the_active_image_and_records_where_a_rollback_goes() {
        let made = "2026-11-21T00:00:00Z";
        let cases: Vec<Case<Vec<ImageRecord>, Stages>> = vec![
            (
                "the first",
                vec![image("ami-1", made, ImageStage::Ready, None, None)],
                vec![("ami-1", ImageStage::Active)],
            ),
            (
                "after another",
                vec![
                    image("ami-0", made, ImageStage::Active, Some("2"), Some("1")),
                    image("ami-1", made, ImageStage::Ready, None, None),
                ],
                vec![("ami-0", ImageStage::Retired), ("ami-1", ImageStage::Active)],
            ),
            (
                "bad and pruned ones stay so",
                vec![
                    image("ami-p", made, ImageStage::Pruned, Some("1"), None),
                    image("ami-b", made, ImageStage::Bad, Some("2"), Some("1")),
                    image("ami-1", made, ImageStage::Ready, None, None),
                ],
                vec![("ami-p", ImageStage::Pruned), ("ami-b", ImageStage::Bad), ("ami-1", ImageStage::Active)],
            ),
        ];
        for (case, mut images, expected) in cases {
            activate(&mut images, "ami-1", "7", "6");
            assert_eq!(stages(&images), expected, "{case}");
            let activated = images.iter().find(|i| i.image_id == "ami-1").unwrap();
            assert_eq!(
                (activated.template_version.as_deref(), activated.previous_version.as_deref()),
                (Some("7"), Some("6")),
                "{case}"
            );
        }
    }

    #[test]
    fn setting_a_stage_touches_that_image_only() {
        let made = "2026-11-21T00:00:00Z";
        let pending = [
            image("ami-1", made, ImageStage::Pending, None, None),
            image("ami-2", made, ImageStage::Pending, None, None),
        ];
        let cases = [
            ("ami-1", ImageStage::Ready, vec![("ami-1", ImageStage::Ready), ("ami-2", ImageStage::Pending)]),
            ("ami-2", ImageStage::Pruned, vec![("ami-1", ImageStage::Pending), ("ami-2", ImageStage::Pruned)]),
            ("ami-9", ImageStage::Bad, vec![("ami-1", ImageStage::Pending), ("ami-2", ImageStage::Pending)]),
        ];
        for (id, stage, expected) in cases {
            let mut images = pending.to_vec();
            set_stage(&mut images, id, stage);
            assert_eq!(stages(&images), expected, "{id} {stage:?}");
        }
    }

    #[test]
    fn pruning_keeps_the_newest_the_active_the_previous_and_those_in_use() {
        let cases: Vec<Case3<Vec<ImageRecord>, u32, Vec<String>, Ids>> = vec![
            ("keep 3", five_days(), 3, vec![], vec!["ami-2", "ami-1"]),
            ("a running member uses ami-1", five_days(), 3, vec!["ami-1".into()], vec!["ami-2"]),
            ("ami-4 is where a rollback goes", five_days(), 1, vec![], vec!["ami-3", "ami-2", "ami-1"]),
            ("keep all", five_days(), 5, vec![], vec![]),
            (
                "never a pending or pruned one",
                vec![
                    image("ami-1", "2026-11-17T00:00:00Z", ImageStage::Pruned, Some("2"), Some("1")),
                    image("ami-2", "2026-11-18T00:00:00Z", ImageStage::Active, Some("3"), Some("2")),
                    image("ami-3", "2026-11-19T00:00:00Z", ImageStage::Pending, None, None),
                ],
                0,
                vec![],
                vec![],
            ),
        ];
        for (case, images, keep, in_use, expected) in cases {
            assert_eq!(prunable(&images, keep, &in_use), expected, "{case}");
        }
    }

    #[test]
    fn a_rollback_needs_a_previous_version() {
        let cases: Vec<Case<Vec<ImageRecord>, Refusal>> = vec![
            ("no image", vec![], Err(&["nothing to roll back"])),
            (
                "no previous version",
                vec![image("ami-5", "2026-11-21T00:00:00Z", ImageStage::Active, Some("6"), None)],
                Err(&["no previous launch template version"]),
            ),
            (
                "the version before",
                vec![image("ami-5", "2026-11-21T00:00:00Z", ImageStage::Active, Some("6"), Some("5"))],
                Ok(("ami-5", "5")),
            ),
            // keep 1, three activations, one rollback: ami-2 is active again, its predecessor pruned.
            (
                "its image pruned",
                vec![
                    image("ami-1", "2026-11-19T00:00:00Z", ImageStage::Pruned, Some("2"), Some("1")),
                    image("ami-2", "2026-11-20T00:00:00Z", ImageStage::Active, Some("3"), Some("2")),
                    image("ami-3", "2026-11-21T00:00:00Z", ImageStage::Bad, Some("4"), Some("3")),
                ],
                Err(&["nothing left", "ami-1", "pruned"]),
            ),
            (
                "its image bad",
                vec![
                    image("ami-1", "2026-11-19T00:00:00Z", ImageStage::Bad, Some("2"), Some("1")),
                    image("ami-2", "2026-11-20T00:00:00Z", ImageStage::Active, Some("3"), Some("2")),
                ],
                Err(&["nothing left", "ami-1", "bad"]),
            ),
        ];
        for (case, images, expected) in cases {
            match (rollback_target(&images), expected) {
                (Ok((image, previous)), Ok(want)) => assert_eq!((image.as_str(), previous.as_str()), want, "{case}"),
                (Err(refused), Err(words)) => {
                    assert!(words.iter().all(|w| refused.contains(w)), "{case}: {refused}");
                }
                (got, want) => panic!("{case}: {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn a_rollback_marks_the_image_bad_and_the_retired_previous_one_active() {
        let cases: Vec<Case2<Vec<ImageRecord>, &str, Stages>> = vec![
            (
                "back to ami-4",
                five_days(),
                "5",
                vec![
                    ("ami-1", ImageStage::Retired),
                    ("ami-2", ImageStage::Retired),
                    ("ami-3", ImageStage::Retired),
                    ("ami-4", ImageStage::Active),
                    ("ami-5", ImageStage::Bad),
                ],
            ),
            (
                "back to a version of no image of spotkeeper's",
                vec![image("ami-5", "2026-11-21T00:00:00Z", ImageStage::Active, Some("6"), Some("5"))],
                "5",
                vec![("ami-5", ImageStage::Bad)],
            ),
        ];
        for (case, mut images, previous, expected) in cases {
            roll_back(&mut images, "ami-5", previous, "failed its checks");
            assert_eq!(stages(&images), expected, "{case}");
            let bad = images.iter().find(|i| i.image_id == "ami-5").unwrap();
            assert_eq!(bad.note.as_deref(), Some("failed its checks"), "{case}");
        }
    }

    fn imaged_group() -> Group {
        let mut group = Group::new(
            GroupName::try_from("web".to_string()).unwrap(),
            GroupKind::Standalone(Box::new(crate::fixtures::standalone_spec())),
            at("2026-11-21T00:00:00Z"),
        );
        group.policy.images.probation = std::time::Duration::from_secs(3600);
        group.status.images = vec![
            image("ami-4", "2026-11-20T00:00:00Z", ImageStage::Retired, Some("5"), Some("4")),
            image("ami-5", "2026-11-21T00:00:00Z", ImageStage::Active, Some("6"), Some("5")),
        ];
        group
    }

    #[test]
    fn a_member_launched_from_the_active_image_that_dies_in_probation_condemns_it() {
        let now = at("2026-11-21T12:00:00Z");
        let launched = |minutes: i64| Member {
            launched_at: Some(now - Duration::minutes(minutes)),
            ..crate::fixtures::member("i-1")
        };
        let retiring = Member {
            role: Role::Retiring(Retiring { since: now, reason: Reason::Recovery, replaced_by: "i-2".into() }),
            ..launched(10)
        };
        let cases = [
            ("launched ten minutes ago from the active image", launched(10), Some("ami-5"), true),
            ("an hour is still in probation", launched(60), Some("ami-5"), true),
            ("past its probation", launched(61), Some("ami-5"), false),
            ("from the previous image", launched(10), Some("ami-4"), false),
            ("its image unknown", launched(10), None, false),
            ("already retiring", retiring, Some("ami-5"), false),
            ("its launch unknown", crate::fixtures::member("i-1"), Some("ami-5"), false),
        ];
        for (case, member, image_id, expected) in cases {
            assert_eq!(died_in_probation(&imaged_group(), &member, image_id, now), expected, "{case}");
        }
        let mut no_active = imaged_group();
        no_active.status.images.pop();
        assert!(
            !died_in_probation(&no_active, &launched(10), Some("ami-4"), now),
            "no active image, nothing to condemn"
        );
    }

    #[test]
    fn on_trial_are_the_serving_members_launched_from_the_active_image_in_probation() {
        let now = at("2026-11-21T12:00:00Z");
        let member = |id: &str, minutes: i64| Member {
            launched_at: Some(now - Duration::minutes(minutes)),
            ..crate::fixtures::member(id)
        };
        let from =
            |id: &str, image: &str| InstanceFacts { image_id: Some(image.into()), ..crate::fixtures::instance(id) };
        let members = [member("i-new", 10), member("i-old", 120), member("i-prev", 10), member("i-unlisted", 10)];
        let instances = [from("i-new", "ami-5"), from("i-old", "ami-5"), from("i-prev", "ami-4")];
        let mut no_active = imaged_group();
        no_active.status.images.pop();
        let cases: Vec<(&str, Group, Vec<&str>)> =
            vec![("one on trial", imaged_group(), vec!["i-new"]), ("no active image", no_active, vec![])];
        for (case, group, expected) in cases {
            assert_eq!(on_trial(&group, &members, &instances, now), expected, "{case}");
        }
    }
}
