//! Fargate failover of opted-in Deployments: whether a pod template can run on Fargate, the one
//! merge patch that moves a Deployment there (and the one that brings it back), what its rollout
//! status means, when the way back may run, and whether someone reverted the patch.
//!
//! Each patch carries `metadata.resourceVersion`: the API server refuses it (409) if the
//! Deployment changed since it was read, and the workflow reads it again and decides anew.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::decisions::recovery;
use crate::domain::annotations::{
    FAILED_RECOVERY_ATTEMPTS, LAST_RECOVERED_AT, MIGRATED_AT, REASON, SAVED_PLACEMENT, STATE,
};
use crate::domain::{
    DeploymentView, FailoverSpec, FargateSelector, NodeRoom, NodeUse, ProfileLabel, RecoveryPolicy, RolloutStatus,
    WorkloadRecord, WorkloadState,
};

/// Extended resources Fargate has no devices for.
const ACCELERATORS: [&str; 4] = ["nvidia.com/gpu", "amd.com/gpu", "aws.amazon.com/neuron", "aws.amazon.com/neuroncore"];

/// Why Fargate cannot run pods of this template (each reason once, in the template's order);
/// empty when it can.
pub fn ineligible(template: &Value) -> Vec<String> {
    let spec = &template["spec"];
    let mut why = Vec::new();
    let mut add = |reason: String| {
        if !why.contains(&reason) {
            why.push(reason);
        }
    };
    if spec["hostNetwork"] == true {
        add("hostNetwork: Fargate pods have their own network interface".to_string());
    }
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap_or("?");
        if volume.get("hostPath").is_some() {
            add(format!("hostPath volume {name}: a Fargate pod has no host"));
        }
        if volume.get("persistentVolumeClaim").is_some() {
            add(format!("volume claim {name}: EBS volumes cannot attach to Fargate"));
        }
    }
    let containers =
        ["initContainers", "containers"].into_iter().flat_map(|k| spec[k].as_array().into_iter().flatten());
    for container in containers {
        let name = container["name"].as_str().unwrap_or("?");
        if container["securityContext"]["privileged"] == true {
            add(format!("container {name} is privileged"));
        }
        if container["ports"].as_array().into_iter().flatten().any(|p| p.get("hostPort").is_some_and(|h| !h.is_null()))
        {
            add(format!("container {name} uses a hostPort"));
        }
        let resources = &container["resources"];
        for kind in ["limits", "requests"] {
            if let Some(device) = ACCELERATORS.iter().find(|d| resources[kind].get(**d).is_some()) {
                add(format!("container {name} asks for {device}: Fargate has no accelerators"));
            }
        }
    }
    why
}

/// Whether a Fargate profile selects pods of `namespace` carrying the failover's label (what a
/// failed-over template adds to its own labels).
pub fn profiled(selectors: &[FargateSelector], namespace: &str, label: &ProfileLabel) -> bool {
    let labels = std::collections::BTreeMap::from([(label.key.clone(), label.value.clone())]);
    selectors.iter().any(|s| s.selects(namespace, &labels))
}

/// The failover's namespaces no Fargate profile selects with its label.
pub fn unprofiled<'a>(spec: &'a FailoverSpec, selectors: &[FargateSelector]) -> Vec<&'a str> {
    spec.namespaces.iter().filter(|n| !profiled(selectors, n, &spec.label)).map(String::as_str).collect()
}

/// A Kubernetes quantity in thousandths when `thousandths` (CPU: `500m` → 500, `2` → 2000), else
/// as it is (memory in bytes: `7Gi`, `512M`, `1e3`); `None` for what is not one.
pub fn quantity(text: &str, thousandths: bool) -> Option<i64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let text = text.trim();
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((text, 1.0));
    let value: f64 = number.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    let scaled = value * factor * if thousandths { 1000.0 } else { 1.0 };
    // Kubernetes rounds a request up to the next unit; the bound keeps the cast whole.
    #[allow(clippy::cast_possible_truncation, reason = "below 9e18, a whole number fits an i64")]
    (scaled < 9.0e18).then(|| scaled.ceil() as i64)
}

/// What one pod of the template asks for: CPU in millicores and memory in bytes, its containers'
/// requests added up (an init container's, if larger, as the scheduler counts them).
pub fn pod_requests(template: &Value) -> (i64, i64) {
    let sum = |key: &str, thousandths: bool| -> i64 {
        let of =
            |c: &Value| c["resources"]["requests"][key].as_str().and_then(|q| quantity(q, thousandths)).unwrap_or(0);
        let spec = &template["spec"];
        let running: i64 = spec["containers"].as_array().into_iter().flatten().map(of).sum();
        let init = spec["initContainers"].as_array().into_iter().flatten().map(of).max().unwrap_or(0);
        running.max(init)
    };
    (sum("cpu", true), sum("memory", false))
}

/// What a node has left: its allocatable less what its pods request (an allocatable the node
/// does not state is taken as none left).
pub fn room(node: &NodeUse) -> NodeRoom {
    let allocatable =
        |key: &str, thousandths: bool| node.allocatable.get(key).and_then(|q| quantity(q, thousandths)).unwrap_or(0);
    let (cpu, memory) = node.pods.iter().map(pod_requests).fold((0, 0), |(c, m), (pc, pm)| (c + pc, m + pm));
    let count = i64::try_from(node.pods.len()).unwrap_or(i64::MAX);
    NodeRoom {
        // `pods` is a count: a quantity in units.
        pods: allocatable("pods", false) - count,
        cpu_millis: allocatable("cpu", true) - cpu,
        memory_bytes: allocatable("memory", false) - memory,
    }
}

/// Whether some Spot node has room for one more pod of the template: the way back starts only
/// then (its pods would stay Pending otherwise, and the attempt fail for nothing).
pub fn room_for(nodes: &[NodeUse], template: &Value) -> bool {
    let (cpu, memory) = pod_requests(template);
    nodes.iter().map(room).any(|n| n.pods >= 1 && n.cpu_millis >= cpu && n.memory_bytes >= memory)
}

/// What to do with a Deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Move {
    /// Send this JSON merge patch.
    Patch(Value),
    /// Nothing: its annotations say it is there already (or on its way).
    Already(WorkloadState),
    /// Never patched: its pods cannot run on Fargate, for these reasons.
    Refuse(Vec<String>),
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What pins the template to nodes: `nodeSelector` and `affinity.nodeAffinity`, as they are.
fn placement(template: &Value) -> Value {
    let spec = &template["spec"];
    json!({
        "nodeSelector": spec.get("nodeSelector").cloned().unwrap_or(Value::Null),
        "nodeAffinity": spec["affinity"].get("nodeAffinity").cloned().unwrap_or(Value::Null),
    })
}

/// The template's spec without its node placement (merge-patch nulls only where there is
/// something to remove, so the way back restores the template exactly).
fn unpinned(template: &Value) -> Map<String, Value> {
    let spec = &template["spec"];
    let mut out = Map::new();
    if spec.get("nodeSelector").is_some() {
        out.insert("nodeSelector".into(), Value::Null);
    }
    if let Some(affinity) = spec["affinity"].as_object().filter(|a| a.contains_key("nodeAffinity")) {
        let alone = affinity.len() == 1;
        out.insert("affinity".into(), if alone { Value::Null } else { json!({"nodeAffinity": null}) });
    }
    out
}

/// The patch that puts the Deployment on Fargate: the profile's label on the template, its node
/// placement removed and kept in an annotation, its tolerations untouched.
fn to_fargate(d: &DeploymentView, label: &ProfileLabel, state: WorkloadState, mut notes: Map<String, Value>) -> Value {
    notes.insert(STATE.into(), json!(state.as_str()));
    notes.insert(SAVED_PLACEMENT.into(), json!(placement(&d.template).to_string()));
    json!({
        "metadata": {"resourceVersion": d.resource_version, "annotations": notes},
        "spec": {"template": {
            "metadata": {"labels": {label.key.as_str(): label.value}},
            "spec": unpinned(&d.template),
        }},
    })
}

/// Whether the template carries the profile's label (the patch is in place).
fn on_fargate(d: &DeploymentView, label: &ProfileLabel) -> bool {
    d.template_labels().get(&label.key) == Some(&label.value)
}

/// The failover of an opted-in Deployment.
pub fn failover(d: &DeploymentView, label: &ProfileLabel, reason: &str, now: DateTime<Utc>) -> Move {
    let state = d.state();
    if state.on_fargate() && on_fargate(d, label) {
        return Move::Already(state);
    }
    let why = ineligible(&d.template);
    if !why.is_empty() {
        return Move::Refuse(why);
    }
    let mut notes = Map::new();
    notes.insert(MIGRATED_AT.into(), json!(time(now)));
    notes.insert(REASON.into(), json!(reason));
    Move::Patch(to_fargate(d, label, WorkloadState::FailingOver, notes))
}

/// A way back whose rollout failed: to Fargate again, the failed attempt counted.
pub fn roll_back(d: &DeploymentView, label: &ProfileLabel, reason: &str, failed_attempts: u32) -> Move {
    if d.state() != WorkloadState::Recovering {
        return Move::Already(d.state());
    }
    let mut notes = Map::new();
    notes.insert(REASON.into(), json!(reason));
    notes.insert(FAILED_RECOVERY_ATTEMPTS.into(), json!(failed_attempts.to_string()));
    Move::Patch(to_fargate(d, label, WorkloadState::FailingOver, notes))
}

/// The way back: the saved placement restored exactly, the profile's label removed.
pub fn recover(d: &DeploymentView, label: &ProfileLabel) -> Result<Move, String> {
    let state = d.state();
    if !state.on_fargate() {
        return Ok(Move::Already(state));
    }
    let saved = d.annotation(SAVED_PLACEMENT).ok_or("its saved placement annotation is missing")?;
    let saved: Value = serde_json::from_str(saved).map_err(|e| format!("its saved placement is not JSON: {e}"))?;
    let mut spec = Map::new();
    if !saved["nodeSelector"].is_null() {
        spec.insert("nodeSelector".into(), saved["nodeSelector"].clone());
    }
    if !saved["nodeAffinity"].is_null() {
        spec.insert("affinity".into(), json!({"nodeAffinity": saved["nodeAffinity"]}));
    }
    Ok(Move::Patch(json!({
        "metadata": {"resourceVersion": d.resource_version, "annotations": {STATE: WorkloadState::Recovering.as_str()}},
        "spec": {"template": {"metadata": {"labels": {label.key.as_str(): null}}, "spec": spec}},
    })))
}

/// The annotations once a rollout is done: on Fargate, or back on Spot (the saved placement
/// and the count of failed attempts cleared).
pub fn settled(d: &DeploymentView, to: WorkloadState, now: DateTime<Utc>) -> Value {
    let mut notes = Map::new();
    notes.insert(STATE.into(), json!(to.as_str()));
    if to == WorkloadState::Spot {
        notes.insert(LAST_RECOVERED_AT.into(), json!(time(now)));
        notes.insert(SAVED_PLACEMENT.into(), Value::Null);
        notes.insert(FAILED_RECOVERY_ATTEMPTS.into(), Value::Null);
    }
    json!({"metadata": {"resourceVersion": d.resource_version, "annotations": notes}})
}

/// A rollout, as its status and its time tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    Progressing,
    Done,
    Failed(String),
}

/// Done when the controller has seen the spec, every replica is updated and available; failed
/// past the progress deadline or `timeout` after it began.
pub fn rollout(status: &RolloutStatus, started: DateTime<Utc>, timeout: Duration, now: DateTime<Utc>) -> Rollout {
    let s = status;
    let done = s.observed_generation >= s.generation
        && s.updated == s.desired
        && s.replicas == s.desired
        && s.available == s.updated;
    if done {
        return Rollout::Done;
    }
    if s.progressing_reason.as_deref() == Some("ProgressDeadlineExceeded") {
        return Rollout::Failed("its progress deadline passed (ProgressDeadlineExceeded)".to_string());
    }
    let limit = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
    if now - started >= limit {
        return Rollout::Failed(format!(
            "not done after {} ({} of {} replicas updated, {} available)",
            humantime::format_duration(timeout),
            s.updated,
            s.desired,
            s.available
        ));
    }
    Rollout::Progressing
}

/// Whether the Deployment lost what spotkeeper wrote (a GitOps controller or a person reverted
/// the patch): the table says it is on Fargate, the template has no profile label.
pub fn reverted(d: &DeploymentView, record: &WorkloadRecord, label: &ProfileLabel) -> bool {
    record.state.on_fargate() && !on_fargate(d, label)
}

/// What the way back does now for one Deployment on Fargate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WayBack {
    /// Not on Fargate, or not settled there yet.
    Nothing,
    Wait(DateTime<Utc>),
    OutsideWindow,
    Go,
}

/// When a Deployment on Fargate may go back: the cooldown after its failover, then the backoff
/// after each failed attempt, inside the recovery windows.
pub fn way_back(record: &WorkloadRecord, policy: &RecoveryPolicy, now: DateTime<Utc>) -> WayBack {
    if record.state != WorkloadState::Fargate {
        return WayBack::Nothing;
    }
    let due = record.next_attempt.unwrap_or_else(|| next_attempt(record, policy, record.since));
    if now < due {
        WayBack::Wait(due)
    } else if !recovery::in_window(&policy.windows, now) {
        WayBack::OutsideWindow
    } else {
        WayBack::Go
    }
}

/// The next try of the way back from `from`: the cooldown first, then 15 min, 30, ... up to the
/// policy's maximum.
pub fn next_attempt(record: &WorkloadRecord, policy: &RecoveryPolicy, from: DateTime<Utc>) -> DateTime<Utc> {
    recovery::next_attempt(policy, record.failed_attempts, from)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{GroupName, WorkloadRef};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("a time").with_timezone(&Utc)
    }

    fn deployment(template_spec: Value, annotations: &[(&str, &str)]) -> DeploymentView {
        DeploymentView {
            workload: WorkloadRef::new("shop", "web").expect("a ref"),
            resource_version: "41".to_string(),
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            template: json!({"metadata": {"labels": {"app": "web"}}, "spec": template_spec}),
            rollout: RolloutStatus::default(),
        }
    }

    fn label() -> ProfileLabel {
        ProfileLabel::default()
    }

    /// A merge patch applied as the API server applies it (RFC 7386).
    fn merge(target: &mut Value, patch: &Value) {
        match (target.as_object_mut(), patch.as_object()) {
            (Some(t), Some(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (_, Some(_)) => {
                *target = json!({});
                merge(target, patch);
            }
            _ => *target = patch.clone(),
        }
    }

    fn patched(d: &DeploymentView, patch: &Value) -> DeploymentView {
        let mut whole = json!({"metadata": {"annotations": d.annotations}, "spec": {"template": d.template}});
        merge(&mut whole, patch);
        let annotations: BTreeMap<String, String> = whole["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        DeploymentView {
            annotations,
            template: whole["spec"]["template"].clone(),
            resource_version: "42".to_string(),
            ..d.clone()
        }
    }

    #[test]
    fn templates_fargate_cannot_run_are_refused_with_every_reason() {
        let cases = [
            (json!({"containers": [{"name": "a"}]}), vec![]),
            (json!({"hostNetwork": true, "containers": [{"name": "a"}]}), vec!["hostNetwork"]),
            (
                json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
                vec!["hostPort"],
            ),
            (json!({"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}), vec![]),
            (
                json!({"volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}}], "containers": []}),
                vec!["hostPath"],
            ),
            (json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]}), vec!["volume claim"]),
            (json!({"volumes": [{"name": "tmp", "emptyDir": {}}]}), vec![]),
            (json!({"containers": [{"name": "a", "securityContext": {"privileged": true}}]}), vec!["privileged"]),
            (json!({"initContainers": [{"name": "i", "securityContext": {"privileged": true}}]}), vec!["privileged"]),
            (
                json!({"containers": [{"name": "a", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}),
                vec!["nvidia.com/gpu"],
            ),
            (
                json!({"hostNetwork": true, "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}),
                vec!["hostNetwork", "hostPath"],
            ),
        ];
        for (spec, expected) in cases {
            let why = ineligible(&json!({"spec": spec}));
            assert_eq!(why.len(), expected.len(), "{spec}: {why:?}");
            for (reason, word) in why.iter().zip(expected) {
                assert!(reason.contains(word), "{spec}: {reason} names {word}");
            }
        }
    }

    #[test]
    fn a_failover_labels_the_template_unpins_it_and_keeps_the_placement_for_the_way_back() {
        let now = at("2026-12-06T10:00:00Z");
        let spec = json!({
            "nodeSelector": {"eks.amazonaws.com/capacityType": "SPOT"},
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}]}
                ]}},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
            },
            "tolerations": [{"key": "spot", "operator": "Exists"}],
            "containers": [{"name": "web"}],
        });
        let d = deployment(spec.clone(), &[("spotkeeper.io/failover", "fargate")]);
        let Move::Patch(patch) = failover(&d, &label(), "warning for i-1", now) else { panic!("a patch") };
        assert_eq!(patch["metadata"]["resourceVersion"], "41");
        let on = patched(&d, &patch);
        assert_eq!(on.state(), WorkloadState::FailingOver);
        assert_eq!(on.annotation(MIGRATED_AT), Some("2026-12-06T10:00:00Z"));
        assert_eq!(on.annotation(REASON), Some("warning for i-1"));
        assert_eq!(on.template["metadata"]["labels"]["spotkeeper.io/compute"], "fargate");
        assert_eq!(on.template["metadata"]["labels"]["app"], "web");
        assert!(on.template["spec"].get("nodeSelector").is_none());
        assert_eq!(
            on.template["spec"]["affinity"],
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}})
        );
        assert_eq!(on.template["spec"]["tolerations"], spec["tolerations"], "the user's tolerations stay");

        // Patched already: nothing more, however often it is asked.
        assert_eq!(failover(&on, &label(), "again", now), Move::Already(WorkloadState::FailingOver));

        // The way back restores the template exactly.
        let Move::Patch(back) = recover(&on, &label()).expect("saved") else { panic!("a patch") };
        let back = patched(&on, &back);
        assert_eq!(back.template, d.template, "the template as its owner wrote it");
        assert_eq!(back.state(), WorkloadState::Recovering);
        let spot = patched(&back, &settled(&back, WorkloadState::Spot, now));
        assert_eq!(spot.state(), WorkloadState::Spot);
        assert!(spot.annotation(SAVED_PLACEMENT).is_none());
        assert_eq!(spot.annotation(LAST_RECOVERED_AT), Some("2026-12-06T10:00:00Z"));
    }

    #[test]
    fn a_template_without_placement_is_left_without_one_both_ways() {
        let d = deployment(json!({"containers": [{"name": "web"}]}), &[]);
        let Move::Patch(patch) = failover(&d, &label(), "r", at("2026-12-06T10:00:00Z")) else { panic!("a patch") };
        assert_eq!(patch["spec"]["template"]["spec"], json!({}));
        let on = patched(&d, &patch);
        let Move::Patch(back) = recover(&on, &label()).expect("saved") else { panic!("a patch") };
        assert_eq!(patched(&on, &back).template, d.template);
    }

    #[test]
    fn an_ineligible_deployment_is_refused_and_a_rollback_counts_its_attempt() {
        let d = deployment(json!({"volumes": [{"name": "h", "hostPath": {"path": "/data"}}]}), &[]);
        let Move::Refuse(why) = failover(&d, &label(), "r", at("2026-12-06T10:00:00Z")) else { panic!("refused") };
        assert!(why[0].contains("hostPath volume h"), "{why:?}");

        let d = deployment(json!({"nodeSelector": {"a": "b"}}), &[]);
        let Move::Patch(p) = failover(&d, &label(), "r", at("2026-12-06T10:00:00Z")) else { panic!("a patch") };
        let on = patched(&d, &p);
        let Move::Patch(p) = recover(&on, &label()).expect("saved") else { panic!("a patch") };
        let recovering = patched(&on, &p);
        assert_eq!(roll_back(&on, &label(), "x", 1), Move::Already(WorkloadState::FailingOver));
        let Move::Patch(p) = roll_back(&recovering, &label(), "no Spot node was Ready", 2) else { panic!("a patch") };
        let again = patched(&recovering, &p);
        assert_eq!(again.state(), WorkloadState::FailingOver);
        assert_eq!(again.annotation(FAILED_RECOVERY_ATTEMPTS), Some("2"));
        assert_eq!(again.template, on.template, "the same Fargate template as the failover's");
        assert_eq!(again.annotation(SAVED_PLACEMENT), on.annotation(SAVED_PLACEMENT));
        assert!(recover(&deployment(json!({}), &[(STATE, "fargate")]), &label()).is_err(), "no saved placement");
    }

    #[test]
    fn a_rollout_is_done_when_every_replica_is_updated_and_available() {
        let started = at("2026-12-06T10:00:00Z");
        let timeout = Duration::from_secs(180);
        let status = |generation, observed, updated, replicas, available, reason: Option<&str>| RolloutStatus {
            generation,
            observed_generation: observed,
            desired: 3,
            replicas,
            updated,
            available,
            progressing_reason: reason.map(str::to_string),
        };
        let cases = [
            (status(2, 2, 3, 3, 3, None), 10, Rollout::Done),
            (status(2, 1, 3, 3, 3, None), 10, Rollout::Progressing),
            (status(2, 2, 2, 4, 3, None), 10, Rollout::Progressing),
            (status(2, 2, 3, 4, 3, None), 10, Rollout::Progressing),
            (status(2, 2, 3, 3, 2, None), 10, Rollout::Progressing),
        ];
        for (s, after, expected) in cases {
            assert_eq!(rollout(&s, started, timeout, started + chrono::Duration::seconds(after)), expected, "{s:?}");
        }
        let stuck = status(2, 2, 1, 4, 3, Some("ProgressDeadlineExceeded"));
        assert!(
            matches!(rollout(&stuck, started, timeout, started), Rollout::Failed(r) if r.contains("ProgressDeadlineExceeded"))
        );
        let slow = status(2, 2, 1, 4, 3, Some("ReplicaSetUpdated"));
        assert_eq!(rollout(&slow, started, timeout, started + chrono::Duration::seconds(179)), Rollout::Progressing);
        assert!(
            matches!(rollout(&slow, started, timeout, started + chrono::Duration::seconds(180)), Rollout::Failed(r) if r.contains("3m"))
        );
    }

    #[test]
    fn the_way_back_waits_for_the_cooldown_then_backs_off_up_to_the_maximum() {
        let policy = RecoveryPolicy::default();
        let t0 = at("2026-12-06T10:00:00Z");
        let mut record = WorkloadRecord::new(
            WorkloadRef::new("shop", "web").expect("a ref"),
            GroupName::try_from("workers".to_string()).expect("a name"),
            t0,
        );
        assert_eq!(way_back(&record, &policy, t0), WayBack::Nothing);
        record.state = WorkloadState::Fargate;
        assert_eq!(
            way_back(&record, &policy, t0 + chrono::Duration::minutes(44)),
            WayBack::Wait(t0 + chrono::Duration::minutes(45))
        );
        assert_eq!(way_back(&record, &policy, t0 + chrono::Duration::minutes(45)), WayBack::Go);
        let waits: Vec<i64> = (1..=6)
            .map(|failed| {
                record.failed_attempts = failed;
                (next_attempt(&record, &policy, t0) - t0).num_minutes()
            })
            .collect();
        assert_eq!(waits, vec![15, 30, 60, 120, 240, 240]);
        record.next_attempt = Some(t0 + chrono::Duration::minutes(15));
        assert_eq!(
            way_back(&record, &policy, t0 + chrono::Duration::minutes(14)),
            WayBack::Wait(t0 + chrono::Duration::minutes(15))
        );
        let windowed = RecoveryPolicy {
            windows: vec![crate::domain::Window::parse("02:00", "04:00").expect("a window")],
            ..policy.clone()
        };
        assert_eq!(way_back(&record, &windowed, t0 + chrono::Duration::minutes(15)), WayBack::OutsideWindow);
    }

    #[test]
    fn each_failover_namespace_needs_a_profile_selecting_it_with_the_label() {
        let selector = |namespace: &str, labels: &[(&str, &str)]| FargateSelector {
            profile: "fp".into(),
            namespace: namespace.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let spec: FailoverSpec = serde_json::from_value(json!({"namespaces": ["shop", "pay", "ops"]})).expect("valid");
        let selectors = [
            selector("shop", &[("spotkeeper.io/compute", "fargate")]),
            // No label: every pod of the namespace, ours among them.
            selector("pay", &[]),
            // Another label: ours does not carry it.
            selector("ops", &[("team", "ops")]),
        ];
        assert_eq!(unprofiled(&spec, &selectors), vec!["ops"]);
        assert_eq!(unprofiled(&spec, &[]), vec!["shop", "pay", "ops"]);
        assert!(profiled(&[selector("sh*", &[("spotkeeper.io/compute", "farg?te")])], "shop", &label()));
    }

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        let cases = [
            ("500m", true, Some(500)),
            ("2", true, Some(2000)),
            ("0.25", true, Some(250)),
            ("1.5", true, Some(1500)),
            ("100u", true, Some(1)),
            ("7Gi", false, Some(7 * 1_073_741_824)),
            ("512Mi", false, Some(536_870_912)),
            ("1G", false, Some(1_000_000_000)),
            ("128974848", false, Some(128_974_848)),
            ("1e3", false, Some(1000)),
            ("-1", false, None),
            ("lots", false, None),
            ("", false, None),
        ];
        for (text, thousandths, expected) in cases {
            assert_eq!(quantity(text, thousandths), expected, "{text}");
        }
    }

    #[test]
    fn the_way_back_needs_a_node_with_room_for_one_pod() {
        let template = json!({"spec": {
            "initContainers": [{"name": "migrate", "resources": {"requests": {"cpu": "1", "memory": "64Mi"}}}],
            "containers": [
                {"name": "web", "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}},
                {"name": "proxy", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "bare"},
            ],
        }});
        assert_eq!(pod_requests(&template), (1000, 320 * 1_048_576), "the init container's CPU is the larger");
        let pod = |cpu: &str, memory: &str| json!({"spec": {"containers": [{"name": "x", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}});
        let node = |pods: &str, cpu: &str, memory: &str, bound: Vec<Value>| NodeUse {
            allocatable: [("pods", pods), ("cpu", cpu), ("memory", memory)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pods: bound,
        };
        let busy = node("4", "2", "1Gi", vec![pod("1", "512Mi"), pod("500m", "192Mi")]);
        assert_eq!(room(&busy), NodeRoom { pods: 2, cpu_millis: 500, memory_bytes: 320 * 1_048_576 });
        assert!(!room_for(std::slice::from_ref(&busy), &template), "not enough CPU: 500m left, 1 asked");
        assert!(room_for(&[node("4", "1500m", "1Gi", vec![pod("500m", "704Mi")])], &template), "exactly enough");
        assert!(!room_for(&[node("1", "8", "8Gi", vec![pod("0", "0")])], &template), "no pod slot");
        assert!(!room_for(&[node("4", "8", "300Mi", vec![])], &template), "not enough memory");
        assert!(room_for(&[busy, node("110", "2", "7Gi", vec![])], &template), "any node");
        assert!(!room_for(&[], &template), "no node");
        assert!(
            room_for(&[node("1", "0", "0", vec![])], &json!({"spec": {"containers": [{"name": "a"}]}})),
            "asks for nothing"
        );
    }

    #[test]
    fn a_reverted_patch_is_seen() {
        let d = deployment(json!({}), &[]);
        let mut record = WorkloadRecord::new(
            d.workload.clone(),
            GroupName::try_from("workers".to_string()).expect("a name"),
            at("2026-12-06T10:00:00Z"),
        );
        assert!(!reverted(&d, &record, &label()));
        record.state = WorkloadState::Fargate;
        assert!(reverted(&d, &record, &label()));
        let Move::Patch(p) = failover(&d, &label(), "r", at("2026-12-06T10:00:00Z")) else { panic!("a patch") };
        assert!(!reverted(&patched(&d, &p), &record, &label()));
    }
}
