//! What a Fargate failover reads and writes in a cluster: Deployments (found from their pods'
//! ReplicaSets, read, patched with a merge patch), the ready endpoints of the Services over their
//! pods, and the Spot nodes that could take them back, with what they have left.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::Value;

use super::client::{INTERRUPTED_TAINT, KubeClient, KubeError};
use crate::domain::{DeploymentView, NodeUse, RolloutStatus, WorkloadRef};

/// The label EKS puts on Fargate's nodes.
const COMPUTE_TYPE: &str = "eks.amazonaws.com/compute-type";

/// What a patch of a Deployment came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Patched {
    /// Written: the Deployment as it is now.
    Applied(Box<DeploymentView>),
    /// It changed since it was read (409 on the resourceVersion): read it again and decide anew.
    Conflict,
    /// It is gone.
    Gone,
}

impl KubeClient {
    /// The Deployment that controls ReplicaSet `name`, if one does.
    pub async fn deployment_of(&self, namespace: &str, replica_set: &str) -> Result<Option<String>, KubeError> {
        let sets: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        self.limiter.acquire().await;
        let Some(set) = sets.get_opt(replica_set).await? else { return Ok(None) };
        Ok(set
            .metadata
            .owner_references
            .into_iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == "Deployment")
            .map(|o| o.name))
    }

    /// One Deployment, as the API server holds it now.
    pub async fn deployment(&self, workload: &WorkloadRef) -> Result<Option<DeploymentView>, KubeError> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &workload.namespace);
        self.limiter.acquire().await;
        Ok(deployments.get_opt(&workload.name).await?.as_ref().and_then(deployment_view))
    }

    /// The Deployments of a namespace.
    pub async fn deployments(&self, namespace: &str) -> Result<Vec<DeploymentView>, KubeError> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        Ok(self.list_all(&deployments, ListParams::default()).await?.iter().filter_map(deployment_view).collect())
    }

    /// Sends one JSON merge patch (its `metadata.resourceVersion` the precondition).
    pub async fn patch_deployment(&self, workload: &WorkloadRef, patch: &Value) -> Result<Patched, KubeError> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &workload.namespace);
        self.limiter.acquire().await;
        match deployments.patch(&workload.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(d) => Ok(deployment_view(&d).map_or(Patched::Gone, |v| Patched::Applied(Box::new(v)))),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Patched::Conflict),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Patched::Gone),
            Err(e) => Err(e.into()),
        }
    }

    /// The ready endpoints of the Services that select pods with these labels (`None`: no
    /// Service selects them, so there is nothing to check).
    pub async fn ready_endpoints(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Option<usize>, KubeError> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        self.limiter.acquire().await;
        let selecting: Vec<String> = services
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|s| {
                s.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|selector| {
                    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                })
            })
            .filter_map(|s| s.metadata.name)
            .collect();
        if selecting.is_empty() {
            return Ok(None);
        }
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let mut ready = 0;
        for service in selecting {
            self.limiter.acquire().await;
            let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
            ready += slices
                .list(&params)
                .await?
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count();
        }
        Ok(Some(ready))
    }

    /// EC2 nodes that can take pods now (Ready, schedulable, not Fargate's, not being drained),
    /// each with its allocatable resources and the pods bound to it (finished ones aside).
    pub async fn spot_nodes(&self) -> Result<Vec<NodeUse>, KubeError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let params = ListParams::default().labels(&format!("{COMPUTE_TYPE}!=fargate"));
        let mut found: BTreeMap<String, NodeUse> = BTreeMap::new();
        for node in self.list_all(&nodes, params).await?.iter().filter(|n| takes_pods(n)) {
            let Some(name) = node.metadata.name.clone() else { continue };
            let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
            let allocatable = allocatable.into_iter().flatten().map(|(k, q)| (k.clone(), q.0.clone())).collect();
            found.insert(name, NodeUse { allocatable, pods: Vec::new() });
        }
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let pods: Api<Pod> = Api::all(self.client.clone());
        for pod in self.list_all(&pods, ListParams::default()).await? {
            let finished =
                pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Succeeded" || p == "Failed");
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).and_then(|n| found.get_mut(n));
            if let (false, Some(node), Some(spec)) = (finished, node, pod.spec.as_ref()) {
                node.pods.push(serde_json::json!({"spec": spec}));
            }
        }
        Ok(found.into_values().collect())
    }
}

fn takes_pods(node: &Node) -> bool {
    let spec = node.spec.clone().unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let drained = spec.taints.iter().flatten().any(|t| t.key == INTERRUPTED_TAINT);
    ready && spec.unschedulable != Some(true) && !drained
}

/// The failover's view of a Deployment; `None` for one the server answered without a name.
fn deployment_view(d: &Deployment) -> Option<DeploymentView> {
    let meta = &d.metadata;
    let workload = WorkloadRef::new(meta.namespace.as_deref()?, meta.name.as_deref()?).ok()?;
    let spec = &d.spec;
    let status = d.status.clone().unwrap_or_default();
    let progressing = status.conditions.iter().flatten().find(|c| c.type_.as_deref() == Some("Progressing"));
    Some(DeploymentView {
        workload,
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        template: serde_json::to_value(&spec.template).unwrap_or(Value::Null),
        rollout: RolloutStatus {
            generation: meta.generation.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            desired: spec.replicas.map_or(1, i64::from),
            replicas: status.replicas.map_or(0, i64::from),
            updated: status.updated_replicas.map_or(0, i64::from),
            available: status.available_replicas.map_or(0, i64::from),
            progressing_reason: progressing.and_then(|c| c.reason.clone()),
        },
    })
}
