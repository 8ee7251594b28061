//! A mass interruption of EKS nodes: fifty nodes of one Auto Scaling group warned at once, their
//! warnings delivered by the node-drain queue (batches of the template's `BatchSize`, invocations
//! side by side sharing one process's clusters, so one request limiter), the fake API server
//! reached over TLS through the fault proxy, which fails a fifth of the calls as an API server
//! does: 500s and 503s, 429s with `Retry-After`, connections dropped before or after the work.
//!
//! Every node is cordoned within 5 s of the events (real time: the request rate is real time),
//! no pod is evicted twice, every pod that may leave has left or is reported left, every warning
//! ends in a drain record, and the client never sent more than its burst plus its rate.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spotkeeper::adapters::kubernetes::limit::{BURST, QPS};
use spotkeeper::domain::{DrainState, InstanceId};
use spotkeeper_tests::kube::{FakeKube, Options, PodSeed};
use spotkeeper_tests::queue::{self, QueueSettings};
use spotkeeper_tests::{FaultProxy, Harness, events, mass};

/// The seed of the fault draws.
const SEED: u64 = 0x0d2a_1e55;
const FAULT_RATE: f64 = 0.2;
const NODES: u32 = 50;
/// Plain pods a node (a ReplicaSet's), besides its DaemonSet pod.
const PLAIN: usize = 4;
/// The Lambda invocations side by side: the event source's first pollers.
const POLLERS: usize = 5;
/// From the events to the last cordon.
const CORDONED_WITHIN: Duration = Duration::from_secs(5);
/// Requests the limiter let go at once may reach the server a little apart: this many more in a
/// window are jitter, not a broken limit.
const JITTER: f64 = 5.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_nodes_warned_at_once_are_cordoned_within_seconds_and_drained_once_under_faults() {
    spotkeeper_tests::announce(
        "drain_load: 50 nodes warned at once, a fifth of the API server's calls failing",
        "under a minute",
    );
    let started = Instant::now();
    let h = Harness::start().await;
    let fake = FakeKube::start_with(Options { tls: false, clock: Some(h.clock.clone()), ..Options::default() }).await;
    let proxy = FaultProxy::start_tls(&fake.url).await;

    // One Auto Scaling group of fifty, registered, draining on the fake through the proxy.
    let groups = mass::build(&h, 0, 1, NODES).await.unwrap_or_else(|e| panic!("{e}"));
    let group = &groups[0];
    assert_eq!(group.members.len(), NODES as usize);
    // Set through the API, which checks the cluster through the proxy's TLS front as it would EKS.
    let spec = json!({"cluster": fake.cluster, "endpoint": proxy.endpoint, "ca": proxy.ca_pem});
    let (status, patched) = h.patch(&group.name, json!({"kubernetes": spec})).await;
    assert_eq!(status, 200, "the cluster checked and the block set: {patched}");

    // Each instance an EKS node (named after its private DNS name), with four plain pods and a
    // DaemonSet's pod.
    let nodes = seed_nodes(&h, &fake, &group.members).await;
    fake.namespace("shop");
    let mut evictable: Vec<(String, String)> = Vec::new();
    for (n, node) in nodes.values().enumerate() {
        fake.pod(PodSeed::new("kube-system", &format!("aws-node-{n}")).daemonset("aws-node").on(node));
        for p in 0..PLAIN {
            let name = format!("web-{n}-{p}");
            fake.pod(PodSeed::new("shop", &name).replicaset("web").label("app", "web").on(node));
            evictable.push((node.clone(), name));
        }
    }
    h.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(fake.all("pods").len(), nodes.len() * (PLAIN + 1));
    println!("fleet and cluster seeded in {:?}", started.elapsed());

    let settings = QueueSettings::node_drain().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settings.batch_size, 10, "the template's BatchSize");
    let warnings: Vec<Value> = group.members.iter().map(|id| h.now_on(events::spot_warning(id))).collect();
    let before = fake.requests().len();
    proxy.kube_chaos(FAULT_RATE, SEED);
    // The request limiter waits in real time; the drains' waits (and the fake's kubelet) must
    // too, or sleepers sharing simulated time race the clock past the warning's end while
    // others wait their turn to send.
    h.clock.run_in_real_time();
    let clock_then = spotkeeper::clock::Clock::now(h.clock.as_ref());
    let warned = Instant::now();
    let delivered = queue::deliver(&h, warnings, &settings, POLLERS, |batch| h.node_drain(batch)).await;
    let took = warned.elapsed();
    proxy.clear_rules();
    println!(
        "the test clock moved {} s",
        (spotkeeper::clock::Clock::now(h.clock.as_ref()) - clock_then).num_milliseconds() as f64 / 1000.0
    );

    let log: Vec<_> = fake.requests().split_off(before);
    let calls = proxy.calls();
    let faulted = calls.iter().filter(|c| c.fault.is_some()).count();
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for kind in calls.iter().filter_map(|c| c.fault) {
        *kinds.entry(kind).or_default() += 1;
    }
    let cordons: Vec<_> =
        log.iter().filter(|r| r.method == "PATCH" && r.uri.starts_with("/api/v1/nodes/") && r.status == 200).collect();
    let last_cordon = cordons.iter().map(|r| r.at.duration_since(warned)).max().unwrap_or_default();
    println!(
        "delivered in {took:?} ({} invocations, {} redeliveries, {} dead-lettered); last cordon {last_cordon:?} after the events; \
         {} calls sent, {faulted} faulted {kinds:?}; {} reached the API server",
        delivered.invocations,
        delivered.redeliveries,
        delivered.dead.len(),
        calls.len(),
        log.len(),
    );
    assert!(faulted * 8 > calls.len(), "about a fifth of the calls were faulted: {faulted} of {}", calls.len());
    for kind in ["answer", "dropped", "dropped after the work", "lost answer"] {
        assert!(kinds.contains_key(kind), "no call got the fault {kind:?}: {kinds:?}");
    }
    // The nasty one: the server evicted, the drain never heard.
    let unheard = calls
        .iter()
        .filter(|c| c.operation.ends_with("/eviction"))
        .filter(|c| matches!(c.fault, Some("dropped after the work" | "lost answer")))
        .count();
    assert!(unheard > 0, "no eviction's answer was lost");

    let first = log.first().map(|r| r.at.duration_since(warned)).unwrap_or_default();
    let mut at: Vec<f64> = cordons.iter().map(|r| r.at.duration_since(warned).as_secs_f64()).collect();
    at.sort_by(f64::total_cmp);
    println!("first request at {first:?}; cordons at {at:.2?}");

    // Nothing lost: every warning ended in a drain that is over, none dead-lettered.
    assert!(delivered.dead.is_empty(), "dead-lettered: {:?}", delivered.dead);
    let mut records = HashMap::new();
    for id in &group.members {
        let record =
            h.deps.store.drain(&instance(id)).await.expect("read").unwrap_or_else(|| panic!("no drain of {id}"));
        records.insert(nodes[id].clone(), record);
    }
    let failed: Vec<String> = h.history(&group.name, "node-drain-failed").await;
    let unfinished: Vec<_> = records.values().filter(|r| r.state != DrainState::Done).collect();
    assert!(
        unfinished.is_empty(),
        "{} drains not done: {unfinished:?}; failures recorded: {failed:#?}",
        unfinished.len()
    );

    // Every node cordoned and tainted, the last of them within 5 s of the events.
    for node in nodes.values() {
        let now = fake.get("nodes", None, node).expect("the node");
        assert_eq!(now["spec"]["unschedulable"], true, "{node} left schedulable");
        let taints = now["spec"]["taints"].as_array().cloned().unwrap_or_default();
        assert!(
            taints.iter().any(|t| t["key"] == "spotkeeper.io/interrupted" && t["effect"] == "NoSchedule"),
            "{node}: {taints:?}"
        );
        assert!(
            cordons.iter().any(|r| path(&r.uri) == format!("/api/v1/nodes/{node}")),
            "{node}: no cordon reached the server"
        );
    }
    assert!(last_cordon <= CORDONED_WITHIN, "the last node was cordoned {last_cordon:?} after the events");

    // No pod evicted twice; each evictable pod gone, terminating, or reported left by its drain.
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for r in log.iter().filter(|r| r.method == "POST" && path(&r.uri).ends_with("/eviction") && r.status == 201) {
        *accepted.entry(path(&r.uri).to_string()).or_default() += 1;
    }
    let twice: Vec<_> = accepted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "pods evicted more than once: {twice:?}");
    let pods_now: HashMap<String, Value> = fake
        .all("pods")
        .into_iter()
        .map(|p| (p["metadata"]["name"].as_str().unwrap_or_default().to_string(), p))
        .collect();
    for (node, pod) in &evictable {
        let left = records[node].tally.left.contains(&format!("shop/{pod}"));
        let leaving = pods_now.get(pod).is_none_or(|p| !p["metadata"]["deletionTimestamp"].is_null());
        assert!(leaving || left, "{pod} on {node} still running and not reported left");
    }
    for n in 0..nodes.len() {
        let ds = format!("aws-node-{n}");
        assert!(pods_now.contains_key(&ds), "{ds} stays");
        assert!(!log.iter().any(|r| path(&r.uri).ends_with(&format!("/pods/{ds}/eviction"))), "{ds} never evicted");
    }
    // And each drain's record tells every pod that had to leave: evicted (its answer heard or
    // not), or left.
    for (node, pod) in &evictable {
        let tally = &records[node].tally;
        let key = format!("shop/{pod}");
        assert!(
            tally.evicted.contains(&key) || tally.left.contains(&key),
            "{key} missing from {node}'s record: {tally:?}"
        );
    }
    let evicted: usize = records.values().map(|r| r.tally.evicted.len()).sum();
    let left: usize = records.values().map(|r| r.tally.left.len()).sum();
    println!(
        "{evicted} evictions recorded, {left} pods reported left, {} evictions accepted at the server",
        accepted.len()
    );

    // The client's request rate: in any window, at most the burst plus the rate — counted on what
    // the client sent (the proxy's calls) and on what reached the server.
    let sent: Vec<Instant> = calls.iter().map(|c| c.at).collect();
    let reached: Vec<Instant> = log.iter().map(|r| r.at).collect();
    for (what, times) in [("sent", sent), ("reached the server", reached)] {
        if let Some((count, window)) = over_the_limit(times) {
            panic!("{count} requests {what} within {window:?}: more than {BURST} + {QPS}/s");
        }
    }
    println!("checked at {:?}", started.elapsed());
}

/// An EKS node for each instance, named after its private DNS name as EKS names it (or
/// `node-<n>` where the emulator gave two instances one name): instance id → node name.
async fn seed_nodes(h: &Harness, fake: &FakeKube, ids: &[String]) -> HashMap<String, String> {
    let out =
        h.ec2().describe_instances().set_instance_ids(Some(ids.to_vec())).send().await.expect("DescribeInstances");
    let mut names = HashMap::new();
    let mut taken = HashSet::new();
    for (n, instance) in out.reservations().iter().flat_map(aws_sdk_ec2::types::Reservation::instances).enumerate() {
        let id = instance.instance_id().expect("an instance id").to_string();
        let dns = instance.private_dns_name().filter(|d| !d.is_empty()).map(str::to_string);
        let name = dns.filter(|d| taken.insert(d.clone())).unwrap_or_else(|| format!("node-{n}"));
        let az = instance.placement().and_then(|p| p.availability_zone()).unwrap_or("us-east-1a");
        fake.node(&name, az, &id);
        names.insert(id, name);
    }
    assert_eq!(names.len(), ids.len(), "every instance described");
    names
}

/// The most requests in a window beyond the limiter's burst plus its rate over the window, and the
/// window, when any.
fn over_the_limit(mut times: Vec<Instant>) -> Option<(usize, Duration)> {
    times.sort();
    let mut worst = None;
    for (i, start) in times.iter().enumerate() {
        for (j, end) in times.iter().enumerate().skip(i) {
            let window = end.duration_since(*start);
            let count = j - i + 1;
            if count as f64 > BURST + QPS * window.as_secs_f64() + JITTER {
                worst = Some((count, window));
            }
        }
    }
    worst
}

/// A request's path, without its query.
fn path(uri: &str) -> &str {
    uri.split('?').next().unwrap_or_default()
}

fn instance(id: &str) -> InstanceId {
    InstanceId::try_from(id.to_string()).expect("an instance id")
}
