//! Retries with exponential backoff and full jitter, honouring the
//! registry's `Retry-After`. Only errors whose [`Action`] is `Retry` are
//! retried.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::{Action, Error, Result};

/// How often and how patiently to retry.
///
/// ```
/// use std::time::Duration;
/// use registry_client::RetryPolicy;
/// let p = RetryPolicy::default().with_max_attempts(2).with_base_delay(Duration::from_millis(10));
/// assert_eq!(p.max_attempts(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Total attempts, the first included (at least 1).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The first backoff; it doubles each attempt.
    pub fn with_base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// The longest backoff, and the longest `Retry-After` honoured.
    pub fn with_max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Total attempts.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The wait before attempt `attempt + 1` (`attempt` counts from 1).
    pub fn delay(&self, attempt: u32, err: &Error) -> Duration {
        if let Some(after) = err.retry_after() {
            return after.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        // Full jitter: many clients retrying at once spread out.
        let millis = cap.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis.max(1)))
    }

    /// Runs `op` until it succeeds, fails with an error that is not worth
    /// retrying, or the attempts run out.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) if e.action() == Action::Retry && attempt < self.max_attempts => {
                    let wait = self.delay(attempt, &e);
                    tracing::debug!(attempt, ?wait, error = %e, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn unavailable(retry_after: Option<Duration>) -> Error {
        Error::Status {
            registry: "r".into(),
            what: "GET".into(),
            status: 503,
            code: None,
            message: String::new(),
            retry_after,
        }
    }

    #[tokio::test]
    async fn retries_temporary_errors_then_succeeds() {
        let calls = AtomicU32::new(0);
        let p = RetryPolicy::default().with_base_delay(Duration::from_millis(1));
        let v = p
            .run(|_| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(unavailable(None))
                } else {
                    Ok(7)
                }
            })
            .await
            .unwrap();
        assert_eq!(v, 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gives_up_at_once_on_permanent_errors() {
        let calls = AtomicU32::new(0);
        let err = RetryPolicy::default()
            .run(|_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::Status {
                    registry: "r".into(),
                    what: "PUT".into(),
                    status: 400,
                    code: None,
                    message: String::new(),
                    retry_after: None,
                })
            })
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(400));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn honours_retry_after_and_caps_backoff() {
        let p = RetryPolicy::default().with_max_delay(Duration::from_secs(3));
        assert_eq!(
            p.delay(1, &unavailable(Some(Duration::from_secs(2)))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(1, &unavailable(Some(Duration::from_secs(60)))),
            Duration::from_secs(3)
        );
        for attempt in 1..20 {
            assert!(p.delay(attempt, &unavailable(None)) <= Duration::from_secs(3));
        }
    }
}
