//! spotkeeper: keeps an EC2 fleet on Spot capacity. This crate holds everything that is not a
//! Lambda function's `main`, on five floors (ARCHITECTURE.md): `domain` (data and invariants),
//! `decisions` (pure), `adapters` (AWS, the table, notifications), `workflows` (look up → decide →
//! act → record → notify) and `runtime` (dependencies, serve, configuration, telemetry).

pub mod adapters;
#[cfg(test)]
mod architecture;
pub mod decisions;
pub mod domain;
/// Fixtures and property-test strategies shared by the unit and end-to-end tests.
#[cfg(any(test, feature = "test-support"))]
pub mod fixtures;
mod runtime;
pub mod workflows;

pub use domain::Deadline;
/// The metrics facade, for the functions' counters, gauges and histograms (emitted as EMF).
pub use metrics;
pub use runtime::{Deps, clock, config, error::Error, event, serve, telemetry};
