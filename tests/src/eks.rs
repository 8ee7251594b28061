//! EKS in moto beside the fake API server: a test says once that its cluster has a Fargate
//! profile, and both spotkeeper's EKS lookups (moto) and the fake's Fargate scheduler see it.

use aws_sdk_eks::error::DisplayErrorContext;
use aws_sdk_eks::operation::describe_cluster::DescribeClusterError;
use aws_sdk_eks::types::{FargateProfileSelector, VpcConfigRequest};

use crate::Harness;
use crate::kube::FakeKube;

/// The role Fargate pods would run as (moto takes any ARN).
const POD_EXECUTION_ROLE: &str = "arn:aws:iam::123456789012:role/spotkeeper-fargate-pods";

impl Harness {
    /// The EKS cluster `name` in moto, created in the fleet's first subnet unless it is there
    /// already. moto's endpoint and CA are placeholders: a group reaches the fake API server by
    /// its own `endpoint` and `ca`.
    pub async fn eks_cluster(&self, name: &str) {
        let eks = aws_sdk_eks::Client::new(&self.sdk);
        match eks.describe_cluster().name(name).send().await {
            Ok(_) => return,
            Err(e) if e.as_service_error().is_some_and(DescribeClusterError::is_resource_not_found_exception) => {}
            Err(e) => panic!("DescribeCluster {name}: {}", DisplayErrorContext(e)),
        }
        eks.create_cluster()
            .name(name)
            .role_arn("arn:aws:iam::123456789012:role/eks")
            .resources_vpc_config(VpcConfigRequest::builder().subnet_ids(self.fleet.subnet_a.clone()).build())
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateCluster {name}: {}", DisplayErrorContext(e)));
    }

    /// `fake`'s cluster has a Fargate profile selecting the pods of `namespace` that carry all of
    /// `labels`: in moto (`CreateFargateProfile`, ACTIVE at once; the cluster made first if need
    /// be) and in the fake's Fargate scheduler, under one name, which it returns.
    pub async fn fargate_profile(&self, fake: &FakeKube, namespace: &str, labels: &[(&str, &str)]) -> String {
        self.eks_cluster(&fake.cluster).await;
        let name = fake.fargate_profile(namespace, labels);
        let selector = FargateProfileSelector::builder()
            .namespace(namespace)
            .set_labels(Some(labels.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()))
            .build();
        aws_sdk_eks::Client::new(&self.sdk)
            .create_fargate_profile()
            .cluster_name(&fake.cluster)
            .fargate_profile_name(&name)
            .pod_execution_role_arn(POD_EXECUTION_ROLE)
            .subnets(self.fleet.subnet_a.clone())
            .selectors(selector)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateFargateProfile {name}: {}", DisplayErrorContext(e)));
        name
    }
}
