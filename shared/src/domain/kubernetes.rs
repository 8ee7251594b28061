//! Kubernetes (EKS) as spotkeeper sees it: a group's `kubernetes` block (which cluster, how to
//! reach it, what to do on a rebalance and with a PodDisruptionBudget that still blocks near the
//! deadline), how a node names its EC2 instance, and the little of a pod a drain decides on.
//!
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::InstanceId;
use super::failover::FailoverSpec;
pub use super::ids::ClusterName;

/// A cluster's API endpoint: an `https://` URL with a host and no credentials in it (the token
/// is the only credential, and it travels in a header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint(String);

impl Endpoint {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Endpoint {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let rest = value.strip_prefix("https://").unwrap_or_default();
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit_once(':').map_or(authority, |(host, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() { host } else { authority }
        });
        let ok = !host.is_empty()
            && !authority.contains('@')
            && value.len() <= 2048
            && value.bytes().all(|b| b.is_ascii_graphic())
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
        if ok {
            Ok(Self(value.trim_end_matches('/').to_string()))
        } else {
            let shown: String = value.chars().take(60).collect();
            Err(format!("{shown:?} is not a cluster endpoint (an https:// URL with a host and no user)"))
        }
    }
}

impl From<Endpoint> for String {
    fn from(value: Endpoint) -> Self {
        value.0
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A cluster's certificate authority, as PEM (one or more `CERTIFICATE` blocks); kept with the
/// certificates' DER, which the client trusts instead of the OS store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterCa {
    pem: String,
    der: Vec<Vec<u8>>,
}

impl ClusterCa {
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The certificates, DER-encoded, in the PEM's order.
    pub fn der(&self) -> &[Vec<u8>] {
        &self.der
    }
}

impl fmt::Debug for ClusterCa {
    // Public, but long: a count says enough in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterCa({} certificates)", self.der.len())
    }
}

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

impl TryFrom<String> for ClusterCa {
    type Error = String;
    fn try_from(pem: String) -> Result<Self, Self::Error> {
        let mut der = Vec::new();
        let mut rest = pem.as_str();
        while let Some(start) = rest.find(BEGIN) {
            let body = &rest[start + BEGIN.len()..];
            let Some(end) = body.find(END) else {
                return Err("the cluster CA has a certificate without its END line".to_string());
            };
            let b64: String = body[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
            match STANDARD.decode(b64) {
                Ok(bytes) if !bytes.is_empty() => der.push(bytes),
                _ => return Err(format!("the cluster CA's certificate {} is not base64", der.len() + 1)),
            }
            rest = &body[end + END.len()..];
        }
        if der.is_empty() {
            return Err("the cluster CA is not PEM (no -----BEGIN CERTIFICATE----- block)".to_string());
        }
        Ok(Self { pem, der })
    }
}

impl From<ClusterCa> for String {
    fn from(value: ClusterCa) -> Self {
        value.pem
    }
}

/// What a rebalance recommendation does to a group's node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebalanceAction {
    /// Nothing: the node keeps taking pods until a warning comes.
    Off,
    /// No new pods (what the peers do by default): the warning may never come.
    #[default]
    Cordon,
    /// Cordon and move the pods off at once.
    Drain,
}

/// What to do with a pod a PodDisruptionBudget still holds when its time runs out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PdbPolicy {
    /// Leave it (the instance takes it down) and report it.
    Respect,
    /// Delete it with what is left of the time as its grace: it stops cleanly before the
    /// instance does.
    #[default]
    DeleteAtDeadline,
}

/// How long an evicted pod may take to stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PodGrace {
    /// Its own `terminationGracePeriodSeconds`, shortened so it ends before the instance does:
    /// a pod still stopping when the instance goes is killed without its last seconds.
    #[default]
    Fit,
    /// Its own, as it says, even past the instance's end.
    Own,
}

/// A group's `kubernetes` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawKubernetes")]
pub struct KubernetesSpec {
    pub cluster: ClusterName,
    /// With `ca`, or neither (then both are read once from `eks:DescribeCluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<ClusterCa>,
    #[serde(default)]
    pub rebalance: RebalanceAction,
    #[serde(default)]
    pub pdb_policy: PdbPolicy,
    #[serde(default)]
    pub pod_grace: PodGrace,
    /// Opted-in Deployments of these namespaces fail over to Fargate (none: they are drained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverSpec>,
}

/// The block as written, before the rule that ties endpoint and CA.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetes {
    cluster: ClusterName,
    #[serde(default)]
    endpoint: Option<Endpoint>,
    #[serde(default)]
    ca: Option<ClusterCa>,
    #[serde(default)]
    rebalance: RebalanceAction,
    #[serde(default)]
    pdb_policy: PdbPolicy,
    #[serde(default)]
    pod_grace: PodGrace,
    #[serde(default)]
    failover: Option<FailoverSpec>,
}

impl TryFrom<RawKubernetes> for KubernetesSpec {
    type Error = String;
    fn try_from(raw: RawKubernetes) -> Result<Self, Self::Error> {
        // An EKS endpoint's certificate is signed by the cluster's own CA, never a public one:
        // an endpoint without it could not be trusted without loading the OS store for nothing.
        if raw.endpoint.is_some() != raw.ca.is_some() {
            return Err("kubernetes: give the cluster's endpoint and ca together, or neither".to_string());
        }
        Ok(Self {
            cluster: raw.cluster,
            endpoint: raw.endpoint,
            ca: raw.ca,
            rebalance: raw.rebalance,
            pdb_policy: raw.pdb_policy,
            pod_grace: raw.pod_grace,
            failover: raw.failover,
        })
    }
}

/// A node's `spec.providerID` on EKS: `aws:///<az>/<instance-id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderId {
    pub az: String,
    pub instance: InstanceId,
}

impl ProviderId {
    /// The instance behind a provider id; `None` for anything else (Fargate, other clouds).
    pub fn parse(value: &str) -> Option<Self> {
        let (az, id) = value.strip_prefix("aws:///")?.split_once('/')?;
        let az_ok = !az.is_empty() && az.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !az_ok {
            return None;
        }
        let instance = InstanceId::try_from(id.to_string()).ok()?;
        Some(Self { az: az.to_string(), instance })
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "aws:///{}/{}", self.az, self.instance)
    }
}

/// A pod's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    pub fn parse(value: &str) -> Self {
        match value {
            "Pending" => Self::Pending,
            "Running" => Self::Running,
            "Succeeded" => Self::Succeeded,
            "Failed" => Self::Failed,
            _ => Self::Unknown,
        }
    }
}

/// What a drain needs to know of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    /// The eviction's precondition: a pod recreated under the same name is not ours to evict.
    pub uid: String,
    /// The kinds of its owners (`ReplicaSet`, `DaemonSet`, `Node`...).
    pub owner_kinds: Vec<String>,
    /// The ReplicaSet that controls it, if one does (a Deployment's pods have one).
    pub replica_set: Option<String>,
    /// A static pod's mirror (annotation `kubernetes.io/config.mirror`): the API cannot remove it.
    pub mirror: bool,
    pub phase: PodPhase,
    /// When its deletion was asked for (it is terminating).
    pub deletion: Option<DateTime<Utc>>,
    /// `spec.terminationGracePeriodSeconds` (30 when unset, as the API server defaults it).
    pub grace_seconds: i64,
}

impl PodView {
    /// `namespace/name`, as kubectl shows it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What started a node's drain. A warning outranks a rebalance: it takes over a rebalance's
/// drain (or continues its cordon) and a rebalance never reopens a warning's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrainTrigger {
    Rebalance,
    Warning,
}

impl DrainTrigger {
    /// The rank stored with the drain, compared in the table's condition.
    pub fn rank(self) -> u8 {
        match self {
            Self::Rebalance => 1,
            Self::Warning => 2,
        }
    }

    pub fn from_rank(rank: u8) -> Option<Self> {
        match rank {
            1 => Some(Self::Rebalance),
            2 => Some(Self::Warning),
            _ => None,
        }
    }
}

/// Where a node's drain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrainState {
    /// A delivery is at it (or died at it: its lease tells).
    Acting,
    /// Over: what happened is in the tally.
    Done,
    /// The cluster could not be reached in time.
    Failed,
}

/// What a node's drain has done so far, pod by pod (`namespace/name`); kept with the drain, so
/// a delivery that continues a dead one's drain reports the whole of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainTally {
    /// The node, once found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default)]
    pub cordoned: bool,
    /// Evictions the API server accepted.
    #[serde(default)]
    pub evicted: Vec<String>,
    /// Pods a PodDisruptionBudget held at least once.
    #[serde(default)]
    pub blocked: Vec<String>,
    /// Deleted at the deadline, past their PodDisruptionBudget.
    #[serde(default)]
    pub deleted: Vec<String>,
    /// Still on the node when the drain ended (other than DaemonSet, mirror and finished pods).
    #[serde(default)]
    pub left: Vec<String>,
    /// When only the pods that stay were left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emptied_at: Option<DateTime<Utc>>,
}

impl DrainTally {
    /// Adds `pod` to a list once.
    pub fn add(list: &mut Vec<String>, pod: &str) {
        if !list.iter().any(|p| p == pod) {
            list.push(pod.to_string());
        }
    }
}

/// A node's drain as the table keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainRecord {
    pub instance: InstanceId,
    pub trigger: DrainTrigger,
    pub state: DrainState,
    pub tally: DrainTally,
}

/// One selector of an ACTIVE EKS Fargate profile: pods of `namespace` carrying every one of
/// `labels` run on Fargate. A profile with several selectors gives one of these each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FargateSelector {
    pub profile: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

impl FargateSelector {
    /// EKS's rule: the namespace matches and every label of the selector is on the pod with a
    /// matching value; the pod may carry more. Namespace and label values may hold the
    /// wildcards `*` (any run of characters) and `?` (one character); label keys are literal.
    pub fn selects(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        glob(&self.namespace, namespace)
            && self.labels.iter().all(|(key, wanted)| labels.get(key).is_some_and(|value| glob(wanted, value)))
    }
}

/// Whether `text` matches `pattern`, `*` and `?` being wildcards: greedy, going back to the last
/// `*` on a mismatch, so it takes linear time for the short strings of a selector.
fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and how much of the text it has taken up to now.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((at, taken)) => {
                    p = at + 1;
                    t = taken + 1;
                    star = Some((at, taken + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\nAAEC\n-----END CERTIFICATE-----\n";

    #[test]
    fn cluster_names_follow_eks() {
        for good in ["a", "prod-workers", "Prod_1", &"x".repeat(100)] {
            assert!(ClusterName::try_from(good.to_string()).is_ok(), "{good}");
        }
        for bad in ["", "-a", "_a", "a b", "a/b", "a.b", &"x".repeat(101)] {
            assert!(ClusterName::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_are_https_urls_with_a_host() {
        for good in ["https://ABC.gr7.eu-west-1.eks.amazonaws.com", "https://127.0.0.1:6443/", "https://h/x"] {
            assert!(Endpoint::try_from(good.to_string()).is_ok(), "{good}");
        }
        assert_eq!(
            Endpoint::try_from("https://127.0.0.1:6443/".to_string()).map(String::from).as_deref(),
            Ok("https://127.0.0.1:6443")
        );
        for bad in
            ["", "http://h", "https://", "https://u:p@h", "https://h x", "ftp://h", "https://:443", "https://h_/"]
        {
            assert!(Endpoint::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ca_is_pem_certificates() {
        let one = ClusterCa::try_from(PEM.to_string()).expect("a CA");
        assert_eq!(one.der().len(), 1);
        assert_eq!(one.der()[0][..2], [0x30, 0x82], "a DER sequence");
        let two = ClusterCa::try_from(format!("{PEM}{PEM}")).expect("a bundle");
        assert_eq!(two.der().len(), 2);
        assert_eq!(format!("{two:?}"), "ClusterCa(2 certificates)");
        for bad in [
            "",
            "MIIB",
            "-----BEGIN CERTIFICATE-----\nMIIB",
            "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----",
        ] {
            assert!(ClusterCa::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_block_has_defaults_and_kebab_case_values() {
        let spec: KubernetesSpec = serde_json::from_str(r#"{"cluster": "prod"}"#).expect("a block");
        assert_eq!((spec.rebalance, spec.pdb_policy), (RebalanceAction::Cordon, PdbPolicy::DeleteAtDeadline));
        assert_eq!(spec.endpoint, None);
        let json = serde_json::json!({"cluster": "prod", "endpoint": "https://k.example", "ca": PEM, "rebalance": "drain", "pdb_policy": "respect", "pod_grace": "own"});
        let spec: KubernetesSpec = serde_json::from_value(json.clone()).expect("a block");
        assert_eq!(
            (spec.rebalance, spec.pdb_policy, spec.pod_grace),
            (RebalanceAction::Drain, PdbPolicy::Respect, PodGrace::Own)
        );
        assert_eq!(serde_json::to_value(&spec).expect("serializes"), json, "round trip");
        for bad in [
            serde_json::json!({"cluster": "prod", "endpoint": "https://k.example"}),
            serde_json::json!({"cluster": "prod", "ca": PEM}),
            serde_json::json!({"cluster": "prod", "rebalance": "evict"}),
            serde_json::json!({"cluster": "prod", "pdb-policy": "respect"}),
            serde_json::json!({"cluster": "prod", "pod_grace": "30"}),
            serde_json::json!({"cluster": "-prod"}),
            serde_json::json!({}),
        ] {
            assert!(serde_json::from_value::<KubernetesSpec>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn provider_ids_name_the_instance() {
        let id = ProviderId::parse("aws:///us-east-1a/i-0b22a22eec53b9321").expect("an EC2 node");
        assert_eq!((id.az.as_str(), id.instance.as_str()), ("us-east-1a", "i-0b22a22eec53b9321"));
        assert_eq!(id.to_string(), "aws:///us-east-1a/i-0b22a22eec53b9321");
        for bad in [
            "",
            "aws:///us-east-1a/",
            "aws:///us-east-1a/i-XYZ",
            "aws:///i-0123abcd",
            "aws:////i-0123abcd",
            "aws://us-east-1a/i-0123abcd",
            "aws:///us-east-1a/i-0123abcd/x",
            "aws:///us-east-1a/fargate-ip-10-0-0-1",
            "gce://p/z/i-0123abcd",
        ] {
            assert_eq!(ProviderId::parse(bad), None, "{bad}");
        }
    }

    fn pod_labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    fn selector(namespace: &str, labels: &[(&str, &str)]) -> FargateSelector {
        FargateSelector {
            profile: "spotkeeper-failover".into(),
            namespace: namespace.into(),
            labels: pod_labels(labels),
        }
    }

    #[test]
    fn a_fargate_selector_wants_its_namespace_and_all_its_labels() {
        let fargate = selector("shop", &[("spotkeeper.io/compute", "fargate")]);
        let pod = pod_labels(&[("spotkeeper.io/compute", "fargate"), ("app", "web")]);
        assert!(fargate.selects("shop", &pod), "more labels on the pod are fine");
        assert!(!fargate.selects("shop-2", &pod), "another namespace");
        assert!(!fargate.selects("", &pod));
        assert!(!fargate.selects("shop", &pod_labels(&[("app", "web")])), "the label missing");
        assert!(!fargate.selects("shop", &pod_labels(&[("spotkeeper.io/compute", "spot")])), "another value");
        assert!(!fargate.selects("shop", &pod_labels(&[("spotkeeper.io/Compute", "fargate")])), "keys are exact");

        let two = selector("shop", &[("spotkeeper.io/compute", "fargate"), ("tier", "front")]);
        assert!(!two.selects("shop", &pod), "every label of the selector, not one of them");
        assert!(two.selects("shop", &pod_labels(&[("spotkeeper.io/compute", "fargate"), ("tier", "front")])));

        let namespace_only = selector("shop", &[]);
        assert!(namespace_only.selects("shop", &BTreeMap::new()), "no labels: the whole namespace");
        assert!(!namespace_only.selects("kube-system", &pod));
    }

    #[test]
    fn a_fargate_selector_takes_wildcards_in_namespace_and_label_values() {
        let pod = pod_labels(&[("spotkeeper.io/compute", "fargate"), ("app", "web-1")]);
        assert!(selector("*", &[]).selects("anything", &pod));
        assert!(selector("shop-*", &[]).selects("shop-", &pod), "* takes nothing too");
        assert!(selector("shop-*", &[]).selects("shop-eu-west", &pod));
        assert!(!selector("shop-*", &[]).selects("shop", &pod));
        assert!(selector("sh?p", &[]).selects("shop", &pod));
        assert!(!selector("sh?p", &[]).selects("shp", &pod), "? is exactly one character");
        assert!(selector("*-prod-*", &[]).selects("a-b-prod-c", &pod), "going back to the last *");
        assert!(!selector("*-prod-*", &[]).selects("a-prod", &pod));
        assert!(selector("ns", &[("app", "web-?")]).selects("ns", &pod));
        assert!(selector("ns", &[("app", "*")]).selects("ns", &pod));
        assert!(!selector("ns", &[("tier", "*")]).selects("ns", &pod), "a wildcard value still needs the key");
        assert!(!selector("ns", &[("app*", "web-1")]).selects("ns", &pod), "keys take no wildcards");
        assert!(selector("ns", &[("spotkeeper.io/compute", "farg*e")]).selects("ns", &pod));
        assert!(!selector("ns", &[("app", "web")]).selects("ns", &pod), "no implied prefix match");
        assert!(selector("é?", &[]).selects("éü", &pod), "characters, not bytes");
    }
}
