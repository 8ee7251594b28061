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

/// The `workers` group draining on the fake, a Fargate profile for `shop` (in EKS and the fake),
/// then its failover block set through the API (which checks the profile).
async fn failing_over() -> (Harness, FakeKube, Vec<String>) {
    let (h, fake, ids) = cluster(json!({})).await;
    h.fargate_profile(&fake, "shop", &[LABEL]).await;
    let (status, answer) = h.patch("workers", kubernetes(&fake, json!({"namespaces": ["shop"]}))).await;
    assert_eq!(status, 200, "{answer}");
    (h, fake, ids)
}

fn kubernetes(fake: &FakeKube, failover: Value) -> Value {
    json!({"kubernetes": {"cluster": fake.cluster, "endpoint": fake.url, "ca": fake.ca_pem, "failover": failover}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_namespace_no_fargate_profile_selects_is_refused_and_nothing_is_set() {
    let (h, fake, _) = cluster(json!({})).await;
    h.fargate_profile(&fake, "shop", &[("team", "shop")]).await;
    let (status, answer) = h.patch("workers", kubernetes(&fake, json!({"namespaces": ["shop"]}))).await;
    assert_eq!(status, 422, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no Fargate profile selects namespace(s) shop with label spotkeeper.io/compute=fargate"),
        "{answer}"
    );
    let (_, group) = h.call(axum::http::Method::GET, "/groups/workers", Some(spotkeeper_tests::TOKEN), None).await;
    assert!(group["kubernetes"]["failover"].is_null(), "nothing set: {group}");
}

/// The warned node with `web` (3 replicas, opted in, pinned to Spot), `api` (not opted in) and
/// `logs` (opted in, a hostPath volume); the Fargate profile; `web`'s Service watched.
pub(crate) async fn warned_node() -> (Harness, FakeKube, Vec<String>, String, Value) {
    let (h, fake, ids) = failing_over().await;
    let node = node_of(&h, &fake, &ids[0]).await;
    fake.namespace("shop");
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

    // Due, but the Spot node is full: the way back waits for room.
    let pods_allowed = |n: &str| {
        fake.modify("nodes", None, &spot, |node| node["status"]["allocatable"]["pods"] = json!(n));
    };
    pods_allowed("0");
    h.clock.advance(Duration::minutes(1));
    let run = h.scheduled(None).await.expect("a run");
    assert_eq!(patches_of(&fake, "web"), patches, "no room, no way back: {run}");
    assert_eq!(record(&h, &fake).await.state, WorkloadState::Fargate);
    pods_allowed("110");

    fake.watch_endpoints("shop", "web");
    h.clock.advance(Duration::seconds(30));
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
    let (h, fake, ids) = failing_over().await;
    let first = node_of(&h, &fake, &ids[0]).await;
    let second = node_of(&h, &fake, &ids[1]).await;
    fake.namespace("shop");
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

fn patch_statuses(fake: &FakeKube, name: &str) -> Vec<u16> {
    let path = format!("/apis/apps/v1/namespaces/shop/deployments/{name}");
    fake.requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.uri.split('?').next() == Some(path.as_str()))
        .map(|r| r.status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_someone_else_between_read_and_patch_is_read_again_and_kept() {
    let (h, fake, ids, _, _) = warned_node().await;
    fake.before_next_write("deployments", Some("shop"), "web", |d| {
        d["metadata"]["labels"]["team"] = json!("checkout");
        d["spec"]["template"]["metadata"]["annotations"] = json!({"example.com/restarted-at": "2026-12-06T10:00:00Z"});
    });
    h.node_drain(h.now_on(events::spot_warning(&ids[0]))).await.expect("drained");
    assert_eq!(patch_statuses(&fake, "web"), vec![409, 200], "refused on the stale read, then sent anew");
    let d = fake.get("deployments", Some("shop"), "web").expect("web");
    assert_eq!(d["metadata"]["labels"]["team"], "checkout", "the other writer's change kept");
    let template = &d["spec"]["template"];
    assert_eq!(template["metadata"]["annotations"]["example.com/restarted-at"], "2026-12-06T10:00:00Z");
    assert_eq!(template["metadata"]["labels"][LABEL.0], LABEL.1, "and the failover's");
    assert!(template["spec"].get("nodeSelector").is_none());
    assert_eq!(d["metadata"]["annotations"]["spotkeeper.io/state"], "failing-over");
    assert_eq!(h.history("workers", "workload-failed-over").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_twenty_percent_faults_no_deployment_is_patched_twice_or_left_half_patched() {
    // Two draws of the faults: seed 1 once left a Deployment's annotations behind its record.
    for seed in [1, 16] {
        twenty_percent_faults(seed).await;
    }
}

async fn twenty_percent_faults(seed: u64) {
    use spotkeeper_tests::FaultProxy;
    use spotkeeper_tests::kube::Options;
    const DEPLOYMENTS: usize = 6;
    let h = Harness::start().await;
    let fake = FakeKube::start_with(Options { tls: false, clock: Some(h.clock.clone()), ..Options::default() }).await;
    let proxy = FaultProxy::start_tls(&fake.url).await;
    let (_, asg) = h.register_workers().await;
    let ids = spotkeeper_tests::member_ids(&asg);
    h.fargate_profile(&fake, "shop", &[LABEL]).await;
    let block = json!({"kubernetes": {
        "cluster": fake.cluster, "endpoint": proxy.endpoint, "ca": proxy.ca_pem,
        "failover": {"namespaces": ["shop"]},
    }});
    let (status, answer) = h.patch("workers", block).await;
    assert_eq!(status, 200, "{answer}");
    for id in &ids {
        node_of(&h, &fake, id).await;
    }
    fake.namespace("shop");
    let names: Vec<String> = (0..DEPLOYMENTS).map(|i| format!("web-{i}")).collect();
    for name in &names {
        opted_in(&fake, name, 2, |_| {});
        fake.service("shop", name, &[("app.kubernetes.io/name", name)]);
    }
    h.clock.advance(Duration::seconds(10));

    proxy.kube_chaos(0.2, seed);
    // Each warning delivered until it is handled, as SQS redelivers a failed message.
    let drains = ids.iter().map(|id| {
        let warning = h.now_on(events::spot_warning(id));
        let h = &h;
        async move {
            for _ in 0..5 {
                if h.node_drain(warning.clone()).await.is_ok() {
                    return;
                }
            }
            panic!("the warning for {id} never handled");
        }
    });
    futures::future::join_all(drains).await;
    let cluster = ClusterName::try_from(fake.cluster.clone()).expect("a cluster name");
    for _ in 0..40 {
        let records = h.deps.store.workloads(&cluster).await.expect("read");
        if records.len() == DEPLOYMENTS && records.iter().all(|r| r.state == WorkloadState::Fargate) {
            break;
        }
        h.clock.advance(Duration::seconds(30));
        // A run the faults broke is the next run's to finish.
        let _ = h.scheduled(None).await;
    }
    let failovers: Vec<(String, usize)> = names
        .iter()
        .map(|n| {
            let applied = patch_statuses(&fake, n).iter().filter(|s| **s == 200).count();
            (n.clone(), applied)
        })
        .collect();
    for name in &names {
        let d = fake.get("deployments", Some("shop"), name).expect("the Deployment");
        let labelled = d["spec"]["template"]["metadata"]["labels"][LABEL.0] == LABEL.1;
        let unpinned = d["spec"]["template"]["spec"].get("nodeSelector").is_none();
        let state = d["metadata"]["annotations"]["spotkeeper.io/state"].as_str().unwrap_or("spot");
        assert!(labelled && unpinned && state == "fargate", "{name} whole on Fargate: {d}");
    }
    // One failover patch and one settling its annotations, each applied once, whatever was lost.
    assert!(failovers.iter().all(|(_, applied)| *applied == 2), "{failovers:?}");
    assert_eq!(h.history("workers", "workload-failed-over").await.len(), DEPLOYMENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_fallen_back_for_lack_of_spot_sends_its_opted_in_deployments_to_fargate() {
    use spotkeeper::domain::{Fallback, GroupName};
    let (h, fake, ids, node, _) = warned_node().await;
    let name = GroupName::try_from("workers".to_string()).expect("a group name");
    let mut group = h.deps.store.group(&name).await.expect("read").expect("registered");
    let now = spotkeeper::clock::Clock::now(h.clock.as_ref());
    group.status.fallback = Some(Fallback { since: now, reason: "no Spot capacity in any pool".into(), restore: None });
    h.deps.store.save_group(&group, &ids).await.expect("saved");

    h.scheduled(None).await.expect("a run");
    assert_eq!(patches_of(&fake, "web"), 1, "web patched at the run");
    assert_eq!(patches_of(&fake, "api"), 0);
    assert_eq!(patches_of(&fake, "logs"), 0);
    let r = record(&h, &fake).await;
    assert!(r.reason.contains("fell back to On-Demand"), "{r:?}");
    assert!(fake.get("nodes", None, &node).expect("the node")["spec"]["unschedulable"].is_null(), "no drain");
    let settled = follow_until(&h, &fake, WorkloadState::Fargate, 10).await;
    assert!(fake.fewest_ready_endpoints("shop", "web").is_some_and(|n| n >= 1), "never dark");

    // The way back waits while the group is on On-Demand, cooldown or not.
    h.clock.set(settled.next_attempt.expect("planned") + Duration::minutes(5));
    h.scheduled(None).await.expect("a run");
    assert_eq!(record(&h, &fake).await.state, WorkloadState::Fargate);
    assert_eq!(patches_of(&fake, "web"), 2, "the failover and its settled annotations, no more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_reverted_by_a_gitops_controller_is_reported_and_followed() {
    let (h, fake, _, before) = on_fargate().await;
    let patches = patches_of(&fake, "web");
    // As Argo CD syncs the Deployment from git, without ignoreDifferences.
    fake.modify("deployments", Some("shop"), "web", |d| d["spec"]["template"] = before["spec"]["template"].clone());
    h.clock.advance(Duration::seconds(30));
    h.scheduled(None).await.expect("a run");
    let r = record(&h, &fake).await;
    assert_eq!(r.state, WorkloadState::Spot, "{r:?}");
    assert!(r.reason.contains("reverted"), "{r:?}");
    let reverted = h.history("workers", "workload-reverted").await;
    assert!(reverted.len() == 1 && reverted[0].contains("ignoreDifferences"), "{reverted:?}");
    assert_eq!(alerts_of(&h.sns_alerts().await, "workload-reverted"), 1);
    h.clock.advance(Duration::hours(1));
    h.scheduled(None).await.expect("a run");
    assert_eq!(patches_of(&fake, "web"), patches, "spotkeeper does not fight the controller");
    assert_eq!(h.history("workers", "workload-reverted").await.len(), 1, "reported once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_to_fargate_past_its_timeout_is_reported_failed_and_the_way_back_planned() {
    let (h, fake, ids, _, _) = warned_node().await;
    let (status, answer) =
        h.patch("workers", kubernetes(&fake, json!({"namespaces": ["shop"], "rollout_timeout": "30s"}))).await;
    assert_eq!(status, 200, "{answer}");
    // Fargate cannot start the pods: the new ones stay Pending.
    fake.delete_fargate_profiles();
    h.node_drain(h.now_on(events::spot_warning(&ids[0]))).await.expect("drained");
    let r = follow_until(&h, &fake, WorkloadState::Fargate, 5).await;
    assert!(r.reason.contains("its rollout to Fargate failed") && r.reason.contains("not done after 30s"), "{r:?}");
    assert!(r.next_attempt.is_some(), "the way back is planned all the same");
    let failed = h.history("workers", "workload-rollout-failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let alerts = h.sns_alerts().await;
    assert_eq!(alerts_of(&alerts, "workload-rollout-failed"), 1);
    assert_eq!(alerts_of(&alerts, "workload-on-fargate"), 0);
}
