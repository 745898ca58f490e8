//! Capped exponential backoff with jitter, for retrying transient failures.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Backoff settings: the first delay, the cap, and the growth factor.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BackoffSettings {
    /// First retry delay, in milliseconds.
    pub initial_ms: u64,
    /// Largest delay between two attempts, in milliseconds.
    pub max_ms: u64,
    /// Growth factor per attempt.
    pub multiplier: f64,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        Self {
            initial_ms: 50,
            max_ms: 5_000,
            multiplier: 2.0,
        }
    }
}

/// One retry sequence. Each call to [`Backoff::next_delay`] grows the ceiling; the delay is
/// drawn between half the ceiling and the ceiling ("equal jitter"), so many retrying clients
/// do not synchronise.
#[derive(Debug, Clone)]
pub struct Backoff {
    settings: BackoffSettings,
    ceiling_ms: f64,
    attempts: u32,
}

impl Backoff {
    pub fn new(settings: BackoffSettings) -> Self {
        Self {
            settings,
            ceiling_ms: settings.initial_ms.max(1) as f64,
            attempts: 0,
        }
    }

    /// How many delays were handed out so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.settings.max_ms.max(1) as f64;
        let ceiling = self.ceiling_ms.min(cap);
        self.ceiling_ms = (self.ceiling_ms * self.settings.multiplier.max(1.0)).min(cap);
        self.attempts = self.attempts.saturating_add(1);
        let low = ceiling / 2.0;
        let millis = rand::rng().random_range(low..=ceiling);
        Duration::from_micros((millis * 1_000.0) as u64)
    }

    /// Starts the sequence again after a success.
    pub fn reset(&mut self) {
        *self = Self::new(self.settings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let mut backoff = Backoff::new(BackoffSettings {
            initial_ms: 10,
            max_ms: 100,
            multiplier: 2.0,
        });
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(10));
        assert!(delays[0] >= Duration::from_millis(5));
        for d in &delays {
            assert!(*d <= Duration::from_millis(100), "{d:?} above cap");
        }
        // By the 5th attempt the ceiling is the cap, so the delay is at least half of it.
        assert!(delays[9] >= Duration::from_millis(50));
        assert_eq!(backoff.attempts(), 10);
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
        assert!(backoff.next_delay() <= Duration::from_millis(10));
    }
}
