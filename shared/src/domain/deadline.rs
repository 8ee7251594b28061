//! The invocation's deadline: Lambda ends a function at its timeout wherever it is, so every wait
//! must end before then, leaving time to record what it did and what is left.

use std::time::{Duration, Instant, SystemTime};

/// Time kept back from every wait: to record the outcome, write the history and send the alerts
/// (each alert channel may take its 5-second timeout) before Lambda stops the function.
pub const MARGIN: Duration = Duration::from_secs(8);

/// When the invocation must have finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// The deadline `timeout` from now (a function's configured timeout, at its start).
    pub fn after(timeout: Duration) -> Self {
        Self { at: Instant::now() + timeout }
    }

    /// The deadline Lambda gives an invocation (`lambda_runtime::Context::deadline()`).
    pub fn at(deadline: SystemTime) -> Self {
        Self::after(deadline.duration_since(SystemTime::now()).unwrap_or_default())
    }

    /// The time left for the report that ends the invocation: all of it but a second, for the
    /// runtime to carry the answer back.
    pub fn to_end(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now()).saturating_sub(Duration::from_secs(1))
    }

    /// How long a wait may still last: the time to the deadline less the `MARGIN`.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now()).saturating_sub(MARGIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_kept_back() {
        assert_eq!(Deadline::after(MARGIN / 2).remaining(), Duration::ZERO, "too close: no wait at all");
        let left = Deadline::after(MARGIN + Duration::from_secs(60)).remaining();
        assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(50), "{left:?}");
        let past = Deadline::at(SystemTime::now() - Duration::from_secs(1));
        assert_eq!(past.remaining(), Duration::ZERO);
    }
}
