//! The reconcile: the table against what EC2 reports. Strays are adopted, vanished members
//! closed and (standalone) replaced, missing capacity launched.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Reported;
use crate::adapters::notify::{Alert, Severity};
use crate::decisions::plan;
use crate::decisions::recovery::{self, Drift};
use crate::domain::LaunchPlan;
use crate::domain::{
    AlertKind, Group, GroupKind, HistoryKind, InstanceFacts, Member, Old, PoolHealth, Reason, StandaloneSpec,
};
use crate::runtime::{Deps, Error};
use crate::workflows::replacement;
use crate::workflows::report::Report;

/// What the reconcile found and did; with no drift, only that.
#[derive(Debug, Default, Serialize)]
pub struct Reconciled {
    pub drift: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adopted: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launched: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed: Option<Vec<String>>,
}

#[allow(clippy::too_many_arguments, reason = "one step of a scheduled run, with what it records")]
pub(super) async fn reconcile(
    deps: &Deps,
    group: &Group,
    members: &[Member],
    known: &[InstanceFacts],
    managed: &HashSet<&str>,
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Reported<Reconciled> {
    let drift = recovery::drift(group, members, known, |id| managed.contains(id), recovery::owner_tag(group));
    if drift.is_empty() {
        return Reported::Done(Reconciled::default());
    }
    Reported::of(act(deps, group, members, &drift, health, now, report).await, group)
}

#[allow(clippy::too_many_arguments, reason = "one step of a scheduled run, with what it records")]
async fn act(
    deps: &Deps,
    group: &Group,
    members: &[Member],
    drift: &Drift,
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Reconciled, Error> {
    let mut done = Reconciled { drift: true, ..Reconciled::default() };
    if !drift.strays.is_empty() {
        let strays: Vec<Member> = drift.strays.iter().cloned().map(|f| f.into_member(false)).collect();
        deps.store.add_members(group, &strays).await?;
        for m in &strays {
            report.note(
                &group.name,
                Some(&m.instance_id),
                HistoryKind::InstanceAdopted,
                format!("{} found running in the group; now a member", m.instance_id),
            );
        }
        done.adopted = Some(strays.iter().map(|m| m.instance_id.clone()).collect());
    }
    if let GroupKind::Standalone(spec) = &group.kind {
        done.launched = replace(deps, group, spec, members, drift, health, now, report).await?;
    }
    for m in &drift.vanished {
        deps.store.remove_member(&group.name, &m.instance_id).await?;
        report.note(
            &group.name,
            Some(&m.instance_id),
            HistoryKind::MemberClosed,
            format!("{} no longer exists; the group no longer lists it", m.instance_id),
        );
    }
    done.closed = Some(drift.vanished.iter().map(|m| m.instance_id.clone()).collect());
    Ok(done)
}

/// A standalone group's replacements for its vanished serving members and the instances it
/// misses: one request. Nothing to launch, `None`.
#[allow(clippy::too_many_arguments, reason = "one step of a scheduled run, with what it records")]
async fn replace(
    deps: &Deps,
    group: &Group,
    spec: &StandaloneSpec,
    members: &[Member],
    drift: &Drift,
    health: &PoolHealth,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<Option<Vec<String>>, Error> {
    let olds: Vec<Old> =
        drift.to_replace().map(|m| Old { instance_id: m.instance_id.clone(), since: now, pool: m.pool() }).collect();
    let kept: Vec<Member> = members.iter().filter(|m| !drift.vanished.contains(m)).cloned().collect();
    if olds.is_empty() && drift.missing == 0 {
        return Ok(None);
    }
    let lost: Vec<_> = olds.iter().filter_map(|o| o.pool.clone()).collect();
    let token = replacement::token([group.name.as_str(), &now.timestamp().to_string(), "reconcile"]);
    let request = LaunchPlan::new(spec, plan::launch_pools(spec, &lost, health, now)?, olds, Reason::Reconcile, token)
        .with_extra(drift.missing)
        .with_on_demand(recovery::on_demand_wanted(group.policy.on_demand_base, &kept))
        .with_fallback(group.policy.fallback);
    let launched = replacement::launch_for(deps, group, &request).await?;
    let recorded = replacement::record(deps, group, &request, &launched, health, now).await;
    for (old, new) in &recorded.pairs {
        report.note(
            &group.name,
            Some(&new.instance_id),
            HistoryKind::ReplacementLaunched,
            format!(
                "{} vanished without an event; {} launched on {} in its place",
                old.instance_id, new.instance_id, new.market
            ),
        );
    }
    for new in &recorded.added {
        report.note(
            &group.name,
            Some(&new.instance_id),
            HistoryKind::InstanceLaunched,
            format!("the group was below its capacity; {} launched on {}", new.instance_id, new.market),
        );
    }
    let new: Vec<String> = recorded
        .pairs
        .iter()
        .map(|(_, m)| &m.instance_id)
        .chain(recorded.added.iter().map(|m| &m.instance_id))
        .cloned()
        .collect();
    report.alert(
        Alert::new(
            AlertKind::Reconciled,
            &group.name,
            Severity::Warning,
            format!("{}: {} vanished, {} launched", group.name, drift.vanished.len(), new.len()),
        )
        .fact("vanished", drift.vanished.iter().map(|m| m.instance_id.as_str()).collect::<Vec<_>>().join(", "))
        .fact("launched", new.join(", "))
        .fact("errors", launched.error_summary()),
    );
    Ok(Some(new))
}
