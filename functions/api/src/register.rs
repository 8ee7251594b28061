//! Registering a group: check every reference against AWS before writing anything, then write
//! the group, launch or adopt its instances, and undo the writes if a later step fails.

use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use spotkeeper::Deps;
use spotkeeper::decisions::plan;
use spotkeeper::decisions::recovery;
use spotkeeper::domain::HistoryKind;
use spotkeeper::domain::{
    AsgSpec, DataVolume, DnsSpec, GROUP_TAG, Group, GroupKind, GroupName, InstanceFacts, LaunchPlan, LaunchTemplateRef,
    Member, Reason, RebalancePolicy, StandaloneSpec,
};
use spotkeeper::workflows::launch::launch;
use spotkeeper::workflows::online::bring_online;

use crate::body::{AsgBody, StandaloneBody};
use crate::reply::ApiError;
use spotkeeper::workflows::report::Report;

/// A registered group, what it holds, and what did not go to plan.
pub struct Registered {
    pub group: Group,
    pub members: Vec<Member>,
    pub warnings: Vec<String>,
}

fn missing(wanted: &[String], found: impl Fn(&str) -> bool) -> Vec<&str> {
    wanted.iter().map(String::as_str).filter(|id| !found(id)).collect()
}

/// An instance that may join `name`: it exists, runs (or is starting) and no group manages it.
pub async fn adoptable(
    deps: &Deps,
    name: &GroupName,
    field: &str,
    ids: &[String],
) -> Result<Vec<InstanceFacts>, ApiError> {
    let facts = deps.clients.ec2.instances(ids).await?;
    let gone = missing(ids, |id| facts.iter().any(|f| f.instance_id == id));
    if !gone.is_empty() {
        return Err(ApiError::unknown_reference(field, format!("instance {} does not exist", gone.join(", "))));
    }
    for f in &facts {
        if !f.is_live() {
            return Err(ApiError::unknown_reference(
                field,
                format!("instance {} is {}: only pending or running instances can be adopted", f.instance_id, f.state),
            ));
        }
        if let Some(owner) = deps.store.group_of(&f.instance_id).await? {
            return Err(ApiError::conflict(format!("instance {} is already managed by group {owner}", f.instance_id)));
        }
        if let Some(tagged) = f.tag(GROUP_TAG).filter(|t| *t != name.as_str()) {
            return Err(ApiError::conflict(format!(
                "instance {} carries {GROUP_TAG}={tagged}: remove it from that group first",
                f.instance_id
            )));
        }
    }
    Ok(facts)
}

fn client_token(group: &Group) -> String {
    let digest = Sha256::digest(format!("{}|{}", group.name, group.created_at.timestamp_micros()));
    hex::encode(&digest[..16])
}

pub async fn standalone(deps: &Deps, body: StandaloneBody, report: &mut Report) -> Result<Registered, ApiError> {
    body.check()?;
    let ec2 = &deps.clients.ec2;
    let template = LaunchTemplateRef {
        id: body.launch_template.id.clone(),
        name: body.launch_template.name.clone(),
        version: body.launch_template.version.clone(),
    };
    let volume_ids: Vec<String> = body.data_volumes.iter().map(|v| v.volume_id.clone()).collect();
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
        return Err(ApiError::unknown_reference("launch_template", format!("launch template {which} does not exist")));
    }
    let gone = missing(&body.subnets, |id| subnets.iter().any(|s| s.id == id));
    if !gone.is_empty() {
        return Err(ApiError::unknown_reference("subnets", format!("subnet {} does not exist", gone.join(", "))));
    }
    if !zone_exists {
        let zone = body.dns.as_ref().map(|d| d.hosted_zone_id.as_str()).unwrap_or_default();
        return Err(ApiError::unknown_reference("dns.hosted_zone_id", format!("hosted zone {zone} does not exist")));
    }
    let gone = missing(&volume_ids, |id| volumes.iter().any(|v| v.volume_id == id));
    if !gone.is_empty() {
        return Err(ApiError::unknown_reference("data_volumes", format!("volume {} does not exist", gone.join(", "))));
    }
    if !address_exists {
        return Err(ApiError::unknown_reference(
            "elastic_ip_allocation_id",
            format!(
                "Elastic IP allocation {} does not exist",
                body.elastic_ip_allocation_id.as_deref().unwrap_or_default()
            ),
        ));
    }
    let volume_zone =
        plan::volume_zone(&volumes).map_err(|e| ApiError::unknown_reference("data_volumes", e.to_string()))?;
    // Keep the operator's subnet order: it is the order pools are listed in.
    let subnets: Vec<_> = body.subnets.iter().filter_map(|id| subnets.iter().find(|s| &s.id == id).cloned()).collect();
    let pools = plan::pools(&body.instance_types, &subnets, volume_zone.as_deref())
        .map_err(|e| ApiError::unknown_reference("subnets", e.to_string()))?;
    let adopted =
        if body.adopt.is_empty() { Vec::new() } else { adoptable(deps, &body.name, "adopt", &body.adopt).await? };
    if let Some(f) = adopted.iter().find(|f| !pools.iter().any(|p| Some(&p.subnet_id) == f.subnet_id.as_ref())) {
        return Err(ApiError::unknown_reference(
            "adopt",
            format!(
                "instance {} is not in one of the group's subnets{}",
                f.instance_id,
                volume_zone.as_deref().map(|z| format!(" in {z}, where its data volumes are")).unwrap_or_default()
            ),
        ));
    }

    let spec = StandaloneSpec {
        launch_template: template,
        instance_types: body.instance_types,
        subnets,
        capacity: body.capacity,
        dns: body.dns.map(|d| DnsSpec {
            hosted_zone_id: d.hosted_zone_id,
            record_name: d.record_name,
            ttl: d.ttl,
            address: d.address,
        }),
        elastic_ip_allocation_id: body.elastic_ip_allocation_id,
        data_volumes: body
            .data_volumes
            .into_iter()
            .map(|v| DataVolume { volume_id: v.volume_id, device: v.device })
            .collect(),
        volume_zone,
    };
    let group = Group::new(body.name, GroupKind::Standalone(Box::new(spec.clone())), deps.clock.now());
    deps.store.create_group(&group).await?;
    report.note(
        &group.name,
        None,
        HistoryKind::GroupRegistered,
        format!("standalone group registered with {} pools, capacity {}", pools.len(), spec.capacity),
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
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "launch_failed",
                    format!("EC2 launched no instance: {}", launched.error_codes()),
                )
                .caused_by(launched.error_summary()));
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
            .chain(spec.data_volumes.iter().map(|v| v.volume_id.clone()))
            .chain(spec.elastic_ip_allocation_id.clone())
            .collect();
        ec2.tag(&tagged, GROUP_TAG, group.name.as_str()).await?;
        deps.store.add_members(&group, &members).await?;
        Ok::<_, ApiError>(())
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
    for f in adopted.iter().filter(|f| f.state == "running") {
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

/// Takes back a registration that failed half way: the group item and any instance it launched.
async fn undo(deps: &Deps, group: &Group, launched: &[String]) {
    if let Err(err) = deps.store.delete_group(&group.name, &[]).await {
        tracing::error!(group = %group.name, error = %err, "could not remove the half-registered group; DELETE it by hand");
    }
    if let Err(err) = deps.clients.ec2.terminate(launched).await {
        tracing::error!(group = %group.name, instances = ?launched, error = %err, "could not terminate instances of a failed registration; terminate them by hand");
    }
}

pub async fn asg(deps: &Deps, body: AsgBody, report: &mut Report) -> Result<Registered, ApiError> {
    body.check()?;
    let Some(asg) = deps.clients.autoscaling.group(&body.asg_name).await? else {
        return Err(ApiError::unknown_reference(
            "asg_name",
            format!("Auto Scaling group {} does not exist", body.asg_name),
        ));
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
    let group = Group::new(body.name, GroupKind::Asg(AsgSpec { asg_name: asg.name.clone() }), deps.clock.now());
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
        format!("asg group registered for {} with {} instances", asg.name, members.len()),
    );
    Ok(Registered { group, members, warnings: Vec::new() })
}
