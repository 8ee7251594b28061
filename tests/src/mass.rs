//! A mass interruption: a fleet of standalone and Auto Scaling groups whose every member gets
//! its two minutes' notice at once, and the check, against the emulator's instances, that each
//! warning was handled exactly once.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use spotkeeper::adapters::store::Store;
use spotkeeper::domain::GroupName;

use crate::{Harness, TABLE, TOKEN, events, fleet};

/// Ten instance types: each group takes two of them, in both subnets — so five groups cover
/// twenty pools.
const TYPES: [&str; 10] = [
    "m5.large",
    "m5a.large",
    "m6i.large",
    "m6a.large",
    "c5.large",
    "c5a.large",
    "c6i.large",
    "c6a.large",
    "r5.large",
    "r5a.large",
];

#[derive(Debug, Clone)]
pub struct MassGroup {
    pub name: String,
    /// The Auto Scaling group, for an `asg` group.
    pub asg: Option<String>,
    pub members: Vec<String>,
}

/// `standalone` standalone groups (`web-1`, ...) and `asgs` Auto Scaling groups (`batch-1`,
/// ...) of `size` members each, registered through the API.
pub async fn build(h: &Harness, standalone: usize, asgs: usize, size: u32) -> Result<Vec<MassGroup>, String> {
    let subnets = [h.fleet.subnet_a.clone(), h.fleet.subnet_b.clone()];
    let types = |i: usize| [TYPES[(2 * i) % TYPES.len()], TYPES[(2 * i + 1) % TYPES.len()]];
    let mut bodies = Vec::new();
    for i in 0..standalone {
        bodies.push(h.standalone(&format!("web-{}", i + 1)).latest().types(&types(i)).capacity(size).body());
    }
    for i in 0..asgs {
        let asg_name = format!("batch-{}-asg", i + 1);
        let size = i32::try_from(size).map_err(|e| e.to_string())?;
        fleet::create_asg(&h.sdk, &asg_name, &h.fleet.template_id, &subnets, &types(i), size).await?;
        bodies.push(json!({"name": format!("batch-{}", i + 1), "kind": "asg", "asg_name": asg_name}));
    }
    let mut groups = Vec::new();
    for body in bodies {
        let (status, group) = h.call(Method::POST, "/groups", Some(TOKEN), Some(body.clone())).await;
        if status != StatusCode::CREATED {
            return Err(format!("registering {body}: {status} {group}"));
        }
        let members = crate::member_ids(&group);
        groups.push(MassGroup {
            name: body["name"].as_str().unwrap_or_default().to_string(),
            asg: body["asg_name"].as_str().map(str::to_string),
            members,
        });
    }
    Ok(groups)
}

/// A warning for every member, the groups interleaved (as a pool-wide reclaim arrives).
pub fn warnings(h: &Harness, groups: &[MassGroup]) -> Vec<Value> {
    let longest = groups.iter().map(|g| g.members.len()).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| groups.iter().filter_map(move |g| g.members.get(i)))
        .map(|id| h.now_on(events::spot_warning(id)))
        .collect()
}

/// How the warnings ended, as the emulator and the table show it.
#[derive(Debug, Default)]
pub struct Handled {
    pub replaced: usize,
    pub detached: usize,
    /// Warnings whose message went to the dead-letter queue, each with its failure recorded.
    pub dead: usize,
}

/// Every instance in the emulator that is not terminated, by its `spotkeeper:group` tag: one
/// listing (the emulator's tag filters are slow at this size).
async fn instances_by_group(h: &Harness) -> Result<HashMap<String, HashSet<String>>, String> {
    let mut pages = h.ec2().describe_instances().into_paginator().send();
    let mut groups: HashMap<String, HashSet<String>> = HashMap::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("DescribeInstances: {e:?}"))?;
        for instance in page.reservations().iter().flat_map(aws_sdk_ec2::types::Reservation::instances) {
            let terminated = instance.state().and_then(|s| s.name()).is_some_and(|n| n.as_str() == "terminated");
            let group = instance.tags().iter().find(|t| t.key() == Some("spotkeeper:group")).and_then(|t| t.value());
            if let (Some(group), Some(id), false) = (group, instance.instance_id(), terminated) {
                groups.entry(group.to_string()).or_default().insert(id.to_string());
            }
        }
    }
    Ok(groups)
}

/// The instances whose interruption the group's history records as failed.
async fn failures_recorded(h: &Harness, group: &str) -> Result<HashSet<String>, String> {
    let mut pages = h
        .dynamodb()
        .query()
        .table_name(TABLE)
        .key_condition_expression("pk = :pk AND begins_with(sk, :event)")
        .filter_expression("kind = :failed")
        .expression_attribute_values(":pk", AttributeValue::S(format!("GROUP#{group}")))
        .expression_attribute_values(":event", AttributeValue::S("EVENT#".into()))
        .expression_attribute_values(":failed", AttributeValue::S("interruption-failed".into()))
        .into_paginator()
        .items()
        .send();
    let mut failed = HashSet::new();
    while let Some(item) = pages.next().await {
        let item = item.map_err(|e| format!("Query: {e:?}"))?;
        if let Some(AttributeValue::S(id)) = item.get("instance_id") {
            failed.insert(id.clone());
        }
    }
    Ok(failed)
}

async fn asg_instances(h: &Harness, asg: &str) -> Result<HashSet<String>, String> {
    let out = aws_sdk_autoscaling::Client::new(&h.sdk)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await
        .map_err(|e| format!("DescribeAutoScalingGroups: {e:?}"))?;
    Ok(out
        .auto_scaling_groups()
        .iter()
        .flat_map(aws_sdk_autoscaling::types::AutoScalingGroup::instances)
        .filter_map(|i| i.instance_id.clone())
        .collect())
}

/// Checks that every member of `groups` was handled exactly once: a standalone member has
/// exactly one replacement — a new instance of its group in the emulator, paired with it in
/// the table — and the group launched nothing more; an Auto Scaling member is out of its group.
/// A warning in `dead` was not acted on, and its failure is in the group's history.
pub async fn check(h: &Harness, groups: &[MassGroup], dead: &[Value]) -> Result<Handled, String> {
    let dead: HashSet<String> =
        dead.iter().filter_map(|e| e["detail"]["instance-id"].as_str().map(str::to_string)).collect();
    let store = Store::new(h.dynamodb(), TABLE);
    let mut handled = Handled { dead: dead.len(), ..Handled::default() };
    let by_group = instances_by_group(h).await?;
    for group in groups {
        let name = GroupName::try_from(group.name.clone()).map_err(|e| e.clone())?;
        let members = store.members(&name).await.map_err(|e| e.to_string())?;
        let failed = failures_recorded(h, &group.name).await?;
        let acted: Vec<&String> = group.members.iter().filter(|id| !dead.contains(*id)).collect();
        for id in group.members.iter().filter(|id| dead.contains(*id)) {
            if !failed.contains(id) {
                return Err(format!("{}: {id} went to the dead-letter queue with no failure recorded", group.name));
            }
        }
        match &group.asg {
            Some(asg) => {
                let still_in = asg_instances(h, asg).await?;
                if let Some(id) = acted.iter().find(|id| still_in.contains(id.as_str())) {
                    return Err(format!("{}: {id} is still in {asg}", group.name));
                }
                handled.detached += acted.len();
            }
            None => {
                let mut replacements: HashMap<&str, Vec<&str>> = HashMap::new();
                for m in &members {
                    if let Some(old) = &m.replaces {
                        replacements.entry(old.instance_id.as_str()).or_default().push(m.instance_id.as_str());
                    }
                }
                let running = by_group.get(&group.name).cloned().unwrap_or_default();
                for old in &acted {
                    let new = replacements.get(old.as_str()).map(Vec::as_slice).unwrap_or_default();
                    match new {
                        [one] if running.contains(*one) => {}
                        [one] => return Err(format!("{}: {old}'s replacement {one} is not in EC2", group.name)),
                        [] => return Err(format!("{}: {old} was warned and not replaced (lost)", group.name)),
                        many => return Err(format!("{}: {old} has {} replacements: {many:?}", group.name, many.len())),
                    }
                }
                // Nothing launched beyond the members and one replacement each: no double launch
                // hides outside the table.
                let expected = group.members.len() + acted.len();
                if running.len() != expected {
                    return Err(format!(
                        "{}: {} instances carry the group's tag, expected {expected} ({} members, {} replacements)",
                        group.name,
                        running.len(),
                        group.members.len(),
                        acted.len()
                    ));
                }
                handled.replaced += acted.len();
            }
        }
    }
    Ok(handled)
}

/// EC2's request token buckets as the burst meets them: (bucket size, refill a second).
pub const LAUNCH_BUCKET: (u32, u32) = (5, 2);
pub const MUTATING_BUCKET: (u32, u32) = (50, 5);
/// The event source's pollers at first: a burst is split among them.
pub const POLLERS: usize = 5;

/// What a burst cost.
#[derive(Debug)]
pub struct Burst {
    pub warnings: usize,
    pub pools: usize,
    pub invocations: usize,
    pub redeliveries: usize,
    pub dead: Vec<Value>,
    /// Launch requests sent (`CreateFleet`, each try counted), and how many EC2 throttled.
    pub launch_calls: usize,
    pub launches_throttled: usize,
    /// `DetachInstances` calls.
    pub detach_calls: usize,
    /// Every AWS call the function made.
    pub calls: usize,
    /// From the first delivery to the last launch request sent, and to the end.
    pub to_last_launch: std::time::Duration,
    pub total: std::time::Duration,
}

/// 1000 warnings across 20 pools — five standalone and five Auto Scaling groups of 100, each
/// pair of groups on its own two instance types in both subnets — delivered as the queue
/// delivers them, under EC2's request rate limits (enforced by the proxy).
pub async fn burst(h: &Harness) -> Result<(Vec<MassGroup>, Burst), String> {
    let groups = build(h, 5, 5, 100).await?;
    let warnings = warnings(h, &groups);
    let settings = crate::queue::QueueSettings::spot_interruption()?;
    h.proxy.forget_calls();
    h.proxy.ec2_rate_limits(LAUNCH_BUCKET, MUTATING_BUCKET);
    let started = std::time::Instant::now();
    let count = warnings.len();
    let delivered = crate::queue::deliver(h, warnings, &settings, POLLERS, |batch| h.spot_interruption(batch)).await;
    let total = started.elapsed();
    h.proxy.clear_rules();
    let calls = h.proxy.calls();
    let launches: Vec<_> = calls.iter().filter(|c| c.operation == "CreateFleet").collect();
    let burst = Burst {
        warnings: count,
        pools: 2 * TYPES.len(),
        invocations: delivered.invocations,
        redeliveries: delivered.redeliveries,
        dead: delivered.dead,
        launch_calls: launches.len(),
        launches_throttled: launches.iter().filter(|c| c.fault.is_some()).count(),
        detach_calls: calls.iter().filter(|c| c.operation == "DetachInstances").count(),
        calls: calls.len(),
        to_last_launch: launches.iter().map(|c| c.at.duration_since(started)).max().unwrap_or_default(),
        total,
    };
    Ok((groups, burst))
}

impl Burst {
    /// The figures as BENCHMARKS.md reports them.
    pub fn markdown(&self) -> String {
        let secs = |d: std::time::Duration| format!("{:.1} s", d.as_secs_f64());
        format!(
            "{} interruption warnings for the members of 5 standalone and 5 Auto Scaling groups of 100 (20 pools: 10 instance types in 2 AZs), queued at once and delivered as the event source mapping does (batches of up to the template's `BatchSize`, split among {POLLERS} pollers: {} invocations), the functions in process against the emulator, EC2's request rate limits enforced by the proxy (launches: {} tokens, {} a second; other mutating calls: {} tokens, {} a second).\n\n\
             | figure | value |\n|---|---|\n\
             | launch requests (`CreateFleet`), every try | {} |\n\
             | of which throttled (`RequestLimitExceeded`) and retried by the SDK | {} |\n\
             | detach calls (`DetachInstances`, 20 ids a call) | {} |\n\
             | AWS calls in all (table, EC2, Auto Scaling, SNS) | {} |\n\
             | redelivered or dead-lettered warnings | {} |\n\
             | first delivery → last launch request sent | {} |\n\
             | first delivery → every warning handled and recorded | {} |\n\n\
             One fleet request per standalone group per batch; every try beyond those was throttled and retried with the SDK's backoff and jitter, none failed. The emulator records writes one at a time, so the last figure is mostly its time, not the functions'.\n",
            self.warnings,
            self.invocations,
            LAUNCH_BUCKET.0,
            LAUNCH_BUCKET.1,
            MUTATING_BUCKET.0,
            MUTATING_BUCKET.1,
            self.launch_calls,
            self.launches_throttled,
            self.detach_calls,
            self.calls,
            self.redeliveries + self.dead.len(),
            secs(self.to_last_launch),
            secs(self.total),
        )
    }
}
