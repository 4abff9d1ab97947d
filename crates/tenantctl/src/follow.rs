//! Following a fleet operation (a deploy, a rollback) to its end: reading what the migrators
//! record, again and again, until no tenant is unfinished or a deadline passes.

use std::collections::BTreeMap;
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

    /// Counts `count` more tenants that ended (or not yet) as `mark` says.
    pub fn add(&mut self, mark: Mark, count: u64) {
        self.total += count;
        match mark {
            Mark::Succeeded => self.succeeded += count,
            Mark::Failed => self.failed += count,
            Mark::Unfinished => self.unfinished += count,
        }
    }
}

/// Where one followed tenant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Succeeded,
    Failed,
    Unfinished,
}

/// Where a followed operation stands: over every tenant, and on each tenant server (an
/// operator watching a deploy over several servers sees which one lags or fails).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Standing {
    pub all: Tally,
    /// Each server's tally, by name.
    pub servers: BTreeMap<String, Tally>,
}

impl Standing {
    /// Counts `count` more tenants of `server`.
    pub fn add(&mut self, server: &str, mark: Mark, count: u64) {
        self.all.add(mark, count);
        self.servers
            .entry(server.to_owned())
            .or_default()
            .add(mark, count);
    }
}

/// Reads `poll` every [`POLL_EVERY`] until its standing has nothing unfinished or `deadline`
/// has passed, telling `on_progress` each standing. Returns whether everything finished, and
/// the last reading.
///
/// # Errors
/// The first error of `poll`.
pub async fn until_done<T, Poll, Reading>(
    deadline: Option<Instant>,
    mut poll: Poll,
    mut on_progress: impl FnMut(&Standing),
) -> anyhow::Result<(bool, T)>
where
    Poll: FnMut() -> Reading,
    Reading: Future<Output = anyhow::Result<(Standing, T)>>,
{
    loop {
        let (standing, reading) = poll().await?;
        on_progress(&standing);
        if standing.all.unfinished == 0 {
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

    use super::{Mark, Standing, Tally, until_done};

    fn tally(succeeded: u64, unfinished: u64) -> Standing {
        let mut standing = Standing::default();
        standing.add("default", Mark::Succeeded, succeeded);
        standing.add("default", Mark::Unfinished, unfinished);
        standing
    }

    #[test]
    fn a_standing_counts_each_server_and_the_whole() {
        let mut standing = Standing::default();
        standing.add("default", Mark::Succeeded, 3);
        standing.add("pg-b", Mark::Failed, 1);
        standing.add("pg-b", Mark::Unfinished, 2);
        standing.add("default", Mark::Unfinished, 0);
        let tally = |total, succeeded, failed, unfinished| Tally {
            total,
            succeeded,
            failed,
            unfinished,
        };
        assert_eq!(standing.all, tally(6, 3, 1, 2));
        assert_eq!(standing.servers["default"], tally(3, 3, 0, 0));
        assert_eq!(standing.servers["pg-b"], tally(3, 0, 1, 2));
    }

    #[tokio::test]
    async fn following_ends_when_nothing_is_unfinished_with_the_last_reading() {
        let mut readings = vec![tally(3, 0), tally(2, 1), tally(0, 3)];
        let mut shown = Vec::new();
        let poll = || {
            let next = readings.pop();
            async move {
                let standing = next.ok_or_else(|| anyhow::anyhow!("read after the end"))?;
                let succeeded = standing.all.succeeded;
                Ok((standing, succeeded))
            }
        };
        let outcome = until_done(None, poll, |t: &Standing| shown.push(t.clone())).await;
        assert_eq!(outcome.ok(), Some((true, 3)));
        assert_eq!(shown, [tally(0, 3), tally(2, 1), tally(3, 0)]);
    }

    #[tokio::test]
    async fn following_gives_up_at_the_deadline_after_showing_the_last_reading() {
        let deadline = Instant::now() - Duration::from_secs(1);
        let mut shown = 0;
        let poll = || async { Ok((tally(1, 2), "where each tenant stands")) };
        let outcome = until_done(Some(deadline), poll, |_: &Standing| shown += 1).await;
        assert_eq!(outcome.ok(), Some((false, "where each tenant stands")));
        assert_eq!(shown, 1);
    }
}
