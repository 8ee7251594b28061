//! The cost-and-savings ledger's records: what a group ran and paid, day by day.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A ledger day (UTC): the key of a day's usage, counts and cached prices, stored and answered
/// as `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Day(NaiveDate);

/// The ledger's one day format.
const DAY_FORMAT: &str = "%Y-%m-%d";

impl Day {
    /// The UTC day `at` falls on.
    pub fn of(at: DateTime<Utc>) -> Day {
        Day(at.date_naive())
    }
}

impl From<NaiveDate> for Day {
    fn from(date: NaiveDate) -> Self {
        Day(date)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(DAY_FORMAT))
    }
}

/// Text that is no day `YYYY-MM-DD`.
#[derive(Debug, Error)]
#[error("{text:?} is not a day YYYY-MM-DD")]
pub struct BadDay {
    text: String,
    #[source]
    source: chrono::ParseError,
}

impl FromStr for Day {
    type Err = BadDay;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        NaiveDate::parse_from_str(text, DAY_FORMAT).map(Day).map_err(|source| BadDay { text: text.to_string(), source })
    }
}

impl TryFrom<String> for Day {
    type Error = BadDay;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Day> for String {
    fn from(day: Day) -> Self {
        day.to_string()
    }
}

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
    pub day: Day,
    #[serde(flatten)]
    pub usage: Usage,
    #[serde(default)]
    pub interruptions: u64,
    #[serde(default)]
    pub fallbacks: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_reads_and_writes_as_the_ledger_stores_it() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        let cases = [
            (at("2026-11-21T00:00:00Z"), "2026-11-21"),
            (at("2026-11-21T23:59:59Z"), "2026-11-21"),
            (at("2026-11-21T23:30:00-02:00"), "2026-11-22"),
            (at("2026-01-05T12:00:00Z"), "2026-01-05"),
        ];
        for (now, text) in cases {
            let day = Day::of(now);
            assert_eq!(day.to_string(), now.format("%Y-%m-%d").to_string(), "{now}");
            assert_eq!(day.to_string(), text);
            assert_eq!(text.parse::<Day>().unwrap(), day);
            assert_eq!(serde_json::to_value(day).unwrap(), serde_json::json!(text));
            assert_eq!(serde_json::from_value::<Day>(serde_json::json!(text)).unwrap(), day);
        }
        for bad in ["2026-13-01", "21/11/2026", "", "2026-11-21T00:00:00Z"] {
            assert!(bad.parse::<Day>().is_err(), "{bad}");
            assert!(serde_json::from_value::<Day>(serde_json::json!(bad)).is_err(), "{bad}");
        }
    }
}
