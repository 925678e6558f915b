//! A circuit breaker per registry: closed (requests pass), open after N
//! consecutive unhealthy failures (requests skip the registry for a
//! cool-down), then half-open (one probe passes; its success closes the
//! breaker, its failure opens it again).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The state of one registry's breaker, as the metrics show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests pass.
    Closed,
    /// Requests skip the registry until the cool-down ends.
    Open,
    /// One probe request is in flight; the others skip the registry.
    HalfOpen,
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// One registry's breaker. Cheap to clone; clones share the state.
#[derive(Clone, Debug)]
pub(crate) struct Breaker {
    state: Arc<Mutex<State>>,
    threshold: u32,
    cool_down: Duration,
}

/// Leave to send one request; reports how it went. A permit dropped
/// without a report (a cancelled request) frees the probe slot, so a
/// half-open breaker is not stuck waiting for an answer that never comes.
#[derive(Debug)]
pub(crate) struct Permit {
    breaker: Breaker,
    probe: bool,
    reported: bool,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::Closed { failures: 0 })),
            threshold: threshold.max(1),
            cool_down,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("breaker lock")
    }

    /// A permit, or `Err(time left)` while the registry is skipped (zero
    /// while another request probes it).
    pub(crate) fn admit(&self, now: Instant) -> Result<Permit, Duration> {
        let mut state = self.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if now >= until => {
                *state = State::HalfOpen;
                true
            }
            State::Open { until } => return Err(until - now),
            State::HalfOpen => return Err(Duration::ZERO),
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            reported: false,
        })
    }

    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            // An open breaker whose cool-down is over lets the next request
            // probe: for an observer it is half-open already.
            State::Open { until } if now >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }
}

impl Permit {
    /// The request succeeded: the breaker closes.
    pub(crate) fn success(mut self) {
        self.reported = true;
        *self.breaker.lock() = State::Closed { failures: 0 };
    }

    /// The request failed. Only `unhealthy` failures count; a probe that
    /// fails for another reason (a 404) still shows the registry answers,
    /// so it closes the breaker.
    pub(crate) fn failure(mut self, unhealthy: bool, now: Instant) {
        self.reported = true;
        let mut state = self.breaker.lock();
        let open = State::Open {
            until: now + self.breaker.cool_down,
        };
        *state = match (&*state, unhealthy) {
            (_, false) => State::Closed {
                failures: match *state {
                    State::Closed { failures } => failures,
                    _ => 0,
                },
            },
            (State::HalfOpen, true) => open,
            (State::Closed { failures }, true) if failures + 1 >= self.breaker.threshold => open,
            (State::Closed { failures }, true) => State::Closed {
                failures: failures + 1,
            },
            // Opened meanwhile by a concurrent request: leave it.
            (State::Open { until }, true) => State::Open { until: *until },
        };
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            let mut state = self.breaker.lock();
            if matches!(*state, State::HalfOpen) {
                // Let the next request probe at once.
                *state = State::Open {
                    until: Instant::now(),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(30);

    #[test]
    fn opens_after_consecutive_failures_and_half_opens_after_cool_down() {
        let b = Breaker::new(3, COOL);
        let t0 = Instant::now();
        for _ in 0..2 {
            b.admit(t0).unwrap().failure(true, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.admit(t0).unwrap().failure(true, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(
            b.admit(t0 + Duration::from_secs(10)).unwrap_err(),
            COOL - Duration::from_secs(10)
        );

        // Half-open: one probe passes, the others are skipped.
        let later = t0 + COOL;
        let probe = b.admit(later).unwrap();
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert_eq!(b.admit(later).unwrap_err(), Duration::ZERO);
        probe.failure(true, later);
        assert_eq!(b.state(later), BreakerState::Open);

        let again = later + COOL;
        b.admit(again).unwrap().success();
        assert_eq!(b.state(again), BreakerState::Closed);
        // Closed again: counting restarts from zero.
        b.admit(again).unwrap().failure(true, again);
        assert_eq!(b.state(again), BreakerState::Closed);
    }

    #[test]
    fn successes_and_healthy_failures_reset_the_count() {
        let b = Breaker::new(2, COOL);
        let t = Instant::now();
        b.admit(t).unwrap().failure(true, t);
        b.admit(t).unwrap().success();
        b.admit(t).unwrap().failure(true, t);
        assert_eq!(b.state(t), BreakerState::Closed);
        // A 404 neither opens nor counts.
        for _ in 0..5 {
            b.admit(t).unwrap().failure(false, t);
        }
        assert_eq!(b.state(t), BreakerState::Closed);
    }

    #[test]
    fn a_dropped_probe_frees_the_slot() {
        let b = Breaker::new(1, COOL);
        let t = Instant::now();
        b.admit(t).unwrap().failure(true, t);
        let probe = b.admit(t + COOL).unwrap();
        drop(probe);
        assert!(b.admit(Instant::now()).is_ok());
    }
}
