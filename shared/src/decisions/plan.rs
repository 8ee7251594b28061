//! Decisions: pure functions over domain types. No I/O here; every function is unit-tested.

use thiserror::Error;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::domain::InstanceState;
use crate::domain::{
    AddressKind, Attempt, DataVolume, Group, GroupKind, GroupName, InstanceFacts, LaunchError, LaunchPlan, Lookup, Old,
    Pool, PoolHealth, Reason, StandaloneSpec, Subnet, VolumeFacts,
};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "data volumes {0} lie in different availability zones: an instance can only attach volumes of its own AZ, so keep a group's volumes in one AZ"
    )]
    VolumesInSeveralZones(String),
    #[error("no subnet of the group is in {zone}, where its data volumes are: add a subnet of {zone}")]
    NoSubnetInVolumeZone { zone: String },
}

/// The AZ all data volumes share (`None` without volumes).
pub fn volume_zone(volumes: &[VolumeFacts]) -> Result<Option<String>, PlanError> {
    let mut zones: Vec<&str> = volumes.iter().map(|v| v.availability_zone.as_str()).collect();
    zones.sort_unstable();
    zones.dedup();
    match zones.as_slice() {
        [] => Ok(None),
        [zone] => Ok(Some((*zone).to_string())),
        _ => Err(PlanError::VolumesInSeveralZones(
            volumes.iter().map(|v| format!("{} ({})", v.volume_id, v.availability_zone)).collect::<Vec<_>>().join(", "),
        )),
    }
}

/// Every pool a group may launch into: each instance type in each subnet, restricted to the
/// volumes' AZ when the group has data volumes.
pub fn pools(instance_types: &[String], subnets: &[Subnet], zone: Option<&str>) -> Result<Vec<Pool>, PlanError> {
    let subnets: Vec<&Subnet> = subnets.iter().filter(|s| zone.is_none_or(|z| s.availability_zone == z)).collect();
    if let (Some(zone), true) = (zone, subnets.is_empty()) {
        return Err(PlanError::NoSubnetInVolumeZone { zone: zone.to_string() });
    }
    Ok(subnets
        .iter()
        .flat_map(|subnet| {
            instance_types.iter().map(|t| Pool {
                instance_type: t.clone(),
                subnet_id: subnet.id.clone(),
                availability_zone: subnet.availability_zone.clone(),
            })
        })
        .collect())
}

/// The addresses the group's record should hold: those of its running instances, sorted so the
/// same fleet always gives the same record.
pub fn dns_addresses(kind: AddressKind, instances: &[InstanceFacts]) -> Vec<String> {
    let mut addresses: Vec<String> = instances
        .iter()
        .filter(|i| i.state == Some(InstanceState::Running))
        .filter_map(|i| match kind {
            AddressKind::Private => i.private_ip.clone(),
            AddressKind::Public => i.public_ip.clone(),
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// Why a data volume is not attached now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeHold {
    /// Still on another instance: it follows once that one has stopped.
    AttachedElsewhere {
        instance_id: String,
    },
    /// In another AZ than the instance: it can never attach there.
    OtherZone {
        zone: String,
    },
    Missing,
}

/// Which data volumes to attach to `instance` now, and why the others wait.
pub fn volumes_to_attach<'a>(
    wanted: &'a [DataVolume],
    facts: &[VolumeFacts],
    instance: &InstanceFacts,
) -> (Vec<&'a DataVolume>, Vec<(&'a DataVolume, VolumeHold)>) {
    let mut attach = Vec::new();
    let mut hold = Vec::new();
    for volume in wanted {
        match facts.iter().find(|f| f.volume_id == volume.volume_id) {
            None => hold.push((volume, VolumeHold::Missing)),
            Some(f) if f.attachments.iter().any(|(id, _)| id == &instance.instance_id) => {}
            Some(f) if f.availability_zone != instance.availability_zone => {
                hold.push((volume, VolumeHold::OtherZone { zone: f.availability_zone.clone() }));
            }
            Some(f) => match f.attachments.first() {
                Some((other, _)) => hold.push((volume, VolumeHold::AttachedElsewhere { instance_id: other.clone() })),
                None => attach.push(volume),
            },
        }
    }
    (attach, hold)
}

/// A Spot launch that got nothing and failed only for capacity: launch On-Demand instead.
pub fn should_fall_back(launched_count: usize, errors: &[LaunchError]) -> bool {
    launched_count == 0 && !errors.is_empty() && errors.iter().all(LaunchError::is_capacity)
}

/// The pools a launch leaves avoided for a while: those its instances were interrupted in (or at
/// risk in), and those EC2 had no capacity in — all of the launch's pools when EC2 does not say
/// which. Sorted, each once.
pub fn pools_to_avoid(reason: Reason, olds: &[Old], pools: &[Pool], errors: &[LaunchError]) -> Vec<Pool> {
    let leaving_risky_pools = matches!(reason, Reason::Interruption | Reason::Rebalance);
    let mut avoid: Vec<Pool> = olds.iter().filter(|_| leaving_risky_pools).filter_map(|o| o.pool.clone()).collect();
    for error in errors.iter().filter(|e| e.is_capacity()) {
        match &error.pool {
            Some((instance_type, subnet)) => avoid
                .extend(pools.iter().filter(|p| &p.instance_type == instance_type && &p.subnet_id == subnet).cloned()),
            None => avoid.extend(pools.iter().cloned()),
        }
    }
    avoid.sort_by_key(Pool::key);
    avoid.dedup();
    avoid
}

/// How long a pool that was just interrupted, or had no capacity, is avoided.
pub const AVOID_POOL_MINUTES: i64 = 30;

/// A Spot interruption warning for a managed instance, as the handler read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub event_id: String,
    pub instance_id: String,
    pub warned_at: DateTime<Utc>,
    pub lookup: Lookup,
    /// This delivery holds the event's claim (not so for the other events of a launch sent again).
    pub held: bool,
}

/// What to do about a batch of warnings: one request per Auto Scaling group or standalone group.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Detach these instances without decrementing desired capacity: the ASG launches their
    /// replacements at once while they drain.
    Detach { group: GroupName, asg_name: String, warnings: Vec<Warning> },
    /// Launch one replacement per warning, in one request over these pools (none when the
    /// group's spec gives none: an error the warnings fail with, visibly).
    Replace { group: Box<Group>, pools: Result<Vec<Pool>, PlanError>, warnings: Vec<Warning> },
    /// Send a launch whose outcome is unknown again, as it was: one warning per instance it
    /// replaces, held here or not.
    Replay { group: Box<Group>, attempt: Box<Attempt>, warnings: Vec<Warning> },
}

impl Action {
    pub fn warnings(&self) -> &[Warning] {
        match self {
            Action::Detach { warnings, .. } | Action::Replace { warnings, .. } | Action::Replay { warnings, .. } => {
                warnings
            }
        }
    }

    /// The launch an action stands for: for a standalone group's warnings a new one, a
    /// replacement each (`on_demand` of them On-Demand, to keep the group's base), its token made
    /// of their events; a kept launch as it was; none for a detach. A spec that gives no pools is
    /// the error, not an empty launch.
    pub fn launch_plan(&self, on_demand: u32) -> Option<Result<LaunchPlan, PlanError>> {
        match self {
            Action::Detach { .. } => None,
            Action::Replay { attempt, .. } => Some(Ok(attempt.plan.clone())),
            Action::Replace { group, pools, warnings } => {
                let GroupKind::Standalone(spec) = &group.kind else { return None };
                let olds = warnings
                    .iter()
                    .map(|w| Old {
                        instance_id: w.instance_id.clone(),
                        since: w.warned_at,
                        pool: w.lookup.pool.clone(),
                    })
                    .collect();
                let token = token(warnings.iter().map(|w| w.event_id.as_str()));
                Some(pools.clone().map(|pools| {
                    LaunchPlan::new(spec, pools, olds, Reason::Interruption, token)
                        .with_on_demand(on_demand)
                        .with_fallback(group.policy.fallback)
                }))
            }
        }
    }
}

/// A client token from the ids of the work it stands for: same work, same token, whatever the
/// order the ids come in.
pub fn token<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut ids: Vec<&str> = ids.into_iter().collect();
    ids.sort_unstable();
    hex::encode(&Sha256::digest(ids.join(",").as_bytes())[..16])
}

/// The pools a group's replacements may use: healthy pools other than the interrupted ones;
/// failing that, any pool but the interrupted ones; failing that (a single-pool group), any pool.
pub fn replacement_pools(all: &[Pool], interrupted: &[Pool], health: &PoolHealth, now: DateTime<Utc>) -> Vec<Pool> {
    let others: Vec<Pool> = all.iter().filter(|p| !interrupted.contains(p)).cloned().collect();
    let healthy: Vec<Pool> = others.iter().filter(|p| health.is_healthy(p, now)).cloned().collect();
    if !healthy.is_empty() {
        healthy
    } else if !others.is_empty() {
        others
    } else {
        all.to_vec()
    }
}

/// The pools a standalone group's launch goes to: of all its pools (a spec that gives none is an
/// error, never an empty launch), those `replacement_pools` keeps when `leaving` are left.
pub fn launch_pools(
    spec: &StandaloneSpec,
    leaving: &[Pool],
    health: &PoolHealth,
    now: DateTime<Utc>,
) -> Result<Vec<Pool>, PlanError> {
    let all = pools(&spec.instance_types, &spec.subnets, spec.volume_zone.as_deref())?;
    Ok(replacement_pools(&all, leaving, health, now))
}

/// Groups the warnings of one batch into as few requests as the APIs allow: one detach per
/// Auto Scaling group (the API takes 20 ids a call; the adapter splits), one launch per
/// standalone group — and each launch kept from an earlier delivery sent again, once.
pub fn interruption_actions(
    warnings: Vec<Warning>,
    attempts: &[Attempt],
    health: &PoolHealth,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let attempt_of = |w: &Warning| {
        attempts.iter().find(|a| {
            w.lookup.attempt.as_deref() == Some(a.plan.token.as_str())
                && a.plan.olds.iter().any(|o| o.instance_id == w.instance_id)
        })
    };
    let mut replays: BTreeMap<String, (&Attempt, Vec<Warning>)> = BTreeMap::new();
    let mut by_group: BTreeMap<GroupName, Vec<Warning>> = BTreeMap::new();
    for warning in warnings {
        match attempt_of(&warning) {
            Some(attempt) => {
                replays.entry(attempt.plan.token.clone()).or_insert_with(|| (attempt, Vec::new())).1.push(warning);
            }
            None => by_group.entry(warning.lookup.group.clone()).or_default().push(warning),
        }
    }
    let mut actions: Vec<Action> = replays.into_values().filter_map(|(attempt, held)| replay(attempt, held)).collect();
    actions.extend(by_group.into_values().filter_map(|warnings| {
        let group = warnings.first()?.lookup.config.clone();
        Some(match &group.kind {
            GroupKind::Asg(spec) => {
                Action::Detach { group: group.name.clone(), asg_name: spec.asg_name.clone(), warnings }
            }
            GroupKind::Standalone(spec) => {
                let interrupted: Vec<Pool> = warnings.iter().filter_map(|w| w.lookup.pool.clone()).collect();
                let pools = launch_pools(spec, &interrupted, health, now);
                Action::Replace { group: Box::new(group), pools, warnings }
            }
        })
    }));
    actions
}

/// A launch sent again: a warning for every instance it replaces, the held ones as they came.
fn replay(attempt: &Attempt, held: Vec<Warning>) -> Option<Action> {
    let first = held.first()?.lookup.clone();
    let warnings = attempt
        .plan
        .olds
        .iter()
        .zip(&attempt.events)
        .map(|(old, event_id)| {
            held.iter().find(|w| w.instance_id == old.instance_id).cloned().unwrap_or_else(|| Warning {
                event_id: event_id.clone(),
                instance_id: old.instance_id.clone(),
                warned_at: old.since,
                lookup: Lookup { pool: old.pool.clone(), ..first.clone() },
                held: false,
            })
        })
        .collect();
    Some(Action::Replay { group: Box::new(first.config), attempt: Box::new(attempt.clone()), warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AsgSpec, DeviceName, LaunchErrorKind, LaunchTemplateRef, SubnetId, VolumeId};

    /// Subnet `subnet-<short>`: the tables below name subnets by their last letters.
    fn subnet_id(short: &str) -> SubnetId {
        SubnetId::try_from(format!("subnet-{short}")).unwrap()
    }

    fn subnet(short: &str, zone: &str) -> Subnet {
        Subnet { id: subnet_id(short), availability_zone: zone.into() }
    }

    fn volume(id: &str, zone: &str, attached_to: Option<&str>) -> VolumeFacts {
        VolumeFacts {
            volume_id: VolumeId::try_from(id).unwrap(),
            availability_zone: zone.into(),
            state: if attached_to.is_some() { "in-use" } else { "available" }.into(),
            size_gib: 20,
            attachments: attached_to.map(|i| (i.to_string(), "/dev/sdf".to_string())).into_iter().collect(),
        }
    }

    fn instance(id: &str, zone: &str, state: &str, ip: &str) -> InstanceFacts {
        InstanceFacts {
            availability_zone: zone.into(),
            state: state.parse().ok(),
            private_ip: Some(ip.into()),
            private_dns: None,
            ..crate::fixtures::instance(id)
        }
    }

    #[test]
    fn pools_are_types_times_subnets_within_the_volume_zone() {
        let types = vec!["m5.large".to_string(), "m6i.large".to_string()];
        let subnets = vec![subnet("a", "us-east-1a"), subnet("b", "us-east-1b")];
        assert_eq!(pools(&types, &subnets, None).unwrap().len(), 4);
        let zoned = pools(&types, &subnets, Some("us-east-1b")).unwrap();
        assert_eq!(zoned.len(), 2);
        assert!(zoned.iter().all(|p| p.subnet_id == "subnet-b"));
        assert_eq!(
            pools(&types, &subnets, Some("us-east-1c")),
            Err(PlanError::NoSubnetInVolumeZone { zone: "us-east-1c".into() })
        );
    }

    #[test]
    fn volumes_must_share_one_zone() {
        assert_eq!(volume_zone(&[]), Ok(None));
        let one = [volume("vol-1", "us-east-1a", None), volume("vol-2", "us-east-1a", None)];
        assert_eq!(volume_zone(&one), Ok(Some("us-east-1a".into())));
        let two = [volume("vol-1", "us-east-1a", None), volume("vol-2", "us-east-1b", None)];
        assert!(matches!(volume_zone(&two), Err(PlanError::VolumesInSeveralZones(_))));
    }

    #[test]
    fn dns_holds_running_instances_only() {
        let fleet = [
            instance("i-2", "a", "running", "10.0.0.2"),
            instance("i-1", "a", "running", "10.0.0.1"),
            instance("i-3", "a", "pending", "10.0.0.3"),
        ];
        assert_eq!(dns_addresses(AddressKind::Private, &fleet), vec!["10.0.0.1", "10.0.0.2"]);
        assert!(dns_addresses(AddressKind::Public, &fleet).is_empty());
    }

    fn data(id: &str, device: &str) -> DataVolume {
        DataVolume { volume_id: VolumeId::try_from(id).unwrap(), device: DeviceName::try_from(device).unwrap() }
    }

    #[test]
    fn only_free_volumes_of_the_same_zone_attach() {
        let wanted = vec![
            data("vol-free", "/dev/sdf"),
            data("vol-busy", "/dev/sdg"),
            data("vol-far", "/dev/sdh"),
            data("vol-gone", "/dev/sdi"),
            data("vol-mine", "/dev/sdj"),
        ];
        let facts = [
            volume("vol-free", "us-east-1a", None),
            volume("vol-busy", "us-east-1a", Some("i-old")),
            volume("vol-far", "us-east-1b", None),
            volume("vol-mine", "us-east-1a", Some("i-new")),
        ];
        let (attach, hold) =
            volumes_to_attach(&wanted, &facts, &instance("i-new", "us-east-1a", "running", "10.0.0.1"));
        assert_eq!(attach.iter().map(|v| v.volume_id.as_str()).collect::<Vec<_>>(), vec!["vol-free"]);
        assert_eq!(
            hold.iter().map(|(v, h)| (v.volume_id.as_str(), h.clone())).collect::<Vec<_>>(),
            vec![
                ("vol-busy", VolumeHold::AttachedElsewhere { instance_id: "i-old".into() }),
                ("vol-far", VolumeHold::OtherZone { zone: "us-east-1b".into() }),
                ("vol-gone", VolumeHold::Missing),
            ]
        );
    }

    #[test]
    fn fall_back_only_when_every_error_is_about_capacity() {
        let capacity = launch_error(LaunchErrorKind::Capacity, None);
        let mistake = launch_error(LaunchErrorKind::Other, None);
        assert!(should_fall_back(0, std::slice::from_ref(&capacity)));
        assert!(!should_fall_back(1, std::slice::from_ref(&capacity)));
        assert!(!should_fall_back(0, &[capacity, mistake]));
        assert!(!should_fall_back(0, &[]));
    }

    fn launch_error(kind: LaunchErrorKind, pool: Option<(&str, &str)>) -> LaunchError {
        let pool = pool.map(|(t, s)| (t.to_string(), subnet_id(s)));
        LaunchError { kind, code: format!("{kind:?}"), message: String::new(), pool }
    }

    fn old(id: &str, pool: Option<Pool>) -> Old {
        Old { instance_id: id.into(), since: Utc::now(), pool }
    }

    #[test]
    fn pools_to_avoid_after_a_launch() {
        let (a, b, c) = (pool("m5", "a"), pool("m5", "b"), pool("m6", "a"));
        let launched_into = [a.clone(), b.clone(), c.clone()];
        let no_room_in_b = launch_error(LaunchErrorKind::Capacity, Some(("m5", "b")));
        let no_room_anywhere = launch_error(LaunchErrorKind::Capacity, None);
        let mistake = launch_error(LaunchErrorKind::Other, Some(("m5", "b")));
        #[rustfmt::skip]
        let cases = vec![
            ("an interrupted pool", Reason::Interruption, vec![old("i-1", Some(c.clone()))], vec![], vec![c.clone()]),
            ("a pool at risk", Reason::Rebalance, vec![old("i-1", Some(a.clone()))], vec![], vec![a.clone()]),
            ("a recovery leaves an On-Demand pool, not a risky one", Reason::Recovery, vec![old("i-1", Some(a.clone()))], vec![], vec![]),
            ("a vanished instance's pool is not blamed", Reason::Reconcile, vec![old("i-1", Some(a.clone()))], vec![], vec![]),
            ("a rollback's pool is not blamed", Reason::Rollback, vec![old("i-1", Some(a.clone()))], vec![], vec![]),
            ("an old of unknown pool", Reason::Interruption, vec![old("i-1", None)], vec![], vec![]),
            ("the pool EC2 had no capacity in", Reason::Recovery, vec![], vec![no_room_in_b.clone()], vec![b.clone()]),
            ("no capacity, pool unnamed: all of the launch's", Reason::Recovery, vec![], vec![no_room_anywhere], launched_into.to_vec()),
            ("a mistake blames no pool", Reason::Interruption, vec![], vec![mistake], vec![]),
            ("each once, sorted", Reason::Interruption, vec![old("i-1", Some(b.clone())), old("i-2", Some(b.clone()))], vec![no_room_in_b], vec![b.clone()]),
        ];
        for (case, reason, olds, errors, expected) in cases {
            let mut sorted = expected.clone();
            sorted.sort_by_key(Pool::key);
            assert_eq!(pools_to_avoid(reason, &olds, &launched_into, &errors), sorted, "{case}");
        }
    }

    #[test]
    fn a_spec_that_gives_no_pools_is_an_error_not_an_empty_launch() {
        let mut spec = web_spec();
        spec.volume_zone = Some("us-east-1z".into());
        let cases: Vec<(&str, StandaloneSpec, Result<usize, PlanError>)> = vec![
            ("every pool of the spec", web_spec(), Ok(web_spec().instance_types.len() * web_spec().subnets.len())),
            (
                "no subnet in the volumes' zone",
                spec,
                Err(PlanError::NoSubnetInVolumeZone { zone: "us-east-1z".into() }),
            ),
        ];
        for (case, spec, expected) in cases {
            let found = launch_pools(&spec, &[], &PoolHealth::default(), Utc::now()).map(|p| p.len());
            assert_eq!(found, expected, "{case}");
        }
    }

    #[test]
    fn the_launch_an_interruption_action_stands_for() {
        let spec = web_spec();
        let web = lookup("web", GroupKind::Standalone(Box::new(spec.clone())), Some(pool("m5", "a")));
        let (w1, w2) = (warning("i-1", &web), warning("i-2", &web));
        let kept =
            LaunchPlan::new(&spec, vec![pool("m6", "b")], vec![old("i-9", None)], Reason::Interruption, "t-9".into())
                .with_on_demand(1);
        let replay = Action::Replay {
            group: Box::new(web.config.clone()),
            attempt: Box::new(Attempt { plan: kept.clone(), events: vec!["e-i-9".into()] }),
            warnings: vec![warning("i-9", &web)],
        };
        let replace = |pools: Result<Vec<Pool>, PlanError>| Action::Replace {
            group: Box::new(web.config.clone()),
            pools,
            warnings: vec![w1.clone(), w2.clone()],
        };
        let olds = vec![
            Old { instance_id: "i-1".into(), since: w1.warned_at, pool: Some(pool("m5", "a")) },
            Old { instance_id: "i-2".into(), since: w2.warned_at, pool: Some(pool("m5", "a")) },
        ];
        let fresh = |on_demand| {
            LaunchPlan::new(&spec, vec![pool("m6", "a")], olds.clone(), Reason::Interruption, token(["e-i-2", "e-i-1"]))
                .with_on_demand(on_demand)
                .with_fallback(web.config.policy.fallback)
        };
        let no_zone = PlanError::NoSubnetInVolumeZone { zone: "z".into() };
        let asg = lookup("workers", GroupKind::Asg(AsgSpec { asg_name: "workers-asg".into() }), None);
        let detach = Action::Detach { group: asg.group.clone(), asg_name: "workers-asg".into(), warnings: vec![] };
        let cases = vec![
            ("a detach launches nothing", detach, 1, None),
            ("a kept launch goes out as it was, whatever the base now", replay, 0, Some(Ok(kept))),
            ("a replacement each, in one launch", replace(Ok(vec![pool("m6", "a")])), 0, Some(Ok(fresh(0)))),
            ("the base's share On-Demand", replace(Ok(vec![pool("m6", "a")])), 2, Some(Ok(fresh(2)))),
            ("a spec without pools is an error", replace(Err(no_zone.clone())), 0, Some(Err(no_zone))),
        ];
        for (case, action, on_demand, expected) in cases {
            assert_eq!(action.launch_plan(on_demand), expected, "{case}");
        }
    }

    #[test]
    fn a_token_stands_for_its_work_in_any_order() {
        let cases =
            [(vec!["a", "b"], vec!["b", "a"], true), (vec!["a"], vec!["a", "b"], false), (vec![], vec![], true)];
        for (one, other, same) in cases {
            assert_eq!(token(one.clone()) == token(other.clone()), same, "{one:?} / {other:?}");
        }
    }

    fn pool(t: &str, subnet: &str) -> Pool {
        Pool { instance_type: t.into(), subnet_id: subnet_id(subnet), availability_zone: format!("zone-{subnet}") }
    }

    #[test]
    fn replacements_avoid_the_interrupted_and_unhealthy_pools() {
        let now = Utc::now();
        let all = vec![pool("m5", "a"), pool("m5", "b"), pool("m6", "a"), pool("m6", "b")];
        let mut health = PoolHealth::default();
        health.avoid_until.insert(pool("m6", "a").key(), now + chrono::Duration::minutes(5));
        health.avoid_until.insert(pool("m6", "b").key(), now - chrono::Duration::minutes(5));
        let chosen = replacement_pools(&all, &[pool("m5", "a")], &health, now);
        assert_eq!(chosen, vec![pool("m5", "b"), pool("m6", "b")], "expired marks no longer count");
        // Everything else unhealthy: any pool but the interrupted one beats none.
        health.avoid_until.insert(pool("m5", "b").key(), now + chrono::Duration::minutes(5));
        health.avoid_until.insert(pool("m6", "b").key(), now + chrono::Duration::minutes(5));
        assert_eq!(replacement_pools(&all, &[pool("m5", "a")], &health, now).len(), 3);
        // A single-pool group can only come back where it was.
        assert_eq!(replacement_pools(&all[..1], &all[..1], &health, now), all[..1].to_vec());
    }

    fn lookup(group: &str, kind: GroupKind, pool: Option<Pool>) -> Lookup {
        let name = GroupName::try_from(group.to_string()).unwrap();
        let policy = crate::domain::Policy::default_for(&kind);
        Lookup {
            group: name.clone(),
            config: Group {
                name,
                kind,
                policy,
                kubernetes: None,
                status: crate::domain::GroupStatus::default(),
                created_at: Utc::now(),
                version: 3,
            },
            pool,
            attempt: None,
        }
    }

    fn warning(id: &str, lookup: &Lookup) -> Warning {
        Warning {
            event_id: format!("e-{id}"),
            instance_id: id.into(),
            warned_at: Utc::now(),
            lookup: lookup.clone(),
            held: true,
        }
    }

    /// A standalone group over m5 and m6 in two subnets.
    fn web_spec() -> StandaloneSpec {
        StandaloneSpec {
            launch_template: LaunchTemplateRef { id: Some("lt-1".into()), name: None, version: "$Latest".into() },
            instance_types: vec!["m5".into(), "m6".into()],
            subnets: vec![subnet("a", "zone-a"), subnet("b", "zone-b")],
            capacity: 4,
            dns: None,
            elastic_ip_allocation_id: None,
            data_volumes: vec![],
            volume_zone: None,
        }
    }

    #[test]
    fn a_batch_becomes_one_request_per_group() {
        let asg = lookup("workers", GroupKind::Asg(AsgSpec { asg_name: "workers-asg".into() }), None);
        let spec = web_spec();
        let web_1 = lookup("web", GroupKind::Standalone(Box::new(spec.clone())), Some(pool("m5", "a")));
        let web_2 = lookup("web", GroupKind::Standalone(Box::new(spec)), Some(pool("m6", "b")));
        let actions = interruption_actions(
            vec![warning("i-1", &asg), warning("i-2", &web_1), warning("i-3", &asg), warning("i-4", &web_2)],
            &[],
            &PoolHealth::default(),
            Utc::now(),
        );
        assert_eq!(actions.len(), 2);
        match &actions[0] {
            Action::Replace { pools, warnings, .. } => {
                assert_eq!(warnings.len(), 2, "two replacements, one request");
                assert_eq!(pools, &Ok(vec![pool("m6", "a"), pool("m5", "b")]), "both interrupted pools avoided");
            }
            other => panic!("{other:?}"),
        }
        match &actions[1] {
            Action::Detach { asg_name, warnings, .. } => {
                assert_eq!(asg_name, "workers-asg");
                assert_eq!(warnings.iter().map(|w| w.instance_id.as_str()).collect::<Vec<_>>(), vec!["i-1", "i-3"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_launch_whose_answer_was_lost_is_sent_again_whole_whichever_warning_comes_back() {
        let spec = web_spec();
        let olds = ["i-5", "i-6", "i-7"].iter().map(|id| old(id, Some(pool("m5", "a")))).collect();
        let plan =
            LaunchPlan::new(&spec, vec![pool("m6", "b")], olds, Reason::Interruption, "t-1".into()).with_fallback(true);
        let attempt = Attempt { plan, events: vec!["e-i-5".into(), "e-i-6".into(), "e-i-7".into()] };
        let mut tried = lookup("web", GroupKind::Standalone(Box::new(spec.clone())), Some(pool("m5", "a")));
        tried.attempt = Some("t-1".into());
        let mut expired = tried.clone();
        expired.attempt = Some("t-gone".into());
        let fresh = lookup("web", GroupKind::Standalone(Box::new(spec)), Some(pool("m5", "a")));
        let actions = interruption_actions(
            vec![warning("i-6", &tried), warning("i-8", &fresh), warning("i-9", &expired)],
            std::slice::from_ref(&attempt),
            &PoolHealth::default(),
            Utc::now(),
        );
        assert_eq!(actions.len(), 2, "{actions:?}");
        match &actions[0] {
            Action::Replay { attempt: again, warnings, .. } => {
                assert_eq!(**again, attempt, "the very same request");
                let held: Vec<(&str, bool)> = warnings.iter().map(|w| (w.event_id.as_str(), w.held)).collect();
                assert_eq!(held, vec![("e-i-5", false), ("e-i-6", true), ("e-i-7", false)]);
            }
            other => panic!("{other:?}"),
        }
        match &actions[1] {
            Action::Replace { warnings, .. } => {
                let ids: Vec<&str> = warnings.iter().map(|w| w.instance_id.as_str()).collect();
                assert_eq!(ids, vec!["i-8", "i-9"], "a kept launch that expired is launched anew");
            }
            other => panic!("{other:?}"),
        }
    }
}
