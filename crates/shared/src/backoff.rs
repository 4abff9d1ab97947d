//! Backoff: the delays between attempts at something that may work later (a broker or a
//! database that is down, a lock held elsewhere, a transient failure).
//!
//! One shape for every wait in the services: exponential from a minimum to a maximum, jittered
//! so that many waiters do not retry in step, and unending: each caller bounds its wait itself
//! (a deadline, a number of attempts, shutdown). The engine has its own copy, by design: it
//! must not depend on this crate.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The delays before each next attempt: from `min`, doubling up to `max`, jittered.
#[derive(Debug)]
pub struct Backoff {
    delays: <ExponentialBuilder as BackoffBuilder>::Backoff,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let delays = ExponentialBuilder::new()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times()
            .build();
        Backoff { delays, max }
    }

    /// How long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // The builder sets no limit on attempts; `max` only guards against one appearing.
        self.delays.next().unwrap_or(self.max)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Backoff;

    #[test]
    fn delays_grow_from_the_minimum_and_never_pass_the_maximum_or_end() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut backoff = Backoff::new(min, max);
        let delays: Vec<Duration> = (0..50).map(|_| backoff.next_delay()).collect();
        // Jitter adds up to one more delay on top of the exponential one.
        assert!(delays[0] >= min && delays[0] <= 2 * min, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= 2 * max), "{delays:?}");
        assert!(delays[40..].iter().all(|d| *d >= max), "{delays:?}");
    }
}
