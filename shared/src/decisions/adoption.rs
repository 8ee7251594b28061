//! Adoption: whether instances may join a group. An instance joins when it exists, runs (or is
//! starting), no group manages it or claims it by tag, and it fits the group: in its Auto Scaling
//! group, or in its subnets and its volumes' AZ, within its capacity.

use thiserror::Error;

use crate::domain::{GROUP_TAG, Group, GroupKind, GroupName, InstanceFacts};

/// Why an instance may not join.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("instance {0} does not exist")]
    Missing(String),
    #[error("instance {id} is {state}: only pending or running instances can be adopted")]
    NotLive { id: String, state: String },
    #[error("instance {id} is already managed by group {owner}")]
    Managed { id: String, owner: GroupName },
    #[error("instance {id} carries {GROUP_TAG}={tag}: remove it from that group first")]
    TaggedElsewhere { id: String, tag: String },
    #[error("instance {id} is not in Auto Scaling group {asg}")]
    OutsideAsg { id: String, asg: String },
    #[error("instance {0} is not in one of the group's subnets")]
    OutsideSubnets(String),
    #[error("instance {id} is in {zone}, not in the AZ of the group's data volumes")]
    OutsideZone { id: String, zone: String },
    #[error("group {group} already has its capacity of {capacity} instances: remove one or raise the capacity first")]
    Full { group: GroupName, capacity: u32 },
}

impl Refusal {
    /// Whether the instance is what stands in the way (it exists but belongs elsewhere, or the
    /// group is full), rather than a reference that does not hold.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Refusal::Managed { .. } | Refusal::TaggedElsewhere { .. } | Refusal::Full { .. })
    }
}

/// Whether the instances `wanted` may join `group`: `facts` as EC2 described them, and the group
/// each is managed by, as the table says (`None` for none).
pub fn candidates(
    group: &GroupName,
    wanted: &[String],
    facts: &[InstanceFacts],
    owners: &[Option<GroupName>],
) -> Result<(), Refusal> {
    let gone: Vec<&str> =
        wanted.iter().map(String::as_str).filter(|id| !facts.iter().any(|f| f.instance_id == *id)).collect();
    if !gone.is_empty() {
        return Err(Refusal::Missing(gone.join(", ")));
    }
    for (f, owner) in facts.iter().zip(owners) {
        let id = f.instance_id.clone();
        if !f.is_live() {
            return Err(Refusal::NotLive { id, state: f.state.map(|s| s.to_string()).unwrap_or_default() });
        }
        if let Some(owner) = owner {
            return Err(Refusal::Managed { id, owner: owner.clone() });
        }
        if let Some(tag) = f.tag(GROUP_TAG).filter(|t| *t != group.as_str()) {
            return Err(Refusal::TaggedElsewhere { id, tag: tag.to_string() });
        }
    }
    Ok(())
}

/// Whether one more instance fits the group, which has `members` already.
pub fn fits(group: &Group, members: usize, f: &InstanceFacts) -> Result<(), Refusal> {
    let id = f.instance_id.clone();
    match &group.kind {
        GroupKind::Asg(spec) => {
            if f.tag("aws:autoscaling:groupName") != Some(spec.asg_name.as_str()) {
                return Err(Refusal::OutsideAsg { id, asg: spec.asg_name.clone() });
            }
        }
        GroupKind::Standalone(spec) => {
            if !spec.subnets.iter().any(|s| Some(&s.id) == f.subnet_id.as_ref()) {
                return Err(Refusal::OutsideSubnets(id));
            }
            if spec.volume_zone.as_ref().is_some_and(|z| z != &f.availability_zone) {
                return Err(Refusal::OutsideZone { id, zone: f.availability_zone.clone() });
            }
            if members >= spec.capacity as usize {
                return Err(Refusal::Full { group: group.name.clone(), capacity: spec.capacity });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AsgSpec, InstanceState, StandaloneSpec, Subnet, SubnetId};
    use crate::fixtures;

    fn name(text: &str) -> GroupName {
        GroupName::try_from(text.to_string()).unwrap()
    }

    fn tagged(id: &str, tags: &[(&str, &str)]) -> InstanceFacts {
        let mut f = fixtures::instance(id);
        f.tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        f
    }

    #[test]
    fn candidates_are_refused_for_what_stands_in_the_way() {
        type Case = (&'static str, Vec<InstanceFacts>, Vec<Option<GroupName>>, Result<(), Refusal>);
        let stopped = InstanceFacts { state: Some(InstanceState::Stopped), ..fixtures::instance("i-0000000b") };
        let table: Vec<Case> = vec![
            ("free and running", vec![fixtures::instance("i-0000000a")], vec![None], Ok(())),
            ("missing", vec![], vec![], Err(Refusal::Missing("i-0000000a".into()))),
            (
                "stopped",
                vec![stopped],
                vec![None],
                Err(Refusal::NotLive { id: "i-0000000b".into(), state: "stopped".into() }),
            ),
            (
                "managed",
                vec![fixtures::instance("i-0000000a")],
                vec![Some(name("api"))],
                Err(Refusal::Managed { id: "i-0000000a".into(), owner: name("api") }),
            ),
            (
                "tagged for another group",
                vec![tagged("i-0000000a", &[(GROUP_TAG, "api")])],
                vec![None],
                Err(Refusal::TaggedElsewhere { id: "i-0000000a".into(), tag: "api".into() }),
            ),
            ("tagged for this group", vec![tagged("i-0000000a", &[(GROUP_TAG, "web")])], vec![None], Ok(())),
        ];
        for (case, facts, owners, expected) in table {
            let wanted: Vec<String> =
                vec![if facts.is_empty() { "i-0000000a".into() } else { facts[0].instance_id.clone() }];
            assert_eq!(candidates(&name("web"), &wanted, &facts, &owners), expected, "{case}");
        }
    }

    #[test]
    fn an_instance_fits_its_group_or_says_why_not() {
        type Case<'a> = (&'static str, &'a Group, usize, InstanceFacts, Result<(), Refusal>);
        let asg =
            Group::new(name("workers"), GroupKind::Asg(AsgSpec { asg_name: "workers-asg".into() }), chrono::Utc::now());
        let subnet = Subnet { id: SubnetId::try_from("subnet-a").unwrap(), availability_zone: "us-east-1a".into() };
        let spec = StandaloneSpec { subnets: vec![subnet], ..fixtures::standalone_spec() };
        let standalone = Group::new(name("web"), GroupKind::Standalone(Box::new(spec.clone())), chrono::Utc::now());
        let inside = InstanceFacts {
            subnet_id: Some(SubnetId::try_from("subnet-a").unwrap()),
            ..fixtures::instance("i-0000000a")
        };
        let elsewhere =
            InstanceFacts { subnet_id: Some(SubnetId::try_from("subnet-elsewhere").unwrap()), ..inside.clone() };
        let table: Vec<Case> = vec![
            ("in the ASG", &asg, 5, tagged("i-0000000a", &[("aws:autoscaling:groupName", "workers-asg")]), Ok(())),
            (
                "outside the ASG",
                &asg,
                0,
                fixtures::instance("i-0000000a"),
                Err(Refusal::OutsideAsg { id: "i-0000000a".into(), asg: "workers-asg".into() }),
            ),
            ("in a subnet, room left", &standalone, 0, inside.clone(), Ok(())),
            ("outside the subnets", &standalone, 0, elsewhere, Err(Refusal::OutsideSubnets("i-0000000a".into()))),
            (
                "full",
                &standalone,
                spec.capacity as usize,
                inside.clone(),
                Err(Refusal::Full { group: name("web"), capacity: spec.capacity }),
            ),
        ];
        for (case, group, members, facts, expected) in table {
            assert_eq!(fits(group, members, &facts), expected, "{case}");
        }
        let zoned = Group {
            kind: GroupKind::Standalone(Box::new(StandaloneSpec {
                volume_zone: Some("us-east-1z".into()),
                ..spec.clone()
            })),
            ..standalone.clone()
        };
        let refusal = fits(&zoned, 0, &inside).unwrap_err();
        assert!(matches!(refusal, Refusal::OutsideZone { .. }) && !refusal.is_conflict(), "{refusal}");
        assert!(Refusal::Full { group: name("web"), capacity: 1 }.is_conflict());
    }
}
