//! Names and ids: what identifies a group and an instance, checked where they arrive, since
//! they end up in table keys, tags, URLs and AWS call parameters.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The tag spotkeeper puts on every instance it launches or adopts.
pub const GROUP_TAG: &str = "spotkeeper:group";
/// The tag a replacement carries: the id of the instance it replaces.
pub const REPLACES_TAG: &str = "spotkeeper:replaces";

/// A group's name: 1–63 lowercase letters, digits and dashes, starting with a letter or digit.
/// It appears in table keys, tags and URLs, so it is kept to characters safe in all three.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupName(String);

impl GroupName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let ok_len = (1..=63).contains(&value.len());
        let ok_chars = value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok_len && ok_chars && !value.starts_with('-') {
            Ok(Self(value))
        } else {
            Err(format!("group name {value:?} must be 1-63 characters of a-z, 0-9 and '-', not starting with '-'"))
        }
    }
}

impl From<GroupName> for String {
    fn from(value: GroupName) -> Self {
        value.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An EC2 instance id as EC2 makes them: `i-` and 8 or 17 lowercase hex digits. Ids from
/// events become table keys and AWS call parameters, so anything else is refused where it
/// arrives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(String);

impl InstanceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `value` is `prefix` and 8 or 17 lowercase hex digits: EC2's resource ids
/// (`i-`, `vol-`, ...).
pub fn is_ec2_id(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl TryFrom<String> for InstanceId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if is_ec2_id(&value, "i-") {
            Ok(Self(value))
        } else {
            let shown: String = value.chars().take(40).collect();
            let more = if value.chars().count() > 40 { "…" } else { "" };
            Err(format!("{shown:?}{more} is not an EC2 instance id (i- and 8 or 17 hex digits)"))
        }
    }
}

impl From<InstanceId> for String {
    fn from(value: InstanceId) -> Self {
        value.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string that was checked once, where it arrived: `TryFrom<String>` checks it, `as_str` and
/// `Display` give it back, and serde reads and writes it as the plain string (a stored item or an
/// answer keeps its shape; one that does not parse is refused like any bad field).
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&value).map(|()| Self(value))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = String;
            fn try_from(value: &str) -> Result<Self, Self::Error> {
                Self::try_from(value.to_string())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// A value quoted in an error, cut short: a refused value may be anything, of any length.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(40).collect();
    let more = if value.chars().count() > 40 { "…" } else { "" };
    format!("{cut:?}{more}")
}

/// Whether `value` is `prefix` and one or more ASCII letters and digits: the ids spotkeeper has
/// always taken for subnets, volumes and addresses (real ones are hex; tests and older records may
/// use other letters).
fn id_like(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn prefixed(value: &str, prefix: &str, what: &str) -> Result<(), String> {
    if id_like(value, prefix) { Ok(()) } else { Err(format!("{} is not {what} ({prefix}...)", shown(value))) }
}

checked_string!(
    /// An EKS cluster's name: 1–100 letters, digits, `-` and `_`, starting with a letter or digit.
    /// It is signed into the bearer token, so it is checked where it arrives.
    ClusterName,
    |v| {
        let mut bytes = v.bytes();
        let ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
            && v.len() <= 100
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(())
        } else {
            let shown: String = v.chars().take(40).collect();
            Err(format!(
                "{shown:?} is not an EKS cluster name (1-100 letters, digits, '-' or '_', starting with a letter or digit)"
            ))
        }
    }
);

checked_string!(
    /// A subnet id: `subnet-` and letters and digits.
    SubnetId,
    |v| prefixed(v, "subnet-", "a subnet id")
);

checked_string!(
    /// An EBS volume id: `vol-` and letters and digits.
    VolumeId,
    |v| prefixed(v, "vol-", "a volume id")
);

checked_string!(
    /// An Elastic IP allocation id: `eipalloc-` and letters and digits.
    AllocationId,
    |v| prefixed(v, "eipalloc-", "an allocation id")
);

checked_string!(
    /// An EC2 instance type: a family and a size around a dot (`m5.large`), of lowercase letters,
    /// digits, dots and dashes.
    InstanceType,
    |v| {
        let ok = v.split_once('.').is_some_and(|(family, size)| !family.is_empty() && !size.is_empty())
            && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if ok { Ok(()) } else { Err(format!("{} is not an instance type (like m5.large)", shown(v))) }
    }
);

checked_string!(
    /// A block device name as EC2 reports and takes it: `/dev/` and letters and digits (`/dev/sdf`,
    /// `/dev/xvda`, `/dev/nvme1n1`).
    DeviceName,
    |v| {
        let ok = v.strip_prefix("/dev/").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_alphanumeric()));
        if ok { Ok(()) } else { Err(format!("{} is not a device name (like /dev/sdf)", shown(v))) }
    }
);

checked_string!(
    /// A mount path as the resize script may use it: absolute, of plain characters (it goes into a
    /// shell), no `..`.
    MountPath,
    |v| {
        let plain = v.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b));
        if v.starts_with('/') && plain && !v.contains("..") && v.len() <= 255 {
            Ok(())
        } else {
            Err(format!("{v:?} is not a mount path (absolute, of letters, digits and / _ . -)"))
        }
    }
);

checked_string!(
    /// The id of the event that asked for work (EventBridge's, or a webhook's): not empty.
    EventId,
    |v| if v.is_empty() { Err("an event id must not be empty".to_string()) } else { Ok(()) }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_strings_take_what_was_taken_before_and_keep_their_shape() {
        let subnet = SubnetId::try_from("subnet-0a1b2c3d").unwrap();
        assert_eq!((subnet.as_str(), subnet.to_string()), ("subnet-0a1b2c3d", "subnet-0a1b2c3d".to_string()));
        assert_eq!(serde_json::to_value(&subnet).unwrap(), serde_json::json!("subnet-0a1b2c3d"));
        assert_eq!(serde_json::from_value::<SubnetId>(serde_json::json!("subnet-0a1b2c3d")).unwrap(), subnet);
        assert!(serde_json::from_value::<SubnetId>(serde_json::json!("subnet-")).is_err());
        for good in ["subnet-1", "subnet-a", "subnet-0000000000000000f"] {
            assert!(SubnetId::try_from(good).is_ok(), "{good}");
        }
        for bad in ["vol-", "subnet-1", "vol-1;rm"] {
            assert!(VolumeId::try_from(bad).unwrap_err().contains("is not a volume id"), "{bad}");
        }
        assert!(VolumeId::try_from("vol-0123abcd").is_ok());
        assert!(AllocationId::try_from("eipalloc-1").is_ok());
        assert!(AllocationId::try_from("eipalloc-").unwrap_err().contains("is not an allocation id"));
        for good in ["m5.large", "c6gn.16xlarge", "u-6tb1.metal"] {
            assert!(InstanceType::try_from(good).is_ok(), "{good}");
        }
        for bad in ["m5", "M5.large", ".large", "m5.", "m5.large xl", ""] {
            assert!(InstanceType::try_from(bad).unwrap_err().contains("is not an instance type"), "{bad}");
        }
        for good in ["/dev/sdf", "/dev/xvda", "/dev/nvme1n1"] {
            assert!(DeviceName::try_from(good).is_ok(), "{good}");
        }
        for bad in ["sdf", "/dev/", "/dev/sd f", "/dev/../sda"] {
            assert!(DeviceName::try_from(bad).unwrap_err().contains("is not a device name"), "{bad}");
        }
        for good in ["/", "/data", "/var/lib/db-1"] {
            assert!(MountPath::try_from(good).is_ok(), "{good}");
        }
        for bad in ["data", "/data/../etc", "/data; rm -rf /", "", &format!("/{}", "a".repeat(255))] {
            assert!(MountPath::try_from(bad).unwrap_err().contains("is not a mount path"), "{bad}");
        }
        assert!(EventId::try_from("").is_err() && EventId::try_from("7bf73129-1428-4cd3").is_ok());
        let long = format!("subnet-{}", "!".repeat(500));
        assert!(SubnetId::try_from(long).unwrap_err().len() < 120);
    }

    #[test]
    fn group_names_are_checked() {
        assert!(GroupName::try_from("web-1".to_string()).is_ok());
        for bad in ["", "-web", "Web", "web_1", "a/b", &"x".repeat(64)] {
            let err = GroupName::try_from(bad.to_string()).unwrap_err();
            assert!(err.contains("must be"), "{bad}: {err}");
        }
    }

    #[test]
    fn instance_ids_have_ec2_shape() {
        for good in ["i-0123abcd", "i-0b22a22eec53b9321"] {
            assert_eq!(InstanceId::try_from(good.to_string()).map(String::from), Ok(good.to_string()));
        }
        let long = format!("i-{}", "a".repeat(200_000));
        for bad in [
            "",
            "i-",
            "i-1",
            "i-0123ABCD",
            "i-0123abcdx",
            "vol-0123abcd",
            "not-an-instance-id; DROP TABLE",
            "../../etc/passwd",
            &long,
        ] {
            let err = InstanceId::try_from(bad.to_string()).unwrap_err();
            assert!(err.contains("is not an EC2 instance id") && err.len() < 120, "{err}");
        }
    }
}
