//! Coalesces the platform-database calls of concurrent handlers into one statement: each
//! handler hands in its request and awaits its own answer, and a single task runs the requests
//! that have queued up meanwhile as one batch. Under load a batch grows to what arrived during
//! the previous one; alone, a request waits at most `linger`.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

type Request<T, R> = (T, oneshot::Sender<R>);

/// The handle handlers submit through; the task ends once every handle is dropped.
#[derive(Debug)]
pub struct Batcher<T, R> {
    requests: mpsc::Sender<Request<T, R>>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Batcher {
            requests: self.requests.clone(),
        }
    }
}

/// The batching task has ended (the service is stopping).
#[derive(Debug, Clone, Copy)]
pub struct Stopped;

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the task. `run` gets up to `max` requests, in arrival order, and returns one
    /// answer per request, in the same order. Once it has a request, the task waits up to
    /// `linger` for more (zero: it takes only what is already queued).
    pub fn spawn<F, Fut>(linger: Duration, max: usize, mut run: F) -> (Self, JoinHandle<()>)
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        let (requests, mut incoming) = mpsc::channel::<Request<T, R>>(max * 2);
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max);
            while let Some(first) = incoming.recv().await {
                batch.push(first);
                let deadline = tokio::time::Instant::now() + linger;
                while batch.len() < max {
                    let next = if linger.is_zero() {
                        incoming.try_recv().ok()
                    } else {
                        tokio::time::timeout_at(deadline, incoming.recv())
                            .await
                            .ok()
                            .flatten()
                    };
                    match next {
                        Some(request) => batch.push(request),
                        None => break,
                    }
                }
                let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.drain(..).unzip();
                let answers = run(items).await;
                debug_assert_eq!(answers.len(), replies.len(), "one answer per request");
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
        });
        (Batcher { requests }, task)
    }

    /// Submits `item` and waits for its answer.
    ///
    /// # Errors
    /// [`Stopped`] if the task has ended.
    pub async fn call(&self, item: T) -> Result<R, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((item, reply))
            .await
            .map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_calls_share_batches_and_each_gets_its_own_answer() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = batches.clone();
        let (batcher, task) = Batcher::spawn(Duration::ZERO, 64, move |items: Vec<u32>| {
            counted.fetch_add(1, Ordering::Relaxed);
            async move {
                // Slow enough that the other calls queue up behind the first batch.
                tokio::time::sleep(Duration::from_millis(20)).await;
                items.into_iter().map(|i| i * 10).collect()
            }
        });
        let calls: Vec<_> = (0..100)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { (i, batcher.call(i).await.expect("the batcher runs")) })
            })
            .collect();
        for call in calls {
            let (i, answer) = call.await.expect("the call completes");
            assert_eq!(answer, i * 10);
        }
        let batches = batches.load(Ordering::Relaxed);
        assert!(
            (2..100).contains(&batches),
            "100 concurrent calls ran in {batches} batches"
        );
        drop(batcher);
        task.await.expect("the task ends cleanly");
    }

    #[tokio::test]
    async fn a_batch_never_exceeds_its_maximum() {
        let largest = Arc::new(AtomicUsize::new(0));
        let seen = largest.clone();
        let (batcher, _task) =
            Batcher::spawn(Duration::from_millis(5), 8, move |items: Vec<u32>| {
                seen.fetch_max(items.len(), Ordering::Relaxed);
                async move { items }
            });
        let calls: Vec<_> = (0..50)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.call(i).await.expect("the batcher runs") })
            })
            .collect();
        for call in calls {
            call.await.expect("the call completes");
        }
        assert!(largest.load(Ordering::Relaxed) <= 8);
        assert!(
            largest.load(Ordering::Relaxed) > 1,
            "calls lingered together"
        );
    }

    #[tokio::test]
    async fn a_stopped_batcher_says_so() {
        let (batcher, task) =
            Batcher::<u32, u32>::spawn(Duration::ZERO, 4, |_| async { panic!("the task dies") });
        let _ = batcher.clone().call(1).await;
        let _ = task.await;
        assert!(batcher.call(2).await.is_err());
    }
}
