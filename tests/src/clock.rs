//! A clock the tests move: cooldowns and backoffs are tested by moving time, not by sleeping
//! (or, for a load test, a clock that runs with real time from some point on).

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use spotkeeper::clock::{Clock, Sleep};

#[derive(Debug)]
pub struct TestClock {
    now: Mutex<DateTime<Utc>>,
    /// When each pending sleep ends.
    sleepers: Mutex<Vec<DateTime<Utc>>>,
    /// Since when the clock also runs with real time (`run_in_real_time`).
    running_since: Mutex<Option<std::time::Instant>>,
}

impl TestClock {
    pub fn starting_now() -> Self {
        Self { now: Mutex::new(Utc::now()), sleepers: Mutex::new(Vec::new()), running_since: Mutex::new(None) }
    }

    /// From now on the clock runs with real time (still moved by `advance`), and a sleep takes
    /// real time. For the load tests: work paced in real time (a client's request rate) must
    /// not fall behind sleepers that share simulated time and race it ahead.
    pub fn run_in_real_time(&self) {
        if let Ok(mut since) = self.running_since.lock() {
            since.get_or_insert_with(std::time::Instant::now);
        }
    }

    /// Real time run since `run_in_real_time`, if it was called.
    fn ran(&self) -> Option<Duration> {
        let since = self.running_since.lock().ok().and_then(|s| *s)?;
        Duration::from_std(since.elapsed()).ok()
    }

    fn peek(&self) -> DateTime<Utc> {
        let now = self.now.lock().map_or_else(|_| Utc::now(), |now| *now);
        now + self.ran().unwrap_or_default()
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
        if let Some(ran) = self.ran() {
            return self.now.lock().map_or_else(|_| Utc::now(), |now| *now + ran);
        }
        match self.now.lock() {
            Ok(mut now) => {
                let read = *now;
                *now += Duration::milliseconds(1);
                read
            }
            Err(_) => Utc::now(),
        }
    }

    /// Simulated time: the sleep whose end comes first moves the clock to its end at once, and
    /// every sleep whose end the clock has reached ends. Sleepers side by side (fifty drains)
    /// share one passage of time instead of each adding theirs.
    fn sleep(&self, for_: std::time::Duration) -> Sleep<'_> {
        if self.ran().is_some() {
            return Box::pin(tokio::time::sleep(for_));
        }
        let end = self.peek() + Duration::from_std(for_).unwrap_or(Duration::MAX);
        let pending = Pending::new(self, end);
        Box::pin(async move {
            while !pending.over() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
    }
}

/// A sleep in progress; dropped (its task killed), it no longer holds the clock back.
struct Pending<'a> {
    clock: &'a TestClock,
    end: DateTime<Utc>,
}

impl<'a> Pending<'a> {
    fn new(clock: &'a TestClock, end: DateTime<Utc>) -> Self {
        if let Ok(mut sleepers) = clock.sleepers.lock() {
            sleepers.push(end);
        }
        Self { clock, end }
    }

    /// Whether the sleep is over; the first to end moves the clock.
    fn over(&self) -> bool {
        let (Ok(mut now), Ok(sleepers)) = (self.clock.now.lock(), self.clock.sleepers.lock()) else { return true };
        if *now >= self.end {
            return true;
        }
        if sleepers.iter().min() == Some(&self.end) {
            *now = self.end;
            return true;
        }
        false
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Ok(mut sleepers) = self.clock.sleepers.lock()
            && let Some(at) = sleepers.iter().position(|s| *s == self.end)
        {
            sleepers.swap_remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleepers_side_by_side_share_the_time_that_passes() {
        let clock = TestClock::starting_now();
        let start = clock.peek();
        let seconds = |s: u64| std::time::Duration::from_secs(s);
        tokio::join!(clock.sleep(seconds(5)), clock.sleep(seconds(5)), clock.sleep(seconds(3)));
        assert_eq!(clock.peek() - start, Duration::seconds(5), "not 13 s");
        clock.sleep(seconds(2)).await;
        assert_eq!(clock.peek() - start, Duration::seconds(7));
    }

    #[tokio::test]
    async fn a_clock_running_in_real_time_sleeps_really_and_still_moves_on_advance() {
        let clock = TestClock::starting_now();
        let start = clock.peek();
        clock.run_in_real_time();
        let real = std::time::Instant::now();
        clock.sleep(std::time::Duration::from_millis(50)).await;
        assert!(real.elapsed() >= std::time::Duration::from_millis(50), "a real sleep");
        clock.advance(Duration::seconds(180));
        let moved = clock.now() - start;
        assert!(moved >= Duration::milliseconds(180_050) && moved < Duration::seconds(181), "{moved}");
    }

    #[tokio::test]
    async fn a_dropped_sleep_holds_nothing_back() {
        let clock = TestClock::starting_now();
        let start = clock.peek();
        drop(clock.sleep(std::time::Duration::from_secs(1)));
        let first = Pending::new(&clock, start + Duration::seconds(1));
        drop(first);
        clock.sleep(std::time::Duration::from_secs(10)).await;
        assert_eq!(clock.peek() - start, Duration::seconds(10));
    }
}
