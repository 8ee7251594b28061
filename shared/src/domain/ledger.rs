//! The cost-and-savings ledger's records: what a group ran and paid, day by day.

use serde::{Deserialize, Serialize};

/// What a group ran and paid over one stretch of time (a ledger day may hold only counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub spot_hours: f64,
    pub on_demand_hours: f64,
    /// What was paid.
    pub cost: f64,
    /// What the same hours would have cost On-Demand.
    pub on_demand_cost: f64,
}

impl Usage {
    /// Adds another stretch's hours and costs to this one.
    pub fn add(&mut self, other: &Usage) {
        self.spot_hours += other.spot_hours;
        self.on_demand_hours += other.on_demand_hours;
        self.cost += other.cost;
        self.on_demand_cost += other.on_demand_cost;
    }
}

/// One group's ledger for one day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerDay {
    pub day: String,
    #[serde(flatten)]
    pub usage: Usage,
    #[serde(default)]
    pub interruptions: u64,
    #[serde(default)]
    pub fallbacks: u64,
}
