//! Decisions: pure functions over the domain — no I/O, no clients, no clock reads — each with
//! table tests. Workflows call them between looking up and acting.

pub mod adoption;
pub mod changes;
pub mod drain;
pub mod failover;
pub mod fallback;
pub mod growth;
pub mod images;
pub mod plan;
pub mod policy;
pub mod rebalancing;
pub mod recovery;
pub mod savings;
pub mod transitions;
