//! Launches as the table keeps them: what is being replaced, and a launch whose answer never
//! came, to be sent again as it was.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Pool, Reason, StandaloneSpec};

/// An instance being replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Old {
    pub instance_id: String,
    /// When its replacement was called for (the warning's time for an interruption).
    pub since: DateTime<Utc>,
    pub pool: Option<Pool>,
}

/// A launch whose answer never came: EC2 may or may not have launched. The next delivery of any
/// of its events sends the very same request again (same client token, same parameters), and EC2
/// answers with what the first one launched instead of launching twice — whichever batch that
/// delivery arrives in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub token: String,
    pub spec: StandaloneSpec,
    pub pools: Vec<Pool>,
    pub olds: Vec<Old>,
    /// The event behind each of `olds`, in the same order.
    pub events: Vec<String>,
    pub extra: u32,
    pub reason: Reason,
    pub on_demand: u32,
    pub fallback: bool,
}
