//! EBS growth: pure decisions — how much a volume grows, whether EBS's limits allow it now,
//! which device serves a mount path, and the script that grows the filesystem.

use chrono::{DateTime, Duration, Utc};
use thiserror::Error;

use crate::domain::{Modification, MountPath, Stage, VolumePolicy};

/// Why a volume does not grow now.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("its previous modification (requested {since}) has not completed")]
    InProgress { since: DateTime<Utc> },
    #[error("it was modified at {last}; EBS allows the next modification from {next}")]
    TooSoon { last: DateTime<Utc>, next: DateTime<Utc> },
    #[error("it was modified {count} times in the last 24 hours, the most allowed")]
    TooMany { count: usize },
    #[error("it is {size} GiB, the group's maximum: it cannot grow further")]
    AtCap { size: u32 },
}

impl Refusal {
    /// A short name, for history and alerts.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::InProgress { .. } => "in-progress",
            Refusal::TooSoon { .. } => "too-soon",
            Refusal::TooMany { .. } => "too-many",
            Refusal::AtCap { .. } => "full-size",
        }
    }
}

/// The new size: the larger of `growth_percent` more and `min_step_gib` more, capped at
/// `max_size_gib`. At the cap, a refusal.
pub fn grown_size(size: u32, policy: &VolumePolicy) -> Result<u32, Refusal> {
    let share = (u64::from(size) * u64::from(policy.growth_percent)).div_ceil(100);
    let by_share = size.saturating_add(u32::try_from(share).unwrap_or(u32::MAX));
    let by_step = size.saturating_add(policy.min_step_gib);
    let new = by_share.max(by_step).min(policy.max_size_gib);
    if new <= size { Err(Refusal::AtCap { size }) } else { Ok(new) }
}

/// Whether EBS's limits (enforced here from the table: the emulator does not) allow a
/// modification now: none in progress, at most `max_per_day` in a rolling 24 hours, at least
/// `min_interval` apart.
pub fn may_modify(history: &[Modification], policy: &VolumePolicy, now: DateTime<Utc>) -> Result<(), Refusal> {
    if let Some(open) = history.iter().find(|m| matches!(m.stage, Stage::Requested | Stage::Optimizing)) {
        return Err(Refusal::InProgress { since: open.at });
    }
    let counted: Vec<&Modification> = history.iter().filter(|m| m.stage != Stage::Failed).collect();
    let recent = counted.iter().filter(|m| m.at > now - Duration::hours(24)).count();
    if recent >= policy.max_per_day as usize {
        return Err(Refusal::TooMany { count: recent });
    }
    if let Some(last) = counted.iter().map(|m| m.at).max() {
        let next = last + Duration::from_std(policy.min_interval).unwrap_or(Duration::MAX);
        if now < next {
            return Err(Refusal::TooSoon { last, next });
        }
    }
    Ok(())
}

/// The EBS device that holds `path`: the group's mapping, or the root device for `/`.
pub fn device_for(path: &str, policy: &VolumePolicy, root_device: Option<&str>) -> Option<String> {
    policy.path_devices.get(path).cloned().or_else(|| (path == "/").then(|| root_device.map(str::to_string)).flatten())
}

/// The shell script that grows the filesystem at `path` once EBS has the new size: it finds the
/// partition behind the mount (device names differ on Nitro instances), grows it with growpart
/// when there is one, then grows the filesystem with the tool its type needs.
pub fn resize_script(path: &MountPath, fstype: Option<&str>, volume_id: &str, device: &str) -> Vec<String> {
    let grow = match fstype {
        Some("xfs") => format!("xfs_growfs {path}"),
        Some("ext2" | "ext3" | "ext4") => "resize2fs \"$src\"".to_string(),
        _ => format!(
            "case \"$(findmnt -no FSTYPE {path})\" in xfs) xfs_growfs {path} ;; ext*) resize2fs \"$src\" ;; *) echo \"cannot grow $(findmnt -no FSTYPE {path})\" >&2; exit 1 ;; esac"
        ),
    };
    vec![
        "set -euo pipefail".to_string(),
        format!("# spotkeeper: grow the filesystem at {path} on {volume_id} ({device}, {})", fstype.unwrap_or("type found on the host")),
        format!("src=$(findmnt -no SOURCE {path})"),
        "disk=$(lsblk -no PKNAME \"$src\" | head -n 1)".to_string(),
        // growpart exits 1 when the partition already fills the disk: not an error here.
        "if [ -n \"$disk\" ]; then growpart \"/dev/$disk\" \"$(cat /sys/class/block/$(basename \"$src\")/partition)\" || [ $? -eq 1 ]; fi".to_string(),
        grow,
        format!("df -h {path}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn modification(at_: &str, stage: Stage) -> Modification {
        Modification {
            at: at(at_),
            from_gib: 20,
            to_gib: 30,
            stage,
            command_id: None,
            resize_claimed_at: None,
            source: "alarm".into(),
        }
    }

    #[test]
    fn growth_takes_the_larger_step_within_the_cap() {
        let policy = VolumePolicy::default();
        assert_eq!(grown_size(20, &policy), Ok(30), "+10 GiB beats +25% of 20");
        assert_eq!(grown_size(100, &policy), Ok(125), "+25% beats +10 GiB");
        assert_eq!(grown_size(1000, &policy), Ok(1024), "capped");
        assert_eq!(grown_size(1024, &policy), Err(Refusal::AtCap { size: 1024 }));
        assert_eq!(grown_size(41, &policy), Ok(52), "rounds up");
    }

    #[test]
    fn ebs_limits_are_enforced_from_the_records() {
        let policy = VolumePolicy::default();
        let now = at("2026-11-21T12:00:00Z");
        assert_eq!(may_modify(&[], &policy, now), Ok(()));
        let open = [modification("2026-11-21T11:00:00Z", Stage::Optimizing)];
        assert!(matches!(may_modify(&open, &policy, now), Err(Refusal::InProgress { .. })));
        let recent = [modification("2026-11-21T07:00:00Z", Stage::Completed)];
        assert_eq!(
            may_modify(&recent, &policy, now),
            Err(Refusal::TooSoon { last: at("2026-11-21T07:00:00Z"), next: at("2026-11-21T13:00:00Z") })
        );
        let four = [
            modification("2026-11-20T12:30:00Z", Stage::Completed),
            modification("2026-11-20T18:30:00Z", Stage::Completed),
            modification("2026-11-21T00:30:00Z", Stage::Completed),
            modification("2026-11-21T06:00:00Z", Stage::Completed),
        ];
        assert_eq!(may_modify(&four, &policy, now), Err(Refusal::TooMany { count: 4 }));
        assert_eq!(may_modify(&four, &policy, at("2026-11-21T12:31:00Z")), Ok(()), "the oldest left the window");
        let failed = [modification("2026-11-21T11:00:00Z", Stage::Failed)];
        assert_eq!(may_modify(&failed, &policy, now), Ok(()), "a failed modification changed nothing");
    }

    #[test]
    fn paths_map_to_devices_and_only_plain_paths_pass() {
        let mut policy = VolumePolicy::default();
        policy.path_devices.insert("/data".into(), "/dev/sdf".into());
        assert_eq!(device_for("/data", &policy, Some("/dev/xvda")), Some("/dev/sdf".into()));
        assert_eq!(device_for("/", &policy, Some("/dev/xvda")), Some("/dev/xvda".into()));
        assert_eq!(device_for("/logs", &policy, Some("/dev/xvda")), None);
        // The check of a mount path is the type's: the script gets only a `MountPath`.
        assert!(MountPath::try_from("/data").is_ok());
        for bad in ["data", "/data; rm -rf /", "/da$(x)", "/a/../b", "/a b"] {
            assert!(MountPath::try_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_script_uses_the_tool_of_the_filesystem() {
        let data = MountPath::try_from("/data").unwrap();
        let ext4 = resize_script(&data, Some("ext4"), "vol-1", "/dev/sdf").join("\n");
        assert!(ext4.contains("resize2fs \"$src\"") && !ext4.contains("xfs_growfs"));
        assert!(ext4.contains("growpart") && ext4.contains("findmnt -no SOURCE /data"));
        let xfs = resize_script(&data, Some("xfs"), "vol-1", "/dev/sdf").join("\n");
        assert!(xfs.contains("xfs_growfs /data") && !xfs.contains("resize2fs"));
        let unknown = resize_script(&data, None, "vol-1", "/dev/sdf").join("\n");
        assert!(unknown.contains("findmnt -no FSTYPE /data"));
    }
}
