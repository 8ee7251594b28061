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

#[cfg(test)]
mod tests {
    use super::*;

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
