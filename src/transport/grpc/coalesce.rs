//! One write to the socket per answer: the connection under tonic's HTTP/2 buffers
//! what h2 writes until h2 flushes.
//!
//! h2 copies a DATA frame's payload into its own write buffer only below a threshold
//! (256 bytes on a connection that takes vectored writes, 1024 on one that does not);
//! a larger payload is held aside and must be written out before h2 buffers the next
//! frame. A gRPC answer is HEADERS, DATA, then trailers, so every answer over 256 bytes
//! (a data key pair, an Encrypt, a DescribeKey) cost two `writev` calls, each with
//! its trip through the loopback or network stack: about a tenth of such a call's
//! server time at saturation (`kmsd-bench` section 4g, docs/performance.md).
//!
//! [`CoalescedWrites`] tells h2 that it takes no vectored writes, so payloads under
//! 1024 bytes go into h2's own buffer with the trailers, and keeps what h2 writes in a
//! [`BufWriter`] until h2 flushes, so a larger payload and the bytes before it still
//! leave in one write. Reads pass straight through. Connection info (the peer's
//! address, its TLS certificates) is the inner stream's, unchanged.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

/// Bytes kept before a write reaches the socket: an answer's frames fit; a larger
/// write (a backup's stream chunk) goes straight through once what is held is out.
const WRITE_BUFFER: usize = 8 * 1024;

/// A connection whose writes leave when HTTP/2 flushes; see the module docs.
#[derive(Debug)]
pub struct CoalescedWrites<IO> {
    inner: BufWriter<IO>,
}

impl<IO: AsyncWrite> CoalescedWrites<IO> {
    /// Wraps an accepted connection.
    pub fn new(io: IO) -> Self {
        Self {
            inner: BufWriter::with_capacity(WRITE_BUFFER, io),
        }
    }
}

impl<IO: Connected + AsyncWrite> Connected for CoalescedWrites<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.get_ref().connect_info()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for CoalescedWrites<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// No: h2 then copies payloads under 1024 bytes into its buffer (module docs).
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The connections of `incoming`, each wrapped in [`CoalescedWrites`].
pub fn coalesced<IO: AsyncWrite, E>(
    incoming: impl Stream<Item = Result<IO, E>>,
) -> impl Stream<Item = Result<CoalescedWrites<IO>, E>> {
    incoming.map(|accepted| accepted.map(CoalescedWrites::new))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A socket stand-in that records each write it is given and can be read from.
    #[derive(Default)]
    struct Recorder {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        to_read: &'static [u8],
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.lock().unwrap().push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = buf.remaining().min(self.to_read.len());
            buf.put_slice(&self.to_read[..n]);
            self.to_read = &self.to_read[n..];
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_leave_together_at_the_flush() {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let mut conn = CoalescedWrites::new(Recorder {
            writes: Arc::clone(&writes),
            ..Recorder::default()
        });
        assert!(!conn.is_write_vectored(), "h2 must copy small payloads");
        let payload = vec![7u8; 1500];
        conn.write_all(b"headers").await.unwrap();
        conn.write_all(&payload).await.unwrap();
        assert!(
            writes.lock().unwrap().is_empty(),
            "nothing leaves before the flush"
        );
        conn.flush().await.unwrap();
        conn.write_all(b"trailers").await.unwrap();
        conn.flush().await.unwrap();
        let writes = writes.lock().unwrap();
        assert_eq!(writes.len(), 2, "one write per flush");
        assert_eq!(writes[0][..7], *b"headers");
        assert_eq!(writes[0][7..], payload[..]);
        assert_eq!(writes[1], b"trailers");
    }

    #[tokio::test]
    async fn a_write_larger_than_the_buffer_goes_straight_through_in_order() {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let mut conn = CoalescedWrites::new(Recorder {
            writes: Arc::clone(&writes),
            ..Recorder::default()
        });
        let chunk = vec![1u8; WRITE_BUFFER + 1];
        conn.write_all(b"head").await.unwrap();
        conn.write_all(&chunk).await.unwrap();
        conn.flush().await.unwrap();
        let writes = writes.lock().unwrap();
        assert_eq!(writes.concat(), [b"head".as_slice(), &chunk].concat());
        assert_eq!(writes[0], b"head", "what was held leaves first");
    }

    #[tokio::test]
    async fn reads_pass_through() {
        let mut conn = CoalescedWrites::new(Recorder {
            to_read: b"request bytes",
            ..Recorder::default()
        });
        let mut read = String::new();
        conn.read_to_string(&mut read).await.unwrap();
        assert_eq!(read, "request bytes");
    }
}
