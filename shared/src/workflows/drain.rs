//! A node's drain, on its Spot interruption warning (or a rebalance recommendation, as the
//! group's `kubernetes.rebalance` says): found by its provider id, cordoned and tainted at once,
//! then its pods evicted in parallel against the warning's two minutes — a pod a
//! PodDisruptionBudget holds is asked again every few seconds, and near the end the group's
//! `pdb_policy` decides — until only DaemonSet, mirror and finished pods remain or time is up.
//!
//! Exactly once: the drain is claimed per instance with a lease the delivery renews each round,
//! so duplicates stand aside, a delivery that died is continued by the next, and a warning takes
//! over a rebalance's cordon or drain. Each round starts from the pods as the API server lists
//! them: a pod evicted by a delivery that died, or whose answer was lost, is terminating there
//! and is never evicted again.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::adapters::kubernetes::{
    ConnectError, Cordon, DeleteOutcome, EvictionOutcome, KubeClient, KubeError, ReadNode,
};
use crate::adapters::notify::{Alert, Severity};
use crate::adapters::store::DrainClaim;
use crate::decisions::drain::{self, Begin, Blocked, MARGIN};
use crate::domain::{
    AlertKind, Deadline, DrainState, DrainTally, DrainTrigger, Group, HistoryKind, InstanceId, KubernetesSpec,
    PdbPolicy, PodGrace, PodView,
};
use crate::runtime::event::{Batch, Event, NodeEvent, SPOT_INTERRUPTION_WARNING};
use crate::runtime::{Deps, Error};
use crate::workflows::failover;
use crate::workflows::report::Report;

/// How long a delivery holds a drain between renewals: a round is at most `RETRY_EVERY` long.
const LEASE: chrono::Duration = chrono::Duration::seconds(30);
/// How often a node whose pods are terminating is looked at again.
const POLL: Duration = Duration::from_secs(1);
/// How long after a failed call to the cluster it is tried again.
const AGAIN: Duration = Duration::from_secs(2);
/// How soon a failed step toward the cordon (finding the node, cordoning it) is tried again:
/// sooner than other calls, as pods may land on the node meanwhile.
const SOON: Duration = Duration::from_millis(500);
/// How long before the drain's end the pods left to a failover's rollout are evicted like the
/// others: a rollout to Fargate (30–60 s a pod) may not replace them all in two minutes.
const HAND_BACK: Duration = Duration::from_secs(30);
/// Evictions in flight at once for one node (the request rate paces them further).
const IN_FLIGHT: usize = 32;

/// What came of one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Drained {
    /// Nothing to do, and why.
    Ignored { instance_id: String, reason: String },
    /// Another delivery drains it, or drained it already.
    AlreadyDraining { instance_id: String },
    /// Cordoned on a rebalance recommendation: no new pods; its pods stay.
    Cordoned { instance_id: String, node: String },
    /// Drained: what happened to its pods.
    Drained {
        instance_id: String,
        node: String,
        evicted: usize,
        deleted_at_deadline: usize,
        left: usize,
        /// From the warning to only staying pods left; none when time ran out first.
        seconds_to_empty: Option<f64>,
    },
    /// The cluster could not be reached (or refused us) while there was time: recorded and alerted.
    Failed { instance_id: String, reason: String },
}

/// A batch of node events, drained side by side; one report for the batch.
pub async fn nodes(
    deps: &Deps,
    batch: Batch<NodeEvent>,
    deadline: Deadline,
) -> Vec<(Option<String>, Result<Drained, Error>)> {
    let runs = batch.items.into_iter().map(|(message, event)| async move {
        let mut report = Report::new(deps);
        let outcome = match event {
            Ok(event) => node(deps, event, deadline, &mut report).await,
            Err(err) => Err(err.into()),
        };
        ((message, outcome), report)
    });
    let ran = futures::future::join_all(runs).await;
    let mut report = Report::new(deps);
    let mut answers = Vec::with_capacity(ran.len());
    for (answer, part) in ran {
        report.extend(part);
        answers.push(answer);
    }
    report.send(deps, deadline).await;
    answers
}

/// Who is draining, what, until when.
struct Drain<'a> {
    deps: &'a Deps,
    group: &'a Group,
    spec: &'a KubernetesSpec,
    instance: InstanceId,
    trigger: DrainTrigger,
    /// Who holds the drain: one value per delivery.
    holder: String,
    /// When the warning came (or the recommendation).
    warned_at: DateTime<Utc>,
    /// When the instance ends (a warning's two minutes); a rebalance has none.
    instance_end: Option<DateTime<Utc>>,
    /// When the drain stops: the instance's end, else what the invocation had left when it began.
    stop: DateTime<Utc>,
    deadline: Deadline,
}

impl Drain<'_> {
    fn id(&self) -> String {
        self.instance.to_string()
    }

    /// Whether another wait of `wait` still fits the invocation.
    fn fits(&self, wait: Duration) -> bool {
        self.deadline.remaining() > wait
    }
}

/// One event: look up the group, decide, claim, reach the cluster, cordon, drain, record.
async fn node(deps: &Deps, event: Event<NodeEvent>, deadline: Deadline, report: &mut Report) -> Result<Drained, Error> {
    let instance = event.detail.instance_id.clone();
    let ignored = |reason: &str| Ok(Drained::Ignored { instance_id: instance.to_string(), reason: reason.to_string() });
    let Some(name) = deps.store.group_of(instance.as_str()).await? else {
        return ignored("no group manages the instance");
    };
    let Some(group) = deps.store.group(&name).await? else {
        return ignored("no group manages the instance");
    };
    let Some(spec) = &group.kubernetes else {
        return ignored("its group has no kubernetes block");
    };
    let trigger =
        if event.detail_type == SPOT_INTERRUPTION_WARNING { DrainTrigger::Warning } else { DrainTrigger::Rebalance };
    let begin = drain::begin(trigger, spec.rebalance);
    if let Begin::Ignore(why) = begin {
        return ignored(why);
    }
    let now = deps.clock.now();
    let warned_at = event.time.unwrap_or(now);
    let instance_end = (trigger == DrainTrigger::Warning).then(|| drain::deadline(warned_at));
    let d = Drain {
        deps,
        group: &group,
        spec,
        instance,
        trigger,
        holder: hex::encode(rand::random::<[u8; 12]>()),
        warned_at,
        instance_end,
        stop: instance_end
            .unwrap_or_else(|| now + chrono::Duration::from_std(deadline.remaining()).unwrap_or_default()),
        deadline,
    };
    let claim = deps.store.claim_drain(&d.instance, &group.name, trigger, &d.holder, now, LEASE).await?;
    let DrainClaim::Won(earlier) = claim else {
        return Ok(Drained::AlreadyDraining { instance_id: d.id() });
    };
    let mut tally = match earlier {
        // A warning after a rebalance's drain: what that drain left, and when, are its own.
        Some(e) if e.trigger != trigger => DrainTally { left: Vec::new(), emptied_at: None, ..e.tally },
        Some(e) => e.tally,
        None => DrainTally::default(),
    };
    let outcome = claimed(&d, begin, &mut tally, report).await;
    settle(&d, outcome, &tally, report).await
}

/// What a claimed drain came to, before it is recorded.
enum Ended {
    Ignored(String),
    Cordoned,
    Drained,
    /// Failed for good: the reason.
    Failed(String),
    /// Taken over by a warning's delivery.
    TakenOver,
    /// The invocation's time ran out with work left (or the cluster is unreachable with time
    /// left on a rebalance): the next delivery continues.
    Unfinished(String),
}

async fn claimed(d: &Drain<'_>, begin: Begin, tally: &mut DrainTally, report: &mut Report) -> Ended {
    let (kube, read) = match reach(d, report).await {
        Ok(Some(found)) => found,
        Ok(None) => return Ended::Ignored(format!("no node of cluster {} runs it", d.spec.cluster)),
        Err(Reach::Failed(why)) => return Ended::Failed(why),
        Err(Reach::Later(why)) => return Ended::Unfinished(why),
    };
    let node = read.name.clone();
    tally.node = Some(node.clone());
    // A busy or failing API server (a 5xx, a 429, a dropped connection) is asked again while
    // there is time: one lost answer must not leave the node schedulable for good. Each try
    // patches against the node as found (one request; a 409 if it changed, and it is read again).
    let mut tries = 0;
    loop {
        let error = match cordon(d, &kube, &read, tally, report).await {
            Ok(()) => break,
            Err(e) => e,
        };
        let wait = backoff(tries);
        tries += 1;
        let now = d.deps.clock.now();
        let again = now + chrono::Duration::from_std(wait).unwrap_or_default();
        if !error.is_retryable() || d.instance_end.is_some_and(|end| again >= end) {
            return Ended::Failed(format!("node {node} could not be cordoned: {error}"));
        }
        if again >= d.stop || !d.fits(wait) {
            return Ended::Unfinished(error.to_string());
        }
        tracing::warn!(instance_id = %d.instance, node = %node, error = %error, "cordon failed; trying again");
        d.deps.clock.sleep(wait).await;
    }
    if begin == Begin::Cordon {
        return Ended::Cordoned;
    }
    let held = fail_over(d, &kube, &node, report).await;
    evict_all(d, &kube, &node, &held, tally, report).await
}

/// Why the cluster was not reached.
enum Reach {
    /// For good, or the warning's time is up.
    Failed(String),
    /// Not now; a later delivery may.
    Later(String),
}

/// The cluster's client and the instance's node (`None`: not a node of it), tried again while
/// the warning's time allows. A refused token is minted anew once.
async fn reach(d: &Drain<'_>, report: &mut Report) -> Result<Option<(KubeClient, ReadNode)>, Reach> {
    let deps = d.deps;
    let dns = match deps.clients.ec2.instances(&[d.id()]).await {
        Ok(facts) => facts.into_iter().find_map(|f| f.private_dns),
        // The provider id finds an EKS node without it.
        Err(e) => {
            tracing::warn!(instance_id = %d.instance, error = %e, "no private DNS name: the node is found by its provider id");
            None
        }
    };
    let mut minted_anew = false;
    let mut alerted = false;
    let mut tries = 0;
    loop {
        let now = deps.clock.now();
        let found = async {
            let kube = deps.clusters.connect(d.spec, now).await?;
            let node = kube.find_node_read(&d.instance, dns.as_deref()).await?;
            Ok::<_, ConnectError>(node.map(|n| (kube, n)))
        }
        .await;
        let error = match found {
            Ok(found) => return Ok(found),
            Err(e) => e,
        };
        let refused = matches!(&error, ConnectError::Kube(KubeError::Unauthorized(_)));
        if refused {
            deps.clusters.forget(&d.spec.cluster);
        }
        let why = error_chain(&error);
        let again = error.is_retryable() || (refused && !std::mem::replace(&mut minted_anew, true));
        let wait = backoff(tries);
        tries += 1;
        let time_left = now + chrono::Duration::from_std(wait).unwrap_or_default() < d.stop;
        if !again {
            return Err(Reach::Failed(why));
        }
        if !time_left || !d.fits(wait) {
            return Err(
                if d.instance_end.is_some_and(|end| now + chrono::Duration::from_std(wait).unwrap_or_default() >= end) {
                    Reach::Failed(why)
                } else {
                    Reach::Later(why)
                },
            );
        }
        if !alerted && !refused {
            alerted = true;
            tracing::warn!(instance_id = %d.instance, cluster = %d.spec.cluster, error = %why, "cluster unreachable; trying again");
            report.note(
                &d.group.name,
                Some(d.instance.as_str()),
                HistoryKind::NodeDrainRetrying,
                format!("cluster {} could not be reached for {}: {why}; trying again", d.spec.cluster, d.instance),
            );
        }
        deps.clock.sleep(wait).await;
    }
}

/// The wait before try `tries + 1` toward the cordon: `SOON` three times, then every `AGAIN`
/// (a cluster that stays unreachable is not hammered; the request rate limits the rest).
fn backoff(tries: u32) -> Duration {
    if tries < 3 { SOON } else { AGAIN }
}

/// The error and its causes, as one line (kube's and hyper's causes say what the connection met).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// Cordons and taints the node (patched against `read`, the node as found), noted the first time
/// only (a rebalance's cordon is not repeated).
async fn cordon(
    d: &Drain<'_>,
    kube: &KubeClient,
    read: &ReadNode,
    tally: &mut DrainTally,
    report: &mut Report,
) -> Result<(), KubeError> {
    let node = &read.name;
    let done = kube.cordon_from(node, Some(read.clone())).await?;
    if done == Cordon::Cordoned || !tally.cordoned {
        let why = match d.trigger {
            DrainTrigger::Warning => "its Spot interruption warning",
            DrainTrigger::Rebalance => "a rebalance recommendation",
        };
        report.note(
            &d.group.name,
            Some(d.instance.as_str()),
            HistoryKind::NodeCordoned,
            format!("node {node} ({}) cordoned and tainted spotkeeper.io/interrupted on {why}", d.instance),
        );
    }
    tally.cordoned = true;
    Ok(())
}

/// On a warning, the opted-in Deployments with pods on the node go to Fargate first: the
/// ReplicaSets (`namespace/name`) whose pods their rollouts replace, which the drain leaves to
/// them until `HAND_BACK` before its end.
async fn fail_over(d: &Drain<'_>, kube: &KubeClient, node: &str, report: &mut Report) -> HashSet<String> {
    if d.trigger != DrainTrigger::Warning || d.spec.failover.is_none() {
        return HashSet::new();
    }
    match kube.pods_on(node).await {
        Ok(pods) => failover::on_node(d.deps, d.group, d.spec, kube, &pods, d.instance.as_str(), report).await,
        Err(e) => {
            tracing::warn!(node = %node, error = %e, "no failover: the node's pods could not be listed");
            HashSet::new()
        }
    }
}

/// What the drain knows of each pod between rounds (by uid).
#[derive(Default)]
struct Pods {
    /// Not to be asked again before this time.
    waiting: HashMap<String, DateTime<Utc>>,
    /// Left alone for good: a PodDisruptionBudget holds it and the policy is `respect`.
    given_up: HashSet<String>,
    /// Evictions sent whose answer never came: the next list tells.
    unsure: HashMap<String, String>,
}

/// Rounds of list → evict → wait until only staying pods are left or time is up.
async fn evict_all(
    d: &Drain<'_>,
    kube: &KubeClient,
    node: &str,
    held: &HashSet<String>,
    tally: &mut DrainTally,
    report: &mut Report,
) -> Ended {
    let deps = d.deps;
    let mut pods = Pods::default();
    // What is left is what the end of this drain finds.
    tally.left.clear();
    let policy = if d.instance_end.is_some() { d.spec.pdb_policy } else { PdbPolicy::Respect };
    let grace = if d.instance_end.is_some() { d.spec.pod_grace } else { PodGrace::Own };
    loop {
        let now = deps.clock.now();
        let stop = d.stop;
        let listed = match kube.pods_on(node).await {
            Ok(listed) => listed,
            Err(e) if e.is_retryable() && now < stop && d.fits(AGAIN) => {
                deps.clock.sleep(AGAIN).await;
                continue;
            }
            Err(e) if e.is_retryable() && now < stop => return Ended::Unfinished(e.to_string()),
            Err(e) => return Ended::Failed(format!("the pods of node {node} could not be listed: {e}")),
        };
        settle_unsure(&mut pods, &listed, tally);
        let moving: Vec<&PodView> =
            listed.iter().filter(|p| drain::skip_reason(p).is_none_or(|s| !s.stays())).collect();
        if moving.is_empty() {
            tally.emptied_at.get_or_insert(now);
            break;
        }
        let stuck = moving.iter().all(|p| pods.given_up.contains(&p.uid));
        if now >= stop || stuck {
            break;
        }
        let hand_back = now + chrono::Duration::from_std(HAND_BACK).unwrap_or_default() >= stop;
        let left_to_rollout = |p: &PodView| {
            !hand_back && p.replica_set.as_ref().is_some_and(|rs| held.contains(&format!("{}/{rs}", p.namespace)))
        };
        let due: Vec<&PodView> = drain::plan(&listed)
            .evict
            .into_iter()
            .filter(|p| !pods.given_up.contains(&p.uid) && pods.waiting.get(&p.uid).is_none_or(|t| *t <= now))
            .filter(|p| !left_to_rollout(p))
            .collect();
        if let Err(ended) = round(d, kube, &due, policy, grace, &mut pods, tally, report).await {
            return ended;
        }
        match deps.store.renew_drain(&d.instance, &d.holder, deps.clock.now() + LEASE, tally).await {
            Ok(true) => {}
            Ok(false) => return Ended::TakenOver,
            Err(e) => tracing::warn!(instance_id = %d.instance, error = %e, "could not renew the drain's lease"),
        }
        let now = deps.clock.now();
        // Terminating pods are looked at every `POLL`; a pod waiting its turn wakes the drain sooner.
        let next = pods.waiting.iter().filter(|(uid, _)| !pods.given_up.contains(*uid)).map(|(_, t)| *t).min();
        let until = |t: DateTime<Utc>| (t - now).to_std().unwrap_or_default();
        let wait = next.map_or(POLL, until).min(POLL).min(until(stop)).max(Duration::from_millis(100));
        if !d.fits(wait) {
            return Ended::Unfinished(format!("the invocation's time ran out with pods still on node {node}"));
        }
        deps.clock.sleep(wait).await;
    }
    let now = deps.clock.now();
    let listed = kube.pods_on(node).await.unwrap_or_default();
    settle_unsure(&mut pods, &listed, tally);
    for pod in listed.iter().filter(|p| drain::skip_reason(p).is_none_or(|s| !s.stays())) {
        DrainTally::add(&mut tally.left, &pod.key());
    }
    if tally.left.is_empty() {
        tally.emptied_at.get_or_insert(now);
    }
    Ended::Drained
}

/// Evictions whose answer was lost: the pod terminating or gone now means the eviction was taken.
fn settle_unsure(pods: &mut Pods, listed: &[PodView], tally: &mut DrainTally) {
    pods.unsure.retain(|uid, key| match listed.iter().find(|p| p.uid == *uid) {
        Some(pod) if pod.deletion.is_none() => true,
        _ => {
            DrainTally::add(&mut tally.evicted, key);
            false
        }
    });
}

/// One round of evictions, in parallel, and what each answer means.
#[allow(clippy::too_many_arguments, reason = "a round with all it reads and changes")]
async fn round(
    d: &Drain<'_>,
    kube: &KubeClient,
    due: &[&PodView],
    policy: PdbPolicy,
    grace: PodGrace,
    pods: &mut Pods,
    tally: &mut DrainTally,
    report: &mut Report,
) -> Result<(), Ended> {
    let deps = d.deps;
    let now = deps.clock.now();
    let asked = futures::stream::iter(due.iter().copied())
        .map(|pod| async move {
            let own = Duration::from_secs(u64::try_from(pod.grace_seconds).unwrap_or(0));
            (pod, kube.evict(pod, drain::eviction_grace(now, d.instance_end, own, grace)).await)
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    for (pod, answer) in asked {
        let now = deps.clock.now();
        let again = now + chrono::Duration::from_std(AGAIN).unwrap_or_default();
        match answer {
            Ok(EvictionOutcome::Evicted) => DrainTally::add(&mut tally.evicted, &pod.key()),
            Ok(EvictionOutcome::Gone | EvictionOutcome::Changed) => {}
            Ok(EvictionOutcome::Throttled { retry_after }) => {
                let after = chrono::Duration::from_std(retry_after.unwrap_or(AGAIN)).unwrap_or_default();
                pods.waiting.insert(pod.uid.clone(), now + after);
            }
            Ok(EvictionOutcome::BlockedByPdb { .. } | EvictionOutcome::MultiplePdbs) => {
                DrainTally::add(&mut tally.blocked, &pod.key());
                blocked(d, kube, pod, policy, pods, tally, report).await;
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(pod = %pod.key(), error = %e, "eviction unanswered; the next list tells");
                pods.unsure.insert(pod.uid.clone(), pod.key());
                pods.waiting.insert(pod.uid.clone(), again);
            }
            Err(e) => return Err(Ended::Failed(format!("pod {} could not be evicted: {e}", pod.key()))),
        }
    }
    Ok(())
}

/// A pod a PodDisruptionBudget holds: asked again later, or — its time up — deleted or left as
/// the group's policy says.
async fn blocked(
    d: &Drain<'_>,
    kube: &KubeClient,
    pod: &PodView,
    policy: PdbPolicy,
    pods: &mut Pods,
    tally: &mut DrainTally,
    report: &mut Report,
) {
    let now = d.deps.clock.now();
    let own = Duration::from_secs(u64::try_from(pod.grace_seconds).unwrap_or(0));
    let stop = d.stop;
    let key = pod.key();
    match drain::when_blocked(now, stop, own, MARGIN, policy) {
        Blocked::Retry { after } => {
            pods.waiting.insert(pod.uid.clone(), now + chrono::Duration::from_std(after).unwrap_or_default());
        }
        Blocked::DeleteNow { grace } => match kube.delete(pod, grace).await {
            Ok(DeleteOutcome::Deleting) => {
                DrainTally::add(&mut tally.deleted, &key);
                report.note(
                    &d.group.name,
                    Some(d.instance.as_str()),
                    HistoryKind::PodDeletedAtDeadline,
                    format!(
                        "pod {key} deleted with {} s grace: a PodDisruptionBudget still held it {} s before the instance's end",
                        grace.as_secs(),
                        (stop - now).num_seconds()
                    ),
                );
            }
            Ok(DeleteOutcome::Gone | DeleteOutcome::Changed) => {}
            Err(e) => {
                tracing::warn!(pod = %key, error = %e, "delete at the deadline failed; trying again");
                pods.waiting.insert(pod.uid.clone(), now + chrono::Duration::from_std(AGAIN).unwrap_or_default());
            }
        },
        Blocked::GiveUp => {
            pods.given_up.insert(pod.uid.clone());
        }
    }
}

/// Ends the hold on the drain and records what happened.
async fn settle(d: &Drain<'_>, ended: Ended, tally: &DrainTally, report: &mut Report) -> Result<Drained, Error> {
    let deps = d.deps;
    let node = tally.node.clone().unwrap_or_default();
    let (state, answer) = match ended {
        Ended::TakenOver => return Ok(Drained::AlreadyDraining { instance_id: d.id() }),
        Ended::Unfinished(why) => {
            deps.store.end_drain(&d.instance, &d.holder, DrainState::Acting, tally).await?;
            return Err(Error::Unfinished(format!("the drain of {} is not over ({why})", d.instance)));
        }
        Ended::Ignored(reason) => (DrainState::Done, Drained::Ignored { instance_id: d.id(), reason }),
        Ended::Cordoned => (DrainState::Done, Drained::Cordoned { instance_id: d.id(), node: node.clone() }),
        Ended::Failed(reason) => {
            failed(d, &reason, report);
            (DrainState::Failed, Drained::Failed { instance_id: d.id(), reason })
        }
        Ended::Drained => {
            let seconds_to_empty = tally.emptied_at.map(|t| (t - d.warned_at).num_milliseconds() as f64 / 1000.0);
            drained(d, tally, seconds_to_empty, report);
            let answer = Drained::Drained {
                instance_id: d.id(),
                node: node.clone(),
                evicted: tally.evicted.len(),
                deleted_at_deadline: tally.deleted.len(),
                left: tally.left.len(),
                seconds_to_empty,
            };
            (DrainState::Done, answer)
        }
    };
    if !deps.store.end_drain(&d.instance, &d.holder, state, tally).await? {
        tracing::warn!(instance_id = %d.instance, "the drain was taken over as it ended");
    }
    Ok(answer)
}

/// The drain's outcome: history, alert and metrics name each pod's fate.
fn drained(d: &Drain<'_>, tally: &DrainTally, seconds_to_empty: Option<f64>, report: &mut Report) {
    let node = tally.node.as_deref().unwrap_or_default();
    let group = &d.group.name;
    let list = |pods: &[String]| if pods.is_empty() { "none".to_string() } else { pods.join(", ") };
    let emptied = seconds_to_empty
        .map_or_else(|| "not emptied in time".to_string(), |s| format!("empty {s:.1} s after the warning"));
    let summary = format!(
        "node {node} ({}) drained: {} evicted, {} deleted at the deadline ({}), {} left ({}); {emptied}",
        d.instance,
        tally.evicted.len(),
        tally.deleted.len(),
        list(&tally.deleted),
        tally.left.len(),
        list(&tally.left),
    );
    report.note(group, Some(d.instance.as_str()), HistoryKind::NodeDrained, summary.clone());
    if !tally.left.is_empty() {
        report.note(
            group,
            Some(d.instance.as_str()),
            HistoryKind::PodsLeft,
            format!("still on node {node} at the end: {}", list(&tally.left)),
        );
    }
    let severity = if tally.left.is_empty() && tally.deleted.is_empty() { Severity::Info } else { Severity::Warning };
    report.alert(
        Alert::new(AlertKind::NodeDrained, group, severity, format!("{group}: {summary}"))
            .fact("instance", d.instance.as_str())
            .fact("node", node)
            .fact("evicted", tally.evicted.len())
            .fact("deleted at deadline", list(&tally.deleted))
            .fact("left", list(&tally.left))
            .fact("seconds to empty", seconds_to_empty.map_or_else(|| "-".to_string(), |s| format!("{s:.1}"))),
    );
    let label = group.to_string();
    metrics::counter!("PodsEvicted", "group" => label.clone()).increment(tally.evicted.len() as u64);
    metrics::counter!("PodsDeletedAtDeadline", "group" => label.clone()).increment(tally.deleted.len() as u64);
    metrics::counter!("PodsLeft", "group" => label.clone()).increment(tally.left.len() as u64);
    if let Some(seconds) = seconds_to_empty {
        metrics::histogram!("DrainSecondsToEmpty", "group" => label).record(seconds);
    }
}

/// The drain failed for good: recorded, alerted, counted.
fn failed(d: &Drain<'_>, reason: &str, report: &mut Report) {
    let group = &d.group.name;
    report.note(
        group,
        Some(d.instance.as_str()),
        HistoryKind::NodeDrainFailed,
        format!("the node of {} was not drained: {reason}", d.instance),
    );
    report.alert(
        Alert::new(
            AlertKind::NodeDrainFailed,
            group,
            Severity::Critical,
            format!("{group}: the node of {} was not drained", d.instance),
        )
        .fact("instance", d.instance.as_str())
        .fact("cluster", &d.spec.cluster)
        .fact("error", reason),
    );
    metrics::counter!("DrainsFailed", "group" => group.to_string()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_line_keeps_its_causes_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let line = error_chain(&Outer(std::io::Error::other("connection refused")));
        assert_eq!(line, "outer: connection refused");
    }
}
