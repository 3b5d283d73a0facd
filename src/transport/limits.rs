//! The bounds both transports put on what a client controls: a call over a bound gets
//! an error (or its stream a reset) and the server keeps serving everyone else.

use std::time::Duration;

use crate::error::KmsError;
use kmsd_api::ops::Operation;

/// Largest request message accepted, decoded. The biggest legitimate request (a
/// ciphertext of a PEM RSA-4096 key plus 8 KiB of AAD) is far below it.
pub const MAX_DECODING_MESSAGE_SIZE: usize = 64 * 1024;

/// The error of a request over [`MAX_DECODING_MESSAGE_SIZE`]: the caller's
/// (`InvalidParameter`), naming the limit; for Encrypt and Sign/Verify, where larger
/// data goes.
pub fn request_too_large(operation: Option<Operation>) -> KmsError {
    let mut message =
        format!("The request is larger than the limit of {MAX_DECODING_MESSAGE_SIZE} bytes.");
    match operation {
        Some(Operation::Encrypt | Operation::AdvanceEncrypt) => message.push_str(
            " Encrypt is for small data (keys, secrets): for larger data call \
             GenerateDataKey and encrypt locally with the data key (envelope encryption).",
        ),
        Some(Operation::Sign | Operation::Verify) => message.push_str(
            " For a larger document send its SHA-256 digest (MessageType DIGEST; RSA and \
             ECDSA) or its 64-byte ML-DSA mu (MessageType EXTERNAL_MU; ML_DSA).",
        ),
        _ => {}
    }
    KmsError::InvalidParameter(message)
}

/// Longest a call may run before it is answered `CANCELLED`: far above the slowest
/// legitimate call (an RSA-4096 key pair generated on a pool miss, a few seconds on a
/// slow core), short enough that stuck calls do not pile up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP/2 streams (calls) one connection may have open at once. Key pair calls are
/// throttled per instance anyway; this bounds the memory one client can pin.
pub const MAX_CONCURRENT_STREAMS_PER_CONNECTION: u32 = 100;

/// Streams a client may reset before the server has accepted them: the HTTP/2 "rapid
/// reset" flood (CVE-2023-44487). hyper's default, set here so it cannot drift.
pub const HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// Streams the server may reset because of client protocol errors before it closes the
/// connection: the "MadeYouReset" flood (CVE-2025-8671).
pub const HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;

/// Largest header block accepted. Our metadata is a bearer token and a few short
/// headers; 16 KiB leaves room and stops header-bloat memory attacks.
pub const HTTP2_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// How often an idle connection is pinged, so dead peers (and the streams they hold)
/// are noticed.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);

/// How long a keepalive ping may go unanswered before the connection is closed.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// TCP keepalive: the kernel notices half-open connections behind silent NATs.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Longest a TLS handshake may take: a client that opens a socket and stalls costs a
/// file descriptor only this long.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a client may take to send an HTTPS gateway request head: a slow client
/// holds a socket only this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
