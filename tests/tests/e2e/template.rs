//! The SAM template as an operator deploys it: reserved concurrency can be turned off for an
//! account with a small quota, every dead-letter queue is an output, every queue outlasts its
//! function, node-drain is fed beside the launch path, and the EKS access entries name the group
//! that deploy/kubernetes/rbac.yaml binds, whose rules are exactly what a drain needs.

use serde_yaml::Value;
use spotkeeper_tests::emulator::workspace_root;

fn template() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn tagged<'a>(value: &'a Value, tag: &str) -> Option<&'a Value> {
    match value {
        Value::Tagged(t) if t.tag == tag => Some(&t.value),
        _ => None,
    }
}

fn resources_of<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    let resources = template["Resources"].as_mapping().unwrap();
    resources.iter().filter(|(_, r)| r["Type"] == kind).map(|(name, r)| (name.as_str().unwrap(), r)).collect()
}

/// A function's reserved concurrency with `ReservedConcurrency` set to `choice`: `None` when the
/// property resolves to `AWS::NoValue` (no reservation).
fn reservation(template: &Value, function: &Value, choice: &str) -> Option<u64> {
    let property = &function["Properties"]["ReservedConcurrentExecutions"];
    let branches = tagged(property, "!If").and_then(Value::as_sequence).expect("reserved concurrency is an !If");
    let condition = &template["Conditions"][branches[0].as_str().unwrap()];
    let equals = tagged(condition, "!Equals").and_then(Value::as_sequence).unwrap();
    assert_eq!(tagged(&equals[0], "!Ref").and_then(Value::as_str), Some("ReservedConcurrency"));
    let chosen = if equals[1].as_str() == Some(choice) { &branches[1] } else { &branches[2] };
    match tagged(chosen, "!Ref") {
        Some(Value::String(no_value)) if no_value == "AWS::NoValue" => None,
        _ => Some(chosen.as_u64().unwrap()),
    }
}

#[test]
fn reserved_concurrency_is_a_parameter_and_none_reserves_nothing() {
    let template = template();
    let parameter = &template["Parameters"]["ReservedConcurrency"];
    let allowed: Vec<&str> =
        parameter["AllowedValues"].as_sequence().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(allowed, ["reserved", "none"]);
    let functions = resources_of(&template, "AWS::Serverless::Function");
    assert_eq!(functions.len(), 7);
    let reserved: Vec<Option<u64>> = functions.iter().map(|(_, f)| reservation(&template, f, "reserved")).collect();
    assert_eq!(reserved.iter().flatten().sum::<u64>(), 116, "{reserved:?}");
    let described = parameter["Description"].as_str().unwrap_or_default();
    assert!(described.contains("116 in all") && described.contains("at least 216"), "{described}");
    let scheduled = functions.iter().find(|(n, _)| *n == "ScheduledRecoveryFunction").unwrap().1;
    assert_eq!(reservation(&template, scheduled, "reserved"), Some(1), "its runs never overlap");
    for (name, function) in &functions {
        assert_eq!(reservation(&template, function, "none"), None, "{name} reserves nothing with none");
    }
}

#[test]
fn every_dead_letter_queue_is_an_output() {
    let template = template();
    let outputs: Vec<&str> = template["Outputs"]
        .as_mapping()
        .unwrap()
        .values()
        .filter_map(|o| tagged(&o["Value"], "!Ref").and_then(Value::as_str))
        .collect();
    let queues: Vec<&str> = resources_of(&template, "AWS::SQS::Queue")
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.contains("DeadLetter"))
        .collect();
    assert_eq!(queues.len(), 6, "{queues:?}");
    for queue in queues {
        assert!(outputs.contains(&queue), "{queue} is not an output: {outputs:?}");
    }
}

/// `!GetAtt X.Arn` (or `!GetAtt [X, Arn]`): `X`.
fn arn_of(value: &Value) -> Option<&str> {
    match tagged(value, "!GetAtt")? {
        Value::String(s) => s.strip_suffix(".Arn"),
        Value::Sequence(parts) if parts.get(1).and_then(Value::as_str) == Some("Arn") => parts[0].as_str(),
        _ => None,
    }
}

/// A function's timeout: its own, or the global one.
fn timeout(template: &Value, function: &Value) -> u64 {
    function["Properties"]["Timeout"]
        .as_u64()
        .or_else(|| template["Globals"]["Function"]["Timeout"].as_u64())
        .expect("a timeout")
}

#[test]
fn every_queue_outlasts_its_function_and_node_drain_takes_small_batches_at_once() {
    let template = template();
    let mut sources = 0;
    for (name, function) in resources_of(&template, "AWS::Serverless::Function") {
        let events = function["Properties"]["Events"].as_mapping().cloned().unwrap_or_default();
        for event in events.values().filter(|e| e["Type"] == "SQS") {
            sources += 1;
            let queue = arn_of(&event["Properties"]["Queue"]).expect("a queue by !GetAtt");
            let visibility = template["Resources"][queue]["Properties"]["VisibilityTimeout"].as_u64().unwrap_or(30);
            // Lambda refuses an SQS source whose visibility timeout is below the function's.
            assert!(visibility >= timeout(&template, function), "{name}: {queue} {visibility} s");
            let redrive = &template["Resources"][queue]["Properties"]["RedrivePolicy"];
            let dead = arn_of(&redrive["deadLetterTargetArn"]).expect("a dead-letter queue");
            assert!(dead.contains("DeadLetter") && redrive["maxReceiveCount"] == 5, "{queue}: {redrive:?}");
            assert_eq!(event["Properties"]["FunctionResponseTypes"][0], "ReportBatchItemFailures", "{name}");
        }
    }
    assert_eq!(sources, 5);

    let drain = &template["Resources"]["NodeDrainFunction"];
    assert_eq!(drain["Metadata"]["BuildProperties"]["Binary"], "node-drain");
    assert_eq!(timeout(&template, drain), 150, "the warning's 120 s and time to record");
    let source = &drain["Properties"]["Events"]["Drains"]["Properties"];
    assert_eq!(arn_of(&source["Queue"]), Some("NodeDrainQueue"));
    assert!(source["BatchSize"].as_u64().is_some_and(|b| b <= 10), "{source:?}");
    assert_eq!(source["MaximumBatchingWindowInSeconds"], 0, "a drain starts at once");
}

#[test]
fn the_interruption_and_rebalance_rules_feed_node_drain_beside_their_own_queues() {
    let template = template();
    let resources = &template["Resources"];
    for (rule, own) in [("SpotInterruptionRule", "SpotInterruptionQueue"), ("RebalanceRule", "RebalanceQueue")] {
        let targets: Vec<&str> = resources[rule]["Properties"]["Targets"]
            .as_sequence()
            .expect("targets")
            .iter()
            .filter_map(|t| arn_of(&t["Arn"]))
            .collect();
        assert_eq!(targets, [own, "NodeDrainQueue"], "{rule}");
    }
    let statements = resources["NodeDrainQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .expect("statements");
    assert_eq!(statements.len(), 1);
    let statement = &statements[0];
    assert_eq!(arn_of(&statement["Resource"]), Some("NodeDrainQueue"));
    assert_eq!(statement["Principal"]["Service"], "events.amazonaws.com");
    let senders: Vec<&str> = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        .as_sequence()
        .expect("the rules")
        .iter()
        .filter_map(arn_of)
        .collect();
    assert_eq!(senders, ["SpotInterruptionRule", "RebalanceRule"]);
    let alarm = &resources["NodeDrainDeadLetterAlarm"]["Properties"]["Dimensions"][0]["Value"];
    assert_eq!(tagged(alarm, "!GetAtt").and_then(Value::as_str), Some("NodeDrainDeadLetterQueue.QueueName"));
}

/// The actions a function's inline statements allow, each with its resource as written.
fn allowed(function: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for policy in function["Properties"]["Policies"].as_sequence().into_iter().flatten() {
        for statement in policy["Statement"].as_sequence().into_iter().flatten() {
            let actions = match &statement["Action"] {
                Value::Sequence(list) => list.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                Value::String(one) => vec![one.clone()],
                _ => Vec::new(),
            };
            out.extend(actions.into_iter().map(|a| (a, statement["Resource"].clone())));
        }
    }
    out
}

#[test]
fn node_drain_and_the_api_read_clusters_and_join_a_vpc_only_when_asked() {
    let template = template();
    let cluster_arn = "arn:${AWS::Partition}:eks:${AWS::Region}:${AWS::AccountId}:cluster/*";
    let profile_arn = "arn:${AWS::Partition}:eks:${AWS::Region}:${AWS::AccountId}:fargateprofile/*";
    for name in ["NodeDrainFunction", "ApiFunction", "ScheduledRecoveryFunction"] {
        let function = &template["Resources"][name];
        let eks: Vec<(String, Option<String>)> = allowed(function)
            .into_iter()
            .filter(|(a, _)| a.starts_with("eks:"))
            .map(|(a, r)| (a, tagged(&r, "!Sub").and_then(Value::as_str).map(str::to_string)))
            .collect();
        // The cluster's endpoint and CA, its Fargate profiles; tokens are presigned
        // sts:GetCallerIdentity URLs: no IAM action of EKS or STS beyond that.
        let want = |a: &str, r: &str| (a.to_string(), Some(r.to_string()));
        assert_eq!(
            eks,
            [
                want("eks:DescribeCluster", cluster_arn),
                want("eks:ListFargateProfiles", cluster_arn),
                want("eks:DescribeFargateProfile", profile_arn)
            ],
            "{name}"
        );
        assert!(allowed(function).iter().all(|(a, _)| !a.starts_with("sts:")), "{name}");
        let vpc = tagged(&function["Properties"]["VpcConfig"], "!If").and_then(Value::as_sequence).expect("an !If");
        assert_eq!(vpc[0], "InVpc", "{name}");
        assert_eq!(tagged(&vpc[1]["SubnetIds"], "!Ref").and_then(Value::as_str), Some("VpcSubnetIds"));
        assert_eq!(tagged(&vpc[1]["SecurityGroupIds"], "!Ref").and_then(Value::as_str), Some("VpcSecurityGroupIds"));
        assert_eq!(tagged(&vpc[2], "!Ref").and_then(Value::as_str), Some("AWS::NoValue"), "{name}: no VPC by default");
    }
    for parameter in ["VpcSubnetIds", "VpcSecurityGroupIds"] {
        let p = &template["Parameters"][parameter];
        assert_eq!((p["Type"].as_str(), p["Default"].as_str()), (Some("CommaDelimitedList"), Some("")), "{parameter}");
    }
    let drain = &template["Resources"]["NodeDrainFunction"];
    let actions: Vec<String> = allowed(drain).into_iter().map(|(a, _)| a).collect();
    for needed in ["ec2:DescribeInstances", "sns:Publish", "ssm:GetParameter"] {
        assert!(actions.iter().any(|a| a == needed), "{needed}: {actions:?}");
    }
}

/// deploy/kubernetes/rbac.yaml's documents, as JSON.
pub(crate) fn rbac_documents() -> Vec<serde_json::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(workspace_root().join("deploy/kubernetes/rbac.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_json::to_value(Value::deserialize(doc).unwrap()).unwrap())
        .collect()
}

#[test]
fn the_rbac_grants_exactly_what_a_drain_needs_to_the_group_the_access_entries_name() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use std::collections::BTreeSet;

    let docs = rbac_documents();
    assert_eq!(docs.len(), 2, "a ClusterRole and its binding");
    let role: ClusterRole = serde_json::from_value(docs[0].clone()).expect("a ClusterRole");
    let binding: ClusterRoleBinding = serde_json::from_value(docs[1].clone()).expect("a ClusterRoleBinding");
    // The typed objects written back are the documents: no field is misspelled or unknown (the
    // types would drop it), none is missing.
    assert_eq!(serde_json::to_value(&role).unwrap(), docs[0]);
    assert_eq!(serde_json::to_value(&binding).unwrap(), docs[1]);

    let mut granted = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none(), "{rule:?}");
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(
                        granted.insert((group.as_str(), resource.as_str(), verb.as_str())),
                        "twice: {verb} {resource}"
                    );
                }
            }
        }
    }
    let mut wanted = BTreeSet::new();
    for (group, resource, verbs) in [
        ("", "nodes", &["get", "list", "patch"][..]),
        ("", "pods", &["get", "list", "delete"]),
        ("", "pods/eviction", &["create"]),
        ("apps", "deployments", &["get", "list", "patch"]),
        ("apps", "replicasets", &["get", "list"]),
        ("apps", "daemonsets", &["get", "list"]),
        ("", "services", &["list"]),
        ("discovery.k8s.io", "endpointslices", &["list"]),
        ("policy", "poddisruptionbudgets", &["list"]),
    ] {
        wanted.extend(verbs.iter().map(|v| (group, resource, *v)));
    }
    assert_eq!(granted, wanted);

    let role_name = role.metadata.name.as_deref().expect("a name");
    assert_eq!((binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()), ("ClusterRole", role_name));
    let subjects = binding.subjects.unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "Group");
    let group = subjects[0].name.as_str();

    // The template maps both functions' roles to that group, in the cluster of EksClusterName.
    let template = template();
    let entries = resources_of(&template, "AWS::EKS::AccessEntry");
    let mut principals: Vec<&str> = entries
        .iter()
        .map(|(name, entry)| {
            assert_eq!(entry["Condition"], "HasEksCluster", "{name}");
            let p = &entry["Properties"];
            assert_eq!(tagged(&p["ClusterName"], "!Ref").and_then(Value::as_str), Some("EksClusterName"), "{name}");
            assert_eq!(p["Type"], "STANDARD", "{name}");
            let groups: Vec<&str> =
                p["KubernetesGroups"].as_sequence().unwrap().iter().filter_map(Value::as_str).collect();
            assert_eq!(groups, [group], "{name}");
            arn_of(&p["PrincipalArn"]).expect("a role by !GetAtt")
        })
        .collect();
    principals.sort_unstable();
    assert_eq!(principals, ["ApiFunctionRole", "NodeDrainFunctionRole", "ScheduledRecoveryFunctionRole"]);
    let condition = tagged(&template["Conditions"]["HasEksCluster"], "!Not").and_then(Value::as_sequence).unwrap();
    let equals = tagged(&condition[0], "!Equals").and_then(Value::as_sequence).unwrap();
    assert_eq!(
        (tagged(&equals[0], "!Ref").and_then(Value::as_str), equals[1].as_str()),
        (Some("EksClusterName"), Some(""))
    );
}
