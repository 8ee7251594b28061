//! `node-drain` end to end: the Auto Scaling group `workers` in the emulator, its instances EKS
//! nodes of the fake API server (on the harness's clock), warnings and recommendations sent to
//! the function as EventBridge would. What it did is read back from the fake (its objects and
//! the requests it answered), the table, the history and the alerts.

use serde_json::{Value, json};
use spotkeeper::domain::{DrainState, GroupName, InstanceId, KubernetesSpec};
use spotkeeper_tests::kube::{Budget, FakeKube, Logged, Options, PodSeed};
use spotkeeper_tests::{Harness, events, member_ids};

/// The harness, the fake cluster on its clock, and the `workers` group's instances, the group
/// draining on the fake with `block`'s settings.
pub(crate) async fn cluster(block: Value) -> (Harness, FakeKube, Vec<String>) {
    let h = Harness::start().await;
    let fake = FakeKube::start_with(Options { clock: Some(h.clock.clone()), ..Options::default() }).await;
    let (_, asg) = h.register_workers().await;
    let ids = member_ids(&asg);
    let mut spec = json!({"cluster": fake.cluster, "endpoint": fake.url, "ca": fake.ca_pem});
    spec.as_object_mut().expect("an object").extend(block.as_object().cloned().unwrap_or_default());
    let (status, patched) = h.patch("workers", json!({"kubernetes": spec})).await;
    assert_eq!(status, 200, "the cluster checked and the block set: {patched}");
    (h, fake, ids)
}

/// Gives the `workers` group a kubernetes block straight in the table, as if the cluster had
/// answered when it was set and stopped since (the API checks it first).
async fn set_kubernetes(h: &Harness, ids: &[String], spec: Value) {
    let spec: KubernetesSpec = serde_json::from_value(spec).expect("a kubernetes block");
    let name = GroupName::try_from("workers".to_string()).expect("a group name");
    let mut group = h.deps.store.group(&name).await.expect("read").expect("registered");
    group.kubernetes = Some(spec);
    h.deps.store.save_group(&group, ids).await.expect("saved");
}

/// The EKS node of `instance`, named after its private DNS name as EKS names it.
pub(crate) async fn node_of(h: &Harness, fake: &FakeKube, instance: &str) -> String {
    let described = h.instance(instance).await;
    let name =
        described.private_dns_name().filter(|n| !n.is_empty()).unwrap_or("ip-10-0-1-10.ec2.internal").to_string();
    let az = described.placement().and_then(|p| p.availability_zone()).unwrap_or("us-east-1a").to_string();
    fake.node(&name, &az, instance);
    name
}

/// The node's 20 pods: 2 of DaemonSets, a static pod's mirror, `db-0` which a
/// PodDisruptionBudget allowing no disruption holds (30 s grace), and 16 plain ones.
fn twenty_pods(h: &Harness, fake: &FakeKube, node: &str) -> Vec<String> {
    fake.namespace("shop");
    fake.pod(PodSeed::new("kube-system", "aws-node-x1").daemonset("aws-node").on(node));
    fake.pod(PodSeed::new("kube-system", "kube-proxy-x1").daemonset("kube-proxy").on(node));
    fake.pod(PodSeed::new("kube-system", "etcd-backup").mirror().on(node));
    fake.pod(PodSeed::new("shop", "db-0").label("app", "db").grace(30).on(node));
    fake.pdb("shop", "db", &[("app", "db")], Budget::MinAvailable(json!(1)));
    let plain: Vec<String> = (0..16).map(|i| format!("web-{i}")).collect();
    for (i, name) in plain.iter().enumerate() {
        fake.pod(
            PodSeed::new("shop", name)
                .replicaset("web")
                .label("app", "web")
                .grace(if i % 2 == 0 { 1 } else { 20 })
                .on(node),
        );
    }
    // The kubelet starts them.
    h.clock.advance(chrono::Duration::seconds(1));
    plain
}

fn evictions_of(log: &[Logged], pod: &str) -> Vec<u16> {
    log.iter()
        .filter(|r| r.method == "POST" && r.uri.contains(&format!("/pods/{pod}/eviction")))
        .map(|r| r.status)
        .collect()
}

fn accepted(statuses: &[u16]) -> usize {
    statuses.iter().filter(|s| (200..300).contains(*s)).count()
}

fn node_patches(log: &[Logged], node: &str) -> usize {
    log.iter().filter(|r| r.method == "PATCH" && r.uri.starts_with(&format!("/api/v1/nodes/{node}"))).count()
}

fn id(value: &str) -> InstanceId {
    InstanceId::try_from(value.to_string()).expect("an instance id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warned_node_is_cordoned_first_then_emptied_and_a_held_pod_deleted_before_the_end() {
    let (h, fake, ids) = cluster(json!({})).await;
    let node = node_of(&h, &fake, &ids[0]).await;
    let plain = twenty_pods(&h, &fake, &node);
    let warning = h.now_on(events::spot_warning(&ids[0]));
    let warned_at = spotkeeper::clock::Clock::now(h.clock.as_ref());

    let (launch, drained) = tokio::join!(h.spot_interruption(warning.clone()), h.node_drain(warning));
    let drained = drained.expect("drained");
    assert_eq!(drained["action"], "drained", "{drained}");
    assert_eq!(
        (drained["evicted"].as_u64(), drained["deleted_at_deadline"].as_u64(), drained["left"].as_u64()),
        (Some(16), Some(1), Some(0)),
        "{drained}"
    );
    let seconds = drained["seconds_to_empty"].as_f64().expect("emptied");
    assert!(seconds < 120.0, "the held pod was gone before the instance's end: {seconds} s");

    // The replacement path ran beside it: the instance detached from its Auto Scaling group.
    assert_eq!(launch.expect("the warning handled")["action"], "detached");

    let log = fake.requests();
    let cordon_at =
        log.iter().position(|r| r.method == "PATCH" && r.uri.starts_with("/api/v1/nodes/")).expect("a cordon");
    let first_eviction = log.iter().position(|r| r.uri.contains("/eviction")).expect("evictions");
    assert!(cordon_at < first_eviction, "cordoned before the first eviction");
    let node_now = fake.get("nodes", None, &node).expect("the node");
    assert_eq!(node_now["spec"]["unschedulable"], true);
    assert!(
        node_now["spec"]["taints"]
            .as_array()
            .expect("taints")
            .iter()
            .any(|t| t["key"] == "spotkeeper.io/interrupted" && t["effect"] == "NoSchedule")
    );

    for pod in &plain {
        assert_eq!(evictions_of(&log, pod), vec![201], "{pod} evicted once");
    }
    for pod in ["aws-node-x1", "kube-proxy-x1", "etcd-backup"] {
        assert!(evictions_of(&log, pod).is_empty(), "{pod} untouched");
        assert!(fake.pods_on(&node).iter().any(|p| p.ends_with(pod)), "{pod} still on the node");
    }
    let db = evictions_of(&log, "db-0");
    assert!(db.len() >= 2 && db.iter().all(|s| *s == 429), "the held pod asked again while there was time: {db:?}");
    assert!(log.iter().any(|r| r.method == "DELETE" && r.uri.contains("/pods/db-0")), "deleted at the deadline");
    assert!(fake.get("pods", Some("shop"), "db-0").is_none(), "gone");
    assert_eq!(fake.pods_on(&node).len(), 3, "only the DaemonSet and mirror pods stay: {:?}", fake.pods_on(&node));
    assert!(spotkeeper::clock::Clock::now(h.clock.as_ref()) < warned_at + chrono::Duration::seconds(125));

    let record = h.deps.store.drain(&id(&ids[0])).await.expect("read").expect("kept");
    assert_eq!(record.state, DrainState::Done);
    assert_eq!(record.tally.deleted, vec!["shop/db-0".to_string()]);
    assert_eq!(record.tally.evicted.len(), 16);

    assert_eq!(h.history("workers", "node-cordoned").await.len(), 1);
    let summary = h.history("workers", "node-drained").await;
    assert!(
        summary.len() == 1 && summary[0].contains("16 evicted, 1 deleted at the deadline (shop/db-0), 0 left"),
        "{summary:?}"
    );
    let deleted = h.history("workers", "pod-deleted-at-deadline").await;
    assert!(deleted.len() == 1 && deleted[0].contains("shop/db-0"), "{deleted:?}");
    let alerts = h.sns_alerts().await;
    let alert = alerts
        .iter()
        .find(|a| a.attributes.get("event").map(String::as_str) == Some("node-drained"))
        .expect("a node-drained alert");
    assert!(alert.message.contains("shop/db-0") && alert.message.contains(&node), "{}", alert.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_respect_the_held_pod_is_left_and_reported() {
    let (h, fake, ids) = cluster(json!({"pdb_policy": "respect"})).await;
    let node = node_of(&h, &fake, &ids[0]).await;
    twenty_pods(&h, &fake, &node);

    let drained = h.node_drain(h.now_on(events::spot_warning(&ids[0]))).await.expect("drained");
    assert_eq!(
        (drained["evicted"].as_u64(), drained["deleted_at_deadline"].as_u64(), drained["left"].as_u64()),
        (Some(16), Some(0), Some(1)),
        "{drained}"
    );
    assert_eq!(drained["seconds_to_empty"], Value::Null, "never emptied");
    let log = fake.requests();
    assert!(!log.iter().any(|r| r.method == "DELETE"), "nothing deleted past its budget");
    assert!(fake.get("pods", Some("shop"), "db-0").is_some(), "the held pod stays");
    let left = h.history("workers", "pods-left").await;
    assert!(left.len() == 1 && left[0].contains("shop/db-0"), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_concurrent_deliveries_drain_once() {
    let (h, fake, ids) = cluster(json!({})).await;
    let node = node_of(&h, &fake, &ids[0]).await;
    let plain = twenty_pods(&h, &fake, &node);
    let warning = h.now_on(events::spot_warning(&ids[0]));

    let (a, b, c) = tokio::join!(h.node_drain(warning.clone()), h.node_drain(warning.clone()), h.node_drain(warning));
    let mut actions: Vec<String> = [a, b, c]
        .into_iter()
        .map(|o| o.expect("answered")["action"].as_str().unwrap_or_default().to_string())
        .collect();
    actions.sort();
    assert_eq!(actions, ["already-draining", "already-draining", "drained"]);
    let log = fake.requests();
    assert_eq!(node_patches(&log, &node), 1, "one cordon");
    for pod in &plain {
        assert_eq!(accepted(&evictions_of(&log, pod)), 1, "{pod} evicted once");
    }
    assert_eq!(h.history("workers", "node-drained").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_killed_half_way_is_finished_by_the_redelivery() {
    let (h, fake, ids) = cluster(json!({})).await;
    let node = node_of(&h, &fake, &ids[0]).await;
    let plain = twenty_pods(&h, &fake, &node);
    let warning = h.now_on(events::spot_warning(&ids[0]));

    // Killed (its future dropped, as Lambda ends a process) once the held pod was refused twice.
    let held_twice = async {
        while evictions_of(&fake.requests(), "db-0").len() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    };
    tokio::select! {
        done = h.node_drain(warning.clone()) => panic!("the drain ended before it was killed: {done:?}"),
        () = held_twice => {}
    }
    let record = h.deps.store.drain(&id(&ids[0])).await.expect("read").expect("kept");
    assert_eq!(record.state, DrainState::Acting, "left mid-way");
    // SQS delivers it again after the visibility timeout, when the dead delivery's lease is over.
    h.clock.advance(chrono::Duration::seconds(31));

    let drained = h.node_drain(warning).await.expect("finished");
    assert_eq!(drained["action"], "drained", "{drained}");
    assert_eq!(
        (drained["evicted"].as_u64(), drained["deleted_at_deadline"].as_u64()),
        (Some(16), Some(1)),
        "the whole drain's tally: {drained}"
    );
    let log = fake.requests();
    for pod in &plain {
        assert_eq!(accepted(&evictions_of(&log, pod)), 1, "{pod} evicted once across both deliveries");
    }
    assert!(fake.get("pods", Some("shop"), "db-0").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_cordons_and_the_warning_then_drains() {
    let (h, fake, ids) = cluster(json!({"rebalance": "cordon"})).await;
    let node = node_of(&h, &fake, &ids[0]).await;
    let plain = twenty_pods(&h, &fake, &node);

    let cordoned = h.node_drain(h.now_on(events::rebalance(&ids[0]))).await.expect("cordoned");
    assert_eq!(cordoned["action"], "cordoned", "{cordoned}");
    assert_eq!(cordoned["node"], node.as_str());
    let log = fake.requests();
    assert_eq!(node_patches(&log, &node), 1);
    assert!(!log.iter().any(|r| r.uri.contains("/eviction")), "a cordon moves no pod");
    let again = h.node_drain(h.now_on(events::rebalance(&ids[0]))).await.expect("answered");
    assert_eq!(again["action"], "already-draining", "a second recommendation does nothing: {again}");

    let drained = h.node_drain(h.now_on(events::spot_warning(&ids[0]))).await.expect("drained");
    assert_eq!(drained["action"], "drained", "{drained}");
    let log = fake.requests();
    assert_eq!(node_patches(&log, &node), 1, "the warning found it cordoned: one cordon in all");
    for pod in &plain {
        assert_eq!(accepted(&evictions_of(&log, pod)), 1, "{pod}");
    }
    assert_eq!(h.history("workers", "node-cordoned").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_a_drain_is_acknowledged_and_changes_nothing() {
    let (h, fake, ids) = cluster(json!({"rebalance": "off"})).await;
    let node = node_of(&h, &fake, &ids[0]).await;
    twenty_pods(&h, &fake, &node);

    // A rebalance with the action off; an instance no group manages; a managed instance that is
    // no node of the cluster; a message that is not an event at all.
    let off = h.node_drain(h.now_on(events::rebalance(&ids[0]))).await.expect("answered");
    assert_eq!(
        (off["action"].as_str(), off["reason"].as_str()),
        (Some("ignored"), Some("the group's rebalance action is off"))
    );
    let stranger = h.node_drain(h.now_on(events::spot_warning("i-0123456789abcdef0"))).await.expect("answered");
    assert_eq!(
        (stranger["action"].as_str(), stranger["reason"].as_str()),
        (Some("ignored"), Some("no group manages the instance"))
    );
    let not_a_node = h.node_drain(h.now_on(events::spot_warning(&ids[1]))).await.expect("answered");
    assert_eq!(not_a_node["action"], "ignored", "{not_a_node}");
    assert!(not_a_node["reason"].as_str().unwrap_or_default().contains("no node of cluster"), "{not_a_node}");
    let batch = json!({"Records": [{"messageId": "m-bad", "body": "{not json"}, {"messageId": "m-other", "body": events::load("scheduled-event.json").to_string()}]});
    assert_eq!(h.node_drain(batch).await.expect("answered"), json!({"batchItemFailures": []}), "never retried");

    assert!(!fake.requests().iter().any(|r| r.method != "GET"), "only reads: nothing in the cluster changed");
    assert_eq!(fake.get("nodes", None, &node).expect("the node")["spec"]["unschedulable"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_refuses_or_cannot_be_reached_is_recorded_and_alerted_as_failed() {
    let h = Harness::start().await;
    let (_, asg) = h.register_workers().await;
    let ids = member_ids(&asg);
    // A server that is another cluster: the token, signed for ours, is refused (401) even when minted anew.
    let other = FakeKube::start_with(Options {
        cluster: "someone-else".into(),
        clock: Some(h.clock.clone()),
        ..Options::default()
    })
    .await;
    set_kubernetes(&h, &ids, json!({"cluster": "spotkeeper-test", "endpoint": other.url, "ca": other.ca_pem})).await;
    let refused = h.node_drain(h.now_on(events::spot_warning(&ids[0]))).await.expect("answered");
    assert_eq!(refused["action"], "failed", "{refused}");
    assert!(refused["reason"].as_str().unwrap_or_default().contains("refused the credentials (401)"), "{refused}");
    assert_eq!(
        other.requests().iter().filter(|r| r.status == 401).count(),
        2,
        "tried once more with a fresh token, no more"
    );

    // A closed port: tried again every few seconds until the warning's time is up, then failed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = closed.local_addr().expect("its address").port();
    drop(closed);
    set_kubernetes(
        &h,
        &ids,
        json!({"cluster": "spotkeeper-test", "endpoint": format!("https://127.0.0.1:{port}"), "ca": other.ca_pem}),
    )
    .await;
    let start = spotkeeper::clock::Clock::now(h.clock.as_ref());
    let unreachable = h.node_drain(h.now_on(events::spot_warning(&ids[1]))).await.expect("answered");
    assert_eq!(unreachable["action"], "failed", "{unreachable}");
    assert!(unreachable["reason"].as_str().unwrap_or_default().contains("could not be reached"), "{unreachable}");
    let waited = spotkeeper::clock::Clock::now(h.clock.as_ref()) - start;
    assert!(waited >= chrono::Duration::seconds(110), "retried while the warning allowed: {waited}");
    assert_eq!(h.deps.store.drain(&id(&ids[1])).await.expect("read").expect("kept").state, DrainState::Failed);
    assert!(!h.history("workers", "node-drain-retrying").await.is_empty());
    assert_eq!(h.history("workers", "node-drain-failed").await.len(), 2);
    let alerts = h.sns_alerts().await;
    assert_eq!(
        alerts.iter().filter(|a| a.attributes.get("event").map(String::as_str) == Some("node-drain-failed")).count(),
        2
    );
    // A redelivery of a failed drain does not start again.
    let again = h.node_drain(h.now_on(events::spot_warning(&ids[1]))).await.expect("answered");
    assert_eq!(again["action"], "already-draining");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_cluster_fails_at_once_and_a_wrong_ca_when_time_is_up() {
    let h = Harness::start().await;
    let (_, asg) = h.register_workers().await;
    let ids = member_ids(&asg);
    let clock = |h: &Harness| spotkeeper::clock::Clock::now(h.clock.as_ref());

    // No endpoint given: eks:DescribeCluster is asked, and knows no such cluster. Nothing to retry.
    set_kubernetes(&h, &ids, json!({"cluster": "no-such-cluster"})).await;
    let start = clock(&h);
    let unknown = h.node_drain(h.now_on(events::spot_warning(&ids[0]))).await.expect("answered");
    assert_eq!(unknown["action"], "failed", "{unknown}");
    assert!(unknown["reason"].as_str().unwrap_or_default().contains("does not exist"), "{unknown}");
    assert!(clock(&h) - start < chrono::Duration::seconds(2), "not retried");

    // A server whose certificate another CA signed: the TLS handshake fails, as it would against
    // an impostor; retried while the warning allows (it may be a rotation), then failed.
    let server = FakeKube::start_with(Options { clock: Some(h.clock.clone()), ..Options::default() }).await;
    let other = FakeKube::start().await;
    set_kubernetes(&h, &ids, json!({"cluster": "spotkeeper-test", "endpoint": server.url, "ca": other.ca_pem})).await;
    let wrong_ca = h.node_drain(h.now_on(events::spot_warning(&ids[1]))).await.expect("answered");
    assert_eq!(wrong_ca["action"], "failed", "{wrong_ca}");
    assert!(
        wrong_ca["reason"].as_str().unwrap_or_default().contains("could not be reached (connection or TLS)"),
        "{wrong_ca}"
    );
    assert!(server.requests().is_empty(), "no request got past the handshake");
    assert_eq!(h.history("workers", "node-drain-failed").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_kept_then_minted_anew_before_its_fifteen_minutes_end() {
    let (h, fake, ids) = cluster(json!({})).await;
    let first = node_of(&h, &fake, &ids[0]).await;
    fake.pod(PodSeed::new("default", "a").on(&first));
    let drained = h.node_drain(h.now_on(events::spot_warning(&ids[0]))).await.expect("drained");
    assert_eq!(drained["action"], "drained", "{drained}");

    // Sixteen minutes on, EKS (and the fake) refuses the first token: the drain must not send it.
    h.clock.advance(chrono::Duration::minutes(16));
    let second = node_of(&h, &fake, &ids[1]).await;
    fake.pod(PodSeed::new("default", "b").on(&second));
    let drained = h.node_drain(h.now_on(events::spot_warning(&ids[1]))).await.expect("drained");
    assert_eq!((drained["action"].as_str(), drained["evicted"].as_u64()), (Some("drained"), Some(1)), "{drained}");
    let refused: Vec<_> = fake.requests().into_iter().filter_map(|r| r.refused).collect();
    assert!(refused.is_empty(), "a token was minted anew before the old one ran out: {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_drain_respects_budgets_and_the_warning_then_finishes_it() {
    let (h, fake, ids) = cluster(json!({"rebalance": "drain"})).await;
    let node = node_of(&h, &fake, &ids[0]).await;
    let plain = twenty_pods(&h, &fake, &node);

    // No instance end is known yet: budgets are respected whatever the group's pdb_policy says.
    let early = h.node_drain(h.now_on(events::rebalance(&ids[0]))).await.expect("drained");
    assert_eq!(
        (early["action"].as_str(), early["evicted"].as_u64(), early["left"].as_u64()),
        (Some("drained"), Some(16), Some(1)),
        "{early}"
    );
    assert!(!fake.requests().iter().any(|r| r.method == "DELETE"), "nothing deleted past its budget");

    // The warning comes: the held pod is deleted before the end, the others not evicted again.
    let late = h.node_drain(h.now_on(events::spot_warning(&ids[0]))).await.expect("drained");
    assert_eq!(
        (late["action"].as_str(), late["deleted_at_deadline"].as_u64(), late["left"].as_u64()),
        (Some("drained"), Some(1), Some(0)),
        "{late}"
    );
    let log = fake.requests();
    for pod in &plain {
        assert_eq!(accepted(&evictions_of(&log, pod)), 1, "{pod}");
    }
    assert_eq!(node_patches(&log, &node), 1, "one cordon");
    assert!(fake.get("pods", Some("shop"), "db-0").is_none());
}
