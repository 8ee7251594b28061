//! A cluster's Fargate profiles as spotkeeper reads them (`Clusters::fargate_selectors`, through
//! the fault proxy to moto's EKS): one selector each of the ACTIVE profiles, every page of the
//! list, and the errors told apart. The harness's `fargate_profile` puts a profile in moto and in
//! the fake API server's Fargate scheduler at once.

use std::collections::BTreeMap;

use aws_sdk_eks::types::FargateProfileSelector;
use spotkeeper::adapters::kubernetes::ConnectError;
use spotkeeper::domain::{ClusterName, FargateSelector};
use spotkeeper_tests::Harness;
use spotkeeper_tests::kube::{FakeKube, PodSeed};
use spotkeeper_tests::proxy::Fault;

const LABEL: (&str, &str) = ("spotkeeper.io/compute", "fargate");

fn cluster(name: &str) -> ClusterName {
    ClusterName::try_from(name.to_string()).expect("a cluster name")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

/// A profile made straight in moto with these selectors.
async fn profile(h: &Harness, cluster: &str, name: &str, selectors: &[(&str, &[(&str, &str)])]) {
    let mut create = aws_sdk_eks::Client::new(&h.sdk)
        .create_fargate_profile()
        .cluster_name(cluster)
        .fargate_profile_name(name)
        .pod_execution_role_arn("arn:aws:iam::123456789012:role/spotkeeper-fargate-pods")
        .subnets(h.fleet.subnet_a.clone());
    for (namespace, pairs) in selectors {
        create = create.selectors(
            FargateProfileSelector::builder()
                .namespace(*namespace)
                .set_labels(Some(labels(pairs).into_iter().collect()))
                .build(),
        );
    }
    create.send().await.expect("CreateFargateProfile");
}

/// What EKS answers for a cluster or profile that does not exist (REST-JSON, the code in a header).
fn not_found(message: &str) -> Fault {
    Fault::answer(404, "application/json", format!(r#"{{"message":"{message}"}}"#)).with_header(
        "x-amzn-errortype",
        "ResourceNotFoundException:http://internal.amazon.com/coral/com.amazonaws.eks/",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_profiles_are_read_back_one_selector_each() {
    let h = Harness::start().await;
    let fake = FakeKube::start().await;
    // The harness's helper: the cluster made in moto, the profile in moto and in the fake.
    let failover = h.fargate_profile(&fake, "shop", &[LABEL]).await;
    profile(&h, &fake.cluster, "system", &[("kube-system", &[]), ("batch-*", &[("tier", "job-?")])]).await;

    let mut selectors = h.deps.clusters.fargate_selectors(&cluster(&fake.cluster)).await.expect("the profiles read");
    selectors.sort_by(|a, b| (&a.profile, &a.namespace).cmp(&(&b.profile, &b.namespace)));
    let selector = |profile: &str, namespace: &str, pairs: &[(&str, &str)]| FargateSelector {
        profile: profile.to_string(),
        namespace: namespace.to_string(),
        labels: labels(pairs),
    };
    let mut expected = vec![
        selector(&failover, "shop", &[LABEL]),
        selector("system", "batch-*", &[("tier", "job-?")]),
        selector("system", "kube-system", &[]),
    ];
    expected.sort_by(|a, b| (&a.profile, &a.namespace).cmp(&(&b.profile, &b.namespace)));
    assert_eq!(selectors, expected);
    assert_eq!(h.proxy.count(&format!("GET /clusters/{}/fargate-profiles", fake.cluster)), 1, "one page");

    // What a failover asks of them: a profile for the namespace and the label, or none.
    let selects =
        |namespace: &str, pairs: &[(&str, &str)]| selectors.iter().any(|s| s.selects(namespace, &labels(pairs)));
    assert!(selects("shop", &[LABEL, ("app", "web")]));
    assert!(!selects("shop", &[("app", "web")]), "the label missing");
    assert!(!selects("cart", &[LABEL]), "no profile for the namespace");
    assert!(selects("batch-eu", &[("tier", "job-1")]), "wildcards, as EKS reads them");

    // The fake's Fargate scheduler has the same profile: the labelled pod gets a Fargate node.
    fake.namespace("shop");
    fake.pod(PodSeed::new("shop", "web-0").label(LABEL.0, LABEL.1));
    fake.pod(PodSeed::new("shop", "web-1"));
    let node_of = |pod: &str| {
        fake.get("pods", Some("shop"), pod).and_then(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
    };
    assert!(node_of("web-0").is_some_and(|n| n.starts_with("fargate-ip-")), "{:?}", node_of("web-0"));
    assert!(!node_of("web-1").is_some_and(|n| n.starts_with("fargate-ip-")), "unlabelled: not Fargate");

    // A cluster without profiles: none, not an error.
    h.eks_cluster("bare").await;
    assert!(h.deps.clusters.fargate_selectors(&cluster("bare")).await.expect("listed").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_the_list_is_read() {
    let h = Harness::start().await;
    h.eks_cluster("big").await;
    // moto pages at 100 names, as EKS does by default.
    for i in 0..101 {
        profile(&h, "big", &format!("p{i:03}"), &[(&format!("ns-{i}"), &[])]).await;
    }
    let selectors = h.deps.clusters.fargate_selectors(&cluster("big")).await.expect("the profiles read");
    assert_eq!(selectors.len(), 101);
    assert!(selectors.iter().any(|s| s.profile == "p100" && s.namespace == "ns-100"), "the second page's");
    assert_eq!(h.proxy.count("GET /clusters/big/fargate-profiles"), 2, "two pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_cluster_is_final_and_a_failing_eks_retryable() {
    let h = Harness::start().await;
    // moto answers ListFargateProfiles for an unknown cluster with a 500 (a KeyError): the proxy
    // gives EKS's own answer.
    h.proxy.on(|call| {
        (call.operation == "GET /clusters/no-such-cluster/fargate-profiles")
            .then(|| not_found("No cluster found for name: no-such-cluster."))
    });
    let missing = h.deps.clusters.fargate_selectors(&cluster("no-such-cluster")).await.expect_err("no cluster");
    assert!(matches!(missing, ConnectError::NoSuchCluster(_)), "{missing:?}");
    assert!(!missing.is_retryable());
    assert_eq!(missing.to_string(), "EKS cluster no-such-cluster does not exist in this account and region");
    h.proxy.clear_rules();

    // A profile deleted between the list and its description selects nothing; the others count.
    h.eks_cluster("prod").await;
    profile(&h, "prod", "going", &[("shop", &[LABEL])]).await;
    profile(&h, "prod", "staying", &[("cart", &[LABEL])]).await;
    h.proxy.on(|call| {
        (call.operation == "GET /clusters/prod/fargate-profiles/going")
            .then(|| not_found("No Fargate Profile found with name: going."))
    });
    let selectors = h.deps.clusters.fargate_selectors(&cluster("prod")).await.expect("the profiles read");
    let names: Vec<&str> = selectors.iter().map(|s| s.profile.as_str()).collect();
    assert_eq!(names, ["staying"]);
    h.proxy.clear_rules();

    // EKS failing (a 500 on every attempt): worth a retry, and the error names the call.
    h.proxy.on(|call| {
        (call.operation == "GET /clusters/prod/fargate-profiles/staying").then(|| {
            Fault::answer(500, "application/json", r#"{"message":"Internal failure."}"#.to_string())
                .with_header("x-amzn-errortype", "ServerException:http://internal.amazon.com/coral/com.amazonaws.eks/")
        })
    });
    let failing = h.deps.clusters.fargate_selectors(&cluster("prod")).await.expect_err("EKS failing");
    assert!(failing.is_retryable(), "{failing:?}");
    let source = std::error::Error::source(&failing).map(ToString::to_string).unwrap_or_default();
    assert!(source.starts_with("DescribeFargateProfile failed: ServerException"), "{source}");
}
