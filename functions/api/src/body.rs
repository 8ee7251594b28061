//! Request bodies: strict (an unknown field is an error naming it) and checked for range before
//! anything is looked up or written.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use spotkeeper::fleet::{
    AddressKind, Group, GroupKind, GroupName, ImagePolicy, Policy, RebalancePolicy, VolumePolicy, Webhook, Window,
};
use spotkeeper::recovery;

use crate::reply::ApiError;

/// The largest body any route takes.
pub const MAX_BODY: usize = 64 * 1024;

/// The raw body, within the size limit, refused with the API's JSON errors (413 over it).
pub struct Raw(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Raw {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(Raw).map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body is larger than {MAX_BODY} bytes"),
                )
            } else {
                ApiError::invalid("", rejection.body_text())
            }
        })
    }
}

/// A JSON body parsed strictly: the error names the field that failed.
pub struct Strict<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Strict<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Raw(bytes) = Raw::from_request(req, state).await?;
        parse(&bytes).map(Strict)
    }
}

/// Query parameters parsed strictly: an unknown or malformed one is a 400 in the API's shape.
pub struct StrictQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for StrictQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(StrictQuery).map_err(|e| {
            let message = e.inner().to_string();
            let field = message
                .strip_prefix("unknown field `")
                .and_then(|m| m.split('`').next())
                .unwrap_or_default()
                .to_string();
            ApiError::invalid(field, format!("bad query: {message}"))
        })
    }
}

fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let message = e.inner().to_string();
    let path = e.path().to_string();
    // At the top level the path is "."; an unknown field there is named only in the message.
    let field = match message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
        _ if path != "." => path,
        Some(unknown) => unknown.to_string(),
        None => String::new(),
    };
    ApiError::invalid(field, message)
}

/// Parses JSON, naming the failing field in the error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(field_error)?;
    de.end().map_err(|e| ApiError::invalid("", format!("trailing characters after the JSON body: {e}")))?;
    Ok(value)
}

/// Reads an already parsed JSON value strictly, naming the failing field in the error.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(field_error)
}

/// A registration body: its `kind` picks the strict body for the rest.
pub enum Registration {
    Asg(AsgBody),
    Standalone(Box<StandaloneBody>),
}

impl Registration {
    pub fn from_json(mut value: serde_json::Value) -> Result<Self, ApiError> {
        let kind = value
            .as_object_mut()
            .ok_or_else(|| ApiError::invalid("", "the body must be a JSON object"))?
            .remove("kind")
            .ok_or_else(|| ApiError::invalid("kind", "missing field `kind`: asg or standalone"))?;
        match from_value::<Kind>(kind).map_err(|e| ApiError { field: Some("kind".into()), ..e })? {
            Kind::Asg => Ok(Self::Asg(from_value(value)?)),
            Kind::Standalone => Ok(Self::Standalone(Box::new(from_value(value)?))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Asg,
    Standalone,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsgBody {
    pub name: GroupName,
    pub asg_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
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
pub struct DnsBody {
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
pub struct VolumeBody {
    pub volume_id: String,
    pub device: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandaloneBody {
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
}

fn default_capacity() -> u32 {
    1
}

/// `PATCH /groups/{name}`: the policy fields to change; what is left out stays.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    pub rebalance: Option<RebalancePolicy>,
    pub on_demand_base: Option<u32>,
    pub fallback: Option<bool>,
    pub recovery: Option<RecoveryPatch>,
    /// Replaces the volume settings as a whole; fields left out take their defaults.
    pub volumes: Option<VolumePolicy>,
    /// Replaces the image settings as a whole; fields left out take their defaults.
    pub images: Option<ImagePolicy>,
    /// Replaces the group's outgoing webhooks.
    pub webhooks: Option<Vec<Webhook>>,
    /// Replaces the group's On-Demand prices (USD per hour by instance type) that the savings
    /// ledger uses over the Price List API's; `{}` clears them.
    pub on_demand_prices: Option<BTreeMap<String, f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryPatch {
    #[serde(default, with = "humantime_serde")]
    pub cooldown: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backoff_base: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub backoff_max: Option<Duration>,
    pub windows: Option<Vec<Window>>,
}

const SHORTEST: Duration = Duration::from_secs(60);
const LONGEST: Duration = Duration::from_secs(7 * 24 * 3600);

impl PolicyPatch {
    /// The group's policy with this patch applied, checked.
    pub fn apply(self, group: &Group) -> Result<Policy, ApiError> {
        let mut policy = group.policy.clone();
        if let Some(rebalance) = self.rebalance {
            if matches!(group.kind, GroupKind::Asg(_)) && rebalance == RebalancePolicy::Replace {
                return Err(ApiError::invalid(
                    "rebalance",
                    "an asg group leaves replacement to the Auto Scaling group's Capacity Rebalancing: choose off or notify",
                ));
            }
            policy.rebalance = rebalance;
        }
        if let Some(base) = self.on_demand_base {
            match &group.kind {
                GroupKind::Asg(_) => {
                    return Err(ApiError::invalid(
                        "on_demand_base",
                        "set OnDemandBaseCapacity on the Auto Scaling group itself",
                    ));
                }
                GroupKind::Standalone(spec) if base > spec.capacity => {
                    return Err(ApiError::invalid(
                        "on_demand_base",
                        format!("must be at most the group's capacity ({})", spec.capacity),
                    ));
                }
                GroupKind::Standalone(_) => policy.on_demand_base = base,
            }
        }
        if let Some(fallback) = self.fallback {
            policy.fallback = fallback;
        }
        if let Some(recovery) = self.recovery {
            let r = &mut policy.recovery;
            for (field, value, target) in [
                ("recovery.cooldown", recovery.cooldown, &mut r.cooldown),
                ("recovery.backoff_base", recovery.backoff_base, &mut r.backoff_base),
                ("recovery.backoff_max", recovery.backoff_max, &mut r.backoff_max),
            ] {
                if let Some(value) = value {
                    if !(SHORTEST..=LONGEST).contains(&value) {
                        return Err(ApiError::invalid(field, "must be between 1m and 7d"));
                    }
                    *target = value;
                }
            }
            if r.backoff_base > r.backoff_max {
                return Err(ApiError::invalid("recovery.backoff_base", "must not be longer than recovery.backoff_max"));
            }
            if let Some(windows) = recovery.windows {
                for window in &windows {
                    recovery::check_window(window).map_err(|m| ApiError::invalid("recovery.windows", m))?;
                }
                r.windows = windows;
            }
        }
        if let Some(images) = self.images {
            if matches!(group.kind, GroupKind::Asg(_)) && images.enabled {
                return Err(ApiError::invalid(
                    "images.enabled",
                    "an asg group's images come from its launch template: spotkeeper refreshes standalone groups only",
                ));
            }
            if images.schedule < Duration::from_secs(3600) {
                return Err(ApiError::invalid("images.schedule", "must be at least 1h"));
            }
            if !(1..=20).contains(&images.keep) {
                return Err(ApiError::invalid("images.keep", "must be 1-20"));
            }
            if !(SHORTEST..=Duration::from_secs(24 * 3600)).contains(&images.probation) {
                return Err(ApiError::invalid("images.probation", "must be between 1m and 24h"));
            }
            policy.images = images;
        }
        if let Some(webhooks) = self.webhooks {
            if webhooks.len() > 10 {
                return Err(ApiError::invalid("webhooks", "at most 10 webhooks a group"));
            }
            for (i, webhook) in webhooks.iter().enumerate() {
                spotkeeper::webhooks::check(webhook).map_err(|m| ApiError::invalid(format!("webhooks[{i}]"), m))?;
            }
            policy.webhooks = webhooks;
        }
        if let Some(volumes) = self.volumes {
            check_volumes(&volumes)?;
            policy.volumes = volumes;
        }
        if let Some(prices) = self.on_demand_prices {
            check_prices(&prices)?;
            policy.on_demand_prices = prices;
        }
        Ok(policy)
    }
}

/// Instance types a group may price, at most.
const MAX_PRICES: usize = 100;
/// No instance costs more an hour (the largest cost a few hundred dollars).
const HIGHEST_PRICE: f64 = 10_000.0;

/// `m5.large`, `u-6tb1.metal`, `m7i.metal-24xl`: a family and a size, of a-z, 0-9 and '-'.
fn instance_type_like(name: &str) -> bool {
    let part = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    name.len() <= 32 && name.split_once('.').is_some_and(|(family, size)| part(family) && part(size))
}

fn check_prices(prices: &BTreeMap<String, f64>) -> Result<(), ApiError> {
    if prices.len() > MAX_PRICES {
        return Err(ApiError::invalid("on_demand_prices", format!("at most {MAX_PRICES} instance types")));
    }
    for (instance_type, price) in prices {
        if !instance_type_like(instance_type) {
            let shown: String = instance_type.chars().take(40).collect();
            return Err(ApiError::invalid(
                "on_demand_prices",
                format!("{shown:?} is not an instance type (like m5.large)"),
            ));
        }
        if !(price.is_finite() && *price > 0.0 && *price <= HIGHEST_PRICE) {
            return Err(ApiError::invalid(
                format!("on_demand_prices.{instance_type}"),
                format!("must be a price in USD per hour, above 0 and at most {HIGHEST_PRICE}"),
            ));
        }
    }
    Ok(())
}

fn check_volumes(v: &VolumePolicy) -> Result<(), ApiError> {
    let range = |field: &str, value: u32, low: u32, high: u32| {
        if (low..=high).contains(&value) {
            Ok(())
        } else {
            Err(ApiError::invalid(format!("volumes.{field}"), format!("must be {low}-{high}")))
        }
    };
    range("threshold_percent", v.threshold_percent, 1, 99)?;
    range("growth_percent", v.growth_percent, 1, 500)?;
    range("min_step_gib", v.min_step_gib, 1, 16_384)?;
    // The largest EBS volume is 64 TiB.
    range("max_size_gib", v.max_size_gib, 1, 65_536)?;
    range("max_per_day", v.max_per_day, 1, 24)?;
    if v.min_interval < SHORTEST {
        return Err(ApiError::invalid(
            "volumes.min_interval",
            "must be at least 1m (EBS itself allows one modification per volume every 6h)",
        ));
    }
    for (path, device) in &v.path_devices {
        spotkeeper::growth::check_path(path).map_err(|m| ApiError::invalid("volumes.path_devices", m))?;
        let device_ok =
            device.strip_prefix("/dev/").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !device_ok {
            return Err(ApiError::invalid(
                "volumes.path_devices",
                format!("{device:?} is not a device name (like /dev/sdf)"),
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptBody {
    pub instance_id: String,
}

/// Limits that keep one group within one instant fleet request.
pub const MAX_CAPACITY: u32 = 100;
pub const MAX_POOLS: usize = 100;

fn id_like(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn unique<'a>(field: &str, values: impl Iterator<Item = &'a str>) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for value in values {
        if !seen.insert(value) {
            return Err(ApiError::invalid(field, format!("{value} is listed twice")));
        }
    }
    Ok(())
}

pub fn check_instance_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id_like(id, "i-") {
        Ok(())
    } else {
        Err(ApiError::invalid(field, format!("{id:?} is not an instance id (i-...)")))
    }
}

impl AsgBody {
    pub fn check(&self) -> Result<(), ApiError> {
        let ok = (1..=255).contains(&self.asg_name.len()) && !self.asg_name.chars().any(char::is_control);
        if ok {
            Ok(())
        } else {
            Err(ApiError::invalid("asg_name", "must be an Auto Scaling group name of 1-255 characters"))
        }
    }
}

impl StandaloneBody {
    /// Range and shape checks; references are checked against AWS afterwards.
    pub fn check(&self) -> Result<(), ApiError> {
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
            let ok = t.split_once('.').is_some_and(|(family, size)| {
                !family.is_empty()
                    && !size.is_empty()
                    && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            });
            if !ok {
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
        if let Some(s) = self.subnets.iter().find(|s| !id_like(s, "subnet-")) {
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
            && !id_like(eip, "eipalloc-")
        {
            return Err(ApiError::invalid(
                "elastic_ip_allocation_id",
                format!("{eip:?} is not an allocation id (eipalloc-...)"),
            ));
        }
        for v in &self.data_volumes {
            if !id_like(&v.volume_id, "vol-") {
                return Err(ApiError::invalid(
                    "data_volumes.volume_id",
                    format!("{:?} is not a volume id (vol-...)", v.volume_id),
                ));
            }
            let device_ok = v
                .device
                .strip_prefix("/dev/")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_alphanumeric()));
            if !device_ok {
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
    use super::*;
    use serde_json::json;

    fn standalone(extra: serde_json::Value) -> Result<StandaloneBody, ApiError> {
        let mut body = json!({
            "name": "web", "kind": "standalone", "launch_template": {"name": "web"},
            "instance_types": ["m5.large"], "subnets": ["subnet-1"]
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        match Registration::from_json(body)? {
            Registration::Standalone(body) => body.check().map(|()| *body),
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
            (json!({"adopt": ["i-1", "i-1"]}), "adopt"),
            (json!({"name": "Web"}), "name"),
        ];
        for (extra, field) in cases {
            let err = standalone(extra.clone()).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{extra}: {}", err.message);
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
            (r#"[1]"#, ""),
        ] {
            let value = parse(body.as_bytes()).unwrap();
            let err = Registration::from_json(value).err().map(|e| e.field);
            assert_eq!(err, Some(Some(field.to_string())), "{body}");
        }
    }

    #[test]
    fn on_demand_prices_are_checked() {
        let group = Group::new(
            GroupName::try_from("web".to_string()).unwrap(),
            GroupKind::Asg(spotkeeper::fleet::AsgSpec { asg_name: "workers".into() }),
            chrono::Utc::now(),
        );
        let patch = |prices: serde_json::Value| from_value::<PolicyPatch>(json!({"on_demand_prices": prices}));
        let policy = patch(json!({"m5.large": 0.05, "u-6tb1.metal": 44})).unwrap().apply(&group).unwrap();
        assert_eq!(policy.on_demand_prices.get("m5.large"), Some(&0.05));
        for (prices, field) in [
            (json!({"m5.large": 0}), "on_demand_prices.m5.large"),
            (json!({"m5.large": -1.0}), "on_demand_prices.m5.large"),
            (json!({"m5.large": 1e9}), "on_demand_prices.m5.large"),
            (json!({"m5.large": "0.05"}), "on_demand_prices.m5.large"),
            (json!({"M5 large": 0.05}), "on_demand_prices"),
            (json!({"m5": 0.05}), "on_demand_prices"),
            (json!(["m5.large"]), "on_demand_prices"),
        ] {
            let err = patch(prices.clone()).and_then(|p| p.apply(&group)).unwrap_err();
            assert_eq!((err.status, err.field.as_deref()), (StatusCode::BAD_REQUEST, Some(field)), "{prices}");
        }
    }

    #[test]
    fn trailing_garbage_and_wrong_types_are_refused() {
        assert!(parse::<AdoptBody>(br#"{"instance_id": "i-1"} x"#).is_err());
        let err = parse::<AdoptBody>(br#"{"instance_id": 5}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("instance_id"));
    }
}

/// Bad bodies, generated: parsing never panics, and every refusal names what is wrong.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,30}".prop_map(Value::String),
            Just(Value::String("standalone".into())),
            Just(Value::String("asg".into())),
            Just(Value::String("subnet-1".into())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let key = prop_oneof![
                Just("name".to_string()),
                Just("kind".to_string()),
                Just("asg_name".to_string()),
                Just("launch_template".to_string()),
                Just("instance_types".to_string()),
                Just("subnets".to_string()),
                Just("capacity".to_string()),
                Just("dns".to_string()),
                Just("data_volumes".to_string()),
                Just("rebalance".to_string()),
                Just("recovery".to_string()),
                Just("volumes".to_string()),
                Just("webhooks".to_string()),
                "[a-z_]{1,12}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(key, inner, 0..10).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn explained(err: &ApiError) -> bool {
        !err.message.trim().is_empty() && err.status.is_client_error()
    }

    proptest! {
        // 400 cases in `make test`; `make fuzz` runs many more (PROPTEST_CASES).
        #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(400), ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_are_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Err(err) = parse::<Value>(&bytes) {
                prop_assert!(explained(&err));
            }
            if let Err(err) = parse::<AdoptBody>(&bytes) {
                prop_assert!(explained(&err));
            }
        }

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

        #[test]
        fn policy_patches_never_panic(value in json()) {
            let group = Group::new(
                GroupName::try_from("web".to_string()).unwrap(),
                GroupKind::Asg(spotkeeper::fleet::AsgSpec { asg_name: "workers".into() }),
                chrono::Utc::now(),
            );
            match from_value::<PolicyPatch>(value) {
                Ok(patch) => {
                    if let Err(err) = patch.apply(&group) {
                        prop_assert!(explained(&err));
                    }
                }
                Err(err) => prop_assert!(explained(&err)),
            }
        }
    }
}
