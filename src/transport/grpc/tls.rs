//! gRPC over TLS whose settings a reload can replace: kmsd accepts the connections and
//! does the handshakes itself (tonic's `tls_config` reads its settings once), each
//! with the settings current at that moment ([`TlsSwitch`]). The streams it hands tonic
//! are `tokio_rustls` server streams, whose connect info tonic knows
//! (`TlsConnectInfo<TcpConnectInfo>`, with the peer's certificates): the admission
//! layer reads client certificates from it as before.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;

use crate::transport::limits::TLS_HANDSHAKE_TIMEOUT;
use crate::transport::tls::TlsSwitch;

/// Handshakes done and not yet taken by tonic: a bound, so a stalled server does not
/// pile them up.
const READY_CONNECTIONS: usize = 64;

/// The TLS connections accepted on `listener`, each handshake with `tls`'s current
/// settings, bounded by the handshake timeout, off the accept loop (a slow client
/// never holds up the next). Accepting stops when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<TlsSwitch>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (ready, receiver) = tokio::sync::mpsc::channel(READY_CONNECTIONS);
    // TCP_NODELAY on every accepted connection: see `Serving::run` in server.rs.
    let mut accepted = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                next = accepted.next() => match next {
                    Some(Ok(stream)) => stream,
                    Some(Err(err)) => {
                        tracing::debug!(error = %err, "gRPC: accept failed");
                        continue;
                    }
                    None => return,
                },
                () = ready.closed() => return,
            };
            let acceptor = TlsAcceptor::from(tls.current());
            let ready = ready.clone();
            tokio::spawn(async move {
                let peer = stream.peer_addr().ok();
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = ready.send(Ok(tls)).await;
                    }
                    Ok(Err(err)) => {
                        tracing::debug!(?peer, error = %err, "gRPC: TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(?peer, "gRPC: TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}
