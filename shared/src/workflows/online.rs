//! Bringing a standalone group's instance online: its DNS record, its Elastic IP, its data volumes.
//! Used when a member reaches `running` and when a running instance is adopted.

use crate::domain::InstanceState;
use crate::domain::{AlertKind, HistoryKind};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::adapters::aws::Clients;
use crate::adapters::notify::{Alert, Severity};
use crate::decisions::plan::{self, VolumeHold};
use crate::domain::{
    DeviceName, Group, GroupKind, GroupName, InstanceFacts, Member, StandaloneSpec, VolumeId, VolumeMove,
};
use crate::runtime::{Deps, Error};
use crate::workflows::report::Report;

/// What bringing an instance online did, and what it left for later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Online {
    /// The addresses the DNS record now holds.
    pub dns: Option<Vec<String>>,
    /// The Elastic IP allocation now associated with the instance.
    pub address: Option<String>,
    /// (volume id, device) attached now.
    pub attached: Vec<(VolumeId, DeviceName)>,
    /// Volumes that wait, and why.
    pub held: Vec<(VolumeId, VolumeHold)>,
}

impl Online {
    /// One line per thing done or left, for the history.
    pub fn lines(&self) -> Vec<(HistoryKind, String)> {
        let mut lines = Vec::new();
        if let Some(address) = &self.address {
            lines.push((HistoryKind::AddressAssociated, format!("Elastic IP {address} associated")));
        }
        if let Some(dns) = &self.dns {
            lines.push((HistoryKind::DnsUpdated, format!("DNS record now points to {}", dns.join(", "))));
        }
        for (volume, device) in &self.attached {
            lines.push((HistoryKind::VolumeAttached, format!("data volume {volume} attached as {device}")));
        }
        for (volume, hold) in &self.held {
            let why = match hold {
                VolumeHold::AttachedElsewhere { instance_id } => {
                    format!("still attached to {instance_id}; it follows when that instance stops")
                }
                VolumeHold::OtherZone { zone } => format!("lies in {zone}, another AZ: it cannot attach here"),
                VolumeHold::Missing => "does not exist any more".to_string(),
            };
            lines.push((HistoryKind::VolumeHeld, format!("data volume {volume} {why}")));
        }
        lines
    }
}

/// Points the group's record, address and free volumes at `instance_id`, which must be running.
/// The record carries the serving members only: an interrupted one is on its way out.
pub async fn bring_online(
    clients: &Clients,
    spec: &StandaloneSpec,
    instance_id: &str,
    members: &[Member],
) -> Result<Online, Error> {
    let mut online = Online::default();
    let ids: Vec<String> = members.iter().filter(|m| m.is_serving()).map(|m| m.instance_id.clone()).collect();
    let mut fleet = clients.ec2.instances(&ids).await?;
    let Some(instance) = fleet.iter().find(|i| i.instance_id == instance_id).cloned() else {
        return Ok(online);
    };
    if instance.state != Some(InstanceState::Running) {
        return Ok(online);
    }
    let address = async {
        match &spec.elastic_ip_allocation_id {
            Some(allocation) => {
                clients.ec2.associate_address(allocation, instance_id).await?;
                Ok::<_, Error>(Some(allocation.to_string()))
            }
            None => Ok(None),
        }
    };
    let volumes = attach_volumes(clients, spec, &instance);
    let (address, (attached, held)) = futures::try_join!(address, volumes)?;
    online.address = address;
    online.attached = attached;
    online.held = held;
    if let Some(dns) = &spec.dns {
        // A new Elastic IP changes the public address: read it again before DNS carries it.
        if online.address.is_some() && dns.address == crate::domain::AddressKind::Public {
            fleet = clients.ec2.instances(&ids).await?;
        }
        let addresses = plan::dns_addresses(dns.address, &fleet);
        if !addresses.is_empty() {
            clients.route53.upsert_a(&dns.hosted_zone_id, &dns.record_name, dns.ttl, &addresses).await?;
            online.dns = Some(addresses);
        }
    }
    Ok(online)
}

type VolumePlan = (Vec<(VolumeId, DeviceName)>, Vec<(VolumeId, VolumeHold)>);

async fn attach_volumes(
    clients: &Clients,
    spec: &StandaloneSpec,
    instance: &InstanceFacts,
) -> Result<VolumePlan, Error> {
    if spec.data_volumes.is_empty() {
        return Ok(Default::default());
    }
    let ids: Vec<String> = spec.data_volumes.iter().map(|v| v.volume_id.to_string()).collect();
    let facts = clients.ec2.volumes(&ids).await?;
    let (attach, hold) = plan::volumes_to_attach(&spec.data_volumes, &facts, instance);
    let attached = futures::future::try_join_all(attach.into_iter().map(|v| async move {
        clients.ec2.attach_volume(&v.volume_id, &instance.instance_id, &v.device).await?;
        Ok::<_, Error>((v.volume_id.clone(), v.device.clone()))
    }))
    .await?;
    Ok((attached, hold.into_iter().map(|(v, h)| (v.volume_id.clone(), h)).collect()))
}

/// What a move of data volumes did, and what it left to the next event or scheduled run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moved {
    /// (volume id, device) attached to the replacement now.
    pub moved: Vec<(VolumeId, DeviceName)>,
    /// (volume id, device) whose detach was requested and has not finished.
    pub pending: Vec<(VolumeId, DeviceName)>,
}

/// Moves the group's data volumes from an instance that has stopped (or is gone) to the one that
/// replaces it, at the same device names, waiting at most `wait` for a detach to finish. A volume
/// in `detaching` has its detach requested already (by an earlier invocation): it is only waited
/// for. One already on the replacement stays; one held by some third instance is left alone.
pub async fn move_volumes(
    clients: &Clients,
    spec: &StandaloneSpec,
    from: &str,
    to: &str,
    detaching: &[VolumeId],
    wait: Duration,
) -> Result<Moved, Error> {
    let ids: Vec<String> = spec.data_volumes.iter().map(|v| v.volume_id.to_string()).collect();
    let facts = clients.ec2.volumes(&ids).await?;
    let moves = spec.data_volumes.iter().filter_map(|volume| {
        let holders: Vec<&str> = facts
            .iter()
            .find(|f| f.volume_id == volume.volume_id)?
            .attachments
            .iter()
            .map(|(instance, _)| instance.as_str())
            .collect();
        let detach_first = match holders.as_slice() {
            [] => false,
            [holder] if *holder == from => !detaching.contains(&volume.volume_id),
            _ => {
                tracing::info!(volume = %volume.volume_id, ?holders, "volume not on the old instance; left where it is");
                return None;
            }
        };
        Some(async move {
            if detach_first {
                clients.ec2.detach_volume(&volume.volume_id, from, &volume.device).await?;
            }
            let pair = (volume.volume_id.clone(), volume.device.clone());
            if !clients.ec2.wait_available(&volume.volume_id, wait).await? {
                return Ok::<_, Error>((pair, false));
            }
            clients.ec2.attach_volume(&volume.volume_id, to, &volume.device).await?;
            Ok((pair, true))
        })
    });
    let mut done = Moved::default();
    for (pair, attached) in futures::future::try_join_all(moves).await? {
        if attached { done.moved.push(pair) } else { done.pending.push(pair) }
    }
    Ok(done)
}

/// The group's volume moves once a move from `from` has run: that instance's, replaced by what
/// is still pending of it.
pub fn note_moves(
    moves: &mut Vec<VolumeMove>,
    from: &str,
    to: &str,
    pending: &[(VolumeId, DeviceName)],
    terminate_from: bool,
    now: DateTime<Utc>,
) {
    let since = |volume: &VolumeId| moves.iter().find(|m| m.from == from && m.volume_id == *volume).map(|m| m.since);
    let still: Vec<VolumeMove> = pending
        .iter()
        .map(|(volume_id, device)| VolumeMove {
            volume_id: volume_id.clone(),
            device: device.clone(),
            from: from.to_string(),
            to: to.to_string(),
            since: since(volume_id).unwrap_or(now),
            terminate_from,
        })
        .collect();
    moves.retain(|m| m.from != from);
    moves.extend(still);
}

/// Records a move's outcome in the history, and the alert for the volumes moved (if any).
pub fn record_move(group: &GroupName, from: &str, to: &str, done: &Moved, report: &mut Report) {
    for (volume, device) in &done.moved {
        report.note(
            group,
            Some(to),
            HistoryKind::VolumeMoved,
            format!("data volume {volume} moved from {from} to {to} as {device}"),
        );
    }
    for (volume, device) in &done.pending {
        report.note(group,
            Some(from),
            HistoryKind::VolumeDetaching,
            format!("data volume {volume} is still detaching from {from}; the next event or scheduled run attaches it to {to} as {device}"),
        );
    }
    if done.moved.is_empty() {
        return;
    }
    report.alert(
        Alert::new(AlertKind::VolumeMoved, group, Severity::Info, format!("{group}: data volumes moved to {to}"))
            .fact("from", from)
            .fact("to", to)
            .fact("volumes", done.moved.iter().map(|(v, d)| format!("{v} as {d}")).collect::<Vec<_>>().join(", ")),
    );
}

/// The scheduled run's part: the moves an invocation could not finish in its time. It looks
/// once and does not wait: what is still detaching waits for the next run.
pub async fn continue_moves(deps: &Deps, group: &Group, report: &mut Report) -> Result<Moves, Error> {
    let GroupKind::Standalone(spec) = &group.kind else { return Ok(Moves::default()) };
    let mut pairs: Vec<(&str, &str, bool)> = Vec::new();
    for m in &group.status.volume_moves {
        if !pairs.iter().any(|(from, to, _)| *from == m.from && *to == m.to) {
            pairs.push((&m.from, &m.to, m.terminate_from));
        }
    }
    let (mut moved, mut pending) = (Vec::new(), 0);
    for (from, to, terminate_from) in pairs {
        let detaching: Vec<VolumeId> =
            group.status.volume_moves.iter().filter(|m| m.from == from).map(|m| m.volume_id.clone()).collect();
        let done = move_volumes(&deps.clients, spec, from, to, &detaching, Duration::ZERO).await?;
        let now = deps.clock.now();
        deps.store
            .update_group(&group.name, |g| {
                note_moves(&mut g.status.volume_moves, from, to, &done.pending, terminate_from, now);
            })
            .await?;
        record_move(&group.name, from, to, &done, report);
        if done.pending.is_empty() && terminate_from {
            deps.clients.ec2.terminate(&[from.to_string()]).await?;
            report.note(
                &group.name,
                Some(from),
                HistoryKind::Terminated,
                format!("{from} terminated: its data volumes serve {to}"),
            );
        }
        moved.extend(done.moved.into_iter().map(|(volume, _)| volume));
        pending += done.pending.len();
    }
    Ok(Moves { moved, pending })
}

/// What a scheduled run did with the moves under way: the volumes it moved, and how many wait.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Moves {
    pub moved: Vec<VolumeId>,
    pub pending: usize,
}
