//! The scheduled run (every five minutes) over every group: the savings ledger, the reconcile
//! (table against EC2), the way back to Spot, the images, an Auto Scaling group's failed
//! scaling activities and the volume moves still under way; and, on Auto Scaling's `EC2 Instance
//! Launch Unsuccessful`, the fallback to On-Demand. Nothing here waits on AWS: what is not done
//! yet (a volume still detaching) is looked at again next run.

mod fallback;
mod ledger;
mod reconcile;
mod recovery;

use std::collections::HashSet;

use serde::Serialize;

use crate::domain::{Deadline, GROUP_TAG, Group, GroupName};
use crate::runtime::{Deps, Error};
use crate::workflows::failover;
use crate::workflows::images::{self, Probation, Refreshed};
use crate::workflows::online;
use crate::workflows::report::Report;

pub use fallback::{Activities, LaunchFailure, launch_failed};
pub use ledger::Accrued;
pub use reconcile::Reconciled;
pub use recovery::Recovered;

/// What a scheduled run did, group by group, and what it accrued.
#[derive(Debug, Serialize)]
pub struct Run {
    pub groups: Vec<GroupRun>,
    pub savings: Reported<Vec<Accrued>>,
}

/// What a scheduled run did for one group: each job on its own, a failing one not stopping
/// the others.
#[derive(Debug, Serialize)]
pub struct GroupRun {
    pub group: GroupName,
    pub reconcile: Reported<Reconciled>,
    pub recovery: Reported<Recovered>,
    pub images: Reported<Refreshed>,
    pub probation: Reported<Probation>,
    pub scaling_activities: Reported<Activities>,
    pub volume_moves: Reported<online::Moves>,
    /// Fargate failovers followed and taken back (groups with a `kubernetes.failover` block).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Reported<Vec<failover::Followed>>>,
}

/// A job's outcome, or the error that stopped it (the next run tries again).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reported<T> {
    Done(T),
    Failed { error: String },
}

impl<T> Reported<T> {
    fn of(result: Result<T, Error>, group: &Group) -> Self {
        match result {
            Ok(done) => Reported::Done(done),
            Err(err) => {
                tracing::error!(group = %group.name, error = %err, "scheduled step failed; the next run tries again");
                Reported::Failed { error: err.to_string() }
            }
        }
    }
}

/// One scheduled run over every group.
pub async fn run(deps: &Deps, deadline: Deadline) -> Result<Run, Error> {
    let now = deps.clock.now();
    let groups = deps.store.groups().await?;
    let members = futures::future::try_join_all(groups.iter().map(|g| deps.store.members(&g.name))).await?;
    // One tag-filtered listing for the whole fleet: never a call per instance.
    let tags = vec![GROUP_TAG.to_string(), "aws:autoscaling:groupName".to_string()];
    let (instances, (_, health)) =
        futures::try_join!(async { deps.clients.ec2.tagged(&tags).await.map_err(Error::from) }, async {
            deps.store.lookups(&[]).await.map_err(Error::from)
        },)?;
    let managed: HashSet<&str> = members.iter().flatten().map(|m| m.instance_id.as_str()).collect();
    // A member missing from the listing may have lost its tag: ask for it by id before calling
    // it vanished (only when something is missing, which is rare).
    let unlisted: Vec<String> = managed
        .iter()
        .filter(|id| !instances.iter().any(|i| i.instance_id == **id))
        .map(std::string::ToString::to_string)
        .collect();
    let mut known = instances.clone();
    if !unlisted.is_empty() {
        known.extend(deps.clients.ec2.instances(&unlisted).await?);
    }
    let mut report = Report::new(deps);
    let savings = match ledger::accrue(deps, &groups, &members, &known, now).await {
        Ok(accrued) => Reported::Done(accrued),
        Err(err) => {
            tracing::error!(error = %err, "savings not accrued this run; the next run counts the time");
            Reported::Failed { error: err.to_string() }
        }
    };
    let mut summary = Vec::new();
    for (group, members) in groups.iter().zip(&members) {
        let reconciled = reconcile::reconcile(deps, group, members, &known, &managed, &health, now, &mut report).await;
        let recovered = recovery::recover(deps, group, members, &health, now, &mut report).await;
        let images = images::refresh(deps, group, members, &known, now, &mut report).await;
        let probation = images::probation(deps, group, members, &known, now, &mut report).await;
        let activities = fallback::activities(deps, group, now, &mut report).await;
        let volumes = online::continue_moves(deps, group, &mut report).await;
        let workloads = match group.kubernetes.as_ref().and_then(|k| k.failover.as_ref()) {
            Some(_) => Some(Reported::of(failover::follow_up(deps, group, &mut report).await, group)),
            None => None,
        };
        summary.push(GroupRun {
            group: group.name.clone(),
            reconcile: reconciled,
            recovery: Reported::of(recovered, group),
            images: Reported::of(images, group),
            probation: Reported::of(probation, group),
            scaling_activities: activities,
            volume_moves: Reported::of(volumes, group),
            workloads,
        });
    }
    // What the fallback alarm watches: how many groups are on On-Demand, and for how long.
    let fallen: Vec<i64> =
        groups.iter().filter_map(|g| g.status.fallback.as_ref()).map(|f| (now - f.since).num_minutes()).collect();
    metrics::gauge!("FallbacksActive").set(fallen.len() as f64);
    metrics::gauge!("LongestFallbackMinutes").set(fallen.iter().copied().max().unwrap_or(0) as f64);
    report.send(deps, deadline).await;
    Ok(Run { groups: summary, savings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Day, OnDemandShare, Usage};
    use chrono::{DateTime, Utc};
    use serde_json::{Value, json};

    fn answer(outcome: impl Serialize) -> Value {
        serde_json::to_value(outcome).unwrap()
    }

    /// The typed outcomes answer exactly as the `json!` literals they replace: tests and the
    /// demo read these fields.
    #[test]
    fn the_outcomes_answer_as_before() {
        let at = DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z").unwrap().with_timezone(&Utc);
        let share = OnDemandShare { base: 1, percent_above_base: 20 };
        let ids = |ids: &[&str]| Some(ids.iter().map(std::string::ToString::to_string).collect::<Vec<_>>());
        let failed = |error: &str| Reported::<Recovered>::Failed { error: error.into() };
        let cases: Vec<(Value, Value)> = vec![
            (answer(Reconciled::default()), json!({"drift": false})),
            (
                answer(Reconciled {
                    drift: true,
                    adopted: ids(&["i-1"]),
                    launched: ids(&["i-2"]),
                    closed: ids(&["i-3"]),
                }),
                json!({"drift": true, "adopted": ["i-1"], "launched": ["i-2"], "closed": ["i-3"]}),
            ),
            (
                answer(Reconciled { drift: true, closed: ids(&[]), ..Reconciled::default() }),
                json!({"drift": true, "closed": []}),
            ),
            (answer(Recovered::Nothing), json!({"step": "nothing"})),
            (answer(Recovered::InFlight { member: Some("i-1".into()) }), json!({"step": "in-flight", "member": "i-1"})),
            (answer(Recovered::InFlight { member: None }), json!({"step": "in-flight"})),
            (answer(Recovered::Wait { until: at }), json!({"step": "wait", "until": at})),
            (answer(Recovered::OutsideWindow), json!({"step": "outside-window"})),
            (
                answer(Recovered::Busy { member: "i-1".into(), reason: "another replacement holds the member" }),
                json!({"step": "busy", "member": "i-1", "reason": "another replacement holds the member"}),
            ),
            (
                answer(Recovered::Failed { member: "i-1".into(), next_attempt_at: Some(at), failed_attempts: 2 }),
                json!({"step": "failed", "member": "i-1", "next_attempt_at": at, "failed_attempts": 2}),
            ),
            (
                answer(Recovered::Failed { member: "i-1".into(), next_attempt_at: None, failed_attempts: 0 }),
                json!({"step": "failed", "member": "i-1", "next_attempt_at": null, "failed_attempts": 0}),
            ),
            (
                answer(Recovered::Replacing { member: "i-1".into(), replacement: "i-2".into() }),
                json!({"step": "replacing", "member": "i-1", "replacement": "i-2"}),
            ),
            (
                answer(Recovered::Restored { on_demand_share: share }),
                json!({"step": "restored", "on_demand_share": share}),
            ),
            (answer(failed("store down")), json!({"error": "store down"})),
            (answer(Reported::Done(Recovered::Nothing)), json!({"step": "nothing"})),
            (
                answer(LaunchFailure::Ignored { reason: "no group follows this Auto Scaling group" }),
                json!({"action": "ignored", "reason": "no group follows this Auto Scaling group"}),
            ),
            (
                answer(LaunchFailure::Recorded { reason: "not a capacity failure" }),
                json!({"action": "recorded", "reason": "not a capacity failure"}),
            ),
            (
                answer(LaunchFailure::Notified { reason: "fallback is off" }),
                json!({"action": "notified", "reason": "fallback is off"}),
            ),
            (
                answer(LaunchFailure::AlreadyOnDemand { reason: "already on On-Demand" }),
                json!({"action": "none", "reason": "already on On-Demand"}),
            ),
            (answer(LaunchFailure::Fallback { restore: share }), json!({"action": "fallback", "restore": share})),
            (answer(Activities::NotChecked { checked: false, reason: None }), json!({"checked": false})),
            (
                answer(Activities::NotChecked { checked: false, reason: Some("already on On-Demand") }),
                json!({"checked": false, "reason": "already on On-Demand"}),
            ),
            (answer(Activities::Checked { checked: true, failures: 2 }), json!({"checked": true, "failures": 2})),
            (
                answer(Activities::Answered(LaunchFailure::Fallback { restore: share })),
                json!({"action": "fallback", "restore": share}),
            ),
            (
                answer(Accrued {
                    group: GroupName::try_from("web".to_string()).unwrap(),
                    day: Day::of(at),
                    usage: Usage::default(),
                }),
                json!({"group": "web", "day": "2026-11-21", "usage": Usage::default()}),
            ),
        ];
        for (got, expected) in cases {
            assert_eq!(got, expected);
        }
    }
}
