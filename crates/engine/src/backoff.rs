//! How the engine paces a retry of something that is busy elsewhere (a target's lock, a server
//! slot): delays that grow exponentially, with jitter so that runners waiting on the same thing
//! spread out, and no limit on their number (the caller stops on its own deadline or shutdown).
//!
//! The engine's own, because it must not depend on `shared` (which has one for the services).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Delays between the attempts of one wait.
#[derive(Debug)]
pub(crate) struct RetryDelays {
    delays: <ExponentialBuilder as BackoffBuilder>::Backoff,
    max: Duration,
}

impl RetryDelays {
    /// Delays from about `min` up to `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        RetryDelays {
            delays: ExponentialBuilder::new()
                .with_min_delay(min)
                .with_max_delay(max)
                .with_jitter()
                .without_max_times()
                .build(),
            max,
        }
    }

    /// How long to wait before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_never_pass_the_max() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(80));
        let mut delays = RetryDelays::new(min, max);
        let taken: Vec<Duration> = (0..50).map(|_| delays.next_delay()).collect();
        // Jitter adds up to one delay more, never more than twice the ceiling.
        assert!(
            taken.iter().all(|d| *d >= min && *d <= max * 2),
            "{taken:?}"
        );
        assert!(taken[20..].iter().all(|d| *d >= max), "{taken:?}");
    }
}
