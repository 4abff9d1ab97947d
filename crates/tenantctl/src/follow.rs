//! Following a fleet operation (a deploy, a rollback) to its end: reading what the migrators
//! record, again and again, until no tenant is unfinished or a deadline passes.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often the platform database is read while following.
pub const POLL_EVERY: Duration = Duration::from_millis(200);

/// How many of the followed tenants are done, and how.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub unfinished: u64,
}

impl Tally {
    pub fn done(&self) -> u64 {
        self.succeeded + self.failed
    }
}

/// Reads `poll` every [`POLL_EVERY`] until its tally has nothing unfinished or `deadline` has
/// passed, telling `on_progress` each tally. Returns whether everything finished, and the last
/// reading.
///
/// # Errors
/// The first error of `poll`.
pub async fn until_done<T, Poll, Reading>(
    deadline: Option<Instant>,
    mut poll: Poll,
    mut on_progress: impl FnMut(&Tally),
) -> anyhow::Result<(bool, T)>
where
    Poll: FnMut() -> Reading,
    Reading: Future<Output = anyhow::Result<(Tally, T)>>,
{
    loop {
        let (tally, reading) = poll().await?;
        on_progress(&tally);
        if tally.unfinished == 0 {
            return Ok((true, reading));
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok((false, reading));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Tally, until_done};

    fn tally(succeeded: u64, unfinished: u64) -> Tally {
        Tally {
            total: succeeded + unfinished,
            succeeded,
            failed: 0,
            unfinished,
        }
    }

    #[tokio::test]
    async fn following_ends_when_nothing_is_unfinished_with_the_last_reading() {
        let mut readings = vec![tally(3, 0), tally(2, 1), tally(0, 3)];
        let mut shown = Vec::new();
        let poll = || {
            let next = readings.pop();
            async move {
                let tally = next.ok_or_else(|| anyhow::anyhow!("read after the end"))?;
                Ok((tally, tally.succeeded))
            }
        };
        let outcome = until_done(None, poll, |t: &Tally| shown.push(*t)).await;
        assert_eq!(outcome.ok(), Some((true, 3)));
        assert_eq!(shown, [tally(0, 3), tally(2, 1), tally(3, 0)]);
    }

    #[tokio::test]
    async fn following_gives_up_at_the_deadline_after_showing_the_last_reading() {
        let deadline = Instant::now() - Duration::from_secs(1);
        let mut shown = 0;
        let poll = || async { Ok((tally(1, 2), "where each tenant stands")) };
        let outcome = until_done(Some(deadline), poll, |_: &Tally| shown += 1).await;
        assert_eq!(outcome.ok(), Some((false, "where each tenant stands")));
        assert_eq!(shown, 1);
    }
}
