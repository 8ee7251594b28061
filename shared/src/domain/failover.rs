//! Workloads that fail over to Fargate: a group's `failover` block (inside `kubernetes`), a
//! Deployment as the failover decides on it, where its failover stands, and the annotations it
//! is kept in on the Deployment itself.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::GroupName;

/// The annotations a failover is kept in on the Deployment.
pub mod annotations {
    /// The annotation a Deployment opts in with (`spotkeeper.io/failover: fargate`).
    pub const OPT_IN: &str = "spotkeeper.io/failover";
    pub const OPT_IN_VALUE: &str = "fargate";
    /// Where the failover stands (`WorkloadState`, kebab-case).
    pub const STATE: &str = "spotkeeper.io/state";
    pub const MIGRATED_AT: &str = "spotkeeper.io/migrated-at";
    pub const REASON: &str = "spotkeeper.io/reason";
    pub const LAST_RECOVERED_AT: &str = "spotkeeper.io/last-recovered-at";
    pub const FAILED_RECOVERY_ATTEMPTS: &str = "spotkeeper.io/failed-recovery-attempts";
    /// The pod template's `nodeSelector` and `affinity.nodeAffinity` as they were before the
    /// failover (JSON), restored exactly on the way back.
    pub const SAVED_PLACEMENT: &str = "spotkeeper.io/saved-placement";
}

use annotations::{OPT_IN, OPT_IN_VALUE, STATE};

/// A Kubernetes object name in a namespace (`namespace/name`): RFC 1123 labels and subdomains.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkloadRef {
    pub namespace: String,
    pub name: String,
}

fn dns_label(value: &str, max: usize, dots: bool) -> bool {
    let bytes = value.as_bytes();
    !value.is_empty()
        && value.len() <= max
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.'))
}

/// A namespace's name: an RFC 1123 label.
pub fn is_namespace(value: &str) -> bool {
    dns_label(value, 63, false)
}

impl WorkloadRef {
    pub fn new(namespace: &str, name: &str) -> Result<Self, String> {
        if !is_namespace(namespace) {
            return Err(format!("{namespace:?} is not a namespace (lower-case letters, digits and '-', at most 63)"));
        }
        if !dns_label(name, 253, true) {
            return Err(format!("{name:?} is not a Deployment's name (lower-case letters, digits, '-' and '.')"));
        }
        Ok(Self { namespace: namespace.to_string(), name: name.to_string() })
    }
}

impl TryFrom<String> for WorkloadRef {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let (namespace, name) = value.split_once('/').ok_or_else(|| format!("{value:?} is not namespace/name"))?;
        Self::new(namespace, name)
    }
}

impl From<WorkloadRef> for String {
    fn from(value: WorkloadRef) -> Self {
        value.to_string()
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A label the Fargate profile selects, written `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProfileLabel {
    pub key: String,
    pub value: String,
}

impl Default for ProfileLabel {
    fn default() -> Self {
        Self { key: "spotkeeper.io/compute".to_string(), value: "fargate".to_string() }
    }
}

impl TryFrom<String> for ProfileLabel {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        let bad = || format!("{text:?} is not a label key=value");
        let (key, value) = text.split_once('=').ok_or_else(bad)?;
        let name = key.rsplit('/').next().unwrap_or_default();
        let key_ok = key.len() <= 316
            && !name.is_empty()
            && name.len() <= 63
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        let value_ok =
            value.len() <= 63 && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if key_ok && value_ok { Ok(Self { key: key.to_string(), value: value.to_string() }) } else { Err(bad()) }
    }
}

impl From<ProfileLabel> for String {
    fn from(value: ProfileLabel) -> Self {
        value.to_string()
    }
}

impl fmt::Display for ProfileLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// A group's `kubernetes.failover` block: which namespaces' opted-in Deployments may move to
/// Fargate, the label their profile selects, and how long a rollout may take. The way back
/// follows the group's recovery policy (cooldown, backoff, windows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawFailover")]
pub struct FailoverSpec {
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub label: ProfileLabel,
    /// The failover's rollout, to done or failed.
    #[serde(with = "humantime_serde", default = "default_rollout_timeout")]
    pub rollout_timeout: Duration,
    /// A way back's rollout: past it, the Deployment goes back to Fargate.
    #[serde(with = "humantime_serde", default = "default_recovery_timeout")]
    pub recovery_timeout: Duration,
}

fn default_rollout_timeout() -> Duration {
    Duration::from_secs(10 * 60)
}

fn default_recovery_timeout() -> Duration {
    Duration::from_secs(3 * 60)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    namespaces: Vec<String>,
    #[serde(default)]
    label: ProfileLabel,
    #[serde(with = "humantime_serde", default = "default_rollout_timeout")]
    rollout_timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_recovery_timeout")]
    recovery_timeout: Duration,
}

impl TryFrom<RawFailover> for FailoverSpec {
    type Error = String;
    fn try_from(raw: RawFailover) -> Result<Self, Self::Error> {
        if raw.namespaces.is_empty() {
            return Err("failover: name at least one namespace".to_string());
        }
        if let Some(bad) = raw.namespaces.iter().find(|n| !is_namespace(n)) {
            return Err(format!("failover: {bad:?} is not a namespace"));
        }
        for (what, timeout) in [("rollout_timeout", raw.rollout_timeout), ("recovery_timeout", raw.recovery_timeout)] {
            if timeout < Duration::from_secs(30) || timeout > Duration::from_secs(6 * 3600) {
                return Err(format!("failover: {what} must be between 30s and 6h"));
            }
        }
        Ok(Self {
            namespaces: raw.namespaces,
            label: raw.label,
            rollout_timeout: raw.rollout_timeout,
            recovery_timeout: raw.recovery_timeout,
        })
    }
}

/// Where an opted-in Deployment stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadState {
    /// On Spot nodes, as its owner wrote it.
    #[default]
    Spot,
    /// Patched to Fargate; its rollout is followed.
    FailingOver,
    /// On Fargate, its rollout done (or failed: the reason says).
    Fargate,
    /// Patched back to Spot; its rollout is followed, and rolled back on failure.
    Recovering,
    /// Never patched: its pods cannot run on Fargate (the reason says why).
    Refused,
}

impl WorkloadState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spot => "spot",
            Self::FailingOver => "failing-over",
            Self::Fargate => "fargate",
            Self::Recovering => "recovering",
            Self::Refused => "refused",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Spot, Self::FailingOver, Self::Fargate, Self::Recovering, Self::Refused]
            .into_iter()
            .find(|s| s.as_str() == value)
    }

    /// Patched to Fargate (its rollout followed or done).
    pub fn on_fargate(self) -> bool {
        matches!(self, Self::FailingOver | Self::Fargate)
    }
}

impl fmt::Display for WorkloadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a Deployment fails over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverCause {
    /// A node hosting its pods got a Spot interruption warning.
    Warning,
    /// Its group fell back to On-Demand for lack of Spot capacity.
    Fallback,
    /// Someone asked through the API.
    Manual,
}

/// A Deployment's rollout, as its status tells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolloutStatus {
    pub generation: i64,
    pub observed_generation: i64,
    /// `spec.replicas` (1 when unset).
    pub desired: i64,
    pub replicas: i64,
    pub updated: i64,
    pub available: i64,
    /// The `Progressing` condition's reason (`ProgressDeadlineExceeded` when stuck).
    pub progressing_reason: Option<String>,
}

/// An EC2 node that takes pods (Ready, schedulable, not Fargate's, not being drained), as the
/// way back weighs it: its allocatable resources (quantities as the API writes them) and the
/// specs of the pods bound to it (as `{"spec": ...}`, the shape of a pod template).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeUse {
    pub allocatable: BTreeMap<String, String>,
    pub pods: Vec<Value>,
}

/// What a node has left: pod slots, CPU (millicores) and memory (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRoom {
    pub pods: i64,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

/// A Deployment as the failover reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentView {
    pub workload: WorkloadRef,
    pub resource_version: String,
    pub annotations: BTreeMap<String, String>,
    /// `spec.template` as the API server holds it.
    pub template: Value,
    pub rollout: RolloutStatus,
}

impl DeploymentView {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }

    /// Where its annotations say it stands (`Spot` when they say nothing).
    pub fn state(&self) -> WorkloadState {
        self.annotation(STATE).and_then(WorkloadState::parse).unwrap_or_default()
    }

    pub fn opted_in(&self) -> bool {
        self.annotation(OPT_IN) == Some(OPT_IN_VALUE)
    }

    /// The pod template's labels.
    pub fn template_labels(&self) -> BTreeMap<String, String> {
        self.template["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect()
    }
}

/// An opted-in Deployment's failover as the table keeps it (`WORKLOAD#<cluster>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRecord {
    pub workload: WorkloadRef,
    pub group: GroupName,
    pub state: WorkloadState,
    /// When it came to this state.
    pub since: DateTime<Utc>,
    pub reason: String,
    /// When the rollout being followed began (failing over or recovering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_started: Option<DateTime<Utc>>,
    /// When it was last patched to Fargate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_recovered_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub failed_attempts: u32,
    /// When the way back may next be tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<DateTime<Utc>>,
    /// Each change moves it on: writes are conditional on it.
    #[serde(default)]
    pub version: u64,
}

impl WorkloadRecord {
    pub fn new(workload: WorkloadRef, group: GroupName, now: DateTime<Utc>) -> Self {
        Self {
            workload,
            group,
            state: WorkloadState::Spot,
            since: now,
            reason: String::new(),
            rollout_started: None,
            migrated_at: None,
            last_recovered_at: None,
            failed_attempts: 0,
            next_attempt: None,
            version: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failover_block_names_namespaces_and_keeps_its_defaults() {
        let spec: FailoverSpec = serde_json::from_str(r#"{"namespaces": ["shop"]}"#).expect("valid");
        assert_eq!(spec.label.to_string(), "spotkeeper.io/compute=fargate");
        assert_eq!(spec.rollout_timeout, Duration::from_secs(600));
        assert_eq!(spec.recovery_timeout, Duration::from_secs(180));
        let spec: FailoverSpec =
            serde_json::from_str(r#"{"namespaces": ["a"], "label": "team/compute=fg", "recovery_timeout": "5m"}"#)
                .expect("valid");
        assert_eq!((spec.label.key.as_str(), spec.recovery_timeout), ("team/compute", Duration::from_secs(300)));
        for bad in [
            r#"{"namespaces": []}"#,
            r#"{"namespaces": ["Shop"]}"#,
            r#"{"namespaces": ["a"], "label": "novalue"}"#,
            r#"{"namespaces": ["a"], "rollout_timeout": "1s"}"#,
            r#"{"namespaces": ["a"], "extra": 1}"#,
        ] {
            assert!(serde_json::from_str::<FailoverSpec>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn workload_refs_are_namespace_slash_name() {
        let w = WorkloadRef::try_from("shop/web.v2".to_string()).expect("valid");
        assert_eq!((w.namespace.as_str(), w.name.as_str()), ("shop", "web.v2"));
        for bad in ["shop", "Shop/web", "shop/", "/web", "shop/-web", "shop/web/x"] {
            assert!(WorkloadRef::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn states_read_back_as_written() {
        for s in [
            WorkloadState::Spot,
            WorkloadState::FailingOver,
            WorkloadState::Fargate,
            WorkloadState::Recovering,
            WorkloadState::Refused,
        ] {
            assert_eq!(WorkloadState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).expect("json"), Value::String(s.to_string()));
        }
    }
}
