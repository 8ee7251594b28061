//! History as the API shows it: entries of old policy changes, written as whole policies, withheld.

use spotkeeper::adapters::store::HistoryEntry;
use spotkeeper::domain::HistoryKind;

/// History as the API shows it. Entries written before policy changes were diffs held the whole
/// policy as JSON, webhook secrets included: their text is withheld.
pub(crate) fn readable(mut entries: Vec<HistoryEntry>) -> Vec<HistoryEntry> {
    for entry in entries.iter_mut().filter(|e| e.kind == HistoryKind::PolicyChanged.as_str() && e.message.contains('{'))
    {
        entry.message = "policy changed (recorded as a full policy, withheld: it may hold secrets)".to_string();
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_full_policy_entries_are_withheld() {
        let entry = |kind: &str, message: &str| HistoryEntry {
            at: chrono::Utc::now(),
            kind: kind.into(),
            instance_id: None,
            message: message.into(),
        };
        let shown = readable(vec![
            entry(
                HistoryKind::PolicyChanged.as_str(),
                r#"policy changed: {"webhooks":[{"secret":"whsec_canary_0123456789"}]}"#,
            ),
            entry(HistoryKind::PolicyChanged.as_str(), "policy changed: rebalance: notify → off"),
            entry("group-registered", "asg group registered"),
        ]);
        assert!(!shown[0].message.contains("whsec"), "{}", shown[0].message);
        assert_eq!(shown[1].message, "policy changed: rebalance: notify → off");
        assert_eq!(shown[2].message, "asg group registered");
    }
}
