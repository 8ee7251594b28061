//! The fake API server's objects and what the API server does to them: one global
//! resourceVersion, uids, generation bumped on spec changes, graceful pod deletion, the eviction
//! subresource with PodDisruptionBudgets, and the kubelet, disruption controller and the
//! controllers of `controllers.rs` run to the fake's clock (lazily: each request first settles
//! the world up to "now", event by event).

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde_json::{Map, Value, json};

use super::controllers;
use super::patch;
use super::selector::{self, FieldTerm, Requirement};

/// A resource the fake serves.
#[derive(Debug)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Whether `metadata.generation` is kept (not for nodes and namespaces, as in Kubernetes).
    pub generation: bool,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `pods`, `daemonsets.apps`: how the API server names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }
}

pub static KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        generation: false,
    },
    Kind {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        generation: false,
    },
    Kind {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        generation: true,
    },
    Kind {
        group: "policy",
        version: "v1",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        kind: "PodDisruptionBudget",
        namespaced: true,
        short_names: &["pdb"],
        generation: true,
    },
    Kind {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        short_names: &["ds"],
        generation: true,
    },
    Kind {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        generation: true,
    },
    Kind {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
        short_names: &["rs"],
        generation: true,
    },
    // RBAC, stored as given (no authorizer reads it): kubectl reads and reconciles
    // deploy/kubernetes/rbac.yaml here. The API server keeps no generation for them.
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterroles",
        singular: "clusterrole",
        kind: "ClusterRole",
        namespaced: false,
        short_names: &[],
        generation: false,
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        namespaced: false,
        short_names: &[],
        generation: false,
    },
    Kind {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        generation: false,
    },
    Kind {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short_names: &[],
        generation: false,
    },
];

pub fn kind(plural: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.plural == plural)
}

pub(super) fn pods() -> &'static Kind {
    &KINDS[2]
}

fn pdbs() -> &'static Kind {
    &KINDS[3]
}

/// An error as the API server answers it: a `Status` object with the code.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: None }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    fn about(kind: &Kind, name: &str) -> Value {
        let mut d = json!({"name": name, "kind": kind.plural});
        if !kind.group.is_empty() {
            d["group"] = json!(kind.group);
        }
        d
    }

    pub fn not_found(kind: &Kind, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", kind.qualified()))
            .with_details(Self::about(kind, name))
    }

    pub fn already_exists(kind: &Kind, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", kind.qualified()))
            .with_details(Self::about(kind, name))
    }

    pub fn conflict(kind: &Kind, name: &str, why: &str) -> Self {
        Self::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{name}\": {why}", kind.qualified()))
            .with_details(Self::about(kind, name))
    }

    pub fn precondition(kind: &Kind, name: &str, what: &str, wanted: &str, actual: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {actual}"),
        )
        .with_details(Self::about(kind, name))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn invalid(kind: &Kind, name: &str, field: &str, cause_reason: &str, why: &str) -> Self {
        let mut details = Self::about(kind, name);
        details["kind"] = json!(kind.kind);
        details["causes"] = json!([{"reason": cause_reason, "message": why, "field": field}]);
        Self::new(422, "Invalid", format!("{} \"{name}\" is invalid: {field}: {why}", kind.kind)).with_details(details)
    }

    pub fn unsupported_media(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (the fake does not take {content_type:?})"
            ),
        )
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn no_such_path() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
            .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}))
    }

    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// A success `Status`.
pub fn success(code: u16, details: Option<Value>) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code});
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let whole = t.with_nanosecond(0).unwrap_or(t);
    if whole == t { t } else { whole + chrono::Duration::seconds(1) }
}

pub(super) fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.to_utc())
}

pub(super) type Key = (&'static str, String, String);

/// Every object, by resource, namespace and name (the order etcd lists them in).
#[derive(Debug, Default, Clone)]
pub struct Store {
    rv: u64,
    uids: u64,
    pub(super) objects: BTreeMap<Key, Value>,
    /// What the controllers keep beside the objects (start times, Fargate profiles, the clock
    /// the world was last settled to).
    pub(super) sim: controllers::Sim,
}

pub(super) fn meta(obj: &Value, field: &str) -> String {
    obj["metadata"][field].as_str().unwrap_or_default().to_string()
}

pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
        .collect()
}

pub(super) fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

pub(super) fn terminating(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

fn has_finalizers(obj: &Value) -> bool {
    obj["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
}

/// Parsed list options.
pub struct ListOptions {
    pub labels: Vec<Requirement>,
    pub fields: Vec<FieldTerm>,
    pub limit: Option<usize>,
    pub start_after: Option<(String, String)>,
}

impl ListOptions {
    pub fn parse(kind: &Kind, query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let labels = selector::parse_labels(query.get("labelSelector").map(String::as_str).unwrap_or_default())
            .map_err(ApiError::bad_request)?;
        let fields = selector::parse_fields(query.get("fieldSelector").map(String::as_str).unwrap_or_default())
            .map_err(ApiError::bad_request)?;
        for term in &fields {
            if field_value(kind, &json!({}), &term.field).is_none() {
                return Err(ApiError::bad_request(format!("field label not supported: {}", term.field)));
            }
        }
        let limit = match query.get("limit").map(|l| l.parse::<i64>()) {
            None => None,
            Some(Ok(n)) if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Some(Ok(_)) => None,
            Some(Err(_)) => return Err(ApiError::bad_request("limit: not a number")),
        };
        let start_after = match query.get("continue").filter(|c| !c.is_empty()) {
            None => None,
            Some(token) => Some(
                decode_continue(token)
                    .ok_or_else(|| ApiError::bad_request(format!("continue key is not valid: {token}")))?,
            ),
        };
        Ok(Self { labels, fields, limit, start_after })
    }
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    STANDARD.encode(json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{ns}/{name}\u{0}")}).to_string())
}

fn decode_continue(token: &str) -> Option<(String, String)> {
    let bytes = STANDARD.decode(token).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let start = v["start"].as_str()?.strip_suffix('\u{0}')?;
    let (ns, name) = start.split_once('/')?;
    Some((ns.to_string(), name.to_string()))
}

/// The value of a field selector's field on an object; `None` when the field is not one the API
/// server supports for this resource.
fn field_value(kind: &Kind, obj: &Value, field: &str) -> Option<String> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let b = |v: &Value| v.as_bool().unwrap_or(false).to_string();
    match (kind.plural, field) {
        (_, "metadata.name") => Some(s(&obj["metadata"]["name"])),
        (p, "metadata.namespace") if kind.namespaced || p == "namespaces" => Some(s(&obj["metadata"]["namespace"])),
        ("pods", "spec.nodeName") => Some(s(&obj["spec"]["nodeName"])),
        ("pods", "spec.restartPolicy") => Some(s(&obj["spec"]["restartPolicy"])),
        ("pods", "spec.schedulerName") => Some(s(&obj["spec"]["schedulerName"])),
        ("pods", "spec.serviceAccountName") => Some(s(&obj["spec"]["serviceAccountName"])),
        ("pods", "spec.hostNetwork") => Some(b(&obj["spec"]["hostNetwork"])),
        ("pods", "status.phase") => Some(s(&obj["status"]["phase"])),
        ("pods", "status.podIP") => Some(s(&obj["status"]["podIP"])),
        ("pods", "status.nominatedNodeName") => Some(s(&obj["status"]["nominatedNodeName"])),
        ("nodes", "spec.unschedulable") => Some(b(&obj["spec"]["unschedulable"])),
        ("namespaces", "status.phase") => Some(s(&obj["status"]["phase"])),
        _ => None,
    }
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub(super) fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn next_uid(&mut self) -> String {
        self.uids += 1;
        // Shaped like a UUID (v4), unique per fake.
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            0x5b07_0000u64 + (self.uids & 0xffff),
            self.uids & 0xffff,
            0x0af,
            0x0e5,
            self.uids
        )
    }

    pub(super) fn key(kind: &Kind, ns: Option<&str>, name: &str) -> Key {
        (
            kind.plural,
            if kind.namespaced { ns.unwrap_or_default().to_string() } else { String::new() },
            name.to_string(),
        )
    }

    pub fn get(&self, kind: &Kind, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.objects.get(&Self::key(kind, ns, name)).cloned().ok_or_else(|| ApiError::not_found(kind, name))
    }

    pub fn all(&self, kind: &Kind) -> Vec<Value> {
        self.objects.iter().filter(|((p, _, _), _)| *p == kind.plural).map(|(_, v)| v.clone()).collect()
    }

    pub fn list(&self, kind: &Kind, ns: Option<&str>, options: &ListOptions) -> Value {
        let matched = self.objects.iter().filter(|((p, o_ns, _), obj)| {
            *p == kind.plural
                && ns.is_none_or(|ns| o_ns.as_str() == ns)
                && selector::labels_match(&options.labels, &labels_of(obj))
                && options
                    .fields
                    .iter()
                    .all(|t| (field_value(kind, obj, &t.field).as_deref() == Some(&t.value)) != t.negated)
        });
        let mut items = Vec::new();
        let mut last = None;
        let mut more = 0usize;
        let started = |o_ns: &String, name: &String| match &options.start_after {
            Some((s_ns, s_name)) => (o_ns, name) > (s_ns, s_name),
            None => true,
        };
        for ((_, o_ns, name), obj) in matched {
            if !started(o_ns, name) {
                continue;
            }
            if options.limit.is_some_and(|l| items.len() >= l) {
                more += 1;
                continue;
            }
            let mut item = obj.clone();
            if let Some(m) = item.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            items.push(item);
            last = Some((o_ns.clone(), name.clone()));
        }
        let mut metadata = json!({"resourceVersion": self.rv.to_string()});
        if more > 0 {
            if let Some((ns, name)) = last {
                metadata["continue"] = json!(encode_continue(self.rv, &ns, &name));
            }
            if options.labels.is_empty() && options.fields.is_empty() {
                metadata["remainingItemCount"] = json!(more);
            }
        }
        json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(), "metadata": metadata, "items": items})
    }

    /// Creates an object. Through the API (`from_api`) the status is the server's; seeding keeps
    /// the one given.
    pub fn create(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        body: Value,
        now: DateTime<Utc>,
        from_api: bool,
    ) -> Result<Value, ApiError> {
        let Value::Object(mut obj) = body else {
            return Err(ApiError::bad_request("the body of the request must be a JSON object"));
        };
        if let Some(k) = obj.get("kind").and_then(Value::as_str)
            && k != kind.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                kind.kind
            )));
        }
        obj.insert("apiVersion".into(), json!(kind.api_version()));
        obj.insert("kind".into(), json!(kind.kind));
        let mut obj = Value::Object(obj);
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let ns = if kind.namespaced {
            let url_ns = ns.unwrap_or("default").to_string();
            let body_ns = meta(&obj, "namespace");
            if !body_ns.is_empty() && body_ns != url_ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if !self.objects.contains_key(&Self::key(&KINDS[0], None, &url_ns)) {
                return Err(ApiError::not_found(&KINDS[0], &url_ns));
            }
            obj["metadata"]["namespace"] = json!(url_ns);
            Some(url_ns)
        } else {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
            None
        };
        let mut name = meta(&obj, "name");
        if name.is_empty() {
            let prefix = meta(&obj, "generateName");
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    kind,
                    "",
                    "metadata.name",
                    "FieldValueRequired",
                    "Required value: name or generateName is required",
                ));
            }
            let alphabet: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
            let base = alphabet.len() as u64;
            let mut n = self.uids.wrapping_mul(2_654_435_761).wrapping_add(self.rv);
            let suffix: String = (0..5)
                .map(|_| {
                    let c = alphabet[usize::try_from(n % base).unwrap_or_default()];
                    n /= base;
                    char::from(c)
                })
                .collect();
            name = format!("{prefix}{suffix}");
            obj["metadata"]["name"] = json!(name);
        }
        let key = Self::key(kind, ns.as_deref(), &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(kind, &name));
        }
        obj["metadata"]["uid"] = json!(self.next_uid());
        obj["metadata"]["creationTimestamp"] = json!(timestamp(now));
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("generation");
        }
        if kind.generation {
            obj["metadata"]["generation"] = json!(1);
        }
        defaults(kind, &mut obj, from_api);
        obj["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.objects.insert(key, obj.clone());
        Ok(obj)
    }

    /// PUT: the whole object (or only its status), with the resourceVersion as precondition.
    pub fn update(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        name: &str,
        body: Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let current = self.get(kind, ns, name)?;
        if !body.is_object() {
            return Err(ApiError::bad_request("the body of the request must be a JSON object"));
        }
        let body_name = meta(&body, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let wanted_rv = meta(&body, "resourceVersion");
        if !wanted_rv.is_empty() && wanted_rv != meta(&current, "resourceVersion") {
            return Err(ApiError::conflict(
                kind,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let wanted_uid = meta(&body, "uid");
        if !wanted_uid.is_empty() && wanted_uid != meta(&current, "uid") {
            return Err(ApiError::precondition(kind, name, "UID", &wanted_uid, &meta(&current, "uid")));
        }
        let mut next = if status_only {
            let mut next = current.clone();
            next["status"] = body["status"].clone();
            next
        } else {
            let mut next = body;
            next["apiVersion"] = json!(kind.api_version());
            next["kind"] = json!(kind.kind);
            if !next["metadata"].is_object() {
                next["metadata"] = json!({});
            }
            for field in [
                "uid",
                "creationTimestamp",
                "namespace",
                "name",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match current["metadata"].get(field) {
                    Some(v) => next["metadata"][field] = v.clone(),
                    None => {
                        if let Some(m) = next["metadata"].as_object_mut() {
                            m.remove(field);
                        }
                    }
                }
            }
            match current.get("status") {
                Some(s) => next["status"] = s.clone(),
                None => {
                    if let Some(m) = next.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            next
        };
        if !status_only {
            // The API server defaults every write, not only creates.
            controllers::defaults(kind.plural, &mut next);
        }
        if kind.plural == "nodes" && next["spec"].get("unschedulable") == Some(&json!(false)) {
            // The API server drops a false `unschedulable` (omitempty).
            if let Some(spec) = next["spec"].as_object_mut() {
                spec.remove("unschedulable");
            }
        }
        next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        if next == current {
            // A no-op write changes nothing, not even the resourceVersion.
            return Ok(current);
        }
        if kind.generation && next.get("spec") != current.get("spec") {
            next["metadata"]["generation"] = json!(current["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
        }
        next["metadata"]["resourceVersion"] = json!(self.next_rv());
        let key = Self::key(kind, ns, name);
        if terminating(&next)
            && !has_finalizers(&next)
            && (kind.plural != "pods" || next["metadata"]["deletionGracePeriodSeconds"] == json!(0))
        {
            // The last finalizer gone: the deletion completes.
            self.objects.remove(&key);
        } else {
            self.objects.insert(key, next.clone());
        }
        Ok(next)
    }

    /// PATCH in one of the three formats; the result goes through `update`.
    pub fn patch(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        name: &str,
        content_type: &str,
        body: &[u8],
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if !matches!(
            media.as_str(),
            "application/merge-patch+json" | "application/json-patch+json" | "application/strategic-merge-patch+json"
        ) {
            return Err(ApiError::unsupported_media(&media));
        }
        let current = self.get(kind, ns, name)?;
        let patch: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        let patched = match media.as_str() {
            "application/merge-patch+json" => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                let mut doc = current.clone();
                patch::merge_patch(&mut doc, &patch);
                doc
            }
            "application/json-patch+json" => patch::json_patch(&current, &patch).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?,
            _ => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request("a strategic merge patch must be a JSON object"));
                }
                patch::strategic_merge(&current, &patch).map_err(ApiError::bad_request)?
            }
        };
        if !patched.is_object() {
            return Err(ApiError::bad_request("the patched object is not a JSON object"));
        }
        // A patched resourceVersion is a precondition (the API server's optimistic locking).
        let patched_rv = meta(&patched, "resourceVersion");
        if !patched_rv.is_empty() && patched_rv != meta(&current, "resourceVersion") {
            return Err(ApiError::conflict(
                kind,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        if status_only {
            return self.update(kind, ns, name, patched, true);
        }
        let mut next = patched;
        next["status"] = current["status"].clone();
        if current.get("status").is_none()
            && let Some(m) = next.as_object_mut()
        {
            m.remove("status");
        }
        self.update(kind, ns, name, next, false)
    }

    /// DELETE with DeleteOptions (grace period, preconditions).
    pub fn delete(
        &mut self,
        kind: &Kind,
        ns: Option<&str>,
        name: &str,
        options: &Value,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let current = self.get(kind, ns, name)?;
        let pre = &options["preconditions"];
        if let Some(uid) = pre["uid"].as_str()
            && uid != meta(&current, "uid")
        {
            return Err(ApiError::precondition(kind, name, "UID", uid, &meta(&current, "uid")));
        }
        if let Some(rv) = pre["resourceVersion"].as_str()
            && rv != meta(&current, "resourceVersion")
        {
            return Err(ApiError::precondition(kind, name, "ResourceVersion", rv, &meta(&current, "resourceVersion")));
        }
        let key = Self::key(kind, ns, name);
        if kind.plural != "pods" {
            if has_finalizers(&current) {
                if terminating(&current) {
                    return Ok(current);
                }
                let mut next = current;
                next["metadata"]["deletionTimestamp"] = json!(timestamp(now));
                next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                next["metadata"]["resourceVersion"] = json!(self.next_rv());
                self.objects.insert(key, next.clone());
                return Ok(next);
            }
            self.objects.remove(&key);
            if kind.plural == "namespaces" {
                self.objects.retain(|(_, o_ns, _), _| o_ns != name);
            }
            self.rv += 1;
            let mut details = ApiError::about(kind, name);
            details["uid"] = json!(meta(&current, "uid"));
            return Ok(success(200, Some(details)));
        }
        let mut grace = match options["gracePeriodSeconds"].as_i64() {
            Some(g) => g,
            None => current["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30),
        };
        if grace < 0 {
            return Err(ApiError::invalid(
                kind,
                name,
                "gracePeriodSeconds",
                "FieldValueInvalid",
                "Invalid value: must be >= 0",
            ));
        }
        let phase = current["status"]["phase"].as_str().unwrap_or_default();
        let unbound = current["spec"]["nodeName"].as_str().unwrap_or_default().is_empty();
        if unbound || phase == "Succeeded" || phase == "Failed" {
            // No kubelet has to stop it: gone at once.
            grace = 0;
        }
        // Whole seconds, as the API server stores it; rounded up so a pod never goes early.
        let deadline = ceil_second(now + chrono::Duration::seconds(grace));
        if terminating(&current) {
            let existing = parse_time(&current["metadata"]["deletionTimestamp"]).unwrap_or(now);
            if deadline >= existing && grace != 0 {
                return Ok(current);
            }
        }
        if grace == 0 && !has_finalizers(&current) {
            self.objects.remove(&key);
            self.rv += 1;
            let mut gone = current;
            gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            return Ok(gone);
        }
        let mut next = current;
        next["metadata"]["deletionTimestamp"] = json!(timestamp(deadline));
        next["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        next["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.objects.insert(key, next.clone());
        Ok(next)
    }

    /// POST pods/<name>/eviction: the pod's PodDisruptionBudget decides, then a delete.
    pub fn evict(&mut self, ns: &str, name: &str, body: &Value, now: DateTime<Utc>) -> Result<Value, ApiError> {
        if let Some(k) = body["kind"].as_str()
            && k != "Eviction"
        {
            return Err(ApiError::bad_request(format!("expected an Eviction, got a {k}")));
        }
        let body_name = body["metadata"]["name"].as_str().unwrap_or_default();
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
        }
        let pod = self.get(pods(), Some(ns), name)?;
        let options = body.get("deleteOptions").cloned().unwrap_or(json!({}));
        if let Some(uid) = options["preconditions"]["uid"].as_str()
            && uid != meta(&pod, "uid")
        {
            return Err(ApiError::precondition(pods(), name, "UID", uid, &meta(&pod, "uid")));
        }
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        // Pods that are finished, not started, or already terminating disrupt nothing more.
        let ignores_pdb = matches!(phase, "Succeeded" | "Failed" | "Pending") || terminating(&pod);
        if !ignores_pdb {
            let labels = labels_of(&pod);
            let matching: Vec<Value> = self
                .all(pdbs())
                .into_iter()
                .filter(|p| meta(p, "namespace") == ns)
                .filter(|p| match p["spec"].get("selector") {
                    Some(s) if !s.is_null() => {
                        selector::from_label_selector(s).is_some_and(|r| selector::labels_match(&r, &labels))
                    }
                    _ => false,
                })
                .collect();
            if matching.len() > 1 {
                let why =
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";
                return Err(ApiError::new(500, "InternalError", format!("Internal error occurred: {why}"))
                    .with_details(json!({"causes": [{"message": why}]})));
            }
            if let Some(pdb) = matching.into_iter().next() {
                let status = &pdb["status"];
                let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
                let current = status["currentHealthy"].as_i64().unwrap_or(0);
                let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
                let unhealthy_may_go = !is_ready(&pod)
                    && (pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow" || current >= desired);
                if !unhealthy_may_go {
                    if allowed < 0 {
                        return Err(ApiError::new(403, "Forbidden", "pdb disruptions allowed is negative"));
                    }
                    if allowed == 0 {
                        let cause = format!(
                            "The disruption budget {} needs {desired} healthy pods and has {current} currently",
                            meta(&pdb, "name")
                        );
                        return Err(ApiError::new(
                            429,
                            "TooManyRequests",
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                        )
                        .with_details(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]})));
                    }
                    let mut next = pdb.clone();
                    next["status"]["disruptionsAllowed"] = json!(allowed - 1);
                    next["status"]["disruptedPods"][name] = json!(timestamp(now));
                    next["metadata"]["resourceVersion"] = json!(self.next_rv());
                    self.objects.insert(Self::key(pdbs(), Some(ns), &meta(&pdb, "name")), next);
                }
            }
        }
        let mut options = options;
        if let Some(m) = options.as_object_mut() {
            m.remove("preconditions");
        }
        self.delete(pods(), Some(ns), name, &options, now)?;
        Ok(success(201, None))
    }

    /// Moves the world to `now`, one event at a time (a pod's grace ending, a pod starting, a
    /// Fargate node becoming Ready, a progress deadline passing), so that a clock moved by ten
    /// minutes at once sees the same history as one moved a second at a time. At each event the
    /// controllers run until nothing changes: terminating pods past their grace vanish, the
    /// Deployment and ReplicaSet controllers scale, unbound pods are scheduled, bound pods start
    /// (Running, Ready), EndpointSlices and PDB status follow Ready pods.
    pub fn settle(&mut self, now: DateTime<Utc>) {
        // Writes since the last settle (a seed, a request) are seen when they were made.
        if let Some(from) = self.sim.settled
            && from <= now
            && self.sim.settled_rv != self.rv
        {
            self.step(from);
        }
        // A bound on the events of one settle, against a controller bug looping forever.
        for _ in 0..100_000 {
            let at = match self.sim.settled {
                Some(from) if from < now => controllers::next_event(self, from, now).unwrap_or(now),
                _ => now,
            };
            self.step(at);
            self.sim.settled = Some(self.sim.settled.map_or(at, |s| s.max(at)));
            if at >= now {
                break;
            }
        }
    }

    /// Everything that happens at `t`, until it stops changing anything.
    fn step(&mut self, t: DateTime<Utc>) {
        for _ in 0..64 {
            let before = self.rv;
            self.kubelet(t);
            controllers::run(self, t);
            self.settle_pdbs(t);
            if self.rv == before {
                break;
            }
        }
        self.sim.settled_rv = self.rv;
    }

    /// Terminating pods past their grace vanish, unbound pods are scheduled, bound pending pods
    /// start once their node is Ready and their start time (controllers' pods) has come.
    fn kubelet(&mut self, now: DateTime<Utc>) {
        let gone: Vec<Key> = self
            .objects
            .iter()
            .filter(|((p, _, _), o)| {
                *p == "pods"
                    && !has_finalizers(o)
                    && parse_time(&o["metadata"]["deletionTimestamp"]).is_some_and(|t| t <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.objects.remove(&key);
            self.sim.starts.remove(&key);
            self.rv += 1;
        }
        controllers::schedule_pending(self, now);
        // Only the pods still to start are cloned: settling runs on every request, and a load
        // test's hundreds of pods must not make each one slow.
        let pod_keys: Vec<Key> = self
            .objects
            .iter()
            .filter(|((p, _, _), o)| *p == "pods" && !terminating(o) && o["status"]["phase"] == "Pending")
            .map(|(k, _)| k.clone())
            .collect();
        let nodes = if pod_keys.is_empty() { Vec::new() } else { self.all(&KINDS[1]) };
        for key in pod_keys {
            let Some(pod) = self.objects.get(&key).cloned() else { continue };
            let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
            if node_name.is_empty() {
                continue;
            }
            let Some(node) = nodes.iter().find(|n| meta(n, "name") == node_name) else { continue };
            let node_not_ready = node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] != "True");
            if node_not_ready || self.sim.starts.get(&key).is_some_and(|s| *s > now) {
                continue;
            }
            let mut next = pod.clone();
            let at = json!(timestamp(now));
            let condition =
                |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": at});
            let host_ip = node["status"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["type"] == "InternalIP")
                .map(|a| a["address"].clone())
                .unwrap_or(json!("10.0.0.1"));
            let containers: Vec<Value> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": at}}}))
                .collect();
            let n = self.rv;
            next["status"] = json!({
                "phase": "Running",
                "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"), condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
                "hostIP": host_ip,
                "podIP": format!("10.244.{}.{}", (n / 250) % 250, n % 250 + 2),
                "startTime": at,
                "containerStatuses": containers,
                "qosClass": "BestEffort",
            });
            next["metadata"]["resourceVersion"] = json!(self.next_rv());
            self.sim.starts.remove(&key);
            self.objects.insert(key, next);
        }
    }

    fn settle_pdbs(&mut self, now: DateTime<Utc>) {
        if !self.objects.keys().any(|(p, _, _)| *p == pdbs().plural) {
            return;
        }
        let all_pods = self.all(pods());
        let replica_sets = self.all(&KINDS[6]);
        let deployments = self.all(&KINDS[5]);
        for pdb in self.all(pdbs()) {
            let ns = meta(&pdb, "namespace");
            let requirements = match pdb["spec"].get("selector") {
                Some(s) if !s.is_null() => selector::from_label_selector(s),
                _ => None,
            };
            let matched: Vec<&Value> = all_pods
                .iter()
                .filter(|p| meta(p, "namespace") == ns)
                .filter(|p| requirements.as_ref().is_some_and(|r| selector::labels_match(r, &labels_of(p))))
                .collect();
            let healthy =
                i64::try_from(matched.iter().filter(|p| !terminating(p) && is_ready(p)).count()).unwrap_or(i64::MAX);
            // The expected count: the owning controllers' replicas where known (as the
            // disruption controller reads their scale), else the pods themselves.
            let mut owners: BTreeMap<String, i64> = BTreeMap::new();
            let mut unowned = 0i64;
            for p in &matched {
                let owner =
                    p["metadata"]["ownerReferences"].as_array().into_iter().flatten().find(|o| o["controller"] == true);
                let replicas = owner.filter(|o| o["kind"] == "ReplicaSet").and_then(|o| {
                    replica_sets
                        .iter()
                        .find(|rs| {
                            meta(rs, "namespace") == ns && meta(rs, "name") == o["name"].as_str().unwrap_or_default()
                        })
                        .and_then(|rs| {
                            // A Deployment's ReplicaSet: the Deployment's scale counts, once for
                            // all its ReplicaSets (as the disruption controller finds it).
                            let deployment = deployments.iter().find(|d| {
                                rs["metadata"]["ownerReferences"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .any(|r| r["controller"] == true && r["uid"] == d["metadata"]["uid"])
                            });
                            match deployment {
                                Some(d) => d["spec"]["replicas"]
                                    .as_i64()
                                    .map(|r| (format!("deployment/{}", meta(d, "name")), r)),
                                None => rs["spec"]["replicas"].as_i64().map(|r| (meta(rs, "name"), r)),
                            }
                        })
                });
                match replicas {
                    Some((name, r)) => {
                        owners.insert(name, r);
                    }
                    None => unowned += 1,
                }
            }
            let expected = owners.values().sum::<i64>() + unowned;
            let scaled = |v: &Value| -> i64 {
                match v {
                    Value::Number(n) => n.as_i64().unwrap_or(0),
                    Value::String(s) => {
                        let pct = s.trim_end_matches('%').parse::<i64>().unwrap_or(0);
                        (pct * expected + 99) / 100
                    }
                    _ => 0,
                }
            };
            let desired = if let Some(min) = pdb["spec"].get("minAvailable").filter(|v| !v.is_null()) {
                scaled(min)
            } else if let Some(max) = pdb["spec"].get("maxUnavailable").filter(|v| !v.is_null()) {
                (expected - scaled(max)).max(0)
            } else {
                // Neither given: minAvailable 1 is the API server's default.
                1
            };
            let allowed = (healthy - desired).max(0);
            let generation = pdb["metadata"]["generation"].clone();
            let mut status = json!({
                "observedGeneration": generation,
                "disruptionsAllowed": allowed,
                "currentHealthy": healthy,
                "desiredHealthy": desired,
                "expectedPods": expected,
            });
            let old = &pdb["status"];
            let same = ["observedGeneration", "disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"]
                .iter()
                .all(|f| old[*f] == status[*f]);
            if same {
                continue;
            }
            let ok = allowed > 0;
            let since = if old["conditions"][0]["status"] == json!(if ok { "True" } else { "False" }) {
                old["conditions"][0]["lastTransitionTime"].clone()
            } else {
                json!(timestamp(now))
            };
            status["conditions"] = json!([{
                "type": "DisruptionAllowed",
                "status": if ok { "True" } else { "False" },
                "reason": if ok { "SufficientPods" } else { "InsufficientPods" },
                "message": "",
                "observedGeneration": generation,
                "lastTransitionTime": since,
            }]);
            let mut next = pdb.clone();
            next["status"] = status;
            next["metadata"]["resourceVersion"] = json!(self.next_rv());
            self.objects.insert(Self::key(pdbs(), Some(&ns), &meta(&pdb, "name")), next);
        }
    }
}

/// What the API server fills in on create.
fn defaults(kind: &Kind, obj: &mut Value, from_api: bool) {
    match kind.plural {
        "pods" => {
            if !obj["spec"].is_object() {
                obj["spec"] = json!({});
            }
            let spec = &mut obj["spec"];
            for (field, value) in [
                ("terminationGracePeriodSeconds", json!(30)),
                ("restartPolicy", json!("Always")),
                ("schedulerName", json!("default-scheduler")),
                ("dnsPolicy", json!("ClusterFirst")),
                ("serviceAccountName", json!("default")),
                ("enableServiceLinks", json!(true)),
                ("preemptionPolicy", json!("PreemptLowerPriority")),
                ("priority", json!(0)),
            ] {
                if spec.get(field).is_none_or(Value::is_null) {
                    spec[field] = value;
                }
            }
            if from_api || obj["status"]["phase"].is_null() {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
        }
        "namespaces" => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        "poddisruptionbudgets" | "daemonsets" | "deployments" | "replicasets" => {
            if from_api || obj.get("status").is_none() {
                obj["status"] = match kind.plural {
                    "poddisruptionbudgets" => {
                        json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0})
                    }
                    "daemonsets" => {
                        json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0})
                    }
                    _ => json!({}),
                };
            }
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.entry("labels").or_insert_with(|| Value::Object(Map::new()));
            }
            controllers::defaults(kind.plural, obj);
        }
        "services" => {
            controllers::defaults(kind.plural, obj);
            if from_api || obj.get("status").is_none() {
                obj["status"] = json!({"loadBalancer": {}});
            }
        }
        _ => {}
    }
}
