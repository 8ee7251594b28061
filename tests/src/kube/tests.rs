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
        // The world starts here: what is seeded later happens at the time it is seeded.
        w.store.settle(w.now);
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
fn a_merge_patch_carrying_a_stale_resource_version_is_a_conflict_that_changes_nothing() {
    let mut w = World::new();
    w.pod("p", json!({"a": "1"}), 30);
    let (_, read) = w.get("/api/v1/namespaces/default/pods/p");
    let rv = read["metadata"]["resourceVersion"].clone();
    // Another writer moves it on after the read.
    let (code, _) = w.call(
        "PATCH",
        "/api/v1/namespaces/default/pods/p",
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"other": "writer"}}}),
    );
    assert_eq!(code, 200);
    let (_, moved) = w.get("/api/v1/namespaces/default/pods/p");

    let stale = json!({"metadata": {"resourceVersion": rv, "labels": {"mine": "1"}}});
    let (code, status) =
        w.call("PATCH", "/api/v1/namespaces/default/pods/p", "application/merge-patch+json", stale.clone());
    assert_eq!((code, status["reason"].as_str(), status["kind"].as_str()), (409, Some("Conflict"), Some("Status")));
    assert_eq!(status["status"], "Failure");
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on pods \"p\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let (_, after) = w.get("/api/v1/namespaces/default/pods/p");
    assert_eq!(after, moved, "nothing written");

    // The same change on the version read now goes through, and keeps the other writer's.
    let mut fresh = stale;
    fresh["metadata"]["resourceVersion"] = moved["metadata"]["resourceVersion"].clone();
    let (code, patched) = w.call("PATCH", "/api/v1/namespaces/default/pods/p", "application/merge-patch+json", fresh);
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["metadata"]["labels"], json!({"a": "1", "other": "writer", "mine": "1"}));
    assert_ne!(patched["metadata"]["resourceVersion"], moved["metadata"]["resourceVersion"]);
}

/// The interloper hook, through the fake's HTTP front (plain HTTP, no tokens).
mod interloper {
    use serde_json::{Value, json};

    use crate::kube::{FakeKube, Options, PodSeed};

    async fn fake() -> FakeKube {
        FakeKube::start_with(Options { tls: false, auth: false, ..Options::default() }).await
    }

    /// A GET, or a merge patch when there is a body.
    async fn call(fake: &FakeKube, path: &str, patch: Option<Value>) -> (u16, Value) {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", fake.url);
        let request = match patch {
            Some(patch) => {
                client.patch(url).header("content-type", "application/merge-patch+json").body(patch.to_string())
            }
            None => client.get(url),
        };
        let answer = request.send().await.expect("the fake answers");
        let status = answer.status().as_u16();
        (status, answer.json().await.expect("a JSON body"))
    }

    #[tokio::test]
    async fn a_write_racing_another_writer_with_a_stale_resource_version_is_a_409_and_keeps_the_others_change() {
        let fake = fake().await;
        fake.node("n1", "us-east-1a", "i-0123456789abcdef0");
        fake.pod(PodSeed::new("default", "web"));
        let (_, read) = call(&fake, "/api/v1/nodes/n1", None).await;
        let rv = read["metadata"]["resourceVersion"].clone();
        fake.before_next_write("nodes", None, "n1", |node| {
            node["metadata"]["labels"]["other"] = json!("writer");
        });
        // Reads and other objects' writes leave it armed.
        let (code, _) = call(&fake, "/api/v1/nodes/n1", None).await;
        assert_eq!(code, 200);
        let (code, _) =
            call(&fake, "/api/v1/namespaces/default/pods/web", Some(json!({"metadata": {"labels": {"x": "1"}}}))).await;
        assert_eq!(code, 200);
        assert_eq!(fake.get("nodes", None, "n1").expect("n1")["metadata"]["resourceVersion"], rv, "not yet");

        let cordon = json!({"metadata": {"resourceVersion": rv}, "spec": {"unschedulable": true}});
        let (code, status) = call(&fake, "/api/v1/nodes/n1", Some(cordon.clone())).await;
        assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")), "{status}");
        let node = fake.get("nodes", None, "n1").expect("n1");
        assert_eq!(node["metadata"]["labels"]["other"], "writer", "the other writer's change kept");
        assert_eq!(node["spec"].get("unschedulable"), None, "the stale patch changed nothing");
        assert_ne!(node["metadata"]["resourceVersion"], rv);

        // Once only: read again, the same patch goes through.
        let mut fresh = cordon;
        fresh["metadata"]["resourceVersion"] = node["metadata"]["resourceVersion"].clone();
        let (code, patched) = call(&fake, "/api/v1/nodes/n1", Some(fresh)).await;
        assert_eq!(code, 200, "{patched}");
        assert_eq!(
            (&patched["spec"]["unschedulable"], &patched["metadata"]["labels"]["other"]),
            (&json!(true), &json!("writer"))
        );

        // A write without a resourceVersion goes through on top of the other writer's change.
        fake.before_next_write("pods", Some("default"), "web", |pod| {
            pod["metadata"]["labels"]["other"] = json!("writer");
        });
        let mine = json!({"metadata": {"labels": {"mine": "1"}}});
        let (code, pod) = call(&fake, "/api/v1/namespaces/default/pods/web", Some(mine)).await;
        assert_eq!(code, 200, "{pod}");
        assert_eq!(
            (&pod["metadata"]["labels"]["other"], &pod["metadata"]["labels"]["mine"]),
            (&json!("writer"), &json!("1"))
        );
    }
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

// ---------------------------------------------------------------------------------------------
// The controllers: Deployments, ReplicaSets, the scheduler, Fargate, EndpointSlices.

mod controllers {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::super::controllers::{
        FargateProfile, POD_START_SECONDS, fargate_start, fenceposts, new_rs_replicas, surge_and_unavailable,
    };
    use super::super::store::kind;
    use super::World;

    const MERGE: &str = "application/merge-patch+json";

    impl World {
        fn settle(&mut self) {
            self.store.settle(self.now);
        }

        fn all(&mut self, plural: &str) -> Vec<Value> {
            self.settle();
            self.store.all(kind(plural).expect("a kind"))
        }

        fn one(&mut self, plural: &str, name: &str) -> Value {
            self.settle();
            self.store.get(kind(plural).expect("a kind"), Some("default"), name).expect("the object")
        }

        /// The live (not terminating) pods whose name starts with `prefix`.
        fn live(&mut self, prefix: &str) -> Vec<Value> {
            self.all("pods")
                .into_iter()
                .filter(|p| p["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .collect()
        }

        fn deployment(&mut self, name: &str, replicas: i64, strategy: Value, extra_spec: Value) -> Value {
            let mut template = json!({"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "app:1"}]}});
            super::super::patch::merge_patch(&mut template["spec"], &extra_spec);
            self.seed(
                "deployments",
                Some("default"),
                json!({"metadata": {"name": name}, "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "strategy": strategy, "template": template}}),
            )
        }

        fn patch_deployment(&mut self, name: &str, patch: Value) -> (u16, Value) {
            self.call("PATCH", &format!("/apis/apps/v1/namespaces/default/deployments/{name}"), MERGE, patch)
        }

        fn node(&mut self, name: &str, labels: Value, spec: Value, pods: &str) {
            self.seed(
                "nodes",
                None,
                json!({"metadata": {"name": name, "labels": labels}, "spec": spec, "status": {
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "addresses": [{"type": "InternalIP", "address": "10.0.9.9"}],
                    "allocatable": {"pods": pods},
                }}),
            );
        }

        fn ready_endpoints(&mut self, service: &str) -> usize {
            self.all("endpointslices")
                .iter()
                .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == service)
                .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                .filter(|e| e["conditions"]["ready"] == true)
                .count()
        }
    }

    fn condition(d: &Value, kind: &str) -> Value {
        d["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind)
            .cloned()
            .unwrap_or_default()
    }

    fn status_counts(d: &Value) -> [i64; 5] {
        ["replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"]
            .map(|f| d["status"][f].as_i64().unwrap_or(0))
    }

    #[test]
    fn rolling_update_arithmetic_rounds_surge_up_and_unavailable_down() {
        // (maxSurge, maxUnavailable, replicas) → (surge, unavailable), as ResolveFenceposts says.
        for (surge, unavailable, replicas, want) in [
            (json!("25%"), json!("25%"), 10, (3, 2)),
            (json!("25%"), json!("25%"), 4, (1, 1)),
            (json!("25%"), json!("25%"), 3, (1, 0)),
            (json!("25%"), json!("25%"), 1, (1, 0)),
            (json!("50%"), json!("50%"), 5, (3, 2)),
            (json!(0), json!(0), 3, (0, 1)),
            (json!("0%"), json!("0%"), 3, (0, 1)),
            (json!(1), json!(0), 3, (1, 0)),
            (json!(2), json!("34%"), 3, (2, 1)),
        ] {
            assert_eq!(fenceposts(&surge, &unavailable, replicas), want, "{surge} {unavailable} of {replicas}");
        }
        // MaxUnavailable is capped at the replicas; none for a Recreate.
        let d = |strategy: Value, replicas: i64| json!({"spec": {"replicas": replicas, "strategy": strategy}});
        let rolling = |s: Value, u: Value| json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": s, "maxUnavailable": u}});
        assert_eq!(surge_and_unavailable(&d(rolling(json!(0), json!(5)), 3)), (0, 3));
        assert_eq!(surge_and_unavailable(&d(rolling(json!(1), json!(1)), 0)), (1, 0));
        assert_eq!(surge_and_unavailable(&d(json!({"type": "Recreate"}), 3)), (0, 0));
        // NewRSNewReplicas: the new ReplicaSet grows into the surge and no further.
        let ten = d(rolling(json!("25%"), json!("25%")), 10);
        assert_eq!(new_rs_replicas(&ten, 0, 10), 3, "10 old + surge 3");
        assert_eq!(new_rs_replicas(&ten, 3, 13), 3, "at the ceiling");
        assert_eq!(new_rs_replicas(&ten, 3, 11), 5);
        assert_eq!(new_rs_replicas(&ten, 9, 9), 10, "never past the replicas");
        assert_eq!(new_rs_replicas(&d(json!({"type": "Recreate"}), 4), 0, 4), 4);
    }

    #[test]
    fn a_deployment_makes_a_replicaset_whose_pods_start_and_fills_its_status() {
        let mut w = World::new();
        w.deployment("web", 3, json!(null), json!({}));
        let rs = w.all("replicasets");
        assert_eq!(rs.len(), 1, "{rs:?}");
        let rs = &rs[0];
        let hash = rs["metadata"]["labels"]["pod-template-hash"].as_str().expect("a pod-template-hash").to_string();
        assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
        assert_eq!(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
        assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
        assert_eq!(rs["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(rs["spec"]["selector"]["matchLabels"], json!({"app": "web", "pod-template-hash": hash}));
        let d = w.one("deployments", "web");
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"], json!({"maxSurge": "25%", "maxUnavailable": "25%"}));
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
        let pods = w.live("web-");
        assert_eq!(pods.len(), 3);
        assert!(
            pods.iter().all(|p| p["status"]["phase"] == "Pending" && p["spec"]["nodeName"] == "n1"),
            "bound, starting: {pods:?}"
        );
        assert!(pods.iter().all(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str()));
        assert_eq!(status_counts(&d), [3, 3, 0, 0, 3]);
        assert_eq!(condition(&d, "Available")["status"], "False");
        assert_eq!(condition(&d, "Available")["reason"], "MinimumReplicasUnavailable");
        assert_eq!(condition(&d, "Progressing")["reason"], "ReplicaSetUpdated", "{d}");

        w.advance(POD_START_SECONDS);
        let d = w.one("deployments", "web");
        assert_eq!(status_counts(&d), [3, 3, 3, 3, 0]);
        assert_eq!(d["status"]["observedGeneration"], 1);
        assert!(d["status"].get("unavailableReplicas").is_none(), "zero counts are omitted: {d}");
        let available = condition(&d, "Available");
        assert_eq!(
            (available["status"].as_str(), available["reason"].as_str()),
            (Some("True"), Some("MinimumReplicasAvailable"))
        );
        let progressing = condition(&d, "Progressing");
        assert_eq!(
            (progressing["status"].as_str(), progressing["reason"].as_str()),
            (Some("True"), Some("NewReplicaSetAvailable"))
        );
        assert_eq!(progressing["message"], format!("ReplicaSet \"web-{hash}\" has successfully progressed."));
        // What a client reads: the status subresource, and lists by label through the API.
        let (code, via_status) = w.get("/apis/apps/v1/namespaces/default/deployments/web/status");
        assert_eq!((code, &via_status["status"]), (200, &d["status"]));
        let (code, listed) =
            w.get(&format!("/apis/apps/v1/namespaces/default/replicasets?labelSelector=pod-template-hash%3D{hash}"));
        assert_eq!((code, listed["items"].as_array().map(Vec::len)), (200, Some(1)), "{listed}");
        let (code, services) = w.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices");
        assert_eq!((code, services["kind"].as_str()), (200, Some("EndpointSliceList")));
        let rs = w.one("replicasets", &format!("web-{hash}"));
        assert_eq!(
            rs["status"],
            json!({"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 3, "availableReplicas": 3, "observedGeneration": 1})
        );
    }

    #[test]
    fn a_template_change_rolls_out_within_max_surge_and_max_unavailable() {
        let mut w = World::new();
        let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
        w.deployment("web", 4, strategy, json!({}));
        w.advance(POD_START_SECONDS);
        let (code, d) = w.patch_deployment(
            "web",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "app:2"}]}}}}),
        );
        assert_eq!((code, d["metadata"]["generation"].as_i64()), (200, Some(2)), "{d}");
        let mut seen_progress = false;
        for _ in 0..60 {
            let pods = w.live("web-");
            let available = pods.iter().filter(|p| super::super::store::is_ready(p)).count();
            assert!(pods.len() <= 5, "never more than replicas + maxSurge: {}", pods.len());
            assert!(available >= 3, "never fewer than replicas - maxUnavailable available: {available}");
            let d = w.one("deployments", "web");
            seen_progress |= condition(&d, "Progressing")["reason"] == "ReplicaSetUpdated";
            w.advance(1);
        }
        assert!(seen_progress);
        let d = w.one("deployments", "web");
        assert_eq!(d["status"]["observedGeneration"], 2);
        assert_eq!(status_counts(&d), [4, 4, 4, 4, 0]);
        assert_eq!(condition(&d, "Progressing")["reason"], "NewReplicaSetAvailable");
        assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");
        let rs: BTreeMap<String, (i64, String)> = w
            .all("replicasets")
            .iter()
            .map(|rs| {
                let image =
                    rs["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string();
                (image, crate::kube::replicas_and_revision(rs))
            })
            .collect();
        assert_eq!(rs, BTreeMap::from([("app:1".into(), (0, "1".into())), ("app:2".into(), (4, "2".into()))]));
        assert!(w.live("web-").iter().all(|p| p["spec"]["containers"][0]["image"] == "app:2"));
    }

    #[test]
    fn a_clock_moved_at_once_sees_the_whole_rollout_event_by_event() {
        let mut w = World::new();
        w.deployment("web", 10, json!(null), json!({}));
        w.advance(POD_START_SECONDS);
        w.patch_deployment("web", json!({"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}));
        // 25%/25% of 10 takes several waves of 5-second starts; ten minutes at once covers them.
        w.advance(600);
        let d = w.one("deployments", "web");
        assert_eq!(status_counts(&d), [10, 10, 10, 10, 0], "{d}");
        assert_eq!(condition(&d, "Progressing")["reason"], "NewReplicaSetAvailable");
        assert_eq!(w.live("web-").iter().filter(|p| p["metadata"]["labels"]["v"] == "2").count(), 10);
    }

    #[test]
    fn endpoint_slices_never_lose_all_ready_endpoints_during_a_rollout_with_max_unavailable_0() {
        let mut w = World::new();
        let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
        w.deployment("web", 3, strategy, json!({}));
        w.seed("services", Some("default"), json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}));
        assert_eq!(w.ready_endpoints("web"), 0, "pods still starting");
        w.advance(POD_START_SECONDS);
        assert_eq!(w.ready_endpoints("web"), 3);
        let slice = w.all("endpointslices").into_iter().next().expect("a slice");
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(slice["ports"], json!([{"name": "", "port": 8080, "protocol": "TCP"}]));
        assert_eq!(
            slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert_eq!(slice["endpoints"][0]["targetRef"]["kind"], "Pod");

        w.patch_deployment(
            "web",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "app:2"}]}}}}),
        );
        let mut terminating_seen = false;
        for _ in 0..120 {
            assert!(w.ready_endpoints("web") >= 3, "maxUnavailable 0 keeps 3 ready endpoints");
            terminating_seen |= w
                .all("endpointslices")
                .iter()
                .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                .any(|e| e["conditions"]["terminating"] == true && e["conditions"]["ready"] == false);
            w.advance(1);
        }
        assert!(terminating_seen, "old pods show as terminating endpoints while they stop");
        let d = w.one("deployments", "web");
        assert_eq!(condition(&d, "Progressing")["reason"], "NewReplicaSetAvailable");
        let slice = w.all("endpointslices").into_iter().next().expect("a slice");
        let endpoints = slice["endpoints"].as_array().cloned().unwrap_or_default();
        assert_eq!(endpoints.len(), 3, "the old pods are gone from the slice: {slice}");
        let new_pods: Vec<String> =
            w.live("web-").iter().map(|p| p["metadata"]["name"].as_str().unwrap_or_default().to_string()).collect();
        assert!(
            endpoints
                .iter()
                .all(|e| new_pods.contains(&e["targetRef"]["name"].as_str().unwrap_or_default().to_string()))
        );
    }

    #[test]
    fn a_rollout_that_cannot_schedule_exceeds_its_progress_deadline() {
        let mut w = World::new();
        w.deployment("web", 2, json!(null), json!({}));
        w.advance(POD_START_SECONDS);
        let (code, _) = w.call(
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/web",
            MERGE,
            json!({"spec": {"progressDeadlineSeconds": 60, "template": {"spec": {"nodeSelector": {"eks.amazonaws.com/capacityType": "SPOT"}}}}}),
        );
        assert_eq!(code, 200);
        let stuck: Vec<Value> = w.live("web-").into_iter().filter(|p| p["spec"]["nodeName"].is_null()).collect();
        assert_eq!(stuck.len(), 1, "one surge pod, unschedulable: {stuck:?}");
        let scheduled = &stuck[0]["status"]["conditions"][0];
        assert_eq!(
            (scheduled["type"].as_str(), scheduled["status"].as_str(), scheduled["reason"].as_str()),
            (Some("PodScheduled"), Some("False"), Some("Unschedulable"))
        );
        assert!(
            scheduled["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."),
            "{scheduled}"
        );
        w.advance(60);
        let d = w.one("deployments", "web");
        assert_eq!(
            condition(&d, "Progressing")["reason"],
            "ReplicaSetUpdated",
            "the deadline is not passed at exactly 60 s"
        );
        w.advance(1);
        let d = w.one("deployments", "web");
        let progressing = condition(&d, "Progressing");
        assert_eq!(
            (progressing["status"].as_str(), progressing["reason"].as_str()),
            (Some("False"), Some("ProgressDeadlineExceeded")),
            "{d}"
        );
        assert!(progressing["message"].as_str().unwrap_or_default().ends_with("has timed out progressing."));
        assert_eq!(condition(&d, "Available")["status"], "True", "the old pods still serve: {d}");
        assert_eq!(status_counts(&d), [3, 1, 2, 2, 1]);
    }

    #[test]
    fn the_replicaset_controller_replaces_deleted_and_evicted_pods() {
        let mut w = World::new();
        w.deployment("web", 3, json!(null), json!({}));
        w.advance(POD_START_SECONDS);
        let pods = w.live("web-");
        let first = pods[0]["metadata"]["name"].as_str().expect("a name").to_string();
        let second = pods[1]["metadata"]["name"].as_str().expect("a name").to_string();
        let (code, _) =
            w.call("DELETE", &format!("/api/v1/namespaces/default/pods/{first}"), "application/json", json!({}));
        assert_eq!(code, 200);
        let (code, _) = w.evict(&second, json!({}));
        assert_eq!(code, 201);
        let live = w.live("web-");
        assert_eq!(live.len(), 3, "two replacements at once: {live:?}");
        assert!(
            live.iter().all(|p| p["metadata"]["name"] != first.as_str() && p["metadata"]["name"] != second.as_str())
        );
        let d = w.one("deployments", "web");
        assert_eq!(status_counts(&d), [3, 3, 1, 1, 2]);
        w.advance(POD_START_SECONDS);
        assert_eq!(status_counts(&w.one("deployments", "web")), [3, 3, 3, 3, 0]);
        // Scaled down: the newest, least ready pods go first.
        w.patch_deployment("web", json!({"spec": {"replicas": 1}}));
        assert_eq!(w.live("web-").len(), 1);
    }

    #[test]
    fn the_scheduler_honours_cordon_taints_selectors_affinity_and_room() {
        let mut w = World::new();
        // n1 (World's, no labels) is cordoned; the others carry what the pods ask for.
        w.call("PATCH", "/api/v1/nodes/n1", MERGE, json!({"spec": {"unschedulable": true}}));
        w.node(
            "tainted",
            json!({"pool": "spot"}),
            json!({"taints": [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]}),
            "10",
        );
        w.node("spot", json!({"pool": "spot", "zone": "a"}), json!({}), "10");
        w.node("small", json!({"pool": "od", "gpu": "yes"}), json!({}), "1");
        let pod = |w: &mut World, name: &str, spec: Value| {
            let mut s = json!({"containers": [{"name": "c", "image": "i"}]});
            super::super::patch::merge_patch(&mut s, &spec);
            w.seed("pods", Some("default"), json!({"metadata": {"name": name}, "spec": s}));
            let p = w.one("pods", name);
            p["spec"]["nodeName"].as_str().unwrap_or_default().to_string()
        };
        let affinity = |expressions: Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": expressions}]}}}});
        assert_eq!(
            pod(&mut w, "selector", json!({"nodeSelector": {"pool": "spot"}})),
            "spot",
            "not cordoned n1, not the tainted node"
        );
        assert_eq!(
            pod(
                &mut w,
                "tolerant",
                json!({"nodeSelector": {"pool": "spot"}, "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}]})
            ),
            "tainted",
            "fewest pods among the fitting"
        );
        assert_eq!(
            pod(&mut w, "in", affinity(json!([{"key": "zone", "operator": "In", "values": ["a", "b"]}]))),
            "spot"
        );
        assert_eq!(pod(&mut w, "exists", affinity(json!([{"key": "gpu", "operator": "Exists"}]))), "small");
        assert_eq!(
            pod(&mut w, "full", affinity(json!([{"key": "gpu", "operator": "Exists"}]))),
            "",
            "small has room for one pod"
        );
        assert_eq!(
            pod(
                &mut w,
                "notin",
                affinity(
                    json!([{"key": "pool", "operator": "NotIn", "values": ["od"]}, {"key": "zone", "operator": "DoesNotExist"}])
                )
            ),
            "",
            "only the tainted node is neither od nor zoned"
        );
        let full = w.one("pods", "full");
        assert_eq!(full["status"]["phase"], "Pending");
        let message = full["status"]["conditions"][0]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.starts_with("0/4 nodes are available: "), "{message}");
        for why in [
            "1 Too many pods",
            "1 node(s) were unschedulable",
            "1 node(s) had untolerated taint {dedicated: batch}",
            "1 node(s) didn't match Pod's node affinity/selector",
        ] {
            assert!(message.contains(why), "{why} in {message}");
        }
        // Uncordoned, n1 (no labels) takes what DoesNotExist and NotIn allow.
        w.call("PATCH", "/api/v1/nodes/n1", MERGE, json!({"spec": {"unschedulable": null}}));
        assert_eq!(w.one("pods", "notin")["spec"]["nodeName"], "n1");
        assert_eq!(w.one("pods", "notin")["status"]["phase"], "Running");
        assert!(
            w.one("pods", "notin")["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "PodScheduled" && c["status"] == "True"))
        );
    }

    #[test]
    fn fargate_pods_get_a_node_of_their_own_that_is_ready_after_30_to_60_seconds() {
        let mut w = World::new();
        w.store.sim.profiles.push(FargateProfile {
            name: "fp".into(),
            namespace: "default".into(),
            labels: BTreeMap::from([("compute".to_string(), "fargate".to_string())]),
        });
        w.deployment("web", 2, json!(null), json!({}));
        w.advance(POD_START_SECONDS);
        w.seed(
            "services",
            Some("default"),
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        );
        // Failed over: the template gets the profile's label.
        w.patch_deployment("web", json!({"spec": {"template": {"metadata": {"labels": {"compute": "fargate"}}}}}));
        let fargate: Vec<Value> =
            w.live("web-").into_iter().filter(|p| p["metadata"]["labels"]["compute"] == "fargate").collect();
        assert_eq!(fargate.len(), 1, "25% surge of 2 is one pod at a time");
        let pod = &fargate[0];
        let node_name = pod["spec"]["nodeName"].as_str().expect("bound at once").to_string();
        assert!(node_name.starts_with("fargate-ip-10-0-") && node_name.ends_with(".ec2.internal"), "{node_name}");
        assert_eq!(pod["spec"]["schedulerName"], "fargate-scheduler");
        let node = w.store.get(kind("nodes").expect("nodes"), None, &node_name).expect("the Fargate node");
        assert_eq!(node["metadata"]["labels"]["eks.amazonaws.com/compute-type"], "fargate");
        assert_eq!(node["status"]["conditions"][0]["status"], "False", "starting");
        assert_eq!(node["spec"]["taints"][0]["key"], "eks.amazonaws.com/compute-type");
        let start = fargate_start("default", pod["metadata"]["name"].as_str().unwrap_or_default());
        assert!((30..=60).contains(&start.num_seconds()), "{start}");
        w.advance(start.num_seconds() - 1);
        let pod = w.one("pods", pod["metadata"]["name"].as_str().unwrap_or_default());
        assert_eq!(pod["status"]["phase"], "Pending", "the node is not Ready yet");
        assert_eq!(w.ready_endpoints("web"), 2, "the EC2 pods serve meanwhile");
        w.advance(1);
        let pod = w.one("pods", pod["metadata"]["name"].as_str().unwrap_or_default());
        assert_eq!(pod["status"]["phase"], "Running");
        let node = w.store.get(kind("nodes").expect("nodes"), None, &node_name).expect("the Fargate node");
        assert_eq!(node["status"]["conditions"][0]["status"], "True");
        w.advance(300);
        let d = w.one("deployments", "web");
        assert_eq!(condition(&d, "Progressing")["reason"], "NewReplicaSetAvailable", "{d}");
        let nodes: Vec<String> =
            w.live("web-").iter().map(|p| p["spec"]["nodeName"].as_str().unwrap_or_default().to_string()).collect();
        assert_eq!(nodes.len(), 2);
        assert!(nodes.iter().all(|n| n.starts_with("fargate-ip-")) && nodes[0] != nodes[1], "{nodes:?}");
        assert_eq!(w.ready_endpoints("web"), 2);
        // Back to Spot: the Fargate pods go, and so do their nodes.
        w.patch_deployment("web", json!({"spec": {"template": {"metadata": {"labels": {"compute": null}}}}}));
        w.advance(600);
        assert!(w.live("web-").iter().all(|p| p["spec"]["nodeName"] == "n1"));
        let fargate_nodes = w
            .all("nodes")
            .into_iter()
            .filter(|n| n["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("fargate-")))
            .count();
        assert_eq!(fargate_nodes, 0);
        let d = w.one("deployments", "web");
        assert_eq!(
            d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3",
            "the old template's ReplicaSet takes the next revision"
        );
        assert_eq!(w.all("replicasets").len(), 2);
    }

    #[test]
    fn recreate_stops_every_old_pod_before_the_new_ones_start() {
        let mut w = World::new();
        w.deployment("web", 2, json!({"type": "Recreate"}), json!({"terminationGracePeriodSeconds": 10}));
        w.advance(POD_START_SECONDS);
        w.patch_deployment("web", json!({"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}));
        let new_pods = |w: &mut World| w.live("web-").iter().filter(|p| p["metadata"]["labels"]["v"] == "2").count();
        assert_eq!(w.live("web-").len(), 0, "both old pods stopping");
        w.advance(9);
        assert_eq!(new_pods(&mut w), 0, "the old pods' grace is not over");
        w.advance(1);
        assert_eq!(new_pods(&mut w), 2);
        w.advance(POD_START_SECONDS);
        let d = w.one("deployments", "web");
        assert_eq!(status_counts(&d), [2, 2, 2, 2, 0]);
        assert_eq!(condition(&d, "Progressing")["reason"], "NewReplicaSetAvailable");
    }

    #[test]
    fn min_ready_seconds_hold_availability_back() {
        let mut w = World::new();
        w.deployment("web", 2, json!(null), json!({}));
        w.call(
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/web",
            MERGE,
            json!({"spec": {"minReadySeconds": 20}}),
        );
        w.advance(POD_START_SECONDS);
        // minReadySeconds changes no template: the ReplicaSet made before keeps 0; a new one takes it.
        w.patch_deployment("web", json!({"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}));
        w.advance(POD_START_SECONDS);
        let d = w.one("deployments", "web");
        assert_eq!(d["status"]["updatedReplicas"], 1);
        let rs: Vec<Value> =
            w.all("replicasets").into_iter().filter(|rs| rs["spec"]["minReadySeconds"] == 20).collect();
        assert_eq!(rs.len(), 1);
        assert_eq!(
            (rs[0]["status"]["readyReplicas"].as_i64(), rs[0]["status"]["availableReplicas"].as_i64()),
            (Some(1), None),
            "ready, not yet available"
        );
        w.advance(20);
        let rs = w.one("replicasets", rs[0]["metadata"]["name"].as_str().unwrap_or_default());
        assert!(rs["status"]["availableReplicas"].as_i64() >= Some(1), "{rs}");
        w.advance(120);
        assert_eq!(status_counts(&w.one("deployments", "web")), [2, 2, 2, 2, 0]);
    }

    #[test]
    fn a_pdb_over_a_deployment_expects_the_deployments_replicas_through_a_rollout() {
        let mut w = World::new();
        let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
        w.deployment("web", 3, strategy, json!({}));
        w.seed("poddisruptionbudgets", Some("default"), json!({"metadata": {"name": "web"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}));
        w.advance(POD_START_SECONDS);
        w.patch_deployment("web", json!({"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}));
        w.advance(POD_START_SECONDS);
        assert_eq!(w.live("web-").len(), 4, "mid-rollout: a surge pod beside three");
        let pdb = w.one("poddisruptionbudgets", "web");
        assert_eq!(pdb["status"]["expectedPods"], 3, "the Deployment's scale, not the sum of its ReplicaSets: {pdb}");
        assert_eq!(pdb["status"]["desiredHealthy"], 2);
    }

    #[test]
    fn a_deleted_deployment_takes_its_replicasets_pods_and_a_deleted_service_its_slices() {
        let mut w = World::new();
        w.deployment("web", 2, json!(null), json!({"terminationGracePeriodSeconds": 5}));
        w.seed(
            "services",
            Some("default"),
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        );
        w.advance(POD_START_SECONDS);
        assert_eq!(w.ready_endpoints("web"), 2);
        let (code, _) =
            w.call("DELETE", "/apis/apps/v1/namespaces/default/deployments/web", "application/json", json!({}));
        assert_eq!(code, 200);
        assert!(w.all("replicasets").is_empty());
        assert!(w.live("web-").is_empty(), "its pods are stopping");
        assert_eq!(w.ready_endpoints("web"), 0);
        w.advance(5);
        assert!(w.all("pods").is_empty());
        w.call("DELETE", "/api/v1/namespaces/default/services/web", "application/json", json!({}));
        assert!(w.all("endpointslices").is_empty());
    }
}
