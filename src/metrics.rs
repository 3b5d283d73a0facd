//! Prometheus metrics: what kmsd counts, and the `/metrics` endpoint that serves them.
//!
//! Two kinds of source. Every call is counted by method and status code and timed
//! through [`Metrics::observe`], which each transport's edge calls once per call with
//! the call's [`Route`] and outcome. Everything else (the pool, the throttle, the
//! store, maintenance) is read when Prometheus scrapes, from sources that register
//! themselves ([`Metrics::register`], [`Metrics::register_refreshed`]): each implements
//! prometheus-client's [`Collector`] in its own module, so this module depends on none
//! of them and they share the encoding helpers below ([`encode_counter`] and kin).
//! Names start with `kmsd_`. Method labels come from the operation catalogue
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

use async_trait::async_trait;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::call::Transport;
use crate::error::StatusCode;
use kmsd_api::ops::Route;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    /// `package.Service/Method`, or `unknown`.
    method: &'static str,
    /// The status code, e.g. `Ok`, `ResourceExhausted` ([`StatusCode::label`]).
    code: &'static str,
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

/// The form a ciphertext was sealed in, as the seal counter labels it. The data plane
/// says which of its ways of sealing makes which form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealForm {
    /// `plain`: the key's initial version, the IV apart.
    Plain,
    /// `advance`: the self-describing blob.
    Advance,
}

impl SealForm {
    fn label(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Advance => "advance",
        }
    }
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

/// Everything kmsd exports. Cheap to clone; clones share the registered sources.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    requests: Family<RpcLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    seals: Family<FormLabels, Counter>,
    https_refused: Counter,
    seal_counts: Arc<SealCounts>,
    /// Sources to refresh before each encode.
    refreshed: Arc<Mutex<Vec<Arc<dyn Refresh>>>>,
}

/// A source whose figures are read asynchronously (the store's counts: a query,
/// perhaps over the network) just before each scrape. [`Metrics::render`] awaits every
/// registered one, then encodes; encoding itself never waits.
#[async_trait]
pub trait Refresh: Collector {
    /// Reads the figures anew. A failure is the source's to log and to show (e.g. a
    /// gauge saying it is unavailable); the scrape goes on.
    async fn refresh(&self);
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics of one server: the call counters, the seal counters and the build
    /// info. The other sources [`register`](Self::register) themselves.
    pub fn new() -> Self {
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
        let seals = Family::<FormLabels, Counter>::default();
        registry.register(
            "seals",
            "Ciphertexts sealed under master key versions, by form (plain, advance)",
            seals.clone(),
        );
        let https_refused = Counter::default();
        registry.register(
            "https_connections_refused",
            "HTTPS gateway connections closed on arrival: --https-max-connections were open",
            https_refused.clone(),
        );
        let seal_counts = Arc::new(SealCounts::default());
        registry.register_collector(Box::new(Arc::clone(&seal_counts)));
        Self {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            latency,
            seals,
            https_refused,
            seal_counts,
            refreshed: Arc::default(),
        }
    }

    /// Adds `source` to what every scrape encodes, after what is there already.
    pub fn register(&self, source: impl Collector) {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .register_collector(Box::new(source));
    }

    /// Adds `source` like [`register`](Self::register), refreshed before each scrape.
    pub fn register_refreshed<S: Refresh>(&self, source: Arc<S>) {
        self.refreshed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&source) as Arc<dyn Refresh>);
        self.register(source);
    }

    /// Counts one gateway connection closed on arrival (the connection cap).
    pub fn count_https_connection_refused(&self) {
        self.https_refused.inc();
    }

    /// Counts one seal under `key_version_id`, in `form`.
    pub fn count_seal(&self, form: impl Into<SealForm>, key_version_id: &str) {
        let form = form.into().label();
        self.seals.get_or_create(&FormLabels { form }).inc();
        self.seal_counts.count(key_version_id);
    }

    /// Seals under `key_version_id` since this server started.
    pub fn seal_count(&self, key_version_id: &str) -> u64 {
        self.seal_counts.of(key_version_id)
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
                code: code.label(),
                transport,
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric, each refreshed source read
    /// anew first.
    pub async fn render(&self) -> String {
        let refreshed = self
            .refreshed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for source in refreshed {
            source.refresh().await;
        }
        self.encode()
    }

    fn encode(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %err, "metrics: encoding failed");
        }
        out
    }
}

impl Collector for SealCounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (versions, max) = self.summary();
        encode_gauge(
            &mut encoder,
            "key_version_seals_max",
            "Seals under the busiest master key version since start",
            saturating_i64(max),
        )?;
        encode_gauge(
            &mut encoder,
            "key_versions_sealing",
            "Master key versions that sealed at least once since start",
            saturating_i64(versions),
        )
    }
}

// === encoding helpers for the sources ===

/// Writes the counter `name` (`_total` is appended) with one unlabelled `value`.
///
/// # Errors
///
/// Only the encoder's, passed on.
pub fn encode_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeCounterValue,
) -> Result<(), std::fmt::Error> {
    let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(family)
}

/// Writes the counter `name` with one sample per `(label value, value)`, the label
/// named `label`.
///
/// # Errors
///
/// Only the encoder's, passed on.
pub fn encode_counters<'a, N: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, N)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (label_value, value) in values {
        let labels = [(label, label_value)];
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes the gauge `name` with one unlabelled `value`.
///
/// # Errors
///
/// Only the encoder's, passed on.
pub fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(family)
}

/// Writes the gauge `name` with one sample per `(label value, value)`, the label named
/// `label`.
///
/// # Errors
///
/// Only the encoder's, passed on.
pub fn encode_gauges<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (label_value, value) in values {
        let labels = [(label, label_value)];
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// `value` as a gauge's `i64`, `i64::MAX` if it does not fit.
pub fn saturating_i64(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

// === the endpoint ===

/// Serves `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render().await,
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
    use kmsd_api::ops::Operation;

    #[tokio::test]
    async fn calls_are_counted_by_catalogue_label_and_code() {
        let metrics = Metrics::new();
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
            metrics.count_seal(SealForm::Plain, "v-a");
        }
        metrics.count_seal(SealForm::Advance, "v-b");
        assert_eq!(metrics.seal_count("v-a"), 3);
        assert_eq!(metrics.seal_count("v-c"), 0);
        let out = metrics.render().await;
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
    }

    /// A source that counts its refreshes and shows the count.
    #[derive(Debug, Default)]
    struct Refreshes(AtomicU64);

    impl Collector for Refreshes {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let seen = self.0.load(Ordering::Relaxed);
            encode_counter(&mut encoder, "refreshes", "Refreshes", seen)?;
            encode_gauges(
                &mut encoder,
                "sides",
                "Sides",
                "side",
                [("left", 1), ("right", saturating_i64(u64::MAX))],
            )
        }
    }

    #[async_trait]
    impl Refresh for Refreshes {
        async fn refresh(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn registered_sources_are_refreshed_then_encoded_with_the_prefix() {
        let metrics = Metrics::new();
        let source = Arc::new(Refreshes::default());
        metrics.clone().register_refreshed(Arc::clone(&source));
        let out = metrics.render().await;
        for line in [
            "# HELP kmsd_refreshes Refreshes",
            "kmsd_refreshes_total 1",
            r#"kmsd_sides{side="left"} 1"#,
            r#"kmsd_sides{side="right"} 9223372036854775807"#,
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
        assert!(metrics.render().await.contains("kmsd_refreshes_total 2"));
    }
}
