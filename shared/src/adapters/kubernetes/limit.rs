//! A client-side request rate (client-go's token bucket): in a mass interruption, fifty drains
//! must not flood one API server, whose priority-and-fairness would answer 429s to all of them.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Requests a second and burst: client-go's defaults for a controller of this size.
pub const QPS: f64 = 50.0;
pub const BURST: f64 = 100.0;

#[derive(Debug)]
pub struct Limiter {
    qps: f64,
    burst: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl Limiter {
    pub fn new(qps: f64, burst: f64) -> Self {
        Self { qps, burst, bucket: Mutex::new((burst, Instant::now())) }
    }

    /// Waits for a request's turn.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let Ok(mut bucket) = self.bucket.lock() else { return };
                let now = Instant::now();
                let (tokens, since) = *bucket;
                let tokens = (tokens + now.duration_since(since).as_secs_f64() * self.qps).min(self.burst);
                if tokens >= 1.0 {
                    *bucket = (tokens - 1.0, now);
                    return;
                }
                *bucket = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.qps)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(QPS, BURST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_passes_then_the_rate_holds() {
        let limiter = Limiter::new(100.0, 5.0);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        let burst = start.elapsed();
        for _ in 0..10 {
            limiter.acquire().await;
        }
        // Only lower bounds: a slow machine may take longer, never less.
        assert!(start.elapsed() >= Duration::from_millis(95), "10 past the burst at 100/s: {:?}", start.elapsed());
        assert!(burst < start.elapsed() / 2, "the burst did not wait for the rate: {burst:?}");
    }
}
