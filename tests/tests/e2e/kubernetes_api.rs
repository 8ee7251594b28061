//! A group's `kubernetes` block through the API: registered (both kinds) and changed by PATCH
//! only when its cluster answers spotkeeper (the fake API server over HTTPS with its test CA,
//! EKS tokens checked; moto's EKS for `DescribeCluster`), shown with its CA in short, and refused
//! with a 422 that says why and writes nothing.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use spotkeeper::domain::{ClusterCa, Group, GroupName};
use spotkeeper_tests::kube::{CLUSTER, FakeKube, Options};
use spotkeeper_tests::{Harness, TOKEN};

/// The block that reaches `fake`: its cluster, endpoint and CA.
fn block(fake: &FakeKube) -> Value {
    json!({"cluster": fake.cluster, "endpoint": fake.url, "ca": fake.ca_pem})
}

/// The first certificate's SHA-256, as `openssl x509 -noout -fingerprint -sha256` prints it.
fn fingerprint(pem: &str) -> String {
    let ca = ClusterCa::try_from(pem.to_string()).expect("the test CA is PEM");
    Sha256::digest(&ca.der()[0]).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// An https endpoint on 127.0.0.1 where nothing listens.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let address = listener.local_addr().expect("its address");
    drop(listener);
    format!("https://{address}")
}

/// An https endpoint on 127.0.0.1 that takes connections and never answers (a black hole, as a
/// private endpoint behind a security group looks from outside); stops when the task drops.
async fn silent_port() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let address = listener.local_addr().expect("its address");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (format!("https://{address}"), task)
}

async fn stored(h: &Harness, name: &str) -> Option<Group> {
    h.deps.store.group(&GroupName::try_from(name.to_string()).expect("a name")).await.expect("the table read")
}

/// Node lists the fake answered 200 (each one an accepted token).
fn checks(fake: &FakeKube) -> usize {
    fake.requests().iter().filter(|r| r.uri.starts_with("/api/v1/nodes") && r.status == 200).count()
}

/// A refusal as the operator reads it: 422 on `kubernetes`, saying `why`, no token in it.
fn assert_refused(status: StatusCode, answer: &Value, why: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "kubernetes", "{answer}");
    assert_eq!(answer["error"]["code"], "cluster_unusable", "{answer}");
    let message = answer["error"]["message"].as_str().expect("a message");
    assert!(message.contains(why), "{why:?} not in {message:?}");
    assert!(!message.contains("Status {"), "the server's answer in words, not as a struct: {message}");
    assert!(!answer.to_string().contains("k8s-aws-v1"), "a token in the answer: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_registers_with_its_cluster_checked_and_shows_the_block() {
    let h = Harness::start().await;
    let fake = FakeKube::start().await;
    let pem = fake.ca_pem.clone().expect("HTTPS");

    let body = json!({"name": "workers", "kind": "asg", "asg_name": h.fleet.asg_name, "kubernetes": block(&fake)});
    let (status, registered) = h.call(Method::POST, "/groups", Some(TOKEN), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    assert_eq!(checks(&fake), 1, "one node list with an accepted token: {:?}", fake.requests());
    let expected = json!({
        "cluster": CLUSTER, "endpoint": fake.url, "rebalance": "cordon", "pdb_policy": "delete-at-deadline",
        "pod_grace": "fit", "ca": {"certificates": 1, "sha256": fingerprint(&pem)},
    });
    assert_eq!(registered["kubernetes"], expected, "{registered}");
    let shown = h.group("workers").await;
    assert_eq!(shown["kubernetes"], expected, "{shown}");
    assert!(!shown.to_string().contains("BEGIN CERTIFICATE"), "the PEM is not shown: {shown}");
    let (_, listed) = h.call(Method::GET, "/groups", Some(TOKEN), None).await;
    assert_eq!(listed["groups"][0]["kubernetes"], expected, "{listed}");
    let kept = stored(&h, "workers").await.expect("the group").kubernetes.expect("its block");
    assert_eq!(kept.ca.as_ref().map(ClusterCa::pem), Some(pem.as_str()), "the whole CA is kept");
    let line = shown["recent_events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == "group-registered")
        .map(|e| e["message"].to_string());
    assert!(line.as_deref().is_some_and(|l| l.contains(&format!("nodes of EKS cluster {CLUSTER}"))), "{shown}");

    // A standalone group too, with every setting given.
    let mut settings = block(&fake);
    settings["rebalance"] = json!("drain");
    settings["pdb_policy"] = json!("respect");
    settings["pod_grace"] = json!("own");
    let web = h.standalone("web").capacity(1).kubernetes(settings).register().await;
    assert_eq!(
        (&web["kubernetes"]["rebalance"], &web["kubernetes"]["pdb_policy"], &web["kubernetes"]["pod_grace"]),
        (&json!("drain"), &json!("respect"), &json!("own")),
        "{web}"
    );
    assert_eq!(checks(&fake), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_cannot_be_used_is_a_422_that_writes_nothing() {
    let h = Harness::start().await;
    let fake = FakeKube::start().await;
    let other = FakeKube::start().await;
    let elsewhere = FakeKube::start_with(Options { cluster: "another-cluster".into(), ..Options::default() }).await;
    h.eks_cluster("in-moto").await;
    let instances = h.instance_count().await;

    let mut closed = block(&fake);
    closed["endpoint"] = json!(closed_port().await);
    let mut wrong_ca = block(&fake);
    wrong_ca["ca"] = json!(other.ca_pem);
    // The token names spotkeeper-test; this server is another cluster's: it refuses the token.
    let mut wrong_cluster = block(&elsewhere);
    wrong_cluster["cluster"] = json!(CLUSTER);
    let cases = [
        (closed, "could not be reached (connection or TLS)"),
        (wrong_ca, "could not be reached (connection or TLS)"),
        (wrong_cluster, "refused the credentials (401)"),
        (json!({"cluster": "no-such-cluster"}), "EKS cluster no-such-cluster does not exist"),
        // moto's cluster has a placeholder CA: only DescribeCluster's answer could have said so.
        (json!({"cluster": "in-moto"}), "EKS cluster in-moto's description has a certificate authority"),
    ];
    for (kubernetes, why) in cases {
        let asg = json!({"name": "workers", "kind": "asg", "asg_name": h.fleet.asg_name, "kubernetes": kubernetes});
        let (status, answer) = h.call(Method::POST, "/groups", Some(TOKEN), Some(asg)).await;
        assert_refused(status, &answer, why);
        let (status, answer) = h.standalone("web").capacity(1).kubernetes(kubernetes.clone()).post().await;
        assert_refused(status, &answer, why);
        assert!(stored(&h, "workers").await.is_none() && stored(&h, "web").await.is_none(), "{kubernetes}");
    }
    assert_eq!(h.instance_count().await, instances, "nothing launched");
    assert_eq!(checks(&fake) + checks(&other) + checks(&elsewhere), 0);

    // A wrong CA says which certificate check failed.
    let mut wrong_ca = block(&fake);
    wrong_ca["ca"] = json!(other.ca_pem);
    let (_, answer) = h.standalone("web").kubernetes(wrong_ca).post().await;
    let message = answer["error"]["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(message.contains("certificate"), "{answer}");

    // A block that is malformed is a 400, before any cluster is tried.
    let (status, answer) =
        h.standalone("web").kubernetes(json!({"cluster": CLUSTER, "endpoint": fake.url})).post().await;
    assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("kubernetes")), "{answer}");
    assert!(answer["error"]["message"].as_str().is_some_and(|m| m.contains("together")), "{answer}");
    let (status, answer) =
        h.standalone("web").kubernetes(json!({"cluster": CLUSTER, "rebalance": "evict"})).post().await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["field"], "kubernetes.rebalance", "{answer}");
    assert!(stored(&h, "web").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_sets_changes_and_removes_the_block_and_an_unusable_one_changes_nothing() {
    let h = Harness::start().await;
    let fake = FakeKube::start().await;
    let (status, registered) = h.register_workers().await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    assert!(registered.get("kubernetes").is_none(), "{registered}");

    let (status, patched) = h.patch("workers", json!({"kubernetes": block(&fake)})).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["kubernetes"]["cluster"], CLUSTER, "{patched}");
    assert_eq!(patched["kubernetes"]["rebalance"], "cordon");
    assert_eq!(checks(&fake), 1);

    let mut drain = block(&fake);
    drain["rebalance"] = json!("drain");
    let (status, patched) = h.patch("workers", json!({"kubernetes": drain, "fallback": false})).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!((&patched["kubernetes"]["rebalance"], &patched["policy"]["fallback"]), (&json!("drain"), &json!(false)));
    let before = stored(&h, "workers").await.expect("the group");

    // Unreachable: refused, and the policy change beside it is not made either.
    let mut closed = block(&fake);
    closed["endpoint"] = json!(closed_port().await);
    let (status, answer) = h.patch("workers", json!({"kubernetes": closed, "fallback": true})).await;
    assert_refused(status, &answer, "could not be reached");
    let after = stored(&h, "workers").await.expect("the group");
    assert_eq!(after, before, "nothing changed, the version included");

    // A server that never answers is given up on in time for the API's 30 s.
    let (silent, task) = silent_port().await;
    let mut hung = block(&fake);
    hung["endpoint"] = json!(silent);
    let started = std::time::Instant::now();
    let (status, answer) = h.patch("workers", json!({"kubernetes": hung})).await;
    task.abort();
    assert_refused(status, &answer, "did not answer within 10 s");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "{:?}", started.elapsed());
    assert_eq!(stored(&h, "workers").await.expect("the group"), before);

    let shown = h.group("workers").await;
    let lines: Vec<String> = shown["recent_events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "policy-changed")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("kubernetes.cluster: unset → {CLUSTER}")) && l.contains("kubernetes.ca: set")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("kubernetes.rebalance: cordon → drain")), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains("BEGIN")), "{lines:?}");

    let (status, answer) = h.patch("workers", json!({"kubernetes": {"cluster": CLUSTER, "ca": fake.ca_pem}})).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("kubernetes")), "{answer}");

    let (status, patched) = h.patch("workers", json!({"kubernetes": null})).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert!(patched.get("kubernetes").is_none(), "{patched}");
    let removed = stored(&h, "workers").await.expect("the group");
    assert_eq!((removed.kubernetes, removed.version), (None, before.version + 1));
    assert_eq!(checks(&fake), 2, "removing checks nothing");

    // A PATCH without the block leaves it as it is.
    let (status, _) = h.patch("workers", json!({"kubernetes": block(&fake)})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, patched) = h.patch("workers", json!({"rebalance": "off"})).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["kubernetes"]["cluster"], CLUSTER, "{patched}");
}
