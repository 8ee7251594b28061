//! A group's cluster, reached: its endpoint and CA (the group's, else `eks:DescribeCluster`'s,
//! read once), a token minted from the function's own credentials and re-minted well before its
//! 15 minutes run out, and one request rate per cluster shared by every drain of the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_eks::types::{FargateProfile, FargateProfileStatus};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use super::client::{KubeClient, KubeError};
use super::limit::Limiter;
use super::token::{TokenError, mint_token};
use crate::adapters::aws::AwsError;
use crate::domain::{ClusterCa, ClusterName, Endpoint, FargateSelector, KubernetesSpec};

/// A token is replaced when less than this is left of it: a drain started now must not outlive it.
const TOKEN_SPARE: chrono::Duration = chrono::Duration::minutes(5);

/// Why a cluster could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("EKS cluster {0} does not exist in this account and region")]
    NoSuchCluster(ClusterName),
    /// An EKS call about the cluster failed (`DescribeCluster`, its Fargate profiles'): the
    /// source names which.
    #[error("EKS cluster {cluster} could not be read from EKS")]
    Describe {
        cluster: ClusterName,
        #[source]
        source: AwsError,
    },
    #[error("EKS cluster {cluster} is {status}, not ACTIVE: it has no endpoint to drain through")]
    NotActive { cluster: ClusterName, status: String },
    #[error("EKS cluster {cluster}'s description has {what}")]
    Described { cluster: ClusterName, what: String },
    #[error("the function has no AWS credentials to mint an EKS token with")]
    NoCredentials,
    #[error("the function's AWS credentials could not be read")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Kube(#[from] KubeError),
}

impl ConnectError {
    /// Whether trying again may help: AWS or the cluster failing now, not a missing cluster or a
    /// refused identity.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Describe { source, .. } => {
                !matches!(source.code.as_deref(), Some("AccessDeniedException" | "InvalidParameterException"))
            }
            Self::Credentials(_) => true,
            Self::Kube(e) => e.is_retryable(),
            Self::NoSuchCluster(_) | Self::NotActive { .. } | Self::Described { .. } | Self::NoCredentials => false,
            Self::Token(_) => false,
        }
    }
}

struct Reached {
    endpoint: Endpoint,
    ca: ClusterCa,
    limiter: Arc<Limiter>,
    client: Option<(KubeClient, DateTime<Utc>)>,
}

/// The clusters this process talks to.
#[derive(Clone)]
pub struct Clusters {
    eks: aws_sdk_eks::Client,
    credentials: Option<SharedCredentialsProvider>,
    region: String,
    reached: Arc<Mutex<HashMap<ClusterName, Reached>>>,
}

impl std::fmt::Debug for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clusters").field("region", &self.region).finish_non_exhaustive()
    }
}

impl Clusters {
    pub fn new(eks: aws_sdk_eks::Client, credentials: Option<SharedCredentialsProvider>, region: String) -> Self {
        Self { eks, credentials, region, reached: Arc::default() }
    }

    /// A client for the group's cluster, as of `now` (the token's signing time).
    pub async fn connect(&self, spec: &KubernetesSpec, now: DateTime<Utc>) -> Result<KubeClient, ConnectError> {
        let known = self.lock().get(&spec.cluster).and_then(|r| {
            let same =
                spec.endpoint.as_ref().is_none_or(|e| *e == r.endpoint) && spec.ca.as_ref().is_none_or(|c| *c == r.ca);
            same.then(|| (r.endpoint.clone(), r.ca.clone(), r.limiter.clone(), r.client.clone()))
        });
        if let Some((_, _, _, Some((client, expires_at)))) = &known
            && *expires_at - now > TOKEN_SPARE
        {
            return Ok(client.clone());
        }
        let (endpoint, ca, limiter) = match (known, &spec.endpoint, &spec.ca) {
            (Some((endpoint, ca, limiter, _)), _, _) => (endpoint, ca, limiter),
            (None, Some(endpoint), Some(ca)) => (endpoint.clone(), ca.clone(), Arc::default()),
            (None, _, _) => {
                let (endpoint, ca) = self.describe(&spec.cluster).await?;
                (endpoint, ca, Arc::default())
            }
        };
        let credentials = self.credentials.as_ref().ok_or(ConnectError::NoCredentials)?;
        let credentials = credentials.provide_credentials().await.map_err(ConnectError::Credentials)?;
        let token = mint_token(&credentials, &self.region, spec.cluster.as_str(), now)?;
        let client = KubeClient::new(&endpoint, &ca, &token.value)?.limited(limiter.clone());
        self.lock().insert(
            spec.cluster.clone(),
            Reached { endpoint, ca, limiter, client: Some((client.clone(), token.expires_at)) },
        );
        Ok(client)
    }

    /// Forgets the cluster's token and description: after a refused token, the next connect
    /// mints anew and reads the cluster again.
    pub fn forget(&self, cluster: &ClusterName) {
        self.lock().remove(cluster);
    }

    async fn describe(&self, cluster: &ClusterName) -> Result<(Endpoint, ClusterCa), ConnectError> {
        let answer = self
            .eks
            .describe_cluster()
            .name(cluster.as_str())
            .send()
            .await
            .map_err(|e| eks_failure(cluster, AwsError::from_sdk("DescribeCluster", e)))?;
        let described = |what: &str| ConnectError::Described { cluster: cluster.clone(), what: what.to_string() };
        let found = answer.cluster.ok_or_else(|| described("no cluster in it"))?;
        if let Some(status) = found.status.as_ref().filter(|s| s.as_str() != "ACTIVE" && s.as_str() != "UPDATING") {
            return Err(ConnectError::NotActive { cluster: cluster.clone(), status: status.as_str().to_string() });
        }
        let endpoint = found.endpoint.ok_or_else(|| described("no endpoint"))?;
        let endpoint = Endpoint::try_from(endpoint)
            .map_err(|why| described(&format!("an endpoint spotkeeper cannot use: {why}")))?;
        let data =
            found.certificate_authority.and_then(|c| c.data).ok_or_else(|| described("no certificate authority"))?;
        let pem = STANDARD
            .decode(data.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| described("a certificate authority that is not base64 PEM"))?;
        let ca =
            ClusterCa::try_from(pem).map_err(|why| described(&format!("an unusable certificate authority: {why}")))?;
        Ok((endpoint, ca))
    }

    /// The selectors of the cluster's ACTIVE Fargate profiles, one per selector (a profile being
    /// created or deleted places no pod yet, or no more). Empty when no profile is usable.
    pub async fn fargate_selectors(&self, cluster: &ClusterName) -> Result<Vec<FargateSelector>, ConnectError> {
        let mut names = Vec::new();
        let mut pages = self.eks.list_fargate_profiles().cluster_name(cluster.as_str()).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| eks_failure(cluster, AwsError::from_sdk("ListFargateProfiles", e)))?;
            names.extend(page.fargate_profile_names.unwrap_or_default());
        }
        // One by one: a cluster has at most ten profiles by default, and the API's handlers need
        // a future that is Send for any lifetime, which a buffered stream over borrows is not.
        let mut selectors = Vec::new();
        for name in &names {
            let answer = self
                .eks
                .describe_fargate_profile()
                .cluster_name(cluster.as_str())
                .fargate_profile_name(name)
                .send()
                .await;
            match answer {
                Ok(answer) => {
                    selectors.extend(answer.fargate_profile.map(|p| usable_selectors(name, &p)).unwrap_or_default());
                }
                Err(e) => {
                    let error = AwsError::from_sdk("DescribeFargateProfile", e);
                    // Deleted since the list: it selects nothing, which is not the cluster missing.
                    if error.code.as_deref() != Some(NOT_FOUND) {
                        return Err(eks_failure(cluster, error));
                    }
                }
            }
        }
        Ok(selectors)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClusterName, Reached>> {
        // A drain that panicked while holding the map left nothing half-written in it.
        self.reached.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

const NOT_FOUND: &str = "ResourceNotFoundException";

/// An EKS call about `cluster` that failed: the cluster missing, or a failure whose code says
/// whether to retry (`ConnectError::is_retryable`).
fn eks_failure(cluster: &ClusterName, error: AwsError) -> ConnectError {
    if error.code.as_deref() == Some(NOT_FOUND) {
        ConnectError::NoSuchCluster(cluster.clone())
    } else {
        ConnectError::Describe { cluster: cluster.clone(), source: error }
    }
}

/// A described profile's selectors, if it is ACTIVE; a selector without a namespace (EKS
/// requires one) selects nothing.
fn usable_selectors(name: &str, profile: &FargateProfile) -> Vec<FargateSelector> {
    if profile.status() != Some(&FargateProfileStatus::Active) {
        return Vec::new();
    }
    profile
        .selectors()
        .iter()
        .filter_map(|s| {
            Some(FargateSelector {
                profile: name.to_string(),
                namespace: s.namespace()?.to_string(),
                labels: s.labels().map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use aws_sdk_eks::types::FargateProfileSelector;

    use super::*;

    fn profile(status: FargateProfileStatus) -> FargateProfile {
        FargateProfile::builder()
            .fargate_profile_name("spotkeeper-failover")
            .status(status)
            .selectors(
                FargateProfileSelector::builder().namespace("shop").labels("spotkeeper.io/compute", "fargate").build(),
            )
            .selectors(FargateProfileSelector::builder().namespace("kube-system").build())
            .selectors(FargateProfileSelector::builder().labels("orphan", "label").build())
            .build()
    }

    #[test]
    fn only_an_active_profiles_selectors_count_one_each() {
        let selectors = usable_selectors("spotkeeper-failover", &profile(FargateProfileStatus::Active));
        let shown: Vec<(&str, &str, usize)> =
            selectors.iter().map(|s| (s.profile.as_str(), s.namespace.as_str(), s.labels.len())).collect();
        assert_eq!(shown, [("spotkeeper-failover", "shop", 1), ("spotkeeper-failover", "kube-system", 0)]);
        assert_eq!(selectors[0].labels.get("spotkeeper.io/compute").map(String::as_str), Some("fargate"));
        for status in [
            FargateProfileStatus::Creating,
            FargateProfileStatus::CreateFailed,
            FargateProfileStatus::Deleting,
            FargateProfileStatus::DeleteFailed,
        ] {
            assert!(usable_selectors("p", &profile(status.clone())).is_empty(), "{status:?}");
        }
        assert!(usable_selectors("p", &FargateProfile::builder().build()).is_empty(), "no status");
    }

    #[test]
    fn eks_failures_say_whether_a_retry_can_help() {
        let cluster = ClusterName::try_from("prod".to_string()).expect("a name");
        let failure = |code: &str| {
            eks_failure(
                &cluster,
                AwsError { operation: "ListFargateProfiles", code: Some(code.to_string()), message: String::new() },
            )
        };
        let missing = failure("ResourceNotFoundException");
        assert!(matches!(missing, ConnectError::NoSuchCluster(_)) && !missing.is_retryable(), "{missing}");
        for code in ["ThrottlingException", "ServerException", "ServiceUnavailableException"] {
            assert!(failure(code).is_retryable(), "{code}");
        }
        for code in ["AccessDeniedException", "InvalidParameterException"] {
            assert!(!failure(code).is_retryable(), "{code}");
        }
        let no_answer = eks_failure(
            &cluster,
            AwsError { operation: "ListFargateProfiles", code: None, message: "no answer in time".into() },
        );
        assert!(no_answer.is_retryable());
        assert_eq!(failure("ServerException").to_string(), "EKS cluster prod could not be read from EKS");
    }
}
