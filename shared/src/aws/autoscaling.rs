//! EC2 Auto Scaling: the groups spotkeeper watches over.

use aws_sdk_autoscaling::Client;

use super::AwsError;

#[derive(Clone, Debug)]
pub struct AutoScaling {
    client: Client,
}

/// What spotkeeper needs to know of an Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsgFacts {
    pub name: String,
    pub desired_capacity: i32,
    pub instance_ids: Vec<String>,
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
            }))
    }

    /// Detaches instances without decrementing desired capacity, so the group launches their
    /// replacements at once while they drain: 20 ids a call (the API's limit), calls concurrent.
    pub async fn detach(&self, asg_name: &str, instance_ids: &[String]) -> Result<(), AwsError> {
        let calls = instance_ids.chunks(20).map(|chunk| {
            self.client
                .detach_instances()
                .auto_scaling_group_name(asg_name)
                .set_instance_ids(Some(chunk.to_vec()))
                .should_decrement_desired_capacity(false)
                .send()
        });
        for result in futures::future::join_all(calls).await {
            result.map_err(|e| AwsError::from_sdk("DetachInstances", e))?;
        }
        Ok(())
    }
}
