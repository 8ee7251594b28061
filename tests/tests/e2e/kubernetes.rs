//! The library's Kubernetes client (`adapters::kubernetes::KubeClient`, kube 5) against the fake
//! API server over HTTPS with its test CA and EKS tokens: finding a node, cordoning it, listing
//! its pods, evicting and deleting them, and the errors a drain must tell apart.

use std::time::Duration;

use aws_credential_types::Credentials;
use serde_json::json;
use spotkeeper::adapters::kubernetes::{
    Cordon, DeleteOutcome, EvictionOutcome, INTERRUPTED_TAINT, KubeClient, KubeError, mint_token,
};
use spotkeeper::decisions::drain;
use spotkeeper::domain::{ClusterCa, Endpoint, InstanceId, PodPhase, PodView};
use spotkeeper_tests::kube::{ACCESS_KEY, Budget, FakeKube, PodSeed, SECRET_KEY};

const NODE: &str = "ip-10-0-1-10.ec2.internal";
const INSTANCE: &str = "i-0123456789abcdef0";

fn token(fake: &FakeKube, cluster: &str) -> String {
    let credentials = Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
    mint_token(&credentials, "us-east-1", cluster, fake.now()).expect("a token").value
}

fn ca(fake: &FakeKube) -> ClusterCa {
    ClusterCa::try_from(fake.ca_pem.clone().expect("the fake serves HTTPS")).expect("the test CA is PEM")
}

/// The client as the drain will build it: endpoint, cluster CA, a token for the fake's cluster.
fn client(fake: &FakeKube) -> KubeClient {
    let endpoint = Endpoint::try_from(fake.url.clone()).expect("an https endpoint");
    KubeClient::new(&endpoint, &ca(fake), &token(fake, &fake.cluster)).expect("a client")
}

fn id(value: &str) -> InstanceId {
    InstanceId::try_from(value.to_string()).expect("an instance id")
}

/// The pod as the client lists it on `NODE`.
async fn listed(kube: &KubeClient, name: &str) -> PodView {
    let pods = kube.pods_on(NODE).await.expect("pods listed");
    pods.into_iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name} on {NODE}"))
}

fn evictions(fake: &FakeKube, pod: &str) -> usize {
    fake.requests().iter().filter(|r| r.method == "POST" && r.uri.contains(&format!("/pods/{pod}/eviction"))).count()
}

#[tokio::test]
async fn the_node_of_an_instance_is_found_by_provider_id_else_by_private_dns_name() {
    let fake = FakeKube::start().await;
    fake.node(NODE, "us-east-1a", INSTANCE);
    fake.node("ip-10-0-2-20.ec2.internal", "us-east-1b", "i-0fedcba9876543210");
    // A node whose kubelet has not set its provider id yet: only its name tells.
    fake.seed("nodes", None, json!({"metadata": {"name": "ip-10-0-3-30.ec2.internal"}, "spec": {}}));
    let kube = client(&fake);

    let found = kube.find_node(&id("i-0fedcba9876543210"), None).await.expect("nodes listed");
    assert_eq!(found.as_deref(), Some("ip-10-0-2-20.ec2.internal"));
    let by_get = kube.find_node(&id(INSTANCE), Some(NODE)).await.expect("the node read");
    assert_eq!(by_get.as_deref(), Some(NODE));
    let by_dns = kube.find_node(&id("i-0aaaaaaaaaaaaaaa1"), Some("ip-10-0-3-30.ec2.internal")).await.expect("listed");
    assert_eq!(by_dns.as_deref(), Some("ip-10-0-3-30.ec2.internal"));
    // A DNS name that is another instance's node is not this instance's.
    let wrong = kube.find_node(&id("i-0aaaaaaaaaaaaaaa1"), Some(NODE)).await.expect("listed");
    assert_eq!(wrong, None);
    assert_eq!(kube.find_node(&id("i-0bbbbbbbbbbbbbbb2"), None).await.expect("listed"), None, "not in the cluster");
}

#[tokio::test]
async fn a_cordon_sets_unschedulable_and_the_taint_in_one_patch_once() {
    let fake = FakeKube::start().await;
    fake.node(NODE, "us-east-1a", INSTANCE);
    fake.modify("nodes", None, NODE, |n| {
        n["spec"]["taints"] = json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
    });
    let kube = client(&fake);

    assert_eq!(kube.cordon(NODE).await.expect("cordoned"), Cordon::Cordoned);
    let node = fake.get("nodes", None, NODE).expect("the node");
    assert_eq!(node["spec"]["unschedulable"], true);
    assert_eq!(
        node["spec"]["taints"],
        json!([
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": INTERRUPTED_TAINT, "value": "true", "effect": "NoSchedule"},
        ]),
        "the node's own taint kept"
    );
    let patches = || fake.requests().iter().filter(|r| r.method == "PATCH").count();
    assert_eq!(patches(), 1, "one patch for both");

    let version = node["metadata"]["resourceVersion"].clone();
    assert_eq!(kube.cordon(NODE).await.expect("cordoned again"), Cordon::AlreadyCordoned);
    let again = fake.get("nodes", None, NODE).expect("the node");
    assert_eq!(again["metadata"]["resourceVersion"], version, "nothing written the second time");
    assert_eq!(patches(), 1);

    // Cordoned by kubectl (no taint): the taint is added, unschedulable stays.
    fake.modify("nodes", None, NODE, |n| n["spec"]["taints"] = json!([]));
    assert_eq!(kube.cordon(NODE).await.expect("tainted"), Cordon::Cordoned);
    let node = fake.get("nodes", None, NODE).expect("the node");
    assert_eq!(node["spec"]["taints"], json!([{"key": INTERRUPTED_TAINT, "value": "true", "effect": "NoSchedule"}]));

    let missing = kube.cordon("ip-10-9-9-9.ec2.internal").await.expect_err("no such node");
    assert_eq!(missing.code(), Some(404), "{missing}");
    assert!(!missing.is_retryable());
}

#[tokio::test]
async fn the_pods_of_a_node_are_listed_into_the_drains_view() {
    let fake = FakeKube::start().await;
    fake.node(NODE, "us-east-1a", INSTANCE);
    fake.node("ip-10-0-2-20.ec2.internal", "us-east-1b", "i-0fedcba9876543210");
    fake.namespace("shop");
    fake.pod(PodSeed::new("default", "web").on(NODE).grace(45));
    fake.pod(PodSeed::new("shop", "cart").on(NODE));
    fake.pod(PodSeed::new("kube-system", "aws-node-x1").on(NODE).daemonset("aws-node"));
    fake.pod(PodSeed::new("kube-system", "etcd-static").on(NODE).mirror());
    fake.pod(PodSeed::new("default", "job").on(NODE).phase("Succeeded"));
    fake.pod(PodSeed::new("default", "elsewhere").on("ip-10-0-2-20.ec2.internal"));
    let kube = client(&fake);

    let mut pods = kube.pods_on(NODE).await.expect("pods listed");
    pods.sort_by_key(PodView::key);
    let keys: Vec<String> = pods.iter().map(PodView::key).collect();
    assert_eq!(keys, ["default/job", "default/web", "kube-system/aws-node-x1", "kube-system/etcd-static", "shop/cart"]);
    let web = &pods[1];
    let seeded = fake.get("pods", Some("default"), "web").expect("web");
    assert_eq!(web.uid, seeded["metadata"]["uid"].as_str().expect("a uid"));
    assert_eq!((web.phase, web.grace_seconds, web.deletion), (PodPhase::Running, 45, None));
    assert_eq!(web.owner_kinds, ["ReplicaSet"]);
    assert_eq!(pods[2].owner_kinds, ["DaemonSet"]);
    assert!(pods[3].mirror && !web.mirror);
    assert_eq!(pods[0].phase, PodPhase::Succeeded);
    assert!(
        fake.requests().iter().any(|r| r.uri.contains("fieldSelector=spec.nodeName%3D") || r.uri.contains("fieldSelector=spec.nodeName=")),
        "listed by field selector: {:?}",
        fake.requests().iter().map(|r| &r.uri).collect::<Vec<_>>()
    );

    let plan = drain::plan(&pods);
    let evict: Vec<String> = plan.evict.iter().map(|p| p.key()).collect();
    assert_eq!(evict, ["default/web", "shop/cart"]);
    let skipped: Vec<(String, drain::Skip)> = plan.skip.iter().map(|(p, why)| (p.key(), *why)).collect();
    assert_eq!(
        skipped,
        [
            ("default/job".to_string(), drain::Skip::Finished),
            ("kube-system/aws-node-x1".to_string(), drain::Skip::DaemonSet),
            ("kube-system/etcd-static".to_string(), drain::Skip::Mirror),
        ]
    );
    assert!(!drain::done(&pods, fake.now(), drain::deadline(fake.now())));
}

#[tokio::test]
async fn evictions_come_back_as_typed_outcomes() {
    let fake = FakeKube::start().await;
    fake.node(NODE, "us-east-1a", INSTANCE);
    fake.pod(PodSeed::new("default", "plain").on(NODE).grace(3));
    fake.pod(PodSeed::new("default", "held").on(NODE).label("app", "held"));
    fake.pdb("default", "held", &[("app", "held")], Budget::MinAvailable(json!(1)));
    fake.pod(PodSeed::new("default", "twice").on(NODE).label("app", "twice"));
    fake.pdb("default", "twice-a", &[("app", "twice")], Budget::MaxUnavailable(json!(1)));
    fake.pdb("default", "twice-b", &[("app", "twice")], Budget::MaxUnavailable(json!(1)));
    let kube = client(&fake);

    let plain = listed(&kube, "plain").await;
    assert_eq!(kube.evict(&plain, None).await.expect("an answer"), EvictionOutcome::Evicted);
    assert_eq!(evictions(&fake, "plain"), 1);
    let terminating = fake.get("pods", Some("default"), "plain").expect("terminating, not gone yet");
    assert!(terminating["metadata"]["deletionTimestamp"].is_string(), "{terminating}");
    // The fake keeps whole seconds, rounded up: gone within a second after its grace.
    fake.advance(chrono::Duration::seconds(4));
    assert!(fake.get("pods", Some("default"), "plain").is_none(), "gone after its own grace");
    assert_eq!(kube.evict(&plain, None).await.expect("an answer"), EvictionOutcome::Gone);

    // A grace given with the eviction replaces the pod's own (a fitted one, near the instance's end).
    fake.pod(PodSeed::new("default", "slow").on(NODE).grace(600));
    let slow = listed(&kube, "slow").await;
    assert_eq!(
        kube.evict(&slow, Some(Duration::from_millis(7500))).await.expect("an answer"),
        EvictionOutcome::Evicted
    );
    let stopping = fake.get("pods", Some("default"), "slow").expect("terminating");
    assert_eq!(stopping["metadata"]["deletionGracePeriodSeconds"], 8, "whole seconds, rounded up: {stopping}");

    let held = listed(&kube, "held").await;
    let started = std::time::Instant::now();
    match kube.evict(&held, None).await.expect("an answer") {
        EvictionOutcome::BlockedByPdb { message } => {
            assert_eq!(message, "Cannot evict pod as it would violate the pod's disruption budget.");
        }
        other => panic!("the PDB holds it: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2), "no silent retries: {:?}", started.elapsed());
    assert!(fake.get("pods", Some("default"), "held").is_some());

    let twice = listed(&kube, "twice").await;
    assert_eq!(kube.evict(&twice, None).await.expect("an answer"), EvictionOutcome::MultiplePdbs);

    // The uid is the precondition: a pod of the same name with another uid is left alone.
    let impostor = PodView { uid: "00000000-0000-0000-0000-000000000000".into(), ..held.clone() };
    assert_eq!(kube.evict(&impostor, None).await.expect("an answer"), EvictionOutcome::Changed);
    assert!(fake.get("pods", Some("default"), "held").is_some());
    assert_eq!(evictions(&fake, "held"), 2, "each ask is one request");
}

#[tokio::test]
async fn a_delete_with_grace_empties_the_pod_on_the_fakes_clock() {
    let fake = FakeKube::start().await;
    fake.node(NODE, "us-east-1a", INSTANCE);
    fake.pod(PodSeed::new("default", "held").on(NODE).label("app", "held").grace(30));
    fake.pdb("default", "held", &[("app", "held")], Budget::MinAvailable(json!(1)));
    let kube = client(&fake);
    let held = listed(&kube, "held").await;
    assert!(matches!(kube.evict(&held, None).await, Ok(EvictionOutcome::BlockedByPdb { .. })));

    let wrong = PodView { uid: "not-its-uid".into(), ..held.clone() };
    assert_eq!(kube.delete(&wrong, Duration::from_secs(7)).await.expect("an answer"), DeleteOutcome::Changed);
    assert_eq!(kube.delete(&held, Duration::from_millis(6_200)).await.expect("deleted"), DeleteOutcome::Deleting);
    let terminating = listed(&kube, "held").await;
    assert!(terminating.deletion.is_some(), "terminating, not gone: {terminating:?}");
    assert_eq!(drain::skip_reason(&terminating), Some(drain::Skip::Terminating));
    let pod = fake.get("pods", Some("default"), "held").expect("the pod");
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 7, "the grace rounded up to a whole second");

    fake.advance(chrono::Duration::seconds(6));
    assert!(fake.get("pods", Some("default"), "held").is_some(), "not before its grace");
    fake.advance(chrono::Duration::seconds(2));
    assert!(fake.get("pods", Some("default"), "held").is_none(), "gone after it (whole seconds, rounded up)");
    assert!(kube.pods_on(NODE).await.expect("listed").is_empty());
    assert_eq!(kube.delete(&held, Duration::from_secs(1)).await.expect("an answer"), DeleteOutcome::Gone);
}

#[tokio::test]
async fn a_refused_token_and_an_unreachable_server_are_told_apart() {
    let fake = FakeKube::start().await;
    fake.node(NODE, "us-east-1a", INSTANCE);
    let endpoint = Endpoint::try_from(fake.url.clone()).expect("an endpoint");

    // A token for another cluster: EKS (and the fake) refuse it.
    let foreign = KubeClient::new(&endpoint, &ca(&fake), &token(&fake, "another-cluster")).expect("a client");
    let refused = foreign.cordon(NODE).await.expect_err("refused");
    assert!(matches!(refused, KubeError::Unauthorized(_)), "{refused:?}");
    assert_eq!(refused.code(), Some(401));
    assert!(!refused.is_retryable(), "the same token will be refused again");
    assert!(fake.requests().iter().any(|r| r.status == 401 && r.refused.is_some()));
    let node = fake.get("nodes", None, NODE).expect("the node");
    assert!(node["spec"].get("unschedulable").is_none(), "nothing changed: {node}");

    // Nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let closed = Endpoint::try_from(format!("https://127.0.0.1:{port}")).expect("an endpoint");
    let nobody = KubeClient::new(&closed, &ca(&fake), &token(&fake, &fake.cluster)).expect("a client");
    let unreachable = nobody.pods_on(NODE).await.expect_err("nobody there");
    assert!(matches!(unreachable, KubeError::Unreachable(_)), "{unreachable:?}");
    assert!(unreachable.is_retryable());
    assert_eq!(unreachable.code(), None);
}
