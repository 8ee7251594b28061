//! Opted-in Deployments fail over to Fargate and come back to Spot.
//!
//! A warned node's drain hands its pods here first: each opted-in Deployment among their owners
//! is patched to Fargate once, and the drain holds its pods back while the rollout replaces them,
//! so its Service never runs out of ready endpoints. Nothing waits for Fargate's starts: the
//! scheduled run follows each rollout to done or failed, settles the Deployment's annotations and
//! the table, and later takes it back to Spot under the group's recovery policy — one Deployment
//! at a time per cluster, rolled back to Fargate if its rollout fails.
//!
//! Exactly once: every step is first won in the table (a conditional write on the record's
//! version), and every patch carries the resourceVersion it was decided on, so a Deployment
//! patched by a delivery whose answer was lost, or that died, reads as patched and is never
//! patched twice; a conflict (someone else wrote in between) reads it again and decides anew.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::adapters::kubernetes::{KubeClient, Patched};
use crate::adapters::notify::{Alert, Severity};
use crate::decisions::failover::{self, Move, Rollout, WayBack};
use crate::domain::{
    AlertKind, ClusterName, DeploymentView, FailoverCause, FailoverSpec, Group, HistoryKind, KubernetesSpec, PodView,
    WorkloadRecord, WorkloadRef, WorkloadState,
};
use crate::runtime::{Deps, Error};
use crate::workflows::report::Report;

/// How often one step re-reads and decides again after a conflict or a lost answer.
const TRIES: usize = 4;
/// How often a failing call on a warning's path is tried again, and after how long.
const RETRIES: u32 = 3;
const AGAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// What came of asking one Deployment to fail over.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum FailedOver {
    /// Patched to Fargate now.
    Patched { workload: String },
    /// It was on Fargate, or on its way, already.
    Already { workload: String, state: WorkloadState },
    /// Another delivery won the step: it patches.
    Taken { workload: String },
    /// Its pods cannot run on Fargate.
    Refused { workload: String, reasons: Vec<String> },
    /// Not opted in, or not in a failover namespace.
    Skipped { workload: String, reason: String },
    /// The Deployment is not in the cluster.
    Gone { workload: String },
}

impl FailedOver {
    /// Its old pods are being replaced by the rollout: a drain leaves them to it.
    fn replacing(&self) -> bool {
        matches!(self, Self::Patched { .. } | Self::Already { .. } | Self::Taken { .. })
    }
}

/// The failover of the opted-in Deployments with pods among `pods` (a warned node's): the
/// ReplicaSets whose pods the drain leaves to the rollouts, as `namespace/name`.
pub async fn on_node(
    deps: &Deps,
    group: &Group,
    spec: &KubernetesSpec,
    kube: &KubeClient,
    pods: &[PodView],
    instance: &str,
    report: &mut Report,
) -> HashSet<String> {
    let Some(failover) = &spec.failover else { return HashSet::new() };
    let sets: BTreeSet<(String, String)> = pods
        .iter()
        .filter(|p| p.deletion.is_none() && failover.namespaces.contains(&p.namespace))
        .filter_map(|p| p.replica_set.clone().map(|rs| (p.namespace.clone(), rs)))
        .collect();
    let mut held = HashSet::new();
    let reason = format!("Spot interruption warning for {instance}");
    // Each Deployment once (its ReplicaSets may be several), and whether its pods are held.
    let mut seen: HashMap<WorkloadRef, bool> = HashMap::new();
    for (namespace, set) in sets {
        let deployment = match retried(deps, || kube.deployment_of(&namespace, &set)).await {
            Ok(Some(name)) => name,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(replica_set = %set, error = %e, "its Deployment could not be read: its pods are drained");
                continue;
            }
        };
        let Ok(workload) = WorkloadRef::new(&namespace, &deployment) else { continue };
        if let Some(replacing) = seen.get(&workload) {
            if *replacing {
                held.insert(format!("{namespace}/{set}"));
            }
            continue;
        }
        let cause = FailoverCause::Warning;
        let mut tries = 0;
        let done = loop {
            match fail_over(deps, group, spec, failover, kube, &workload, cause, &reason, report).await {
                Err(e) if e.is_retryable() && tries < RETRIES => {
                    tries += 1;
                    deps.clock.sleep(AGAIN).await;
                }
                done => break done,
            }
        };
        let replacing = match done {
            Ok(done) => done.replacing(),
            Err(e) => {
                tracing::warn!(workload = %workload, error = %e, "failover failed: its pods are drained");
                false
            }
        };
        if replacing {
            held.insert(format!("{namespace}/{set}"));
        }
        seen.insert(workload, replacing);
    }
    held
}

/// A read of the cluster, tried again while it fails in a way a retry can help (a warning's two
/// minutes leave room for a few).
async fn retried<T, F, Fut>(deps: &Deps, mut call: F) -> Result<T, crate::adapters::kubernetes::KubeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::adapters::kubernetes::KubeError>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(e) if e.is_retryable() && tries < RETRIES => {
                tries += 1;
                deps.clock.sleep(AGAIN).await;
            }
            done => return done,
        }
    }
}

/// One Deployment to Fargate: won in the table, then patched once.
#[allow(clippy::too_many_arguments, reason = "one step with all it reads")]
pub async fn fail_over(
    deps: &Deps,
    group: &Group,
    spec: &KubernetesSpec,
    failover: &FailoverSpec,
    kube: &KubeClient,
    workload: &WorkloadRef,
    cause: FailoverCause,
    reason: &str,
    report: &mut Report,
) -> Result<FailedOver, Error> {
    let name = workload.to_string();
    if !failover.namespaces.contains(&workload.namespace) {
        return Ok(outside(workload));
    }
    let cluster = &spec.cluster;
    let mut record = deps
        .store
        .workload(cluster, workload)
        .await?
        .unwrap_or_else(|| WorkloadRecord::new(workload.clone(), group.name.clone(), deps.clock.now()));
    // Whether this call won the step: a Deployment found patched after that is our patch landed.
    let mut claimed = false;
    for _ in 0..TRIES {
        let Some(d) = kube.deployment(workload).await? else {
            return Ok(FailedOver::Gone { workload: name });
        };
        if !d.opted_in() && cause != FailoverCause::Manual {
            let reason = "not opted in (annotation spotkeeper.io/failover: fargate)".to_string();
            return Ok(FailedOver::Skipped { workload: name, reason });
        }
        let now = deps.clock.now();
        match failover::failover(&d, &failover.label, reason, now) {
            // Our own patch, its answer lost: it landed.
            Move::Already(_) if claimed => {
                landed(deps, cluster, &record).await?;
                failed_over_note(group, spec, workload, cause, reason, report);
                return Ok(FailedOver::Patched { workload: name });
            }
            Move::Already(state) => {
                if !record.state.on_fargate() {
                    sync_from(deps, cluster, &record, &d, now).await?;
                }
                return Ok(FailedOver::Already { workload: name, state });
            }
            Move::Refuse(reasons) => return refuse(deps, group, cluster, &record, reasons, report).await,
            Move::Patch(patch) => {
                if let Some(why) = no_profile(deps, cluster, workload, failover).await {
                    return refuse(deps, group, cluster, &record, vec![why], report).await;
                }
                let claim = WorkloadRecord {
                    state: WorkloadState::FailingOver,
                    since: now,
                    reason: reason.to_string(),
                    rollout_started: None,
                    migrated_at: Some(now),
                    next_attempt: None,
                    ..record.clone()
                };
                let Some(won) = deps.store.save_workload(cluster, &claim).await? else {
                    return Ok(FailedOver::Taken { workload: name });
                };
                record = won;
                claimed = true;
                match send(kube, workload, &patch).await? {
                    Sent::Applied => {
                        landed(deps, cluster, &record).await?;
                        failed_over_note(group, spec, workload, cause, reason, report);
                        return Ok(FailedOver::Patched { workload: name });
                    }
                    Sent::Gone => return Ok(FailedOver::Gone { workload: name }),
                    // Read again: patched already (our answer lost), or changed by someone else.
                    Sent::Again => {}
                }
            }
        }
    }
    Err(Error::Unfinished(format!("{workload} kept changing under its failover patch")))
}

/// Why no Fargate profile would take the Deployment's pods, if none would (checked before each
/// failover: a profile may be deleted after the group's registration checked it). Unread, the
/// registration's check is trusted.
async fn no_profile(
    deps: &Deps,
    cluster: &ClusterName,
    workload: &WorkloadRef,
    failover: &FailoverSpec,
) -> Option<String> {
    match deps.clusters.fargate_selectors(cluster).await {
        Ok(selectors) if !failover::profiled(&selectors, &workload.namespace, &failover.label) => Some(format!(
            "no Fargate profile of cluster {cluster} selects namespace {} with label {}",
            workload.namespace, failover.label
        )),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(cluster = %cluster, error = %e, "Fargate profiles unread: the registration's check is trusted");
            None
        }
    }
}

/// A Deployment that cannot fail over: recorded, noted and alerted once per reason.
async fn refuse(
    deps: &Deps,
    group: &Group,
    cluster: &ClusterName,
    record: &WorkloadRecord,
    reasons: Vec<String>,
    report: &mut Report,
) -> Result<FailedOver, Error> {
    let why = reasons.join("; ");
    if record.state != WorkloadState::Refused || record.reason != why {
        let refused = WorkloadRecord {
            state: WorkloadState::Refused,
            since: deps.clock.now(),
            reason: why.clone(),
            ..record.clone()
        };
        if deps.store.save_workload(cluster, &refused).await?.is_some() {
            refused_note(group, &record.workload, &why, report);
        }
    }
    Ok(FailedOver::Refused { workload: record.workload.to_string(), reasons })
}

/// How long a step's claim may stand without its patch before the scheduled run takes it as
/// never sent (its delivery died): far longer than a patch takes.
const CLAIM_AGE: chrono::Duration = chrono::Duration::seconds(30);

/// Records that a claimed step's patch is in place: its rollout is followed from now. Until
/// then, a Deployment without the patch is one the step never reached, not one reverted.
async fn landed(deps: &Deps, cluster: &ClusterName, record: &WorkloadRecord) -> Result<(), Error> {
    let started = WorkloadRecord { rollout_started: Some(deps.clock.now()), ..record.clone() };
    if deps.store.save_workload(cluster, &started).await?.is_none() {
        tracing::warn!(workload = %record.workload, "the step was recorded by another delivery meanwhile");
    }
    Ok(())
}

/// A Deployment outside the group's failover namespaces.
fn outside(workload: &WorkloadRef) -> FailedOver {
    let reason = format!("its namespace {} is not one the group's failover names", workload.namespace);
    FailedOver::Skipped { workload: workload.to_string(), reason }
}

/// The group's `kubernetes` block and its `failover` block; a group without them has nothing
/// to fail over or take back.
fn failover_block(group: &Group) -> Result<(&KubernetesSpec, &FailoverSpec), Error> {
    group.kubernetes.as_ref().and_then(|spec| spec.failover.as_ref().map(|failover| (spec, failover))).ok_or_else(
        || {
            Error::Workload(format!(
                "group {} has no kubernetes.failover block: none of its Deployments fails over",
                group.name
            ))
        },
    )
}

/// A group's failovers as the table keeps them: the records of its cluster that are its own
/// (none for a group without a `failover` block).
pub async fn of_group(deps: &Deps, group: &Group) -> Result<Vec<WorkloadRecord>, Error> {
    let Ok((spec, _)) = failover_block(group) else { return Ok(Vec::new()) };
    let records = deps.store.workloads(&spec.cluster).await?;
    Ok(records.into_iter().filter(|r| r.group == group.name).collect())
}

/// How long the API's listing waits for the cluster before it answers with the table alone.
const LISTING: std::time::Duration = std::time::Duration::from_secs(5);

/// A group's opted-in Deployments: each with its record, or — never failed over — where its
/// annotations say it stands; and why the cluster could not be read, when it could not (then
/// the records alone).
#[derive(Debug, Default)]
pub struct Listed {
    pub records: Vec<WorkloadRecord>,
    /// Opted in, no record: each with the state its annotations give (`spot` for one never moved).
    pub unrecorded: Vec<(WorkloadRef, WorkloadState)>,
    pub cluster_error: Option<String>,
}

/// The group's failovers and the rest of its opted-in Deployments, for the API.
pub async fn listed(deps: &Deps, group: &Group) -> Result<Listed, Error> {
    let records = of_group(deps, group).await?;
    let Ok((spec, failover)) = failover_block(group) else { return Ok(Listed::default()) };
    let read = tokio::time::timeout(LISTING, async {
        let kube = deps.clusters.connect(spec, deps.clock.now()).await?;
        let mut found = Vec::new();
        for namespace in &failover.namespaces {
            found.extend(kube.deployments(namespace).await?.into_iter().filter(DeploymentView::opted_in));
        }
        Ok::<_, Error>(found)
    })
    .await
    .unwrap_or_else(|_| Err(Error::Unfinished(format!("the cluster did not answer within {} s", LISTING.as_secs()))));
    let (unrecorded, cluster_error) = match read {
        Ok(found) => {
            let unrecorded = found
                .into_iter()
                .filter(|d| !records.iter().any(|r| r.workload == d.workload))
                .map(|d| {
                    let state = d.state();
                    (d.workload, state)
                })
                .collect();
            (unrecorded, None)
        }
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    Ok(Listed { records, unrecorded, cluster_error })
}

/// A failover asked for through the API: no opt-in annotation needed, but a failover namespace
/// and pods that can run on Fargate.
pub async fn fail_over_by_hand(
    deps: &Deps,
    group: &Group,
    workload: &WorkloadRef,
    report: &mut Report,
) -> Result<FailedOver, Error> {
    let (spec, failover) = failover_block(group)?;
    if !failover.namespaces.contains(&workload.namespace) {
        // Answered before the cluster is reached.
        return Ok(outside(workload));
    }
    let kube = deps.clusters.connect(spec, deps.clock.now()).await?;
    let reason = "asked through the API";
    fail_over(deps, group, spec, failover, &kube, workload, FailoverCause::Manual, reason, report).await
}

/// What came of a way back asked for through the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum RecoveredByHand {
    /// Patched back to Spot now; the scheduled run follows its rollout.
    Started { workload: String },
    /// Its failover does not have it on Fargate (its state says where it is).
    NotOnFargate { workload: String, state: WorkloadState },
    /// Another Deployment of the cluster is on its way back: one at a time.
    Busy { workload: String, recovering: String },
    /// The Deployment is not in the cluster.
    Gone { workload: String },
    /// Not patched: another request took the step, or the Deployment is not as its record says.
    Idle { workload: String, reason: String },
}

/// The way back asked for through the API: now, its cooldown skipped, but one Deployment of a
/// cluster at a time, and only one on Fargate.
pub async fn recover_by_hand(
    deps: &Deps,
    group: &Group,
    workload: &WorkloadRef,
    report: &mut Report,
) -> Result<RecoveredByHand, Error> {
    let (spec, failover) = failover_block(group)?;
    let name = workload.to_string();
    let records = deps.store.workloads(&spec.cluster).await?;
    let ours = records.iter().find(|r| r.workload == *workload && r.group == group.name);
    let Some(record) = ours.filter(|r| r.state == WorkloadState::Fargate).cloned() else {
        let state = ours.map_or(WorkloadState::Spot, |r| r.state);
        return Ok(RecoveredByHand::NotOnFargate { workload: name, state });
    };
    if let Some(other) = records.iter().find(|r| r.state == WorkloadState::Recovering) {
        return Ok(RecoveredByHand::Busy { workload: name, recovering: other.workload.to_string() });
    }
    let kube = deps.clusters.connect(spec, deps.clock.now()).await?;
    if kube.deployment(workload).await?.is_none() {
        return Ok(RecoveredByHand::Gone { workload: name });
    }
    let mut recovering = false;
    Ok(match start_recovery(deps, group, failover, &kube, record, &mut recovering, report).await? {
        Followed::RecoveryStarted { workload } => RecoveredByHand::Started { workload },
        Followed::Idle { workload, reason } => RecoveredByHand::Idle { workload, reason },
        _ => RecoveredByHand::Idle { workload: name, reason: "another request took this step first".into() },
    })
}

/// What sending one patch came to.
enum Sent {
    Applied,
    Gone,
    /// A conflict or a lost answer: read the Deployment again and decide anew.
    Again,
}

async fn send(kube: &KubeClient, workload: &WorkloadRef, patch: &serde_json::Value) -> Result<Sent, Error> {
    match kube.patch_deployment(workload, patch).await {
        Ok(Patched::Applied(_)) => Ok(Sent::Applied),
        Ok(Patched::Gone) => Ok(Sent::Gone),
        Ok(Patched::Conflict) => Ok(Sent::Again),
        Err(e) if e.is_retryable() => {
            tracing::warn!(workload = %workload, error = %e, "patch unanswered; reading the Deployment again");
            Ok(Sent::Again)
        }
        Err(e) => Err(e.into()),
    }
}

/// The table caught up with a Deployment its annotations say is on Fargate (a delivery died
/// between its patch and its record).
async fn sync_from(
    deps: &Deps,
    cluster: &ClusterName,
    record: &WorkloadRecord,
    d: &DeploymentView,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let migrated = d
        .annotation(crate::domain::annotations::MIGRATED_AT)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(now, |t| t.with_timezone(&Utc));
    let synced = WorkloadRecord {
        state: d.state(),
        since: migrated,
        reason: d.annotation(crate::domain::annotations::REASON).unwrap_or_default().to_string(),
        rollout_started: Some(migrated),
        migrated_at: Some(migrated),
        ..record.clone()
    };
    deps.store.save_workload(cluster, &synced).await?;
    Ok(())
}

fn refused_note(group: &Group, workload: &WorkloadRef, why: &str, report: &mut Report) {
    let text = format!("{workload} cannot fail over to Fargate: {why}");
    report.note(&group.name, None, HistoryKind::WorkloadRefused, text.clone());
    report.alert(
        Alert::new(AlertKind::WorkloadRefused, &group.name, Severity::Warning, format!("{}: {text}", group.name))
            .fact("deployment", workload)
            .fact("reason", why),
    );
}

fn failed_over_note(
    group: &Group,
    spec: &KubernetesSpec,
    workload: &WorkloadRef,
    cause: FailoverCause,
    reason: &str,
    report: &mut Report,
) {
    let text = format!("{workload} patched to Fargate ({reason}); its rollout is followed");
    report.note(&group.name, None, HistoryKind::WorkloadFailedOver, text.clone());
    report.alert(
        Alert::new(AlertKind::WorkloadFailedOver, &group.name, Severity::Warning, format!("{}: {text}", group.name))
            .fact("deployment", workload)
            .fact("cluster", &spec.cluster)
            .fact(
                "cause",
                serde_json::to_value(cause).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            ),
    );
    metrics::counter!("WorkloadsFailedOver", "group" => group.name.to_string()).increment(1);
}

/// What the scheduled run did for one failover.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Followed {
    Progressing {
        workload: String,
    },
    OnFargate {
        workload: String,
    },
    RolloutFailed {
        workload: String,
        reason: String,
    },
    RecoveryStarted {
        workload: String,
    },
    Recovered {
        workload: String,
    },
    RolledBack {
        workload: String,
        reason: String,
        next_attempt: DateTime<Utc>,
    },
    Waiting {
        workload: String,
        until: DateTime<Utc>,
    },
    Reverted {
        workload: String,
    },
    /// Another delivery won this step.
    Taken {
        workload: String,
    },
    Idle {
        workload: String,
        reason: String,
    },
}

/// The scheduled run's pass over a group's failovers: follow rollouts, take one back.
pub async fn follow_up(deps: &Deps, group: &Group, report: &mut Report) -> Result<Vec<Followed>, Error> {
    let Some(spec) = &group.kubernetes else { return Ok(Vec::new()) };
    let Some(failover) = &spec.failover else { return Ok(Vec::new()) };
    let records = deps.store.workloads(&spec.cluster).await?;
    let ours: Vec<WorkloadRecord> = records.iter().filter(|r| r.group == group.name).cloned().collect();
    if ours.is_empty() && group.status.fallback.is_none() {
        return Ok(Vec::new());
    }
    let now = deps.clock.now();
    let kube = deps.clusters.connect(spec, now).await?;
    let mut out = Vec::new();
    let mut recovering = records.iter().any(|r| r.state == WorkloadState::Recovering);
    for record in ours {
        let step = follow(deps, group, spec, failover, &kube, record, &mut recovering, report).await?;
        out.push(step);
    }
    if group.status.fallback.is_some() {
        // No Spot capacity: the group's opted-in Deployments go to Fargate too.
        let reason = format!("group {} fell back to On-Demand", group.name);
        for namespace in &failover.namespaces {
            for d in kube.deployments(namespace).await? {
                if d.opted_in() && d.state() == WorkloadState::Spot {
                    let cause = FailoverCause::Fallback;
                    fail_over(deps, group, spec, failover, &kube, &d.workload, cause, &reason, report).await?;
                }
            }
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments, reason = "one step with all it reads")]
async fn follow(
    deps: &Deps,
    group: &Group,
    spec: &KubernetesSpec,
    failover: &FailoverSpec,
    kube: &KubeClient,
    record: WorkloadRecord,
    recovering: &mut bool,
    report: &mut Report,
) -> Result<Followed, Error> {
    let workload = record.workload.to_string();
    let cluster = &spec.cluster;
    let now = deps.clock.now();
    let idle = |reason: &str| Ok(Followed::Idle { workload: workload.clone(), reason: reason.to_string() });
    if matches!(record.state, WorkloadState::Spot | WorkloadState::Refused) {
        return idle("nothing to follow");
    }
    let Some(d) = kube.deployment(&record.workload).await? else {
        let gone = WorkloadRecord { state: WorkloadState::Spot, since: now, reason: "deleted".into(), ..record };
        deps.store.save_workload(cluster, &gone).await?;
        return idle("the Deployment is gone");
    };
    let label = &failover.label;
    if record.rollout_started.is_none() {
        return unlanded(deps, group, spec, failover, kube, record, &d, report).await;
    }
    if failover::reverted(&d, &record, label) {
        return reverted(deps, group, cluster, record, report).await;
    }
    let policy = &group.policy.recovery;
    match record.state {
        WorkloadState::FailingOver => {
            let started = record.rollout_started.unwrap_or(record.since);
            match failover::rollout(&d.rollout, started, failover.rollout_timeout, now) {
                Rollout::Progressing => Ok(Followed::Progressing { workload }),
                Rollout::Done => {
                    if kube.ready_endpoints(&d.workload.namespace, &d.template_labels()).await? == Some(0) {
                        return Ok(Followed::Progressing { workload });
                    }
                    // After a failed way back, its backoff was set when it rolled back.
                    let next = record.next_attempt.unwrap_or_else(|| failover::next_attempt(&record, policy, now));
                    let done = WorkloadRecord {
                        state: WorkloadState::Fargate,
                        since: now,
                        next_attempt: Some(next),
                        ..record.clone()
                    };
                    // The Deployment first: a record saved after it never runs ahead of it.
                    annotate(kube, &d, WorkloadState::Fargate, now).await?;
                    let Some(_) = deps.store.save_workload(cluster, &done).await? else {
                        return Ok(Followed::Taken { workload });
                    };
                    let text = format!(
                        "{workload} runs on Fargate: its rollout is done and its Service has ready endpoints; back to Spot from {}",
                        stamp(next)
                    );
                    notify(report, group, Told::OnFargate, &text, &workload);
                    Ok(Followed::OnFargate { workload })
                }
                Rollout::Failed(why) => {
                    let next = record.next_attempt.unwrap_or_else(|| failover::next_attempt(&record, policy, now));
                    let failed = WorkloadRecord {
                        state: WorkloadState::Fargate,
                        since: now,
                        reason: format!("its rollout to Fargate failed: {why}"),
                        next_attempt: Some(next),
                        ..record.clone()
                    };
                    // The Deployment first: a record saved after it never runs ahead of it.
                    annotate(kube, &d, WorkloadState::Fargate, now).await?;
                    let Some(_) = deps.store.save_workload(cluster, &failed).await? else {
                        return Ok(Followed::Taken { workload });
                    };
                    let text = format!("{workload}'s rollout to Fargate failed: {why}");
                    notify(report, group, Told::RolloutFailed, &text, &workload);
                    Ok(Followed::RolloutFailed { workload, reason: why })
                }
            }
        }
        WorkloadState::Recovering => {
            let started = record.rollout_started.unwrap_or(record.since);
            let outcome = match failover::rollout(&d.rollout, started, failover.recovery_timeout, now) {
                Rollout::Done => match kube.ready_endpoints(&d.workload.namespace, &d.template_labels()).await? {
                    Some(0)
                        if now - started
                            >= chrono::Duration::from_std(failover.recovery_timeout).unwrap_or_default() =>
                    {
                        Rollout::Failed("its Service has no ready endpoints".to_string())
                    }
                    Some(0) => Rollout::Progressing,
                    _ => Rollout::Done,
                },
                other => other,
            };
            match outcome {
                Rollout::Progressing => Ok(Followed::Progressing { workload }),
                Rollout::Done => {
                    let back = WorkloadRecord {
                        state: WorkloadState::Spot,
                        since: now,
                        reason: "back on Spot".into(),
                        rollout_started: None,
                        last_recovered_at: Some(now),
                        failed_attempts: 0,
                        next_attempt: None,
                        ..record.clone()
                    };
                    // The Deployment first: a record saved after it never runs ahead of it.
                    annotate(kube, &d, WorkloadState::Spot, now).await?;
                    let Some(_) = deps.store.save_workload(cluster, &back).await? else {
                        return Ok(Followed::Taken { workload });
                    };
                    *recovering = false;
                    let text =
                        format!("{workload} is back on Spot: its rollout is done and its Service has ready endpoints");
                    notify(report, group, Told::Recovered, &text, &workload);
                    Ok(Followed::Recovered { workload })
                }
                Rollout::Failed(why) => {
                    roll_back(deps, group, failover, kube, record, &d, &why, recovering, report).await
                }
            }
        }
        WorkloadState::Fargate => {
            // Its annotations settled late (a run that failed between them and the record).
            if d.state() == WorkloadState::FailingOver {
                annotate(kube, &d, WorkloadState::Fargate, now).await?;
            }
            if *recovering {
                return idle("another Deployment of the cluster is on its way back");
            }
            match failover::way_back(&record, policy, now) {
                WayBack::Nothing => idle("nothing to do"),
                WayBack::Wait(until) => Ok(Followed::Waiting { workload, until }),
                WayBack::OutsideWindow => idle("outside the recovery windows"),
                WayBack::Go => {
                    if group.status.fallback.is_some() {
                        return idle("its group is still on On-Demand for lack of Spot capacity");
                    }
                    if !failover::room_for(&kube.spot_nodes().await?, &d.template) {
                        return idle("no Spot node is Ready with room for one of its pods");
                    }
                    start_recovery(deps, group, failover, kube, record, recovering, report).await
                }
            }
        }
        WorkloadState::Spot | WorkloadState::Refused => idle("nothing to follow"),
    }
}

/// A step claimed but not known to have landed (its delivery died, or is slow): the Deployment
/// tells. Patched: followed from now. Not patched, and the claim old: a failover is sent again
/// (the resourceVersion keeps it single), a way back given up without counting it.
#[allow(clippy::too_many_arguments, reason = "one step with all it reads")]
async fn unlanded(
    deps: &Deps,
    group: &Group,
    spec: &KubernetesSpec,
    failover: &FailoverSpec,
    kube: &KubeClient,
    record: WorkloadRecord,
    d: &DeploymentView,
    report: &mut Report,
) -> Result<Followed, Error> {
    let workload = record.workload.to_string();
    let now = deps.clock.now();
    if d.state() == record.state {
        landed(deps, &spec.cluster, &record).await?;
        return Ok(Followed::Progressing { workload });
    }
    if now - record.since < CLAIM_AGE {
        return Ok(Followed::Idle { workload, reason: "its step was just claimed".into() });
    }
    match record.state {
        WorkloadState::FailingOver => {
            let reason = record.reason.clone();
            let cause = FailoverCause::Warning;
            fail_over(deps, group, spec, failover, kube, &record.workload, cause, &reason, report).await?;
            Ok(Followed::Progressing { workload })
        }
        _ => {
            let back = WorkloadRecord { state: WorkloadState::Fargate, since: now, ..record };
            deps.store.save_workload(&spec.cluster, &back).await?;
            Ok(Followed::Idle { workload, reason: "its way back was never sent; it is tried again".into() })
        }
    }
}

/// The way back for one Deployment on Fargate, by the schedule or by hand: won in the table,
/// then patched once.
pub async fn start_recovery(
    deps: &Deps,
    group: &Group,
    failover: &FailoverSpec,
    kube: &KubeClient,
    mut record: WorkloadRecord,
    recovering: &mut bool,
    report: &mut Report,
) -> Result<Followed, Error> {
    let workload = record.workload.to_string();
    let Some(spec) = &group.kubernetes else {
        return Ok(Followed::Idle { workload, reason: "its group has no kubernetes block".into() });
    };
    for _ in 0..TRIES {
        let Some(d) = kube.deployment(&record.workload).await? else {
            return Ok(Followed::Idle { workload, reason: "the Deployment is gone".into() });
        };
        let patch = match failover::recover(&d, &failover.label) {
            Ok(Move::Patch(patch)) => patch,
            Ok(_) => return Ok(Followed::Idle { workload, reason: "not on Fargate".into() }),
            Err(why) => return Err(Error::Workload(format!("{workload} cannot go back to Spot: {why}"))),
        };
        let now = deps.clock.now();
        if record.state != WorkloadState::Recovering {
            let claim = WorkloadRecord {
                state: WorkloadState::Recovering,
                since: now,
                reason: "back to Spot".into(),
                rollout_started: None,
                ..record.clone()
            };
            let Some(won) = deps.store.save_workload(&spec.cluster, &claim).await? else {
                return Ok(Followed::Taken { workload });
            };
            record = won;
        }
        match send(kube, &record.workload, &patch).await? {
            Sent::Applied => {
                landed(deps, &spec.cluster, &record).await?;
                *recovering = true;
                let text = format!("{workload} is going back to Spot: its saved node selectors restored");
                report.note(&group.name, None, HistoryKind::WorkloadRecoveryStarted, text);
                return Ok(Followed::RecoveryStarted { workload });
            }
            Sent::Gone => return Ok(Followed::Idle { workload, reason: "the Deployment is gone".into() }),
            Sent::Again => {}
        }
    }
    Err(Error::Unfinished(format!("{workload} kept changing under its way back")))
}

/// A way back whose rollout failed: to Fargate again, the attempt counted, the next one later.
#[allow(clippy::too_many_arguments, reason = "one step with all it reads")]
async fn roll_back(
    deps: &Deps,
    group: &Group,
    failover: &FailoverSpec,
    kube: &KubeClient,
    record: WorkloadRecord,
    d: &DeploymentView,
    why: &str,
    recovering: &mut bool,
    report: &mut Report,
) -> Result<Followed, Error> {
    let workload = record.workload.to_string();
    let Some(spec) = &group.kubernetes else {
        return Ok(Followed::Idle { workload, reason: "its group has no kubernetes block".into() });
    };
    let now = deps.clock.now();
    let failed_attempts = record.failed_attempts.saturating_add(1);
    let counted = WorkloadRecord { failed_attempts, ..record.clone() };
    let next = failover::next_attempt(&counted, &group.policy.recovery, now);
    let claim = WorkloadRecord {
        state: WorkloadState::FailingOver,
        since: now,
        reason: format!("the way back failed: {why}"),
        rollout_started: None,
        next_attempt: Some(next),
        ..counted
    };
    let Some(won) = deps.store.save_workload(&spec.cluster, &claim).await? else {
        return Ok(Followed::Taken { workload });
    };
    let mut current = d.clone();
    for _ in 0..TRIES {
        let patch = match failover::roll_back(&current, &failover.label, why, failed_attempts) {
            Move::Patch(patch) => patch,
            // Its lost answer was taken: it is on its way to Fargate.
            Move::Already(WorkloadState::FailingOver) => {
                landed(deps, &spec.cluster, &won).await?;
                break;
            }
            _ => break,
        };
        match send(kube, &record.workload, &patch).await? {
            Sent::Applied => {
                landed(deps, &spec.cluster, &won).await?;
                break;
            }
            Sent::Gone => break,
            Sent::Again => match kube.deployment(&record.workload).await? {
                Some(again) => current = again,
                None => break,
            },
        }
    }
    *recovering = false;
    let text = format!(
        "{workload}'s way back to Spot failed ({why}): rolled back to Fargate; attempt {failed_attempts} failed, the next from {}",
        stamp(next)
    );
    notify(report, group, Told::RolledBack, &text, &workload);
    Ok(Followed::RolledBack { workload, reason: why.to_string(), next_attempt: next })
}

/// Someone reverted the failover patch (a GitOps controller): reported, and the table follows
/// the Deployment as it is.
async fn reverted(
    deps: &Deps,
    group: &Group,
    cluster: &ClusterName,
    record: WorkloadRecord,
    report: &mut Report,
) -> Result<Followed, Error> {
    let workload = record.workload.to_string();
    let now = deps.clock.now();
    let back = WorkloadRecord {
        state: WorkloadState::Spot,
        since: now,
        reason: "its failover patch was reverted by someone else".into(),
        rollout_started: None,
        ..record
    };
    if deps.store.save_workload(cluster, &back).await?.is_some() {
        let text = format!(
            "{workload}'s Fargate patch was reverted (a GitOps controller? see the README's ignoreDifferences): it runs where its template says"
        );
        notify(report, group, Told::Reverted, &text, &workload);
    }
    Ok(Followed::Reverted { workload })
}

/// The Deployment's annotations once its rollout is done (a conflict is read again).
async fn annotate(kube: &KubeClient, d: &DeploymentView, to: WorkloadState, now: DateTime<Utc>) -> Result<(), Error> {
    let mut current = d.clone();
    for _ in 0..TRIES {
        if current.state() == to {
            return Ok(());
        }
        match send(kube, &current.workload, &failover::settled(&current, to, now)).await? {
            Sent::Applied | Sent::Gone => return Ok(()),
            Sent::Again => match kube.deployment(&current.workload).await? {
                Some(again) => current = again,
                None => return Ok(()),
            },
        }
    }
    Err(Error::Unfinished(format!("{} kept changing under its annotations", d.workload)))
}

/// A time as history and alerts write it.
fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What a step tells: its alert, its history entry and how loud.
#[derive(Clone, Copy)]
enum Told {
    OnFargate,
    RolloutFailed,
    Recovered,
    RolledBack,
    Reverted,
}

impl Told {
    fn kinds(self) -> (AlertKind, HistoryKind, Severity) {
        match self {
            Self::OnFargate => (AlertKind::WorkloadOnFargate, HistoryKind::WorkloadOnFargate, Severity::Info),
            Self::RolloutFailed => {
                (AlertKind::WorkloadRolloutFailed, HistoryKind::WorkloadRolloutFailed, Severity::Critical)
            }
            Self::Recovered => (AlertKind::WorkloadRecovered, HistoryKind::WorkloadRecovered, Severity::Info),
            Self::RolledBack => (AlertKind::WorkloadRolledBack, HistoryKind::WorkloadRolledBack, Severity::Warning),
            Self::Reverted => (AlertKind::WorkloadReverted, HistoryKind::WorkloadReverted, Severity::Warning),
        }
    }
}

fn notify(report: &mut Report, group: &Group, told: Told, text: &str, workload: &str) {
    let (alert, history, severity) = told.kinds();
    report.note(&group.name, None, history, text.to_string());
    report.alert(
        Alert::new(alert, &group.name, severity, format!("{}: {text}", group.name)).fact("deployment", workload),
    );
}
