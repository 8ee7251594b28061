//! Bringing a standalone group's instance online: its DNS record, its Elastic IP, its data volumes.
//! Used when a member reaches `running` and when a running instance is adopted.

use crate::Error;
use crate::aws::Clients;
use crate::fleet::{InstanceFacts, Member, StandaloneSpec};
use crate::plan::{self, VolumeHold};

/// What bringing an instance online did, and what it left for later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Online {
    /// The addresses the DNS record now holds.
    pub dns: Option<Vec<String>>,
    /// The Elastic IP allocation now associated with the instance.
    pub address: Option<String>,
    /// (volume id, device) attached now.
    pub attached: Vec<(String, String)>,
    /// Volumes that wait, and why.
    pub held: Vec<(String, VolumeHold)>,
}

impl Online {
    /// One line per thing done or left, for the history.
    pub fn lines(&self) -> Vec<(&'static str, String)> {
        let mut lines = Vec::new();
        if let Some(address) = &self.address {
            lines.push(("address-associated", format!("Elastic IP {address} associated")));
        }
        if let Some(dns) = &self.dns {
            lines.push(("dns-updated", format!("DNS record now points to {}", dns.join(", "))));
        }
        for (volume, device) in &self.attached {
            lines.push(("volume-attached", format!("data volume {volume} attached as {device}")));
        }
        for (volume, hold) in &self.held {
            let why = match hold {
                VolumeHold::AttachedElsewhere { instance_id } => {
                    format!("still attached to {instance_id}; it follows when that instance stops")
                }
                VolumeHold::OtherZone { zone } => format!("lies in {zone}, another AZ: it cannot attach here"),
                VolumeHold::Missing => "does not exist any more".to_string(),
            };
            lines.push(("volume-held", format!("data volume {volume} {why}")));
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
    if instance.state != "running" {
        return Ok(online);
    }
    let address = async {
        match &spec.elastic_ip_allocation_id {
            Some(allocation) => {
                clients.ec2.associate_address(allocation, instance_id).await?;
                Ok::<_, Error>(Some(allocation.clone()))
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
        if online.address.is_some() && dns.address == crate::fleet::AddressKind::Public {
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

type VolumePlan = (Vec<(String, String)>, Vec<(String, VolumeHold)>);

async fn attach_volumes(
    clients: &Clients,
    spec: &StandaloneSpec,
    instance: &InstanceFacts,
) -> Result<VolumePlan, Error> {
    if spec.data_volumes.is_empty() {
        return Ok(Default::default());
    }
    let ids: Vec<String> = spec.data_volumes.iter().map(|v| v.volume_id.clone()).collect();
    let facts = clients.ec2.volumes(&ids).await?;
    let (attach, hold) = plan::volumes_to_attach(&spec.data_volumes, &facts, instance);
    let attached = futures::future::try_join_all(attach.into_iter().map(|v| async move {
        clients.ec2.attach_volume(&v.volume_id, &instance.instance_id, &v.device).await?;
        Ok::<_, Error>((v.volume_id.clone(), v.device.clone()))
    }))
    .await?;
    Ok((attached, hold.into_iter().map(|(v, h)| (v.volume_id.clone(), h)).collect()))
}

/// Moves the group's data volumes from an instance that has stopped (or is gone) to the one that
/// replaces it, at the same device names. A volume already on the replacement stays; one held by
/// some third instance is left alone. Returns (volume, device) moved.
pub async fn move_volumes(
    clients: &Clients,
    spec: &StandaloneSpec,
    from: &str,
    to: &str,
) -> Result<Vec<(String, String)>, Error> {
    let ids: Vec<String> = spec.data_volumes.iter().map(|v| v.volume_id.clone()).collect();
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
            [holder] if *holder == from => true,
            _ => {
                tracing::info!(volume = %volume.volume_id, ?holders, "volume not on the old instance; left where it is");
                return None;
            }
        };
        Some(async move {
            if detach_first {
                clients.ec2.detach_volume(&volume.volume_id, from, &volume.device).await?;
            }
            if !clients.ec2.wait_available(&volume.volume_id, std::time::Duration::from_secs(60)).await? {
                return Err(crate::aws::AwsError {
                    operation: "DetachVolume",
                    code: None,
                    message: format!("volume {} did not become available within 60 s; attach it to {to} by hand", volume.volume_id),
                }
                .into());
            }
            clients.ec2.attach_volume(&volume.volume_id, to, &volume.device).await?;
            Ok::<_, Error>((volume.volume_id.clone(), volume.device.clone()))
        })
    });
    futures::future::try_join_all(moves).await
}
