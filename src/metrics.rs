//! Prometheus metrics: what kmsd counts, and the `/metrics` endpoint that serves them.
//!
//! Two sources. [`MetricsLayer`], a tower layer right inside the request-ID layer, counts
//! every RPC by method and gRPC code and times it. Everything else (the pool, the
//! throttle, the store, maintenance) is read when Prometheus scrapes, so those modules
//! need not know metrics exist. Names start with `kmsd_`. Method labels come from a
//! fixed list built from the served descriptors, so a client sending made-up paths
//! cannot grow the label set.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_layer::Layer;
use tower_service::Service;

use crate::crypto::keygen::KeyPairSpec;
use crate::crypto::pool::KeyPairPool;
use crate::keys::KeyRegistry;
use crate::keys::maintenance::PassCounter;
use crate::store::StoreCounts;
use crate::throttle::ThrottleStats;

/// The method label of a path that is not a served method.
const UNKNOWN_METHOD: &str = "unknown";

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    /// `package.Service/Method`, or `unknown`.
    method: String,
    /// The gRPC status code name, e.g. `OK`, `ResourceExhausted`.
    code: String,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

/// Everything kmsd exports. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RpcLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    known_methods: Arc<HashSet<String>>,
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
}

impl Metrics {
    /// The metrics of one server. `descriptor_sets` are the encoded descriptor sets of
    /// every served service: their methods are the only method labels.
    pub fn new(
        descriptor_sets: &[&[u8]],
        pool: KeyPairPool,
        throttle: Arc<ThrottleStats>,
        maintenance: PassCounter,
    ) -> Self {
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
        });
        registry.register_collector(Box::new(Arc::clone(&scraped)));
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
            known_methods: Arc::new(methods_of(descriptor_sets)),
            scraped,
        }
    }

    /// The tower layer that counts and times RPCs.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer {
            metrics: self.clone(),
        }
    }

    fn method_label(&self, path: &str) -> String {
        let method = path.strip_prefix('/').unwrap_or(path);
        if self.known_methods.contains(method) {
            method.to_owned()
        } else {
            UNKNOWN_METHOD.to_owned()
        }
    }

    fn record(&self, method: String, code: tonic::Code, seconds: f64) {
        self.latency
            .get_or_create(&MethodLabels {
                method: method.clone(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RpcLabels {
                method,
                code: format!("{code:?}"),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric, with the store figures read
    /// from `registry` first.
    pub async fn render(&self, registry: &KeyRegistry) -> String {
        match registry.counts().await {
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

/// `package.Service/Method` of every method in the descriptor sets.
fn methods_of(descriptor_sets: &[&[u8]]) -> HashSet<String> {
    let mut methods = HashSet::new();
    for encoded in descriptor_sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*encoded) else {
            continue;
        };
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    let service_name = if package.is_empty() {
                        service.name().to_owned()
                    } else {
                        format!("{package}.{}", service.name())
                    };
                    methods.insert(format!("{service_name}/{}", method.name()));
                }
            }
        }
    }
    methods
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
        let per_spec = |f: &dyn Fn(&crate::crypto::pool::PoolStats) -> i64| -> Vec<_> {
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
        let counters = |f: &dyn Fn(&crate::crypto::pool::PoolStats) -> u64| -> Vec<_> {
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

// === impl MetricsLayer ===

/// Tower layer counting and timing every RPC.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: Metrics,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service made by [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Metrics,
}

/// The gRPC code of a response: a trailers-only response (every error) carries
/// `grpc-status` in its headers; a unary success carries it in the trailers, so its
/// absence from the headers means OK.
fn response_code<B>(response: &Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

impl<S, B, ResB> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let method = self.metrics.method_label(request.uri().path());
        let metrics = self.metrics.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            let code = match &result {
                Ok(response) => response_code(response),
                Err(_) => tonic::Code::Internal,
            };
            metrics.record(method, code, started.elapsed().as_secs_f64());
            result
        })
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

    #[test]
    fn only_served_methods_become_labels() {
        let methods = methods_of(&[crate::api::pb::FILE_DESCRIPTOR_SET]);
        assert!(methods.contains("kms.v1.CryptoService/GenerateDataKeyPair"));
        assert!(methods.contains("kms.v1.KeyManagementService/CreateKey"));
        assert!(!methods.contains("kms.v1.CryptoService/Nope"));
    }

    #[test]
    fn codes_come_from_headers_or_default_to_ok() {
        let ok = Response::new(());
        assert_eq!(response_code(&ok), tonic::Code::Ok);
        let mut err = Response::new(());
        err.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("8"));
        assert_eq!(response_code(&err), tonic::Code::ResourceExhausted);
    }
}
