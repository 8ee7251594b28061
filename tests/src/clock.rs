//! A clock the tests move: cooldowns and backoffs are tested by moving time, not by sleeping.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use spotkeeper::clock::{Clock, Sleep};

#[derive(Debug)]
pub struct TestClock {
    now: Mutex<DateTime<Utc>>,
}

impl TestClock {
    pub fn starting_now() -> Self {
        Self { now: Mutex::new(Utc::now()) }
    }

    pub fn advance(&self, by: Duration) {
        if let Ok(mut now) = self.now.lock() {
            *now += by;
        }
    }

    pub fn set(&self, to: DateTime<Utc>) {
        if let Ok(mut now) = self.now.lock() {
            *now = to;
        }
    }
}

impl Clock for TestClock {
    /// Each reading moves the clock a millisecond, so what happens in order is stamped in order.
    fn now(&self) -> DateTime<Utc> {
        match self.now.lock() {
            Ok(mut now) => {
                let read = *now;
                *now += Duration::milliseconds(1);
                read
            }
            Err(_) => Utc::now(),
        }
    }

    /// Moves the clock on by `for_` at once, then lets other tasks (the fake API server) run for
    /// a moment of real time. Two sleepers side by side each move it: time runs faster for them.
    fn sleep(&self, for_: std::time::Duration) -> Sleep {
        self.advance(Duration::from_std(for_).unwrap_or(Duration::MAX));
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(2)))
    }
}
