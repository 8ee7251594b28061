//! Time, injectable: cooldowns, TTLs and history go through a `Clock`, so tests move time
//! forward instead of sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A wait on a clock.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// Waits `for_` on this clock (a drain's pause between rounds): a test's clock moves instead.
    fn sleep(&self, for_: Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(for_))
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

pub type SharedClock = Arc<dyn Clock>;
