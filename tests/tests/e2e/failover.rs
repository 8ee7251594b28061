//! Fargate failover end to end: the `workers` group's node in the fake API server (its
//! Deployment, ReplicaSet, EndpointSlice controllers and Fargate scheduler on the harness's
//! clock), a warning through `node-drain`, the rollouts followed and taken back by the scheduled
//! run. What happened is read back from the fake (objects, the requests it answered, the fewest
//! ready endpoints a Service had at any instant), the table, the history and the alerts.

use chrono::Duration;
use serde_json::{Value, json};
use spotkeeper::domain::{ClusterName, WorkloadRecord, WorkloadRef, WorkloadState};
use spotkeeper_tests::kube::FakeKube;
use spotkeeper_tests::{Harness, events};

use super::drain::{cluster, node_of};

pub(crate) const LABEL: (&str, &str) = ("spotkeeper.io/compute", "fargate");

/// Where `web` runs as its owner wrote it: Spot nodes, by selector and by affinity.
fn spot_placement() -> (Value, Value) {
    (
        json!({"eks.amazonaws.com/capacityType": "SPOT"}),
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
        ]}}}),
    )
}

/// A Deployment opted in to failover, its template changed by `change` (seeded whole, so its
/// first ReplicaSet is the one its pods run under).
pub(crate) fn opted_in(fake: &FakeKube, name: &str, replicas: i64, change: impl FnOnce(&mut Value)) -> Value {
    let labels = json!({"app.kubernetes.io/name": name});
    let mut template = json!({
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": name, "image": "public.ecr.aws/nginx/nginx:1.29", "ports": [{"name": "http", "containerPort": 8080}]}]},
    });
    change(&mut template);
    fake.seed(
        "deployments",
        Some("shop"),
        json!({
            "metadata": {"name": name, "labels": labels, "annotations": {"spotkeeper.io/failover": "fargate"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template},
        }),
    )
}

pub(crate) fn patches_of(fake: &FakeKube, name: &str) -> usize {
    let path = format!("/apis/apps/v1/namespaces/shop/deployments/{name}");
    fake.requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.uri.split('?').next() == Some(path.as_str()) && r.status == 200)
        .count()
}

pub(crate) async fn record(h: &Harness, fake: &FakeKube) -> WorkloadRecord {
    record_of(h, fake, "web").await
}

/// The table's record of the failover of `shop/<name>`.
pub(crate) async fn record_of(h: &Harness, fake: &FakeKube, name: &str) -> WorkloadRecord {
    let cluster = ClusterName::try_from(fake.cluster.clone()).expect("a cluster name");
    let workload = WorkloadRef::new("shop", name).expect("a workload");
    h.deps.store.workload(&cluster, &workload).await.expect("read").expect("kept")
}

/// Scheduled runs every 30 s of the tests' clock until `web` is in `state` (at most `minutes`).
pub(crate) async fn follow_until(h: &Harness, fake: &FakeKube, state: WorkloadState, minutes: i64) -> WorkloadRecord {
    follow_until_of(h, fake, "web", state, minutes).await
}

/// Scheduled runs every 30 s of the tests' clock until `shop/<name>` is in `state`.
pub(crate) async fn follow_until_of(
    h: &Harness,
    fake: &FakeKube,
    name: &str,
    state: WorkloadState,
    minutes: i64,
) -> WorkloadRecord {
    for _ in 0..minutes * 2 {
        h.clock.advance(Duration::seconds(30));
        h.scheduled(None).await.expect("a scheduled run");
        let r = record_of(h, fake, name).await;
        if r.state == state {
            return r;
        }
    }
    panic!("{name} not {state} after {minutes} min: {:?}", record_of(h, fake, name).await);
}

pub(crate) fn alerts_of(alerts: &[spotkeeper_tests::SnsAlert], event: &str) -> usize {
    alerts.iter().filter(|a| a.attributes.get("event").map(String::as_str) == Some(event)).count()
}

/// The warned node with `web` (3 replicas, opted in, pinned to Spot), `api` (not opted in) and
/// `logs` (opted in, a hostPath volume); the Fargate profile; `web`'s Service watched.
pub(crate) async fn warned_node() -> (Harness, FakeKube, Vec<String>, String, Value) {
    let (h, fake, ids) = cluster(json!({"failover": {"namespaces": ["shop"]}})).await;
    let node = node_of(&h, &fake, &ids[0]).await;
    fake.namespace("shop");
    fake.fargate_profile("shop", &[LABEL]);
    let (selector, affinity) = spot_placement();
    let web = opted_in(&fake, "web", 3, |t| {
        t["spec"]["nodeSelector"] = selector;
        t["spec"]["affinity"] = affinity;
        t["spec"]["tolerations"] = json!([{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]);
    });
    fake.service("shop", "web", &[("app.kubernetes.io/name", "web")]);
    fake.deployment("shop", "api", 2);
    opted_in(&fake, "logs", 1, |t| {
        t["spec"]["volumes"] = json!([{"name": "varlog", "hostPath": {"path": "/var/log"}}]);
    });
    // The pods start (5 s each on an EC2 node).
    h.clock.advance(Duration::seconds(10));
    assert_eq!(fake.ready_endpoints("shop", "web"), 3, "web serves from the node");
    assert_eq!(fake.pods_on(&node).len(), 6, "{:?}", fake.pods_on(&node));
    fake.watch_endpoints("shop", "web");
    (h, fake, ids, node, web)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warned_node_sends_its_opted_in_deployment_to_fargate_once_and_its_service_never_goes_dark() {
    let (h, fake, ids, node, before) = warned_node().await;
    let warning = h.now_on(events::spot_warning(&ids[0]));
    let drained = h.node_drain(warning).await.expect("drained");
    assert_eq!(drained["action"], "drained", "{drained}");

    assert_eq!(patches_of(&fake, "web"), 1, "web patched once");
    assert_eq!(patches_of(&fake, "api"), 0, "api is only drained");
    assert_eq!(patches_of(&fake, "logs"), 0, "logs cannot run on Fargate");
    let log = fake.requests();
    assert!(log.iter().any(|r| r.uri.contains("/pods/api-") && r.uri.contains("/eviction")), "api's pods evicted");
    let refused = h.history("workers", "workload-refused").await;
    assert!(refused.len() == 1 && refused[0].contains("shop/logs") && refused[0].contains("hostPath"), "{refused:?}");

    let on = follow_until(&h, &fake, WorkloadState::Fargate, 10).await;
    assert!(on.migrated_at.is_some() && on.reason.contains(&ids[0]), "{on:?}");
    let d = fake.get("deployments", Some("shop"), "web").expect("web");
    let annotations = &d["metadata"]["annotations"];
    assert_eq!(annotations["spotkeeper.io/state"], "fargate");
    assert!(annotations["spotkeeper.io/reason"].as_str().is_some_and(|r| r.contains(&ids[0])));
    assert!(annotations["spotkeeper.io/migrated-at"].is_string());
    let saved: Value =
        serde_json::from_str(annotations["spotkeeper.io/saved-placement"].as_str().expect("saved")).expect("JSON");
    let (selector, affinity) = spot_placement();
    assert_eq!((&saved["nodeSelector"], &saved["nodeAffinity"]), (&selector, &affinity["nodeAffinity"]));
    let template = &d["spec"]["template"];
    assert_eq!(template["metadata"]["labels"][LABEL.0], LABEL.1);
    assert!(template["spec"].get("nodeSelector").is_none() && template["spec"].get("affinity").is_none());
    assert_eq!(template["spec"]["tolerations"], before["spec"]["template"]["spec"]["tolerations"], "tolerations stay");

    let pods: Vec<Value> = fake
        .all("pods")
        .into_iter()
        .filter(|p| {
            p["metadata"]["labels"]["app.kubernetes.io/name"] == "web" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .collect();
    assert_eq!(pods.len(), 3);
    assert!(
        pods.iter().all(|p| p["spec"]["nodeName"].as_str().is_some_and(|n| n.starts_with("fargate-ip-"))),
        "on Fargate"
    );
    assert_eq!(fake.ready_endpoints("shop", "web"), 3);
    assert!(
        fake.fewest_ready_endpoints("shop", "web").is_some_and(|n| n >= 1),
        "web never had zero ready endpoints: {:?}",
        fake.fewest_ready_endpoints("shop", "web")
    );
    assert_eq!(patches_of(&fake, "web"), 2, "the failover and its settled annotations");

    assert_eq!(h.history("workers", "workload-failed-over").await.len(), 1);
    assert_eq!(h.history("workers", "workload-on-fargate").await.len(), 1);
    let alerts = h.sns_alerts().await;
    for event in ["workload-failed-over", "workload-on-fargate", "workload-refused"] {
        assert_eq!(alerts_of(&alerts, event), 1, "{event}");
    }
    assert!(fake.pods_on(&node).iter().all(|p| !p.contains("/web-")), "{:?}", fake.pods_on(&node));
}

/// `web` failed over and settled on Fargate, a fresh Spot node Ready: the harness, the fake,
/// the new node's name, and `web` as its owner wrote it.
pub(crate) async fn on_fargate() -> (Harness, FakeKube, String, Value) {
    let (h, fake, ids, _, before) = warned_node().await;
    let warning = h.now_on(events::spot_warning(&ids[0]));
    h.node_drain(warning).await.expect("drained");
    follow_until(&h, &fake, WorkloadState::Fargate, 10).await;
    let spot = "ip-10-0-2-20.ec2.internal".to_string();
    fake.node(&spot, "us-east-1b", "i-0123456789abcdef0");
    (h, fake, spot, before)
}

fn set_ready(fake: &FakeKube, node: &str, ready: bool) {
    fake.modify("nodes", None, node, |n| {
        n["status"]["conditions"][0]["status"] = json!(if ready { "True" } else { "False" });
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_cooldown_a_deployment_goes_back_to_spot_with_its_placement_restored_exactly() {
    let (h, fake, spot, before) = on_fargate().await;
    let settled = record(&h, &fake).await;
    let due = settled.next_attempt.expect("a way back planned");
    assert_eq!(due - settled.since, Duration::minutes(45), "the default cooldown");
    let patches = patches_of(&fake, "web");

    h.clock.advance(Duration::minutes(44));
    let run = h.scheduled(None).await.expect("a run");
    assert_eq!(patches_of(&fake, "web"), patches, "nothing before the cooldown: {run}");
    assert_eq!(record(&h, &fake).await.state, WorkloadState::Fargate);

    fake.watch_endpoints("shop", "web");
    h.clock.advance(Duration::minutes(1));
    h.scheduled(None).await.expect("a run");
    assert_eq!(record(&h, &fake).await.state, WorkloadState::Recovering);
    let back = follow_until(&h, &fake, WorkloadState::Spot, 5).await;
    assert!(back.last_recovered_at.is_some() && back.failed_attempts == 0, "{back:?}");

    let d = fake.get("deployments", Some("shop"), "web").expect("web");
    assert_eq!(d["spec"]["template"], before["spec"]["template"], "the template exactly as its owner wrote it");
    assert_eq!(d["metadata"]["annotations"]["spotkeeper.io/state"], "spot");
    assert!(d["metadata"]["annotations"]["spotkeeper.io/last-recovered-at"].is_string());
    assert!(d["metadata"]["annotations"].get("spotkeeper.io/saved-placement").is_none());
    let on_spot = fake.pods_on(&spot).iter().filter(|p| p.contains("/web-")).count();
    assert_eq!(on_spot, 3, "{:?}", fake.pods_on(&spot));
    assert!(fake.fewest_ready_endpoints("shop", "web").is_some_and(|n| n >= 1), "never dark on the way back");
    assert_eq!(h.history("workers", "workload-recovered").await.len(), 1);
    assert_eq!(alerts_of(&h.sns_alerts().await, "workload-recovered"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_way_back_that_fails_rolls_back_to_fargate_and_backs_off_up_to_the_maximum() {
    let (h, fake, spot, _) = on_fargate().await;
    let (status, _) = h.patch("workers", json!({"recovery": {"backoff_max": "45m"}})).await;
    assert_eq!(status, 200);
    let mut due = record(&h, &fake).await.next_attempt.expect("planned");
    for (attempt, wait) in [(1, 15), (2, 30), (3, 45)] {
        set_ready(&fake, &spot, true);
        h.clock.set(due);
        h.scheduled(None).await.expect("a run");
        assert_eq!(record(&h, &fake).await.state, WorkloadState::Recovering, "attempt {attempt} started");
        // The Spot node fails under it: the new pods cannot start anywhere.
        set_ready(&fake, &spot, false);
        let rolled = follow_until(&h, &fake, WorkloadState::FailingOver, 5).await;
        assert_eq!(rolled.failed_attempts, attempt);
        let next = rolled.next_attempt.expect("planned");
        assert_eq!(next - rolled.since, Duration::minutes(wait), "attempt {attempt}");
        let d = fake.get("deployments", Some("shop"), "web").expect("web");
        assert_eq!(d["spec"]["template"]["metadata"]["labels"][LABEL.0], LABEL.1, "back on Fargate");
        assert_eq!(d["metadata"]["annotations"]["spotkeeper.io/failed-recovery-attempts"], attempt.to_string());
        let settled = follow_until(&h, &fake, WorkloadState::Fargate, 5).await;
        assert_eq!(settled.next_attempt, Some(next), "the backoff holds once settled");
        assert!(fake.ready_endpoints("shop", "web") >= 1);
        due = next;
    }
    assert_eq!(h.history("workers", "workload-rolled-back").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_warnings_for_nodes_of_one_deployment_patch_it_once() {
    let (h, fake, ids) = cluster(json!({"failover": {"namespaces": ["shop"]}})).await;
    let first = node_of(&h, &fake, &ids[0]).await;
    let second = node_of(&h, &fake, &ids[1]).await;
    fake.namespace("shop");
    fake.fargate_profile("shop", &[LABEL]);
    opted_in(&fake, "web", 4, |_| {});
    fake.service("shop", "web", &[("app.kubernetes.io/name", "web")]);
    h.clock.advance(Duration::seconds(10));
    let on = |node: &str| fake.pods_on(node).iter().filter(|p| p.contains("/web-")).count();
    assert!(on(&first) >= 1 && on(&second) >= 1, "web on both nodes");
    let (a, b) = tokio::join!(
        h.node_drain(h.now_on(events::spot_warning(&ids[0]))),
        h.node_drain(h.now_on(events::spot_warning(&ids[1])))
    );
    assert_eq!(a.expect("drained")["action"], "drained");
    assert_eq!(b.expect("drained")["action"], "drained");
    assert_eq!(patches_of(&fake, "web"), 1, "one patch for two warnings");
    assert_eq!(h.history("workers", "workload-failed-over").await.len(), 1);
    follow_until(&h, &fake, WorkloadState::Fargate, 10).await;
}
