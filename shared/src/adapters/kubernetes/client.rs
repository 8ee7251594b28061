//! A thin client over kube 5 for a node's drain: find the node of an instance, cordon and taint
//! it, list its pods, evict or delete one. It translates the API server's answers into typed
//! outcomes and errors; it decides nothing (`decisions::drain` does).
//!
//! kube's own retries are off (`default_retry = false`): left on, a pod a PodDisruptionBudget
//! holds answers its 429 only after minutes of silent retries, longer than the warning.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta, Preconditions as MetaPreconditions};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::Status;
use serde_json::json;

use super::limit::Limiter;
use crate::domain::{ClusterCa, Endpoint, InstanceId, PodPhase, PodView, ProviderId};

/// The taint a cordoned node gets besides `spec.unschedulable`: it says who cordoned it and why.
pub const INTERRUPTED_TAINT: &str = "spotkeeper.io/interrupted";
/// Page size for lists (a node has at most a few hundred pods; a cluster may have thousands of nodes).
const PAGE: u32 = 500;
/// How often a cordon is tried again when the node changed between its read and its patch.
const CORDON_TRIES: usize = 4;

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("the cluster endpoint {endpoint} is not a URL the client can use")]
    Endpoint {
        endpoint: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("the Kubernetes client could not be built")]
    Client(#[source] Box<kube::Error>),
    #[error("the cluster's API server could not be reached (connection or TLS)")]
    Unreachable(#[source] Box<kube::Error>),
    #[error(
        "the cluster's API server refused the credentials (401): an expired token, or a role without an EKS access entry"
    )]
    Unauthorized(#[source] Box<kube::Error>),
    #[error("the cluster's RBAC forbids it (403): {message}")]
    Forbidden {
        message: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("the API server answered {code} {reason}: {message}")]
    Api {
        code: u16,
        reason: String,
        message: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("the API server's answer could not be read")]
    Answer(#[source] Box<kube::Error>),
    #[error("node {0} kept changing under the cordon")]
    CordonRace(String),
}

impl KubeError {
    /// Whether the same call may succeed later: the server unreachable, overloaded or failing.
    /// A refused token is not retryable as it is: a new one must be minted first.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::CordonRace(_) => true,
            Self::Api { code, .. } => matches!(code, 409 | 429 | 500 | 502 | 503 | 504),
            Self::Endpoint { .. }
            | Self::Client(_)
            | Self::Unauthorized(_)
            | Self::Forbidden { .. }
            | Self::Answer(_) => false,
        }
    }

    /// The HTTP status the API server answered, when it answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Unauthorized(_) => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<kube::Error> for KubeError {
    fn from(error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(status) => match status.code {
                401 => Self::Unauthorized(Box::new(error)),
                403 => Self::Forbidden { message: status.message.clone(), source: Box::new(error) },
                code => Self::Api {
                    code,
                    reason: status.reason.clone(),
                    message: status.message.clone(),
                    source: Box::new(error),
                },
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => {
                Self::Unreachable(Box::new(error))
            }
            _ => Self::Answer(Box::new(error)),
        }
    }
}

/// A node as the API server answered it: its name, and the object a cordon patches against.
#[derive(Debug, Clone)]
pub struct ReadNode {
    pub name: String,
    node: Node,
}

/// What a cordon did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cordon {
    /// Unschedulable and tainted now, in one patch.
    Cordoned,
    /// It was both already: nothing written.
    AlreadyCordoned,
}

/// What an eviction came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictionOutcome {
    /// Accepted: the pod is terminating with its own grace period.
    Evicted,
    /// A PodDisruptionBudget allows no disruption now (429, cause `DisruptionBudget`).
    BlockedByPdb { message: String },
    /// More than one PodDisruptionBudget selects the pod (500): the API cannot evict it.
    MultiplePdbs,
    /// The pod is gone already (404).
    Gone,
    /// A pod of that name exists with another uid (409): not the one we meant, so left alone.
    Changed,
    /// The API server asked us to slow down (429 without a PDB).
    Throttled { retry_after: Option<Duration> },
}

/// What a delete came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Terminating (or gone at once, for a grace of 0 or a pod that was not running).
    Deleting,
    Gone,
    Changed,
}

/// A cluster's API server, as one identity (the token) sees it.
#[derive(Clone)]
pub struct KubeClient {
    pub(super) client: kube::Client,
    pub(super) limiter: Arc<Limiter>,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeClient")
    }
}

impl KubeClient {
    /// A client for `endpoint`, trusting only `ca` (so the OS trust store is never loaded), sending
    /// `token` as its bearer token.
    pub fn new(endpoint: &Endpoint, ca: &ClusterCa, token: &str) -> Result<Self, KubeError> {
        let uri = endpoint
            .as_str()
            .parse::<http::Uri>()
            .map_err(|source| KubeError::Endpoint { endpoint: endpoint.to_string(), source })?;
        let mut config = kube::Config::new(uri);
        config.root_cert = Some(ca.der().to_vec());
        config.default_retry = false;
        config.auth_info.token = Some(token.to_string().into());
        let client = kube::Client::try_from(config).map_err(|e| KubeError::Client(Box::new(e)))?;
        Ok(Self { client, limiter: Arc::default() })
    }

    /// The same client, its requests paced by `limiter` (shared with every client of the cluster).
    #[must_use]
    pub fn limited(self, limiter: Arc<Limiter>) -> Self {
        Self { limiter, ..self }
    }

    /// Whether the cluster answers this identity: one node listed (authenticated, and allowed to
    /// list nodes, as a drain must be).
    pub async fn check(&self) -> Result<(), KubeError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        self.limiter.acquire().await;
        nodes.list_metadata(&ListParams::default().limit(1)).await?;
        Ok(())
    }

    /// The name of the node running `instance`: by its `spec.providerID`, else by its private DNS
    /// name (the node's name on EKS, or its `InternalDNS` address). `None` when not in the cluster.
    pub async fn find_node(
        &self,
        instance: &InstanceId,
        private_dns: Option<&str>,
    ) -> Result<Option<String>, KubeError> {
        Ok(self.find_node_read(instance, private_dns).await?.map(|read| read.name))
    }

    /// The node running `instance`, as `find_node` finds it, and as it was read: a cordon right
    /// after starts from that read instead of reading the node again.
    pub async fn find_node_read(
        &self,
        instance: &InstanceId,
        private_dns: Option<&str>,
    ) -> Result<Option<ReadNode>, KubeError> {
        let found = |node: Node| node.metadata.name.clone().map(|name| ReadNode { name, node });
        let nodes: Api<Node> = Api::all(self.client.clone());
        let runs = |node: &Node| {
            node.spec
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .and_then(ProviderId::parse)
                .is_some_and(|p| p.instance == *instance)
        };
        // EKS names a node after its private DNS name: one GET, when it is the one.
        if let Some(dns) = private_dns.filter(|d| !d.is_empty()) {
            self.limiter.acquire_urgent().await;
            if let Some(node) = nodes.get_opt(dns).await?
                && runs(&node)
            {
                return Ok(found(node));
            }
        }
        let mut by_dns = None;
        let mut params = ListParams::default().limit(PAGE);
        loop {
            self.limiter.acquire_urgent().await;
            let page = nodes.list(&params).await?;
            for node in page.items {
                if runs(&node) {
                    return Ok(found(node));
                }
                let has_no_id = node.spec.as_ref().and_then(|s| s.provider_id.as_deref()).is_none_or(str::is_empty);
                if let Some(dns) = private_dns
                    && has_no_id
                    && by_dns.is_none()
                    && named(&node, dns)
                {
                    by_dns = found(node);
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(by_dns),
            }
        }
    }

    /// Marks the node unschedulable and taints it `spotkeeper.io/interrupted:NoSchedule`, in one
    /// patch guarded by the resourceVersion it read (taints are a list the patch replaces whole).
    /// Nothing is written when both are there already. Finding and cordoning a node go before
    /// other drains' evictions and lists in the cluster's request rate.
    pub async fn cordon(&self, node: &str) -> Result<Cordon, KubeError> {
        self.cordon_from(node, None).await
    }

    /// `cordon`, its first patch guarded by `read` (the node as `find_node_read` just read it)
    /// when given: one request fewer per node, in a mass interruption where every one counts.
    pub async fn cordon_from(&self, node: &str, read: Option<ReadNode>) -> Result<Cordon, KubeError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut read = read.filter(|r| r.name == node).map(|r| r.node);
        for _ in 0..CORDON_TRIES {
            let current = match read.take() {
                Some(current) => current,
                None => {
                    self.limiter.acquire_urgent().await;
                    nodes.get(node).await?
                }
            };
            let spec = current.spec.clone().unwrap_or_default();
            let mut taints = spec.taints.unwrap_or_default();
            let tainted = taints.iter().any(|t| t.key == INTERRUPTED_TAINT && t.effect == "NoSchedule");
            if spec.unschedulable == Some(true) && tainted {
                return Ok(Cordon::AlreadyCordoned);
            }
            if !tainted {
                taints.push(Taint {
                    key: INTERRUPTED_TAINT.to_string(),
                    effect: "NoSchedule".to_string(),
                    value: Some("true".to_string()),
                    time_added: None,
                });
            }
            let patch = json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "spec": {"unschedulable": true, "taints": taints},
            });
            self.limiter.acquire_urgent().await;
            match nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(Cordon::Cordoned),
                // Changed since the read (a kubelet's heartbeat, another cordon): read again.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(KubeError::CordonRace(node.to_string()))
    }

    /// The pods bound to `node`, in every namespace.
    pub async fn pods_on(&self, node: &str) -> Result<Vec<PodView>, KubeError> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
        Ok(self.list_all(&pods, params).await?.iter().map(view).collect())
    }

    /// Every object a list finds, page by page, each page a request in the cluster's rate.
    pub(super) async fn list_all<K>(&self, api: &Api<K>, params: ListParams) -> Result<Vec<K>, KubeError>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let mut params = params.limit(PAGE);
        let mut out = Vec::new();
        loop {
            self.limiter.acquire().await;
            let page = api.list(&params).await?;
            out.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(out),
            }
        }
    }

    /// Asks for `pod`'s eviction (policy/v1, its uid as precondition, `grace` when given, else
    /// the pod's own): the PodDisruptionBudgets decide. kube's own `evict` drops the delete
    /// options, so the Eviction is posted whole.
    pub async fn evict(&self, pod: &PodView, grace: Option<Duration>) -> Result<EvictionOutcome, KubeError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let eviction = k8s_openapi::api::policy::v1::Eviction {
            metadata: ObjectMeta {
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                ..ObjectMeta::default()
            },
            delete_options: Some(DeleteOptions {
                preconditions: Some(MetaPreconditions { uid: Some(pod.uid.clone()), resource_version: None }),
                grace_period_seconds: grace.map(whole_seconds),
                ..DeleteOptions::default()
            }),
        };
        self.limiter.acquire().await;
        let answer: Result<Status, kube::Error> =
            pods.create_subresource("eviction", &pod.name, &PostParams::default(), &eviction).await;
        let status = match answer {
            Ok(_) => return Ok(EvictionOutcome::Evicted),
            Err(kube::Error::Api(status)) => status,
            Err(e) => return Err(e.into()),
        };
        let causes = status.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
        match status.code {
            429 if causes.iter().any(|c| c.reason == "DisruptionBudget") => {
                Ok(EvictionOutcome::BlockedByPdb { message: status.message.clone() })
            }
            429 => {
                let seconds = status.details.as_ref().map_or(0, |d| d.retry_after_seconds);
                Ok(EvictionOutcome::Throttled {
                    retry_after: (seconds > 0).then(|| Duration::from_secs(u64::from(seconds))),
                })
            }
            500 if status.message.contains("more than one PodDisruptionBudget") => Ok(EvictionOutcome::MultiplePdbs),
            404 => Ok(EvictionOutcome::Gone),
            409 => Ok(EvictionOutcome::Changed),
            _ => Err(kube::Error::Api(status).into()),
        }
    }

    /// Deletes `pod` with `grace` (whole seconds, rounded up), its uid as precondition; no
    /// PodDisruptionBudget is consulted.
    pub async fn delete(&self, pod: &PodView, grace: Duration) -> Result<DeleteOutcome, KubeError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(u32::try_from(whole_seconds(grace)).unwrap_or(u32::MAX)),
            preconditions: Some(Preconditions { uid: Some(pod.uid.clone()), resource_version: None }),
            ..DeleteParams::default()
        };
        self.limiter.acquire().await;
        match pods.delete(&pod.name, &params).await {
            Ok(_) => Ok(DeleteOutcome::Deleting),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(DeleteOutcome::Gone),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(DeleteOutcome::Changed),
            Err(e) => Err(e.into()),
        }
    }
}

/// A grace period in whole seconds, rounded up (a part second is still time the pod needs).
fn whole_seconds(grace: Duration) -> i64 {
    i64::try_from(grace.as_secs() + u64::from(grace.subsec_nanos() > 0)).unwrap_or(i64::MAX)
}

/// Whether the node is named `dns` or has it as its `InternalDNS` address.
fn named(node: &Node, dns: &str) -> bool {
    node.metadata.name.as_deref() == Some(dns)
        || node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .is_some_and(|a| a.iter().any(|a| a.type_ == "InternalDNS" && a.address == dns))
}

/// The drain's view of a pod.
fn view(pod: &Pod) -> PodView {
    let meta = &pod.metadata;
    PodView {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        owner_kinds: meta.owner_references.iter().flatten().map(|o| o.kind.clone()).collect(),
        replica_set: meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")
            .map(|o| o.name.clone()),
        mirror: meta.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror")),
        phase: PodPhase::parse(pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()),
        deletion: meta.deletion_timestamp.as_ref().and_then(|t| {
            chrono::DateTime::from_timestamp(t.0.as_second(), u32::try_from(t.0.subsec_nanosecond()).unwrap_or(0))
        }),
        grace_seconds: pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30),
    }
}
