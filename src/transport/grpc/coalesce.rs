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
//! leave in one write. A flush that follows such a payload is put off once: h2 flushes
//! it only to make room, buffers the frames after it (the trailers) and flushes again
//! before its poll ends, and that second flush writes everything. So that nothing can
//! wait on a flush that never comes, a put-off flush also wakes the connection's task,
//! whose next poll flushes.
//!
//! Reads pass straight through. Connection info (the peer's address, its TLS
//! certificates) is the inner stream's, unchanged.

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
    /// Writes in the buffer since the last flush. h2 writes its own buffer in one
    /// write; a second one before a flush is a payload it held aside.
    writes_held: u8,
    /// A flush was put off; the next one writes.
    flush_put_off: bool,
}

impl<IO: AsyncWrite> CoalescedWrites<IO> {
    /// Wraps an accepted connection.
    pub fn new(io: IO) -> Self {
        Self {
            inner: BufWriter::with_capacity(WRITE_BUFFER, io),
            writes_held: 0,
            flush_put_off: false,
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
        let written = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.writes_held = if self.inner.buffer().is_empty() {
            0 // a write larger than the buffer went straight through
        } else {
            self.writes_held.saturating_add(1)
        };
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.writes_held >= 2 && !self.flush_put_off {
            // h2 makes room; the frames after the payload follow before its poll ends.
            self.flush_put_off = true;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        let flushed = std::task::ready!(Pin::new(&mut self.inner).poll_flush(cx));
        self.writes_held = 0;
        self.flush_put_off = false;
        Poll::Ready(flushed)
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Wake, Waker};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Each write the socket stand-in was given, in order.
    type Writes = Arc<Mutex<Vec<Vec<u8>>>>;

    /// A socket stand-in that records each write it is given and can be read from.
    #[derive(Default)]
    struct Recorder {
        writes: Writes,
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

    /// Counts the wake-ups of the task it stands for.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A waker and the count of its wake-ups.
    fn counting_waker() -> (Arc<Wakes>, Waker) {
        let wakes = Arc::new(Wakes::default());
        (Arc::clone(&wakes), Waker::from(wakes))
    }

    fn recorded() -> (CoalescedWrites<Recorder>, Writes) {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let conn = CoalescedWrites::new(Recorder {
            writes: Arc::clone(&writes),
            ..Recorder::default()
        });
        (conn, writes)
    }

    fn write(conn: &mut CoalescedWrites<Recorder>, cx: &mut Context<'_>, bytes: &[u8]) {
        let written = Pin::new(conn).poll_write(cx, bytes);
        assert!(matches!(written, Poll::Ready(Ok(n)) if n == bytes.len()));
    }

    fn flush(conn: &mut CoalescedWrites<Recorder>, cx: &mut Context<'_>) {
        assert!(matches!(Pin::new(conn).poll_flush(cx), Poll::Ready(Ok(()))));
    }

    #[tokio::test]
    async fn an_answer_in_one_write_leaves_at_its_flush() {
        let (mut conn, writes) = recorded();
        assert!(
            !conn.is_write_vectored(),
            "h2 must copy payloads under 1 KiB"
        );
        conn.write_all(b"headers data trailers").await.unwrap();
        assert!(
            writes.lock().unwrap().is_empty(),
            "nothing leaves before the flush"
        );
        conn.flush().await.unwrap();
        assert_eq!(*writes.lock().unwrap(), [b"headers data trailers".to_vec()]);
    }

    /// h2's order for an answer with a payload it held aside: its buffer, the payload,
    /// a flush to make room, the trailers, the flush that ends its poll.
    #[test]
    fn a_held_aside_payload_leaves_with_the_trailers_in_one_write() {
        let (wakes, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let (mut conn, writes) = recorded();
        let payload = vec![7u8; 1500];
        write(&mut conn, &mut cx, b"headers+data head");
        write(&mut conn, &mut cx, &payload);
        flush(&mut conn, &mut cx);
        assert!(
            writes.lock().unwrap().is_empty(),
            "the first flush is put off"
        );
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "and wakes the task");
        write(&mut conn, &mut cx, b"trailers");
        flush(&mut conn, &mut cx);
        let expected = [b"headers+data head".as_slice(), &payload, b"trailers"].concat();
        assert_eq!(*writes.lock().unwrap(), [expected]);
    }

    /// Should nothing more be written, the flush after the put-off one (the woken
    /// task's) writes what is held.
    #[test]
    fn a_put_off_flush_is_done_by_the_next_one() {
        let (wakes, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let (mut conn, writes) = recorded();
        write(&mut conn, &mut cx, b"head");
        write(&mut conn, &mut cx, &[1; 1200]);
        flush(&mut conn, &mut cx);
        flush(&mut conn, &mut cx);
        assert_eq!(writes.lock().unwrap().len(), 1);
        // Later answers start afresh: one write, flushed at once.
        write(&mut conn, &mut cx, b"next answer");
        flush(&mut conn, &mut cx);
        assert_eq!(writes.lock().unwrap().len(), 2);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_write_larger_than_the_buffer_goes_straight_through_in_order() {
        let (mut conn, writes) = recorded();
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
