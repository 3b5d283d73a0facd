//! Wiring: builds the [`Kms`] core from the config and serves it over gRPC: the tonic
//! stack (admission → services), TLS, transport limits, health,
//! reflection, the metrics endpoint, the HTTPS gateway of the official SDKs
//! (`--https-listen`, [`crate::transport::https`]), and graceful shutdown.
//!
//! A root key kept by a custody that cannot be reached yet (another KMS down, an HSM's
//! token not present) does not fail the start: the listener serves health alone,
//! NOT_SERVING, while the custody is tried again (`unseal`); the server proper starts
//! once the root key is open. A custody that refuses fails the start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::secret::MasterKeyMaterial;
use crate::keypool::KeyPairPool;
use crate::keys::custody::RootKeyCustody;
use crate::keys::maintenance::PassCounter;
use crate::kms::Kms;
pub use crate::kms::StartError;
use crate::metrics;
use crate::reload::{ReloadHandle, Reloader};
use crate::transport::grpc::admin::AdminApi;
use crate::transport::grpc::admission::AdmissionLayer;
use crate::transport::grpc::coalesce::coalesced;
use crate::transport::grpc::services::GrpcApi;
use crate::transport::https;
use crate::transport::limits::{
    HTTP2_KEEPALIVE_INTERVAL, HTTP2_KEEPALIVE_TIMEOUT, HTTP2_MAX_HEADER_LIST_SIZE,
    HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS, HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS,
    MAX_CONCURRENT_STREAMS_PER_CONNECTION, MAX_DECODING_MESSAGE_SIZE, REQUEST_TIMEOUT,
    TCP_KEEPALIVE,
};
use crate::transport::tls::{self, TlsSwitch};
use kmsd_api::ops::Service;
use kmsd_api::pb;
use kmsd_api::pb::admin_service_server::AdminServiceServer;
use kmsd_api::pb::crypto_service_server::CryptoServiceServer;
use kmsd_api::pb::key_management_service_server::KeyManagementServiceServer;
use kmsd_api::pb::secrets_service_server::SecretsServiceServer;

/// How often health asks the key store whether it can serve.
pub const STORE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A running server; dropping it does not stop it, call [`RunningServer::shutdown`].
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    kms: Kms,
    reload: ReloadHandle,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address `/metrics` is served on, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The address the HTTPS gateway listens on, if it does (`--https-listen`).
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The core the server serves.
    pub fn kms(&self) -> &Kms {
        &self.kms
    }

    /// The server's key pair pool (for readiness, stats, and the benchmark).
    pub fn pool(&self) -> &KeyPairPool {
        self.kms.pool()
    }

    /// Passes of the maintenance task so far, and what they did.
    pub fn maintenance_passes(&self) -> PassCounter {
        self.kms.maintenance_passes()
    }

    /// Reads the certificates, the client CA and the auth file again and reopens the
    /// audit log now, as SIGHUP does ([`crate::reload`]); the outcome is logged and
    /// counted, not returned.
    pub fn reload(&self) {
        self.reload.reload();
    }

    /// Starts a graceful shutdown: health turns NOT_SERVING, no new connections are
    /// accepted, in-flight calls get the configured grace period.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Shuts down (see [`Self::begin_shutdown`]) and waits until the server stopped.
    pub async fn shutdown(self) -> Result<(), tonic::transport::Error> {
        self.begin_shutdown();
        self.wait().await
    }

    /// Waits until the server stopped.
    pub async fn wait(self) -> Result<(), tonic::transport::Error> {
        match self.task.await {
            Ok(result) => result,
            Err(join_error) => {
                tracing::error!(error = %join_error, "the server task failed");
                Ok(())
            }
        }
    }
}

/// Refuses, on a non-loopback address, a server without access control unless
/// `--allow-unauthenticated-network` says so, plaintext unless `--allow-plaintext`
/// says so, and `--dev-fixed-seed-material` always.
///
/// Not in the config's validation with the other combinations of settings: it judges
/// the address of the listener handed to [`start`], which need not be `--listen`
/// (tests and the benchmark bind their own, e.g. port 0).
fn check_transport(config: &Config, local_addr: SocketAddr) -> Result<(), StartError> {
    if config.tls.is_none() && !local_addr.ip().is_loopback() {
        if !config.allow_plaintext {
            return Err(StartError::Invalid(format!(
                "refusing to serve plaintext on {local_addr}, which is not a loopback address: \
                 anyone on the network could read keys in transit. Serve TLS with --tls-cert and \
                 --tls-key (and --tls-client-ca for mTLS), listen on 127.0.0.1, or pass \
                 --allow-plaintext if a service mesh sidecar terminates mTLS for this server"
            )));
        }
        tracing::warn!(
            %local_addr,
            "serving PLAINTEXT on a non-loopback address (--allow-plaintext): safe only \
             behind a sidecar or proxy that terminates TLS/mTLS on this host"
        );
    }
    config
        .check_open_on_network(local_addr, "gRPC")
        .and_then(|()| config.check_dev_seed_on_network(local_addr, "gRPC"))
        .map_err(|err| StartError::Invalid(err.to_string()))
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    // Each service of the catalogue by name, as health clients may ask for one.
    for service in Service::ALL {
        reporter
            .set_service_status(service.full_name(), status)
            .await;
    }
}

/// Starts the server on `listener` with the real clock.
pub async fn start(config: Config, listener: TcpListener) -> Result<RunningServer, StartError> {
    start_with_clock(config, listener, Arc::new(SystemClock)).await
}

/// Starts the server on `listener`, reading time from `clock`. Returns once the store
/// is open and the server accepts connections; health turns SERVING once the pool has
/// a key pair of every spec, and NOT_SERVING while the key store cannot be reached.
pub async fn start_with_clock(
    config: Config,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, StartError> {
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    // Transport settings are checked before anything is created or opened, so a
    // refused start changes nothing (Kms::open checks the combinations of settings,
    // config::Config::check_combinations, before it creates anything).
    check_transport(&config, local_addr)?;
    let tls = config
        .tls
        .as_ref()
        .map(|files| tls::grpc_settings(files).map(|served| Arc::new(TlsSwitch::new(served))))
        .transpose()
        .map_err(|err| StartError::Invalid(err.to_string()))?;
    let (root_key, listener) = unseal(&config, listener, local_addr, tls.clone()).await?;
    let kms = Kms::open_with_root_key(&config, clock, root_key).await?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&health_reporter, ServingStatus::NotServing).await;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let readiness = spawn_readiness(&kms, health_reporter.clone(), shutdown_rx.clone()).await;
    let metrics_addr = serve_metrics(&config, &kms, shutdown_rx.clone()).await?;
    let gateway = serve_gateway(&config, &kms, shutdown_rx.clone()).await?;
    let https_addr = gateway.as_ref().map(|(addr, _, _)| *addr);
    let router = grpc_router(&kms, health_service)?;
    let reloader = Reloader::new(
        &kms,
        &config,
        tls.clone(),
        gateway.as_ref().map(|(_, _, switch)| Arc::clone(switch)),
    );
    let reload = reloader.handle();
    reloader.spawn(shutdown_rx.clone());
    spawn_failure_summaries(shutdown_rx.clone());

    let serving = Serving {
        router,
        listener,
        tls,
        gateway: gateway.map(|(_, task, _)| task),
        readiness,
        health: health_reporter,
        grace: config.shutdown_grace,
        kms: kms.clone(),
    };
    let task = tokio::spawn(serving.run(shutdown_rx));

    tracing::info!(%local_addr, tls = config.tls.is_some(), mtls = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()), "kmsd listening");
    Ok(RunningServer {
        local_addr,
        metrics_addr,
        https_addr,
        shutdown: shutdown_tx,
        task,
        kms,
        reload,
    })
}

/// How long the health-only server of [`unseal`] gets to close its connections.
const SEALED_HEALTH_GRACE: Duration = Duration::from_secs(2);

/// Opens a root key kept by an HSM or another KMS before anything else starts; `None`
/// for a plain root key file, which [`Kms::open_with_root_key`] reads. While the
/// custody cannot be reached ([`crate::keys::custody::CustodyError::is_transient`]),
/// health is served on (a duplicate of) `listener`, NOT_SERVING, and the custody is
/// tried again with a capped backoff
/// ([`RootKeyCustody::load_patiently`]); then that server stops and the listener is
/// handed back for the real one.
///
/// # Errors
///
/// [`StartError`] when the custody refuses (a wrong PIN, a missing key, a rejected
/// client key, …), or a setting is invalid.
async fn unseal(
    config: &Config,
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<Arc<TlsSwitch>>,
) -> Result<(Option<MasterKeyMaterial>, TcpListener), StartError> {
    let custody = match config.root_key_custody() {
        Some(RootKeyCustody::File(_)) | None => return Ok((None, listener)),
        Some(custody) => custody,
    };
    // A wrong setting fails now, not after waiting for the custody.
    config
        .check_combinations()
        .map_err(|err| StartError::Invalid(err.to_string()))?;
    let started = std::time::Instant::now();
    let first = match custody.load().await {
        Ok(key) => {
            crate::kms::log_unwrapped(&custody, started.elapsed());
            return Ok((Some(key), listener));
        }
        Err(err) if err.is_transient() => err,
        Err(err) => return Err(err.into()),
    };
    let (listener, health) = SealedHealth::serve(listener, local_addr, tls).await?;
    let opened = custody.load_patiently(first).await;
    health.stop().await;
    let key = opened?;
    crate::kms::log_unwrapped(&custody, started.elapsed());
    Ok((Some(key), listener))
}

/// gRPC health alone, NOT_SERVING, while the root key's custody cannot be reached.
struct SealedHealth {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SealedHealth {
    /// Serves on a duplicate of `listener` (the same socket: connections waiting in
    /// its backlog when this stops go to the real server); returns `listener`.
    async fn serve(
        listener: TcpListener,
        local_addr: SocketAddr,
        tls: Option<Arc<TlsSwitch>>,
    ) -> Result<(TcpListener, Self), StartError> {
        let bind = |source| StartError::Bind {
            addr: local_addr,
            source,
        };
        let socket = listener.into_std().map_err(bind)?;
        let duplicate = socket.try_clone().map_err(bind)?;
        let listener = TcpListener::from_std(socket).map_err(bind)?;
        let duplicate = TcpListener::from_std(duplicate).map_err(bind)?;
        let (reporter, service) = tonic_health::server::health_reporter();
        set_health(&reporter, ServingStatus::NotServing).await;
        let (stop, mut stopped) = watch::channel(false);
        let router = Server::builder().add_service(service);
        let signal = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let task = tokio::spawn(async move {
            // Keeps the reporter (and so the status) alive while serving.
            let _reporter = reporter;
            let served = match tls {
                Some(tls) => {
                    router
                        .serve_with_incoming_shutdown(
                            coalesced(crate::transport::grpc::tls::incoming(duplicate, tls)),
                            signal,
                        )
                        .await
                }
                None => {
                    let incoming = TcpIncoming::from(duplicate).with_nodelay(Some(true));
                    router
                        .serve_with_incoming_shutdown(coalesced(incoming), signal)
                        .await
                }
            };
            if let Err(err) = served {
                tracing::warn!(error = %err, "the health server of a sealed start failed");
            }
        });
        tracing::info!(
            %local_addr,
            "waiting for the root key's custody: health NOT_SERVING, listening"
        );
        Ok((listener, Self { stop, task }))
    }

    /// Stops serving; connections still open after [`SEALED_HEALTH_GRACE`] (a health
    /// watch) are dropped.
    async fn stop(self) {
        self.stop.send_replace(true);
        let mut task = self.task;
        if tokio::time::timeout(SEALED_HEALTH_GRACE, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Writes the failure log's summaries when their intervals end, so a burst of failed
/// calls that stops still gets its summary line ([`crate::logging::failures`]).
fn spawn_failure_summaries(mut shutdown: watch::Receiver<bool>) {
    use crate::logging::failures::{FAILURES, INTERVAL};
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            FAILURES.flush_due();
        }
        FAILURES.flush_all();
    });
}

/// Health: SERVING once the pool is primed, then for as long as the store answers.
/// While a shared store (PostgreSQL) is unreachable, load balancers and orchestrators
/// see NOT_SERVING and send calls elsewhere; it turns back by itself. A server ready
/// already (no pool to prime) is SERVING before the first call can ask.
async fn spawn_readiness(
    kms: &Kms,
    reporter: HealthReporter,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let pool = kms.pool().clone();
    let registry = kms.registry().clone();
    let serving_at_start = pool.is_primed() && registry.check_store().await.is_ok();
    if serving_at_start {
        set_health(&reporter, ServingStatus::Serving).await;
        tracing::info!("ready: the key pair pool is off or primed");
    }
    tokio::spawn(async move {
        let primed = tokio::select! {
            _ = pool.wait_primed() => true,
            _ = shutdown.wait_for(|stop| *stop) => false,
        };
        if !primed {
            return;
        }
        let mut ticker = tokio::time::interval(STORE_CHECK_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut serving = serving_at_start.then_some(true);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let available = registry.check_store().await;
            if *shutdown.borrow() {
                return;
            }
            let now = available.is_ok();
            if serving == Some(now) {
                continue;
            }
            match (&available, serving) {
                (Ok(()), None) => tracing::info!("ready: the key pair pool is primed"),
                (Ok(()), Some(_)) => tracing::info!("the key store is back: serving"),
                (Err(err), _) => tracing::warn!(
                    detail = %err.detail(),
                    "the key store is unavailable: NOT_SERVING until it answers"
                ),
            }
            let status = if now {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&reporter, status).await;
            // A shutdown that began meanwhile keeps the last word.
            if *shutdown.borrow() {
                set_health(&reporter, ServingStatus::NotServing).await;
                return;
            }
            serving = Some(now);
        }
    })
}

/// The Prometheus endpoint (`--metrics-listen`), if configured: its bound address.
async fn serve_metrics(
    config: &Config,
    kms: &Kms,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<SocketAddr>, StartError> {
    let Some(addr) = config.metrics_listen else {
        return Ok(None);
    };
    let listener = metrics::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let bound = listener.local_addr().ok();
    let serving = kms.metrics().clone();
    tokio::spawn(async move {
        if let Err(err) = metrics::serve(listener, serving, shutdown).await {
            tracing::error!(error = %err, "the metrics endpoint failed");
        }
    });
    if let Some(addr) = bound {
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    }
    Ok(bound)
}

/// The HTTPS gateway (`--https-listen`), if configured: its bound address, task, and
/// TLS settings (which a reload replaces).
async fn serve_gateway(
    config: &Config,
    kms: &Kms,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<(SocketAddr, tokio::task::JoinHandle<()>, Arc<TlsSwitch>)>, StartError> {
    let Some(addr) = config.https_listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let tls = Arc::new(TlsSwitch::new(https::tls::server_config(config, bound)?));
    let task = tokio::spawn(https::serve(
        listener,
        Arc::clone(&tls),
        kms.clone(),
        config.https_max_connections,
        shutdown,
    ));
    tracing::info!(local_addr = %bound, "kmsd https gateway listening");
    Ok(Some((bound, task, tls)))
}

/// The tonic stack: the transport limits, the admission layer, and the services
/// (health, reflection, the catalogue's, admin). TLS is done before tonic sees a
/// connection ([`crate::transport::grpc::tls`]), so a reload can replace it.
fn grpc_router(
    kms: &Kms,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> Result<Router<tower_layer::Stack<AdmissionLayer, tower_layer::Identity>>, StartError> {
    // Reflection serves kmsd's protos, health's, and google.rpc's (for error details).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(pb::GOOGLE_RPC_FILE_DESCRIPTOR_SET)
    };
    let invalid =
        |err: tonic_reflection::server::Error| StartError::Invalid(format!("reflection: {err}"));
    let reflection_v1 = reflection().build_v1().map_err(invalid)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(invalid)?;

    let api = GrpcApi::new(kms.clone());
    let crypto =
        CryptoServiceServer::new(api.clone()).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
    let management = KeyManagementServiceServer::new(api.clone())
        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
    let secrets =
        SecretsServiceServer::new(api).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
    let admin = AdminServiceServer::new(AdminApi::new(kms.clone()))
        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);

    let builder = Server::builder()
        .timeout(REQUEST_TIMEOUT)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS_PER_CONNECTION)
        .http2_max_pending_accept_reset_streams(Some(HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS))
        .http2_max_local_error_reset_streams(Some(HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS))
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(TCP_KEEPALIVE));
    Ok(builder
        .layer(AdmissionLayer::new(kms.clone()))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(crypto)
        .add_service(management)
        .add_service(secrets)
        .add_service(admin))
}

/// What serves until shutdown: the gRPC router on its listener, the gateway's task,
/// the readiness task; and what stops after them: the core.
struct Serving {
    router: Router<tower_layer::Stack<AdmissionLayer, tower_layer::Identity>>,
    listener: TcpListener,
    /// The gRPC listener's TLS settings; `None` serves plaintext.
    tls: Option<Arc<TlsSwitch>>,
    gateway: Option<tokio::task::JoinHandle<()>>,
    readiness: tokio::task::JoinHandle<()>,
    health: HealthReporter,
    grace: Duration,
    kms: Kms,
}

impl Serving {
    /// Serves until `shutdown` turns true, then drains in-flight calls (gRPC and the
    /// gateway's) for at most the grace period, and stops the core.
    async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), tonic::transport::Error> {
        let Self {
            router,
            listener,
            tls,
            gateway,
            readiness,
            health,
            grace,
            kms,
        } = self;
        let mut stop_accepting = shutdown.clone();
        let signal = async move {
            let _ = stop_accepting.wait_for(|stop| *stop).await;
            set_health(&health, ServingStatus::NotServing).await;
            tracing::info!("shutting down: no new calls; waiting for in-flight calls");
        };
        // TCP_NODELAY on every accepted connection: `serve_with_incoming` ignores the
        // builder's `tcp_nodelay`, and without it Nagle's algorithm holds a response's
        // last segment until the client's delayed ACK, 40 ms later (measured by
        // kmsd-bench: most calls took 44 ms instead of under 1; docs/performance.md).
        // The same for the TLS connections (transport::grpc::tls).
        let serve: std::pin::Pin<Box<dyn Future<Output = _> + Send>> = match tls {
            Some(tls) => Box::pin(router.serve_with_incoming_shutdown(
                coalesced(crate::transport::grpc::tls::incoming(listener, tls)),
                signal,
            )),
            None => {
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                Box::pin(router.serve_with_incoming_shutdown(coalesced(incoming), signal))
            }
        };
        let mut grace_timer = shutdown.clone();
        // The gateway's calls finish too before the core stops.
        let both = async move {
            let result = serve.await;
            if let Some(task) = gateway {
                let _ = task.await;
            }
            result
        };
        let result = tokio::select! {
            result = both => result,
            _ = async {
                let _ = grace_timer.wait_for(|stop| *stop).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace expired: abandoning in-flight calls");
                Ok(())
            }
        };
        readiness.abort();
        kms.shutdown().await;
        tracing::info!("stopped");
        result
    }
}

/// Binds `config.listen`, serves until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let mut stop = StopSignals::listen();
    // A start that waits for the root key's custody still stops on a signal.
    let server = tokio::select! {
        started = start(config, listener) => started?,
        () = stop.received() => {
            tracing::info!("stopped before the root key was opened");
            return Ok(());
        }
    };
    wait_for_signal(&server, &mut stop).await;
    server.begin_shutdown();
    if let Err(err) = server.wait().await {
        tracing::error!(error = %err, "the server failed while shutting down");
    }
    Ok(())
}

/// SIGTERM and SIGINT, listened for once for the whole life of the server. With a
/// set of listeners for the start and another for serving, a signal that came between
/// the two was lost (kmsd's handler installed, nobody listening) and kmsd did not stop.
struct StopSignals {
    #[cfg(unix)]
    listening: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listening = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => {
                    tracing::warn!("cannot install signal handlers; falling back to ctrl-c");
                    None
                }
            };
            Self { listening }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Waits for SIGTERM or SIGINT (ctrl-c where they cannot be listened for).
    /// Cancel-safe: a signal is never lost by dropping this future.
    async fn received(&mut self) {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.listening {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Waits for SIGTERM or SIGINT; meanwhile, each SIGHUP reloads the certificates and
/// the auth file and reopens the audit log ([`RunningServer::reload`]).
async fn wait_for_signal(server: &RunningServer, stop: &mut StopSignals) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => loop {
                tokio::select! {
                    () = stop.received() => return,
                    _ = hup.recv() => server.reload(),
                }
            },
            Err(_) => tracing::warn!("cannot listen for SIGHUP: reloading needs a restart"),
        }
    }
    stop.received().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_handed_in_off_loopback_is_judged_like_listen() {
        let public: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        let config = Config {
            allow_plaintext: true,
            auth_config: Some("/etc/kmsd/auth.toml".into()),
            ..Config::default()
        };
        check_transport(&config, public).unwrap();
        let seeded = Config {
            dev_fixed_seed_material: true,
            ..config.clone()
        };
        let err = check_transport(&seeded, public).unwrap_err().to_string();
        assert!(err.contains("--dev-fixed-seed-material"), "{err}");
        check_transport(&seeded, "127.0.0.1:50051".parse().unwrap()).unwrap();
        let open = Config {
            auth_config: None,
            ..config
        };
        let err = check_transport(&open, public).unwrap_err().to_string();
        assert!(err.contains("--allow-unauthenticated-network"), "{err}");
    }
}
