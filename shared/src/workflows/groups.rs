//! The groups' own workflows: registering a group (every reference checked against AWS before
//! anything is written; the writes taken back if a later step fails), adopting an instance,
//! changing a policy, rolling an image back, and letting a group go.

use std::time::Duration;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::adapters::aws::AwsError;
use crate::adapters::kubernetes::{ConnectError, KubeError};
use crate::adapters::store::StoreError;
use crate::decisions::{adoption, changes, failover, plan, recovery};
use crate::domain::InstanceState;
use crate::domain::{
    AllocationId, AsgSpec, ClusterName, GROUP_TAG, Group, GroupKind, GroupName, HistoryKind, InstanceFacts,
    KubernetesSpec, LaunchPlan, Member, NewAsg, NewStandalone, Policy, Reason, RebalancePolicy, StandaloneSpec,
};
use crate::runtime::{Deps, Error};
use crate::workflows::images;
use crate::workflows::launch::launch;
use crate::workflows::online::bring_online;
use crate::workflows::report::Report;

/// Why a group workflow did not do what was asked.
#[derive(Debug, Error)]
pub enum GroupError {
    /// A reference in the request does not hold (no such subnet, volume, instance, ...).
    #[error("{message}")]
    Unknown { field: &'static str, message: String },
    /// The request conflicts with what is (an instance managed elsewhere, a group full, ...).
    #[error("{0}")]
    Conflict(String),
    /// EC2 launched none of a new group's instances.
    #[error("EC2 launched no instance: {codes}")]
    NothingLaunched { codes: String, summary: String },
    /// The group's `kubernetes` block names a cluster spotkeeper cannot use.
    #[error("EKS cluster {cluster} cannot be used")]
    Cluster {
        cluster: ClusterName,
        #[source]
        source: ClusterRefusal,
    },
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Why a group's cluster failed its check.
#[derive(Debug, Error)]
pub enum ClusterRefusal {
    /// Not described, not reached, or no token could be minted.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Reached, but listing a node failed (credentials refused, RBAC, the server failing).
    #[error(transparent)]
    Check(#[from] KubeError),
    #[error("the cluster's API server did not answer within {} s", .0.as_secs())]
    TimedOut(Duration),
    /// The failover's namespaces that no Fargate profile selects with its label.
    #[error(
        "no Fargate profile selects namespace(s) {} with label {label}: create one (docs/operations.md, \"Fargate failover: the Fargate profile\")",
        .namespaces.join(", ")
    )]
    NoFargateProfile { namespaces: Vec<String>, label: String },
}

/// How long a cluster has to answer its check: well within the API's 30 s, and past kube's own
/// connect timeout, which is longer.
const CLUSTER_CHECK: Duration = Duration::from_secs(10);

/// Checks that a group's cluster can be used: described (or given), reached through its CA, the
/// function's EKS token accepted and a node listed (as a drain must), and, for a failover, a Fargate
/// profile selecting each of its namespaces. Before anything is written.
pub async fn check_cluster(deps: &Deps, spec: &KubernetesSpec) -> Result<(), GroupError> {
    let checked = tokio::time::timeout(CLUSTER_CHECK, async {
        let client = deps.clusters.connect(spec, deps.clock.now()).await?;
        client.check().await?;
        if let Some(failover) = &spec.failover {
            let selectors = deps.clusters.fargate_selectors(&spec.cluster).await?;
            let missing = failover::unprofiled(failover, &selectors);
            if !missing.is_empty() {
                let namespaces = missing.into_iter().map(str::to_string).collect();
                return Err(ClusterRefusal::NoFargateProfile { namespaces, label: failover.label.to_string() });
            }
        }
        Ok::<_, ClusterRefusal>(())
    })
    .await
    .unwrap_or(Err(ClusterRefusal::TimedOut(CLUSTER_CHECK)));
    checked.map_err(|source| {
        // A refused cluster leaves no cached client or description behind for the next try.
        deps.clusters.forget(&spec.cluster);
        GroupError::Cluster { cluster: spec.cluster.clone(), source }
    })
}

impl GroupError {
    fn unknown(field: &'static str, message: impl Into<String>) -> Self {
        Self::Unknown { field, message: message.into() }
    }

    /// An adoption refused: a conflict when the instance stands elsewhere, else a reference that does not hold.
    fn refused(field: &'static str, refusal: adoption::Refusal) -> Self {
        if refusal.is_conflict() {
            Self::Conflict(refusal.to_string())
        } else {
            Self::unknown(field, refusal.to_string())
        }
    }
}

impl From<StoreError> for GroupError {
    fn from(err: StoreError) -> Self {
        Self::Failed(err.into())
    }
}

impl From<AwsError> for GroupError {
    fn from(err: AwsError) -> Self {
        Self::Failed(err.into())
    }
}

/// A registered group, what it holds, and what did not go to plan.
#[derive(Debug)]
pub struct Registered {
    pub group: Group,
    pub members: Vec<Member>,
    pub warnings: Vec<String>,
}

fn missing<T: AsRef<str>>(wanted: &[T], found: impl Fn(&str) -> bool) -> Vec<&str> {
    wanted.iter().map(AsRef::as_ref).filter(|id| !found(id)).collect()
}

/// Instances that may join `name`: they exist, run (or are starting) and no group manages them.
async fn adoptable(
    deps: &Deps,
    name: &GroupName,
    field: &'static str,
    ids: &[String],
) -> Result<Vec<InstanceFacts>, GroupError> {
    let facts = deps.clients.ec2.instances(ids).await?;
    let owners = futures::future::try_join_all(facts.iter().map(|f| deps.store.group_of(&f.instance_id))).await?;
    adoption::candidates(name, ids, &facts, &owners).map_err(|refusal| GroupError::refused(field, refusal))?;
    Ok(facts)
}

fn client_token(group: &Group) -> String {
    let digest = Sha256::digest(format!("{}|{}", group.name, group.created_at.timestamp_micros()));
    hex::encode(&digest[..16])
}

/// Registers a standalone group: every reference checked against AWS before anything is written,
/// then the group, its launches and adoptions; a failure half way takes the writes back.
pub async fn register_standalone(
    deps: &Deps,
    body: NewStandalone,
    report: &mut Report,
) -> Result<Registered, GroupError> {
    let ec2 = &deps.clients.ec2;
    let template = body.launch_template.clone();
    let volume_ids: Vec<String> = body.data_volumes.iter().map(|v| v.volume_id.to_string()).collect();
    let zone_exists = async {
        match &body.dns {
            Some(dns) => deps.clients.route53.zone_exists(&dns.hosted_zone_id).await,
            None => Ok(true),
        }
    };
    let address_exists = async {
        match &body.elastic_ip_allocation_id {
            Some(id) => ec2.address_exists(id).await,
            None => Ok(true),
        }
    };
    let (template_exists, subnets, zone_exists, volumes, address_exists) = futures::try_join!(
        ec2.launch_template_exists(&template),
        ec2.subnets(&body.subnets),
        zone_exists,
        ec2.volumes(&volume_ids),
        address_exists,
    )?;
    if !template_exists {
        let which = template.id.as_deref().or(template.name.as_deref()).unwrap_or_default();
        return Err(GroupError::unknown("launch_template", format!("launch template {which} does not exist")));
    }
    let gone = missing(&body.subnets, |id| subnets.iter().any(|s| s.id == *id));
    if !gone.is_empty() {
        return Err(GroupError::unknown("subnets", format!("subnet {} does not exist", gone.join(", "))));
    }
    if !zone_exists {
        let zone = body.dns.as_ref().map(|d| d.hosted_zone_id.as_str()).unwrap_or_default();
        return Err(GroupError::unknown("dns.hosted_zone_id", format!("hosted zone {zone} does not exist")));
    }
    let gone = missing(&volume_ids, |id| volumes.iter().any(|v| v.volume_id == id));
    if !gone.is_empty() {
        return Err(GroupError::unknown("data_volumes", format!("volume {} does not exist", gone.join(", "))));
    }
    if !address_exists {
        return Err(GroupError::unknown(
            "elastic_ip_allocation_id",
            format!(
                "Elastic IP allocation {} does not exist",
                body.elastic_ip_allocation_id.as_ref().map(AllocationId::as_str).unwrap_or_default()
            ),
        ));
    }
    let volume_zone = plan::volume_zone(&volumes).map_err(|e| GroupError::unknown("data_volumes", e.to_string()))?;
    // Keep the operator's subnet order: it is the order pools are listed in.
    let subnets: Vec<_> = body.subnets.iter().filter_map(|id| subnets.iter().find(|s| &s.id == id).cloned()).collect();
    let pools = plan::pools(&body.instance_types, &subnets, volume_zone.as_deref())
        .map_err(|e| GroupError::unknown("subnets", e.to_string()))?;
    let adopted =
        if body.adopt.is_empty() { Vec::new() } else { adoptable(deps, &body.name, "adopt", &body.adopt).await? };
    if let Some(f) = adopted.iter().find(|f| !pools.iter().any(|p| Some(&p.subnet_id) == f.subnet_id.as_ref())) {
        return Err(GroupError::unknown(
            "adopt",
            format!(
                "instance {} is not in one of the group's subnets{}",
                f.instance_id,
                volume_zone.as_deref().map(|z| format!(" in {z}, where its data volumes are")).unwrap_or_default()
            ),
        ));
    }

    if let Some(kubernetes) = &body.kubernetes {
        check_cluster(deps, kubernetes).await?;
    }

    let spec = StandaloneSpec {
        launch_template: template,
        instance_types: body.instance_types,
        subnets,
        capacity: body.capacity,
        dns: body.dns,
        elastic_ip_allocation_id: body.elastic_ip_allocation_id,
        data_volumes: body.data_volumes,
        volume_zone,
    };
    let kind = GroupKind::Standalone(Box::new(spec.clone()));
    let group = Group { kubernetes: body.kubernetes, ..Group::new(body.name, kind, deps.clock.now()) };
    deps.store.create_group(&group).await?;
    report.note(
        &group.name,
        None,
        HistoryKind::GroupRegistered,
        format!(
            "standalone group registered with {} pools, capacity {}{}",
            pools.len(),
            spec.capacity,
            nodes_of(group.kubernetes.as_ref())
        ),
    );

    let mut members: Vec<Member> = adopted.iter().cloned().map(|f| f.into_member(false)).collect();
    let mut warnings = Vec::new();
    let wanted = spec.capacity.saturating_sub(u32::try_from(members.len()).unwrap_or(u32::MAX));
    let mut launched_ids = Vec::new();
    let filled = async {
        if wanted > 0 {
            // Filling the group up to its capacity, as a reconcile does: new instances, no olds.
            let fill = LaunchPlan::new(&spec, pools.clone(), Vec::new(), Reason::Reconcile, client_token(&group))
                .with_extra(wanted)
                .with_on_demand(group.policy.on_demand_base.min(wanted))
                .with_fallback(group.policy.fallback);
            let launched = launch(ec2, &group.name, &fill).await?;
            launched_ids = launched.instances.iter().map(|i| i.instance_id.clone()).collect();
            if launched_ids.is_empty() {
                return Err(GroupError::NothingLaunched {
                    codes: launched.error_codes(),
                    summary: launched.error_summary(),
                });
            }
            if launched_ids.len() < wanted as usize {
                warnings.push(format!(
                    "launched {} of {wanted} instances: {}",
                    launched_ids.len(),
                    launched.error_codes()
                ));
                tracing::warn!(group = %group.name, errors = %launched.error_summary(), "a registration launched fewer instances than asked");
            }
            for facts in ec2.instances(&launched_ids).await? {
                let fell_back = launched.fell_back.contains(&facts.instance_id);
                let market = if fell_back { "On-Demand: no Spot pool had capacity" } else { "Spot" };
                report.note(&group.name,
                    Some(&facts.instance_id),
                    HistoryKind::InstanceLaunched,
                    format!("launched {} in {} on {market}", facts.instance_type, facts.availability_zone),
                );
                members.push(facts.into_member(fell_back));
            }
        }
        // The group's address and volumes carry its tag too: the IAM policy lets spotkeeper
        // move only what is tagged as a group's.
        let tagged: Vec<String> = adopted
            .iter()
            .map(|f| f.instance_id.clone())
            .chain(spec.data_volumes.iter().map(|v| v.volume_id.to_string()))
            .chain(spec.elastic_ip_allocation_id.clone().map(String::from))
            .collect();
        ec2.tag(&tagged, GROUP_TAG, group.name.as_str()).await?;
        deps.store.add_members(&group, &members).await?;
        Ok::<_, GroupError>(())
    }
    .await;
    if let Err(err) = filled {
        undo(deps, &group, &launched_ids).await;
        return Err(err);
    }
    let mut group = group;
    if members.iter().any(|m| m.fallen_back) {
        let now = deps.clock.now();
        if let Some(noted) = deps
            .store
            .update_group(&group.name, |g| recovery::note_fallback(g, "no Spot capacity in any pool", now, None))
            .await?
        {
            group = noted;
        }
        report.note(
            &group.name,
            None,
            HistoryKind::Fallback,
            "no Spot pool had capacity: launched On-Demand until recovery",
        );
    }
    for f in adopted.iter().filter(|f| f.state == Some(InstanceState::Running)) {
        let online = bring_online(&deps.clients, &spec, &f.instance_id, &members).await?;
        for (kind, line) in online.lines() {
            report.note(&group.name, Some(&f.instance_id), kind, line);
        }
        report.note(
            &group.name,
            Some(&f.instance_id),
            HistoryKind::InstanceAdopted,
            format!("adopted {} ({})", f.instance_id, f.market),
        );
    }
    Ok(Registered { group, members, warnings })
}

/// `, nodes of EKS cluster prod` for a group with a `kubernetes` block.
fn nodes_of(kubernetes: Option<&KubernetesSpec>) -> String {
    kubernetes.map(|k| format!(", nodes of EKS cluster {}", k.cluster)).unwrap_or_default()
}

/// Takes back a registration that failed half way: the group item and any instance it launched.
async fn undo(deps: &Deps, group: &Group, launched: &[String]) {
    if let Err(err) = deps.store.delete_group(&group.name, &[]).await {
        tracing::error!(group = %group.name, error = %err, "could not remove the half-registered group; DELETE it by hand");
    }
    if let Err(err) = deps.clients.ec2.terminate(launched).await {
        tracing::error!(group = %group.name, instances = ?launched, error = %err, "could not terminate instances of a failed registration; terminate them by hand");
    }
}

/// Registers an Auto Scaling group: its live instances become the members, and Capacity
/// Rebalancing is turned on when the group's rebalance policy wants it.
pub async fn register_asg(deps: &Deps, body: NewAsg, report: &mut Report) -> Result<Registered, GroupError> {
    let Some(asg) = deps.clients.autoscaling.group(&body.asg_name).await? else {
        return Err(GroupError::unknown("asg_name", format!("Auto Scaling group {} does not exist", body.asg_name)));
    };
    let members: Vec<Member> = deps
        .clients
        .ec2
        .instances(&asg.instance_ids)
        .await?
        .into_iter()
        .filter(InstanceFacts::is_live)
        .map(|f| f.into_member(false))
        .collect();
    if let Some(kubernetes) = &body.kubernetes {
        check_cluster(deps, kubernetes).await?;
    }
    let kind = GroupKind::Asg(AsgSpec { asg_name: asg.name.clone() });
    let group = Group { kubernetes: body.kubernetes, ..Group::new(body.name, kind, deps.clock.now()) };
    deps.store.create_group(&group).await?;
    if let Err(err) = deps.store.add_members(&group, &members).await {
        undo(deps, &group, &[]).await;
        return Err(err.into());
    }
    // The Auto Scaling group replaces at-risk instances itself when Capacity Rebalancing is on.
    if group.policy.rebalance != RebalancePolicy::Off && !asg.capacity_rebalance {
        if let Err(err) = deps.clients.autoscaling.set_capacity_rebalance(&asg, true).await {
            undo(deps, &group, &[]).await;
            return Err(err.into());
        }
        report.note(
            &group.name,
            None,
            HistoryKind::CapacityRebalance,
            format!("Capacity Rebalancing turned on for {}", asg.name),
        );
    }
    report.note(
        &group.name,
        None,
        HistoryKind::GroupRegistered,
        format!(
            "asg group registered for {} with {} instances{}",
            asg.name,
            members.len(),
            nodes_of(group.kubernetes.as_ref())
        ),
    );
    Ok(Registered { group, members, warnings: Vec::new() })
}

/// Changes a group's policy and, when `kubernetes` is given, its `kubernetes` block (`Some(None)`
/// removes it; a new block's cluster is checked before anything is done). The change is
/// conditional on the version read: a concurrent change makes this one a conflict, never a
/// silent overwrite.
pub async fn change_policy(
    deps: &Deps,
    mut group: Group,
    members: &[Member],
    policy: Policy,
    kubernetes: Option<Option<KubernetesSpec>>,
    report: &mut Report,
) -> Result<Group, GroupError> {
    if let Some(Some(spec)) = &kubernetes {
        check_cluster(deps, spec).await?;
    }
    let kubernetes_before = group.kubernetes.clone();
    if let Some(kubernetes) = kubernetes {
        group.kubernetes = kubernetes;
    }
    let before = std::mem::replace(&mut group.policy, policy);
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
            GroupError::unknown("rebalance", format!("Auto Scaling group {} no longer exists", spec.asg_name))
        })?;
        deps.clients.autoscaling.set_capacity_rebalance(&asg, group.policy.rebalance != RebalancePolicy::Off).await?;
    }
    let ids: Vec<String> = members.iter().map(|m| m.instance_id.clone()).collect();
    let saved = deps.store.save_group(&group, &ids).await?;
    // What changed, never the policy itself: it holds the webhooks' secrets.
    let line = changes::group_line(&before, &saved.policy, kubernetes_before.as_ref(), saved.kubernetes.as_ref());
    report.note(&saved.name, None, HistoryKind::PolicyChanged, line);
    Ok(saved)
}

/// An image rolled back by hand: the group as saved, the image marked bad, and the replacements
/// of the members launched from it (each serves until its replacement does).
#[derive(Debug)]
pub struct RolledBack {
    pub group: Group,
    pub bad: String,
    pub replacements: Vec<String>,
}

/// Rolls the group's image back: the previous launch template version again, the image marked
/// bad, and the members launched from it replaced.
pub async fn roll_back(
    deps: &Deps,
    group: &Group,
    members: &[Member],
    report: &mut Report,
) -> Result<RolledBack, GroupError> {
    let bad = images::rollback_target(&group.status.images).map(|(image, _)| image).map_err(GroupError::Conflict)?;
    let saved = images::rollback(deps, group, "rolled back by hand (POST /groups/{name}/rollback)", report)
        .await
        .map_err(|e| match e {
            images::RollbackError::NoPrevious(message) => GroupError::Conflict(message),
            images::RollbackError::Failed(err) => err.into(),
        })?;
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
    Ok(RolledBack { group: saved, bad, replacements })
}

/// Stops managing a group. Its instances keep running; spotkeeper's tag comes off them. The ids
/// of the instances let go.
pub async fn remove(
    deps: &Deps,
    group: &Group,
    members: &[Member],
    report: &mut Report,
) -> Result<Vec<String>, GroupError> {
    let ids: Vec<String> = members.iter().map(|m| m.instance_id.clone()).collect();
    if let GroupKind::Standalone(_) = group.kind {
        let existing: Vec<String> =
            deps.clients.ec2.instances(&ids).await?.into_iter().map(|f| f.instance_id).collect();
        deps.clients.ec2.untag(&existing, GROUP_TAG).await?;
    }
    deps.store.delete_group(&group.name, members).await?;
    report.note(
        &group.name,
        None,
        HistoryKind::GroupRemoved,
        format!("group removed; its {} instances keep running, unmanaged", ids.len()),
    );
    Ok(ids)
}

/// Adopts a running instance into a group: checked, recorded, tagged, and (standalone, running)
/// given the group's address, DNS record and volumes.
pub async fn adopt(
    deps: &Deps,
    group: &Group,
    members: &[Member],
    instance_id: &str,
    report: &mut Report,
) -> Result<Member, GroupError> {
    let field = "instance_id";
    let facts = adoptable(deps, &group.name, field, &[instance_id.to_string()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| GroupError::unknown(field, format!("instance {instance_id} does not exist")))?;
    adoption::fits(group, members.len(), &facts).map_err(|refusal| GroupError::refused(field, refusal))?;
    let member = facts.clone().into_member(false);
    deps.store.add_members(group, std::slice::from_ref(&member)).await?;
    report.note(
        &group.name,
        Some(&member.instance_id),
        HistoryKind::InstanceAdopted,
        format!("adopted {} ({})", member.instance_id, member.market),
    );
    if let GroupKind::Standalone(spec) = &group.kind {
        deps.clients.ec2.tag(std::slice::from_ref(&member.instance_id), GROUP_TAG, group.name.as_str()).await?;
        if facts.state == Some(InstanceState::Running) {
            let all: Vec<Member> = members.iter().cloned().chain([member.clone()]).collect();
            let online = bring_online(&deps.clients, spec, &member.instance_id, &all).await?;
            for (kind, line) in online.lines() {
                report.note(&group.name, Some(&member.instance_id), kind, line);
            }
        }
    }
    Ok(member)
}
