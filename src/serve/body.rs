//! Response bodies: small ones from memory, blobs from a generator thread through a
//! bounded channel (a few chunks per stream, whatever the blob's size), and the access-log
//! line each response writes once it has been sent or abandoned.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::conn::{Activity, Flushes};
use super::fault::Damage;
use super::metrics::{GaugeGuard, Metrics, Route};
use crate::digest::HashingWriter;
use crate::layer;
use crate::progress::LogLevel;
/// Bytes per chunk handed from a generator thread to its response. Each chunk costs two
/// thread wake-ups: 1 MiB chunks used about a fifth less CPU per GiB sent than 256 KiB
/// ones (0.50 s against 0.64 s, 2 cores).
const CHUNK: usize = 1 << 20;
/// Chunks in flight per stream, besides the one being filled and the one being written:
/// with one, a client that stopped reading holds about 3 MiB (4 where the chunks are
/// handed over, [`Chunks`]; 5 with two), at the same throughput over loopback.
const DEPTH: usize = 1;

/// Where a stream's bytes go when they are already buffers of their own (a cached file's
/// reads, a kept blob's chunks): each is handed over as it is, with no copy, unless the
/// stream must change or hold back its bytes (faults, a range's edges, a check's last
/// bytes); then it is written as any bytes are.
pub(crate) trait Handover: Write {
    fn hand(&mut self, bytes: Bytes) -> io::Result<()>;
}

/// The buffers a stream fills and hands over: one the response has sent and let go of is
/// filled again, so that a stream allocates a few, not one a MiB.
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    lent: VecDeque<Bytes>,
}

/// Chunks handed over that a stream keeps to fill again: one more than it has in flight
/// (the channel's and the one hyper writes), so that the oldest is free by the time the
/// next is taken. A stalled reader's stream then holds these and the one being filled.
const LENT: usize = DEPTH + 2;

impl Chunks {
    /// A buffer of `len` bytes, holding whatever it held.
    pub fn take(&mut self, len: usize) -> BytesMut {
        let mut buf = match self.lent.front().is_some_and(Bytes::is_unique) {
            true => self
                .lent
                .pop_front()
                .and_then(|chunk| chunk.try_into_mut().ok()),
            false => None,
        }
        .unwrap_or_default();
        buf.resize(len, 0);
        buf
    }

    /// `buf` as a chunk to hand over, kept to be filled again once it is let go of.
    pub fn seal(&mut self, buf: BytesMut) -> Bytes {
        let chunk = buf.freeze();
        self.lent.push_back(chunk.clone());
        if self.lent.len() > LENT {
            self.lent.pop_front();
        }
        chunk
    }
}

/// A tar made straight into the chunks a stream hands over ([`layer::Out`]): its file
/// data is generated where it is sent from.
pub(crate) struct Handing<'a> {
    out: &'a mut dyn Handover,
    chunks: Chunks,
    buf: BytesMut,
    filled: usize,
}

impl<'a> Handing<'a> {
    pub fn new(out: &'a mut dyn Handover) -> Self {
        let mut chunks = Chunks::default();
        let buf = chunks.take(CHUNK);
        Self {
            out,
            chunks,
            buf,
            filled: 0,
        }
    }

    /// Hands over what is left.
    pub fn finish(mut self) -> io::Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        self.buf.truncate(self.filled);
        let last = std::mem::take(&mut self.buf);
        self.out.hand(self.chunks.seal(last))
    }
}

impl Write for Handing<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = layer::Out::room(self, data.len());
        let n = room.len();
        room.copy_from_slice(&data[..n]);
        layer::Out::commit(self, n)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl layer::Out for Handing<'_> {
    fn room(&mut self, want: usize) -> &mut [u8] {
        let end = (self.filled + want).min(self.buf.len());
        &mut self.buf[self.filled..end]
    }

    fn commit(&mut self, n: usize) -> io::Result<()> {
        self.filled += n;
        if self.filled < self.buf.len() {
            return Ok(());
        }
        let next = self.chunks.take(CHUNK);
        let full = std::mem::replace(&mut self.buf, next);
        self.filled = 0;
        self.out.hand(self.chunks.seal(full))
    }
}

#[cfg(test)]
impl Handover for Vec<u8> {
    fn hand(&mut self, bytes: Bytes) -> io::Result<()> {
        self.write_all(&bytes)
    }
}

/// The generator threads of blob streams: at most `max` at once, a quarter of them at
/// most for paced (`slow-`) streams, so that those, which hold their thread for as long as
/// their rate says, always leave most slots to normal pulls.
#[derive(Debug)]
pub(crate) struct Streams {
    all: Arc<Semaphore>,
    paced: Arc<Semaphore>,
    /// The connections of the streams that hold a slot, to find a stalled one to cut
    /// when a request waits.
    holders: Holders,
    max: usize,
}

type Holders = Arc<Mutex<Vec<Weak<Activity>>>>;

/// How long a stream request waits for a slot before it is refused.
pub(crate) const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// While requests wait, a stream whose writes have made no progress for this long is cut
/// to free its slot: a reader that keeps up is never stuck that long, and one that
/// stopped reading is then cut well before the write timeout.
pub(crate) const STALL_GRACE: Duration = Duration::from_secs(2);
/// How often a waiting request looks for a stalled stream to cut.
const CUT_TICK: Duration = Duration::from_millis(200);

/// A stream's slot, held by its generator thread; freed when that ends.
#[derive(Debug)]
pub(crate) struct Ticket {
    _all: OwnedSemaphorePermit,
    _paced: Option<OwnedSemaphorePermit>,
    holder: Option<(Holders, Weak<Activity>)>,
    encoders: usize,
}

impl Ticket {
    /// The threads its stream may compress on: the cores shared out among the streams
    /// running when it started (all of them for a stream alone). An encoder's buffers grow
    /// with its threads (a 2-thread zstd stream holds about 30 MiB), so many streams at
    /// once each compress on one, and memory stays about `--max-streams` × 5 MiB.
    pub fn encoders(&self) -> usize {
        self.encoders
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((holders, held)) = self.holder.take() {
            let mut holders = holders.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = holders.iter().position(|h| h.ptr_eq(&held)) {
                holders.swap_remove(i);
            }
        }
    }
}

/// No slot came free in [`QUEUE_WAIT`].
#[derive(Debug)]
pub(crate) struct Full {
    /// The cap that was full: `--max-streams`, or the paced streams' share of it.
    pub max: usize,
    pub paced: bool,
}

impl Streams {
    /// `max` is at least 1.
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            all: Arc::new(Semaphore::new(max)),
            paced: Arc::new(Semaphore::new(Self::paced_max(max))),
            holders: Arc::default(),
            max,
        }
    }

    /// The paced streams' share of `max`.
    pub fn paced_max(max: usize) -> usize {
        (max / 4).max(1)
    }

    /// A slot for a stream on the connection of `activity`, within [`QUEUE_WAIT`].
    pub async fn acquire(
        &self,
        activity: Option<&Arc<Activity>>,
        paced: bool,
    ) -> Result<Ticket, Full> {
        let deadline = tokio::time::Instant::now() + QUEUE_WAIT;
        let paced_permit = if paced {
            // A paced stream is never cut for a waiting one: its slowness is on purpose.
            match tokio::time::timeout_at(deadline, Arc::clone(&self.paced).acquire_owned()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    return Err(Full {
                        max: Self::paced_max(self.max),
                        paced: true,
                    })
                }
            }
        } else {
            None
        };
        let acquire = Arc::clone(&self.all).acquire_owned();
        tokio::pin!(acquire);
        let permit = loop {
            let tick = (tokio::time::Instant::now() + CUT_TICK).min(deadline);
            match tokio::time::timeout_at(tick, &mut acquire).await {
                Ok(Ok(permit)) => break permit,
                Ok(Err(_)) => return Err(self.full()),
                Err(_) if tick >= deadline => return Err(self.full()),
                Err(_) => self.cut_one(),
            }
        };
        let holder = activity.filter(|_| !paced).map(|activity| {
            let held = Arc::downgrade(activity);
            let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
            holders.push(held.clone());
            (Arc::clone(&self.holders), held)
        });
        let running = self.max.saturating_sub(self.all.available_permits()).max(1);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Ticket {
            _all: permit,
            _paced: paced_permit,
            holder,
            encoders: (cores / running).max(1),
        })
    }

    fn full(&self) -> Full {
        Full {
            max: self.max,
            paced: false,
        }
    }

    /// Cuts the stream stalled longest, if any has been for [`STALL_GRACE`].
    fn cut_one(&self) {
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        holders.retain(|held| held.strong_count() > 0);
        let stalled = holders
            .iter()
            .enumerate()
            .filter_map(|(i, held)| Some((i, held.upgrade()?.stalled_for()?)))
            .filter(|(_, stalled)| *stalled >= STALL_GRACE)
            .max_by_key(|(_, stalled)| *stalled);
        if let Some((i, _)) = stalled {
            if let Some(activity) = holders.swap_remove(i).upgrade() {
                activity.cut();
            }
        }
    }
}

/// A response body.
#[derive(Debug)]
pub(crate) enum Body {
    Empty,
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<io::Result<Bytes>>, Option<Pace>),
}

/// `faults/slow-RATE` on the response's side: a chunk is held on an async timer until the
/// rate lets it go, so that waiting costs a timer, not a thread.
#[derive(Debug)]
pub(crate) struct Pace {
    rate: u64,
    started: Option<Instant>,
    sent: u64,
    held: Option<(Bytes, Pin<Box<tokio::time::Sleep>>)>,
}

impl Pace {
    fn new(rate: u64) -> Self {
        Self {
            rate,
            started: None,
            sent: 0,
            held: None,
        }
    }

    /// The next chunk once it is due.
    fn poll(
        &mut self,
        rx: &mut mpsc::Receiver<io::Result<Bytes>>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Bytes>>> {
        if self.held.is_none() {
            let chunk = match ready!(rx.poll_recv(cx)) {
                Some(Ok(chunk)) => chunk,
                other => return Poll::Ready(other),
            };
            let started = *self.started.get_or_insert_with(Instant::now);
            // Paced by the total so far: no drift from rounding each wait.
            self.sent += chunk.len() as u64;
            let due = started + Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
            let sleep = Box::pin(tokio::time::sleep_until(due.into()));
            self.held = Some((chunk, sleep));
        }
        let (_, sleep) = self.held.as_mut().expect("held");
        ready!(sleep.as_mut().poll(cx));
        let (chunk, _) = self.held.take().expect("held");
        Poll::Ready(Some(Ok(chunk)))
    }
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }

    /// Bytes `start..` of a blob, as `write` makes them on a blocking thread that holds
    /// `ticket`, with `damage` done on the way: written, or handed over in buffers of their
    /// own ([`Handover`]). `write` stops at its first failed write: when the client is gone.
    pub fn generated(
        ticket: Ticket,
        start: u64,
        damage: Damage,
        write: impl FnOnce(&mut dyn Handover) -> io::Result<()> + Send + 'static,
    ) -> Self {
        Self::spawn(ticket, start, 0..u64::MAX, damage, None, |out| write(out))
    }

    /// Bytes `range` of a blob that `write` can only make from its first byte (a
    /// compressed one): those before the range are made and dropped, and the making
    /// stops at the range's end, or as soon as the client is gone.
    pub fn windowed(
        ticket: Ticket,
        range: std::ops::Range<u64>,
        damage: Damage,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
    ) -> Self {
        Self::spawn(ticket, 0, range, damage, None, |out| write(out))
    }

    /// Bytes `start..` of a blob that `write` makes whole, from its first byte, on a
    /// blocking thread. Every byte is hashed; those before `start` are then dropped, and
    /// the last one is sent only once the blob's digest is the one it is served under.
    /// Otherwise the stream fails short of its length, so that no client or cache keeps
    /// it, and one `error:` line names the digest and the spec.
    pub fn checked(
        ticket: Ticket,
        start: u64,
        damage: Damage,
        check: Check,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
    ) -> Self {
        Self::spawn(
            ticket,
            0,
            start..u64::MAX,
            damage,
            Some(Checker::start(check)),
            |out| write(out),
        )
    }

    fn spawn(
        ticket: Ticket,
        at: u64,
        window: std::ops::Range<u64>,
        damage: Damage,
        check: Option<io::Result<Checker>>,
        write: impl FnOnce(&mut Sender) -> io::Result<()> + Send + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel(DEPTH);
        let pace = damage.rate.map(Pace::new);
        tokio::task::spawn_blocking(move || {
            // The slot is the thread's: freed when the generator ends, however it ends.
            let _ticket = ticket;
            let mut sender = Sender {
                tx,
                buf: Vec::with_capacity(CHUNK),
                at,
                skip: window.start.saturating_sub(at),
                until: window.end,
                damage,
                flipped: None,
                check: None,
            };
            let result = match check {
                Some(Ok(checker)) => {
                    sender.check = Some(checker);
                    Ok(())
                }
                Some(Err(e)) => Err(e),
                None => Ok(()),
            };
            let result = result.and_then(|()| write(&mut sender));
            let result = match result {
                // The window is full: the rest is not wanted.
                Err(e) if sender.at >= sender.until && e.kind() == io::ErrorKind::WriteZero => {
                    Ok(())
                }
                other => other,
            };
            let result = result.and_then(|()| sender.finish());
            if let Err(e) = result {
                // The client may be gone: then nobody hears it.
                let _ = sender.tx.blocking_send(Err(e));
            }
        });
        Self::Stream(rx, pace)
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
            Self::Stream(rx, pace) => match pace {
                Some(pace) => pace.poll(rx, cx),
                None => rx.poll_recv(cx),
            }
            .map(|item| item.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty | Self::Full(None) => true,
            Self::Full(Some(_)) | Self::Stream(..) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty | Self::Full(None) => SizeHint::with_exact(0),
            Self::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Self::Stream(..) => SizeHint::default(),
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
    /// Its pieces' sums, when its digest pass found them: checked as each MiB goes by,
    /// instead of hashing the whole blob again.
    pub pieces: Option<Arc<crate::compress::Pieces>>,
    /// Where the stream's bytes are kept once checked (`--blob-memory`), when they are.
    pub keep: Option<super::kept::Keep>,
}

impl Check {
    /// Logs why the stream is broken off, and the error that breaks it.
    fn failed(&self, what: &str) -> io::Error {
        crate::progress::log(
            LogLevel::Error,
            &format!(
                "blob {} of `{}` was generated {what}; its stream was broken off before the end",
                self.digest, self.spec
            ),
        );
        io::Error::other(format!(
            "blob {} generated with another digest",
            self.digest
        ))
    }
}

/// How a checked stream is checked: against its pieces' sums (XXH3, a few hundredths of a
/// second a GiB), or against its digest (SHA-256, 0.45 s a GiB).
// One per checked stream, on its check's thread: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Verify {
    Pieces(PieceCheck),
    Digest(HashingWriter<io::Sink>),
}

impl Verify {
    fn start(check: &Check) -> Self {
        match &check.pieces {
            Some(pieces) => Self::Pieces(PieceCheck {
                pieces: Arc::clone(pieces),
                step: 0,
                at: 0,
                sum: xxhash_rust::xxh3::Xxh3::new(),
            }),
            None => Self::Digest(HashingWriter::new(io::sink())),
        }
    }

    fn feed(&mut self, check: &Check, chunk: &[u8]) -> io::Result<()> {
        match self {
            Self::Pieces(pieces) => pieces.feed(check, chunk),
            Self::Digest(hashing) => hashing.write_all(chunk),
        }
    }

    fn finish(self, check: &Check) -> io::Result<()> {
        let made = match self {
            Self::Pieces(pieces)
                if pieces.at == check.size && pieces.step == pieces.pieces.sums.len() =>
            {
                return Ok(())
            }
            Self::Pieces(pieces) => {
                return Err(check.failed(&format!("as {} bytes", pieces.at)));
            }
            Self::Digest(hashing) => hashing.complete().0,
        };
        if made.size == check.size && made.digest == check.digest {
            return Ok(());
        }
        Err(check.failed(&format!(
            "as {} bytes hashing to {}",
            made.size, made.digest
        )))
    }
}

/// A stream checked step by step against the sums its digest pass noted.
struct PieceCheck {
    pieces: Arc<crate::compress::Pieces>,
    /// The step being summed, and the blob offset reached.
    step: usize,
    at: u64,
    sum: xxhash_rust::xxh3::Xxh3,
}

impl PieceCheck {
    fn feed(&mut self, check: &Check, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.step >= self.pieces.sums.len() {
                return Err(check.failed(&format!("longer than its {} bytes", check.size)));
            }
            let end = self.pieces.step_end(self.step, check.size);
            let n = usize::try_from(end.saturating_sub(self.at))
                .map_or(bytes.len(), |left| left.min(bytes.len()));
            self.sum.update(&bytes[..n]);
            self.at += n as u64;
            bytes = &bytes[n..];
            if self.at == end {
                if self.sum.digest() != self.pieces.sums[self.step] {
                    return Err(check.failed(&format!(
                        "with other bytes than its digest pass at MiB step {} (offset {})",
                        self.step, self.at
                    )));
                }
                self.sum.reset();
                self.step += 1;
            }
        }
        Ok(())
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the client is gone")
}

/// Collects a generator's bytes into chunks and hands them to the response.
struct Sender {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    /// Blob offset of the next byte written.
    at: u64,
    /// Bytes at the start that are hashed but not sent: the part before a Range.
    skip: u64,
    /// Blob offset of the end of the range: bytes from there on are not wanted.
    until: u64,
    damage: Damage,
    /// Where `faults/corrupt` flipped a byte of `buf`: the check hashes it unflipped.
    flipped: Option<usize>,
    check: Option<Checker>,
}

/// A stream's check, run on a thread of its own over the chunks as they go out, so that it
/// does not hold up the thread that makes them.
struct Checker {
    /// The blob's size: its last bytes wait for the check.
    size: u64,
    chunks: Option<std::sync::mpsc::SyncSender<Bytes>>,
    done: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Checker {
    fn start(mut check: Check) -> io::Result<Self> {
        let size = check.size;
        // A few chunks ahead at most: what waits here is memory.
        let (chunks, queue) = std::sync::mpsc::sync_channel::<Bytes>(4);
        let done = std::thread::Builder::new()
            .name("image-maker-check".into())
            .spawn(move || {
                let mut verify = Verify::start(&check);
                let keep = check.keep.take();
                let mut kept = Vec::new();
                for chunk in queue {
                    verify.feed(&check, &chunk)?;
                    if keep.is_some() {
                        kept.push(chunk);
                    }
                }
                verify.finish(&check)?;
                if let Some(keep) = keep {
                    keep.keep(kept);
                }
                Ok(())
            })?;
        Ok(Self {
            size,
            chunks: Some(chunks),
            done: Some(done),
        })
    }

    /// Hands `chunk` to the check; a check that has failed says why.
    fn feed(&mut self, chunk: Bytes) -> io::Result<()> {
        let fed = self
            .chunks
            .as_ref()
            .is_some_and(|chunks| chunks.send(chunk).is_ok());
        match fed {
            true => Ok(()),
            false => self.finish(),
        }
    }

    /// Waits for the check of everything fed so far, as the whole blob.
    fn finish(&mut self) -> io::Result<()> {
        drop(self.chunks.take());
        match self.done.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the check's thread panicked")),
            None => Err(io::Error::other("the check has ended already")),
        }
    }
}

impl Sender {
    /// `buf` as a chunk to send, given to the check first (as it was generated).
    fn seal(&mut self) -> io::Result<Option<Bytes>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let flipped = self.flipped.take();
        if let Some(checker) = &mut self.check {
            checker.feed(match flipped {
                None => chunk.clone(),
                Some(i) => {
                    let mut generated = chunk.to_vec();
                    generated[i] ^= 0xff;
                    Bytes::from(generated)
                }
            })?;
        }
        Ok(Some(chunk))
    }

    fn send(&mut self) -> io::Result<()> {
        match self.seal()? {
            Some(chunk) => self.tx.blocking_send(Ok(chunk)).map_err(|_| gone()),
            None => Ok(()),
        }
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
            .is_some_and(|checker| self.at >= checker.size)
    }

    /// Sends what is left once the generator is done, a checked stream's last bytes only
    /// if its bytes hash to its digest.
    fn finish(&mut self) -> io::Result<()> {
        let last = self.seal()?;
        self.verify()?;
        match last {
            Some(chunk) => self.tx.blocking_send(Ok(chunk)).map_err(|_| gone()),
            None => Ok(()),
        }
    }

    /// At the end of a checked stream: whether its bytes are its digest's.
    fn verify(&mut self) -> io::Result<()> {
        match self.check.take() {
            Some(mut checker) => checker.finish(),
            None => Ok(()),
        }
    }
}

impl Handover for Sender {
    fn hand(&mut self, mut bytes: Bytes) -> io::Result<()> {
        let whole = |sender: &Self, end: u64| {
            sender.skip == 0
                && end <= sender.until
                && sender.damage == Damage::default()
                && sender
                    .check
                    .as_ref()
                    .is_none_or(|checker| end < checker.size)
        };
        while !bytes.is_empty() {
            let chunk = bytes.split_to(bytes.len().min(CHUNK));
            let end = self.at + chunk.len() as u64;
            if !whole(self, end) {
                self.write_all(&chunk)?;
                continue;
            }
            // What was written before goes first, in order.
            self.send()?;
            if let Some(checker) = &mut self.check {
                checker.feed(chunk.clone())?;
            }
            self.at = end;
            self.tx.blocking_send(Ok(chunk)).map_err(|_| gone())?;
        }
        Ok(())
    }
}

impl Write for Sender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.skip > 0 {
            // Nothing is sent while a range's prefix is made: a gone client is seen here.
            if self.tx.is_closed() {
                return Err(gone());
            }
            let n = usize::try_from(self.skip).map_or(data.len(), |s| s.min(data.len()));
            if let Some(checker) = &mut self.check {
                checker.feed(Bytes::copy_from_slice(&data[..n]))?;
            }
            self.skip -= n as u64;
            self.at += n as u64;
            return Ok(n);
        }
        if self.at >= self.until {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the range is full",
            ));
        }
        let room = self.chunk_len().saturating_sub(self.buf.len()).max(1);
        let left = usize::try_from(self.until - self.at).unwrap_or(usize::MAX);
        let mut n = room.min(data.len()).min(left);
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
            self.flipped = Some(index);
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

    #[test]
    fn a_chunk_let_go_of_is_filled_again_and_one_still_held_is_not() {
        let mut chunks = Chunks::default();
        let mut first = chunks.take(8);
        first.copy_from_slice(b"abcdefgh");
        let first = chunks.seal(first);
        let at = first.as_ptr();
        let mut second = chunks.take(8);
        assert_ne!(second.as_ptr(), at, "the first is still held");
        second.copy_from_slice(b"12345678");
        assert_eq!(&first[..], b"abcdefgh");
        let _second = chunks.seal(second);
        drop(first);
        assert_eq!(chunks.take(8).as_ptr(), at, "the first was let go of");
    }

    #[test]
    fn a_tar_made_into_chunks_is_handed_over_whole_and_in_order() {
        let data: Vec<u8> = (0..CHUNK * 2 + 12_345).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let mut handing = Handing::new(&mut out);
        let (mut at, mut step) = (0, 1);
        while at < data.len() {
            // Writes and rooms of every size, across chunks' ends.
            let n = step.min(data.len() - at);
            if step % 2 == 0 {
                handing.write_all(&data[at..at + n]).expect("write");
                at += n;
            } else {
                let room = layer::Out::room(&mut handing, n);
                let got = room.len();
                room.copy_from_slice(&data[at..at + got]);
                layer::Out::commit(&mut handing, got).expect("commit");
                at += got;
            }
            step = step * 7 % 100_003 + 1;
        }
        handing.finish().expect("finish");
        assert!(out == data);
    }

    /// Everything a body yields: its bytes, and whether it ended in an error.
    async fn drain(body: Body) -> (Vec<u8>, bool) {
        let Body::Stream(mut rx, _) = body else {
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

    async fn checked(digest: &str, start: u64) -> Body {
        let bytes = blob();
        let ticket = Streams::new(1).acquire(None, false).await.expect("a slot");
        let check = Check {
            digest: digest.into(),
            size: bytes.len() as u64,
            spec: "1MB".into(),
            pieces: None,
            keep: None,
        };
        Body::checked(ticket, start, Damage::default(), check, move |out| {
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
        assert_eq!(
            drain(checked(&digest, 0).await).await,
            (bytes.clone(), false)
        );
        let start = CHUNK as u64 + 5;
        assert_eq!(
            drain(checked(&digest, start).await).await,
            (bytes[start as usize..].to_vec(), false)
        );
    }

    #[tokio::test]
    async fn a_blob_that_does_not_is_broken_off_before_its_last_byte() {
        let bytes = blob();
        let other = Blob::of(b"other").digest;
        for start in [0, CHUNK as u64 + 5, bytes.len() as u64 - 1] {
            let (sent, failed) = drain(checked(&other, start).await).await;
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
