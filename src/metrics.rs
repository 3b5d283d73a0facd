//! Prometheus metrics: what kmsd counts, and the `/metrics` endpoint that serves them.
//!
//! Two sources. Every call is counted by method and status code and timed through
//! [`Metrics::observe`], which each transport's edge calls once per call with the
//! call's [`Route`] and outcome. Everything else (the pool, the throttle, the store,
//! maintenance) is read when Prometheus scrapes, so those modules need not know metrics
//! exist. Names start with `kmsd_`. Method labels come from the operation catalogue
//! ([`Route::label`]), so a client sending made-up paths cannot grow the label set.
//!
//! Seals per key version ([`Metrics::count_seal`], called by the core for every
//! ciphertext it hands out) are counted in memory, per version, since start, but
//! exported without a version label: `kmsd_seals_total{form}` (two series),
//! `kmsd_key_version_seals_max` (the busiest version's count) and
//! `kmsd_key_versions_sealing` (how many versions sealed). A `key_version_id` label
//! would add a series for every version ever used, forever (every key times every
//! rotation): unbounded cardinality, for an answer the operator wants as one number:
//! is any version close to a limit? With the salted construction none is
//! (`docs/ciphertext.md`); the max is there to watch, and to alert on if a future form
//! ever brings a per-version limit back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::call::Transport;
use crate::crypto::keygen::KeyPairSpec;
use crate::data_plane::SealWith;
use crate::error::StatusCode;
use crate::keypool::{KeyPairPool, PoolStats};
use crate::keys::KeyRegistry;
use crate::keys::maintenance::PassCounter;
use crate::store::StoreCounts;
use crate::throttle::ThrottleStats;
use kmsd_api::ops::Route;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    /// `package.Service/Method`, or `unknown`.
    method: &'static str,
    /// The status code, e.g. `Ok`, `ResourceExhausted`.
    code: String,
    /// `grpc` or `https`.
    transport: &'static str,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
    transport: &'static str,
}

/// Labels of the seal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormLabels {
    /// `plain` (initial version, IV apart) or `advance` (self-describing blob).
    form: &'static str,
}

/// Seals per key version since start; see the module docs.
#[derive(Debug, Default)]
struct SealCounts {
    per_version: RwLock<HashMap<String, AtomicU64>>,
}

impl SealCounts {
    fn count(&self, key_version_id: &str) {
        {
            let map = self
                .per_version
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = map.get(key_version_id) {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.per_version
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key_version_id.to_owned())
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    fn of(&self, key_version_id: &str) -> u64 {
        self.per_version
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key_version_id)
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// (versions that sealed, the largest count of any one of them).
    fn summary(&self) -> (usize, u64) {
        let map = self
            .per_version
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let max = map
            .values()
            .map(|count| count.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        (map.len(), max)
    }
}

/// Everything kmsd exports. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RpcLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    seals: Family<FormLabels, Counter>,
    scraped: Arc<ScrapedSources>,
}

/// The sources read at scrape time.
#[derive(Debug)]
struct ScrapedSources {
    pool: KeyPairPool,
    throttle: Arc<ThrottleStats>,
    maintenance: PassCounter,
    /// Refreshed (asynchronously) just before each encode.
    store: Mutex<StoreCounts>,
    /// Whether the store answered that refresh: per replica, so each replica says
    /// whether it reaches a shared store (PostgreSQL).
    store_available: std::sync::atomic::AtomicBool,
    seal_counts: SealCounts,
}

impl Metrics {
    /// The metrics of one server.
    pub fn new(pool: KeyPairPool, throttle: Arc<ThrottleStats>, maintenance: PassCounter) -> Self {
        let mut registry = Registry::with_prefix("kmsd");
        let requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "requests",
            "gRPC calls by method and status code",
            requests.clone(),
        );
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            // 100 µs to ~13 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register(
            "request_duration_seconds",
            "Time from receiving a gRPC call to its response headers, by method",
            latency.clone(),
        );
        let build_info = Family::<Vec<(String, String)>, Gauge>::default();
        build_info
            .get_or_create(&vec![(
                "version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            )])
            .set(1);
        registry.register(
            "build_info",
            "kmsd build; the value is always 1",
            build_info,
        );
        let scraped = Arc::new(ScrapedSources {
            pool,
            throttle,
            maintenance,
            store: Mutex::new(StoreCounts::default()),
            store_available: std::sync::atomic::AtomicBool::new(true),
            seal_counts: SealCounts::default(),
        });
        let seals = Family::<FormLabels, Counter>::default();
        registry.register(
            "seals",
            "Ciphertexts sealed under master key versions, by form (plain, advance)",
            seals.clone(),
        );
        registry.register_collector(Box::new(Arc::clone(&scraped)));
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
            seals,
            scraped,
        }
    }

    /// Counts one seal under `key_version_id`, in the form `seal_with` makes.
    pub fn count_seal(&self, seal_with: SealWith, key_version_id: &str) {
        let form = match seal_with {
            SealWith::InitialVersion => "plain",
            SealWith::PrimaryVersion => "advance",
        };
        self.seals.get_or_create(&FormLabels { form }).inc();
        self.scraped.seal_counts.count(key_version_id);
    }

    /// Seals under `key_version_id` since this server started.
    pub fn seal_count(&self, key_version_id: &str) -> u64 {
        self.scraped.seal_counts.of(key_version_id)
    }

    /// Counts and times one call that came through `transport`: `route` names it,
    /// `code` is how it ended.
    pub fn observe(&self, transport: Transport, route: Route, code: StatusCode, elapsed: Duration) {
        let method = route.label();
        let transport = transport.as_str();
        self.latency
            .get_or_create(&MethodLabels { method, transport })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RpcLabels {
                method,
                code: format!("{code:?}"),
                transport,
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric, with the store figures read
    /// from `registry` first.
    pub async fn render(&self, registry: &KeyRegistry) -> String {
        let counted = registry.counts().await;
        self.scraped
            .store_available
            .store(counted.is_ok(), std::sync::atomic::Ordering::Relaxed);
        match counted {
            Ok(counts) => {
                *self
                    .scraped
                    .store
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = counts;
            }
            Err(err) => tracing::warn!(error = %err, "metrics: cannot count the store"),
        }
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "metrics: encoding failed");
        }
        out
    }
}

fn encode_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Option<KeyPairSpec>, u64)],
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(0u64);
    let mut family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
    for (spec, value) in values {
        match spec {
            Some(spec) => {
                let labels = [("spec", spec.as_str())];
                ConstCounter::new(*value).encode(family.encode_family(&labels)?)?;
            }
            None => return ConstCounter::new(*value).encode(family),
        }
    }
    Ok(())
}

fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Option<KeyPairSpec>, i64)],
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(0i64);
    let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    for (spec, value) in values {
        match spec {
            Some(spec) => {
                let labels = [("spec", spec.as_str())];
                ConstGauge::new(*value).encode(family.encode_family(&labels)?)?;
            }
            None => return ConstGauge::new(*value).encode(family),
        }
    }
    Ok(())
}

fn as_i64(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

impl Collector for ScrapedSources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats: Vec<_> = KeyPairSpec::ALL
            .iter()
            .map(|spec| (*spec, self.pool.stats(*spec)))
            .collect();
        let per_spec = |f: &dyn Fn(&PoolStats) -> i64| -> Vec<_> {
            stats.iter().map(|(spec, s)| (Some(*spec), f(s))).collect()
        };
        encode_gauge(
            &mut encoder,
            "pool_ready",
            "Key pairs ready in the pool, by spec",
            &per_spec(&|s| as_i64(s.ready)),
        )?;
        encode_gauge(
            &mut encoder,
            "pool_capacity",
            "Configured pool depth, by spec",
            &per_spec(&|s| as_i64(s.capacity)),
        )?;
        let counters = |f: &dyn Fn(&PoolStats) -> u64| -> Vec<_> {
            stats.iter().map(|(spec, s)| (Some(*spec), f(s))).collect()
        };
        encode_counter(
            &mut encoder,
            "pool_hits",
            "Key pairs served from the pool, by spec",
            &counters(&|s| s.hits),
        )?;
        encode_counter(
            &mut encoder,
            "pool_misses",
            "Key pairs generated on demand because the pool was empty, by spec",
            &counters(&|s| s.misses),
        )?;
        encode_counter(
            &mut encoder,
            "keygen",
            "Key pairs generated by the pool's workers, by spec",
            &counters(&|s| s.generated),
        )?;
        encode_counter(
            &mut encoder,
            "keygen_failures",
            "Failed key generations, by spec",
            &counters(&|s| s.failures),
        )?;
        // Seconds as a float counter: rate(kmsd_keygen_seconds) / rate(kmsd_keygen) is
        // the mean generation time per spec.
        let seconds = ConstCounter::new(0.0f64);
        let mut family = encoder.encode_descriptor(
            "keygen_seconds",
            "Time the pool's workers spent generating key pairs, by spec",
            None,
            seconds.metric_type(),
        )?;
        for (spec, s) in &stats {
            let labels = [("spec", spec.as_str())];
            ConstCounter::new(s.generation_time.as_secs_f64())
                .encode(family.encode_family(&labels)?)?;
        }

        encode_counter(
            &mut encoder,
            "throttle_rejections",
            "Data key pair calls rejected with Rejected.Throttling",
            &[(None, self.throttle.rejected_total())],
        )?;
        encode_gauge(
            &mut encoder,
            "keypair_calls_in_flight",
            "Data key pair calls being served",
            &[(None, as_i64(self.throttle.in_flight()))],
        )?;
        encode_gauge(
            &mut encoder,
            "keypair_concurrency_limit",
            "The --keypair-concurrency limit",
            &[(None, as_i64(self.throttle.limit()))],
        )?;

        let store = *self.store.lock().unwrap_or_else(PoisonError::into_inner);
        encode_gauge(
            &mut encoder,
            "store_keys",
            "Master keys in the store, in any state",
            &[(None, as_i64(store.keys))],
        )?;
        encode_gauge(
            &mut encoder,
            "store_key_versions",
            "Master key versions in the store",
            &[(None, as_i64(store.versions))],
        )?;
        encode_gauge(
            &mut encoder,
            "store_aliases",
            "Aliases in the store",
            &[(None, as_i64(store.aliases))],
        )?;
        let available = self
            .store_available
            .load(std::sync::atomic::Ordering::Relaxed);
        encode_gauge(
            &mut encoder,
            "store_available",
            "1 if this replica reached the key store at the last scrape, else 0",
            &[(None, i64::from(available))],
        )?;

        let (versions, max) = self.seal_counts.summary();
        encode_gauge(
            &mut encoder,
            "key_version_seals_max",
            "Seals under the busiest master key version since start",
            &[(None, as_i64(max))],
        )?;
        encode_gauge(
            &mut encoder,
            "key_versions_sealing",
            "Master key versions that sealed at least once since start",
            &[(None, as_i64(versions))],
        )?;

        let (passes, totals) = *self.maintenance.borrow();
        encode_counter(
            &mut encoder,
            "automatic_rotations",
            "Keys rotated by their rotation policy",
            &[(None, totals.rotated)],
        )?;
        encode_counter(
            &mut encoder,
            "keys_destroyed",
            "Keys destroyed at the end of their deletion window",
            &[(None, totals.destroyed)],
        )?;
        encode_counter(
            &mut encoder,
            "maintenance_passes",
            "Passes of the rotation and deletion task",
            &[(None, passes)],
        )?;
        Ok(())
    }
}

// === the endpoint ===

/// Serves `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    registry: KeyRegistry,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            let registry = registry.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(&registry).await,
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

/// Binds the metrics address, with a clear error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keypool::PoolConfig;
    use crate::throttle::KeyPairThrottle;
    use kmsd_api::ops::Operation;

    #[tokio::test]
    async fn calls_are_counted_by_catalogue_label_and_code() {
        let pool = KeyPairPool::start(PoolConfig::off());
        let throttle = KeyPairThrottle::new(1).unwrap().stats();
        let (_tx, passes) = watch::channel(Default::default());
        let metrics = Metrics::new(pool.clone(), throttle, passes);
        let elapsed = Duration::from_millis(3);
        metrics.observe(
            Transport::Grpc,
            Route::Operation(Operation::Decrypt),
            StatusCode::Ok,
            elapsed,
        );
        metrics.observe(
            Transport::Https,
            Route::Operation(Operation::Decrypt),
            StatusCode::Ok,
            elapsed,
        );
        metrics.observe(
            Transport::Grpc,
            Route::Unknown,
            StatusCode::Unimplemented,
            elapsed,
        );
        metrics.observe(
            Transport::Grpc,
            Route::Unknown,
            StatusCode::Unimplemented,
            elapsed,
        );
        for _ in 0..3 {
            metrics.count_seal(SealWith::InitialVersion, "v-a");
        }
        metrics.count_seal(SealWith::PrimaryVersion, "v-b");
        assert_eq!(metrics.seal_count("v-a"), 3);
        assert_eq!(metrics.seal_count("v-c"), 0);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &metrics.registry).unwrap();
        assert!(
            out.contains(
                r#"kmsd_requests_total{method="kms.v1.CryptoService/Decrypt",code="Ok",transport="grpc"} 1"#
            ),
            "{out}"
        );
        assert!(
            out.contains(
                r#"kmsd_requests_total{method="kms.v1.CryptoService/Decrypt",code="Ok",transport="https"} 1"#
            ),
            "{out}"
        );
        assert!(
            out.contains(
                r#"kmsd_requests_total{method="unknown",code="Unimplemented",transport="grpc"} 2"#
            ),
            "{out}"
        );
        for line in [
            r#"kmsd_seals_total{form="plain"} 3"#,
            r#"kmsd_seals_total{form="advance"} 1"#,
            "kmsd_key_version_seals_max 3",
            "kmsd_key_versions_sealing 2",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
        assert!(!out.contains("v-a"), "no version label: {out}");
        pool.shutdown();
    }
}
