//! A connection's stream and what it tells the responses on it: beneath the listener, the
//! handlers and the bodies, which all three use.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The flushes of one connection that reached its stream. hyper flushes the stream only
/// once its own write buffer is empty, so a count that moved says every byte hyper was
/// handed before is on its way. A response cut on purpose (`truncate`, `wrong-size`) waits
/// for that before it breaks the connection: hyper drops what it still buffers when a body
/// fails.
#[derive(Debug, Default)]
pub(crate) struct Flushes {
    count: AtomicU64,
    waiter: Mutex<Option<Waker>>,
}

impl Flushes {
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Ready once a flush has completed since the count was `seen`.
    pub fn poll_since(&self, seen: u64, cx: &mut Context<'_>) -> Poll<()> {
        if self.count() > seen {
            return Poll::Ready(());
        }
        *self.waiter.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        if self.count() > seen {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn flushed(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        let waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = waiter {
            waker.wake();
        }
    }
}

/// A connection's byte stream: TCP, or TLS over it.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// How long a connection may keep the server waiting on it; `None`: for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// Writes that make no progress: a client that stopped reading.
    pub write: Option<Duration>,
    /// A request's headers, from the connection's start or their first byte.
    pub header: Option<Duration>,
    /// Between a response and the first byte of the next request.
    pub idle: Option<Duration>,
}

/// What the responses on a connection tell its stream, and what a stream pool under
/// pressure tells it: one per connection, shared by its stream, its requests and the
/// stream slot its response holds.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Requests whose response is not done: a read then has no deadline.
    in_flight: AtomicU64,
    /// Requests started: a change says that the head being timed has arrived.
    started: AtomicU64,
    /// When the last response was done.
    idle_since: Mutex<Instant>,
    /// Milliseconds since `epoch` at which writes began to make no progress; 0: they do.
    stalled_since: AtomicU64,
    epoch: Instant,
    /// Set by a pool that needs the slot of a stalled stream: its next write fails.
    cut: AtomicBool,
    /// The connection's task, to wake when cut.
    waker: Mutex<Option<Waker>>,
}

impl Default for Activity {
    fn default() -> Self {
        let now = Instant::now();
        Self {
            in_flight: AtomicU64::new(0),
            started: AtomicU64::new(0),
            idle_since: Mutex::new(now),
            stalled_since: AtomicU64::new(0),
            epoch: now,
            cut: AtomicBool::new(false),
            waker: Mutex::new(None),
        }
    }
}

impl Activity {
    /// A request's head has arrived; `Busy` marks its response's end.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.started.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }

    /// How long its writes have made no progress, if they are stuck.
    pub fn stalled_for(&self) -> Option<Duration> {
        match self.stalled_since.load(Ordering::Acquire) {
            0 => None,
            ms => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// Breaks the connection off at its next write: a pool takes its stream's slot back.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    fn idle_since(&self) -> Instant {
        *self.idle_since.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request under way on a connection, until its response is dropped (sent, or given up).
#[derive(Debug)]
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that marks its request done when hyper drops it.
#[derive(Debug)]
pub(crate) struct Tracked<B> {
    pub inner: B,
    /// Dropped with the body: the request is done.
    pub _busy: Busy,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's stream: counts its flushes, and fails a read or a write that has kept
/// the server waiting past its [`Timeouts`]. Here rather than per response, so that every
/// answer (a blob, a manifest, an error) and every wait for a request is covered.
pub(crate) struct Watched<S> {
    pub io: S,
    pub flushes: Arc<Flushes>,
    pub activity: Arc<Activity>,
    pub timeouts: Timeouts,
    /// The head being waited for: when its first byte came (or the connection opened),
    /// and the request count then.
    head: Option<(Instant, u64)>,
    read_timer: Option<(Instant, Pin<Box<Sleep>>)>,
    write_timer: Option<Pin<Box<Sleep>>>,
    /// Whether the last write, flush or shutdown was left pending.
    stalled: bool,
}

impl<S> Watched<S> {
    pub fn new(io: S, flushes: Arc<Flushes>, activity: Arc<Activity>, timeouts: Timeouts) -> Self {
        Self {
            io,
            flushes,
            activity,
            timeouts,
            // A new connection owes its first request's headers at once.
            head: Some((Instant::now(), 0)),
            read_timer: None,
            write_timer: None,
            stalled: false,
        }
    }

    /// A read that is waiting: an error once its deadline has passed.
    fn read_waits(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let started = self.activity.started.load(Ordering::Acquire);
        let (deadline, what) = match self.head {
            Some((first, count)) if count == started => match self.timeouts.header {
                Some(limit) => (first + limit, "request headers"),
                None => return Poll::Pending,
            },
            _ => match self.timeouts.idle {
                Some(limit) => (self.activity.idle_since() + limit, "a next request"),
                None => return Poll::Pending,
            },
        };
        let timer = match &mut self.read_timer {
            Some((at, timer)) if *at == deadline => timer,
            slot => {
                let timer = Box::pin(tokio::time::sleep_until(deadline.into()));
                &mut slot.insert((deadline, timer)).1
            }
        };
        ready!(timer.as_mut().poll(cx));
        self.read_timer = None;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no {what} in time: the connection is closed"),
        )))
    }

    /// What a write, flush or shutdown returned, failed once it has made no progress for
    /// the write timeout, or at once if a pool cut the connection.
    fn write_polled<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.activity.cut.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "its client took nothing while other requests waited for a stream",
            )));
        }
        if polled.is_ready() {
            self.stalled = false;
            self.write_timer = None;
            self.activity.stalled_since.store(0, Ordering::Release);
            return polled;
        }
        if !self.stalled {
            self.stalled = true;
            let ms = u64::try_from(self.activity.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.activity
                .stalled_since
                .store(ms.max(1), Ordering::Release);
            self.write_timer = self
                .timeouts
                .write
                .map(|limit| Box::pin(tokio::time::sleep(limit)));
        }
        {
            let mut waker = self
                .activity
                .waker
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        if let Some(timer) = &mut self.write_timer {
            ready!(timer.as_mut().poll(cx));
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "its client took nothing for the write timeout",
            )));
        }
        Poll::Pending
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
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.activity.busy() {
            // A response under way: the write timeout watches the client.
            this.read_timer = None;
            return polled;
        }
        match polled {
            Poll::Pending => this.read_waits(cx),
            Poll::Ready(Ok(())) => {
                let started = this.activity.started.load(Ordering::Acquire);
                let waiting = this.head.is_some_and(|(_, count)| count == started);
                if buf.filled().len() > before && !waiting {
                    this.head = Some((Instant::now(), started));
                }
                this.read_timer = None;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.write_polled(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.write_polled(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = polled {
            this.flushes.flushed();
        }
        this.write_polled(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.write_polled(cx, polled)
    }
}
