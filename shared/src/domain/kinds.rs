//! The names of what happens: each history entry's kind and each alert's event. Stored and sent
//! as kebab-case strings; typed here so a misspelt kind does not compile.

use std::fmt;

/// Declares a kind enum with its kebab-case names, `ALL`, `as_str` and parsing.
macro_rules! kinds {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The kind a name stands for, if any.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|kind| kind.as_str() == text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
    };
}

kinds! {
    /// The lifecycle events a group alerts on, and that its webhooks subscribe to.
    AlertKind {
        Interrupted = "interrupted",
        Replaced = "replaced",
        Fallback = "fallback",
        VolumeMoved = "volume-moved",
        InterruptionFailed = "interruption-failed",
        RebalanceRecommended = "rebalance-recommended",
        RebalanceReplacing = "rebalance-replacing",
        RebalanceFailed = "rebalance-failed",
        RecoveryStarted = "recovery-started",
        Recovered = "recovered",
        RecoveryFailed = "recovery-failed",
        Reconciled = "reconciled",
        NoCapacity = "no-capacity",
        VolumeGrown = "volume-grown",
        VolumeRefused = "volume-refused",
        ImageCreated = "image-created",
        ImageActivated = "image-activated",
        Rollback = "rollback",
        NodeDrained = "node-drained",
        NodeDrainFailed = "node-drain-failed",
        WorkloadFailedOver = "workload-failed-over",
        WorkloadRefused = "workload-refused",
        WorkloadOnFargate = "workload-on-fargate",
        WorkloadRolloutFailed = "workload-rollout-failed",
        WorkloadRecovered = "workload-recovered",
        WorkloadRolledBack = "workload-rolled-back",
        WorkloadReverted = "workload-reverted",
    }
}

kinds! {
    /// What a history entry records: something that happened, or something spotkeeper did.
    HistoryKind {
        GroupRegistered = "group-registered",
        GroupRemoved = "group-removed",
        PolicyChanged = "policy-changed",
        InstanceAdopted = "instance-adopted",
        InstanceLaunched = "instance-launched",
        InstanceState = "instance-state",
        Interrupted = "interrupted",
        InterruptionFailed = "interruption-failed",
        Detached = "detached",
        ReplacementLaunched = "replacement-launched",
        Replaced = "replaced",
        LaunchFailed = "launch-failed",
        Fallback = "fallback",
        CapacityRebalance = "capacity-rebalance",
        RebalanceRecommended = "rebalance-recommended",
        RebalanceDeferred = "rebalance-deferred",
        RecoveryStarted = "recovery-started",
        Recovered = "recovered",
        RecoveryFailed = "recovery-failed",
        MemberClosed = "member-closed",
        Stopping = "stopping",
        Terminated = "terminated",
        AddressAssociated = "address-associated",
        DnsUpdated = "dns-updated",
        VolumeAttached = "volume-attached",
        VolumeDetaching = "volume-detaching",
        VolumeHeld = "volume-held",
        VolumeMoved = "volume-moved",
        VolumeGrown = "volume-grown",
        VolumeRefused = "volume-refused",
        FilesystemGrowing = "filesystem-growing",
        FilesystemGrown = "filesystem-grown",
        FilesystemNotGrown = "filesystem-not-grown",
        ImageCreated = "image-created",
        ImageActivated = "image-activated",
        ImagePruned = "image-pruned",
        Rollback = "rollback",
        WebhookDelivered = "webhook-delivered",
        WebhookFailed = "webhook-failed",
        NodeCordoned = "node-cordoned",
        NodeDrained = "node-drained",
        NodeDrainRetrying = "node-drain-retrying",
        NodeDrainFailed = "node-drain-failed",
        PodDeletedAtDeadline = "pod-deleted-at-deadline",
        PodsLeft = "pods-left",
        WorkloadFailedOver = "workload-failed-over",
        WorkloadRefused = "workload-refused",
        WorkloadOnFargate = "workload-on-fargate",
        WorkloadRolloutFailed = "workload-rollout-failed",
        WorkloadRecoveryStarted = "workload-recovery-started",
        WorkloadRecovered = "workload-recovered",
        WorkloadRolledBack = "workload-rolled-back",
        WorkloadReverted = "workload-reverted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_name_and_reads_back() {
        for (names, parsed) in [
            (
                AlertKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                AlertKind::ALL.iter().all(|k| AlertKind::parse(k.as_str()) == Some(*k)),
            ),
            (
                HistoryKind::ALL.iter().map(|k| k.as_str()).collect(),
                HistoryKind::ALL.iter().all(|k| HistoryKind::parse(k.as_str()) == Some(*k)),
            ),
        ] {
            let mut unique = names.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), names.len(), "{names:?}");
            assert!(names.iter().all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
            assert!(parsed);
        }
        assert_eq!(AlertKind::parse("everything"), None);
    }
}
