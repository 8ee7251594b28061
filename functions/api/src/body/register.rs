//! `POST /groups` and adoption: the registration bodies and their shape and range checks.

use serde::Deserialize;
use spotkeeper::domain::{
    AddressKind, AllocationId, DataVolume, DeviceName, DnsSpec, GroupName, InstanceType, KubernetesSpec,
    LaunchTemplateRef, NewAsg, NewStandalone, SubnetId, VolumeId,
};

use super::checks::{check_instance_id, id_like, unique};
use super::strict::{also_expected, from_value};
use crate::reply::ApiError;

/// A registration body: its `kind` picks the strict body for the rest.
pub(crate) enum Registration {
    Asg(Box<AsgBody>),
    Standalone(Box<StandaloneBody>),
}

impl Registration {
    pub(crate) fn from_json(mut value: serde_json::Value) -> Result<Self, ApiError> {
        let kind = value
            .as_object_mut()
            .ok_or_else(|| ApiError::invalid("", "the body must be a JSON object"))?
            .remove("kind")
            .ok_or_else(|| ApiError::invalid("kind", "missing field `kind`: asg or standalone"))?;
        match from_value::<Kind>(kind).map_err(|e| ApiError { field: Some("kind".into()), ..e })? {
            Kind::Asg => Ok(Self::Asg(from_value(value).map_err(with_kind)?)),
            Kind::Standalone => Ok(Self::Standalone(Box::new(from_value(value).map_err(with_kind)?))),
        }
    }
}

/// `kind` is read before the rest of the body, so serde's list of expected fields leaves it out:
/// an unknown field's refusal lists every field the body takes, `kind` first.
fn with_kind(err: ApiError) -> ApiError {
    also_expected(err, "kind", true)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Kind {
    Asg,
    Standalone,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AsgBody {
    pub name: GroupName,
    pub asg_name: String,
    /// The EKS cluster the group's instances are nodes of (read strictly: bad values are 400s
    /// naming the field).
    pub kubernetes: Option<KubernetesSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateBody {
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(default = "default_version")]
    pub version: String,
}

fn default_version() -> String {
    "$Default".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DnsBody {
    pub hosted_zone_id: String,
    pub record_name: String,
    #[serde(default = "default_ttl")]
    pub ttl: i64,
    #[serde(default)]
    pub address: AddressKind,
}

fn default_ttl() -> i64 {
    60
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VolumeBody {
    pub volume_id: String,
    pub device: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StandaloneBody {
    pub name: GroupName,
    pub launch_template: TemplateBody,
    pub instance_types: Vec<String>,
    pub subnets: Vec<String>,
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    pub dns: Option<DnsBody>,
    pub elastic_ip_allocation_id: Option<String>,
    #[serde(default)]
    pub data_volumes: Vec<VolumeBody>,
    #[serde(default)]
    pub adopt: Vec<String>,
    pub kubernetes: Option<KubernetesSpec>,
}

fn default_capacity() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdoptBody {
    pub instance_id: String,
}

/// Limits that keep one group within one instant fleet request.
pub(super) const MAX_CAPACITY: u32 = 100;
pub(super) const MAX_POOLS: usize = 100;

impl AsgBody {
    /// The group to follow, its name checked.
    pub(crate) fn parse(self) -> Result<NewAsg, ApiError> {
        self.check()?;
        Ok(NewAsg { name: self.name, asg_name: self.asg_name, kubernetes: self.kubernetes })
    }

    fn check(&self) -> Result<(), ApiError> {
        let ok = (1..=255).contains(&self.asg_name.len()) && !self.asg_name.chars().any(char::is_control);
        if ok {
            Ok(())
        } else {
            Err(ApiError::invalid("asg_name", "must be an Auto Scaling group name of 1-255 characters"))
        }
    }
}

impl StandaloneBody {
    /// The group to register, its ranges and shapes checked; its references are checked against
    /// AWS when it is registered.
    pub(crate) fn parse(self) -> Result<NewStandalone, ApiError> {
        self.check()?;
        // Checked above in the order errors are told; parsed here into what the group keeps.
        let subnets = (self.subnets.into_iter().map(SubnetId::try_from).collect::<Result<Vec<_>, _>>())
            .map_err(|m| ApiError::invalid("subnets", m))?;
        let data_volumes = (self.data_volumes.into_iter())
            .map(|v| {
                let volume_id =
                    VolumeId::try_from(v.volume_id).map_err(|m| ApiError::invalid("data_volumes.volume_id", m))?;
                let device = DeviceName::try_from(v.device).map_err(|m| ApiError::invalid("data_volumes.device", m))?;
                Ok(DataVolume { volume_id, device })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let elastic_ip_allocation_id = (self.elastic_ip_allocation_id.map(AllocationId::try_from).transpose())
            .map_err(|m| ApiError::invalid("elastic_ip_allocation_id", m))?;
        let TemplateBody { id, name, version } = self.launch_template;
        Ok(NewStandalone {
            name: self.name,
            launch_template: LaunchTemplateRef { id, name, version },
            instance_types: self.instance_types,
            subnets,
            capacity: self.capacity,
            dns: self.dns.map(|d| DnsSpec {
                hosted_zone_id: d.hosted_zone_id,
                record_name: d.record_name,
                ttl: d.ttl,
                address: d.address,
            }),
            elastic_ip_allocation_id,
            data_volumes,
            adopt: self.adopt,
            kubernetes: self.kubernetes,
        })
    }

    /// Range and shape checks.
    fn check(&self) -> Result<(), ApiError> {
        let t = &self.launch_template;
        match (&t.id, &t.name) {
            (Some(id), None) if id_like(id, "lt-") => {}
            (Some(id), None) => {
                return Err(ApiError::invalid(
                    "launch_template.id",
                    format!("{id:?} is not a launch template id (lt-...)"),
                ));
            }
            (None, Some(name)) if (3..=128).contains(&name.len()) => {}
            (None, Some(_)) => return Err(ApiError::invalid("launch_template.name", "must be 3-128 characters")),
            _ => return Err(ApiError::invalid("launch_template", "give exactly one of id and name")),
        }
        if !(matches!(t.version.as_str(), "$Latest" | "$Default") || t.version.parse::<u64>().is_ok_and(|v| v > 0)) {
            return Err(ApiError::invalid("launch_template.version", "must be $Latest, $Default or a version number"));
        }
        if self.instance_types.is_empty() {
            return Err(ApiError::invalid("instance_types", "give at least one instance type"));
        }
        for t in &self.instance_types {
            if InstanceType::try_from(t.as_str()).is_err() {
                return Err(ApiError::invalid(
                    "instance_types",
                    format!("{t:?} is not an instance type (like m5.large)"),
                ));
            }
        }
        unique("instance_types", self.instance_types.iter().map(String::as_str))?;
        if self.subnets.is_empty() {
            return Err(ApiError::invalid("subnets", "give at least one subnet"));
        }
        if let Some(s) = self.subnets.iter().find(|s| SubnetId::try_from(s.as_str()).is_err()) {
            return Err(ApiError::invalid("subnets", format!("{s:?} is not a subnet id (subnet-...)")));
        }
        unique("subnets", self.subnets.iter().map(String::as_str))?;
        if self.instance_types.len() * self.subnets.len() > MAX_POOLS {
            return Err(ApiError::invalid(
                "instance_types",
                format!("instance types × subnets must be at most {MAX_POOLS} pools"),
            ));
        }
        if !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(ApiError::invalid("capacity", format!("must be 1-{MAX_CAPACITY}")));
        }
        let pinned = self.elastic_ip_allocation_id.is_some() || !self.data_volumes.is_empty();
        if pinned && self.capacity != 1 {
            return Err(ApiError::invalid(
                "capacity",
                "a group with an Elastic IP or data volumes has capacity 1: both belong to one instance",
            ));
        }
        if let Some(dns) = &self.dns {
            if dns.hosted_zone_id.trim().is_empty() {
                return Err(ApiError::invalid("dns.hosted_zone_id", "must not be empty"));
            }
            let name_ok = (1..=253).contains(&dns.record_name.len())
                && dns.record_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._*".contains(&b));
            if !name_ok {
                return Err(ApiError::invalid("dns.record_name", format!("{:?} is not a DNS name", dns.record_name)));
            }
            if !(0..=172_800).contains(&dns.ttl) {
                return Err(ApiError::invalid("dns.ttl", "must be 0-172800 seconds"));
            }
        }
        if let Some(eip) = &self.elastic_ip_allocation_id
            && AllocationId::try_from(eip.as_str()).is_err()
        {
            return Err(ApiError::invalid(
                "elastic_ip_allocation_id",
                format!("{eip:?} is not an allocation id (eipalloc-...)"),
            ));
        }
        for v in &self.data_volumes {
            if VolumeId::try_from(v.volume_id.as_str()).is_err() {
                return Err(ApiError::invalid(
                    "data_volumes.volume_id",
                    format!("{:?} is not a volume id (vol-...)", v.volume_id),
                ));
            }
            if DeviceName::try_from(v.device.as_str()).is_err() {
                return Err(ApiError::invalid(
                    "data_volumes.device",
                    format!("{:?} is not a device name (like /dev/sdf)", v.device),
                ));
            }
        }
        unique("data_volumes.volume_id", self.data_volumes.iter().map(|v| v.volume_id.as_str()))?;
        unique("data_volumes.device", self.data_volumes.iter().map(|v| v.device.as_str()))?;
        for id in &self.adopt {
            check_instance_id("adopt", id)?;
        }
        unique("adopt", self.adopt.iter().map(String::as_str))?;
        if self.adopt.len() > self.capacity as usize {
            return Err(ApiError::invalid("adopt", "adopts more instances than the group's capacity"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use super::*;
    use crate::body::parse;

    fn standalone(extra: serde_json::Value) -> Result<NewStandalone, ApiError> {
        let mut body = json!({
            "name": "web", "kind": "standalone", "launch_template": {"name": "web"},
            "instance_types": ["m5.large"], "subnets": ["subnet-1"]
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        match Registration::from_json(body)? {
            Registration::Standalone(body) => body.parse(),
            Registration::Asg(_) => panic!("parsed as asg"),
        }
    }

    #[test]
    fn an_unknown_field_is_named() {
        let err = standalone(json!({"colour": "red"})).unwrap_err();
        assert_eq!((err.status, err.field.as_deref()), (StatusCode::BAD_REQUEST, Some("colour")));
        let err = standalone(json!({"dns": {"hosted_zone_id": "Z1", "record_name": "a.b", "tll": 5}})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("dns.tll"));
        assert!(err.message.contains("tll"), "{}", err.message);
    }

    #[test]
    fn an_unknown_field_lists_every_field_the_body_takes_kind_included() {
        let asg = json!({"name": "w", "kind": "asg", "asg_name": "workers", "colour": "red"});
        let err = Registration::from_json(asg).err().map(|e| e.message);
        assert_eq!(
            err.as_deref(),
            Some("unknown field `colour`, expected one of `kind`, `name`, `asg_name`, `kubernetes`")
        );
        let err = standalone(json!({"colour": "red"})).unwrap_err().message;
        assert!(err.starts_with("unknown field `colour`, expected one of `kind`, `name`, `launch_template`"), "{err}");
        assert!(err.ends_with("`adopt`, `kubernetes`"), "{err}");
    }

    #[test]
    fn ranges_are_checked() {
        assert!(standalone(json!({})).is_ok());
        let cases = [
            (json!({"capacity": 0}), "capacity"),
            (json!({"instance_types": []}), "instance_types"),
            (json!({"subnets": ["sub-1"]}), "subnets"),
            (json!({"launch_template": {"id": "lt-1", "name": "web"}}), "launch_template"),
            (json!({"launch_template": {"name": "web", "version": "latest"}}), "launch_template.version"),
            (json!({"capacity": 2, "elastic_ip_allocation_id": "eipalloc-1"}), "capacity"),
            (json!({"dns": {"hosted_zone_id": "Z1", "record_name": "a b"}}), "dns.record_name"),
            (json!({"data_volumes": [{"volume_id": "vol-1", "device": "sdf"}]}), "data_volumes.device"),
            (json!({"adopt": ["i-0123abcd", "i-0123abcd"]}), "adopt"),
            (json!({"adopt": ["i-1"]}), "adopt"),
            (json!({"name": "Web"}), "name"),
        ];
        for (extra, field) in cases {
            let err = standalone(extra.clone()).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{extra}: {}", err.message);
        }
    }

    #[test]
    fn a_kubernetes_block_is_read_strictly_for_both_kinds() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\nAAEC\n-----END CERTIFICATE-----\n";
        let block = json!({"cluster": "prod", "endpoint": "https://k.example", "ca": pem, "rebalance": "drain"});
        let parsed = standalone(json!({"kubernetes": block})).unwrap().kubernetes.unwrap();
        assert_eq!((parsed.cluster.as_str(), parsed.rebalance), ("prod", spotkeeper::domain::RebalanceAction::Drain));
        assert!(parsed.ca.is_some());
        assert_eq!(standalone(json!({})).unwrap().kubernetes, None);
        let asg = json!({"name": "w", "kind": "asg", "asg_name": "workers", "kubernetes": {"cluster": "prod"}});
        let Ok(Registration::Asg(body)) = Registration::from_json(asg) else { panic!("an asg body") };
        assert_eq!(body.parse().unwrap().kubernetes.map(|k| k.cluster.to_string()).as_deref(), Some("prod"));
        let cases = [
            (json!({"cluster": "prod", "rebalance": "evict"}), "kubernetes.rebalance", "evict"),
            (json!({"cluster": "prod", "pdb_policy": "ignore"}), "kubernetes.pdb_policy", "ignore"),
            (json!({"cluster": "prod", "pod_grace": 30}), "kubernetes.pod_grace", "30"),
            (json!({"cluster": "prod", "colour": "red"}), "kubernetes.colour", "colour"),
            (json!({"cluster": "-prod"}), "kubernetes.cluster", "cluster"),
            (json!({"cluster": "prod", "endpoint": "http://k.example", "ca": pem}), "kubernetes.endpoint", "https"),
            (json!({"cluster": "prod", "endpoint": "https://k.example", "ca": "MIIB"}), "kubernetes.ca", "PEM"),
            (json!({"cluster": "prod", "endpoint": "https://k.example"}), "kubernetes", "together"),
            (json!({"rebalance": "off"}), "kubernetes", "cluster"),
        ];
        for (block, field, says) in cases {
            let err = standalone(json!({"kubernetes": block.clone()})).unwrap_err();
            assert_eq!((err.status, err.field.as_deref()), (StatusCode::BAD_REQUEST, Some(field)), "{block}");
            assert!(err.message.contains(says), "{block}: {}", err.message);
        }
    }

    #[test]
    fn the_kind_picks_the_body() {
        let asg = Registration::from_json(json!({"name": "w", "kind": "asg", "asg_name": "workers"}));
        assert!(matches!(asg, Ok(Registration::Asg(b)) if b.asg_name == "workers"));
        for (body, field) in [
            (r#"{"name": "w", "asg_name": "workers"}"#, "kind"),
            (r#"{"name": "w", "kind": "pet", "asg_name": "workers"}"#, "kind"),
            (r#"{"name": "w", "kind": "asg", "asg_name": "workers", "subnets": []}"#, "subnets"),
            (r"[1]", ""),
        ] {
            let value = parse(body.as_bytes()).unwrap();
            let err = Registration::from_json(value).err().map(|e| e.field);
            assert_eq!(err, Some(Some(field.to_string())), "{body}");
        }
    }
}

/// Bad registration bodies, generated: checking never panics, and every refusal names what is wrong.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::body::fuzzing::{self, explained, json};

    proptest! {
        #![proptest_config(fuzzing::config())]

        #[test]
        fn registrations_never_panic(value in json()) {
            match Registration::from_json(value) {
                Ok(Registration::Standalone(body)) => {
                    if let Err(err) = body.check() {
                        prop_assert!(explained(&err));
                    }
                }
                Ok(Registration::Asg(body)) => {
                    if let Err(err) = body.check() {
                        prop_assert!(explained(&err));
                    }
                }
                Err(err) => prop_assert!(explained(&err)),
            }
        }
    }
}
