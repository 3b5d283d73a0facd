//! The HTTPS gateway: the official instance SDKs' protocol (reference section 6), so
//! an application written for the public service runs against kmsd unmodified.
//!
//! `POST /` over HTTP/1.1 and TLS; the body is the protobuf request message of the
//! operation `x-kms-apiname` names; the request is signed with a client key
//! (`CreateClientKey`). Success is 200 with the protobuf response; failure a 4xx/5xx
//! status with a protobuf `Error` body.
//!
//! - [`gateway`]: one call, through the same checks, core and records as gRPC; the
//!   dispatch table generated from the data plane's list.
//! - [`request_signature`]: the signature headers, the string-to-sign, the date window, the body
//!   digest.
//! - [`errors`]: refusals as HTTP statuses and `Error` bodies.
//! - [`tls`]: kmsd's certificate, or the development certificate on loopback.
//! - [`client`]: kmsd's own client of the protocol, signing as the SDKs do (the root
//!   key's custody in another KMS, `keys::custody::kms`).

pub mod client;
pub mod errors;
pub mod gateway;
pub mod request_signature;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::kms::Kms;
use crate::transport::limits::{HEADER_READ_TIMEOUT, REQUEST_TIMEOUT, TLS_HANDSHAKE_TIMEOUT};
use crate::transport::tls::TlsSwitch;

/// Serves the gateway on `listener` with the TLS settings `tls` holds (each handshake
/// takes the current ones, so a reload applies to the next connection) until `shutdown` turns true: then no
/// new connection is accepted, open ones finish the request in progress, and this
/// returns once they have (the server stops the core only after that).
///
/// At most `max_connections` are open at once (handshaking, idle or serving): one
/// more is closed as soon as it is accepted, before any TLS, and counted in the
/// metrics, so one client cannot hold every file descriptor.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<TlsSwitch>,
    kms: Kms,
    max_connections: usize,
    shutdown: watch::Receiver<bool>,
) {
    let mut connections: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    let mut stop = shutdown.clone();
    let stopping = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopping);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(error = %err, "HTTPS gateway: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        // Reap finished connections so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        if connections.len() >= max_connections {
            kms.metrics().count_https_connection_refused();
            tracing::debug!(%peer, max_connections, "HTTPS gateway: connection refused, at the cap");
            drop(stream);
            continue;
        }
        // Small request/response exchanges: do not wait to fill segments.
        let _ = stream.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.current());
        let kms = kms.clone();
        let mut shutdown = shutdown.clone();
        // Into the set shutdown waits on: a connection spawned anywhere else would be
        // dropped mid-call when the server stops.
        connections.spawn(async move {
            let tls =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, error = %err, "HTTPS gateway: TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "HTTPS gateway: TLS handshake timed out");
                        return;
                    }
                };
            let service = service_fn(move |request| {
                let kms = kms.clone();
                async move {
                    let answer =
                        tokio::time::timeout(REQUEST_TIMEOUT, gateway::handle(kms, peer, request))
                            .await
                            .unwrap_or_else(|_| gateway::timed_out());
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(64 * 1024);
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            tokio::pin!(connection);
            let stopping = async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            };
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%peer, error = %err, "HTTPS gateway: connection ended");
                    }
                }
                () = stopping => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    while connections.join_next().await.is_some() {}
}
