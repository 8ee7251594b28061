//! The SAM template as an operator deploys it: reserved concurrency can be turned off for an
//! account with a small quota, and every dead-letter queue is an output.

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
    assert_eq!(functions.len(), 6);
    let reserved: Vec<Option<u64>> = functions.iter().map(|(_, f)| reservation(&template, f, "reserved")).collect();
    assert_eq!(reserved.iter().flatten().sum::<u64>(), 96, "{reserved:?}");
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
    assert_eq!(queues.len(), 5, "{queues:?}");
    for queue in queues {
        assert!(outputs.contains(&queue), "{queue} is not an output: {outputs:?}");
    }
}
