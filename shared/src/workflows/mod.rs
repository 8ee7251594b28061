//! Workflows: look up → decide → act → record → notify. They use every other floor; the function
//! crates call them and answer.

pub mod drain;
pub mod failover;
pub mod groups;
pub mod images;
pub mod instance_state;
pub mod intake;
pub mod interruption;
pub mod launch;
pub mod online;
pub mod rebalance;
pub mod replacement;
pub mod report;
pub mod scheduled;
pub mod volume;
