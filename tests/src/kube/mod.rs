//! A fake Kubernetes API server, owned by the project and proven against the real `kubectl`
//! (tests/tests/e2e/kubectl.rs): HTTPS on 127.0.0.1 with a per-start test CA (or plain HTTP, to
//! sit behind the fault proxy), EKS-style bearer tokens, and the API server's behaviour where
//! spotkeeper depends on it. The scheduler (and EKS's Fargate scheduler), kubelet, disruption,
//! Deployment, ReplicaSet and EndpointSlice controllers run to the fake's clock, which the test
//! controls (`controllers.rs`); watches are long polls (`watch.rs`).

pub mod api;
pub mod auth;
pub mod controllers;
pub mod patch;
pub mod selector;
pub mod store;
pub mod tls;
mod watch;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use spotkeeper::clock::Clock;

use crate::clock::TestClock;
pub use store::{ApiError, KINDS, Kind, Store};

/// The cluster name the tests use unless they say otherwise.
pub const CLUSTER: &str = "spotkeeper-test";

/// A ReplicaSet's replicas and its `deployment.kubernetes.io/revision` (-1 and "" when unset).
pub fn replicas_and_revision(rs: &Value) -> (i64, String) {
    (
        rs["spec"]["replicas"].as_i64().unwrap_or(-1),
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str().unwrap_or_default().to_string(),
    )
}

/// One request as the fake answered it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub content_type: String,
    /// What the client asked to get back (kubectl asks for aggregated discovery first).
    pub accept: String,
    pub status: u16,
    /// Why a token was refused, when it was.
    pub refused: Option<String>,
    /// When it was answered, in real time (the request rate a client keeps is real time).
    pub at: std::time::Instant,
}

/// How to start the fake.
pub struct Options {
    pub cluster: String,
    /// HTTPS with a test CA (`true`), or plain HTTP (to be reached through the fault proxy).
    pub tls: bool,
    /// Check EKS tokens (`true`), or take any request.
    pub auth: bool,
    /// The fake's clock; a fresh `TestClock` when `None`.
    pub clock: Option<Arc<dyn Clock>>,
}

impl Default for Options {
    fn default() -> Self {
        Self { cluster: CLUSTER.to_string(), tls: true, auth: true, clock: None }
    }
}

struct Inner {
    store: Mutex<Store>,
    clock: Arc<dyn Clock>,
    cluster: String,
    auth: bool,
    /// Access key id → secret: the identities the fake's STS knows.
    secrets: Mutex<HashMap<String, String>>,
    log: Mutex<Vec<Logged>>,
    interlopers: Mutex<Vec<Interloper>>,
}

/// Another writer's change, made just before the next PUT or PATCH of one object is served.
struct Interloper {
    plural: &'static str,
    namespace: Option<String>,
    name: String,
    change: Box<dyn FnOnce(&mut Value) + Send>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock has failed already; the data is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running fake API server; it stops on drop.
pub struct FakeKube {
    /// `https://127.0.0.1:<port>` (or `http://` without TLS).
    pub url: String,
    pub cluster: String,
    /// The test CA (PEM) the server's certificate is signed by; `None` without TLS.
    pub ca_pem: Option<String>,
    /// The fake's clock, when it made its own.
    pub test_clock: Option<Arc<TestClock>>,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The credentials the tests sign with (the harness's AWS environment uses the same).
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";

impl FakeKube {
    /// HTTPS, tokens checked, cluster `spotkeeper-test`, its own test clock.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let (clock, test_clock): (Arc<dyn Clock>, Option<Arc<TestClock>>) = match options.clock {
            Some(c) => (c, None),
            None => {
                let c = Arc::new(TestClock::starting_now());
                (c.clone(), Some(c))
            }
        };
        let inner = Arc::new(Inner {
            store: Mutex::new(Store::new()),
            clock,
            cluster: options.cluster.clone(),
            auth: options.auth,
            secrets: Mutex::new(HashMap::from([(ACCESS_KEY.to_string(), SECRET_KEY.to_string())])),
            log: Mutex::new(Vec::new()),
            interlopers: Mutex::new(Vec::new()),
        });
        {
            let now = inner.clock.now();
            let mut store = lock(&inner.store);
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let _ = store.create(&KINDS[0], None, json!({"metadata": {"name": ns}}), now, false);
            }
        }
        let router = Router::new().fallback(serve).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port on 127.0.0.1");
        let address = listener.local_addr().expect("the fake API server's address");
        let (url, ca_pem, task) = if options.tls {
            let ca = tls::TestCa::generate();
            let acceptor = tokio_rustls::TlsAcceptor::from(ca.server.clone());
            let task = tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else { continue };
                    let acceptor = acceptor.clone();
                    let service = TowerToHyperService::new(router.clone());
                    tokio::spawn(async move {
                        // A client that gives up during the handshake is its own business.
                        let Ok(stream) = acceptor.accept(tcp).await else { return };
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            (format!("https://{address}"), Some(ca.ca_pem), task)
        } else {
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            });
            (format!("http://{address}"), None, task)
        };
        Self { url, cluster: options.cluster, ca_pem, test_clock, inner, task }
    }

    /// Lets tokens signed with this key pair in (an identity the fake's STS knows).
    pub fn allow_credentials(&self, access_key: &str, secret: &str) {
        lock(&self.inner.secrets).insert(access_key.to_string(), secret.to_string());
    }

    /// Forgets an identity: its tokens are refused (401) from the next request on.
    pub fn revoke_credentials(&self, access_key: &str) {
        lock(&self.inner.secrets).remove(access_key);
    }

    /// Moves the fake's own clock (and so its kubelet and controllers).
    pub fn advance(&self, by: chrono::Duration) {
        self.test_clock.as_ref().expect("the fake runs on its own test clock").advance(by);
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The world, settled to the fake's now.
    fn store(&self) -> MutexGuard<'_, Store> {
        let now = self.inner.clock.now();
        let mut store = lock(&self.inner.store);
        store.settle(now);
        store
    }

    /// One object, as the API would answer it now.
    pub fn get(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let kind = store::kind(plural).expect("a resource the fake serves");
        self.store().get(kind, namespace, name).ok()
    }

    /// Every object of a resource, in every namespace.
    pub fn all(&self, plural: &str) -> Vec<Value> {
        let kind = store::kind(plural).expect("a resource the fake serves");
        self.store().all(kind)
    }

    /// The names (`namespace/name`) of the pods on a node now.
    pub fn pods_on(&self, node: &str) -> Vec<String> {
        self.all("pods")
            .iter()
            .filter(|p| p["spec"]["nodeName"] == node)
            .map(|p| {
                format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap_or_default(),
                    p["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    /// The store's resourceVersion now.
    pub fn resource_version(&self) -> u64 {
        self.store().resource_version()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.inner.log).clone()
    }

    /// Creates an object as seeding (its status kept), in `namespace` when namespaced.
    pub fn seed(&self, plural: &str, namespace: Option<&str>, object: Value) -> Value {
        let kind = store::kind(plural).expect("a resource the fake serves");
        let now = self.inner.clock.now();
        let mut store = self.store();
        store.create(kind, namespace, object, now, false).unwrap_or_else(|e| panic!("seeding {plural}: {}", e.message))
    }

    /// Changes an object in place, as a controller would (the resourceVersion moves).
    pub fn modify(&self, plural: &str, namespace: Option<&str>, name: &str, change: impl FnOnce(&mut Value)) -> Value {
        let kind = store::kind(plural).expect("a resource the fake serves");
        modify_in(&mut self.store(), kind, namespace, name, change).unwrap_or_else(|e| panic!("{}", e.message))
    }

    /// Another writer, racing the client: the next time a PUT or PATCH of this object (or its
    /// status) arrives, `change` is made first, as [`FakeKube::modify`] makes it (the
    /// resourceVersion moves), then the request is served. A client that read the object and
    /// writes with its `metadata.resourceVersion` gets 409 Conflict; one that writes without it
    /// goes through on top of the change. Each call arms one write.
    pub fn before_next_write(
        &self,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
        change: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        let kind = store::kind(plural).expect("a resource the fake serves");
        lock(&self.inner.interlopers).push(Interloper {
            plural: kind.plural,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
            change: Box::new(change),
        });
    }

    /// A namespace (the four Kubernetes makes exist from the start).
    pub fn namespace(&self, name: &str) -> Value {
        self.seed("namespaces", None, json!({"metadata": {"name": name}}))
    }

    /// A Ready EKS worker node for an EC2 instance, found by its `spec.providerID`
    /// (`aws:///<az>/<instance-id>`) or its private DNS name.
    pub fn node(&self, name: &str, az: &str, instance_id: &str) -> Value {
        let now = store::timestamp(self.inner.clock.now());
        let region = az.trim_end_matches(|c: char| c.is_ascii_lowercase());
        self.seed(
            "nodes",
            None,
            json!({
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                    "topology.kubernetes.io/zone": az, "topology.kubernetes.io/region": region,
                    "node.kubernetes.io/instance-type": "m5.large", "eks.amazonaws.com/capacityType": "SPOT",
                }},
                "spec": {"providerID": format!("aws:///{az}/{instance_id}")},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
                    "addresses": [{"type": "InternalIP", "address": "10.0.1.10"}, {"type": "Hostname", "address": name}, {"type": "InternalDNS", "address": name}],
                    "nodeInfo": {"kubeletVersion": "v1.37.0-eks", "containerRuntimeVersion": "containerd://2.1.0", "architecture": "amd64", "operatingSystem": "linux"},
                    "allocatable": {"cpu": "2", "memory": "7Gi", "pods": "110"},
                    "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
                },
            }),
        )
    }

    /// A DaemonSet (its pods get it as controller with [`PodSeed::daemonset`]).
    pub fn daemonset(&self, namespace: &str, name: &str) -> Value {
        self.get("daemonsets", Some(namespace), name).unwrap_or_else(|| {
            self.seed("daemonsets", Some(namespace), json!({
                "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
                "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": name}}, "template": {"metadata": {"labels": {"app.kubernetes.io/name": name}}, "spec": {"containers": [{"name": name, "image": format!("{name}:1")}]}}},
            }))
        })
    }

    /// A ReplicaSet of `replicas` (its pods get it as controller with [`PodSeed::replicaset`]).
    pub fn replicaset(&self, namespace: &str, name: &str, replicas: i64) -> Value {
        self.get("replicasets", Some(namespace), name).unwrap_or_else(|| {
            self.seed("replicasets", Some(namespace), json!({
                "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}, "template": {"metadata": {"labels": {"app.kubernetes.io/name": name}}, "spec": {"containers": [{"name": name, "image": format!("{name}:1")}]}}},
            }))
        })
    }

    /// A PodDisruptionBudget over the pods with these labels.
    pub fn pdb(&self, namespace: &str, name: &str, match_labels: &[(&str, &str)], budget: Budget) -> Value {
        let labels: serde_json::Map<String, Value> =
            match_labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let mut spec = json!({"selector": {"matchLabels": labels}});
        match budget {
            Budget::MinAvailable(v) => spec["minAvailable"] = v,
            Budget::MaxUnavailable(v) => spec["maxUnavailable"] = v,
        }
        self.seed("poddisruptionbudgets", Some(namespace), json!({"metadata": {"name": name}, "spec": spec}))
    }

    /// An EKS Fargate profile selecting the pods of `namespace` that carry all of `labels`: the
    /// fake's Fargate scheduler gives each such pod a `fargate-ip-…` node of its own. Returns the
    /// profile's name (`fp-<namespace>-<n>`).
    pub fn fargate_profile(&self, namespace: &str, labels: &[(&str, &str)]) -> String {
        let mut store = self.store();
        let name = format!("fp-{namespace}-{}", store.sim.profiles.len() + 1);
        store.sim.profiles.push(controllers::FargateProfile {
            name: name.clone(),
            namespace: namespace.to_string(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        });
        name
    }

    /// Deletes the fake's Fargate profiles (EKS still lists its own): pods they would have
    /// selected stay Pending, as on a cluster whose profile is gone.
    pub fn delete_fargate_profiles(&self) {
        self.store().sim.profiles.clear();
    }

    /// A Deployment of `replicas` pods labelled `app.kubernetes.io/name: <name>` (defaults:
    /// RollingUpdate 25%/25%, a 600 s progress deadline); its controller makes the ReplicaSet
    /// and the pods on the next request or settle. Change it with [`FakeKube::modify`].
    pub fn deployment(&self, namespace: &str, name: &str, replicas: i64) -> Value {
        self.seed(
            "deployments",
            Some(namespace),
            json!({
                "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                    "template": {
                        "metadata": {"labels": {"app.kubernetes.io/name": name}},
                        "spec": {"containers": [{"name": name, "image": "public.ecr.aws/nginx/nginx:1.29", "ports": [{"name": "http", "containerPort": 8080}]}]},
                    },
                },
            }),
        )
    }

    /// A ClusterIP Service over the pods with these labels (port 80 to the pods' 8080); the
    /// EndpointSlice controller follows its pods.
    pub fn service(&self, namespace: &str, name: &str, selector: &[(&str, &str)]) -> Value {
        let selector: serde_json::Map<String, Value> =
            selector.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        self.seed(
            "services",
            Some(namespace),
            json!({"metadata": {"name": name}, "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        )
    }

    /// The ready endpoints of a Service's EndpointSlices now (`conditions.ready`).
    pub fn ready_endpoints(&self, namespace: &str, service: &str) -> usize {
        self.all("endpointslices")
            .iter()
            .filter(|s| {
                s["metadata"]["namespace"] == namespace
                    && s["metadata"]["labels"]["kubernetes.io/service-name"] == service
            })
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == true)
            .count()
    }

    /// From now on, the fewest ready endpoints the Service has at any instant the controllers
    /// settle (every pod start, stop and rollout step on the clock) is kept.
    pub fn watch_endpoints(&self, namespace: &str, service: &str) {
        let now = self.ready_endpoints(namespace, service);
        self.store().sim.fewest_ready.insert((namespace.to_string(), service.to_string()), now);
    }

    /// The fewest ready endpoints the watched Service had since `watch_endpoints`.
    pub fn fewest_ready_endpoints(&self, namespace: &str, service: &str) -> Option<usize> {
        self.store().sim.fewest_ready.get(&(namespace.to_string(), service.to_string())).copied()
    }

    /// A pod, as seeded (it starts on the next request or settle, as a kubelet would start it).
    pub fn pod(&self, seed: PodSeed) -> Value {
        let mut labels: serde_json::Map<String, Value> =
            seed.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let mut metadata = json!({"name": seed.name});
        let mut annotations = serde_json::Map::new();
        let owner = match &seed.owner {
            Owner::None => None,
            Owner::ReplicaSet(rs) => {
                let rs = self.replicaset(&seed.namespace, rs, 1);
                for (k, v) in rs["spec"]["selector"]["matchLabels"].as_object().cloned().unwrap_or_default() {
                    labels.entry(k).or_insert(v);
                }
                Some(("apps/v1", "ReplicaSet", rs))
            }
            Owner::DaemonSet(ds) => {
                let ds = self.daemonset(&seed.namespace, ds);
                for (k, v) in ds["spec"]["selector"]["matchLabels"].as_object().cloned().unwrap_or_default() {
                    labels.entry(k).or_insert(v);
                }
                Some(("apps/v1", "DaemonSet", ds))
            }
            Owner::Mirror => {
                // A static pod's mirror: the kubelet marks it and makes its node the owner.
                annotations
                    .insert("kubernetes.io/config.mirror".into(), json!(format!("{:x}", seed.name.len() * 7919)));
                annotations.insert("kubernetes.io/config.source".into(), json!("file"));
                let node = seed.node.as_deref().and_then(|n| self.get("nodes", None, n));
                node.map(|n| ("v1", "Node", n))
            }
        };
        if let Some((api_version, kind, owner)) = owner {
            metadata["ownerReferences"] = json!([{
                "apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                "controller": true, "blockOwnerDeletion": true,
            }]);
        }
        metadata["labels"] = Value::Object(labels);
        if !annotations.is_empty() {
            metadata["annotations"] = Value::Object(annotations);
        }
        let mut spec = json!({
            "containers": [{"name": "main", "image": "public.ecr.aws/docker/library/busybox:1.37"}],
            "terminationGracePeriodSeconds": seed.grace,
        });
        if let Some(node) = &seed.node {
            spec["nodeName"] = json!(node);
        }
        if seed.empty_dir {
            spec["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
            spec["containers"][0]["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"}]);
        }
        let mut pod = json!({"metadata": metadata, "spec": spec});
        if let Some(phase) = &seed.phase {
            pod["status"] = json!({"phase": phase});
        }
        self.seed("pods", Some(&seed.namespace), pod)
    }

    /// A kubeconfig for this server (its CA, when TLS) with `token` as the user's bearer token.
    pub fn kubeconfig(&self, token: &str) -> String {
        let ca = self
            .ca_pem
            .as_ref()
            .map(|pem| format!("    certificate-authority-data: {}\n", STANDARD.encode(pem)))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {c}\n  cluster:\n    server: {url}\n{ca}contexts:\n- name: {c}\n  context:\n    cluster: {c}\n    user: spotkeeper\ncurrent-context: {c}\nusers:\n- name: spotkeeper\n  user:\n    token: {token}\n",
            c = self.cluster,
            url = self.url,
        )
    }
}

/// A PodDisruptionBudget's budget: a number (`json!(1)`) or a percentage (`json!("50%")`).
pub enum Budget {
    MinAvailable(Value),
    MaxUnavailable(Value),
}

/// Who runs a seeded pod.
#[derive(Debug, Clone)]
pub enum Owner {
    /// No controller (kubectl drain refuses these without --force).
    None,
    ReplicaSet(String),
    DaemonSet(String),
    /// A static pod's mirror (annotation `kubernetes.io/config.mirror`).
    Mirror,
}

/// A pod to seed.
#[derive(Debug, Clone)]
pub struct PodSeed {
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    pub labels: Vec<(String, String)>,
    pub owner: Owner,
    pub grace: i64,
    pub empty_dir: bool,
    /// A phase to start in (`Succeeded`, `Failed`, `Running`...); Pending (then started) if not.
    pub phase: Option<String>,
}

impl PodSeed {
    /// A pod owned by a ReplicaSet named after it, with a 1-second grace period.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            node: None,
            labels: Vec::new(),
            owner: Owner::ReplicaSet(format!("{name}-rs")),
            grace: 1,
            empty_dir: false,
            phase: None,
        }
    }

    pub fn on(mut self, node: &str) -> Self {
        self.node = Some(node.to_string());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }

    pub fn replicaset(mut self, name: &str) -> Self {
        self.owner = Owner::ReplicaSet(name.to_string());
        self
    }

    pub fn daemonset(mut self, name: &str) -> Self {
        self.owner = Owner::DaemonSet(name.to_string());
        self
    }

    pub fn mirror(mut self) -> Self {
        self.owner = Owner::Mirror;
        self
    }

    pub fn unowned(mut self) -> Self {
        self.owner = Owner::None;
        self
    }

    pub fn grace(mut self, seconds: i64) -> Self {
        self.grace = seconds;
        self
    }

    pub fn empty_dir(mut self) -> Self {
        self.empty_dir = true;
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.phase = Some(phase.to_string());
        self
    }
}

/// Changes an object in the store as a controller would: the whole object, then its status if
/// the change touched it (each write moves the resourceVersion).
fn modify_in(
    store: &mut Store,
    kind: &Kind,
    namespace: Option<&str>,
    name: &str,
    change: impl FnOnce(&mut Value),
) -> Result<Value, ApiError> {
    let mut object = store.get(kind, namespace, name)?;
    change(&mut object);
    let status = object.get("status").cloned();
    let updated = store.update(kind, namespace, name, object, false)?;
    match status {
        Some(status) if updated.get("status") != Some(&status) => {
            let mut with_status = updated;
            with_status["status"] = status;
            store.update(kind, namespace, name, with_status, true)
        }
        _ => Ok(updated),
    }
}

/// Makes the first armed change for the object this request writes, if any, before it is served.
fn interlope(inner: &Inner, store: &mut Store, method: &str, path: &str) {
    let Some((kind, namespace, name)) = api::written(method, path) else { return };
    let change = {
        let mut armed = lock(&inner.interlopers);
        let at =
            armed.iter().position(|i| i.plural == kind.plural && i.namespace.as_deref() == namespace && i.name == name);
        at.map(|at| armed.remove(at).change)
    };
    if let Some(change) = change {
        // An object that is not there: the request itself answers 404.
        let _ = modify_in(store, kind, namespace, name, change);
    }
}

/// The one handler: authenticate, settle the world to now, answer.
async fn serve(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let content_type = header("content-type");
    let now = inner.clock.now();
    let refused = if inner.auth {
        let token = header("authorization");
        match token.strip_prefix("Bearer ") {
            Some(token) => auth::verify(token.trim(), &inner.cluster, now, &lock(&inner.secrets)).err(),
            None => Some("no bearer token".to_string()),
        }
    } else {
        None
    };
    let watching = refused.is_none() && parts.method == "GET" && watch::requested(parts.uri.query());
    let (status, body) = match &refused {
        Some(_) => (401, ApiError::unauthorized().status().to_string()),
        None if watching => watch::answer(&inner, parts.uri.path(), parts.uri.query()).await,
        None => {
            let query: HashMap<String, String> =
                form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
            let request = api::ApiRequest {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query,
                content_type: &content_type,
                body: &bytes,
            };
            let mut store = lock(&inner.store);
            store.settle(now);
            interlope(&inner, &mut store, parts.method.as_str(), parts.uri.path());
            let (status, body) = api::handle(&mut store, now, &request);
            (status, body.to_string())
        }
    };
    lock(&inner.log).push(Logged {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        content_type,
        accept: header("accept"),
        status,
        refused,
        at: std::time::Instant::now(),
    });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
