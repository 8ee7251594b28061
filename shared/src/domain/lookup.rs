//! What the table knows of a managed instance, read in the interruption's one table round.

use serde::{Deserialize, Serialize};

use super::{Group, GroupName, Pool};

/// What the table knows of a managed instance: its group (as a snapshot) and its pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lookup {
    pub group: GroupName,
    pub config: Group,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Pool>,
    /// The client token of a launch for this instance whose outcome is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
}
