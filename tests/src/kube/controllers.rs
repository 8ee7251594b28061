//! The controllers the fake runs at each settled instant, after the Kubernetes code they imitate
//! (kube-controller-manager's `deployment`, `replicaset` and `endpointslice` controllers,
//! kube-scheduler's filters, EKS's Fargate scheduler): Deployments roll out through ReplicaSets
//! with maxSurge/maxUnavailable and a progress deadline, ReplicaSets keep their pods, pods are
//! bound where they fit (or to a Fargate node of their own), Services' EndpointSlices follow
//! Ready pods.
//!
//! Only ReplicaSets a Deployment owns are managed: the drain tests seed standalone ReplicaSets
//! and count the pods they placed themselves.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use super::selector;
use super::store::{KINDS, Key, Kind, Store, is_ready, labels_of, meta, parse_time, pods, terminating, timestamp};

/// How long a pod the ReplicaSet controller made takes from being bound to Ready on an EC2 node
/// (image pull, start, readiness probe): long enough for a rollout to have steps to watch.
pub const POD_START_SECONDS: i64 = 5;

/// A Fargate node's start: 30 s plus up to 30 more, fixed per pod.
pub const FARGATE_START_SECONDS: (i64, i64) = (30, 60);

const HASH_LABEL: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";
const COMPUTE_TYPE: &str = "eks.amazonaws.com/compute-type";
const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const SLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// An EKS Fargate profile's selector: pods of `namespace` with all of `labels` run on Fargate.
#[derive(Debug, Clone)]
pub struct FargateProfile {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// What the controllers keep beside the objects.
#[derive(Debug, Default, Clone)]
pub struct Sim {
    /// The instant the world was last settled to.
    pub(super) settled: Option<DateTime<Utc>>,
    /// The resourceVersion the last settled instant left.
    pub(super) settled_rv: u64,
    /// Bound pods that start no earlier than this.
    pub(super) starts: BTreeMap<Key, DateTime<Utc>>,
    /// Pods the ReplicaSet controller made, not yet bound: they take `POD_START_SECONDS` once bound.
    pub(super) slow: BTreeSet<Key>,
    /// Fargate nodes not yet Ready, and when they will be.
    pub(super) fargate_ready: BTreeMap<String, DateTime<Utc>>,
    pub(super) profiles: Vec<FargateProfile>,
    fargate_nodes: u64,
    /// Services watched (`FakeKube::watch_endpoints`): the fewest ready endpoints each had at
    /// any settled instant since.
    pub(super) fewest_ready: BTreeMap<(String, String), usize>,
}

fn kind_of(plural: &str) -> &'static Kind {
    KINDS.iter().find(|k| k.plural == plural).unwrap_or(&KINDS[0])
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn ns_of(obj: &Value) -> String {
    meta(obj, "namespace")
}

/// A field of the object's controller reference (`uid`, `kind`).
fn controller_field(obj: &Value, field: &str) -> Option<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["controller"] == true)
        .and_then(|o| o[field].as_str())
        .map(str::to_string)
}

fn controller_uid(obj: &Value) -> Option<String> {
    controller_field(obj, "uid")
}

fn owner_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!([{
        "apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true,
    }])
}

fn finished(pod: &Value) -> bool {
    matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

fn ready_since(pod: &Value) -> Option<DateTime<Utc>> {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")
        .map(|c| parse_time(&c["lastTransitionTime"]).unwrap_or(DateTime::<Utc>::MIN_UTC))
}

/// Ready for at least `min_ready` seconds at `t` (the ReplicaSet's availability).
fn available(pod: &Value, min_ready: i64, t: DateTime<Utc>) -> bool {
    !terminating(pod)
        && is_ready(pod)
        && (min_ready <= 0 || ready_since(pod).is_some_and(|s| s + Duration::seconds(min_ready) <= t))
}

/// FNV-1a, 32 bits: the hash the controllers name things by.
fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// A JSON value printed with its keys sorted, so that equal templates hash alike.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, String> = m.iter().map(|(k, v)| (k, canonical(v))).collect();
            let inner: Vec<String> =
                sorted.iter().map(|(k, v)| format!("{}:{v}", Value::String((*k).clone()))).collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// `rand.SafeEncodeString` of the decimal hash: how a pod-template-hash looks.
fn template_hash(template: &Value) -> String {
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    fnv32a(canonical(template).as_bytes())
        .to_string()
        .bytes()
        .map(|b| char::from(alphabet[usize::from(b) % alphabet.len()]))
        .collect()
}

fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
        if labels.is_empty()
            && let Some(m) = t["metadata"].as_object_mut()
        {
            m.remove("labels");
        }
    }
    t
}

/// `intstr.GetScaledValueFromIntOrPercent`: a number, or a percentage of `total` rounded up or
/// down.
pub fn scaled(value: &Value, total: i64, round_up: bool) -> i64 {
    match value {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(pct) if round_up => (pct * total + 99) / 100,
            Some(pct) => pct * total / 100,
            None => s.parse::<i64>().unwrap_or(0),
        },
        _ => 0,
    }
}

/// `deploymentutil.ResolveFenceposts`: maxSurge rounded up, maxUnavailable down, and never both 0.
pub fn fenceposts(max_surge: &Value, max_unavailable: &Value, desired: i64) -> (i64, i64) {
    let surge = scaled(max_surge, desired, true);
    let unavailable = scaled(max_unavailable, desired, false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

fn rolling(d: &Value) -> bool {
    d["spec"]["strategy"]["type"] != "Recreate"
}

fn replicas_of(d: &Value) -> i64 {
    d["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// maxSurge and maxUnavailable of a Deployment, resolved (`MaxSurge`, `MaxUnavailable`).
pub fn surge_and_unavailable(d: &Value) -> (i64, i64) {
    if !rolling(d) {
        return (0, 0);
    }
    let r = replicas_of(d);
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let (surge, unavailable) = fenceposts(&ru["maxSurge"], &ru["maxUnavailable"], r);
    let unavailable = if r == 0 { 0 } else { unavailable.min(r) };
    (surge, unavailable)
}

/// `NewRSNewReplicas`: how far the new ReplicaSet may grow now, given every ReplicaSet's
/// `spec.replicas` (the new one's included).
pub fn new_rs_replicas(d: &Value, new_replicas: i64, all_replicas: i64) -> i64 {
    let r = replicas_of(d);
    if !rolling(d) {
        return r;
    }
    let (surge, _) = surge_and_unavailable(d);
    let max_total = r + surge;
    if all_replicas >= max_total {
        return new_replicas;
    }
    new_replicas + (max_total - all_replicas).min(r - new_replicas)
}

/// API server defaults for what the controllers read, applied on every write (only what is
/// missing).
pub(super) fn defaults(plural: &str, obj: &mut Value) {
    match plural {
        "deployments" => {
            let spec = &mut obj["spec"];
            if !spec.is_object() {
                return;
            }
            for (field, value) in
                [("replicas", json!(1)), ("revisionHistoryLimit", json!(10)), ("progressDeadlineSeconds", json!(600))]
            {
                if spec.get(field).is_none_or(Value::is_null) {
                    spec[field] = value;
                }
            }
            if spec["strategy"]["type"].is_null() {
                spec["strategy"]["type"] = json!("RollingUpdate");
            }
            if spec["strategy"]["type"] == "RollingUpdate" {
                for field in ["maxSurge", "maxUnavailable"] {
                    if spec["strategy"]["rollingUpdate"][field].is_null() {
                        spec["strategy"]["rollingUpdate"][field] = json!("25%");
                    }
                }
            }
            template_defaults(&mut spec["template"]);
        }
        "replicasets" if obj["spec"].is_object() => template_defaults(&mut obj["spec"]["template"]),
        "services" => {
            let (ns, name) = (ns_of(obj), meta(obj, "name"));
            let spec = &mut obj["spec"];
            if !spec.is_object() {
                *spec = json!({});
            }
            for (field, value) in [
                ("type", json!("ClusterIP")),
                ("sessionAffinity", json!("None")),
                ("ipFamilies", json!(["IPv4"])),
                ("ipFamilyPolicy", json!("SingleStack")),
                ("internalTrafficPolicy", json!("Cluster")),
            ] {
                if spec.get(field).is_none_or(Value::is_null) {
                    spec[field] = value;
                }
            }
            if spec["clusterIP"].is_null() {
                let h = fnv32a(format!("{ns}/{name}").as_bytes());
                let ip = format!("10.100.{}.{}", h % 250, (h / 250) % 250 + 1);
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
            }
            for port in spec["ports"].as_array_mut().into_iter().flatten() {
                if port["protocol"].is_null() {
                    port["protocol"] = json!("TCP");
                }
                if port["targetPort"].is_null() {
                    port["targetPort"] = port["port"].clone();
                }
            }
        }
        _ => {}
    }
}

fn template_defaults(template: &mut Value) {
    let spec = &mut template["spec"];
    if !spec.is_object() {
        return;
    }
    for (field, value) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("securityContext", json!({})),
        ("schedulerName", json!("default-scheduler")),
    ] {
        if spec.get(field).is_none_or(Value::is_null) {
            spec[field] = value;
        }
    }
    for c in spec["containers"].as_array_mut().into_iter().flatten() {
        let image = c["image"].as_str().unwrap_or_default();
        let latest = image.ends_with(":latest") || !image.rsplit('/').next().unwrap_or_default().contains(':');
        for (field, value) in [
            ("imagePullPolicy", json!(if latest { "Always" } else { "IfNotPresent" })),
            ("terminationMessagePath", json!("/dev/termination-log")),
            ("terminationMessagePolicy", json!("File")),
            ("resources", json!({})),
        ] {
            if c.get(field).is_none_or(Value::is_null) {
                c[field] = value;
            }
        }
    }
}

/// The earliest instant in `(from, now]` at which something is due.
pub(super) fn next_event(store: &Store, from: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut due: Vec<DateTime<Utc>> = Vec::new();
    due.extend(store.sim.starts.values().copied());
    due.extend(store.sim.fargate_ready.values().copied());
    let mut min_ready: BTreeMap<String, i64> = BTreeMap::new();
    for ((plural, _, _), obj) in &store.objects {
        match *plural {
            "replicasets" => {
                let m = i(&obj["spec"]["minReadySeconds"]);
                if m > 0 {
                    min_ready.insert(meta(obj, "uid"), m);
                }
            }
            "deployments" => {
                let pds = &obj["spec"]["progressDeadlineSeconds"];
                let progressing = obj["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "Progressing" && c["status"] == "True");
                if let (Some(pds), Some(c)) = (pds.as_i64(), progressing)
                    && c["reason"] != "NewReplicaSetAvailable"
                    && let Some(from) = parse_time(&c["lastUpdateTime"])
                {
                    // `DeploymentTimedOut`: strictly after the deadline.
                    due.push(from + Duration::seconds(pds) + Duration::milliseconds(1));
                }
            }
            _ => {}
        }
    }
    for ((plural, _, _), obj) in &store.objects {
        if *plural != "pods" {
            continue;
        }
        if let Some(t) = parse_time(&obj["metadata"]["deletionTimestamp"]) {
            due.push(t);
        }
        if let Some(m) = controller_uid(obj).and_then(|u| min_ready.get(&u))
            && let Some(since) = ready_since(obj)
        {
            due.push(since + Duration::seconds(*m));
        }
    }
    due.into_iter().filter(|t| *t > from && *t <= now).min()
}

/// One round of every controller at `t`.
pub(super) fn run(store: &mut Store, t: DateTime<Utc>) {
    collect_garbage(store, t);
    fargate_nodes(store, t);
    for d in store.all(kind_of("deployments")) {
        sync_deployment(store, &d, t);
    }
    for rs in store.all(kind_of("replicasets")) {
        if controller_field(&rs, "kind").as_deref() == Some("Deployment") {
            sync_replicaset(store, &rs, t);
        }
    }
    for svc in store.all(kind_of("services")) {
        sync_endpoints(store, &svc, t);
    }
}

/// The garbage collector, background propagation: what a deleted Deployment, ReplicaSet,
/// DaemonSet or Service controlled goes too (a mirror pod's node is not such an owner).
fn collect_garbage(store: &mut Store, t: DateTime<Utc>) {
    let uids: BTreeSet<String> = store.objects.values().map(|o| meta(o, "uid")).collect();
    let orphans: Vec<(&'static str, String, String)> = store
        .objects
        .iter()
        .filter(|(_, o)| !terminating(o))
        .filter(|(_, o)| {
            matches!(
                controller_field(o, "kind").as_deref(),
                Some("Deployment" | "ReplicaSet" | "DaemonSet" | "Service")
            ) && controller_uid(o).is_some_and(|u| !uids.contains(&u))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for (plural, ns, name) in orphans {
        let _ = store.delete(kind_of(plural), Some(&ns), &name, &json!({}), t);
    }
}

// ---------------------------------------------------------------------------------------------
// The Deployment controller.

fn condition(status: &Value, kind: &str) -> Option<Value> {
    status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == kind).cloned()
}

fn remove_condition(status: &mut Value, kind: &str) {
    if let Some(c) = status["conditions"].as_array_mut() {
        c.retain(|c| c["type"] != kind);
    }
}

/// `SetDeploymentCondition`: the same status and reason change nothing; the same status keeps
/// its lastTransitionTime; the condition goes last.
fn set_condition(status: &mut Value, new: Value) {
    let kind = new["type"].as_str().unwrap_or_default().to_string();
    let mut new = new;
    if let Some(current) = condition(status, &kind) {
        if current["status"] == new["status"] && current["reason"] == new["reason"] {
            return;
        }
        if current["status"] == new["status"] {
            new["lastTransitionTime"] = current["lastTransitionTime"].clone();
        }
    }
    remove_condition(status, &kind);
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    if let Some(c) = status["conditions"].as_array_mut() {
        c.push(new);
    }
}

fn new_condition(kind: &str, status: &str, reason: &str, message: String, t: DateTime<Utc>) -> Value {
    let at = timestamp(t);
    json!({"type": kind, "status": status, "lastUpdateTime": at, "lastTransitionTime": at, "reason": reason, "message": message})
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION].as_str().and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn owned_replicasets(store: &Store, d: &Value) -> Vec<Value> {
    let uid = meta(d, "uid");
    let ns = ns_of(d);
    let mut list: Vec<Value> = store
        .all(kind_of("replicasets"))
        .into_iter()
        .filter(|rs| ns_of(rs) == ns && controller_uid(rs).as_deref() == Some(uid.as_str()))
        .collect();
    list.sort_by_key(|rs| (meta(rs, "creationTimestamp"), meta(rs, "name")));
    list
}

/// Writes an object as a controller does (its resourceVersion the precondition); the object as
/// stored after, or the one given when the write failed.
fn write_spec(store: &mut Store, plural: &str, obj: &Value) -> Value {
    store
        .update(kind_of(plural), Some(&ns_of(obj)), &meta(obj, "name"), obj.clone(), false)
        .unwrap_or_else(|_| obj.clone())
}

fn write_status(store: &mut Store, plural: &str, obj: &Value) -> Value {
    store
        .update(kind_of(plural), Some(&ns_of(obj)), &meta(obj, "name"), obj.clone(), true)
        .unwrap_or_else(|_| obj.clone())
}

/// Sets a ReplicaSet's replicas; whether it changed.
fn scale_rs(store: &mut Store, d: &Value, rs: &mut Value, to: i64) -> bool {
    if rs["spec"]["replicas"].as_i64() == Some(to) {
        return false;
    }
    let (surge, _) = surge_and_unavailable(d);
    let mut next = rs.clone();
    next["spec"]["replicas"] = json!(to);
    next["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] = json!(replicas_of(d).to_string());
    next["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] =
        json!((replicas_of(d) + surge).to_string());
    *rs = write_spec(store, "replicasets", &next);
    true
}

fn sync_deployment(store: &mut Store, d: &Value, t: DateTime<Utc>) {
    if terminating(d) || !d["spec"]["template"].is_object() {
        return;
    }
    let ns = ns_of(d);
    let name = meta(d, "name");
    if d["spec"].get("selector").and_then(selector::from_label_selector).is_none() {
        return;
    }
    let template = without_hash(&d["spec"]["template"]);
    let all = owned_replicasets(store, d);
    let (news, olds): (Vec<Value>, Vec<Value>) =
        all.into_iter().partition(|rs| without_hash(&rs["spec"]["template"]) == template);
    let max_old_revision = olds.iter().map(revision).max().unwrap_or(0);
    let mut d = d.clone();
    let new_rs = match news.into_iter().next() {
        Some(rs) => {
            let mut rs = rs;
            if revision(&rs) <= max_old_revision {
                // An old template back (a rollback): its ReplicaSet becomes the newest revision.
                rs["metadata"]["annotations"][REVISION] = json!((max_old_revision + 1).to_string());
                rs = write_spec(store, "replicasets", &rs);
            }
            if d["spec"]["progressDeadlineSeconds"].is_i64() && condition(&d["status"], "Progressing").is_none() {
                let c = new_condition(
                    "Progressing",
                    "True",
                    "FoundNewReplicaSet",
                    format!("Found new replica set \"{}\"", meta(&rs, "name")),
                    t,
                );
                set_condition(&mut d["status"], c);
                d = write_status(store, "deployments", &d);
            }
            rs
        }
        None if !rolling(&d)
            && (olds.iter().any(|rs| i(&rs["spec"]["replicas"]) > 0) || old_pods_left(store, &olds)) =>
        {
            // Recreate makes the new ReplicaSet only once every old pod has stopped.
            for rs in &mut olds.clone() {
                scale_rs(store, &d, rs, 0);
            }
            sync_rollout_status(store, &ns, &name, t);
            return;
        }
        None => {
            let hash = template_hash(&template);
            let rs_name = format!("{name}-{hash}");
            let mut tmpl = template.clone();
            tmpl["metadata"]["labels"][HASH_LABEL] = json!(hash);
            let mut rs_selector = d["spec"]["selector"].clone();
            rs_selector["matchLabels"][HASH_LABEL] = json!(hash);
            let all_replicas: i64 = olds.iter().map(|rs| i(&rs["spec"]["replicas"])).sum();
            let replicas = new_rs_replicas(&d, 0, all_replicas);
            let (surge, _) = surge_and_unavailable(&d);
            let mut spec = json!({"replicas": replicas, "selector": rs_selector, "template": tmpl});
            if i(&d["spec"]["minReadySeconds"]) > 0 {
                spec["minReadySeconds"] = d["spec"]["minReadySeconds"].clone();
            }
            let rs = json!({
                "metadata": {
                    "name": rs_name, "labels": tmpl["metadata"]["labels"],
                    "annotations": {
                        "deployment.kubernetes.io/desired-replicas": replicas_of(&d).to_string(),
                        "deployment.kubernetes.io/max-replicas": (replicas_of(&d) + surge).to_string(),
                        REVISION: (max_old_revision + 1).to_string(),
                    },
                    "ownerReferences": owner_ref(&d, "apps/v1", "Deployment"),
                },
                "spec": spec,
                "status": {"replicas": 0},
            });
            let Ok(rs) = store.create(kind_of("replicasets"), Some(&ns), rs, t, false) else { return };
            if d["spec"]["progressDeadlineSeconds"].is_i64() {
                let c = new_condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    format!("Created new replica set \"{rs_name}\""),
                    t,
                );
                set_condition(&mut d["status"], c);
                d = write_status(store, "deployments", &d);
            }
            rs
        }
    };
    let rev = revision(&new_rs).max(max_old_revision + 1).to_string();
    if d["metadata"]["annotations"][REVISION] != json!(rev) {
        d["metadata"]["annotations"][REVISION] = json!(rev);
        d = write_spec(store, "deployments", &d);
    }
    if d["spec"]["paused"] != true {
        let current = |store: &Store, rs: &Value| store.get(kind_of("replicasets"), Some(&ns), &meta(rs, "name")).ok();
        let mut new_rs = current(store, &new_rs).unwrap_or(new_rs);
        let mut olds: Vec<Value> = olds.iter().filter_map(|rs| current(store, rs)).collect();
        if rolling(&d) {
            rollout_rolling(store, &d, &mut new_rs, &mut olds, t);
        } else {
            rollout_recreate(store, &d, &mut new_rs, &mut olds, t);
        }
    }
    sync_rollout_status(store, &ns, &name, t);
}

fn rollout_rolling(store: &mut Store, d: &Value, new_rs: &mut Value, olds: &mut [Value], t: DateTime<Utc>) {
    let r = replicas_of(d);
    let new_replicas = i(&new_rs["spec"]["replicas"]);
    let old_replicas: i64 = olds.iter().map(|rs| i(&rs["spec"]["replicas"])).sum();
    // reconcileNewReplicaSet
    let want = if new_replicas > r { r } else { new_rs_replicas(d, new_replicas, new_replicas + old_replicas) };
    if scale_rs(store, d, new_rs, want) {
        return;
    }
    // reconcileOldReplicaSets
    if old_replicas == 0 {
        cleanup(store, d, olds, t);
        return;
    }
    let all = new_replicas + old_replicas;
    let (_, max_unavailable) = surge_and_unavailable(d);
    let min_available = r - max_unavailable;
    let new_unavailable = new_replicas - i(&new_rs["status"]["availableReplicas"]);
    let max_scaled_down = all - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return;
    }
    // cleanupUnhealthyReplicas: old pods that are not available go first.
    let mut cleaned = 0;
    for rs in olds.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        let spec = i(&rs["spec"]["replicas"]);
        let unhealthy = spec - i(&rs["status"]["availableReplicas"]);
        if spec == 0 || unhealthy <= 0 {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(unhealthy);
        scale_rs(store, d, rs, spec - down);
        cleaned += down;
    }
    // scaleDownOldReplicaSetsForRollingUpdate: as far as availability allows.
    let available: i64 =
        olds.iter().chain(std::iter::once(&*new_rs)).map(|rs| i(&rs["status"]["availableReplicas"])).sum();
    if available <= min_available {
        return;
    }
    let total = available - min_available;
    let mut scaled_down = 0;
    for rs in olds.iter_mut() {
        if scaled_down >= total {
            break;
        }
        let spec = i(&rs["spec"]["replicas"]);
        if spec == 0 {
            continue;
        }
        let down = spec.min(total - scaled_down);
        scale_rs(store, d, rs, spec - down);
        scaled_down += down;
    }
}

fn rollout_recreate(store: &mut Store, d: &Value, new_rs: &mut Value, olds: &mut [Value], t: DateTime<Utc>) {
    let mut scaled = false;
    for rs in olds.iter_mut() {
        scaled |= scale_rs(store, d, rs, 0);
    }
    if scaled {
        return;
    }
    if !old_pods_left(store, olds) {
        scale_rs(store, d, new_rs, replicas_of(d));
    }
    if i(&new_rs["spec"]["replicas"]) == replicas_of(d) {
        cleanup(store, d, olds, t);
    }
}

/// Whether a pod of these ReplicaSets is still there (running or stopping).
fn old_pods_left(store: &Store, olds: &[Value]) -> bool {
    let uids: BTreeSet<String> = olds.iter().map(|rs| meta(rs, "uid")).collect();
    store.all(pods()).iter().any(|p| controller_uid(p).is_some_and(|u| uids.contains(&u)) && !finished(p))
}

/// Old ReplicaSets scaled to zero beyond `revisionHistoryLimit` go, oldest revision first.
fn cleanup(store: &mut Store, d: &Value, olds: &[Value], t: DateTime<Utc>) {
    let limit = d["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10);
    let mut idle: Vec<&Value> =
        olds.iter().filter(|rs| i(&rs["spec"]["replicas"]) == 0 && i(&rs["status"]["replicas"]) == 0).collect();
    let extra = i64::try_from(idle.len()).unwrap_or(0) - limit;
    if extra <= 0 {
        return;
    }
    idle.sort_by_key(|rs| revision(rs));
    for rs in idle.into_iter().take(usize::try_from(extra).unwrap_or(0)) {
        let _ = store.delete(kind_of("replicasets"), Some(&ns_of(rs)), &meta(rs, "name"), &json!({}), t);
    }
}

/// `calculateStatus` and `syncRolloutStatus`.
fn sync_rollout_status(store: &mut Store, ns: &str, name: &str, t: DateTime<Utc>) {
    let Ok(d) = store.get(kind_of("deployments"), Some(ns), name) else { return };
    let all = owned_replicasets(store, &d);
    let template = without_hash(&d["spec"]["template"]);
    let new_rs = all.iter().find(|rs| without_hash(&rs["spec"]["template"]) == template).cloned();
    let sum = |f: &dyn Fn(&Value) -> i64| -> i64 { all.iter().map(f).sum() };
    let available = sum(&|rs| i(&rs["status"]["availableReplicas"]));
    let total = sum(&|rs| i(&rs["spec"]["replicas"]));
    let replicas = sum(&|rs| i(&rs["status"]["replicas"]));
    let updated = new_rs.as_ref().map_or(0, |rs| i(&rs["status"]["replicas"]));
    let ready = sum(&|rs| i(&rs["status"]["readyReplicas"]));
    let unavailable = (total - available).max(0);
    let spec_replicas = replicas_of(&d);
    let (_, max_unavailable) = surge_and_unavailable(&d);

    let old = d["status"].clone();
    let mut status = json!({"observedGeneration": d["metadata"]["generation"]});
    // The API omits zero counts (omitempty).
    for (field, v) in [
        ("replicas", replicas),
        ("updatedReplicas", updated),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("unavailableReplicas", unavailable),
    ] {
        if v != 0 {
            status[field] = json!(v);
        }
    }
    if !old["collisionCount"].is_null() {
        status["collisionCount"] = old["collisionCount"].clone();
    }
    if old["conditions"].is_array() {
        status["conditions"] = old["conditions"].clone();
    }
    let c = if available >= spec_replicas - max_unavailable {
        new_condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into(), t)
    } else {
        new_condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            t,
        )
    };
    set_condition(&mut status, c);

    let pds = d["spec"]["progressDeadlineSeconds"].as_i64();
    if pds.is_none() {
        remove_condition(&mut status, "Progressing");
    }
    let current = condition(&d["status"], "Progressing");
    let complete_before =
        replicas == updated && current.as_ref().is_some_and(|c| c["reason"] == "NewReplicaSetAvailable");
    if let Some(pds) = pds
        && !complete_before
    {
        let rs_name = new_rs.as_ref().map(|rs| meta(rs, "name")).unwrap_or_default();
        let complete = updated == spec_replicas
            && replicas == spec_replicas
            && available == spec_replicas
            && i(&status["observedGeneration"]) >= i(&d["metadata"]["generation"]);
        let old_old = i(&old["replicas"]) - i(&old["updatedReplicas"]);
        let progressing = updated > i(&old["updatedReplicas"])
            || replicas - updated < old_old
            || ready > i(&old["readyReplicas"])
            || available > i(&old["availableReplicas"]);
        if complete {
            let c = new_condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                t,
            );
            set_condition(&mut status, c);
        } else if progressing {
            let mut c = new_condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{rs_name}\" is progressing."),
                t,
            );
            if let Some(current) = &current {
                if current["status"] == "True" {
                    c["lastTransitionTime"] = current["lastTransitionTime"].clone();
                }
                remove_condition(&mut status, "Progressing");
            }
            set_condition(&mut status, c);
        } else if let Some(cond) = condition(&status, "Progressing") {
            let timed_out = cond["reason"] == "ProgressDeadlineExceeded"
                || cond["reason"] != "NewReplicaSetAvailable"
                    && parse_time(&cond["lastUpdateTime"]).is_some_and(|from| from + Duration::seconds(pds) < t);
            if timed_out {
                let c = new_condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                    t,
                );
                set_condition(&mut status, c);
            }
        }
    }
    if status != old {
        let mut next = d;
        next["status"] = status;
        write_status(store, "deployments", &next);
    }
}

// ---------------------------------------------------------------------------------------------
// The ReplicaSet controller.

fn sync_replicaset(store: &mut Store, rs: &Value, t: DateTime<Utc>) {
    if terminating(rs) {
        return;
    }
    let ns = ns_of(rs);
    let uid = meta(rs, "uid");
    let mine: Vec<Value> = store
        .all(pods())
        .into_iter()
        .filter(|p| ns_of(p) == ns && controller_uid(p).as_deref() == Some(uid.as_str()) && !finished(p))
        .collect();
    let mut active: Vec<Value> = mine.iter().filter(|p| !terminating(p)).cloned().collect();
    let want = i(&rs["spec"]["replicas"]);
    let have = i64::try_from(active.len()).unwrap_or(0);
    if have < want {
        let template = &rs["spec"]["template"];
        for _ in have..want {
            let mut metadata = json!({
                "generateName": format!("{}-", meta(rs, "name")),
                "labels": template["metadata"]["labels"],
                "ownerReferences": owner_ref(rs, "apps/v1", "ReplicaSet"),
            });
            if template["metadata"]["annotations"].is_object() {
                metadata["annotations"] = template["metadata"]["annotations"].clone();
            }
            let pod = json!({"metadata": metadata, "spec": template["spec"]});
            if let Ok(pod) = store.create(pods(), Some(&ns), pod, t, false) {
                store.sim.slow.insert(super::store::Store::key(pods(), Some(&ns), &meta(&pod, "name")));
                active.push(pod);
            }
        }
    } else if have > want {
        // `ActivePodsWithRanks`: unbound before bound, pending before running, unready before
        // ready, ready for less time before longer, newer before older.
        active.sort_by_key(|p| {
            (
                !p["spec"]["nodeName"].as_str().unwrap_or_default().is_empty(),
                p["status"]["phase"] == "Running",
                is_ready(p),
                std::cmp::Reverse(ready_since(p)),
                std::cmp::Reverse(meta(p, "creationTimestamp")),
                std::cmp::Reverse(meta(p, "name")),
            )
        });
        let surplus = usize::try_from(have - want).unwrap_or(0);
        for p in active.drain(..surplus) {
            let _ = store.delete(pods(), Some(&ns), &meta(&p, "name"), &json!({}), t);
        }
    }
    let min_ready = i(&rs["spec"]["minReadySeconds"]);
    let count = |f: &dyn Fn(&Value) -> bool| i64::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(0);
    let replicas = i64::try_from(active.len()).unwrap_or(0);
    let ready = count(&is_ready);
    let avail = count(&|p| available(p, min_ready, t));
    let Ok(current) = store.get(kind_of("replicasets"), Some(&ns), &meta(rs, "name")) else { return };
    let mut status = json!({"replicas": replicas, "observedGeneration": current["metadata"]["generation"]});
    for (field, v) in [("fullyLabeledReplicas", replicas), ("readyReplicas", ready), ("availableReplicas", avail)] {
        if v != 0 {
            status[field] = json!(v);
        }
    }
    if current["status"] != status {
        let mut next = current;
        next["status"] = status;
        write_status(store, "replicasets", &next);
    }
}

// ---------------------------------------------------------------------------------------------
// The scheduler, and EKS's Fargate scheduler.

/// Why a node does not fit a pod, as kube-scheduler's message says it.
fn unfit(pod: &Value, node: &Value, on_node: usize) -> Option<String> {
    let ready = node["status"]["conditions"]
        .as_array()
        .is_none_or(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    if !ready {
        return Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }".into());
    }
    if node["spec"]["unschedulable"] == true {
        return Some("node(s) were unschedulable".into());
    }
    let tolerations: Vec<&Value> = pod["spec"]["tolerations"].as_array().into_iter().flatten().collect();
    let tolerates = |taint: &Value| {
        tolerations.iter().any(|t| {
            let key_ok = t["key"].as_str().unwrap_or_default().is_empty() && t["operator"] == "Exists"
                || t["key"] == taint["key"] && (t["operator"] == "Exists" || t["value"] == taint["value"]);
            let effect_ok = t["effect"].as_str().unwrap_or_default().is_empty() || t["effect"] == taint["effect"];
            key_ok && effect_ok
        })
    };
    if let Some(taint) = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["effect"] == "NoSchedule" || t["effect"] == "NoExecute")
        .find(|t| !tolerates(t))
    {
        return Some(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint["key"].as_str().unwrap_or_default(),
            taint["value"].as_str().unwrap_or_default()
        ));
    }
    let labels = labels_of(node);
    let selector_ok = pod["spec"]["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let terms =
        &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    let affinity_ok = terms.as_array().is_none_or(|terms| terms.iter().any(|term| term_matches(term, node)));
    if !selector_ok || !affinity_ok {
        return Some("node(s) didn't match Pod's node affinity/selector".into());
    }
    let room = node["status"]["allocatable"]["pods"]
        .as_str()
        .and_then(|p| p.parse::<usize>().ok())
        .or_else(|| node["status"]["allocatable"]["pods"].as_u64().and_then(|p| usize::try_from(p).ok()));
    if room.is_some_and(|room| on_node >= room) {
        return Some("Too many pods".into());
    }
    None
}

/// A `nodeSelectorTerm`: every expression holds (an empty term matches nothing).
fn term_matches(term: &Value, node: &Value) -> bool {
    let labels = labels_of(node);
    let expressions = term["matchExpressions"].as_array().cloned().unwrap_or_default();
    let fields = term["matchFields"].as_array().cloned().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let holds = |e: &Value, value: Option<String>| {
        let values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let number = |s: &str| s.parse::<i64>().ok();
        match e["operator"].as_str().unwrap_or_default() {
            "In" => value.is_some_and(|v| values.contains(&v.as_str())),
            "NotIn" => value.is_none_or(|v| !values.contains(&v.as_str())),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            "Gt" => {
                value.and_then(|v| number(&v)).zip(values.first().and_then(|v| number(v))).is_some_and(|(a, b)| a > b)
            }
            "Lt" => {
                value.and_then(|v| number(&v)).zip(values.first().and_then(|v| number(v))).is_some_and(|(a, b)| a < b)
            }
            _ => false,
        }
    };
    expressions.iter().all(|e| holds(e, labels.get(e["key"].as_str().unwrap_or_default()).cloned()))
        && fields.iter().all(|e| holds(e, (e["key"] == "metadata.name").then(|| meta(node, "name"))))
}

fn profile_for(store: &Store, pod: &Value) -> Option<FargateProfile> {
    let labels = labels_of(pod);
    let ns = ns_of(pod);
    store
        .sim
        .profiles
        .iter()
        .find(|p| p.namespace == ns && p.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .cloned()
}

/// The start of a Fargate pod's node: 30–60 s, fixed per pod.
pub fn fargate_start(namespace: &str, name: &str) -> Duration {
    let (low, high) = FARGATE_START_SECONDS;
    let spread = u32::try_from(high - low + 1).unwrap_or(1);
    Duration::seconds(low + i64::from(fnv32a(format!("{namespace}/{name}").as_bytes()) % spread))
}

/// Binds every unbound pending pod where it fits; a pod that fits nowhere gets
/// PodScheduled=False and stays Pending.
pub(super) fn schedule_pending(store: &mut Store, t: DateTime<Utc>) {
    let keys: Vec<Key> = store
        .objects
        .iter()
        .filter(|((p, _, _), o)| {
            *p == "pods"
                && !terminating(o)
                && o["status"]["phase"] == "Pending"
                && o["spec"]["nodeName"].as_str().unwrap_or_default().is_empty()
        })
        .map(|(k, _)| k.clone())
        .collect();
    for key in keys {
        let Some(pod) = store.objects.get(&key).cloned() else { continue };
        let mut next = pod.clone();
        if let Some(profile) = profile_for(store, &pod) {
            let node = fargate_node(store, &profile, t, fargate_start(&key.1, &key.2));
            next["spec"]["nodeName"] = json!(node.0);
            next["spec"]["schedulerName"] = json!("fargate-scheduler");
            next["metadata"]["annotations"]["CapacityProvisioned"] = json!("0.25vCPU 0.5GB");
            store.sim.starts.insert(key.clone(), node.1);
        } else {
            let nodes = store.all(&KINDS[1]);
            let count_on = |name: &str| {
                store
                    .objects
                    .iter()
                    .filter(|((p, _, _), o)| *p == "pods" && o["spec"]["nodeName"] == name && !finished(o))
                    .count()
            };
            let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
            let mut best: Option<(usize, String)> = None;
            for n in &nodes {
                let name = meta(n, "name");
                let on = count_on(&name);
                match unfit(&pod, n, on) {
                    Some(why) => *reasons.entry(why).or_default() += 1,
                    None if best.as_ref().is_none_or(|(b, _)| on < *b) => best = Some((on, name)),
                    None => {}
                }
            }
            match best {
                Some((_, name)) => {
                    next["spec"]["nodeName"] = json!(name);
                    if store.sim.slow.contains(&key) {
                        store.sim.starts.insert(key.clone(), t + Duration::seconds(POD_START_SECONDS));
                    }
                }
                None => {
                    let why: Vec<String> = reasons.iter().map(|(why, n)| format!("{n} {why}")).collect();
                    let message = format!(
                        "0/{} nodes are available: {}. preemption: 0/{} nodes are available: {} Preemption is not helpful for scheduling.",
                        nodes.len(),
                        why.join(", "),
                        nodes.len(),
                        nodes.len()
                    );
                    let already = next["status"]["conditions"].as_array().into_iter().flatten().any(|c| {
                        c["type"] == "PodScheduled" && c["status"] == "False" && c["message"] == json!(message)
                    });
                    if already {
                        continue;
                    }
                    next["status"]["conditions"] = json!([{
                        "type": "PodScheduled", "status": "False", "lastProbeTime": null,
                        "lastTransitionTime": timestamp(t), "reason": "Unschedulable", "message": message,
                    }]);
                    next["metadata"]["resourceVersion"] = json!(store.next_rv());
                    store.objects.insert(key, next);
                    continue;
                }
            }
        }
        if let Some(c) = next["status"]["conditions"].as_array_mut() {
            c.retain(|c| c["type"] != "PodScheduled");
        }
        store.sim.slow.remove(&key);
        next["metadata"]["resourceVersion"] = json!(store.next_rv());
        store.objects.insert(key, next);
    }
}

/// A Fargate node for one pod, NotReady until `start` has passed: its name and Ready time.
fn fargate_node(
    store: &mut Store,
    profile: &FargateProfile,
    t: DateTime<Utc>,
    start: Duration,
) -> (String, DateTime<Utc>) {
    store.sim.fargate_nodes += 1;
    let n = store.sim.fargate_nodes;
    let ip = format!("10.0.{}.{}", 128 + (n / 250) % 100, n % 250 + 4);
    let name = format!("fargate-ip-{}.ec2.internal", ip.replace('.', "-"));
    let az = "us-east-1a";
    let at = timestamp(t);
    let node = json!({
        "metadata": {"name": name, "labels": {
            COMPUTE_TYPE: "fargate", "eks.amazonaws.com/fargate-profile": profile.name,
            "kubernetes.io/hostname": ip, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": az, "topology.kubernetes.io/region": "us-east-1",
        }},
        "spec": {
            "providerID": format!("aws:///{az}/{:010x}/{name}", fnv32a(name.as_bytes())),
            "taints": [{"key": COMPUTE_TYPE, "value": "fargate", "effect": "NoSchedule"}],
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "container runtime is starting", "lastHeartbeatTime": at, "lastTransitionTime": at}],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}, {"type": "InternalDNS", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.37.0-eks", "containerRuntimeVersion": "containerd://2.1.0", "architecture": "amd64", "operatingSystem": "linux"},
            "allocatable": {"cpu": "250m", "memory": "512Mi", "pods": "1"},
            "capacity": {"cpu": "250m", "memory": "512Mi", "pods": "1"},
        },
    });
    let ready = t + start;
    let _ = store.create(&KINDS[1], None, node, t, false);
    store.sim.fargate_ready.insert(name.clone(), ready);
    (name, ready)
}

/// Fargate nodes turn Ready at their time, and go when their pod has gone.
fn fargate_nodes(store: &mut Store, t: DateTime<Utc>) {
    let due: Vec<String> = store.sim.fargate_ready.iter().filter(|(_, at)| **at <= t).map(|(n, _)| n.clone()).collect();
    for name in due {
        store.sim.fargate_ready.remove(&name);
        let key = Store::key(&KINDS[1], None, &name);
        if let Some(mut node) = store.objects.get(&key).cloned() {
            let at = timestamp(t);
            node["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": at, "lastTransitionTime": at}]);
            node["metadata"]["resourceVersion"] = json!(store.next_rv());
            store.objects.insert(key, node);
        }
    }
    let empty: Vec<String> = store
        .all(&KINDS[1])
        .iter()
        .filter(|n| n["metadata"]["labels"][COMPUTE_TYPE] == "fargate")
        .map(|n| meta(n, "name"))
        .filter(|name| {
            !store.objects.iter().any(|((p, _, _), o)| *p == "pods" && o["spec"]["nodeName"] == name.as_str())
        })
        .collect();
    for name in empty {
        store.sim.fargate_ready.remove(&name);
        let _ = store.delete(&KINDS[1], None, &name, &json!({}), t);
    }
}

// ---------------------------------------------------------------------------------------------
// The EndpointSlice controller.

fn sync_endpoints(store: &mut Store, svc: &Value, t: DateTime<Utc>) {
    let Some(selector) = svc["spec"]["selector"].as_object().filter(|s| !s.is_empty()) else { return };
    let ns = ns_of(svc);
    let name = meta(svc, "name");
    let nodes = store.all(&KINDS[1]);
    let mut matched: Vec<Value> = store
        .all(pods())
        .into_iter()
        .filter(|p| ns_of(p) == ns && !finished(p) && p["status"]["podIP"].is_string())
        .filter(|p| {
            let labels = labels_of(p);
            selector.iter().all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
        })
        .collect();
    matched.sort_by_key(|p| meta(p, "name"));
    let endpoints: Vec<Value> = matched
        .iter()
        .map(|p| {
            let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
            let mut e = json!({
                "addresses": [p["status"]["podIP"]],
                "conditions": {"ready": is_ready(p) && !terminating(p), "serving": is_ready(p), "terminating": terminating(p)},
                "nodeName": node,
                "targetRef": {"kind": "Pod", "namespace": ns, "name": meta(p, "name"), "uid": meta(p, "uid")},
            });
            if let Some(zone) = nodes
                .iter()
                .find(|n| meta(n, "name") == node)
                .and_then(|n| n["metadata"]["labels"]["topology.kubernetes.io/zone"].as_str())
            {
                e["zone"] = json!(zone);
            }
            e
        })
        .collect();
    let ports: Vec<Value> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let port = match &p["targetPort"] {
                Value::Number(n) => json!(n),
                Value::String(named) => matched
                    .iter()
                    .flat_map(|pod| pod["spec"]["containers"].as_array().cloned().unwrap_or_default())
                    .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                    .find(|cp| cp["name"] == named.as_str())
                    .map_or(p["port"].clone(), |cp| cp["containerPort"].clone()),
                _ => p["port"].clone(),
            };
            let mut out = json!({"port": port, "protocol": p["protocol"]});
            out["name"] = p["name"].as_str().map_or(json!(""), |n| json!(n));
            out
        })
        .collect();
    let ready = endpoints.iter().filter(|e| e["conditions"]["ready"] == true).count();
    if let Some(fewest) = store.sim.fewest_ready.get_mut(&(ns.clone(), name.clone())) {
        *fewest = (*fewest).min(ready);
    }
    let existing = store.all(kind_of("endpointslices")).into_iter().find(|s| {
        ns_of(s) == ns
            && s["metadata"]["labels"][SERVICE_NAME] == name.as_str()
            && s["metadata"]["labels"][MANAGED_BY] == SLICE_CONTROLLER
    });
    match existing {
        Some(slice) => {
            if slice["endpoints"] == json!(endpoints) && slice["ports"] == json!(ports) {
                return;
            }
            let mut next = slice;
            next["endpoints"] = json!(endpoints);
            next["ports"] = json!(ports);
            next["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"] = json!(timestamp(t));
            write_spec(store, "endpointslices", &next);
        }
        None => {
            let mut labels = Map::new();
            labels.insert(SERVICE_NAME.into(), json!(name));
            labels.insert(MANAGED_BY.into(), json!(SLICE_CONTROLLER));
            let slice = json!({
                "metadata": {
                    "generateName": format!("{name}-"), "labels": labels,
                    "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": timestamp(t)},
                    "ownerReferences": owner_ref(svc, "v1", "Service"),
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            });
            let _ = store.create(kind_of("endpointslices"), Some(&ns), slice, t, false);
        }
    }
}
