//! Each tenant server's share of this process's commands, so that one slow server cannot hold
//! every command the process may handle at once (its prefetch) while the other servers' tenants
//! wait behind it in the shared queue.
//!
//! A server may have `quota` commands in hand: its slots' share plus a few ready to start the
//! moment a slot frees. A command beyond that is *crowded* while another server whose commands
//! were seen lately has room below its own quota: it is then put back at the end of the queue
//! (republished, then acknowledged: no delivery attempt is spent) so that the place goes to a
//! server that can work. When every server with work is at its quota (all busy), or no other
//! server has work (a one-server fleet), a command beyond the quota waits for a slot as before:
//! nothing is republished in a loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use domain::server::ServerName;

/// How recently another server's command must have been seen for a crowded command to be put
/// back: about the time a queue of other servers' commands takes to come round.
pub(crate) const OTHERS_LATELY: Duration = Duration::from_secs(1);

/// The commands each server has in hand in this process.
#[derive(Debug, Clone)]
pub(crate) struct ServerShares {
    quota: usize,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    in_hand: HashMap<ServerName, usize>,
    last_seen: HashMap<ServerName, Instant>,
}

/// A command's place in its server's share, given back on drop.
#[derive(Debug)]
pub(crate) struct Share {
    server: ServerName,
    inner: Arc<Mutex<Inner>>,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = inner.in_hand.get_mut(&self.server) {
            *count = count.saturating_sub(1);
        }
    }
}

impl ServerShares {
    /// Shares of `local_slots` (the slots this process may hold on a server) plus a quarter
    /// more, ready to start.
    pub(crate) fn new(local_slots: u16) -> Self {
        let local = usize::from(local_slots.max(1));
        ServerShares {
            quota: local + (local / 4).max(1),
            inner: Arc::default(),
        }
    }

    /// A place for a command of `server`, or `None` when the server has its quota in hand and
    /// another server, whose commands were seen within [`OTHERS_LATELY`] of `now`, has room.
    pub(crate) fn enter(&self, server: &ServerName, now: Instant) -> Option<Share> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.last_seen.insert(server.clone(), now);
        let in_hand = inner.in_hand.get(server).copied().unwrap_or(0);
        if in_hand >= self.quota {
            let other_has_room = inner.last_seen.iter().any(|(other, seen)| {
                other != server
                    && now.saturating_duration_since(*seen) < OTHERS_LATELY
                    && inner.in_hand.get(other).copied().unwrap_or(0) < self.quota
            });
            if other_has_room {
                return None;
            }
        }
        *inner.in_hand.entry(server.clone()).or_insert(0) += 1;
        Some(Share {
            server: server.clone(),
            inner: self.inner.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use domain::server::ServerName;

    use super::{OTHERS_LATELY, ServerShares};

    fn server(name: &str) -> ServerName {
        ServerName::parse(name).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_lone_server_is_never_crowded() {
        let shares = ServerShares::new(4);
        let now = Instant::now();
        let held: Vec<_> = (0..64)
            .map(|_| shares.enter(&server("default"), now))
            .collect();
        assert!(
            held.iter().all(Option::is_some),
            "one server: everything waits for a slot"
        );
    }

    #[test]
    fn beyond_its_quota_a_server_gives_way_while_another_has_work() {
        let shares = ServerShares::new(4);
        let (slow, fast) = (server("pg-b"), server("default"));
        let now = Instant::now();
        let held: Vec<_> = (0..5).map(|_| shares.enter(&slow, now)).collect();
        assert!(held.iter().all(Option::is_some), "4 slots and 1 ready");
        assert!(shares.enter(&fast, now).is_some());
        assert!(
            shares.enter(&slow, now).is_none(),
            "a sixth command of pg-b is put back while default has work"
        );
        assert!(shares.enter(&fast, now).is_some(), "default is not crowded");

        // Once default has been quiet for a while, pg-b's commands wait for a slot instead.
        let later = now + OTHERS_LATELY + Duration::from_millis(1);
        assert!(shares.enter(&slow, later).is_some());

        // Every server at its quota: all are busy, and a command beyond waits for its slot.
        let fast_held: Vec<_> = (0..5).map(|_| shares.enter(&fast, now)).collect();
        assert!(fast_held.iter().all(Option::is_some));
        assert!(
            shares.enter(&slow, now).is_some(),
            "nobody has room to give"
        );
        drop(fast_held);

        // Finished commands give their places back.
        drop(held);
        let again: Vec<_> = (0..6).map(|_| shares.enter(&slow, now)).collect();
        assert_eq!(again.iter().filter(|s| s.is_some()).count(), 5);
    }
}
