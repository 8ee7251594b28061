//! EC2 Auto Scaling: the groups spotkeeper watches over.

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::{InstancesDistribution, MixedInstancesPolicy};

use super::AwsError;
use crate::domain::OnDemandShare;

#[derive(Clone, Debug)]
pub struct AutoScaling {
    client: Client,
}

/// What spotkeeper needs to know of an Auto Scaling group.
#[derive(Debug, Clone, PartialEq)]
pub struct AsgFacts {
    pub name: String,
    pub desired_capacity: i32,
    pub instance_ids: Vec<String>,
    pub capacity_rebalance: bool,
    /// The mixed instances policy as it stands (None for a group without one).
    pub mixed: Option<MixedInstancesPolicy>,
}

impl AsgFacts {
    /// The On-Demand share the group's mixed instances policy sets.
    pub fn on_demand_share(&self) -> Option<OnDemandShare> {
        let d = self.mixed.as_ref()?.instances_distribution.as_ref()?;
        Some(OnDemandShare {
            base: d.on_demand_base_capacity.unwrap_or(0),
            percent_above_base: d.on_demand_percentage_above_base_capacity.unwrap_or(100),
        })
    }
}

/// The policy as an update wants it back: the launch template named once (by id when known).
fn for_update(policy: &MixedInstancesPolicy) -> MixedInstancesPolicy {
    let mut policy = policy.clone();
    if let Some(spec) = policy.launch_template.as_mut().and_then(|t| t.launch_template_specification.as_mut())
        && spec.launch_template_id.is_some()
    {
        spec.launch_template_name = None;
    }
    policy
}

impl AutoScaling {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The Auto Scaling group by name, or `None` when there is none.
    pub async fn group(&self, name: &str) -> Result<Option<AsgFacts>, AwsError> {
        let out = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeAutoScalingGroups", e))?;
        Ok(out
            .auto_scaling_groups
            .unwrap_or_default()
            .into_iter()
            .find(|g| g.auto_scaling_group_name.as_deref() == Some(name))
            .map(|g| AsgFacts {
                name: name.to_string(),
                desired_capacity: g.desired_capacity.unwrap_or_default(),
                instance_ids: g.instances.unwrap_or_default().into_iter().filter_map(|i| i.instance_id).collect(),
                capacity_rebalance: g.capacity_rebalance.unwrap_or(false),
                mixed: g.mixed_instances_policy,
            }))
    }

    /// Turns Capacity Rebalancing on or off. The current mixed instances policy goes along
    /// unchanged: some implementations drop what an update leaves out.
    pub async fn set_capacity_rebalance(&self, asg: &AsgFacts, on: bool) -> Result<(), AwsError> {
        self.client
            .update_auto_scaling_group()
            .auto_scaling_group_name(&asg.name)
            .capacity_rebalance(on)
            .set_mixed_instances_policy(asg.mixed.as_ref().map(for_update))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateAutoScalingGroup", e))?;
        Ok(())
    }

    /// Sets the On-Demand share of the group's mixed instances policy, keeping the rest of it.
    pub async fn set_on_demand_share(&self, asg: &AsgFacts, share: OnDemandShare) -> Result<(), AwsError> {
        let Some(mixed) = &asg.mixed else {
            return Err(AwsError {
                operation: "UpdateAutoScalingGroup",
                code: None,
                message: format!("Auto Scaling group {} has no mixed instances policy to change", asg.name),
            });
        };
        let mut policy = for_update(mixed);
        let distribution =
            policy.instances_distribution.clone().unwrap_or_else(|| InstancesDistribution::builder().build());
        policy.instances_distribution = Some(
            InstancesDistribution::builder()
                .set_on_demand_allocation_strategy(distribution.on_demand_allocation_strategy)
                .set_spot_allocation_strategy(distribution.spot_allocation_strategy)
                .set_spot_instance_pools(distribution.spot_instance_pools)
                .set_spot_max_price(distribution.spot_max_price)
                .on_demand_base_capacity(share.base)
                .on_demand_percentage_above_base_capacity(share.percent_above_base)
                .build(),
        );
        self.client
            .update_auto_scaling_group()
            .auto_scaling_group_name(&asg.name)
            .mixed_instances_policy(policy)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("UpdateAutoScalingGroup", e))?;
        Ok(())
    }

    /// The status messages of the group's scaling activities that failed since `since`.
    pub async fn failed_activities(
        &self,
        asg_name: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, AwsError> {
        let out = self
            .client
            .describe_scaling_activities()
            .auto_scaling_group_name(asg_name)
            .max_records(20)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeScalingActivities", e))?;
        Ok(out
            .activities
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.status_code == Some(aws_sdk_autoscaling::types::ScalingActivityStatusCode::Failed))
            .filter(|a| a.start_time.as_ref().is_some_and(|t| t.secs() >= since.timestamp()))
            .filter_map(|a| a.status_message.or(a.description))
            .collect())
    }

    /// Detaches instances without decrementing desired capacity, so the group launches their
    /// replacements at once while they drain: 20 ids a call (the API's limit), calls concurrent.
    /// Answers the instances it could not detach, each with AWS's reason (none: all detached).
    pub async fn detach(&self, asg_name: &str, instance_ids: &[String]) -> Vec<(String, AwsError)> {
        let calls = instance_ids.chunks(20).map(|chunk| self.detach_chunk(asg_name, chunk));
        futures::future::join_all(calls).await.into_iter().flatten().collect()
    }

    async fn detach_chunk(&self, asg_name: &str, instance_ids: &[String]) -> Vec<(String, AwsError)> {
        let mut rest = instance_ids.to_vec();
        let mut refused = Vec::new();
        // AWS refuses the whole call for one instance it cannot detach, and names it: set that
        // one aside and send the rest again, so one instance never holds the others back.
        while !rest.is_empty() {
            let sent = self
                .client
                .detach_instances()
                .auto_scaling_group_name(asg_name)
                .set_instance_ids(Some(rest.clone()))
                .should_decrement_desired_capacity(false)
                .send()
                .await;
            let err = match sent {
                Ok(_) => break,
                Err(e) => AwsError::from_sdk("DetachInstances", e),
            };
            let named =
                rest.iter().position(|id| err.code.as_deref() == Some("ValidationError") && names(&err.message, id));
            match named {
                Some(at) => {
                    let id = rest.remove(at);
                    // Out of the group already: a detach sent again (its answer was lost, or the
                    // warning came back) finds it gone, which is what was asked.
                    if !err.message.contains("not part of") {
                        refused.push((id, err));
                    }
                }
                None => refused.extend(rest.drain(..).map(|id| (id, err.clone()))),
            }
        }
        refused
    }
}

/// Whether an error message names this id (not merely a longer id that starts with it).
fn names(message: &str, id: &str) -> bool {
    message
        .match_indices(id)
        .any(|(at, _)| message[at + id.len()..].chars().next().is_none_or(|c| !c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn an_error_names_an_instance_by_its_whole_id() {
        let message = "The instance i-0123abcd5678ef901 is not in InService or Standby.";
        assert!(names(message, "i-0123abcd5678ef901"));
        assert!(!names(message, "i-0123abcd"), "a shorter id that is a prefix is not named");
        assert!(names("The instance i-0123abcd is not part of Auto Scaling group web.", "i-0123abcd"));
    }
}
