//! A pool of pre-generated key pairs, filled by dedicated threads.
//!
//! RSA generation takes from a hundred milliseconds to seconds, so kmsd keeps a few
//! pairs of each spec ready. [`KeyPairPool::start`] spawns `workers` plain `std` threads
//! named `kmsd-keygen-N` (never tokio worker threads) that keep per-spec bounded queues
//! full. [`KeyPairPool::take`] pops a ready pair (each pair is handed out exactly once)
//! and wakes a worker to refill (a cheap spec's queue once it is half empty:
//! [`ready_at_rest`]). If none is ready but a worker is generating that spec,
//! it waits for the next pair a worker finishes; only if no worker is on it (all busy
//! with other specs, the spec not pooled, or the pool shut down) does it generate on
//! `tokio::task::spawn_blocking`; async executor threads never run key generation,
//! except an EC_P256 pair made on demand, which costs less than the hop (about 10 us,
//! [`KeyPairSpec::generates_in_place`]).
//!
//! Why wait rather than generate: with the API's limit of one key pair call at a time,
//! a drained spec is served one request after another. Generating on the request path
//! would add a third CPU-bound thread next to the workers (each slowed by the sharing),
//! and the request would wait for a generation that started from scratch; waiting for
//! whichever in-flight generation ends first keeps every core on the queue and serves
//! at the pool's full rate (measured in `docs/performance.md`). A waiting request also
//! counts as demand: while one waits, one more worker may start on its spec (see
//! below), so even a spec of depth 1 gets two workers when drained.
//!
//! Refill order: a worker picks the spec maximising
//! `missing / capacity / relative_cost`, where `missing` counts pairs wanted (the depth
//! plus the requests waiting) that are neither ready nor being generated. This is
//! shortest-job-first weighted by how empty each queue is:
//! refilling all eight EC slots costs well under a millisecond, so EC always goes
//! before RSA and never starves behind a multi-second RSA-4096 run; among RSA sizes an
//! empty RSA_4096 queue waits for a partly empty RSA_2048 one, because one 4096-bit
//! pair costs as much as about twelve 2048-bit ones. Under sustained RSA_2048 demand
//! RSA_4096 may stay low, which only means its requests fall back to on-demand
//! generation: nothing is ever lost, only pre-computed.
//!
//! Plain refilling uses one worker fewer than configured (at least one), so a call that
//! finds its pair ready has a core to itself; a spec with a call waiting gets every
//! worker. Workers also run at a lower priority ([`WORKER_NICE`], Linux): refilling is background
//! work, and at normal priority two RSA generations on two cores made a request that
//! found its pair ready wait for the scheduler's next slice, about 4 ms (kmsd-bench).
//! Nice values weigh threads against others of the same process group only (cgroup
//! or autogroup), so this yields to kmsd's own request threads, not to other programs.
//!
//! Pooled pairs are [`KeyPair`]s and zeroize on drop; [`KeyPairPool::shutdown`] (also
//! run when the last handle drops) stops the workers and drops every queued pair.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use tokio::sync::{Notify, watch};

use crate::crypto::CryptoError;
use crate::crypto::keygen::{self, KeyPair, KeyPairSpec};
use crate::metrics;

/// The nice value of the generator threads (Linux): below kmsd's request threads.
pub const WORKER_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`WORKER_NICE`]; a failure (e.g. a
/// sandbox that forbids it) only costs latency, so it is logged and ignored.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), WORKER_NICE)
    {
        tracing::debug!(error = %e, "could not lower the key pool worker's priority");
    }
}

/// How long a worker waits after a failed generation before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
const SPECS: usize = KeyPairSpec::ALL.len();

/// Pool sizing.
///
/// Generation keeps at most `depth + waiting requests` pairs of a spec ready or in
/// flight, so a drained spec keeps `min(workers, depth + 1)` workers busy under the
/// one-call-at-a-time limit: depths of at least the worker count let a drained spec use
/// every core. The defaults follow that rule; see [`PoolConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Pairs to keep ready per spec; a spec that is absent or 0 is not pooled (its
    /// requests always generate on demand).
    pub depths: HashMap<KeyPairSpec, usize>,
    /// Generator threads. 0 turns the whole pool off.
    pub workers: usize,
}

impl PoolConfig {
    /// The same depth for every spec, with the default worker count.
    pub fn uniform(depth: usize) -> Self {
        Self {
            depths: KeyPairSpec::ALL.into_iter().map(|s| (s, depth)).collect(),
            workers: default_workers(),
        }
    }

    /// No pooling at all: every request generates on demand.
    pub fn off() -> Self {
        Self {
            depths: HashMap::new(),
            workers: 0,
        }
    }

    /// The configured depth of `spec` (0 if absent).
    pub fn depth(&self, spec: KeyPairSpec) -> usize {
        self.depths.get(&spec).copied().unwrap_or(0)
    }
}

impl Default for PoolConfig {
    /// One worker per core; depths RSA_2048 4, RSA_3072 2, RSA_4096 2, EC_P256 8,
    /// EC_P256K 8, ML_DSA_44/65/87 and ED25519 2 each, each RSA depth raised to the
    /// worker count if that is larger.
    ///
    /// The API serves one key pair request at a time per instance, so a small buffer
    /// absorbs bursts; what matters is startup and memory. Filling RSA takes about
    /// 4 x 0.04 s + 2 x 0.19 s + 2 x 0.49 s = 1.5 s of CPU (release build, see
    /// `relative_cost`), under a second of wall time on two cores, in the background. A
    /// pooled pair is a few KiB at most, so the whole pool is well under 100 KiB. EC
    /// pairs are nearly free, so their queues are deeper. An RSA depth below the worker
    /// count would leave cores idle while that spec is drained (see [`PoolConfig`]).
    fn default() -> Self {
        Self::default_for_workers(default_workers())
    }
}

impl PoolConfig {
    /// The default depths (see [`PoolConfig::default`]) sized for `workers` threads.
    pub fn default_for_workers(workers: usize) -> Self {
        Self {
            depths: HashMap::from([
                (KeyPairSpec::Rsa2048, workers.max(4)),
                (KeyPairSpec::Rsa3072, workers.max(2)),
                (KeyPairSpec::Rsa4096, workers.max(2)),
                (KeyPairSpec::EcP256, 8),
                (KeyPairSpec::EcP256k, 8),
                // Signing-only master key pairs: CreateKey is rare, generation cheap.
                (KeyPairSpec::MlDsa44, 2),
                (KeyPairSpec::MlDsa65, 2),
                (KeyPairSpec::MlDsa87, 2),
                (KeyPairSpec::Ed25519, 2),
            ]),
            workers,
        }
    }
}

fn default_workers() -> usize {
    thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// A snapshot of one spec's queue, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Pairs ready now.
    pub ready: usize,
    /// Configured depth (0: not pooled).
    pub capacity: usize,
    /// `take` calls served from the queue at once.
    pub hits: u64,
    /// `take` calls that found the queue empty and waited for a worker's pair.
    pub waits: u64,
    /// `take` calls that had to generate on demand.
    pub misses: u64,
    /// Pairs generated by the pool's workers.
    pub generated: u64,
    /// Failed generations (workers and on demand).
    pub failures: u64,
    /// Total time the workers spent generating this spec.
    pub generation_time: Duration,
}

/// The key pair pool. Cheap to clone (all clones share one pool).
#[derive(Clone)]
pub struct KeyPairPool {
    handle: Arc<Handle>,
}

/// Owned by the `KeyPairPool` clones only (not the workers), so that dropping the
/// last clone runs `Drop` and stops the workers.
struct Handle {
    shared: Arc<Shared>,
}

/// Shared by the handle and the worker threads.
struct Shared {
    state: Mutex<State>,
    /// Workers wait here for room in a queue or shutdown.
    work: Condvar,
    /// Per spec: woken when a worker pushes a pair, fails, or the pool shuts down, so
    /// a waiting `take` looks again.
    pushed: [Notify; SPECS],
    /// Generates one pair: [`keygen::generate`], or a stand-in that tests control.
    generator: Generator,
    /// `true` once primed or shut down; lets `wait_primed` await without polling.
    primed: watch::Sender<bool>,
    #[cfg(test)]
    trace: Mutex<Vec<GenTrace>>,
}

type Generator = Arc<dyn Fn(KeyPairSpec) -> Result<KeyPair, CryptoError> + Send + Sync>;

struct State {
    slots: [Slot; SPECS],
    shutdown: bool,
    /// Generations at once for plain refilling: one core fewer than the workers (at
    /// least 1), so a call that finds its pair ready has a core to run on. Specs with
    /// a waiting call may use every worker.
    background_limit: usize,
}

#[derive(Default)]
struct Slot {
    ready: VecDeque<KeyPair>,
    capacity: usize,
    in_flight: usize,
    /// `take` calls waiting for a worker's pair of this spec.
    waiting: usize,
    ever_ready: bool,
    stats: PoolStats,
}

/// The fewest pairs a queue of `spec` with room for `capacity` holds once the workers
/// have nothing left to do. An RSA queue is topped up after every take: all of them.
/// A cheap spec's queue (EC, ML-DSA, Ed25519: `relative_cost` 1) is refilled only
/// once it is half empty, and then whole: waking a sleeping thread costs about as much
/// as generating an EC pair, so one wake-up buys several pairs (kmsd-bench section
/// 4g). So such a queue rests anywhere above half full.
pub fn ready_at_rest(spec: KeyPairSpec, capacity: usize) -> usize {
    if spec.relative_cost() > 1 {
        capacity
    } else {
        capacity.min(capacity / 2 + 1)
    }
}

impl Slot {
    /// Whether a take that left this queue as it is should wake a worker
    /// ([`ready_at_rest`]).
    fn wants_refill(&self, spec: KeyPairSpec) -> bool {
        self.ready.len() + self.in_flight < ready_at_rest(spec, self.capacity)
    }
}

impl State {
    /// The spec a worker should generate next, if any queue has room.
    fn pick(&self) -> Option<KeyPairSpec> {
        let in_flight: usize = self.slots.iter().map(|s| s.in_flight).sum();
        let background = in_flight < self.background_limit;
        KeyPairSpec::ALL
            .into_iter()
            .zip(&self.slots)
            .filter(|(_, slot)| slot.capacity > 0 && (background || slot.waiting > 0))
            .filter_map(|(spec, slot)| {
                let missing = (slot.capacity + slot.waiting)
                    .saturating_sub(slot.ready.len() + slot.in_flight);
                (missing > 0).then(|| {
                    let score = missing as f64
                        / slot.capacity as f64
                        / f64::from(spec.relative_cost().max(1));
                    (spec, score)
                })
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(spec, _)| spec)
    }

    fn slot(&mut self, spec: KeyPairSpec) -> &mut Slot {
        // `index()` is < SPECS by construction; `ALL` has SPECS entries.
        &mut self.slots[spec.index()]
    }

    fn is_primed(&self) -> bool {
        self.slots.iter().all(|s| s.capacity == 0 || s.ever_ready)
    }
}

/// Where a pair was generated, recorded in tests to prove it was off the executor.
#[cfg(test)]
#[derive(Debug, Clone)]
struct GenTrace {
    thread: thread::ThreadId,
    thread_name: Option<String>,
    /// For on-demand generation: the thread `take` was called on.
    caller: Option<thread::ThreadId>,
    in_tokio_runtime: bool,
    /// The thread's nice value (Linux).
    nice: Option<i32>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Counters and queues stay consistent across a panic in another holder.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg_attr(not(test), allow(unused_variables))]
    fn generate(
        &self,
        spec: KeyPairSpec,
        caller: Option<thread::ThreadId>,
    ) -> Result<KeyPair, CryptoError> {
        #[cfg(test)]
        {
            let t = thread::current();
            let trace = GenTrace {
                thread: t.id(),
                thread_name: t.name().map(str::to_owned),
                caller,
                in_tokio_runtime: tokio::runtime::Handle::try_current().is_ok(),
                #[cfg(target_os = "linux")]
                nice: rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok(),
                #[cfg(not(target_os = "linux"))]
                nice: None,
            };
            self.trace
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(trace);
        }
        (self.generator)(spec)
    }

    fn publish_primed(&self, state: &State) {
        if state.shutdown || state.is_primed() {
            self.primed
                .send_if_modified(|p| !std::mem::replace(p, true));
        }
    }

    fn worker(&self) {
        lower_thread_priority();
        let mut state = self.lock();
        loop {
            if state.shutdown {
                return;
            }
            let Some(spec) = state.pick() else {
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            state.slot(spec).in_flight += 1;
            drop(state);

            let start = Instant::now();
            let result = self.generate(spec, None);
            let elapsed = start.elapsed();

            state = self.lock();
            let slot = state.slot(spec);
            slot.in_flight -= 1;
            match result {
                Ok(pair) => {
                    slot.stats.generated += 1;
                    slot.stats.generation_time += elapsed;
                    if state.shutdown {
                        // `pair` zeroizes as it drops here.
                        return;
                    }
                    let slot = state.slot(spec);
                    slot.ready.push_back(pair);
                    slot.ever_ready = true;
                    self.publish_primed(&state);
                    self.pushed[spec.index()].notify_waiters();
                }
                Err(e) => {
                    slot.stats.failures += 1;
                    // A waiting `take` may now find no worker on its spec.
                    self.pushed[spec.index()].notify_waiters();
                    tracing::warn!(%spec, error = %e, "key pool generation failed; retrying");
                    state = self
                        .work
                        .wait_timeout(state, RETRY_AFTER_FAILURE)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    fn shutdown(&self) {
        let drained: Vec<KeyPair> = {
            let mut state = self.lock();
            state.shutdown = true;
            self.publish_primed(&state);
            state
                .slots
                .iter_mut()
                .flat_map(|s| s.ready.drain(..))
                .collect()
        };
        self.work.notify_all();
        for pushed in &self.pushed {
            pushed.notify_waiters();
        }
        drop(drained); // zeroized outside the lock
    }
}

impl KeyPairPool {
    /// Starts the pool: spawns `config.workers` threads named `kmsd-keygen-N` (none if
    /// every depth is 0) that begin filling the queues at once. Returns immediately.
    ///
    /// If the OS refuses to spawn a thread, the pool runs with fewer workers (logged);
    /// with none, `take` still works by generating on demand.
    pub fn start(config: PoolConfig) -> Self {
        Self::start_with_generator(config, Arc::new(keygen::generate))
    }

    fn start_with_generator(config: PoolConfig, generator: Generator) -> Self {
        let workers = if config.depths.values().all(|&d| d == 0) {
            0
        } else {
            config.workers
        };
        let mut slots: [Slot; SPECS] = Default::default();
        if workers > 0 {
            for spec in KeyPairSpec::ALL {
                slots[spec.index()].capacity = config.depth(spec);
                slots[spec.index()].stats.capacity = config.depth(spec);
            }
        }
        let state = State {
            slots,
            shutdown: false,
            background_limit: workers.saturating_sub(1).max(1),
        };
        let primed = state.is_primed();
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            work: Condvar::new(),
            pushed: Default::default(),
            generator,
            primed: watch::Sender::new(primed),
            #[cfg(test)]
            trace: Mutex::new(Vec::new()),
        });
        for n in 0..workers {
            let worker = Arc::clone(&shared);
            let spawned = thread::Builder::new()
                .name(format!("kmsd-keygen-{n}"))
                .spawn(move || worker.worker());
            if let Err(e) = spawned {
                tracing::warn!(worker = n, error = %e, "could not spawn a key pool worker");
            }
        }
        Self {
            handle: Arc::new(Handle { shared }),
        }
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// A key pair of `spec`: a pooled one if ready (handed out exactly once); else, if
    /// a worker is generating `spec`, the next pair a worker finishes; else one
    /// generated now on tokio's blocking pool within the CPU bound ([`crate::crypto::cpu`]),
    /// or, for a spec whose generation costs less than the hop there and back
    /// ([`KeyPairSpec::generates_in_place`]: EC_P256, about 10 us, as much as an ECDSA
    /// signature, which is made in place too), on the calling thread. Cancel-safe: a
    /// dropped call stops counting as waiting.
    ///
    /// # Errors
    /// The generation errors of [`keygen::generate`]; [`CryptoError::KeyGeneration`] if
    /// the blocking task panicked or was cancelled.
    pub async fn take(&self, spec: KeyPairSpec) -> Result<KeyPair, CryptoError> {
        let shared = &self.handle.shared;
        let mut waiter = Waiter {
            shared,
            spec,
            registered: false,
        };
        loop {
            // A waiting call listens before it looks, so a push between the look and
            // the await still wakes it; the first look, which usually finds a pair,
            // does not listen.
            let pushed = shared.pushed[spec.index()].notified();
            tokio::pin!(pushed);
            if waiter.registered {
                pushed.as_mut().enable();
            }
            {
                let mut state = shared.lock();
                let shutdown = state.shutdown;
                let slot = state.slot(spec);
                if let Some(pair) = slot.ready.pop_front() {
                    if waiter.registered {
                        slot.stats.waits += 1;
                        slot.waiting -= 1;
                        waiter.registered = false;
                    } else {
                        slot.stats.hits += 1;
                    }
                    let refill = slot.wants_refill(spec);
                    drop(state);
                    if refill {
                        shared.work.notify_one();
                    }
                    return Ok(pair);
                }
                if shutdown || slot.in_flight == 0 {
                    slot.stats.misses += 1;
                    if waiter.registered {
                        slot.waiting -= 1;
                        waiter.registered = false;
                    }
                    break;
                }
                if !waiter.registered {
                    slot.waiting += 1;
                    waiter.registered = true;
                    drop(state);
                    // One more pair is wanted: an idle worker may start on it.
                    shared.work.notify_one();
                    // Look once more, listening this time.
                    continue;
                }
            }
            pushed.await;
        }
        drop(waiter);
        let shared = Arc::clone(&self.handle.shared);
        let caller = thread::current().id();
        let generate = move || {
            let r = shared.generate(spec, Some(caller));
            if r.is_err() {
                shared.lock().slot(spec).stats.failures += 1;
            }
            r
        };
        if spec.generates_in_place() {
            return generate();
        }
        // A miss generates now, within the CPU bound (crypto::cpu).
        crate::crypto::cpu::run(generate).await.map_err(|e| {
            CryptoError::KeyGeneration(format!("{spec}: generation task failed: {e}"))
        })?
    }

    /// Pairs of `spec` ready now.
    pub fn ready(&self, spec: KeyPairSpec) -> usize {
        self.shared().lock().slot(spec).ready.len()
    }

    /// The depth `spec` is kept at (0: not pooled, including when the pool has no
    /// workers).
    pub fn capacity(&self, spec: KeyPairSpec) -> usize {
        self.shared().lock().slot(spec).capacity
    }

    /// Whether every pooled spec has had at least one pair ready at some point (always
    /// true when the pool is off). Meant for readiness probes.
    pub fn is_primed(&self) -> bool {
        self.shared().lock().is_primed()
    }

    /// Resolves once [`is_primed`](Self::is_primed) is true, or the pool is shut down.
    pub async fn wait_primed(&self) {
        let mut rx = self.shared().primed.subscribe();
        // The sender lives in `Shared`, which we hold, so this cannot fail.
        let _ = rx.wait_for(|primed| *primed).await;
    }

    /// Counters and queue sizes of `spec`, for metrics.
    pub fn stats(&self, spec: KeyPairSpec) -> PoolStats {
        let mut state = self.shared().lock();
        let slot = state.slot(spec);
        PoolStats {
            ready: slot.ready.len(),
            capacity: slot.capacity,
            ..slot.stats
        }
    }

    /// Stops the workers and zeroizes every queued pair. Returns at once: a worker in
    /// the middle of a generation finishes it, discards the pair and exits. `take`
    /// keeps working afterwards, generating on demand.
    pub fn shutdown(&self) {
        self.shared().shutdown();
    }
}

/// A `take` counted in its slot's `waiting` while `registered`; uncounts on drop, so a
/// cancelled call does not leave phantom demand behind.
struct Waiter<'a> {
    shared: &'a Shared,
    spec: KeyPairSpec,
    registered: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.registered {
            self.shared.lock().slot(self.spec).waiting -= 1;
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

impl std::fmt::Debug for KeyPairPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared().lock();
        let mut d = f.debug_struct("KeyPairPool");
        for (spec, slot) in KeyPairSpec::ALL.into_iter().zip(&state.slots) {
            d.field(
                spec.as_str(),
                &format_args!("{}/{}", slot.ready.len(), slot.capacity),
            );
        }
        d.field("shutdown", &state.shutdown).finish()
    }
}

// === metrics ===

/// Read at each scrape: per spec, the queue (`kmsd_pool_*`) and the workers'
/// generations (`kmsd_keygen*`).
impl Collector for KeyPairPool {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats: Vec<_> = KeyPairSpec::ALL
            .iter()
            .map(|spec| (spec.as_str(), self.stats(*spec)))
            .collect();
        let gauges = |f: fn(&PoolStats) -> usize| {
            stats
                .iter()
                .map(move |(spec, s)| (*spec, metrics::saturating_i64(f(s))))
        };
        let counters = |f: fn(&PoolStats) -> u64| stats.iter().map(move |(spec, s)| (*spec, f(s)));
        metrics::encode_gauges(
            &mut encoder,
            "pool_ready",
            "Key pairs ready in the pool, by spec",
            "spec",
            gauges(|s| s.ready),
        )?;
        metrics::encode_gauges(
            &mut encoder,
            "pool_capacity",
            "Configured pool depth, by spec",
            "spec",
            gauges(|s| s.capacity),
        )?;
        metrics::encode_counters(
            &mut encoder,
            "pool_hits",
            "Key pairs served from the pool, by spec",
            "spec",
            counters(|s| s.hits),
        )?;
        metrics::encode_counters(
            &mut encoder,
            "pool_misses",
            "Key pairs generated on demand because the pool was empty, by spec",
            "spec",
            counters(|s| s.misses),
        )?;
        metrics::encode_counters(
            &mut encoder,
            "keygen",
            "Key pairs generated by the pool's workers, by spec",
            "spec",
            counters(|s| s.generated),
        )?;
        metrics::encode_counters(
            &mut encoder,
            "keygen_failures",
            "Failed key generations, by spec",
            "spec",
            counters(|s| s.failures),
        )?;
        // Seconds as a float counter: rate(kmsd_keygen_seconds) / rate(kmsd_keygen) is
        // the mean generation time per spec.
        metrics::encode_counters(
            &mut encoder,
            "keygen_seconds",
            "Time the pool's workers spent generating key pairs, by spec",
            "spec",
            stats
                .iter()
                .map(|(spec, s)| (*spec, s.generation_time.as_secs_f64())),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn config(depths: &[(KeyPairSpec, usize)], workers: usize) -> PoolConfig {
        PoolConfig {
            depths: depths.iter().copied().collect(),
            workers,
        }
    }

    /// A burst of pool misses generates within the CPU bound: never more at once than
    /// there are cores, however many calls wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_misses_generate_within_the_cpu_bound() {
        let pool = KeyPairPool::start(PoolConfig::off());
        let burst = async {
            let takes: Vec<_> = (0..crate::crypto::cpu::slots() * 3)
                .map(|_| {
                    let pool = pool.clone();
                    tokio::spawn(async move { pool.take(KeyPairSpec::Rsa2048).await })
                })
                .collect();
            for take in takes {
                take.await.unwrap().unwrap();
            }
        };
        let peak = crate::crypto::cpu::tests::peak_while(burst).await;
        assert!(peak >= 1, "the misses did not go through the CPU bound");
        assert!(peak <= crate::crypto::cpu::slots(), "{peak} at once");
        pool.shutdown();
    }

    /// Polls `cond` every 5 ms for up to 20 s.
    async fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn pairs_are_handed_out_once_and_refilled() {
        let spec = KeyPairSpec::EcP256;
        let pool = KeyPairPool::start(config(&[(spec, 4)], 2));
        eventually("full queue", || pool.ready(spec) == 4).await;
        assert_eq!(pool.capacity(spec), 4);
        let mut seen = HashSet::new();
        for _ in 0..5 {
            let pair = pool.take(spec).await.unwrap();
            assert_eq!(pair.spec(), spec);
            assert!(
                seen.insert(pair.public_key_der().to_vec()),
                "pair handed out twice"
            );
        }
        eventually("refill after take", || pool.ready(spec) == 4).await;
        let stats = pool.stats(spec);
        assert!(stats.hits >= 4, "{stats:?}");
        assert!(stats.generated >= 8, "{stats:?}");
        assert_eq!(stats.capacity, 4);
        pool.shutdown();
        assert_eq!(pool.ready(spec), 0, "shutdown drops queued pairs");
    }

    #[tokio::test]
    async fn a_cheap_queue_is_refilled_once_half_empty_and_then_whole() {
        let spec = KeyPairSpec::EcP256;
        let pool = KeyPairPool::start(config(&[(spec, 8)], 2));
        eventually("full queue", || pool.ready(spec) == 8).await;
        let generated = pool.stats(spec).generated;
        for _ in 0..3 {
            pool.take(spec).await.unwrap();
        }
        // Above half full: no worker was woken, the queue rests at 5.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.ready(spec), 5);
        assert_eq!(pool.stats(spec).generated, generated);
        assert_eq!(ready_at_rest(spec, 8), 5);
        // Half empty: a worker fills it whole.
        pool.take(spec).await.unwrap();
        eventually("refilled", || pool.ready(spec) == 8).await;
        assert_eq!(pool.stats(spec).generated, generated + 4);
        pool.shutdown();
    }

    #[test]
    fn rsa_queues_rest_full_and_cheap_ones_above_half() {
        assert_eq!(ready_at_rest(KeyPairSpec::Rsa2048, 4), 4);
        assert_eq!(ready_at_rest(KeyPairSpec::Rsa4096, 2), 2);
        assert_eq!(ready_at_rest(KeyPairSpec::EcP256, 8), 5);
        assert_eq!(ready_at_rest(KeyPairSpec::MlDsa44, 2), 2);
        assert_eq!(ready_at_rest(KeyPairSpec::EcP256k, 1), 1);
        assert_eq!(ready_at_rest(KeyPairSpec::EcP256, 0), 0);
    }

    #[tokio::test]
    async fn only_p256_is_generated_in_place_on_demand() {
        let off = KeyPairPool::start(PoolConfig::off());
        let async_thread = thread::current().id();
        off.take(KeyPairSpec::EcP256).await.unwrap();
        off.take(KeyPairSpec::EcP256k).await.unwrap();
        let trace = off.shared().trace.lock().unwrap().clone();
        assert_eq!(trace.len(), 2);
        // EC_P256: on the calling thread, within its runtime.
        assert_eq!(trace[0].thread, async_thread, "{:?}", trace[0]);
        assert_eq!(trace[0].caller, Some(async_thread));
        // EC_P256K: on the blocking pool.
        assert_ne!(trace[1].thread, async_thread, "{:?}", trace[1]);
        assert_eq!(off.stats(KeyPairSpec::EcP256).misses, 1);
        for spec in KeyPairSpec::ALL {
            assert_eq!(
                spec.generates_in_place(),
                spec == KeyPairSpec::EcP256,
                "{spec}"
            );
        }
    }

    #[tokio::test]
    async fn other_specs_never_generate_on_the_async_thread() {
        let spec = KeyPairSpec::EcP256k;
        let pool = KeyPairPool::start(config(&[(spec, 2)], 1));
        pool.wait_primed().await;
        let async_thread = thread::current().id();
        // Drain the queue, then one more: that one is generated on demand.
        for _ in 0..3 {
            pool.take(spec).await.unwrap();
        }
        // A pool that is off generates everything on demand (EC_P256 in place: see
        // `only_p256_is_generated_in_place_on_demand`).
        let off = KeyPairPool::start(PoolConfig::off());
        off.take(KeyPairSpec::EcP256k).await.unwrap();

        for p in [&pool, &off] {
            let trace = p.shared().trace.lock().unwrap().clone();
            assert!(!trace.is_empty());
            for t in trace {
                assert_ne!(t.thread, async_thread, "generated on the executor: {t:?}");
                match t.caller {
                    // On demand: on tokio's blocking pool, not the caller's thread.
                    Some(caller) => {
                        assert_eq!(caller, async_thread);
                        assert!(t.in_tokio_runtime, "{t:?}");
                    }
                    // Pool worker: a plain named std thread outside any runtime,
                    // below the request threads' priority.
                    None => {
                        assert!(!t.in_tokio_runtime, "{t:?}");
                        #[cfg(target_os = "linux")]
                        assert!(t.nice.is_some_and(|n| n >= WORKER_NICE), "{t:?}");
                        let name = t.thread_name.unwrap_or_default();
                        assert!(name.starts_with("kmsd-keygen-"), "{name}");
                    }
                }
            }
        }
        // The off pool's one pair was certainly generated on demand (the busy pool's
        // third take may have hit a refilled queue, so it proves nothing alone).
        let off_trace = off.shared().trace.lock().unwrap().clone();
        assert_eq!(off_trace.len(), 1);
        assert!(off_trace[0].caller.is_some());
        assert_eq!(off.stats(KeyPairSpec::EcP256k).misses, 1);
    }

    #[tokio::test]
    async fn depth_zero_still_serves_and_primed_flips() {
        let pool = KeyPairPool::start(config(
            &[(KeyPairSpec::EcP256, 0), (KeyPairSpec::EcP256k, 1)],
            1,
        ));
        assert_eq!(pool.capacity(KeyPairSpec::EcP256), 0);
        let pair = pool.take(KeyPairSpec::EcP256).await.unwrap();
        assert_eq!(pair.spec(), KeyPairSpec::EcP256);
        assert_eq!(pool.ready(KeyPairSpec::EcP256), 0);
        tokio::time::timeout(Duration::from_secs(20), pool.wait_primed())
            .await
            .expect("pool primes");
        assert!(pool.is_primed());
        // Primed stays true after the queue is drained.
        pool.take(KeyPairSpec::EcP256k).await.unwrap();
        assert!(pool.is_primed());

        let off = KeyPairPool::start(PoolConfig::uniform(0));
        assert!(off.is_primed());
        off.wait_primed().await;
    }

    #[tokio::test]
    async fn rsa_2048_is_pooled() {
        let spec = KeyPairSpec::Rsa2048;
        let pool = KeyPairPool::start(config(&[(spec, 1)], 1));
        assert!(!pool.is_primed());
        tokio::time::timeout(Duration::from_secs(60), pool.wait_primed())
            .await
            .expect("pool primes");
        let pair = pool.take(spec).await.unwrap();
        assert_eq!(pair.spec(), spec);
        assert_eq!(pool.stats(spec).hits, 1);
    }

    #[test]
    fn refill_prefers_cheap_and_empty_queues() {
        let mut slots: [Slot; SPECS] = Default::default();
        for (spec, cap) in [
            (KeyPairSpec::Rsa2048, 4),
            (KeyPairSpec::Rsa4096, 2),
            (KeyPairSpec::EcP256, 8),
        ] {
            slots[spec.index()].capacity = cap;
        }
        let mut state = State {
            slots,
            shutdown: false,
            background_limit: usize::MAX,
        };
        // Everything empty: EC first (cheapest).
        assert_eq!(state.pick(), Some(KeyPairSpec::EcP256));
        // EC being generated up to capacity: RSA_2048 before the costlier RSA_4096.
        state.slot(KeyPairSpec::EcP256).in_flight = 8;
        assert_eq!(state.pick(), Some(KeyPairSpec::Rsa2048));
        state.slot(KeyPairSpec::Rsa2048).in_flight = 4;
        assert_eq!(state.pick(), Some(KeyPairSpec::Rsa4096));
        state.slot(KeyPairSpec::Rsa4096).in_flight = 2;
        assert_eq!(state.pick(), None);
    }

    /// A generator whose worker-thread generations each wait for a permit from the
    /// test (on-demand generations run freely), so a test decides exactly when a
    /// worker's pair appears.
    #[derive(Clone, Default)]
    struct Gate {
        permits: Arc<(Mutex<usize>, Condvar)>,
    }

    impl Gate {
        fn release(&self, n: usize) {
            *self.permits.0.lock().unwrap() += n;
            self.permits.1.notify_all();
        }

        /// Lets every generation through from now on (so no worker is left parked
        /// when the test ends).
        fn open(&self) {
            self.release(usize::MAX / 2);
        }

        fn generator(&self) -> Generator {
            let gate = self.clone();
            Arc::new(move |spec| {
                let on_worker = thread::current()
                    .name()
                    .is_some_and(|n| n.starts_with("kmsd-keygen-"));
                if on_worker {
                    let (lock, cvar) = &*gate.permits;
                    let mut permits = cvar.wait_while(lock.lock().unwrap(), |p| *p == 0).unwrap();
                    *permits -= 1;
                }
                keygen::generate(spec)
            })
        }
    }

    fn slot_counts(pool: &KeyPairPool, spec: KeyPairSpec) -> (usize, usize, usize) {
        let mut state = pool.shared().lock();
        let slot = state.slot(spec);
        (slot.ready.len(), slot.in_flight, slot.waiting)
    }

    /// A pool whose workers generate only as the returned gate allows.
    fn gated_pool(depths: &[(KeyPairSpec, usize)], workers: usize) -> (KeyPairPool, Gate) {
        let gate = Gate::default();
        let pool = KeyPairPool::start_with_generator(config(depths, workers), gate.generator());
        (pool, gate)
    }

    /// A gated pool of `workers` keeping one pair of `spec`, primed and then taken:
    /// the spec is drained, its refill held at the gate.
    async fn drained_pool(spec: KeyPairSpec, workers: usize) -> (KeyPairPool, Gate) {
        let (pool, gate) = gated_pool(&[(spec, 1)], workers);
        gate.release(1);
        pool.wait_primed().await;
        pool.take(spec).await.unwrap();
        eventually("refill in flight", || slot_counts(&pool, spec) == (0, 1, 0)).await;
        (pool, gate)
    }

    /// A take of `spec` on a task of its own.
    fn spawn_take(
        pool: &KeyPairPool,
        spec: KeyPairSpec,
    ) -> tokio::task::JoinHandle<Result<KeyPair, CryptoError>> {
        let pool = pool.clone();
        tokio::spawn(async move { pool.take(spec).await })
    }

    /// A take of `spec` on a task of its own, once it is counted waiting (alone).
    async fn waiting_take(
        pool: &KeyPairPool,
        spec: KeyPairSpec,
    ) -> tokio::task::JoinHandle<Result<KeyPair, CryptoError>> {
        let take = spawn_take(pool, spec);
        eventually("the take waits", || slot_counts(pool, spec).2 == 1).await;
        take
    }

    /// Asserts the pool's `(hits, waits, misses)` for `spec`.
    fn assert_takes(pool: &KeyPairPool, spec: KeyPairSpec, expected: (u64, u64, u64)) {
        let stats = pool.stats(spec);
        assert_eq!(
            (stats.hits, stats.waits, stats.misses),
            expected,
            "{stats:?}"
        );
    }

    #[tokio::test]
    async fn a_drained_spec_waits_for_the_workers_pair_instead_of_generating() {
        let spec = KeyPairSpec::EcP256;
        let (pool, gate) = drained_pool(spec, 1).await;

        let waiting = waiting_take(&pool, spec).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "served before any pair was ready");
        gate.release(1);
        let pair = waiting.await.unwrap().unwrap();
        assert_eq!(pair.spec(), spec);

        assert_takes(&pool, spec, (1, 1, 0));
        let trace = pool.shared().trace.lock().unwrap().clone();
        assert!(
            trace.iter().all(|t| t.caller.is_none()),
            "nothing generated on the request path: {trace:?}"
        );
        assert_eq!(slot_counts(&pool, spec).2, 0, "no waiter left counted");
        gate.open();
    }

    #[tokio::test]
    async fn a_waiting_request_puts_one_more_worker_on_its_spec() {
        let spec = KeyPairSpec::EcP256k;
        // Depth 1: one refill in flight, the second worker idle.
        let (pool, gate) = drained_pool(spec, 2).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            slot_counts(&pool, spec).1,
            1,
            "depth 1 keeps one worker busy"
        );

        let waiting = spawn_take(&pool, spec);
        eventually("both workers on the drained spec", || {
            slot_counts(&pool, spec) == (0, 2, 1)
        })
        .await;
        gate.release(2);
        waiting.await.unwrap().unwrap();
        // The extra pair is kept: the queue ends one over its depth at most.
        eventually("both generations land", || slot_counts(&pool, spec).1 == 0).await;
        assert!(slot_counts(&pool, spec).0 <= 2);
        gate.open();
    }

    #[tokio::test]
    async fn with_no_worker_on_the_spec_a_take_generates_on_demand() {
        let (pool, gate) = gated_pool(&[(KeyPairSpec::EcP256, 1), (KeyPairSpec::Rsa2048, 1)], 1);
        // EC is refilled first; then the only worker parks at the gate on RSA_2048.
        gate.release(1);
        eventually("EC ready, worker on RSA", || {
            slot_counts(&pool, KeyPairSpec::EcP256).0 == 1
                && slot_counts(&pool, KeyPairSpec::Rsa2048).1 == 1
        })
        .await;
        pool.take(KeyPairSpec::EcP256).await.unwrap();
        // No worker can reach EC while the gate holds the RSA generation.
        let pair = tokio::time::timeout(Duration::from_secs(10), pool.take(KeyPairSpec::EcP256))
            .await
            .expect("served on demand, not left waiting")
            .unwrap();
        assert_eq!(pair.spec(), KeyPairSpec::EcP256);
        assert_takes(&pool, KeyPairSpec::EcP256, (1, 0, 1));
        gate.open();
    }

    #[tokio::test]
    async fn a_cancelled_wait_stops_counting_and_shutdown_releases_waiters() {
        let spec = KeyPairSpec::EcP256;
        let (pool, gate) = drained_pool(spec, 1).await;

        let cancelled = waiting_take(&pool, spec).await;
        cancelled.abort();
        assert!(cancelled.await.unwrap_err().is_cancelled());
        assert_eq!(
            slot_counts(&pool, spec).2,
            0,
            "a dropped take uncounts itself"
        );

        // A waiter when the pool shuts down generates its own pair.
        let waiting = waiting_take(&pool, spec).await;
        pool.shutdown();
        let pair = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("released by shutdown")
            .unwrap()
            .unwrap();
        assert_eq!(pair.spec(), spec);
        assert_eq!(pool.stats(spec).misses, 1);
        gate.open();
    }

    #[test]
    fn refilling_leaves_a_core_free_unless_a_call_waits() {
        let mut slots: [Slot; SPECS] = Default::default();
        slots[KeyPairSpec::Rsa2048.index()].capacity = 4;
        slots[KeyPairSpec::Rsa4096.index()].capacity = 2;
        let mut state = State {
            slots,
            shutdown: false,
            background_limit: 1, // two workers
        };
        assert_eq!(state.pick(), Some(KeyPairSpec::Rsa2048));
        state.slot(KeyPairSpec::Rsa2048).in_flight = 1;
        assert_eq!(state.pick(), None, "the second core stays free for calls");
        state.slot(KeyPairSpec::Rsa4096).waiting = 1;
        assert_eq!(
            state.pick(),
            Some(KeyPairSpec::Rsa4096),
            "a waiting call brings in the second worker, for its own spec only"
        );
    }

    #[test]
    fn waiting_requests_count_as_missing_pairs() {
        let mut slots: [Slot; SPECS] = Default::default();
        slots[KeyPairSpec::Rsa4096.index()].capacity = 1;
        let mut state = State {
            slots,
            shutdown: false,
            background_limit: usize::MAX,
        };
        state.slot(KeyPairSpec::Rsa4096).in_flight = 1;
        assert_eq!(
            state.pick(),
            None,
            "depth 1, one in flight: nothing missing"
        );
        state.slot(KeyPairSpec::Rsa4096).waiting = 1;
        assert_eq!(state.pick(), Some(KeyPairSpec::Rsa4096));
        // A spec that is not pooled never gets workers, waiters or not.
        state.slot(KeyPairSpec::EcP256).waiting = 1;
        state.slot(KeyPairSpec::Rsa4096).in_flight = 2;
        assert_eq!(state.pick(), None);
    }

    #[test]
    fn default_depths_keep_every_worker_busy_on_a_drained_spec() {
        for workers in [1, 2, 8] {
            let config = PoolConfig::default_for_workers(workers);
            assert_eq!(config.workers, workers);
            for spec in [
                KeyPairSpec::Rsa2048,
                KeyPairSpec::Rsa3072,
                KeyPairSpec::Rsa4096,
            ] {
                assert!(config.depth(spec) >= workers, "{spec} at {workers} workers");
            }
        }
        let two = PoolConfig::default_for_workers(2);
        assert_eq!(two.depth(KeyPairSpec::Rsa2048), 4);
        assert_eq!(two.depth(KeyPairSpec::Rsa4096), 2);
        assert_eq!(two.depth(KeyPairSpec::EcP256), 8);
    }

    #[tokio::test]
    async fn dropping_the_last_handle_stops_workers() {
        let spec = KeyPairSpec::EcP256;
        let pool = KeyPairPool::start(config(&[(spec, 2)], 2));
        let shared = Arc::clone(&pool.handle.shared);
        let clone = pool.clone();
        drop(pool);
        assert!(!shared.lock().shutdown, "a clone is still alive");
        drop(clone);
        assert!(shared.lock().shutdown);
        assert!(shared.lock().slots.iter().all(|s| s.ready.is_empty()));
        // Workers exit and release their references.
        eventually("workers exit", || Arc::strong_count(&shared) == 1).await;
    }
}
