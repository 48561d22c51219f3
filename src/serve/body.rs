//! Response bodies: small ones from memory, blobs from a generator thread through a
//! bounded channel (a few chunks per stream, whatever the blob's size), and the access-log
//! line each response writes once it has been sent or abandoned.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

use super::conn::Flushes;
use super::fault::Damage;
use super::metrics::{GaugeGuard, Metrics, Route};
use crate::digest::HashingWriter;
use crate::progress::LogLevel;
/// Bytes per chunk handed from a generator thread to its response. Each chunk costs two
/// thread wake-ups: 1 MiB chunks used about a fifth less CPU per GiB sent than 256 KiB
/// ones (0.50 s against 0.64 s, 2 cores).
const CHUNK: usize = 1 << 20;
/// Chunks in flight per stream, besides the one being filled: 2 MiB per client.
const DEPTH: usize = 2;

/// A response body.
#[derive(Debug)]
pub(crate) enum Body {
    Empty,
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<io::Result<Bytes>>),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }

    /// Bytes `start..` of a blob, as `write` makes them on a blocking thread, with `damage`
    /// done on the way. `write` stops at its first failed write: when the client is gone.
    pub fn generated(
        start: u64,
        damage: Damage,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
    ) -> Self {
        Self::spawn(start, 0, damage, None, write)
    }

    /// Bytes `start..` of a blob that `write` makes whole, from its first byte, on a
    /// blocking thread. Every byte is hashed; those before `start` are then dropped, and
    /// the last one is sent only once the blob's digest is the one it is served under.
    /// Otherwise the stream fails short of its length, so that no client or cache keeps
    /// it, and one `error:` line names the digest and the spec.
    pub fn checked(
        start: u64,
        damage: Damage,
        check: Check,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
    ) -> Self {
        Self::spawn(
            0,
            start,
            damage,
            Some((check, HashingWriter::new(io::sink()))),
            write,
        )
    }

    fn spawn(
        at: u64,
        skip: u64,
        damage: Damage,
        check: Option<(Check, HashingWriter<io::Sink>)>,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel(DEPTH);
        tokio::task::spawn_blocking(move || {
            let mut sender = Sender {
                tx,
                buf: Vec::with_capacity(CHUNK),
                at,
                skip,
                damage,
                check,
                started: Instant::now(),
                sent: 0,
            };
            let result = write(&mut sender).and_then(|()| sender.finish());
            if let Err(e) = result {
                // The client may be gone: then nobody hears it.
                let _ = sender.tx.blocking_send(Err(e));
            }
        });
        Self::Stream(rx)
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(rx) => rx
                .poll_recv(cx)
                .map(|item| item.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty | Self::Full(None) => true,
            Self::Full(Some(_)) | Self::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty | Self::Full(None) => SizeHint::with_exact(0),
            Self::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Self::Stream(_) => SizeHint::default(),
        }
    }
}

/// What a whole blob's bytes must hash to.
#[derive(Debug)]
pub(crate) struct Check {
    /// The digest it is served under, `sha256:…`.
    pub digest: String,
    /// Its size: the check is made when the last byte has been written.
    pub size: u64,
    /// The canonical spec of the image it belongs to, for the error line.
    pub spec: String,
}

/// Collects a generator's bytes into chunks and hands them to the response.
struct Sender {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    /// Blob offset of the next byte written.
    at: u64,
    /// Bytes at the start that are hashed but not sent: the part before a Range.
    skip: u64,
    damage: Damage,
    check: Option<(Check, HashingWriter<io::Sink>)>,
    started: Instant,
    sent: u64,
}

impl Sender {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let len = chunk.len() as u64;
        if let Some(rate) = self.damage.rate {
            // Paced by the total so far: no drift from rounding each wait.
            let due = Duration::from_secs_f64((self.sent + len) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        self.sent += len;
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client is gone"))
    }

    /// Chunks small enough that a slow stream is paced smoothly.
    fn chunk_len(&self) -> usize {
        match self.damage.rate {
            Some(rate) => usize::try_from(rate / 8)
                .unwrap_or(CHUNK)
                .clamp(1024, CHUNK),
            None => CHUNK,
        }
    }

    /// Whether the last bytes of a checked stream are in: they wait for the check.
    fn holds_last(&self) -> bool {
        self.check
            .as_ref()
            .is_some_and(|(check, _)| self.at >= check.size)
    }

    /// Sends what is left once the generator is done, a checked stream's last bytes only
    /// if its bytes hash to its digest.
    fn finish(&mut self) -> io::Result<()> {
        self.verify()?;
        self.send()
    }

    /// At the end of a checked stream: whether its bytes hash to its digest.
    fn verify(&mut self) -> io::Result<()> {
        let Some((check, hashing)) = self.check.take() else {
            return Ok(());
        };
        let (made, _) = hashing.complete();
        if made.size == check.size && made.digest == check.digest {
            return Ok(());
        }
        crate::progress::log(
            LogLevel::Error,
            &format!(
                "blob {} of `{}` was generated as {} bytes hashing to {}; its stream was broken off before the end",
                check.digest, check.spec, made.size, made.digest
            ),
        );
        Err(io::Error::other(format!(
            "blob {} generated with another digest",
            check.digest
        )))
    }
}

impl Write for Sender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.skip > 0 {
            let n = usize::try_from(self.skip).map_or(data.len(), |s| s.min(data.len()));
            if let Some((_, hashing)) = &mut self.check {
                hashing.write_all(&data[..n])?;
            }
            self.skip -= n as u64;
            self.at += n as u64;
            return Ok(n);
        }
        let room = self.chunk_len().saturating_sub(self.buf.len()).max(1);
        let mut n = room.min(data.len());
        if let Some((_, hashing)) = &mut self.check {
            // The generated bytes, before any damage a fault does on purpose.
            hashing.write_all(&data[..n])?;
        }
        let end = self.at + n as u64;
        if let Some(cut) = self.damage.truncate_at.filter(|cut| *cut < end) {
            n = usize::try_from(cut.saturating_sub(self.at)).unwrap_or(0);
            self.buf.extend_from_slice(&data[..n]);
            self.send()?;
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "truncated on purpose (faults/truncate)",
            ));
        }
        let from = self.buf.len();
        self.buf.extend_from_slice(&data[..n]);
        if let Some(flip) = self
            .damage
            .corrupt_at
            .filter(|at| (self.at..end).contains(at))
        {
            let index = from + usize::try_from(flip - self.at).unwrap_or(0);
            self.buf[index] ^= 0xff;
        }
        self.at = end;
        if self.buf.len() >= self.chunk_len() && !self.holds_last() {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.holds_last() {
            return Ok(());
        }
        self.send()
    }
}

/// A body that writes its access-log line when it is done: sent whole, broken off, or
/// dropped by a client that went away.
#[derive(Debug)]
pub(crate) struct Logged {
    pub inner: Body,
    pub line: Option<String>,
    pub started: Instant,
    pub sent: u64,
    pub failed: bool,
    /// The `Content-Length` sent.
    pub declared: Option<u64>,
    /// The connection's flushes: a body that breaks off is held back until what came
    /// before it is out of hyper's buffer.
    pub flushes: Option<Arc<Flushes>>,
    /// The last item, held back, and the flush count when it came.
    pub held: Option<(Option<io::Result<Frame<Bytes>>>, u64)>,
    /// What `/metrics` is told when the body is done; taken then.
    pub recording: Option<Recording>,
}

/// A response's part in the metrics, once its body is done.
#[derive(Debug)]
pub(crate) struct Recording {
    pub metrics: Arc<Metrics>,
    pub route: Route,
    /// A blob body's place in the active-streams gauge, given up at its end.
    pub stream: Option<GaugeGuard>,
}

impl hyper::body::Body for Logged {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some((_, seen)) = &this.held {
            let flushes = this.flushes.as_ref().expect("held only with flushes");
            ready!(flushes.poll_since(*seen, cx));
            let (last, _) = this.held.take().expect("held");
            this.failed |= matches!(last, Some(Err(_)));
            return Poll::Ready(last);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // A failure, or an end short of the declared length, breaks the connection and
        // hyper drops what it buffers: wait until the bytes before the break are out.
        let breaks = match &polled {
            Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(None) => this.declared.is_some_and(|d| this.sent < d),
            _ => false,
        };
        let polled = match (breaks, &this.flushes, polled) {
            (true, Some(flushes), Poll::Ready(last)) => {
                // No flush can have completed since this count: it is always a wait.
                let seen = flushes.count();
                if flushes.poll_since(seen, cx).is_pending() {
                    this.held = Some((last, seen));
                    return Poll::Pending;
                }
                Poll::Ready(last)
            }
            (_, _, polled) => polled,
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Poll::Ready(Some(Err(_))) => this.failed = true,
            _ => {}
        }
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            // The stream is over, though hyper may hold the body a while longer.
            if let Some(recording) = &mut this.recording {
                recording.stream = None;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // Before the log line: whoever has read the line finds the request in `/metrics`.
        if let Some(recording) = self.recording.take() {
            let elapsed = self.started.elapsed();
            recording.metrics.done(recording.route, self.sent, elapsed);
        }
        if let Some(line) = self.line.take() {
            let broken = if self.failed { " (broken off)" } else { "" };
            let line = format!(
                "{line} {} {:.3}s{broken}",
                self.sent,
                self.started.elapsed().as_secs_f64()
            );
            crate::progress::log(LogLevel::Note, &line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Blob;

    /// Everything a body yields: its bytes, and whether it ended in an error.
    async fn drain(body: Body) -> (Vec<u8>, bool) {
        let Body::Stream(mut rx) = body else {
            panic!("a stream")
        };
        let mut bytes = Vec::new();
        while let Some(item) = rx.recv().await {
            match item {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(_) => return (bytes, true),
            }
        }
        (bytes, false)
    }

    fn blob() -> Vec<u8> {
        // Three chunks and a bit: the check holds the last one back.
        (0..3 * CHUNK + 17).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn checked(digest: &str, start: u64) -> Body {
        let bytes = blob();
        let check = Check {
            digest: digest.into(),
            size: bytes.len() as u64,
            spec: "1MB".into(),
        };
        Body::checked(start, Damage::default(), check, move |out| {
            // Odd writes, and flushes that are not the end, as an encoder's are.
            for piece in bytes.chunks(65_537) {
                out.write_all(piece)?;
                out.flush()?;
            }
            Ok(())
        })
    }

    #[tokio::test]
    async fn a_blob_that_hashes_to_its_digest_is_sent_whole_or_from_its_range() {
        let bytes = blob();
        let digest = Blob::of(&bytes).digest;
        assert_eq!(drain(checked(&digest, 0)).await, (bytes.clone(), false));
        let start = CHUNK as u64 + 5;
        assert_eq!(
            drain(checked(&digest, start)).await,
            (bytes[start as usize..].to_vec(), false)
        );
    }

    #[tokio::test]
    async fn a_blob_that_does_not_is_broken_off_before_its_last_byte() {
        let bytes = blob();
        let other = Blob::of(b"other").digest;
        for start in [0, CHUNK as u64 + 5, bytes.len() as u64 - 1] {
            let (sent, failed) = drain(checked(&other, start)).await;
            assert!(failed, "from {start}");
            assert!(
                sent.len() < bytes.len() - start as usize,
                "from {start}: {} bytes sent",
                sent.len()
            );
            assert!(sent == bytes[start as usize..start as usize + sent.len()]);
        }
    }
}
