//! A client-side request rate (client-go's token bucket): in a mass interruption, fifty drains
//! must not flood one API server, whose priority-and-fairness would answer 429s to all of them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Urgent requests waiting for their turn: ordinary ones wait behind them.
    urgent: AtomicUsize,
}

impl Limiter {
    pub fn new(qps: f64, burst: f64) -> Self {
        Self { qps, burst, bucket: Mutex::new((burst, Instant::now())), urgent: AtomicUsize::new(0) }
    }

    /// Waits for a request's turn.
    pub async fn acquire(&self) {
        self.take(false).await;
    }

    /// Waits for a request's turn ahead of every ordinary request waiting: a node's cordon,
    /// which fifty other nodes' evictions and polls must not hold back (the rate still holds).
    pub async fn acquire_urgent(&self) {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.urgent.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.urgent);
        self.take(true).await;
    }

    async fn take(&self, urgent: bool) {
        loop {
            let wait = {
                let Ok(mut bucket) = self.bucket.lock() else { return };
                let now = Instant::now();
                let (tokens, since) = *bucket;
                let tokens = (tokens + now.duration_since(since).as_secs_f64() * self.qps).min(self.burst);
                let first = urgent || self.urgent.load(Ordering::SeqCst) == 0;
                if tokens >= 1.0 && first {
                    *bucket = (tokens - 1.0, now);
                    return;
                }
                *bucket = (tokens, now);
                // A token there but an urgent request waiting for it: look again after the next.
                let short = if tokens >= 1.0 { 1.0 } else { 1.0 - tokens };
                Duration::from_secs_f64(short / self.qps)
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

    #[tokio::test]
    async fn urgent_requests_go_before_ordinary_ones_waiting_and_the_rate_still_holds() {
        let limiter = std::sync::Arc::new(Limiter::new(10.0, 1.0));
        let start = Instant::now();
        limiter.acquire().await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, urgent) in [("ordinary-1", false), ("ordinary-2", false), ("urgent", true)] {
            let (limiter, order) = (limiter.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                if urgent {
                    limiter.acquire_urgent().await;
                } else {
                    limiter.acquire().await;
                }
                if let Ok(mut order) = order.lock() {
                    order.push((name, start.elapsed()));
                }
            }));
            tokio::task::yield_now().await;
        }
        for task in tasks {
            let _ = task.await;
        }
        let order = order.lock().map(|o| o.clone()).unwrap_or_default();
        assert_eq!(order.first().map(|o| o.0), Some("urgent"), "{order:?}");
        let last = order.last().map(|o| o.1).unwrap_or_default();
        // Only a lower bound, as above.
        assert!(last >= Duration::from_millis(290), "three requests after the burst take 0.3 s at 10/s: {order:?}");
        assert_eq!(limiter.urgent.load(Ordering::SeqCst), 0);
    }
}
