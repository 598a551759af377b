//! Retrying transient failures: the one layer that does (the SDK's retries are off).
//! Each attempt is bounded by the settings' time-outs, and attempts by `attempts`;
//! each waits for a place in the backend's adaptive window (`concurrency`), and
//! tells it how the server answered.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::Inner;
use crate::backend::{BResult, BackendError};

/// Delay before retry `attempt` (1-based): 200 ms doubling up to 20 s, full jitter
/// in its upper half so that parallel workers do not retry in lockstep.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1 << attempt.min(10)).min(Duration::from_secs(20));
    let ms = base.as_millis() as u64;
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

impl Inner {
    /// Runs `op` until it succeeds, fails for good, or runs out of attempts.
    pub(super) async fn retry<T, F, Fut>(&self, mut op: F) -> BResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = BResult<T>>,
    {
        let mut attempt = 1;
        loop {
            let slot = self.gate.enter().await;
            let result = op().await;
            self.gate.outcome(matches!(result, Err(BackendError::Transient { .. })));
            drop(slot);
            match result {
                Err(BackendError::Transient { object, reason }) => {
                    if attempt >= self.s.attempts {
                        let reason = format!("{reason} (gave up after {attempt} attempts)");
                        return Err(BackendError::Transient { object, reason });
                    }
                    tracing::debug!(%object, %reason, attempt, "transient S3 error, retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            assert!(d <= Duration::from_secs(20), "{d:?}");
            assert!(d >= Duration::from_millis(200), "{d:?}");
        }
        assert!(backoff(1) <= Duration::from_millis(400));
    }
}
