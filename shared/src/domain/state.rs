//! An EC2 instance's state, as EC2 spells it in its state-change events.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The lifecycle states of an EC2 instance. Any other word in a state-change event is a malformed
/// event, refused where it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl InstanceState {
    /// EC2's word for the state (as stored in member records).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
        }
    }
}

/// A word that is not one of EC2's instance states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownState;

impl FromStr for InstanceState {
    type Err = UnknownState;
    fn from_str(word: &str) -> Result<Self, Self::Err> {
        use InstanceState::*;
        [Pending, Running, Stopping, Stopped, ShuttingDown, Terminated]
            .into_iter()
            .find(|s| s.as_str() == word)
            .ok_or(UnknownState)
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_and_display_spell_each_state_as_ec2_does() {
        use InstanceState::*;
        for (state, word) in [
            (Pending, "pending"),
            (Running, "running"),
            (Stopping, "stopping"),
            (Stopped, "stopped"),
            (ShuttingDown, "shutting-down"),
            (Terminated, "terminated"),
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), serde_json::json!(word));
            assert_eq!(serde_json::from_value::<InstanceState>(serde_json::json!(word)).unwrap(), state);
            assert_eq!(state.to_string(), word);
            assert_eq!(word.parse(), Ok(state));
        }
        for unknown in ["rebooting", "Running", "", "shutting_down"] {
            assert!(serde_json::from_value::<InstanceState>(serde_json::json!(unknown)).is_err(), "{unknown}");
            assert_eq!(unknown.parse::<InstanceState>(), Err(UnknownState), "{unknown}");
        }
    }
}
