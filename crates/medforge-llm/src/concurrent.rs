//! Bounded concurrency over a list of requests: the loop every batch of model calls runs (MCQ generation and
//! log-likelihood evaluation, perplexity), written once.

use std::future::Future;
use std::sync::Arc;

/// Run `job(item)` for every item on the runtime's threads, at most `limit` at a time, and return the results in
/// input order. `progress(done, total)` is called as jobs finish. A job that panics panics the caller.
pub async fn map_bounded<T, R, F, Fut>(
    items: Vec<T>,
    limit: usize,
    job: F,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let total = items.len();
    let permits = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        // The future does nothing until polled, so building it before the permit starts no work early.
        let fut = job(item);
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
            (i, fut.await)
        });
    }
    let mut out: Vec<Option<R>> = std::iter::repeat_with(|| None).take(total).collect();
    let mut done = 0u64;
    while let Some(joined) = set.join_next().await {
        let (i, r) = match joined {
            Ok(x) => x,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a bounded job was cancelled: {e}"),
        };
        out[i] = Some(r);
        done += 1;
        progress(done, total as u64);
    }
    out.into_iter().map(|r| r.expect("every job reports")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn keeps_order_and_the_limit() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let calls = std::sync::Mutex::new(Vec::new());
        let out = map_bounded(
            (0..40u64).collect(),
            3,
            |i| {
                let (running, peak) = (running.clone(), peak.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    // Later items finish first, so order comes from the indices, not from completion.
                    tokio::time::sleep(std::time::Duration::from_millis(40 - i)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    i * 2
                }
            },
            &|done, total| calls.lock().unwrap().push((done, total)),
        )
        .await;
        assert_eq!(out, (0..40u64).map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3, "peak {}", peak.load(Ordering::SeqCst));
        assert_eq!(calls.lock().unwrap().last(), Some(&(40, 40)));
    }
}
