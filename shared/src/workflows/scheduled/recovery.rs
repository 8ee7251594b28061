//! The way back to Spot: a fallen-back standalone member replaced by a Spot instance, one at a
//! time; an Auto Scaling group's On-Demand share restored.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::adapters::notify::{Alert, Severity};
use crate::decisions::plan;
use crate::decisions::recovery::{self, Step};
use crate::domain::LaunchPlan;
use crate::domain::{
    AlertKind, Group, GroupKind, HistoryKind, Member, Old, OnDemandShare, PoolHealth, Reason, Retiring, StandaloneSpec,
};
use crate::runtime::error::AsgProblem;
use crate::runtime::{Deps, Error};
use crate::workflows::replacement;
use crate::workflows::report::Report;

/// A member on its way back to Spot stays locked this long at most.
const RECOVERY_LOCK_HOURS: i64 = 6;
const RECOVERY_HOLDER: &str = "recovery";

/// What the way back to Spot did this run.
#[derive(Debug, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Recovered {
    Nothing,
    /// A member is on its way back already (named when the decision saw it; not when the
    /// group's recovery slot was taken meanwhile).
    InFlight {
        #[serde(skip_serializing_if = "Option::is_none")]
        member: Option<String>,
    },
    Wait {
        until: DateTime<Utc>,
    },
    OutsideWindow,
    /// Another replacement holds the member.
    Busy {
        member: String,
        reason: &'static str,
    },
    Failed {
        member: String,
        next_attempt_at: Option<DateTime<Utc>>,
        failed_attempts: u32,
    },
    Replacing {
        member: String,
        replacement: String,
    },
    Restored {
        on_demand_share: OnDemandShare,
    },
}

pub(super) async fn recover(
    deps: &Deps,
    group: &Group,
    members: &[Member],
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Recovered, Error> {
    match (recovery::recovery_step(group, members, now), &group.kind) {
        (Step::Nothing, _) => Ok(Recovered::Nothing),
        (Step::InFlight(member), _) => Ok(Recovered::InFlight { member: Some(member) }),
        (Step::Wait(until), _) => Ok(Recovered::Wait { until }),
        (Step::OutsideWindow, _) => Ok(Recovered::OutsideWindow),
        (Step::Replace(member), GroupKind::Standalone(spec)) => {
            back_to_spot(deps, group, spec, members, &member, health, now, report).await
        }
        (Step::Restore(share), GroupKind::Asg(spec)) => restore(deps, group, &spec.asg_name, share, now, report).await,
        (Step::Replace(_) | Step::Restore(_), _) => Ok(Recovered::Nothing),
    }
}

/// Launches one Spot replacement for one fallen-back member. No On-Demand fallback here: the
/// point is to leave On-Demand. Failure pushes the next attempt back (doubling, capped).
#[allow(clippy::too_many_arguments, reason = "one recovery attempt, with what it records")]
async fn back_to_spot(
    deps: &Deps,
    group: &Group,
    spec: &StandaloneSpec,
    members: &[Member],
    member_id: &str,
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Recovered, Error> {
    let name = &group.name;
    // The group's recovery slot, then the member's lock: a recovery and anything else
    // replacing the same member never both act.
    let taken = deps
        .store
        .update_group(name, |g| {
            if g.status.recovery.in_flight.is_none() {
                g.status.recovery.in_flight = Some(member_id.to_string());
            }
        })
        .await?;
    if taken.and_then(|g| g.status.recovery.in_flight).as_deref() != Some(member_id) {
        return Ok(Recovered::InFlight { member: None });
    }
    if !deps.store.lock_instance(member_id, RECOVERY_HOLDER, now, Duration::hours(RECOVERY_LOCK_HOURS)).await? {
        deps.store.update_group(name, |g| g.status.recovery.in_flight = None).await?;
        let reason = "another replacement holds the member";
        return Ok(Recovered::Busy { member: member_id.to_string(), reason });
    }
    let member = members.iter().find(|m| m.instance_id == member_id);
    let attempt = group.status.recovery.failed_attempts.to_string();
    let olds = vec![Old { instance_id: member_id.to_string(), since: now, pool: member.and_then(Member::pool) }];
    let token = replacement::token([RECOVERY_HOLDER, member_id, attempt.as_str()]);
    let outcome = async {
        let request = LaunchPlan::new(spec, plan::launch_pools(spec, &[], health, now)?, olds, Reason::Recovery, token);
        let launched = replacement::launch_for(deps, group, &request).await?;
        let recorded = replacement::record(deps, group, &request, &launched, health, now).await;
        Ok::<_, Error>((launched, recorded))
    }
    .await;
    let (launched, recorded) = match outcome {
        Ok(done) => done,
        Err(err) => return failed_attempt(deps, group, member_id, &err.to_string(), now, report).await,
    };
    let Some((_, new)) = recorded.pairs.first() else {
        let error = format!("no Spot capacity: {}", launched.error_summary());
        return failed_attempt(deps, group, member_id, &error, now, report).await;
    };
    let retiring = Retiring { since: now, reason: Reason::Recovery, replaced_by: new.instance_id.clone() };
    deps.store.update_member(name, member_id, |m| m.role = m.role.clone().retire(retiring.clone())).await?;
    report.note(
        &group.name,
        Some(&new.instance_id),
        HistoryKind::RecoveryStarted,
        format!("{} launched on Spot to replace On-Demand {member_id}", new.instance_id),
    );
    report.alert(
        Alert::new(
            AlertKind::RecoveryStarted,
            name,
            Severity::Info,
            format!("{name}: moving {member_id} back to Spot with {}", new.instance_id),
        )
        .fact("instance", member_id)
        .fact("replacement", &new.instance_id)
        .fact("pool", new.pool().map(|p| p.to_string()).unwrap_or_default()),
    );
    Ok(Recovered::Replacing { member: member_id.to_string(), replacement: new.instance_id.clone() })
}

async fn failed_attempt(
    deps: &Deps,
    group: &Group,
    member_id: &str,
    error: &str,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Recovered, Error> {
    let name = &group.name;
    deps.store.unlock_instance(member_id, RECOVERY_HOLDER).await?;
    let saved = deps.store.update_group(name, |g| recovery::note_failed_attempt(g, error, now)).await?;
    let next = saved.as_ref().and_then(|g| g.status.recovery.next_attempt_at);
    let attempts = saved.as_ref().map(|g| g.status.recovery.failed_attempts).unwrap_or_default();
    report.note(
        &group.name,
        Some(member_id),
        HistoryKind::RecoveryFailed,
        format!("back to Spot failed ({error}); next attempt at {}", next.map(|n| n.to_rfc3339()).unwrap_or_default()),
    );
    report.alert(
        Alert::new(
            AlertKind::RecoveryFailed,
            name,
            Severity::Warning,
            format!("{name}: still no Spot capacity for {member_id}"),
        )
        .fact("instance", member_id)
        .fact("error", error)
        .fact("failed attempts", attempts)
        .fact("next attempt", next.map(|n| n.to_rfc3339()).unwrap_or_default()),
    );
    Ok(Recovered::Failed { member: member_id.to_string(), next_attempt_at: next, failed_attempts: attempts })
}

async fn restore(
    deps: &Deps,
    group: &Group,
    asg_name: &str,
    share: OnDemandShare,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Recovered, Error> {
    let Some(asg) = deps.clients.autoscaling.group(asg_name).await? else {
        return Err(Error::AutoScaling(AsgProblem::Gone(asg_name.to_string())));
    };
    deps.clients.autoscaling.set_on_demand_share(&asg, share).await?;
    deps.store.update_group(&group.name, |g| recovery::note_recovered(g, 0, now)).await?;
    metrics::counter!("Recoveries", "group" => group.name.to_string()).increment(1);
    let text = format!("On-Demand share restored to base {} + {}% above it", share.base, share.percent_above_base);
    report.note(&group.name, None, HistoryKind::Recovered, text.clone());
    report.alert(
        Alert::new(AlertKind::Recovered, &group.name, Severity::Info, format!("{}: back on Spot, {text}", group.name))
            .fact("asg", asg_name),
    );
    Ok(Recovered::Restored { on_demand_share: share })
}
