//! What a policy change changed, in one line for the group's history, the log and the dashboard's
//! timeline: `rebalance: notify → replace; webhooks: 1 added`. Webhooks are counted, never shown:
//! their secrets (and URLs, which can carry tokens) stay out of history and logs.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::domain::{KubernetesSpec, Policy, Webhook};

/// One line per changed setting, as `path: before → after`, in a stable order.
pub fn policy_changes(before: &Policy, after: &Policy) -> Vec<String> {
    let mut lines = diff(&settings(before), &settings(after));
    lines.extend(webhook_changes(&before.webhooks, &after.webhooks));
    lines
}

/// `path: before → after` for every path whose value differs, in the paths' order.
fn diff(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let mut paths: Vec<&String> = old.keys().chain(new.keys()).collect();
    paths.sort();
    paths.dedup();
    let shown = |v: Option<&String>| v.cloned().unwrap_or_else(|| "unset".to_string());
    paths
        .into_iter()
        .filter(|path| old.get(*path) != new.get(*path))
        .map(|path| format!("{path}: {} → {}", shown(old.get(path)), shown(new.get(path))))
        .collect()
}

/// The history line of a policy change.
pub fn policy_line(before: &Policy, after: &Policy) -> String {
    let changes = policy_changes(before, after);
    if changes.is_empty() { "policy unchanged".to_string() } else { format!("policy changed: {}", changes.join("; ")) }
}

/// The history line of a PATCH: the policy's changes, then the `kubernetes` block's.
pub fn group_line(
    before: &Policy,
    after: &Policy,
    kubernetes_before: Option<&KubernetesSpec>,
    kubernetes_after: Option<&KubernetesSpec>,
) -> String {
    let mut changes = policy_changes(before, after);
    changes.extend(kubernetes_changes(kubernetes_before, kubernetes_after));
    if changes.is_empty() { "policy unchanged".to_string() } else { format!("policy changed: {}", changes.join("; ")) }
}

/// One line per changed field of the `kubernetes` block, as `kubernetes.rebalance: cordon → drain`;
/// the CA, long PEM, only as `kubernetes.ca: changed` (or set, removed).
pub fn kubernetes_changes(before: Option<&KubernetesSpec>, after: Option<&KubernetesSpec>) -> Vec<String> {
    let fields = |spec: Option<&KubernetesSpec>| {
        let mut value = spec.map(serde_json::to_value).and_then(Result::ok).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.remove("ca");
        }
        let mut out = BTreeMap::new();
        flatten("kubernetes", &value, &mut out);
        out.remove("kubernetes");
        out
    };
    let mut lines = diff(&fields(before), &fields(after));
    let (ca_before, ca_after) = (before.and_then(|k| k.ca.as_ref()), after.and_then(|k| k.ca.as_ref()));
    match (ca_before, ca_after) {
        (None, Some(_)) => lines.push("kubernetes.ca: set".to_string()),
        (Some(_), None) => lines.push("kubernetes.ca: removed".to_string()),
        (Some(a), Some(b)) if a != b => lines.push("kubernetes.ca: changed".to_string()),
        _ => {}
    }
    lines
}

/// Every setting but the webhooks, by dotted path, as the API writes it (durations as `45m`).
fn settings(policy: &Policy) -> BTreeMap<String, String> {
    let mut value = serde_json::to_value(policy).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("webhooks");
    }
    let mut out = BTreeMap::new();
    flatten("", &value, &mut out);
    out
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, field, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), shown(leaf));
        }
    }
}

/// A setting as people read it: `replace`, `45m`, `[22:00-06:00]`, `none`.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "on".to_string(),
        Value::Bool(false) => "off".to_string(),
        Value::Array(items) if items.is_empty() => "none".to_string(),
        Value::Array(items) => format!("[{}]", items.iter().map(window_or_value).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

fn window_or_value(item: &Value) -> String {
    match (item.get("start").and_then(Value::as_str), item.get("end").and_then(Value::as_str)) {
        (Some(start), Some(end)) => format!("{start}-{end}"),
        _ => shown(item),
    }
}

/// `webhooks: 1 added, 1 changed`: a webhook is the same one when its URL is.
fn webhook_changes(before: &[Webhook], after: &[Webhook]) -> Option<String> {
    let added = after.iter().filter(|w| !before.iter().any(|b| b.url == w.url)).count();
    let removed = before.iter().filter(|b| !after.iter().any(|w| w.url == b.url)).count();
    let changed =
        after.iter().filter(|w| before.iter().any(|b| b.url == w.url) && !before.iter().any(|b| b == *w)).count();
    let counts: Vec<String> = [(added, "added"), (removed, "removed"), (changed, "changed")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    (!counts.is_empty()).then(|| format!("webhooks: {}", counts.join(", ")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{AsgSpec, GroupKind, RebalancePolicy, Window};

    fn policy() -> Policy {
        Policy::default_for(&GroupKind::Asg(AsgSpec { asg_name: "workers".into() }))
    }

    fn hook(url: &str, secret: &str) -> Webhook {
        Webhook {
            url: url.into(),
            secret: secret.into(),
            events: Vec::new(),
            allow_loopback_http: false,
            allow_private: false,
        }
    }

    #[test]
    fn a_change_reads_as_a_diff() {
        let before = policy();
        let mut after = before.clone();
        after.rebalance = RebalancePolicy::Off;
        after.fallback = false;
        after.recovery.cooldown = Duration::from_secs(30 * 60);
        after.recovery.windows = vec![Window::parse("22:00", "06:00").unwrap()];
        after.on_demand_prices.insert("m5.large".into(), 0.05);
        assert_eq!(
            policy_changes(&before, &after),
            vec![
                "fallback: on → off",
                "on_demand_prices.m5.large: unset → 0.05",
                "rebalance: notify → off",
                "recovery.cooldown: 45m → 30m",
                "recovery.windows: none → [22:00-06:00]",
            ]
        );
        assert_eq!(policy_line(&before, &before), "policy unchanged");
    }

    #[test]
    fn a_kubernetes_block_change_reads_as_a_diff_without_its_ca() {
        const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\nAAEC\n-----END CERTIFICATE-----\n";
        let block = |value: serde_json::Value| serde_json::from_value::<KubernetesSpec>(value).unwrap();
        let prod = block(serde_json::json!({"cluster": "prod"}));
        let given = block(
            serde_json::json!({"cluster": "prod", "endpoint": "https://k.example", "ca": PEM, "rebalance": "drain"}),
        );
        assert_eq!(
            kubernetes_changes(None, Some(&prod)),
            vec![
                "kubernetes.cluster: unset → prod",
                "kubernetes.pdb_policy: unset → delete-at-deadline",
                "kubernetes.pod_grace: unset → fit",
                "kubernetes.rebalance: unset → cordon",
            ]
        );
        assert_eq!(
            kubernetes_changes(Some(&prod), Some(&given)),
            vec![
                "kubernetes.endpoint: unset → https://k.example",
                "kubernetes.rebalance: cordon → drain",
                "kubernetes.ca: set"
            ]
        );
        let removed = kubernetes_changes(Some(&given), None);
        assert!(removed.contains(&"kubernetes.cluster: prod → unset".to_string()), "{removed:?}");
        assert!(removed.iter().all(|l| !l.contains("BEGIN")), "{removed:?}");
        assert!(kubernetes_changes(Some(&given), Some(&given)).is_empty());
        let policy = policy();
        assert_eq!(group_line(&policy, &policy, None, None), "policy unchanged");
        assert_eq!(
            group_line(&policy, &policy, Some(&prod), Some(&given)),
            "policy changed: kubernetes.endpoint: unset → https://k.example; kubernetes.rebalance: cordon → drain; kubernetes.ca: set"
        );
    }

    #[test]
    fn webhooks_are_counted_never_shown() {
        let secret = "whsec_canary_0123456789";
        let mut before = policy();
        before.webhooks = vec![hook("https://a.example.com/x", secret), hook("https://b.example.com/y", secret)];
        let mut after = before.clone();
        after.webhooks =
            vec![hook("https://a.example.com/x", "whsec_rotated_0123456789"), hook("https://c.example.com/z", secret)];
        let line = policy_line(&before, &after);
        assert_eq!(line, "policy changed: webhooks: 1 added, 1 removed, 1 changed");
        assert!(!line.contains("whsec") && !line.contains("example.com"), "{line}");
    }
}
