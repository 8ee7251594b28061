//! EC2: instances, launches, addresses, volumes, subnets, launch templates.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::interceptors::InterceptorContext;
use aws_sdk_ec2::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::operation::create_fleet::CreateFleetError;
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, Filter, FleetLaunchTemplateConfigRequest, FleetLaunchTemplateOverridesRequest,
    FleetLaunchTemplateSpecificationRequest, FleetOnDemandAllocationStrategy, FleetType, Instance, InstanceLifecycle,
    InstanceLifecycleType, InstanceType, OnDemandOptionsRequest, ResourceType, SpotAllocationStrategy,
    SpotOptionsRequest, Tag, TagSpecification, TargetCapacitySpecificationRequest,
};
use chrono::{DateTime, Utc};

use super::AwsError;
use crate::domain::{
    AllocationId, DeviceName, GROUP_TAG, GroupName, InstanceFacts, LaunchErrorKind, LaunchPlan, LaunchTemplateRef,
    Market, REPLACES_TAG, Subnet, SubnetId, VolumeId,
};
pub use crate::domain::{LaunchError, LaunchedInstance, VolumeFacts};

#[derive(Clone, Debug)]
pub struct Ec2 {
    client: Client,
}

/// A capacity error is EC2's answer, not a hiccup: EC2 sends some with HTTP 500, which the SDK
/// would retry with backoff — delaying the fallback to On-Demand by seconds for nothing.
#[derive(Debug)]
pub struct CapacityIsFinal;

impl ClassifyRetry for CapacityIsFinal {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let error = ctx.output_or_error().and_then(Result::err).and_then(|e| e.as_operation_error());
        let code = error.and_then(|e| e.downcast_ref::<CreateFleetError>()).and_then(|e| e.code());
        if code.is_some_and(is_capacity_error) { RetryAction::RetryForbidden } else { RetryAction::NoActionIndicated }
    }

    fn name(&self) -> &'static str {
        "CapacityIsFinal"
    }
}

/// Error codes that mean "no capacity in this pool right now", as opposed to a mistake.
fn is_capacity_error(code: &str) -> bool {
    matches!(
        code,
        "InsufficientInstanceCapacity"
            | "InsufficientCapacity"
            | "InsufficientHostCapacity"
            | "MaxSpotInstanceCountExceeded"
            | "SpotMaxPriceTooLow"
            | "UnfulfillableCapacity"
            | "InsufficientFreeAddressesInSubnet"
            | "capacity-not-available"
            | "price-too-low"
    )
}

/// What kind of refusal an EC2 error code is.
pub fn classify(code: &str) -> LaunchErrorKind {
    if is_capacity_error(code) { LaunchErrorKind::Capacity } else { LaunchErrorKind::Other }
}

/// Whether a free-text status (an Auto Scaling activity's) speaks of missing capacity: it names
/// EC2's capacity codes.
pub fn mentions_capacity(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric() && c != '-').any(is_capacity_error)
}

fn launch_error(code: String, message: String, pool: Option<(String, String)>) -> LaunchError {
    let pool = pool.and_then(|(instance_type, subnet)| Some((instance_type, parsed("subnet id", subnet)?)));
    LaunchError { kind: classify(&code), code, message, pool }
}

/// A value EC2 gave, parsed into its type. One that does not parse (EC2 never sends one) is
/// left out, logged, as a missing one is: an answer is never refused whole for it.
fn parsed<T: TryFrom<String, Error = String>>(what: &str, value: String) -> Option<T> {
    T::try_from(value)
        .map_err(|why| tracing::warn!(what, %why, "EC2 answered a value that does not parse; left out"))
        .ok()
}

/// One request of a plan's launch: how many of its instances, on which market, under which
/// suffix of its client token (each part of a launch is its own request, retried on its own).
#[derive(Debug, Clone, Copy)]
pub struct LaunchPart {
    pub count: u32,
    pub market: Market,
    pub suffix: &'static str,
}

/// The tags of a plan's instances. One request can carry many instances but only one set of
/// tags: a lone replacement is tagged with what it replaces; several are paired in the table only
/// (a tag call each would spend EC2's mutating-call budget just when a mass interruption needs it).
fn launch_tags(group: &GroupName, plan: &LaunchPlan) -> Vec<Tag> {
    let mut tags = vec![(GROUP_TAG, group.to_string()), ("Name", format!("spotkeeper-{group}"))];
    if let ([only], 0) = (plan.olds.as_slice(), plan.extra) {
        tags.push((REPLACES_TAG, only.instance_id.clone()));
    }
    tags.into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Launched {
    pub instances: Vec<LaunchedInstance>,
    pub errors: Vec<LaunchError>,
}

fn filter(name: &str, values: &[String]) -> Filter {
    Filter::builder().name(name).set_values(Some(values.to_vec())).build()
}

fn chrono_time(t: &aws_sdk_ec2::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn facts(instance: Instance) -> Option<InstanceFacts> {
    Some(InstanceFacts {
        instance_id: instance.instance_id?,
        market: match instance.instance_lifecycle {
            Some(InstanceLifecycleType::Spot) => Market::Spot,
            _ => Market::OnDemand,
        },
        instance_type: instance.instance_type.map(|t| t.as_str().to_string()).unwrap_or_default(),
        availability_zone: instance.placement.and_then(|p| p.availability_zone).unwrap_or_default(),
        subnet_id: instance.subnet_id.and_then(|s| parsed("subnet id", s)),
        // A state this version does not know (or none) is kept as unknown: neither live nor gone.
        state: instance.state.and_then(|s| s.name).and_then(|n| n.as_str().parse().ok()),
        launched_at: instance.launch_time.as_ref().and_then(chrono_time),
        private_ip: instance.private_ip_address,
        private_dns: instance.private_dns_name.filter(|d| !d.is_empty()),
        public_ip: instance.public_ip_address,
        tags: instance
            .tags
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
            .collect(),
        root_device: instance.root_device_name,
        image_id: instance.image_id,
        block_devices: instance
            .block_device_mappings
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| Some((b.device_name?, b.ebs?.volume_id?)))
            .collect(),
    })
}

fn is_not_found(err: AwsError) -> Result<bool, AwsError> {
    if err.is_not_found() { Ok(false) } else { Err(err) }
}

impl Ec2 {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The instances among `ids` that EC2 knows (an id it does not know is left out, not an error).
    pub async fn instances(&self, ids: &[String]) -> Result<Vec<InstanceFacts>, AwsError> {
        let mut found = Vec::with_capacity(ids.len());
        // The instance-id filter takes at most 200 values.
        for chunk in ids.chunks(200) {
            found.extend(self.describe(filter("instance-id", chunk)).await?);
        }
        Ok(found)
    }

    /// Every instance carrying any of these tag keys, in one paginated listing.
    pub async fn tagged(&self, tag_keys: &[String]) -> Result<Vec<InstanceFacts>, AwsError> {
        self.describe(filter("tag-key", tag_keys)).await
    }

    async fn describe(&self, filter: Filter) -> Result<Vec<InstanceFacts>, AwsError> {
        let mut found = Vec::new();
        let mut pages = self.client.describe_instances().filters(filter).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("DescribeInstances", e))?;
            found.extend(
                page.reservations
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|r| r.instances.unwrap_or_default())
                    .filter_map(facts),
            );
        }
        Ok(found)
    }

    pub async fn launch_template_exists(&self, template: &LaunchTemplateRef) -> Result<bool, AwsError> {
        let request = self
            .client
            .describe_launch_templates()
            .set_launch_template_ids(template.id.clone().map(|id| vec![id]))
            .set_launch_template_names(template.name.clone().map(|n| vec![n]));
        match request.send().await {
            Ok(out) => Ok(!out.launch_templates.unwrap_or_default().is_empty()),
            Err(e) => is_not_found(AwsError::from_sdk("DescribeLaunchTemplates", e)),
        }
    }

    /// The subnets among `ids` that exist, with their AZs.
    pub async fn subnets(&self, ids: &[SubnetId]) -> Result<Vec<Subnet>, AwsError> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let out = self
            .client
            .describe_subnets()
            .filters(filter("subnet-id", &ids))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeSubnets", e))?;
        Ok(out
            .subnets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| {
                Some(Subnet { id: parsed("subnet id", s.subnet_id?)?, availability_zone: s.availability_zone? })
            })
            .collect())
    }

    /// The volumes among `ids` that exist.
    pub async fn volumes(&self, ids: &[String]) -> Result<Vec<VolumeFacts>, AwsError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .describe_volumes()
            .filters(filter("volume-id", ids))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeVolumes", e))?;
        Ok(out
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| {
                Some(VolumeFacts {
                    volume_id: parsed("volume id", v.volume_id?)?,
                    availability_zone: v.availability_zone?,
                    state: v.state.map(|s| s.as_str().to_string()).unwrap_or_default(),
                    size_gib: v.size.unwrap_or_default(),
                    attachments: v
                        .attachments
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|a| Some((a.instance_id?, a.device?)))
                        .collect(),
                })
            })
            .collect())
    }

    pub async fn address_exists(&self, allocation_id: &AllocationId) -> Result<bool, AwsError> {
        match self.client.describe_addresses().allocation_ids(allocation_id.as_str()).send().await {
            Ok(out) => Ok(!out.addresses.unwrap_or_default().is_empty()),
            Err(e) => is_not_found(AwsError::from_sdk("DescribeAddresses", e)),
        }
    }

    /// Launches a part of a plan through one instant fleet request: EC2 picks among the pools
    /// (price-capacity-optimized for Spot), so no price lookup sits in front of it. A capacity
    /// error can come back as an API error (HTTP 4xx) as well as inside the fleet's 200 answer:
    /// both are `LaunchError`s of the answer.
    pub async fn launch(&self, group: &GroupName, plan: &LaunchPlan, part: LaunchPart) -> Result<Launched, AwsError> {
        match self.create_fleet(group, plan, part).await {
            Err(err) if err.code.as_deref().is_some_and(is_capacity_error) => {
                let error = launch_error(err.code.unwrap_or_default(), err.message, None);
                Ok(Launched { instances: Vec::new(), errors: vec![error] })
            }
            answer => answer,
        }
    }

    async fn create_fleet(&self, group: &GroupName, plan: &LaunchPlan, part: LaunchPart) -> Result<Launched, AwsError> {
        const OP: &str = "CreateFleet";
        let overrides = plan
            .pools
            .iter()
            .map(|p| {
                FleetLaunchTemplateOverridesRequest::builder()
                    .instance_type(InstanceType::from(p.instance_type.as_str()))
                    .subnet_id(p.subnet_id.as_str())
                    .build()
            })
            .collect();
        let template = FleetLaunchTemplateSpecificationRequest::builder()
            .set_launch_template_id(plan.spec.launch_template.id.clone())
            .set_launch_template_name(plan.spec.launch_template.name.clone())
            .version(&plan.spec.launch_template.version)
            .build();
        let config = FleetLaunchTemplateConfigRequest::builder()
            .launch_template_specification(template)
            .set_overrides(Some(overrides))
            .build();
        let target = TargetCapacitySpecificationRequest::builder()
            .total_target_capacity(i32::try_from(part.count).unwrap_or(i32::MAX))
            .default_target_capacity_type(match part.market {
                Market::Spot => DefaultTargetCapacityType::Spot,
                Market::OnDemand => DefaultTargetCapacityType::OnDemand,
            })
            .build();
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .set_tags(Some(launch_tags(group, plan)))
            .build();
        let out = self
            .client
            .create_fleet()
            .r#type(FleetType::Instant)
            .launch_template_configs(config)
            .target_capacity_specification(target)
            .spot_options(
                SpotOptionsRequest::builder()
                    .allocation_strategy(SpotAllocationStrategy::PriceCapacityOptimized)
                    .build(),
            )
            .on_demand_options(
                OnDemandOptionsRequest::builder()
                    .allocation_strategy(FleetOnDemandAllocationStrategy::LowestPrice)
                    .build(),
            )
            .tag_specifications(tags)
            .client_token(format!("{}-{}", plan.token, part.suffix))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(OP, e))?;
        let instances = out
            .instances
            .unwrap_or_default()
            .into_iter()
            .flat_map(|group| {
                let market = match group.lifecycle {
                    Some(InstanceLifecycle::Spot) => Market::Spot,
                    _ => Market::OnDemand,
                };
                let instance_type = group.instance_type.map(|t| t.as_str().to_string()).unwrap_or_default();
                let subnet_id = group
                    .launch_template_and_overrides
                    .and_then(|l| l.overrides)
                    .and_then(|o| o.subnet_id)
                    .and_then(|s| parsed("subnet id", s));
                group.instance_ids.unwrap_or_default().into_iter().map(move |instance_id| LaunchedInstance {
                    instance_id,
                    market,
                    instance_type: instance_type.clone(),
                    subnet_id: subnet_id.clone(),
                })
            })
            .collect();
        let errors = out
            .errors
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let overrides = e.launch_template_and_overrides.and_then(|l| l.overrides);
                launch_error(
                    e.error_code.unwrap_or_default(),
                    e.error_message.unwrap_or_default(),
                    overrides.and_then(|o| Some((o.instance_type?.as_str().to_string(), o.subnet_id?))),
                )
            })
            .collect();
        Ok(Launched { instances, errors })
    }

    pub async fn associate_address(&self, allocation_id: &AllocationId, instance_id: &str) -> Result<(), AwsError> {
        self.client
            .associate_address()
            .allocation_id(allocation_id.as_str())
            .instance_id(instance_id)
            .allow_reassociation(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("AssociateAddress", e))?;
        Ok(())
    }

    pub async fn attach_volume(
        &self,
        volume_id: &VolumeId,
        instance_id: &str,
        device: &DeviceName,
    ) -> Result<(), AwsError> {
        self.client
            .attach_volume()
            .volume_id(volume_id.as_str())
            .instance_id(instance_id)
            .device(device.as_str())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("AttachVolume", e))?;
        Ok(())
    }

    /// Detaches a volume from an instance. Both are named: a detach by volume id alone can take
    /// the volume from whatever holds it now.
    pub async fn detach_volume(
        &self,
        volume_id: &VolumeId,
        instance_id: &str,
        device: &DeviceName,
    ) -> Result<(), AwsError> {
        self.client
            .detach_volume()
            .volume_id(volume_id.as_str())
            .instance_id(instance_id)
            .device(device.as_str())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DetachVolume", e))?;
        Ok(())
    }

    /// Waits (bounded) until a volume is `available`: a detach takes seconds in EC2.
    pub async fn wait_available(&self, volume_id: &VolumeId, timeout: std::time::Duration) -> Result<bool, AwsError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut pause = std::time::Duration::from_millis(250);
        loop {
            let volumes = self.volumes(std::slice::from_ref(&volume_id.to_string())).await?;
            if volumes.first().is_some_and(|v| v.state == "available") {
                return Ok(true);
            }
            if std::time::Instant::now() + pause > deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(2));
        }
    }

    /// The latest Spot price of each (instance type, AZ) among `types`: one paginated call.
    pub async fn spot_prices(
        &self,
        types: &[String],
        now: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<(String, String), f64>, AwsError> {
        let mut prices = std::collections::HashMap::new();
        if types.is_empty() {
            return Ok(prices);
        }
        let mut pages = self
            .client
            .describe_spot_price_history()
            .set_instance_types(Some(types.iter().map(|t| InstanceType::from(t.as_str())).collect()))
            .product_descriptions("Linux/UNIX")
            .start_time(aws_sdk_ec2::primitives::DateTime::from_secs(now.timestamp()))
            .into_paginator()
            .send();
        let mut latest: std::collections::HashMap<(String, String), (i64, f64)> = std::collections::HashMap::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("DescribeSpotPriceHistory", e))?;
            for entry in page.spot_price_history.unwrap_or_default() {
                let (Some(t), Some(az), Some(price)) = (
                    entry.instance_type,
                    entry.availability_zone,
                    entry.spot_price.and_then(|p| p.parse::<f64>().ok()),
                ) else {
                    continue;
                };
                let at = entry.timestamp.map(|t| t.secs()).unwrap_or_default();
                let key = (t.as_str().to_string(), az);
                if latest.get(&key).is_none_or(|(seen, _)| *seen <= at) {
                    latest.insert(key, (at, price));
                }
            }
        }
        prices.extend(latest.into_iter().map(|(k, (_, p))| (k, p)));
        Ok(prices)
    }

    /// The instances among `ids` whose EC2 status checks (instance or system) say impaired.
    pub async fn impaired(&self, ids: &[String]) -> Result<Vec<String>, AwsError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .describe_instance_status()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeInstanceStatus", e))?;
        let bad = |s: Option<&aws_sdk_ec2::types::InstanceStatusSummary>| {
            s.and_then(|s| s.status.as_ref()) == Some(&aws_sdk_ec2::types::SummaryStatus::Impaired)
        };
        Ok(out
            .instance_statuses
            .unwrap_or_default()
            .into_iter()
            .filter(|s| bad(s.instance_status.as_ref()) || bad(s.system_status.as_ref()))
            .filter_map(|s| s.instance_id)
            .collect())
    }

    /// Makes an image of an instance (without a reboot unless asked), tagged.
    pub async fn create_image(
        &self,
        instance_id: &str,
        name: &str,
        reboot: bool,
        tags: &[(String, String)],
    ) -> Result<String, AwsError> {
        // The image is tagged; its snapshots are found through it when it is deleted.
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Image)
            .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
            .build();
        let out = self
            .client
            .create_image()
            .instance_id(instance_id)
            .name(name)
            .no_reboot(!reboot)
            .tag_specifications(tags)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("CreateImage", e))?;
        out.image_id.ok_or_else(|| AwsError::malformed("CreateImage", "the image id"))
    }

    /// The state of an image (`pending`, `available`, `failed`, ...) and its snapshots; `None`
    /// when it no longer exists.
    pub async fn image(&self, image_id: &str) -> Result<Option<(String, Vec<String>)>, AwsError> {
        let out = match self.client.describe_images().image_ids(image_id).send().await {
            Ok(out) => out,
            Err(e) => {
                let err = AwsError::from_sdk("DescribeImages", e);
                return if err.is_not_found() { Ok(None) } else { Err(err) };
            }
        };
        Ok(out.images.unwrap_or_default().into_iter().next().map(|i| {
            let snapshots =
                i.block_device_mappings.unwrap_or_default().into_iter().filter_map(|b| b.ebs?.snapshot_id).collect();
            (i.state.map(|s| s.as_str().to_string()).unwrap_or_default(), snapshots)
        }))
    }

    /// Deregisters an image and deletes its snapshots.
    pub async fn delete_image(&self, image_id: &str) -> Result<(), AwsError> {
        let snapshots = self.image(image_id).await?.map(|(_, s)| s).unwrap_or_default();
        self.client
            .deregister_image()
            .image_id(image_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DeregisterImage", e))?;
        for snapshot in snapshots {
            self.client
                .delete_snapshot()
                .snapshot_id(&snapshot)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DeleteSnapshot", e))?;
        }
        Ok(())
    }

    /// The version number a template reference means now (`$Latest`, `$Default` resolved).
    pub async fn template_version(&self, template: &LaunchTemplateRef) -> Result<String, AwsError> {
        if template.version.parse::<u64>().is_ok() {
            return Ok(template.version.clone());
        }
        let out = self
            .client
            .describe_launch_templates()
            .set_launch_template_ids(template.id.clone().map(|id| vec![id]))
            .set_launch_template_names(template.name.clone().map(|n| vec![n]))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeLaunchTemplates", e))?;
        let found = out
            .launch_templates
            .unwrap_or_default()
            .into_iter()
            .next()
            .ok_or_else(|| AwsError::malformed("DescribeLaunchTemplates", "the template"))?;
        let number =
            if template.version == "$Latest" { found.latest_version_number } else { found.default_version_number };
        number
            .map(|n| n.to_string())
            .ok_or_else(|| AwsError::malformed("DescribeLaunchTemplates", "the version number"))
    }

    /// A new version of the template: `source` with its image replaced. Returns its number.
    pub async fn template_version_with_image(
        &self,
        template: &LaunchTemplateRef,
        source: &str,
        image_id: &str,
    ) -> Result<String, AwsError> {
        let out = self
            .client
            .create_launch_template_version()
            .set_launch_template_id(template.id.clone())
            .set_launch_template_name(template.name.clone())
            .source_version(source)
            .version_description(format!("spotkeeper: image {image_id}"))
            .launch_template_data(aws_sdk_ec2::types::RequestLaunchTemplateData::builder().image_id(image_id).build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("CreateLaunchTemplateVersion", e))?;
        out.launch_template_version
            .and_then(|v| v.version_number)
            .map(|n| n.to_string())
            .ok_or_else(|| AwsError::malformed("CreateLaunchTemplateVersion", "the version number"))
    }

    /// Asks EBS to grow a volume (it keeps serving while it grows).
    pub async fn modify_volume(&self, volume_id: &str, size_gib: i32) -> Result<(), AwsError> {
        self.client
            .modify_volume()
            .volume_id(volume_id)
            .size(size_gib)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ModifyVolume", e))?;
        Ok(())
    }

    /// Stops instances (to move their volumes), all in one call.
    pub async fn stop(&self, instance_ids: &[String]) -> Result<(), AwsError> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        self.client
            .stop_instances()
            .set_instance_ids(Some(instance_ids.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("StopInstances", e))?;
        Ok(())
    }

    /// Terminates instances, all in one call.
    pub async fn terminate(&self, instance_ids: &[String]) -> Result<(), AwsError> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        self.client
            .terminate_instances()
            .set_instance_ids(Some(instance_ids.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("TerminateInstances", e))?;
        Ok(())
    }

    /// Sets one tag on many resources in one call.
    pub async fn tag(&self, resource_ids: &[String], key: &str, value: &str) -> Result<(), AwsError> {
        if resource_ids.is_empty() {
            return Ok(());
        }
        self.client
            .create_tags()
            .set_resources(Some(resource_ids.to_vec()))
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("CreateTags", e))?;
        Ok(())
    }

    /// Removes one tag from many resources in one call.
    pub async fn untag(&self, resource_ids: &[String], key: &str) -> Result<(), AwsError> {
        if resource_ids.is_empty() {
            return Ok(());
        }
        self.client
            .delete_tags()
            .set_resources(Some(resource_ids.to_vec()))
            .tags(Tag::builder().key(key).build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DeleteTags", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_errors_are_classified_by_their_code() {
        let cases = [
            ("InsufficientInstanceCapacity", LaunchErrorKind::Capacity),
            ("InsufficientCapacity", LaunchErrorKind::Capacity),
            ("SpotMaxPriceTooLow", LaunchErrorKind::Capacity),
            ("UnfulfillableCapacity", LaunchErrorKind::Capacity),
            ("capacity-not-available", LaunchErrorKind::Capacity),
            ("InvalidParameterValue", LaunchErrorKind::Other),
            ("UnauthorizedOperation", LaunchErrorKind::Other),
            ("", LaunchErrorKind::Other),
        ];
        for (code, kind) in cases {
            assert_eq!(classify(code), kind, "{code}");
        }
    }

    #[test]
    fn capacity_is_found_in_an_activity_message() {
        assert!(mentions_capacity(
            "Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity available."
        ));
        assert!(!mentions_capacity("The security group 'sg-1' does not exist"));
    }
}
