//! A small fleet in the emulator: a VPC with two subnets in two AZs, a launch template, an Auto
//! Scaling group of 2 (mixed instances policy), a Route53 zone, an Elastic IP and a data volume.

use aws_config::SdkConfig;
use aws_sdk_autoscaling::types::{
    InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification, MixedInstancesPolicy,
};
use aws_sdk_ec2::types::{DomainType, RequestLaunchTemplateData, VolumeType};

pub const ZONE_A: &str = "us-east-1a";
pub const ZONE_B: &str = "us-east-1b";

#[derive(Debug, Clone)]
pub struct LocalFleet {
    pub vpc_id: String,
    pub subnet_a: String,
    pub subnet_b: String,
    pub template_id: String,
    pub template_name: String,
    pub asg_name: String,
    pub zone_id: String,
    pub zone_name: String,
    pub allocation_id: String,
    /// A data volume in ZONE_B.
    pub volume_id: String,
}

fn missing(what: &str) -> String {
    format!("the emulator's answer lacks {what}")
}

impl LocalFleet {
    pub async fn build(sdk: &SdkConfig) -> Result<Self, String> {
        let ec2 = aws_sdk_ec2::Client::new(sdk);
        let err = |op: &str, e: &dyn std::fmt::Debug| format!("{op}: {e:?}");
        let vpc_id = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .map_err(|e| err("CreateVpc", &e))?
            .vpc
            .and_then(|v| v.vpc_id)
            .ok_or_else(|| missing("the VPC id"))?;
        let mut subnets = Vec::new();
        for (cidr, zone) in [("10.0.0.0/20", ZONE_A), ("10.0.16.0/20", ZONE_B)] {
            subnets.push(
                ec2.create_subnet()
                    .vpc_id(&vpc_id)
                    .cidr_block(cidr)
                    .availability_zone(zone)
                    .send()
                    .await
                    .map_err(|e| err("CreateSubnet", &e))?
                    .subnet
                    .and_then(|s| s.subnet_id)
                    .ok_or_else(|| missing("the subnet id"))?,
            );
        }
        let image_id = ec2
            .describe_images()
            .owners("amazon")
            .send()
            .await
            .map_err(|e| err("DescribeImages", &e))?
            .images
            .unwrap_or_default()
            .into_iter()
            .find_map(|i| i.image_id)
            .ok_or_else(|| missing("an image"))?;
        let template_name = "web".to_string();
        let template_id = ec2
            .create_launch_template()
            .launch_template_name(&template_name)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(&image_id)
                    .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| err("CreateLaunchTemplate", &e))?
            .launch_template
            .and_then(|t| t.launch_template_id)
            .ok_or_else(|| missing("the launch template id"))?;
        let asg_name = "workers".to_string();
        create_asg(sdk, &asg_name, &template_id, &subnets, &["m5.large", "m5a.large"], 2).await?;
        let zone_name = "fleet.internal".to_string();
        let zone_id = aws_sdk_route53::Client::new(sdk)
            .create_hosted_zone()
            .name(&zone_name)
            .caller_reference(format!("spotkeeper-{}", std::process::id()))
            .send()
            .await
            .map_err(|e| err("CreateHostedZone", &e))?
            .hosted_zone
            .map(|z| z.id)
            .ok_or_else(|| missing("the zone id"))?;
        let zone_id = zone_id.trim_start_matches("/hostedzone/").to_string();
        let allocation_id = ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .send()
            .await
            .map_err(|e| err("AllocateAddress", &e))?
            .allocation_id
            .ok_or_else(|| missing("the allocation id"))?;
        let volume_id = ec2
            .create_volume()
            .availability_zone(ZONE_B)
            .size(20)
            .volume_type(VolumeType::Gp3)
            .send()
            .await
            .map_err(|e| err("CreateVolume", &e))?
            .volume_id
            .ok_or_else(|| missing("the volume id"))?;
        let [subnet_a, subnet_b]: [String; 2] = subnets.try_into().map_err(|_| missing("two subnets"))?;
        Ok(Self {
            vpc_id,
            subnet_a,
            subnet_b,
            template_id,
            template_name,
            asg_name,
            zone_id,
            zone_name,
            allocation_id,
            volume_id,
        })
    }
}

/// An Auto Scaling group of `size` Spot instances over `types` in `subnets` (a mixed instances
/// policy, price-capacity-optimized), room to grow to twice that.
pub async fn create_asg(
    sdk: &SdkConfig,
    name: &str,
    template_id: &str,
    subnets: &[String],
    types: &[&str],
    size: i32,
) -> Result<(), String> {
    let template = LaunchTemplate::builder()
        .launch_template_specification(
            LaunchTemplateSpecification::builder().launch_template_id(template_id).version("$Latest").build(),
        )
        .set_overrides(Some(
            types.iter().map(|t| LaunchTemplateOverrides::builder().instance_type(*t).build()).collect(),
        ))
        .build();
    let policy = MixedInstancesPolicy::builder()
        .launch_template(template)
        .instances_distribution(
            InstancesDistribution::builder()
                .on_demand_base_capacity(0)
                .on_demand_percentage_above_base_capacity(0)
                .spot_allocation_strategy("price-capacity-optimized")
                .build(),
        )
        .build();
    aws_sdk_autoscaling::Client::new(sdk)
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(size.min(2))
        .max_size(size * 2)
        .desired_capacity(size)
        .vpc_zone_identifier(subnets.join(","))
        .mixed_instances_policy(policy)
        .send()
        .await
        .map_err(|e| format!("CreateAutoScalingGroup: {e:?}"))?;
    Ok(())
}
