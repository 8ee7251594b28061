//! `make demo`: the whole system on this machine. Starts the AWS emulator, creates the fleet
//! table from template.yaml and a small fleet, runs the real function binaries against a local
//! Lambda Runtime API, and tells what they did.

use std::process::ExitCode;
use std::time::Instant;

use chrono::Duration;
use serde_json::{Value, json};
use spotkeeper_tests::kube::{Budget, FakeKube, Options, PodSeed};
use spotkeeper_tests::proxy::Fault;
use spotkeeper_tests::runtime::Function;
use spotkeeper_tests::{Harness, TOKEN, events};

struct Story {
    started: Instant,
}

impl Story {
    fn step(&self, text: &str) {
        println!("\n[{:>6} ms] {text}", self.started.elapsed().as_millis());
    }
}

/// A line under the current step.
fn say(text: impl AsRef<str>) {
    println!("             {}", text.as_ref());
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

async fn call(api: &mut Function, method: &str, path: &str, payload: Option<&Value>) -> Result<(u64, Value), String> {
    let response = api.invoke(events::http(method, path, Some(TOKEN), payload)).await?;
    Ok((response["statusCode"].as_u64().unwrap_or_default(), body(&response)))
}

fn describe_group(group: &Value) {
    let kind = group["kind"].as_str().unwrap_or("?");
    let name = group["name"].as_str().unwrap_or("?");
    match kind {
        "asg" => say(format!(
            "group {name:<8} asg      follows Auto Scaling group {}",
            group["asg_name"].as_str().unwrap_or("?")
        )),
        _ => {
            let pools: Vec<String> = group["pools"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{} in {}",
                        p["instance_type"].as_str().unwrap_or("?"),
                        p["availability_zone"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            say(format!("group {name:<8} standalone, capacity {}, pools: {}", group["capacity"], pools.join(", ")));
            if let Some(dns) = group.get("dns").filter(|d| !d.is_null()) {
                say(format!(
                    "               DNS {} ({} address)",
                    dns["record_name"].as_str().unwrap_or("?"),
                    dns["address"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    for m in group["members"].as_array().into_iter().flatten() {
        say(format!(
            "  member {}  {:<9} {:<10} {}  {}{}{}",
            m["instance_id"].as_str().unwrap_or("?"),
            m["market"].as_str().unwrap_or("?"),
            m["instance_type"].as_str().unwrap_or("?"),
            m["availability_zone"].as_str().unwrap_or("?"),
            m["state"].as_str().unwrap_or("?"),
            if m["leaving"] == json!(true) { ", leaving" } else { "" },
            if m["fallen_back"] == json!(true) { "  (fallen back to On-Demand)" } else { "" },
        ));
        if let Some(interrupted) = m.get("interrupted").filter(|i| !i.is_null()) {
            say(format!(
                "           interrupted at {}: {}{}",
                interrupted["warned_at"].as_str().unwrap_or("?"),
                interrupted["action"].as_str().unwrap_or("?"),
                interrupted["replaced_by"].as_str().map(|r| format!(" by {r}")).unwrap_or_default()
            ));
        }
    }
}

async fn run(story: &Story, keep: bool) -> Result<(), String> {
    story.step("Starting the local AWS emulator (moto server) on 127.0.0.1");
    let h = Harness::start().await;
    say(format!("emulator at {}", h.emulator.endpoint));
    say(format!("fleet table {} created from template.yaml (FleetTable)", spotkeeper_tests::TABLE));
    say(format!(
        "VPC {} with subnets {} (us-east-1a) and {} (us-east-1b)",
        h.fleet.vpc_id, h.fleet.subnet_a, h.fleet.subnet_b
    ));
    say(format!(
        "launch template {} ({}), Auto Scaling group {} of 2",
        h.fleet.template_name, h.fleet.template_id, h.fleet.asg_name
    ));
    say(format!(
        "hosted zone {} ({}), Elastic IP {}, data volume {} in us-east-1b",
        h.fleet.zone_name, h.fleet.zone_id, h.fleet.allocation_id, h.fleet.volume_id
    ));
    say(format!("alerts: SNS topic {} (an SQS queue subscribed), Slack stand-in at {}", h.topic_arn, h.slack.url));

    story.step("Storing the API token as an SSM SecureString and starting the function binaries");
    aws_sdk_ssm::Client::new(&h.sdk)
        .put_parameter()
        .name("/spotkeeper/api-token")
        .value(TOKEN)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .map_err(|e| format!("PutParameter: {e:?}"))?;
    let mut env = h.function_env();
    env.push(("SPOTKEEPER_API_TOKEN_PARAM".into(), "/spotkeeper/api-token".into()));
    env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "text".into()));
    let mut api = Function::start("api", &env).await?;
    let mut instance_state = Function::start("instance-state", &env).await?;
    let (status, _) = call(&mut api, "GET", "/healthz", None).await?;
    say(format!(
        "api answers GET /healthz with {status}; cold start {} ms",
        api.cold_start().map(|d| d.as_millis()).unwrap_or_default()
    ));

    story.step("POST /groups: registering the Auto Scaling group 'workers'");
    let asg = json!({"name": "workers", "kind": "asg", "asg_name": h.fleet.asg_name});
    let (status, workers) = call(&mut api, "POST", "/groups", Some(&asg)).await?;
    say(format!(
        "{status}: {} members found in the ASG",
        workers["members"].as_array().map(Vec::len).unwrap_or_default()
    ));

    story.step("POST /groups: registering the standalone group 'web' (DNS, Elastic IP, data volume)");
    let standalone = json!({
        "name": "web", "kind": "standalone",
        "launch_template": {"name": h.fleet.template_name, "version": "$Latest"},
        "instance_types": ["m5.large", "m5a.large", "m6i.large"],
        "subnets": [h.fleet.subnet_a, h.fleet.subnet_b],
        "capacity": 1,
        "dns": {"hosted_zone_id": h.fleet.zone_id, "record_name": format!("web.{}", h.fleet.zone_name), "ttl": 60, "address": "private"},
        "elastic_ip_allocation_id": h.fleet.allocation_id,
        "data_volumes": [{"volume_id": h.fleet.volume_id, "device": "/dev/sdf"}]
    });
    let (status, web) = call(&mut api, "POST", "/groups", Some(&standalone)).await?;
    if status != 201 {
        return Err(format!("registration answered {status}: {web}"));
    }
    let instance = web["members"][0]["instance_id"].as_str().unwrap_or_default().to_string();
    say(format!(
        "{status}: launched {instance} on {} (the data volume keeps it in us-east-1b)",
        web["members"][0]["market"].as_str().unwrap_or("?")
    ));

    story.step("A bad request changes nothing: an unknown field, then no token");
    let (status, refused) = call(
        &mut api,
        "POST",
        "/groups",
        Some(&json!({"name": "x", "kind": "asg", "asg_name": "workers", "colour": "red"})),
    )
    .await?;
    say(format!("{status}: {}", refused["error"]["message"].as_str().unwrap_or("?")));
    let response = api.invoke(events::http("GET", "/groups", None, None)).await?;
    say(format!("{}: {}", response["statusCode"], body(&response)["error"]["message"].as_str().unwrap_or("?")));

    story.step(&format!("EventBridge: {instance} is running -> instance-state"));
    let done = instance_state.invoke(events::state_change(&instance, "running")).await?;
    say(format!("DNS now {}", done["dns"]));
    say(format!(
        "Elastic IP {} associated; volumes attached: {}",
        done["address"].as_str().unwrap_or("none"),
        done["volumes"]
    ));

    let mut spot = Function::start("spot-interruption", &env).await?;
    story.step(&format!("EventBridge -> SQS: Spot interruption warning for {instance} (2 minutes' notice)"));
    let started = Instant::now();
    let batch = events::sqs_batch(&[events::spot_warning(&instance)]);
    let answer = spot.invoke(batch).await?;
    say(format!("spot-interruption answered in {} ms: {answer}", started.elapsed().as_millis()));
    let (_, web) = call(&mut api, "GET", "/groups/web", None).await?;
    let members = web["members"].as_array().cloned().unwrap_or_default();
    let replacement =
        members.iter().find(|m| m["replaces"]["instance_id"] == instance.as_str()).cloned().unwrap_or_default();
    let new_id = replacement["instance_id"].as_str().unwrap_or_default().to_string();
    let interrupted = members.iter().find(|m| m["instance_id"] == instance.as_str()).cloned().unwrap_or_default();
    say(format!(
        "replacement {new_id} launched on {} as {} in {} (the interrupted pool was {} in {}; the volume's AZ is kept)",
        replacement["market"].as_str().unwrap_or("?"),
        replacement["instance_type"].as_str().unwrap_or("?"),
        replacement["availability_zone"].as_str().unwrap_or("?"),
        interrupted["instance_type"].as_str().unwrap_or("?"),
        interrupted["availability_zone"].as_str().unwrap_or("?"),
    ));

    story.step(&format!("EventBridge: the replacement {new_id} is running -> instance-state"));
    let started = Instant::now();
    let done = instance_state.invoke(events::state_change(&new_id, "running")).await?;
    say(format!(
        "{} ms: DNS now {}, Elastic IP {} moved to it",
        started.elapsed().as_millis(),
        done["dns"],
        done["address"].as_str().unwrap_or("none")
    ));
    say(format!("replaced in {} s from the warning (as the alert says)", done["replaced_in_seconds"]));

    story.step(&format!("EC2 reclaims {instance}: terminated -> instance-state moves the data volume"));
    h.ec2()
        .terminate_instances()
        .instance_ids(&instance)
        .send()
        .await
        .map_err(|e| format!("TerminateInstances: {e:?}"))?;
    let started = Instant::now();
    let done = instance_state.invoke(events::state_change(&instance, "terminated")).await?;
    say(format!(
        "{} ms: volumes {} now on {new_id} at the same device",
        started.elapsed().as_millis(),
        done["volumes"]
    ));

    let asg_member = workers["members"][0]["instance_id"].as_str().unwrap_or_default().to_string();
    let asg_other = workers["members"][1]["instance_id"].as_str().unwrap_or_default().to_string();
    story.step(&format!("Spot interruption warning for {asg_member} of the Auto Scaling group"));
    say(format!(
        "{} runs {} in the emulator: moto launches every Auto Scaling instance On-Demand, whatever",
        asg_member,
        workers["members"][0]["market"].as_str().unwrap_or("?")
    ));
    say("the group's mixed instances policy says. In AWS this policy (0% On-Demand above a base of 0)");
    say("launches them on Spot, and this is the warning EC2 would send two minutes before reclaiming one.");
    let started = Instant::now();
    spot.invoke(events::spot_warning(&asg_member)).await?;
    let asg = aws_sdk_autoscaling::Client::new(&h.sdk)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&h.fleet.asg_name)
        .send()
        .await
        .map_err(|e| format!("DescribeAutoScalingGroups: {e:?}"))?;
    let asg = asg.auto_scaling_groups().first().cloned().ok_or("the ASG is gone")?;
    let now: Vec<&str> = asg.instances().iter().filter_map(|i| i.instance_id()).collect();
    say(format!(
        "{} ms: detached without decrement; desired capacity still {}, the ASG now runs {}",
        started.elapsed().as_millis(),
        asg.desired_capacity().unwrap_or_default(),
        now.join(", ")
    ));
    let (_, shown) = call(&mut api, "GET", "/groups/workers", None).await?;
    let leaving = shown["members"].as_array().into_iter().flatten().find(|m| m["instance_id"] == asg_member.as_str());
    if !leaving.is_some_and(|m| m["leaving"] == json!(true)) {
        return Err(format!("{asg_member} is detached but not shown leaving: {shown}"));
    }
    say(format!("{asg_member} still runs out of the group until EC2 reclaims it; spotkeeper shows it leaving"));

    let drain = eks_drain(story, &env, &mut api, &mut spot, &asg_other).await?;

    let (today, tomorrow) = savings_day(story, &h).await?;

    fargate_failover(story, &h).await?;

    story.step("The alerts: Slack (a local receiver stands in for it) and SNS (read through an SQS subscription)");
    for message in h.slack.received() {
        let body: Value = serde_json::from_str(&message.body).unwrap_or_default();
        say(format!("Slack  {}", body["text"].as_str().unwrap_or("?")));
    }
    for alert in h.sns_alerts().await {
        say(format!("SNS    [{}] {}", alert.attributes.get("severity").map_or("?", String::as_str), alert.subject));
    }

    story.step("What exists now (GET /groups)");
    say("(the ASG's replacement joined 'workers' at the first scheduled run; the detached one is leaving)");
    let (_, groups) = call(&mut api, "GET", "/groups", None).await?;
    for group in groups["groups"].as_array().into_iter().flatten() {
        describe_group(group);
    }
    let (_, shown) = call(&mut api, "GET", "/groups/web", None).await?;
    say("history of 'web', newest first:");
    for e in shown["recent_events"].as_array().into_iter().flatten() {
        say(format!("  {:<20} {}", e["kind"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or("?")));
    }

    story.step(&format!("What Spot saved (GET /savings?from={today}&to={tomorrow})"));
    let (status, savings) = call(&mut api, "GET", &format!("/savings?from={today}&to={tomorrow}"), None).await?;
    if status != 200 {
        return Err(format!("GET /savings answered {status}: {savings}"));
    }
    for g in savings["groups"].as_array().into_iter().flatten() {
        say(format!(
            "{:<8} {:>5.1} h Spot, {:>5.1} h On-Demand: paid ${:.2}, On-Demand would have cost ${:.2}: saved ${:.2}",
            g["group"].as_str().unwrap_or("?"),
            g["spot_hours"].as_f64().unwrap_or_default(),
            g["on_demand_hours"].as_f64().unwrap_or_default(),
            g["cost"].as_f64().unwrap_or_default(),
            g["on_demand_cost"].as_f64().unwrap_or_default(),
            g["savings"].as_f64().unwrap_or_default(),
        ));
    }
    let total = &savings["total"];
    let saved = total["savings"].as_f64().unwrap_or_default();
    say(format!(
        "in all: saved ${saved:.2} ({:.0}% of ${:.2}) in a day; {} interruption(s), {} fallback(s)",
        total["savings_percent"].as_f64().unwrap_or_default(),
        total["on_demand_cost"].as_f64().unwrap_or_default(),
        total["interruptions"],
        total["fallbacks"],
    ));
    say("(workers saved nothing here only because the emulator runs its members On-Demand)");
    if saved <= 0.0 {
        return Err(format!("the ledger shows no savings: {savings}"));
    }

    story.step("Drive the functions by hand");
    if keep {
        let (url, _server) = h.serve_api().await;
        say(format!(
            "The dashboard, served by the api router against the emulator: {url}/#token={}",
            spotkeeper_tests::TOKEN
        ));
        say("The emulator keeps running with this fleet. In another shell:");
        say(format!(
            "export AWS_ENDPOINT_URL={} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing",
            h.emulator.endpoint
        ));
        say(format!("export SPOTKEEPER_TABLE={} SPOTKEEPER_API_TOKEN={TOKEN}", spotkeeper_tests::TABLE));
        let dir = write_events(&new_id, &asg_other)?;
        say(format!("The events below name instances of this fleet ({new_id} of web, {asg_other} of workers): {dir}"));
        say(".venv/bin/cargo-lambda lambda watch --invoke-address 127.0.0.1 --invoke-port 9000 &");
        for (function, file) in EXAMPLES {
            say(format!(
                ".venv/bin/cargo-lambda lambda invoke --invoke-address 127.0.0.1 --invoke-port 9000 {function} --data-file {dir}/{file}"
            ));
        }
        say("Press Ctrl-C here to stop the emulator.");
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    } else {
        say("`make emulator` runs this story and then keeps the emulator up with this fleet,");
        say("printing the exports and `cargo lambda watch` / `cargo lambda invoke --data-file events/...`");
        say("commands that drive each function by hand against it.");
    }

    story.step("Stopping the functions and the emulator");
    drop(api);
    drop(instance_state);
    drop(spot);
    drop(drain);
    drop(h);
    Ok(())
}

/// How long ago the EKS chapter's warning was sent: the drain has the 20 s left of its two
/// minutes, so the story need not wait the whole of them.
const WARNED_AGO: i64 = 100;

/// The EKS chapter: `workers`' other member is a node of a cluster (the project's fake API
/// server, HTTPS with its own CA, EKS tokens checked, on real time); its warning goes to
/// spot-interruption (detach) and to node-drain (cordon, evict, a PDB-held pod deleted in time).
async fn eks_drain(
    story: &Story,
    env: &[(String, String)],
    api: &mut Function,
    spot: &mut Function,
    member: &str,
) -> Result<Function, String> {
    story.step(&format!("EKS: {member} of 'workers' is a node of a Kubernetes cluster"));
    let cluster = FakeKube::start_with(Options {
        clock: Some(std::sync::Arc::new(spotkeeper::clock::SystemClock)),
        ..Options::default()
    })
    .await;
    let node = "ip-10-0-2-20.ec2.internal";
    cluster.node(node, "us-east-1b", member);
    cluster.namespace("shop");
    cluster.pod(PodSeed::new("kube-system", "aws-node-7xk2p").daemonset("aws-node").on(node));
    cluster.pod(PodSeed::new("kube-system", "etcd-backup").mirror().on(node));
    cluster.pod(PodSeed::new("shop", "db-0").label("app", "db").grace(8).on(node));
    cluster.pdb("shop", "db", &[("app", "db")], Budget::MinAvailable(json!(1)));
    for i in 0..5 {
        cluster.pod(PodSeed::new("shop", &format!("web-{i}")).replicaset("web").grace(2).on(node));
    }
    say(format!(
        "cluster {} at {} (the project's fake API server; HTTPS with its own CA, EKS tokens checked)",
        cluster.cluster, cluster.url
    ));
    say(format!(
        "node {node}: 7 pods (1 DaemonSet's, 1 static mirror, shop/db-0 held by a PodDisruptionBudget allowing 0 disruptions, 5 of shop/web)"
    ));
    let block = json!({"kubernetes": {"cluster": cluster.cluster, "endpoint": cluster.url, "ca": cluster.ca_pem, "pdb_policy": "delete-at-deadline"}});
    let (status, patched) = call(api, "PATCH", "/groups/workers", Some(&block)).await?;
    if status != 200 {
        return Err(format!("PATCH kubernetes answered {status}: {patched}"));
    }
    let shown = &patched["kubernetes"];
    say(format!(
        "PATCH /groups/workers: 200, cluster reached and the block set: rebalance {}, pdb_policy {}, pod_grace {}, CA {} certificate(s) {}",
        shown["rebalance"].as_str().unwrap_or("?"),
        shown["pdb_policy"].as_str().unwrap_or("?"),
        shown["pod_grace"].as_str().unwrap_or("?"),
        shown["ca"]["certificates"],
        shown["ca"]["sha256"].as_str().unwrap_or("?"),
    ));

    story.step(&format!(
        "Spot interruption warning for {member}, sent {WARNED_AGO} s ago: to spot-interruption and node-drain"
    ));
    say("(replayed as EventBridge sent it 100 s ago, so the drain has 20 s left instead of the whole two minutes)");
    let mut warning = events::spot_warning(member);
    let warned_at = chrono::Utc::now() - Duration::seconds(WARNED_AGO);
    warning["time"] = json!(warned_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut drain = Function::start("node-drain", env).await?;
    let started = Instant::now();
    let detach = spot.invoke(warning.clone());
    let drained = drain.invoke(events::sqs_batch(&[warning]));
    let (detached, drained) = tokio::join!(detach, drained);
    say(format!("spot-interruption: {}", detached?["action"].as_str().unwrap_or("?")));
    drained?;
    say(format!("node-drain answered after {} ms", started.elapsed().as_millis()));
    let log = cluster.requests();
    let evictions = |pod: &str| {
        log.iter().filter(|r| r.uri.contains(&format!("/pods/{pod}/eviction"))).map(|r| r.status).collect::<Vec<_>>()
    };
    let web: Vec<u16> = (0..5).flat_map(|i| evictions(&format!("web-{i}"))).collect();
    say(format!(
        "cordon: {} PATCH of the node (unschedulable + taint spotkeeper.io/interrupted:NoSchedule)",
        log.iter().filter(|r| r.method == "PATCH").count()
    ));
    say(format!("shop/web-*: {} evictions, answered {:?}", web.len(), web));
    let db = evictions("db-0");
    say(format!(
        "shop/db-0: {} evictions refused by its PodDisruptionBudget (429), then {} DELETE at the deadline",
        db.len(),
        log.iter().filter(|r| r.method == "DELETE").count()
    ));
    say(format!("left on the node: {}", cluster.pods_on(node).join(", ")));
    let (_, history) = call(api, "GET", "/groups/workers/events", None).await?;
    say("the drain in the history of 'workers' (seconds after the warning):");
    let mut entries: Vec<&Value> = history["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| matches!(e["kind"].as_str(), Some("node-cordoned" | "pod-deleted-at-deadline" | "node-drained")))
        .collect();
    entries.reverse();
    for e in entries {
        let at = e["at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        let after = at
            .map_or_else(|| "?".to_string(), |t| format!("{:.1}", (t - warned_at).num_milliseconds() as f64 / 1000.0));
        say(format!(
            "  +{after:>5} s  {:<24} {}",
            e["kind"].as_str().unwrap_or("?"),
            e["message"].as_str().unwrap_or("?")
        ));
    }
    if cluster.get("pods", Some("shop"), "db-0").is_some() || web.len() != 5 {
        return Err(format!("the node was not drained as told: {:?}", cluster.pods_on(node)));
    }
    Ok(drain)
}

/// The Fargate chapter, in process on the harness's clock (Fargate's 30–60 s starts, the rollouts
/// and a shortened 10-minute cooldown pass in moments): a warned node's opted-in Deployment goes
/// to Fargate, its rollout is followed, and it comes back to Spot.
async fn fargate_failover(story: &Story, h: &Harness) -> Result<(), String> {
    use spotkeeper::clock::Clock;
    use spotkeeper::domain::{ClusterName, WorkloadRef, WorkloadState};
    story.step("EKS: a Deployment fails over to Fargate on a warning and comes back to Spot");
    say("(in process on the emulated clock: Fargate's 30-60 s pod starts and the cooldown pass in moments)");
    let cluster = FakeKube::start_with(Options { clock: Some(h.clock.clone()), ..Options::default() }).await;
    let members = h.deps.store.members(&"workers".to_string().try_into().map_err(|e: String| e)?).await;
    let member = members
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(spotkeeper::domain::Member::is_serving)
        .map(|m| m.instance_id)
        .ok_or("'workers' has no serving member")?;
    let node = "ip-10-0-4-40.ec2.internal";
    cluster.node(node, "us-east-1a", &member);
    cluster.namespace("shop");
    let label = ("spotkeeper.io/compute", "fargate");
    let profile = h.fargate_profile(&cluster, "shop", &[label]).await;
    say(format!(
        "Fargate profile {profile}: namespace shop, label spotkeeper.io/compute=fargate (in EKS and the cluster)"
    ));
    let block = json!({
        "kubernetes": {"cluster": cluster.cluster, "endpoint": cluster.url, "ca": cluster.ca_pem,
                       "failover": {"namespaces": ["shop"]}},
        "recovery": {"cooldown": "10m"},
    });
    let (status, patched) = h.patch("workers", block).await;
    if status != 200 {
        return Err(format!("PATCH failover answered {status}: {patched}"));
    }
    say("PATCH /groups/workers: the failover block checked against the profiles and set; cooldown shortened to 10 min");
    let labels = json!({"app.kubernetes.io/name": "web"});
    cluster.seed("deployments", Some("shop"), json!({
        "metadata": {"name": "web", "labels": labels, "annotations": {"spotkeeper.io/failover": "fargate"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"nodeSelector": {"eks.amazonaws.com/capacityType": "SPOT"},
                     "containers": [{"name": "web", "image": "public.ecr.aws/nginx/nginx:1.29", "ports": [{"containerPort": 8080}]}]},
        }},
    }));
    cluster.service("shop", "web", &[("app.kubernetes.io/name", "web")]);
    h.clock.advance(Duration::seconds(10));
    say(format!(
        "node {node} ({member}) runs shop/web: 3 replicas pinned to Spot, annotated spotkeeper.io/failover: fargate; Service web has {} ready endpoints",
        cluster.ready_endpoints("shop", "web")
    ));
    cluster.watch_endpoints("shop", "web");
    let start = h.clock.now();
    let at = |h: &Harness| (h.clock.now() - start).num_seconds();

    story.step(&format!("Spot interruption warning for {member}: node-drain"));
    let drained = h.node_drain(h.now_on(events::spot_warning(&member))).await.map_err(|e| e.to_string())?;
    let patches =
        cluster.requests().iter().filter(|r| r.method == "PATCH" && r.uri.contains("/deployments/web")).count();
    say(format!(
        "+{:>4} s  node-drain: {} ({patches} patch of shop/web to Fargate; its old pods left to the rollout)",
        at(h),
        drained["action"].as_str().unwrap_or("?")
    ));
    let fresh = "ip-10-0-4-41.ec2.internal";
    cluster.node(fresh, "us-east-1b", "i-0f4e5a6b7c8d9e0f1");
    say(format!(
        "+{:>4} s  a new Spot node {fresh} joins the cluster (Ready): the way back waits for the cooldown",
        at(h)
    ));
    let cluster_name = ClusterName::try_from(cluster.cluster.clone())?;
    let web = WorkloadRef::new("shop", "web")?;
    let mut last = None;
    for _ in 0..120 {
        h.clock.advance(Duration::seconds(30));
        h.scheduled(None).await.map_err(|e| format!("scheduled-recovery: {e}"))?;
        let now = h.deps.store.workload(&cluster_name, &web).await.ok().flatten().map(|r| r.state);
        if now != last {
            let on: Vec<String> = cluster
                .all("pods")
                .iter()
                .filter(|p| {
                    p["metadata"]["deletionTimestamp"].is_null()
                        && p["metadata"]["labels"]["app.kubernetes.io/name"] == "web"
                })
                .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("pending").to_string())
                .collect();
            say(format!(
                "+{:>4} s  scheduled run: shop/web {}; pods on {}",
                at(h),
                now.map_or("?", WorkloadState::as_str),
                on.join(", ")
            ));
            last = now;
        }
        if last == Some(WorkloadState::Spot) {
            break;
        }
    }
    if last != Some(WorkloadState::Spot) {
        return Err(format!("shop/web did not come back to Spot: {last:?}"));
    }
    let fewest = cluster.fewest_ready_endpoints("shop", "web").unwrap_or_default();
    say(format!("Service web had at least {fewest} ready endpoint(s) at every instant, there and back"));
    if fewest == 0 {
        return Err("web's Service went dark".to_string());
    }
    say("the failover in the history of 'workers':");
    for kind in ["workload-failed-over", "workload-on-fargate", "workload-recovery-started", "workload-recovered"] {
        for message in h.history("workers", kind).await {
            say(format!("  {kind:<26} {message}"));
        }
    }
    Ok(())
}

/// The functions the printed `cargo lambda invoke` examples drive, and their events.
const EXAMPLES: [(&str, &str); 3] = [
    ("api", "api-get-groups.json"),
    ("instance-state", "instance-state-running.json"),
    ("spot-interruption", "spot-interruption-warning.json"),
];

/// Writes the examples' events, naming instances that exist in this fleet (events/ names sample
/// ids the emulator never launched: the functions would answer "ignored").
fn write_events(web_member: &str, asg_member: &str) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("spotkeeper-demo-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let events = [
        events::http("GET", "/groups", Some(TOKEN), None),
        events::state_change(web_member, "running"),
        events::spot_warning(asg_member),
    ];
    for ((_, file), event) in EXAMPLES.iter().zip(events) {
        let path = dir.join(file);
        std::fs::write(&path, event.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(dir.display().to_string())
}

/// Typical Spot prices (USD an hour) of the demo's instance types in us-east-1, a third or so of
/// their On-Demand list prices.
const SPOT_PRICES: [(&str, &str); 4] =
    [("m5.large", "0.0352"), ("m5a.large", "0.0331"), ("m6i.large", "0.0375"), ("t3.micro", "0.0031")];

/// EC2's DescribeSpotPriceHistory answer with [`SPOT_PRICES`] in both of the fleet's AZs.
fn spot_prices() -> String {
    let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S.000Z");
    let items: String = SPOT_PRICES
        .iter()
        .flat_map(|(instance_type, price)| {
            ["us-east-1a", "us-east-1b"].map(|zone| {
                format!(
                    "<item><instanceType>{instance_type}</instanceType><productDescription>Linux/UNIX</productDescription>\
                     <spotPrice>{price}</spotPrice><timestamp>{at}</timestamp><availabilityZone>{zone}</availabilityZone></item>"
                )
            })
        })
        .collect();
    format!(
        "<DescribeSpotPriceHistoryResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
         <requestId>demo-spot-prices</requestId><spotPriceHistorySet>{items}</spotPriceHistorySet><nextToken></nextToken>\
         </DescribeSpotPriceHistoryResponse>"
    )
}

/// A day passes: the scheduled function runs every hour of it, as in AWS (every 5 minutes
/// there), in this process with the emulated clock the tests use. Its first run reconciles (the
/// ASG's replacement becomes a member) and starts the ledger; the others add each hour's Spot and
/// On-Demand time at their prices. Returns the ledger's days.
async fn savings_day(story: &Story, h: &Harness) -> Result<(String, String), String> {
    story.step("A day passes: scheduled-recovery every hour (an emulated clock, as the tests use)");
    h.proxy.on(|call| {
        (call.operation == "DescribeSpotPriceHistory")
            .then(|| Fault::answer(200, "text/xml;charset=UTF-8", spot_prices()))
    });
    say("The emulator prices every Spot hour at a placeholder $0.00001: here EC2's Spot price history");
    say("answers with typical Spot prices instead, about a third of On-Demand:");
    for (instance_type, price) in SPOT_PRICES {
        say(format!("  {instance_type:<10} ${price}/h"));
    }
    let today = h.clock_midnight().format("%Y-%m-%d").to_string();
    h.scheduled(None).await.map_err(|e| format!("scheduled-recovery: {e}"))?;
    for _ in 0..24 {
        h.clock.advance(Duration::hours(1));
        h.scheduled(None).await.map_err(|e| format!("scheduled-recovery: {e}"))?;
    }
    let tomorrow = h.clock_midnight().format("%Y-%m-%d").to_string();
    say(format!("25 runs from {today} to {tomorrow}: the fleet's hours and prices are in the ledger"));
    say("(On-Demand prices: the Price List API is out of the emulator's reach, so the list prices");
    say(" shipped with spotkeeper, as in AWS when that API cannot be reached)");
    Ok((today, tomorrow))
}

#[tokio::main]
async fn main() -> ExitCode {
    let story = Story { started: Instant::now() };
    let keep = std::env::args().any(|a| a == "--keep");
    println!("spotkeeper demo: the whole system against a local AWS emulator");
    match run(&story, keep).await {
        Ok(()) => {
            println!("\nDone.");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("\ndemo failed: {err}");
            ExitCode::FAILURE
        }
    }
}
