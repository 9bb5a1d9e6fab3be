//! The one deadline of an HTTP connection before it upgrades: for its request headers, for
//! handling a request, or for the idle time between keep-alive requests, plus a shutdown cap.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Duration, Instant, Sleep};

/// How long each phase of a connection may last.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the connection's start, or the first byte of a later request, to its last header.
    pub header: Duration,
    /// From the headers to the handler's answer (the body is read in between).
    pub request: Duration,
    /// From an answer to the first byte of the next request.
    pub keepalive: Duration,
}

/// What a connection was doing when its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Head,
    Request,
    Idle,
    /// The server is shutting down and the grace period is over.
    Shutdown,
}

const HEAD: u8 = 0;
const REQUEST: u8 = 1;
const IDLE: u8 = 2;

/// Updated from inside the connection's own poll (reads, the service), read by its task.
/// Times are milliseconds since `start`. An upgraded socket keeps it (48 bytes) for its life.
#[derive(Debug)]
pub struct Deadline {
    start: Instant,
    timeouts: Arc<Timeouts>,
    phase: AtomicU8,
    due: AtomicU64,
    cap: AtomicU64,
}

impl Deadline {
    /// A new connection must send its first request's headers within `timeouts.header`.
    pub fn new(timeouts: Arc<Timeouts>) -> Self {
        Self {
            start: Instant::now(),
            phase: AtomicU8::new(HEAD),
            due: AtomicU64::new(millis(timeouts.header)),
            timeouts,
            cap: AtomicU64::new(u64::MAX),
        }
    }

    /// Bytes arrived. On an idle connection they start the next request's headers, whose
    /// deadline later bytes do not move (trickling a header does not buy time).
    pub fn on_read(&self) {
        if self.phase.load(Relaxed) == IDLE {
            self.enter(HEAD, self.timeouts.header);
        }
    }

    /// A request's headers are complete and the router has it.
    pub fn on_request(&self) {
        self.enter(REQUEST, self.timeouts.request);
    }

    /// The router answered; the connection is idle until the next request.
    pub fn on_response(&self) {
        self.enter(IDLE, self.timeouts.keepalive);
    }

    /// Shutdown: whatever the phase, the connection ends within `grace`.
    pub fn cap(&self, grace: Duration) {
        self.cap.store(self.elapsed() + millis(grace), Relaxed);
    }

    /// When the connection must have made progress, and the phase it is in.
    pub fn current(&self) -> (Phase, Instant) {
        let due = self.due.load(Relaxed);
        let cap = self.cap.load(Relaxed);
        let phase = match self.phase.load(Relaxed) {
            _ if cap < due => Phase::Shutdown,
            HEAD => Phase::Head,
            REQUEST => Phase::Request,
            _ => Phase::Idle,
        };
        (phase, self.start + Duration::from_millis(due.min(cap)))
    }

    /// Polls `connection`; when it is pending, re-arms `timer` at the deadline the
    /// connection's progress set and answers the phase once that deadline passes.
    pub fn poll<F: Future>(
        &self,
        connection: Pin<&mut F>,
        mut timer: Pin<&mut Sleep>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<F::Output, Phase>> {
        if let Poll::Ready(output) = connection.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let (phase, due) = self.current();
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        timer.poll(cx).map(|()| Err(phase))
    }

    fn enter(&self, phase: u8, within: Duration) {
        self.due.store(self.elapsed() + millis(within), Relaxed);
        self.phase.store(phase, Relaxed);
    }

    fn elapsed(&self) -> u64 {
        millis(self.start.elapsed())
    }
}

/// At most a year, so that `start` plus any deadline stays a valid instant.
fn millis(duration: Duration) -> u64 {
    const YEAR: u128 = 365 * 86_400 * 1_000;
    duration.as_millis().min(YEAR) as u64
}

/// A socket that tells its [`Deadline`] when bytes arrive.
pub struct Watched<S> {
    inner: S,
    /// Dropped at the first read after the upgrade, when nothing else holds it any more.
    deadline: Option<Arc<Deadline>>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, deadline: Arc<Deadline>) -> Self {
        Self {
            inner,
            deadline: Some(deadline),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && let Some(deadline) = &this.deadline
        {
            // Only this socket holds it once the HTTP connection has upgraded and ended:
            // a WebSocket needs no deadline from here, nor its memory.
            if Arc::strong_count(deadline) == 1 {
                this.deadline = None;
            } else {
                deadline.on_read();
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const TIMEOUTS: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        request: Duration::from_secs(35),
        keepalive: Duration::from_secs(60),
    };

    fn due_in(deadline: &Deadline) -> (Phase, Duration) {
        let (phase, at) = deadline.current();
        (phase, at - Instant::now())
    }

    #[test]
    fn stays_small_for_the_life_of_a_websocket() {
        assert!(std::mem::size_of::<Deadline>() <= 48);
    }

    #[tokio::test(start_paused = true)]
    async fn each_phase_sets_its_own_deadline() {
        let deadline = Deadline::new(Arc::new(TIMEOUTS));
        assert_eq!(due_in(&deadline), (Phase::Head, TIMEOUTS.header));
        tokio::time::advance(Duration::from_secs(4)).await;
        deadline.on_read();
        assert_eq!(
            due_in(&deadline),
            (Phase::Head, Duration::from_secs(6)),
            "header bytes do not extend the header deadline"
        );
        deadline.on_request();
        assert_eq!(due_in(&deadline), (Phase::Request, TIMEOUTS.request));
        deadline.on_response();
        assert_eq!(due_in(&deadline), (Phase::Idle, TIMEOUTS.keepalive));
        tokio::time::advance(Duration::from_secs(50)).await;
        deadline.on_read();
        assert_eq!(
            due_in(&deadline),
            (Phase::Head, TIMEOUTS.header),
            "the next request's first byte starts its header deadline"
        );
        deadline.cap(Duration::from_secs(3));
        assert_eq!(due_in(&deadline), (Phase::Shutdown, Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_socket_expires_at_the_header_deadline() {
        let (server, _client) = tokio::io::duplex(64);
        let deadline = Arc::new(Deadline::new(Arc::new(TIMEOUTS)));
        let mut socket = Watched::new(server, deadline.clone());
        let mut read = pin!(async move { socket.read_u8().await });
        let mut timer = pin!(tokio::time::sleep(Duration::ZERO));
        let started = Instant::now();
        let outcome =
            std::future::poll_fn(|cx| deadline.poll(read.as_mut(), timer.as_mut(), cx)).await;
        assert!(matches!(outcome, Err(Phase::Head)));
        assert_eq!(started.elapsed(), TIMEOUTS.header);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_on_an_idle_socket_start_the_header_deadline() {
        let (server, mut client) = tokio::io::duplex(64);
        let deadline = Arc::new(Deadline::new(Arc::new(TIMEOUTS)));
        deadline.on_response();
        let mut socket = Watched::new(server, deadline.clone());
        client.write_all(b"G").await.expect("write");
        let mut byte = [0; 1];
        socket.read_exact(&mut byte).await.expect("read");
        assert_eq!(due_in(&deadline), (Phase::Head, TIMEOUTS.header));
    }

    #[tokio::test]
    async fn an_upgraded_socket_lets_go_of_its_deadline() {
        let (server, mut client) = tokio::io::duplex(64);
        let deadline = Arc::new(Deadline::new(Arc::new(TIMEOUTS)));
        let mut socket = Watched::new(server, deadline.clone());
        let watch = Arc::downgrade(&deadline);
        drop(deadline);
        client.write_all(b"x").await.expect("write");
        socket.read_u8().await.expect("read");
        assert!(watch.upgrade().is_none());
    }
}
