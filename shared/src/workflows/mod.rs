//! Workflows: look up → decide → act → record → notify. They use every other floor; the function
//! crates call them and answer.

pub mod images;
pub mod intake;
pub mod interruption;
pub mod launch;
pub mod online;
pub mod rebalance;
pub mod replacement;
pub mod report;
pub mod volume;
