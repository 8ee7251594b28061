//! Where instances run: markets, pools and the subnets that make them.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::SubnetId;

/// Spot or On-Demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    Spot,
    OnDemand,
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Market::Spot => "spot",
            Market::OnDemand => "on-demand",
        })
    }
}

/// Where an instance can run: one instance type in one subnet (and so one AZ).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pool {
    pub instance_type: String,
    pub subnet_id: SubnetId,
    pub availability_zone: String,
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {} ({})", self.instance_type, self.availability_zone, self.subnet_id)
    }
}

impl Pool {
    /// A stable key for the pool, used in the table's pool-health item.
    pub fn key(&self) -> String {
        format!("{}|{}", self.instance_type, self.subnet_id)
    }
}

/// Pools to avoid for a while: one that was just interrupted or had no capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolHealth {
    /// Pool key → avoid until.
    pub avoid_until: std::collections::HashMap<String, DateTime<Utc>>,
}

impl PoolHealth {
    pub fn is_healthy(&self, pool: &Pool, now: DateTime<Utc>) -> bool {
        self.avoid_until.get(&pool.key()).is_none_or(|until| *until <= now)
    }
}

/// A subnet a group may launch into, with the AZ it lies in (looked up at registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: SubnetId,
    pub availability_zone: String,
}
