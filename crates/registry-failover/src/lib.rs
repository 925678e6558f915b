//! Pulls through an ordered list of registries with timeouts, a circuit breaker and metrics
