//! The bandwidth limit (`bandwidth=` in the location), shared by every transfer of
//! one backend.

use std::time::{Duration, Instant};

/// A shared pacing clock for the bandwidth limit: each transfer reserves its share of
/// time and waits until its slot starts.
pub(super) struct Throttle {
    rate: u64,
    next: std::sync::Mutex<Instant>,
}

impl Throttle {
    pub(super) fn new(rate: u64) -> Self {
        Throttle { rate, next: std::sync::Mutex::new(Instant::now()) }
    }
    pub(super) async fn take(&self, bytes: u64) {
        let wait = {
            let mut next = self.next.lock().unwrap();
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
