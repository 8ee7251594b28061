//! Launching instances: Spot first through one instant fleet over all the plan's pools; what Spot
//! could not place for lack of capacity goes On-Demand, marked as fallen back.

use crate::adapters::aws::AwsError;
use crate::adapters::aws::ec2::{Ec2, LaunchPart, Launched};
use crate::decisions::plan;
use crate::domain::{GroupName, LaunchError, LaunchPlan, LaunchedInstance, Market};

/// What a launch produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Launch {
    pub instances: Vec<LaunchedInstance>,
    /// Instances launched On-Demand because Spot had no capacity.
    pub fell_back: Vec<String>,
    /// Everything EC2 refused, Spot and On-Demand.
    pub errors: Vec<LaunchError>,
}

impl Launch {
    pub fn error_summary(&self) -> String {
        self.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect::<Vec<_>>().join("; ")
    }

    /// EC2's error codes, each once: what a caller may see (the messages can name roles and
    /// accounts, so they go to the log).
    pub fn error_codes(&self) -> String {
        let mut codes: Vec<&str> = self.errors.iter().map(|e| e.code.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        codes.join(", ")
    }
}

/// One part of the launch, or nothing when it has no instances.
async fn part(ec2: &Ec2, group: &GroupName, plan: &LaunchPlan, part: LaunchPart) -> Result<Launched, AwsError> {
    if part.count == 0 { Ok(Launched::default()) } else { ec2.launch(group, plan, part).await }
}

/// Launches a group's plan into the best of its pools: the On-Demand base and the Spot part at
/// once; with `fallback`, what Spot could not place for lack of capacity goes On-Demand.
pub async fn launch(ec2: &Ec2, group: &GroupName, plan: &LaunchPlan) -> Result<Launch, AwsError> {
    let count = plan.count();
    let on_demand = plan.on_demand.min(count);
    let spot_count = count - on_demand;
    let base = part(ec2, group, plan, LaunchPart { count: on_demand, market: Market::OnDemand, suffix: "base" });
    let spot = part(ec2, group, plan, LaunchPart { count: spot_count, market: Market::Spot, suffix: "spot" });
    let (spot, base) = futures::try_join!(spot, base)?;
    let (mut instances, mut errors) = (spot.instances, spot.errors);
    let missing = spot_count.saturating_sub(u32::try_from(instances.len()).unwrap_or(u32::MAX));
    let mut fell_back = Vec::new();
    if plan.fallback && missing > 0 && plan::should_fall_back(0, &errors) {
        let od = LaunchPart { count: missing, market: Market::OnDemand, suffix: "od" };
        let extra = ec2.launch(group, plan, od).await?;
        fell_back.extend(extra.instances.iter().map(|i| i.instance_id.clone()));
        instances.extend(extra.instances);
        errors.extend(extra.errors);
    }
    instances.extend(base.instances);
    errors.extend(base.errors);
    Ok(Launch { instances, fell_back, errors })
}
