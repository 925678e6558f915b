//! Timeouts, circuit breaker and retry settings.

use std::time::Duration;

/// How patient a [`Failover`](crate::Failover) is with each registry.
/// The defaults are the seeds': 30 s timeouts, a breaker that opens after
/// 3 consecutive failures for 30 s, and 2 extra rounds over the whole list
/// with a backoff from 200 ms to 2 s.
///
/// ```
/// use std::time::Duration;
/// use registry_failover::FailoverConfig;
/// let mut config = FailoverConfig::default();
/// config.first_byte_timeout = Duration::from_secs(5);
/// assert_eq!(config.breaker_failures, 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailoverConfig {
    /// The longest wait for a connection to a registry.
    pub connect_timeout: Duration,
    /// The longest wait for response headers, for the first body chunk,
    /// and between two body chunks (a stall). The wait for headers gets
    /// `connect_timeout` on top, as a request may have to connect first.
    pub first_byte_timeout: Duration,
    /// The longest one registry may take to serve a whole blob; a blob
    /// resumed on another registry starts a new budget there.
    pub blob_timeout: Duration,
    /// Consecutive unhealthy failures after which a registry is skipped.
    pub breaker_failures: u32,
    /// How long a registry is skipped before one probe request is let
    /// through.
    pub breaker_cool_down: Duration,
    /// Extra rounds over the whole list after every registry failed.
    pub rounds: u32,
    /// The wait before the first extra round; it doubles each round.
    pub round_backoff: Duration,
    /// The longest wait between rounds.
    pub round_backoff_max: Duration,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            first_byte_timeout: Duration::from_secs(30),
            blob_timeout: Duration::from_secs(30),
            breaker_failures: 3,
            breaker_cool_down: Duration::from_secs(30),
            rounds: 2,
            round_backoff: Duration::from_millis(200),
            round_backoff_max: Duration::from_secs(2),
        }
    }
}

impl FailoverConfig {
    /// The wait before extra round `round` (counting from 1).
    pub(crate) fn backoff(&self, round: u32) -> Duration {
        self.round_backoff
            .saturating_mul(1u32 << round.saturating_sub(1).min(16))
            .min(self.round_backoff_max)
    }

    /// The deadline for response headers, measured from the request.
    pub(crate) fn headers_timeout(&self) -> Duration {
        self.connect_timeout.saturating_add(self.first_byte_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = FailoverConfig::default();
        let waits: Vec<_> = (1..=6).map(|r| c.backoff(r).as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 2000, 2000]);
    }
}
