//! Live reload: kmsd's certificate and key (gRPC's, and the HTTPS gateway's own
//! `--https-tls-cert` or the shared one), its client CA and its auth file are read
//! again when they change on disk (polled every [`POLL_INTERVAL`]) and on SIGHUP, and
//! swapped in without dropping a connection: new handshakes use the new certificate,
//! calls admitted after the swap are judged by the new policy. SIGHUP also reopens the
//! audit log file ([`crate::audit::AuditLog::reopen`]: logrotate's `mv`, then SIGHUP).
//!
//! A reading that fails (a file that does not parse, a key that does not match its
//! certificate, a policy that does not validate) is refused whole: logged at error
//! level, counted in `kmsd_reload_failures_total{what}`, and what was served stays.
//! Each reload that succeeds is logged and counted in `kmsd_reloads_total{what}`; the
//! served certificates' notAfter is `kmsd_tls_certificate_expiry_seconds{listener}`.
//!
//! A change is acted on once the files have stayed the same for one more poll, so a
//! certificate and key written one after the other are read together, not half-way.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use tokio::sync::{Notify, watch};

use crate::auth::policy::AuthPolicy;
use crate::config::{Config, TlsFiles};
use crate::kms::Kms;
use crate::metrics;
use crate::transport::tls::{self, TlsSwitch};

/// How often the watched files' modification time and length are compared.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What a reload replaces: the label of its metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// The gRPC listener's certificate, key and client CA.
    Tls,
    /// The HTTPS gateway's certificate and key.
    GatewayTls,
    /// The access policy (`--auth-config`).
    Auth,
}

impl What {
    const ALL: [Self; 3] = [Self::Tls, Self::GatewayTls, Self::Auth];

    /// The metrics' `what` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::GatewayTls => "gateway_tls",
            Self::Auth => "auth",
        }
    }
}

/// The reloads' counts and the served certificates' expiry, read at each scrape.
#[derive(Debug, Default)]
struct ReloadStats {
    reloads: [AtomicU64; 3],
    failures: [AtomicU64; 3],
    grpc: Option<Arc<TlsSwitch>>,
    https: Option<Arc<TlsSwitch>>,
}

impl Collector for ReloadStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = |of: &[AtomicU64; 3]| {
            What::ALL
                .into_iter()
                .zip(of.iter().map(|count| count.load(Ordering::Relaxed)))
                .map(|(what, count)| (what.label(), count))
                .collect::<Vec<_>>()
        };
        metrics::encode_counters(
            &mut encoder,
            "reloads",
            "Certificates and policies reloaded and swapped in",
            "what",
            counts(&self.reloads),
        )?;
        metrics::encode_counters(
            &mut encoder,
            "reload_failures",
            "Reloads refused (unreadable file, key not matching, invalid policy); the old one stays",
            "what",
            counts(&self.failures),
        )?;
        let expiry = [("grpc", &self.grpc), ("https", &self.https)]
            .into_iter()
            .filter_map(|(listener, switch)| Some((listener, switch.as_ref()?.not_after())));
        metrics::encode_gauges(
            &mut encoder,
            "tls_certificate_expiry_seconds",
            "The served certificate's notAfter, Unix seconds",
            "listener",
            expiry,
        )
    }
}

/// What can be reloaded, from which files, into which switch.
#[derive(Debug)]
pub struct Reloader {
    kms: Kms,
    auth: Option<PathBuf>,
    grpc: Option<(TlsFiles, Arc<TlsSwitch>)>,
    /// The gateway's certificate and key files (none for the development certificate,
    /// which nobody rotates).
    gateway: Option<(PathBuf, PathBuf, Arc<TlsSwitch>)>,
    stats: Arc<ReloadStats>,
    /// Wakes the watch task for a reload of everything (SIGHUP).
    now: Arc<Notify>,
}

/// Asks a running [`Reloader`] to read everything again now (what SIGHUP does).
#[derive(Clone, Debug)]
pub struct ReloadHandle(Arc<Notify>);

impl ReloadHandle {
    /// Reloads everything now, as SIGHUP does; the outcome is logged and counted.
    pub fn reload(&self) {
        self.0.notify_one();
    }
}

impl Reloader {
    /// A reloader of `kms`'s policy (`--auth-config`), of the gRPC listener's TLS
    /// settings held by `grpc` (from `--tls-cert`, `--tls-key`, `--tls-client-ca`) and
    /// the gateway's held by `gateway` (from [`Config::gateway_tls`]; a gateway serving
    /// the development certificate has nothing to reload). Registers its metrics with
    /// `kms`'s.
    pub fn new(
        kms: &Kms,
        config: &Config,
        grpc: Option<Arc<TlsSwitch>>,
        gateway: Option<Arc<TlsSwitch>>,
    ) -> Self {
        let stats = Arc::new(ReloadStats {
            grpc: grpc.clone(),
            https: gateway.clone(),
            ..ReloadStats::default()
        });
        kms.metrics().register(Arc::clone(&stats));
        Self {
            kms: kms.clone(),
            auth: config.auth_config.clone(),
            grpc: config.tls.clone().zip(grpc),
            gateway: config
                .gateway_tls()
                .zip(gateway)
                .map(|(files, switch)| (files.cert, files.key, switch)),
            stats,
            now: Arc::new(Notify::new()),
        }
    }

    /// A handle that triggers a reload of everything.
    pub fn handle(&self) -> ReloadHandle {
        ReloadHandle(Arc::clone(&self.now))
    }

    /// Watches the files until `shutdown` turns true: reloads what changed once it has
    /// stayed the same for one more poll, and everything when the handle asks.
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut seen: Vec<Stamp> = What::ALL.iter().map(|w| self.stamp(*w)).collect();
            let mut pending: [bool; 3] = [false; 3];
            let mut ticker = tokio::time::interval(POLL_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let asked = tokio::select! {
                    _ = ticker.tick() => false,
                    () = self.now.notified() => true,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                };
                if asked {
                    // First, so records after the signal go to the file now at the path.
                    if let Some(log) = self.kms.audit() {
                        log.reopen().await;
                    }
                    tracing::info!("reloading certificates and policy on request (SIGHUP)");
                    for (index, what) in What::ALL.into_iter().enumerate() {
                        seen[index] = self.stamp(what);
                        pending[index] = false;
                        self.reload(what);
                    }
                    continue;
                }
                for (index, what) in What::ALL.into_iter().enumerate() {
                    let now = self.stamp(what);
                    if now != seen[index] {
                        seen[index] = now;
                        pending[index] = true;
                    } else if pending[index] {
                        pending[index] = false;
                        self.reload(what);
                    }
                }
            }
        })
    }

    /// Reads `what` again and swaps it in, or refuses it and keeps the old one.
    /// Returns `None` when there is nothing of that kind to reload.
    pub fn reload(&self, what: What) -> Option<bool> {
        let outcome = match what {
            What::Tls => {
                let (files, switch) = self.grpc.as_ref()?;
                tls::grpc_settings(files)
                    .map(|served| switch.replace(served))
                    .map_err(|err| err.to_string())
            }
            What::GatewayTls => {
                let (cert, key, switch) = self.gateway.as_ref()?;
                tls::gateway_settings(cert, key)
                    .map(|served| switch.replace(served))
                    .map_err(|err| err.to_string())
            }
            What::Auth => {
                let path = self.auth.as_ref()?;
                AuthPolicy::load(path)
                    .map(|policy| {
                        let principals = policy.principals().len();
                        self.kms.replace_policy(policy);
                        tracing::info!(path = %path.display(), principals, "access policy reloaded");
                    })
                    .map_err(|err| err.to_string())
            }
        };
        let index = What::ALL.iter().position(|w| *w == what)?;
        Some(match outcome {
            Ok(()) => {
                self.stats.reloads[index].fetch_add(1, Ordering::Relaxed);
                if what != What::Auth {
                    tracing::info!(
                        what = what.label(),
                        "TLS certificate reloaded: new handshakes use it"
                    );
                }
                true
            }
            Err(error) => {
                self.stats.failures[index].fetch_add(1, Ordering::Relaxed);
                tracing::error!(what = what.label(), %error, "reload refused: still serving the previous one");
                false
            }
        })
    }

    /// The modification times and lengths of `what`'s files.
    fn stamp(&self, what: What) -> Stamp {
        let paths: Vec<&PathBuf> = match what {
            What::Tls => self
                .grpc
                .iter()
                .flat_map(|(files, _)| {
                    [&files.cert, &files.key]
                        .into_iter()
                        .chain(&files.client_ca)
                })
                .collect(),
            What::GatewayTls => self
                .gateway
                .iter()
                .flat_map(|(cert, key, _)| [cert, key])
                .collect(),
            What::Auth => self.auth.iter().collect(),
        };
        paths
            .into_iter()
            .map(|path| {
                // Follows symbolic links: Kubernetes swaps a mounted secret by relinking.
                std::fs::metadata(path)
                    .ok()
                    .map(|meta| (meta.modified().ok(), meta.len()))
            })
            .collect()
    }
}

/// Files' modification time and length; `None` for a file that cannot be read.
type Stamp = Vec<Option<(Option<SystemTime>, u64)>>;
