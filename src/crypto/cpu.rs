//! CPU-heavy work of calls (RSA key generation on a pool miss, RSA signing, a client
//! key's PKCS#12, parsing a private key), bounded: at most one task per core at a
//! time.
//!
//! Such work must not run on the async executor threads, and used to go straight to
//! tokio's blocking pool, which also runs the store's and the audit log's I/O and has
//! hundreds of threads: a burst of RSA calls then put hundreds of CPU-bound threads in
//! front of every store read and audit write. [`run`] waits for one of
//! [`slots`] (the cores) before it hands the work to the blocking pool, so blocking
//! threads stay free for I/O and the cores are not oversubscribed. Waiting is async (no
//! thread is held), and the slot is held by the work itself: a caller that gives up
//! does not free a slot its work still uses. The key pair pool's own worker threads
//! are bounded by `--pool-workers` and do not take slots.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use tokio::sync::Semaphore;
use tokio::task::JoinError;

static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(slots())));

static BUSY: AtomicUsize = AtomicUsize::new(0);

/// How many CPU-heavy tasks run at once: the cores this process may use.
pub fn slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// CPU-heavy tasks running now (for tests and diagnostics).
pub fn busy() -> usize {
    BUSY.load(Ordering::Relaxed)
}

/// Runs `work` on tokio's blocking pool once a slot is free; see the module docs.
///
/// # Errors
///
/// The [`JoinError`] of a task that panicked (as `spawn_blocking`'s).
pub async fn run<T, F>(work: F) -> Result<T, JoinError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let slot = Arc::clone(&SLOTS)
        .acquire_owned()
        .await
        .expect("the CPU slots are never closed");
    tokio::task::spawn_blocking(move || {
        struct Busy;
        impl Drop for Busy {
            fn drop(&mut self) {
                BUSY.fetch_sub(1, Ordering::Relaxed);
            }
        }
        // Dropped in reverse: the count goes down before the slot is freed.
        let _slot = slot;
        BUSY.fetch_add(1, Ordering::Relaxed);
        let _busy = Busy;
        work()
    })
    .await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// Samples [`busy`] while `burst` runs; returns the highest value seen.
    pub(crate) async fn peak_while<F: std::future::Future>(burst: F) -> usize {
        let done = std::sync::atomic::AtomicBool::new(false);
        let sampler = async {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(busy());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            peak
        };
        let burst = async {
            burst.await;
            done.store(true, Ordering::Relaxed);
        };
        let (peak, ()) = tokio::join!(sampler, burst);
        peak
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_tasks_run_than_there_are_cores() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..slots() * 4)
            .map(|_| {
                let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
                tokio::spawn(run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        // Meanwhile the blocking pool still takes I/O at once.
        let io = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::task::spawn_blocking(|| "read"),
        )
        .await;
        assert!(matches!(io, Ok(Ok("read"))), "I/O waited for CPU work");
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), slots());
    }
}
