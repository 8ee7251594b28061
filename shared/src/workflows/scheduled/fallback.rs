//! An Auto Scaling group that cannot launch for lack of Spot capacity falls back to On-Demand:
//! on Auto Scaling's `EC2 Instance Launch Unsuccessful` event, and, should that event be missed,
//! on the failed scaling activities a scheduled run finds.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::Reported;
use crate::adapters::aws::ec2;
use crate::adapters::notify::{Alert, Severity};
use crate::adapters::store::Counted;
use crate::decisions::fallback::{self, Answer};
use crate::decisions::recovery;
use crate::domain::{AlertKind, Day, Deadline, Group, GroupKind, HistoryKind, OnDemandShare};
use crate::runtime::error::AsgProblem;
use crate::runtime::event::{Event, LaunchUnsuccessful};
use crate::runtime::{Deps, Error};
use crate::workflows::report::{self, Report};

/// How far back a scheduled run looks for failed scaling activities: a little more than the
/// schedule, so none falls between two runs.
const ACTIVITY_WINDOW_MINUTES: i64 = 10;

/// What a failed Auto Scaling launch brought about.
#[derive(Debug, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum LaunchFailure {
    /// No group follows this Auto Scaling group.
    Ignored {
        reason: &'static str,
    },
    /// Not a capacity failure: written to the history only.
    Recorded {
        reason: &'static str,
    },
    /// The group's fallback is off: told, nothing changed.
    Notified {
        reason: &'static str,
    },
    #[serde(rename = "none")]
    AlreadyOnDemand {
        reason: &'static str,
    },
    Fallback {
        restore: OnDemandShare,
    },
}

/// What a scheduled run found among an Auto Scaling group's scaling activities.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Activities {
    /// Not looked at: not an Auto Scaling group (no reason), or on On-Demand already.
    NotChecked {
        checked: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    /// Looked at; none failed for lack of capacity.
    Checked { checked: bool, failures: usize },
    /// One failed for lack of capacity: the fallback's outcome.
    Answered(LaunchFailure),
}

/// Auto Scaling could not launch (its `EC2 Instance Launch Unsuccessful` event).
pub async fn launch_failed(
    deps: &Deps,
    event: Event<LaunchUnsuccessful>,
    deadline: Deadline,
) -> Result<LaunchFailure, Error> {
    let now = deps.clock.now();
    let detail = &event.detail;
    let groups = deps.store.groups().await?;
    let Some(group) = groups.iter().find(|g| matches!(&g.kind, GroupKind::Asg(s) if s.asg_name == detail.asg_name))
    else {
        tracing::debug!(asg = %detail.asg_name, "no group follows this Auto Scaling group; ignored");
        return Ok(LaunchFailure::Ignored { reason: "no group follows this Auto Scaling group" });
    };
    report::reported(deps, deadline, async |report| {
        asg_fallback(deps, group, &detail.asg_name, &detail.status_message, now, report).await
    })
    .await
}

/// An Auto Scaling group failed to launch: for lack of Spot capacity, raise the On-Demand share so
/// desired capacity is met, and record the share to restore.
async fn asg_fallback(
    deps: &Deps,
    group: &Group,
    asg_name: &str,
    message: &str,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<LaunchFailure, Error> {
    match fallback::answer(group, ec2::mentions_capacity(message)) {
        Answer::Record => {
            let text = format!("{asg_name} could not launch: {message}");
            report.note(&group.name, None, HistoryKind::LaunchFailed, text);
            return Ok(LaunchFailure::Recorded { reason: "not a capacity failure" });
        }
        Answer::Notify => {
            report.alert(
                Alert::new(
                    AlertKind::NoCapacity,
                    &group.name,
                    Severity::Warning,
                    format!("{}: no Spot capacity; fallback is off", group.name),
                )
                .fact("message", message),
            );
            return Ok(LaunchFailure::Notified { reason: "fallback is off" });
        }
        Answer::AlreadyOnDemand => return Ok(LaunchFailure::AlreadyOnDemand { reason: "already on On-Demand" }),
        Answer::FallBack => {}
    }
    let asg = deps
        .clients
        .autoscaling
        .group(asg_name)
        .await?
        .ok_or_else(|| Error::AutoScaling(AsgProblem::Gone(asg_name.to_string())))?;
    let share = asg
        .on_demand_share()
        .ok_or_else(|| Error::AutoScaling(AsgProblem::NoMixedInstancesPolicy(asg_name.to_string())))?;
    let shares = fallback::shares(share);
    deps.clients.autoscaling.set_on_demand_share(&asg, shares.raised).await?;
    deps.store.update_group(&group.name, |g| recovery::note_fallback(g, message, now, Some(shares.restore))).await?;
    deps.store.count(&group.name, Day::of(now), Counted::Fallback, 1).await?;
    metrics::counter!("Fallbacks", "group" => group.name.to_string()).increment(1);
    let (restore, raised) = (shares.restore, shares.raised);
    let text = format!(
        "On-Demand share raised to {}% above base {} (was {}%)",
        raised.percent_above_base, raised.base, restore.percent_above_base
    );
    report.note(&group.name, None, HistoryKind::Fallback, format!("no Spot capacity: {text}"));
    report.alert(
        Alert::new(
            AlertKind::Fallback,
            &group.name,
            Severity::Warning,
            format!("{}: no Spot capacity, {text}", group.name),
        )
        .fact("asg", asg_name)
        .fact("message", message)
        .fact("restore", format!("base {} + {}%", restore.base, restore.percent_above_base)),
    );
    Ok(LaunchFailure::Fallback { restore })
}

/// An asg group's scaling activities that failed for lack of capacity since the last runs: the
/// same fallback as the launch-failure event (which a missed or filtered rule may not bring).
pub(super) async fn activities(
    deps: &Deps,
    group: &Group,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Reported<Activities> {
    let GroupKind::Asg(spec) = &group.kind else {
        return Reported::Done(Activities::NotChecked { checked: false, reason: None });
    };
    if group.status.fallback.is_some() {
        return Reported::Done(Activities::NotChecked { checked: false, reason: Some("already on On-Demand") });
    }
    let result = async {
        let failures = deps
            .clients
            .autoscaling
            .failed_activities(&spec.asg_name, now - Duration::minutes(ACTIVITY_WINDOW_MINUTES))
            .await?;
        match failures.iter().find(|m| ec2::mentions_capacity(m)) {
            Some(message) => {
                asg_fallback(deps, group, &spec.asg_name, message, now, report).await.map(Activities::Answered)
            }
            None => Ok(Activities::Checked { checked: true, failures: failures.len() }),
        }
    }
    .await;
    Reported::of(result, group)
}
