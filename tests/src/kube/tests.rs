//! The fake's behaviour where kubectl does not reach it (the contract test does the rest):
//! evictions' corner cases, the clock-driven kubelet and disruption controller, optimistic
//! concurrency, paging, and the error bodies.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Timelike, Utc};
use serde_json::{Value, json};

use super::api::{ApiRequest, handle};
use super::store::{KINDS, Store, kind};

struct World {
    store: Store,
    now: DateTime<Utc>,
}

impl World {
    fn new() -> Self {
        // Whole seconds, so that grace periods end exactly where the tests look.
        let now = Utc::now().with_nanosecond(0).unwrap_or_else(Utc::now);
        let mut w = Self { store: Store::new(), now };
        for ns in ["default", "kube-system"] {
            w.seed("namespaces", None, json!({"metadata": {"name": ns}}));
        }
        w.seed("nodes", None, json!({"metadata": {"name": "n1"}, "spec": {"providerID": "aws:///us-east-1a/i-1"}}));
        w
    }

    fn seed(&mut self, plural: &str, ns: Option<&str>, obj: Value) -> Value {
        let k = kind(plural).expect("a kind");
        self.store.create(k, ns, obj, self.now, false).expect("seeded")
    }

    fn pod(&mut self, name: &str, labels: Value, grace: i64) -> Value {
        self.seed(
            "pods",
            Some("default"),
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": grace, "containers": [{"name": "c", "image": "i"}]}}),
        )
    }

    fn call(&mut self, method: &str, uri: &str, content_type: &str, body: Value) -> (u16, Value) {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let query: HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        self.store.settle(self.now);
        handle(&mut self.store, self.now, &ApiRequest { method, path, query, content_type, body: &body })
    }

    fn get(&mut self, uri: &str) -> (u16, Value) {
        self.call("GET", uri, "", Value::Null)
    }

    fn evict(&mut self, pod: &str, delete_options: Value) -> (u16, Value) {
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": "default"}, "deleteOptions": delete_options});
        self.call("POST", &format!("/api/v1/namespaces/default/pods/{pod}/eviction"), "application/json", body)
    }

    fn advance(&mut self, seconds: i64) {
        self.now += Duration::seconds(seconds);
    }
}

#[test]
fn a_deleted_pod_terminates_for_its_grace_period_on_the_fakes_clock() {
    let mut w = World::new();
    w.pod("p", json!({}), 30);
    let (code, pod) = w.get("/api/v1/namespaces/default/pods/p");
    assert_eq!((code, pod["status"]["phase"].as_str()), (200, Some("Running")), "the kubelet started it: {pod}");
    assert!(
        pod["status"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    );

    let (code, deleted) =
        w.call("DELETE", "/api/v1/namespaces/default/pods/p", "application/json", json!({"gracePeriodSeconds": 10}));
    assert_eq!(code, 200);
    assert_eq!(deleted["metadata"]["deletionGracePeriodSeconds"], 10);
    assert!(deleted["metadata"]["deletionTimestamp"].is_string());
    w.advance(9);
    assert_eq!(w.get("/api/v1/namespaces/default/pods/p").0, 200, "still terminating after 9 s");
    // A second delete with a shorter grace shortens it; a longer one does not lengthen it.
    w.call("DELETE", "/api/v1/namespaces/default/pods/p?gracePeriodSeconds=100", "", Value::Null);
    w.advance(2);
    let (code, gone) = w.get("/api/v1/namespaces/default/pods/p");
    assert_eq!(
        (code, gone["reason"].as_str(), gone["message"].as_str()),
        (404, Some("NotFound"), Some("pods \"p\" not found"))
    );

    // Unbound or finished pods go at once.
    w.seed(
        "pods",
        Some("default"),
        json!({"metadata": {"name": "done"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}}),
    );
    w.call("DELETE", "/api/v1/namespaces/default/pods/done", "", Value::Null);
    assert_eq!(w.get("/api/v1/namespaces/default/pods/done").0, 404);
}

#[test]
fn delete_preconditions_are_409s() {
    let mut w = World::new();
    let pod = w.pod("p", json!({}), 0);
    let (code, status) = w.call(
        "DELETE",
        "/api/v1/namespaces/default/pods/p",
        "application/json",
        json!({"preconditions": {"uid": "not-its-uid"}}),
    );
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")), "{status}");
    assert_eq!(
        status["message"],
        format!(
            "Precondition failed: UID in precondition: not-its-uid, UID in object meta: {}",
            pod["metadata"]["uid"].as_str().unwrap_or_default()
        )
    );
    let (code, _) = w.call(
        "DELETE",
        "/api/v1/namespaces/default/pods/p",
        "application/json",
        json!({"preconditions": {"resourceVersion": "1"}}),
    );
    assert_eq!(code, 409);
    let (code, _) = w.call(
        "DELETE",
        "/api/v1/namespaces/default/pods/p",
        "application/json",
        json!({"preconditions": {"uid": pod["metadata"]["uid"]}}),
    );
    assert_eq!(code, 200);
}

#[test]
fn evictions_follow_the_pdb_and_its_status_follows_ready_pods() {
    let mut w = World::new();
    for name in ["a", "b", "c"] {
        w.pod(name, json!({"app": "web"}), 5);
    }
    w.seed("poddisruptionbudgets", Some("default"), json!({"metadata": {"name": "web"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}));
    let (_, pdb) = w.get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/web");
    assert_eq!(
        (
            &pdb["status"]["currentHealthy"],
            &pdb["status"]["desiredHealthy"],
            &pdb["status"]["disruptionsAllowed"],
            &pdb["status"]["expectedPods"]
        ),
        (&json!(3), &json!(2), &json!(1), &json!(3)),
        "{pdb}"
    );
    assert_eq!(w.evict("a", json!({})).0, 201);
    let (code, blocked) = w.evict("b", json!({}));
    assert_eq!(code, 429, "{blocked}");
    assert_eq!(blocked["reason"], "TooManyRequests");
    assert_eq!(blocked["message"], "Cannot evict pod as it would violate the pod's disruption budget.");
    assert_eq!(blocked["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert_eq!(
        blocked["details"]["causes"][0]["message"],
        "The disruption budget web needs 2 healthy pods and has 2 currently"
    );
    // A terminating pod bypasses the budget (evicting it again changes nothing).
    assert_eq!(w.evict("a", json!({})).0, 201);
    // Gone after its grace; a replacement starts and becomes Ready: one disruption allowed again.
    w.advance(5);
    assert_eq!(w.get("/api/v1/namespaces/default/pods/a").0, 404);
    w.pod("d", json!({"app": "web"}), 5);
    let (_, pdb) = w.get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/web");
    assert_eq!(pdb["status"]["disruptionsAllowed"], 1, "{pdb}");
    assert_eq!(pdb["status"]["conditions"][0]["type"], "DisruptionAllowed");

    // A UID precondition that does not match: 409; a pod that is gone: 404.
    assert_eq!(w.evict("b", json!({"preconditions": {"uid": "other"}})).0, 409);
    assert_eq!(w.evict("nope", json!({})).0, 404);
    // A pending pod (not started: its node is missing) bypasses the budget.
    w.seed("pods", Some("default"), json!({"metadata": {"name": "pending", "labels": {"app": "web"}}, "spec": {"nodeName": "ghost", "containers": [{"name": "c"}]}}));
    assert_eq!(w.evict("pending", json!({})).0, 201);
    let (_, pending) = w.get("/api/v1/namespaces/default/pods/pending");
    assert!(pending["metadata"]["deletionTimestamp"].is_string(), "{pending}");

    // Two PDBs over one pod: the eviction subresource refuses with a 500.
    w.seed("poddisruptionbudgets", Some("default"), json!({"metadata": {"name": "web-too"}, "spec": {"minAvailable": 0, "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}}}));
    let (code, two) = w.evict("b", json!({}));
    assert_eq!((code, two["reason"].as_str()), (500, Some("InternalError")), "{two}");
    assert!(two["message"].as_str().unwrap_or_default().contains("more than one PodDisruptionBudget"));
}

#[test]
fn updates_are_optimistic_and_generation_follows_the_spec() {
    let mut w = World::new();
    let pod = w.pod("p", json!({"a": "1"}), 30);
    let (_, current) = w.get("/api/v1/namespaces/default/pods/p");
    let mut stale = pod.clone();
    stale["metadata"]["labels"]["a"] = json!("2");
    let (code, conflict) = w.call("PUT", "/api/v1/namespaces/default/pods/p", "application/json", stale);
    assert_eq!(code, 409, "the kubelet moved it on: {conflict}");
    assert_eq!(
        conflict["message"],
        "Operation cannot be fulfilled on pods \"p\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(conflict["details"], json!({"name": "p", "kind": "pods"}));

    let mut fresh = current.clone();
    fresh["metadata"]["labels"]["a"] = json!("2");
    let (code, updated) = w.call("PUT", "/api/v1/namespaces/default/pods/p", "application/json", fresh);
    assert_eq!(code, 200);
    assert_eq!(updated["metadata"]["generation"], current["metadata"]["generation"], "labels are not spec");
    assert!(
        updated["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse::<u64>().ok())
            > current["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse::<u64>().ok())
    );
    let (_, patched) = w.call(
        "PATCH",
        "/api/v1/namespaces/default/pods/p",
        "application/merge-patch+json",
        json!({"spec": {"activeDeadlineSeconds": 5}}),
    );
    assert_eq!(patched["metadata"]["generation"], 2);
    // A patch carrying a stale resourceVersion is a conflict too.
    let (code, _) = w.call(
        "PATCH",
        "/api/v1/namespaces/default/pods/p",
        "application/merge-patch+json",
        json!({"metadata": {"resourceVersion": "1", "labels": {"b": "1"}}}),
    );
    assert_eq!(code, 409);
    // Server-side apply and unknown patch types: 415.
    let (code, status) =
        w.call("PATCH", "/api/v1/namespaces/default/pods/p", "application/apply-patch+yaml", json!({}));
    assert_eq!((code, status["reason"].as_str()), (415, Some("UnsupportedMediaType")));
    // Creating a name twice: 409 AlreadyExists.
    let (code, exists) =
        w.call("POST", "/api/v1/namespaces/default/pods", "application/json", json!({"metadata": {"name": "p"}}));
    assert_eq!((code, exists["reason"].as_str()), (409, Some("AlreadyExists")));
}

#[test]
fn lists_page_with_continue_and_refuse_unknown_fields() {
    let mut w = World::new();
    for i in 0..5 {
        w.pod(&format!("p{i}"), json!({"i": i.to_string()}), 30);
    }
    let (_, first) = w.get("/api/v1/pods?limit=2");
    assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    let token = first["metadata"]["continue"].as_str().expect("a continue token").to_string();
    let (_, second) = w.get(&format!(
        "/api/v1/pods?limit=2&continue={}",
        form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    ));
    assert_eq!(second["items"][0]["metadata"]["name"], "p2");
    assert!(second["items"][0].get("kind").is_none(), "list items carry no kind, as from the API server");
    let (code, bad) = w.get("/api/v1/pods?fieldSelector=spec.containers.image%3Dx");
    assert_eq!(
        (code, bad["reason"].as_str(), bad["message"].as_str()),
        (400, Some("BadRequest"), Some("field label not supported: spec.containers.image"))
    );
    let (code, _) = w.get("/apis/apps/v1/daemonsets?fieldSelector=spec.nodeName%3Dn1");
    assert_eq!(code, 400, "spec.nodeName is a pods field only");
    let (code, _) = w.get("/api/v1/pods?labelSelector=i+in+(1,3),i!%3D3");
    assert_eq!(code, 200);
    let (_, some) = w.get("/api/v1/pods?labelSelector=i+in+(1%2C3)%2Ci!%3D3");
    assert_eq!(some["items"].as_array().map(Vec::len), Some(1), "{some}");
    let (code, _) = w.get("/api/v1/pods?labelSelector=i+in+1");
    assert_eq!(code, 400);
}

#[test]
fn dry_runs_answer_and_keep_nothing() {
    let mut w = World::new();
    w.pod("p", json!({}), 0);
    w.get("/api/v1/namespaces/default/pods/p");
    let rv = w.store.resource_version();
    let (code, _) = w.evict("p", json!({"dryRun": ["All"]}));
    assert_eq!(code, 201);
    let (code, _) = w.call(
        "PATCH",
        "/api/v1/nodes/n1?dryRun=All",
        "application/merge-patch+json",
        json!({"spec": {"unschedulable": true}}),
    );
    assert_eq!(code, 200);
    assert_eq!(w.store.resource_version(), rv, "nothing written");
    assert_eq!(w.get("/api/v1/namespaces/default/pods/p").0, 200);
}

#[test]
fn discovery_lists_the_eviction_subresource() {
    let mut w = World::new();
    let (_, core) = w.get("/api/v1");
    let eviction = core["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .cloned()
        .expect("pods/eviction");
    assert_eq!(
        (eviction["group"].as_str(), eviction["version"].as_str(), eviction["kind"].as_str()),
        (Some("policy"), Some("v1"), Some("Eviction"))
    );
    let (_, groups) = w.get("/apis");
    let names: Vec<&str> =
        groups["groups"].as_array().into_iter().flatten().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, ["apps", "discovery.k8s.io", "policy", "rbac.authorization.k8s.io"]);
    let (code, _) = w.get("/apis/batch/v1");
    assert_eq!(code, 404);
    assert_eq!(KINDS.len(), 11);
}
