//! Layer encodings: gzip and zstd on every core, with output bytes that depend on the input
//! and the level alone, never on how many cores or threads did the work.
//!
//! Both cut the input into *pieces* at fixed offsets and encode each on its own, on a pool
//! of workers, writing the results in order:
//! - gzip as pigz does: 128 KiB blocks, each deflated with the 32 KiB before it as its
//!   dictionary and ended on a byte boundary, joined behind one header. Each block is
//!   deflated from a state that holds nothing of any earlier block ([`Deflater::restart`]).
//! - zstd as independent frames of 2 MiB each, one after the other, as the format allows
//!   (RFC 8878 §3.1: a stream is any number of frames; every decoder reads them in turn).
//!
//! Since a piece's bytes depend on its input alone (and, for gzip, the 32 KiB before it),
//! a stream can also be resumed at any piece ([`Resume`]): with the output offsets of the
//! pieces ([`Pieces`], taken once while the whole stream is made), any byte range of the
//! blob is made from the piece that holds its first byte, not from the blob's start.
//! Neither encoder sees the producer's flushes: the blob is framed by `encode` alone.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use flate2::{Compress, FlushCompress};

mod direct;

use crate::digest::HashingWriter;
use crate::layer::{self, TarOptions};
use crate::plan::LayerPlan;
use crate::spec::Compression;

/// Input per gzip block: pigz's default. Large enough that the restart at each block
/// costs little ratio, small enough to keep every core busy on modest layers.
const GZIP_BLOCK: usize = 128 * 1024;
/// deflate's window: what each block may refer back into.
const DICTIONARY: usize = 32 * 1024;
/// gzip's header: no name, no timestamp, "unknown" OS, so that nothing but the data shows.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
/// Input per zstd frame: large enough that a frame's header and restart cost nothing
/// measurable (2 MiB was zstd's job size here before, whose matches reached no further),
/// small enough that a frame is a cheap place to resume, and memory stays bounded (a
/// worker holds one frame's input and output).
const ZSTD_FRAME: usize = 2 << 20;
/// Input between two indexed resume points: every gzip block would be 8 bytes an eighth
/// of a MiB; every MiB keeps a 1 GiB layer's index at 8 KiB while a range never makes more
/// than a MiB (and a gzip window) it does not send.
const INDEX_STEP: u64 = 1 << 20;

/// The environment variable that sets how many threads compress.
pub(crate) const THREADS_VAR: &str = "IMAGE_MAKER_THREADS";
/// The most threads it may ask for.
const MAX_THREADS: usize = 256;

/// `IMAGE_MAKER_THREADS`, when set: a whole number from 1 to 256. The output does not depend
/// on it; it is there so that tests and the soak benchmark can show that it does not.
pub(crate) fn threads_from_env() -> Result<Option<usize>, crate::UsageError> {
    let Some(raw) = std::env::var_os(THREADS_VAR).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let text = raw.to_string_lossy();
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_THREADS).contains(n))
        .map(Some)
        .ok_or_else(|| crate::UsageError::Threads(text.into_owned()))
}

/// How many threads compress: `IMAGE_MAKER_THREADS`, or every core this process may use.
/// The output does not depend on it. A bad value counts as unset here: the command line
/// refuses it before any build.
pub(crate) fn workers() -> usize {
    threads_from_env()
        .ok()
        .flatten()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// The one way a layer's blob is made from its plan, for builds and serve alike: tar
/// (hashed into the diff_id when `diff_id`) → the layer's encoder on every core → `out`.
/// `tick` hears of each chunk of tar written. Returns the diff_id and `out`.
pub(crate) fn encode_layer<W: Write>(
    plan: &LayerPlan,
    seed: &[u8; 32],
    options: TarOptions,
    out: W,
    diff_id: bool,
    threads: usize,
    tick: &mut dyn FnMut(u64) -> io::Result<()>,
) -> io::Result<(Option<String>, W)> {
    encode(Encoding::of(plan), threads, out, |encoder| {
        if !diff_id {
            layer::write_tar_to(plan, seed, options, encoder, tick)?;
            return Ok(None);
        }
        let mut tar = HashingWriter::new(encoder);
        layer::write_tar(plan, seed, options, &mut tar, tick)?;
        Ok(Some(tar.complete().0.digest))
    })
}

/// How a layer's tar becomes its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encoding {
    pub compression: Compression,
    /// The encoder's level; `None` for the encoding's default.
    pub level: Option<u32>,
    /// Set for generated content at the default level, whose pieces are written from the
    /// matches its generator made ([`direct`]) rather than by zlib or zstd.
    pub generated: Option<Generated>,
}

/// What an encoder may know of generated content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generated {
    /// How far back its bytes repeat (besides runs of one byte); `None` for random files.
    pub repeat: Option<usize>,
}

impl Encoding {
    /// The encoding of `plan`'s blob. A layer of generated files at its encoding's default
    /// level is written directly; given files (`--add`, the `run` layer), or a level asked
    /// for, go through zlib or zstd at that level, as their own tools would.
    pub fn of(plan: &LayerPlan) -> Self {
        let spec = &plan.spec;
        let compression = spec.encoding();
        let default = spec.effective_level() == compression.default_level();
        Self {
            compression,
            level: spec.effective_level(),
            generated: (default && !plan.has_given()).then(|| Generated {
                repeat: crate::content::repeat_distance(spec.ratio),
            }),
        }
    }

    /// `compression` at `level` by zlib or zstd, for bytes of any shape.
    #[cfg(test)]
    pub fn searched(compression: Compression, level: Option<u32>) -> Self {
        Self {
            compression,
            level,
            generated: None,
        }
    }
}

/// Runs `produce` with a writer whose bytes reach `out` encoded as `encoding` says, using
/// `threads` compressing threads. Returns what `produce` returned and `out`.
pub(crate) fn encode<W: Write, T>(
    encoding: Encoding,
    threads: usize,
    out: W,
    produce: impl FnOnce(&mut dyn layer::Out) -> io::Result<T>,
) -> io::Result<(T, W)> {
    encode_pieces(encoding, threads, Start::First, out, produce).map(|(value, out, _)| (value, out))
}

/// Where the output offsets of a compressed stream's pieces are: enough to resume it at
/// any [`INDEX_STEP`] of its input. A few bytes a MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pieces {
    /// Input between resume points: a whole number of pieces.
    pub step: u64,
    /// Output offset of the piece that starts at input `(i + 1) * step`, for each i.
    pub starts: Vec<u64>,
    /// The XXH3-64 of each step's output (from one start to the next, the header in the
    /// first and the trailer in the last): one more than `starts`. A stream made again is
    /// checked against them as it goes, for a fraction of what SHA-256 costs.
    pub sums: Vec<u64>,
    /// The CRC-32 of the whole input, which a gzip stream's trailer holds.
    pub crc: u32,
    /// The input's length.
    pub input: u64,
}

// What serve does with a stream's pieces.
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
impl Pieces {
    /// Where step `i`'s output ends: the next step's start, or `size` for the last.
    pub fn step_end(&self, i: usize, size: u64) -> u64 {
        self.starts.get(i).copied().unwrap_or(size)
    }

    /// The resume point at or before output offset `at`: the input offset to produce
    /// from, and the output offset of its first byte.
    pub fn before(&self, at: u64) -> (u64, u64) {
        let after = self.starts.partition_point(|&start| start <= at);
        match after {
            0 => (0, 0),
            i => (i as u64 * self.step, self.starts[i - 1]),
        }
    }
}

/// How an encoding begins.
#[derive(Debug, Clone, Copy)]
// Builds start at the first byte; serve indexes and resumes.
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) enum Start {
    /// At the input's first byte, with the stream's header.
    First,
    /// The same, and the pieces are indexed.
    Beginning,
    /// At a resume point of an indexed stream, as [`Resume`] says.
    Resume(Resume),
}

/// A stream made again from one of its pieces: the output is the original's from the
/// piece's first byte on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resume {
    /// The input offset of the piece: one [`Pieces::before`] gave, or 0 for the whole
    /// stream made again without a pass for its CRC.
    pub input: u64,
    /// The CRC-32 of the original's whole input (gzip's trailer).
    pub crc: u32,
}

impl Resume {
    /// Bytes before `input` that `produce` writes first: what the piece may refer back
    /// into (zlib's gzip window), consumed as its dictionary, never output.
    pub fn primer(&self, encoding: Encoding) -> u64 {
        match encoding {
            Encoding {
                compression: Compression::Gzip,
                generated: None,
                ..
            } => self.input.min(DICTIONARY as u64),
            _ => 0,
        }
    }
}

/// [`encode`], from `start`; with [`Start::Beginning`], also returns the pieces' index
/// (for a compressed stream).
pub(crate) fn encode_pieces<W: Write, T>(
    encoding: Encoding,
    threads: usize,
    start: Start,
    out: W,
    produce: impl FnOnce(&mut dyn layer::Out) -> io::Result<T>,
) -> io::Result<(T, W, Option<Pieces>)> {
    let level = encoding
        .level
        .or(encoding.compression.default_level())
        .unwrap_or(0);
    let kind = match encoding.compression {
        Compression::None => {
            let mut out = out;
            let mut buffered = layer::Buffered {
                out: &mut out,
                buf: vec![0; layer::CHUNK],
            };
            let value = produce(&mut buffered)?;
            return Ok((value, out, None));
        }
        Compression::Gzip => Kind::Gzip,
        Compression::Zstd => Kind::Zstd,
    };
    let encoder = Settings {
        kind,
        level,
        generated: encoding.generated,
    };
    pieces(encoder, encoding, threads.max(1), start, out, produce)
}

/// What a worker's encoder is made from.
#[derive(Debug, Clone, Copy)]
struct Settings {
    kind: Kind,
    level: u32,
    generated: Option<Generated>,
}

/// The two piecewise encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gzip,
    Zstd,
}

impl Settings {
    /// Input per piece.
    fn piece(self) -> usize {
        match (self.kind, self.generated) {
            (Kind::Gzip, None) => GZIP_BLOCK,
            // Without a dictionary to keep small, as large as a resume step: fewer pieces
            // to hand around, which was most of what a direct one cost.
            (Kind::Gzip, Some(_)) => INDEX_STEP as usize,
            (Kind::Zstd, _) => ZSTD_FRAME,
        }
    }

    /// Input between two indexed resume points.
    fn step(self) -> u64 {
        INDEX_STEP.max(self.piece() as u64)
    }
}

/// One piece of a stream, encoded by a worker.
struct Job {
    /// The previous piece's input, whose end is a gzip block's dictionary.
    previous: Option<Arc<Vec<u8>>>,
    data: Arc<Vec<u8>>,
    last: bool,
    /// An emptied buffer of an earlier piece's output, for this one's.
    output: Vec<u8>,
    done: Sender<io::Result<Done>>,
}

/// A piece encoded, and its input back for the writer to fill again.
type Done = (Encoded, Arc<Vec<u8>>);

/// A piece as a worker encoded it.
enum Encoded {
    Bytes(Vec<u8>),
    /// A raw zstd frame of the piece's own input: written from the input itself, which
    /// saves copying it into a frame.
    Raw(Arc<Vec<u8>>),
}

fn pieces<W: Write, T>(
    settings: Settings,
    encoding: Encoding,
    threads: usize,
    start: Start,
    mut out: W,
    produce: impl FnOnce(&mut dyn layer::Out) -> io::Result<T>,
) -> io::Result<(T, W, Option<Pieces>)> {
    let kind = settings.kind;
    // A direct piece costs about what making its input costs the producer: workers beyond
    // what it can feed only take its core (on two cores, two workers took 1.8 times as
    // long as one for a `ratio=3` GiB).
    let threads = match settings.generated {
        Some(_) => threads.saturating_sub(1).clamp(1, 2),
        None => threads,
    };
    let (resume, primer) = match start {
        Start::First | Start::Beginning => (None, 0),
        Start::Resume(resume) => (Some(resume), resume.primer(encoding)),
    };
    std::thread::scope(|scope| {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads {
            let queue = Arc::clone(&queue);
            scope.spawn(move || encode_jobs(&queue, settings));
        }
        let mut writer = PieceWriter {
            kind,
            out: &mut out,
            jobs,
            pending: VecDeque::new(),
            in_flight: 2 * threads,
            current: vec![0; settings.piece()],
            filled: 0,
            scratch: Vec::new(),
            piece: settings.piece(),
            step: settings.step(),
            previous: None,
            primer: usize::try_from(primer).unwrap_or(0),
            crc: crc32fast::Hasher::new(),
            input: resume.map_or(0, |r| r.input),
            written: 0,
            submitted: 0,
            starts: Vec::new(),
            sums: Vec::new(),
            sum: xxhash_rust::xxh3::Xxh3::new(),
            index: matches!(start, Start::Beginning),
            resume,
            spare: Spare::default(),
            dictionary: kind == Kind::Gzip && settings.generated.is_none(),
        };
        if resume.is_none_or(|r| r.input == 0) && kind == Kind::Gzip {
            writer.emit(&GZIP_HEADER)?;
        }
        let value = produce(&mut writer)?;
        let pieces = writer.finish()?;
        // Dropping the writer closes the queue, which ends the workers.
        Ok((value, pieces))
    })
    .map(|(value, pieces)| (value, out, pieces))
}

/// A raw deflate state that starts every stream from the same memory.
///
/// zlib-rs reads window bytes past the end of the input it holds: hashing the last
/// positions of a dictionary reads the bytes just after it, and the match finder reads
/// past the end of the lookahead. It takes them to be harmless, but they decide which
/// hash chain a position joins and which of two valid matches is kept (the class of
/// zlib-rs#459, which that fix narrowed but did not close). `reset` leaves the window as
/// the last stream left it, and a new state's window is uninitialised heap memory. So a
/// block's bytes depended on which blocks its worker had deflated before and on what the
/// process had freed: on scheduling, thread count and process history. In a 1 GiB
/// `ratio=3` layer two blocks of 8,193 came out otherwise after a reset than from a new
/// state (zeroing the 16 bytes after the dictionary was enough to make them agree), so
/// runs disagreed at random, and `serve`, whose heap is never new, streamed bytes other
/// than the digest it had computed.
///
/// [`Deflater::restart`] fills the whole window with zeros before each stream, so that
/// everything the finder can read is either this stream's input or those zeros: a block's
/// output is a function of its dictionary, its bytes and the level alone. Zeros, because a
/// state in a new process has a zeroed window (fresh pages): the golden digests hold. A
/// layer whose digest used to vary takes one digest now (`1GB:ratio=3:compression=gzip`:
/// sha256:28a36dbb…, neither of the two that runs used to split between).
///
/// Level 0 is exempt: it stores its input and never looks for a match, so nothing it
/// writes depends on the window.
struct Deflater {
    state: Compress,
    searches: bool,
}

impl Deflater {
    fn new(level: flate2::Compression) -> io::Result<Self> {
        let mut deflater = Self {
            state: Compress::new(level, false),
            searches: level.level() > 0,
        };
        deflater.restart()?;
        Ok(deflater)
    }

    /// Readies the state for a new stream, as [`Compress::reset`] does, with a window of
    /// known contents.
    fn restart(&mut self) -> io::Result<()> {
        static ZEROS: [u8; DICTIONARY] = [0; DICTIONARY];
        self.state.reset();
        if self.searches {
            // The window is twice the dictionary: two dictionaries fill it, without a slide.
            for _ in 0..2 {
                self.state
                    .set_dictionary(&ZEROS)
                    .map_err(io::Error::other)?;
            }
            self.state.reset();
        }
        Ok(())
    }
}

/// What a worker encodes with, made once: allocating a state costs more than encoding a
/// piece of random data.
// One per worker thread, never moved: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Encoder {
    Gzip {
        deflate: Deflater,
        store: Deflater,
        probe: Deflater,
    },
    Zstd {
        frame: zstd::bulk::Compressor<'static>,
        probe: Deflater,
    },
    /// Generated content, written from its matches.
    Direct { kind: Kind, repeat: Option<usize> },
}

impl Encoder {
    fn new(settings: Settings) -> io::Result<Self> {
        let Settings {
            kind,
            level,
            generated,
        } = settings;
        if let Some(Generated { repeat }) = generated {
            return Ok(Self::Direct { kind, repeat });
        }
        let probe = Deflater::new(flate2::Compression::fast())?;
        Ok(match kind {
            Kind::Gzip => Self::Gzip {
                probe,
                deflate: Deflater::new(flate2::Compression::new(level))?,
                store: Deflater::new(flate2::Compression::none())?,
            },
            Kind::Zstd => {
                use zstd::zstd_safe::CParameter;
                let level = i32::try_from(level).map_err(io::Error::other)?;
                let mut frame = zstd::bulk::Compressor::new(level)?;
                frame.set_parameter(CParameter::ChecksumFlag(true))?;
                frame.set_parameter(CParameter::ContentSizeFlag(true))?;
                Self::Zstd { frame, probe }
            }
        })
    }

    /// Encodes `job`, into `out` where the encoder writes its own bytes.
    fn encode(&mut self, job: &Job, mut out: Vec<u8>) -> io::Result<Encoded> {
        match self {
            Self::Direct {
                kind: Kind::Gzip,
                repeat,
            } => {
                direct::deflate(&job.data, *repeat, job.last, &mut out);
                Ok(Encoded::Bytes(out))
            }
            Self::Direct {
                kind: Kind::Zstd,
                repeat,
            } => {
                out.extend_from_slice(&frame_header(job.data.len() as u64));
                Ok(match direct::zstd_blocks(&job.data, *repeat, &mut out) {
                    true => Encoded::Bytes(out),
                    false => Encoded::Raw(Arc::clone(&job.data)),
                })
            }
            Self::Gzip {
                store,
                deflate,
                probe,
            } => match incompressible(probe, &job.data) {
                true => deflate_block(store, job),
                false => deflate_block(deflate, job),
            }
            .map(Encoded::Bytes),
            Self::Zstd { frame, probe } => match incompressible(probe, &job.data) {
                true => Ok(Encoded::Raw(Arc::clone(&job.data))),
                // A frame is compressed from a reset session: nothing of the frames before.
                false => frame.compress(&job.data).map(Encoded::Bytes),
            },
        }
    }
}

/// Encodes pieces from `queue` until it closes.
fn encode_jobs(queue: &Mutex<Receiver<Job>>, settings: Settings) {
    let Ok(mut encoder) = Encoder::new(settings) else {
        // The writer sees the workers gone and reports it.
        return;
    };
    loop {
        let mut job = match queue.lock() {
            Ok(queue) => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let output = std::mem::take(&mut job.output);
        let result = encoder.encode(&job, output);
        // The dictionary's hold goes first, so that the writer gets the input back alone.
        let Job {
            previous,
            data,
            done,
            ..
        } = job;
        drop(previous);
        // The writer may have stopped waiting (an error elsewhere): nothing to do then.
        let _ = done.send(result.map(|encoded| (encoded, data)));
    }
}

/// A zstd frame that stores `data` as it is, in raw blocks, with its content size. For data that would not shrink: zstd's own encoder
/// comes to the same raw blocks after searching every position, 0.75 s a GiB on one core
/// here against a copy for this.
#[cfg(test)]
fn raw_frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / direct::BLOCK * 3 + 24);
    // Into memory: cannot fail.
    let _ = write_raw_frame(data, &mut |bytes| {
        out.extend_from_slice(bytes);
        Ok(())
    });
    out
}

/// Writes the raw frame of `data` in parts: the data goes out from where it is, never
/// copied into a frame first.
fn write_raw_frame(data: &[u8], emit: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let mut header = frame_header(data.len() as u64);
    if data.is_empty() {
        // One empty raw block, the last.
        header.extend_from_slice(&[1, 0, 0]);
    }
    emit(&header)?;
    let mut blocks = data.chunks(direct::BLOCK).peekable();
    while let Some(block) = blocks.next() {
        let mut header = Vec::with_capacity(3);
        direct::block_header(&mut header, blocks.peek().is_none(), 0, block.len());
        emit(&header)?;
        emit(block)?;
    }
    Ok(())
}

/// The header of a zstd frame of `size` bytes that the image-maker writes itself.
fn frame_header(size: u64) -> Vec<u8> {
    let mut header = 0xFD2F_B528_u32.to_le_bytes().to_vec();
    // Frame header descriptor: content size field width, single segment (the content is
    // the window); no checksum (the blob's digest covers the bytes, and XXH64 of every
    // random byte cost 0.07 CPU s a GiB), no dictionary.
    let (width, field) = match size {
        0..=255 => (0u8, vec![size as u8]),
        256..=65_791 => (1, ((size - 256) as u16).to_le_bytes().to_vec()),
        65_792..=0xFFFF_FFFF => (2, (size as u32).to_le_bytes().to_vec()),
        _ => (3, size.to_le_bytes().to_vec()),
    };
    header.push(width << 6 | 1 << 5);
    header.extend_from_slice(&field);
    header
}

/// Bytes of each sample [`incompressible`] tries: less than the window's half, so that a
/// sample never writes where the probe's restart put its zeros.
const SAMPLE: usize = 4096;
const _: () = assert!(SAMPLE + 2 * 258 < DICTIONARY);

/// Whether compressing `data` would gain nothing: three samples of it (start, middle, end)
/// do not shrink under deflate's fastest level. Such a piece is stored rather than searched
/// for matches, which on random data is about ten times faster and makes a blob a few
/// bytes larger per piece than the searching would; the choice depends on the bytes alone,
/// so the stream stays deterministic.
fn incompressible(probe: &mut Deflater, data: &[u8]) -> bool {
    if data.len() < 3 * SAMPLE {
        return false;
    }
    let mut output = Vec::with_capacity(2 * SAMPLE);
    [0, data.len() / 2 - SAMPLE / 2, data.len() - SAMPLE]
        .into_iter()
        .all(|start| {
            // A sample never reaches past the first SAMPLE bytes of the window: the rest
            // stays as the probe's last restart left it, and a plain reset is enough.
            probe.state.reset();
            output.clear();
            let sample = &data[start..start + SAMPLE];
            match probe
                .state
                .compress_vec(sample, &mut output, FlushCompress::Finish)
            {
                Ok(flate2::Status::StreamEnd) => output.len() >= SAMPLE * 99 / 100,
                _ => false,
            }
        })
}

fn deflate_block(deflater: &mut Deflater, job: &Job) -> io::Result<Vec<u8>> {
    deflater.restart()?;
    let deflate = &mut deflater.state;
    if let Some(previous) = &job.previous {
        let start = previous.len().saturating_sub(DICTIONARY);
        deflate
            .set_dictionary(&previous[start..])
            .map_err(io::Error::other)?;
    }
    // Incompressible data grows by a few bytes per stored block; the bound is generous.
    let mut output = Vec::with_capacity(job.data.len() + job.data.len() / 64 + 64);
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        // Ends on a byte boundary without ending the stream, so the next block's bits
        // can simply follow.
        FlushCompress::Sync
    };
    let mut input = &job.data[..];
    loop {
        let before = deflate.total_in();
        if output.len() == output.capacity() {
            output.reserve(64 * 1024);
        }
        let status = deflate
            .compress_vec(input, &mut output, flush)
            .map_err(io::Error::other)?;
        input = &input[usize::try_from(deflate.total_in() - before).unwrap_or(input.len())..];
        let done = match status {
            flate2::Status::StreamEnd => true,
            // Done when all input is in and the flush left room to spare.
            _ => input.is_empty() && output.len() < output.capacity(),
        };
        if done {
            return Ok(output);
        }
    }
}

/// The producer's side of a piecewise stream: cuts pieces, hands them to the workers,
/// writes their results in order, and notes where each indexed piece starts.
struct PieceWriter<'a, W: Write> {
    kind: Kind,
    /// Input per piece, and between resume points.
    piece: usize,
    step: u64,
    out: &'a mut W,
    jobs: Sender<Job>,
    pending: VecDeque<Receiver<io::Result<Done>>>,
    in_flight: usize,
    /// The piece being filled: always a whole piece long, `filled` of it written (so that
    /// its memory can be lent to the producer without being cleared first).
    current: Vec<u8>,
    filled: usize,
    /// What is lent while a resumed gzip stream takes its dictionary.
    scratch: Vec<u8>,
    previous: Option<Arc<Vec<u8>>>,
    /// Bytes still to take as the first piece's dictionary (a resumed gzip stream).
    primer: usize,
    crc: crc32fast::Hasher,
    /// Input offset of the end of `current`.
    input: u64,
    /// Output offset of the next byte written.
    written: u64,
    /// Pieces handed to the workers.
    submitted: u64,
    starts: Vec<u64>,
    sums: Vec<u64>,
    /// The current step's output so far.
    sum: xxhash_rust::xxh3::Xxh3,
    /// Whether the pieces are indexed and summed.
    index: bool,
    resume: Option<Resume>,
    /// Buffers of pieces written, emptied for new ones: a new buffer of 2 MiB is new pages
    /// to fault in, which cost serve as much again as copying into them.
    spare: Spare,
    /// Whether a piece refers back into the one before it (zlib's gzip).
    dictionary: bool,
}

/// Emptied buffers: inputs and outputs.
#[derive(Default)]
struct Spare {
    inputs: Vec<Vec<u8>>,
    outputs: Vec<Vec<u8>>,
}

impl<W: Write> PieceWriter<'_, W> {
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let next = self
            .spare
            .inputs
            .pop()
            .unwrap_or_else(|| vec![0; self.piece]);
        let mut data = std::mem::replace(&mut self.current, next);
        data.truncate(std::mem::take(&mut self.filled));
        let data = Arc::new(data);
        let (done, result) = mpsc::channel();
        let previous = match self.dictionary {
            true => self.previous.replace(Arc::clone(&data)),
            false => self.previous.take(),
        };
        let job = Job {
            previous,
            data,
            last,
            output: self.spare.outputs.pop().unwrap_or_default(),
            done,
        };
        self.jobs
            .send(job)
            .map_err(|_| io::Error::other("the compressing workers stopped"))?;
        self.pending.push_back(result);
        self.submitted += 1;
        while self.pending.len() > self.in_flight {
            self.write_next()?;
        }
        Ok(())
    }

    /// Waits for the oldest piece and writes it; notes where it starts when its input
    /// offset is an index step.
    fn write_next(&mut self) -> io::Result<()> {
        let Some(result) = self.pending.pop_front() else {
            return Ok(());
        };
        let (piece, input) = result
            .recv()
            .map_err(|_| io::Error::other("a compressing worker stopped"))??;
        if self.index {
            let index = self.submitted - self.pending.len() as u64 - 1;
            let at = index * self.piece as u64;
            if at > 0 && at.is_multiple_of(self.step) {
                self.starts.push(self.written);
                self.sums.push(self.sum.digest());
                self.sum.reset();
            }
        }
        match piece {
            Encoded::Bytes(mut bytes) => {
                self.emit(&bytes)?;
                bytes.clear();
                self.spare.outputs.push(bytes);
            }
            Encoded::Raw(data) => write_raw_frame(&data, &mut |bytes| self.emit(bytes))?,
        }
        // Held still when it is the next piece's dictionary; then it comes back later. Only
        // whole ones are filled again: a short one is the last.
        if let Ok(input) = Arc::try_unwrap(input).map_err(drop) {
            if input.len() == self.piece {
                self.spare.inputs.push(input);
            }
        }
        Ok(())
    }

    /// Writes `bytes` of output, counted and (when indexing) summed.
    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.index {
            self.sum.update(bytes);
        }
        self.written += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    fn finish(mut self) -> io::Result<Option<Pieces>> {
        // zstd ends with its last frame; gzip with a last block, empty if need be.
        if self.kind == Kind::Gzip || self.filled > 0 || self.submitted == 0 {
            self.submit(true)?;
        }
        while !self.pending.is_empty() {
            self.write_next()?;
        }
        let crc = match self.resume {
            Some(resume) => resume.crc,
            None => std::mem::take(&mut self.crc).finalize(),
        };
        if self.kind == Kind::Gzip {
            // ISIZE: the input's length modulo 2^32, as RFC 1952 has it.
            let trailer = [crc.to_le_bytes(), (self.input as u32).to_le_bytes()].concat();
            self.emit(&trailer)?;
        }
        self.out.flush()?;
        self.sums.push(self.sum.digest());
        Ok(self.index.then(|| Pieces {
            step: self.step,
            starts: std::mem::take(&mut self.starts),
            sums: std::mem::take(&mut self.sums),
            crc,
            input: self.input,
        }))
    }
}

impl<W: Write> Write for PieceWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.primer > 0 {
            // A resumed gzip stream's dictionary: the input just before its first piece.
            let n = self.primer.min(buf.len());
            let previous = self.previous.get_or_insert_with(Default::default);
            Arc::make_mut(previous).extend_from_slice(&buf[..n]);
            self.primer -= n;
            return Ok(n);
        }
        let n = (self.piece - self.filled).min(buf.len());
        self.current[self.filled..self.filled + n].copy_from_slice(&buf[..n]);
        self.take(n)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> PieceWriter<'_, W> {
    /// The next `n` bytes of the piece are in.
    fn take(&mut self, n: usize) -> io::Result<()> {
        if self.resume.is_none() && self.kind == Kind::Gzip {
            self.crc.update(&self.current[self.filled..self.filled + n]);
        }
        self.filled += n;
        self.input += n as u64;
        if self.filled == self.piece {
            self.submit(false)?;
        }
        Ok(())
    }
}

impl<W: Write> layer::Out for PieceWriter<'_, W> {
    fn room(&mut self, want: usize) -> &mut [u8] {
        if self.primer > 0 {
            self.scratch.resize(want.min(self.primer), 0);
            return &mut self.scratch;
        }
        let end = self.piece.min(self.filled + want);
        &mut self.current[self.filled..end]
    }

    fn commit(&mut self, n: usize) -> io::Result<()> {
        if self.primer > 0 {
            let scratch = std::mem::take(&mut self.scratch);
            let result = self.write_all(&scratch[..n]);
            self.scratch = scratch;
            return result;
        }
        self.take(n)
    }
}

/// The most a blob of a `tar_size`-byte tar can take encoded as `compression`, whatever the
/// data: a little over the tar, since random data cannot shrink.
///
/// - gzip: 10 bytes of header and 8 of trailer; each 128 KiB block is deflated on its own
///   and ends in a sync flush, so each gets zlib's `compressBound` for a raw stream
///   (n + n/4096 + n/16384 + n/2^25 + 13, what stored blocks cost at worst) plus 5 bytes
///   for the flush's empty stored block. Level 1 is the exception: zlib-rs (as zlib-ng)
///   runs it as `deflate_quick`, which writes fixed-Huffman codes without falling back to
///   stored blocks, up to 9 bits a byte; a block the encoder probes as compressible (the
///   first of a file, which holds tar headers) can grow by up to 1/8. It gets zlib's
///   conservative bound, n + n/8 + n/64 + 11.
/// - zstd: each 2 MiB frame bounded as `ZSTD_compressBound` bounds one input (n + n/256,
///   plus up to 64 bytes when n < 128 KiB), plus 18 bytes of frame header and 4 of
///   checksum; a raw frame (3 bytes a 128 KiB block, 9 of header) is less.
///
/// `level` is the layer's, `None` for the encoding's default.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn blob_bound(compression: Compression, level: Option<u32>, tar_size: u64) -> u64 {
    let quick = level.or(compression.default_level()) == Some(1);
    let pieces = |piece: u64, each: &dyn Fn(u64) -> u64| {
        let whole = tar_size / piece;
        let rest = tar_size % piece;
        whole * each(piece) + if rest > 0 { each(rest) } else { each(0) }
    };
    match compression {
        Compression::None => tar_size,
        Compression::Gzip => {
            let deflate = |n: u64| match quick {
                true => n + n.div_ceil(8) + n.div_ceil(64) + 11,
                false => n + (n >> 12) + (n >> 14) + (n >> 25) + 13,
            };
            10 + 8 + pieces(GZIP_BLOCK as u64, &|n| deflate(n) + 5)
        }
        Compression::Zstd => pieces(ZSTD_FRAME as u64, &|n| {
            // `ZSTD_compressBound`, and a frame's header and checksum besides.
            n + (n >> 8) + ((128 * 1024_u64).saturating_sub(n) >> 11) + 18 + 4
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::content::FileContent;
    use crate::digest::Blob;
    use crate::spec::Ratio;

    #[test]
    fn generated_layers_at_the_default_level_are_written_directly() {
        let plans = |list: &str| crate::plan::layers(&crate::Spec::parse(list).expect("valid"));
        let of = |list: &str| Encoding::of(&plans(list)[0]).generated;
        let repeat = |r: &str| {
            Some(Generated {
                repeat: crate::content::repeat_distance(r.parse().expect("valid")),
            })
        };
        assert_eq!(of("1MB:compression=gzip:ratio=3"), repeat("3"));
        assert_eq!(of("1MB:compression=zstd"), repeat("1"));
        // The default level spelled out is the same image, so the same encoder.
        assert_eq!(of("1MB:compression=gzip:level=6"), repeat("1"));
        assert_eq!(of("1MB:compression=zstd:level=3:ratio=2"), repeat("2"));
        assert_eq!(of("1MB:compression=gzip:level=9"), None);
        assert_eq!(of("1MB:compression=zstd:level=1"), None);
        // Given files: zlib or libzstd, whatever the level.
        let run = plans("1MB,run").pop().expect("the run layer");
        assert!(run.has_given());
        assert_eq!(Encoding::of(&run).generated, None);
    }

    #[test]
    fn random_blocks_are_stored_and_others_compressed() {
        let random = data(GZIP_BLOCK as u64, Ratio::ONE);
        let mut probe = Deflater::new(flate2::Compression::fast()).expect("a new state");
        assert!(incompressible(&mut probe, &random));
        let ratio = "2".parse::<Ratio>().expect("valid");
        assert!(!incompressible(&mut probe, &data(GZIP_BLOCK as u64, ratio)));
        // Random but for a compressible middle: compressed.
        let mut mixed = random.clone();
        mixed[GZIP_BLOCK / 2 - SAMPLE..GZIP_BLOCK / 2 + SAMPLE].fill(b'a');
        assert!(!incompressible(&mut probe, &mixed));
    }

    /// Bytes `at..at + len` of the tar of `list`'s first layer.
    fn tar_bytes(list: &str, at: u64, len: usize) -> Vec<u8> {
        let spec = crate::Spec::parse(list).expect("valid");
        let plan = crate::plan::layers(&spec).swap_remove(0);
        let seed = crate::content::seed(&spec, &crate::Platform::default(), false);
        let file = plan.files().next().expect("a file");
        let mut content = crate::content::FileContent::of(&plan, &seed, &file);
        // A directory's header, then the file's.
        content.seek(at - 1024);
        let mut bytes = vec![0; len];
        assert_eq!(content.fill(&mut bytes), len);
        bytes
    }

    /// Blocks 5034 to 5036 of `1GB:ratio=3`'s tar, where the last came out otherwise from a
    /// worker that had deflated the one before it than from a new state.
    fn telling_blocks() -> Vec<Arc<Vec<u8>>> {
        let bytes = tar_bytes("1GB:ratio=3", 5034 * GZIP_BLOCK as u64, 3 * GZIP_BLOCK);
        bytes
            .chunks(GZIP_BLOCK)
            .map(|block| Arc::new(block.to_vec()))
            .collect()
    }

    fn job(previous: &Arc<Vec<u8>>, data: &Arc<Vec<u8>>) -> Job {
        Job {
            previous: Some(Arc::clone(previous)),
            data: Arc::clone(data),
            last: false,
            output: Vec::new(),
            done: mpsc::channel().0,
        }
    }

    #[test]
    fn a_block_owes_nothing_to_what_its_worker_deflated_before() {
        let blocks = telling_blocks();
        let level = flate2::Compression::new(6);
        let telling = job(&blocks[1], &blocks[2]);
        let alone = deflate_block(&mut Deflater::new(level).expect("new"), &telling);
        let alone = alone.expect("deflated");
        // After its predecessor, after itself, and after a block of another shape.
        let mut worker = Deflater::new(level).expect("new");
        for before in [
            job(&blocks[0], &blocks[1]),
            job(&blocks[1], &blocks[2]),
            job(
                &blocks[2],
                &Arc::new(data(GZIP_BLOCK as u64 / 3, Ratio::ONE)),
            ),
        ] {
            deflate_block(&mut worker, &before).expect("deflated");
            let after = deflate_block(&mut worker, &telling).expect("deflated");
            assert!(
                after == alone,
                "{} bytes, alone {}",
                after.len(),
                alone.len()
            );
        }
    }

    #[test]
    fn the_same_input_gives_the_same_bytes_whatever_the_threads_and_write_sizes() {
        // 64 MiB of compressible tar around the telling blocks: 512 gzip blocks, 64 per
        // worker at 8 threads, and 32 zstd jobs.
        let input = tar_bytes("1GB:ratio=3", (5036 - 256) * GZIP_BLOCK as u64, 64 << 20);
        // One call, 1 MiB, 4 KiB, a prime, and one byte at a time (over the first 4 MiB:
        // 32 gzip blocks and two zstd jobs; byte by byte throughout costs 7 s a run).
        let writes = [usize::MAX, 1 << 20, 4096, 7919, 1];
        // Pinned too: every run agreeing is not enough, since a worker's history could make
        // them all agree on other bytes.
        let direct = |compression| Encoding {
            generated: Some(Generated {
                repeat: crate::content::repeat_distance("3".parse().expect("valid")),
            }),
            ..Encoding::searched(compression, None)
        };
        let pinned = [
            (
                Encoding::searched(Compression::Gzip, None),
                "sha256:b73ef46affd89b7a998b922e05df160ca8a5387c4c1ce2ddac9dfdb39489efd4",
                22_875_776,
            ),
            (
                Encoding::searched(Compression::Zstd, None),
                "sha256:b81d0dc32fa1e1ddf27d8a2c83723a437ba9ca9dc6351bf0c124350f73d4b6f7",
                22_564_838,
            ),
            (
                direct(Compression::Gzip),
                "sha256:01250fcb6625942e8466927e4a97f4ea4675fb367c01cd8afc2af19442a1e8d4",
                23_035_432,
            ),
            (
                direct(Compression::Zstd),
                "sha256:b1a6ebf7adf37d880ae24fc38921dd9fdbe0429817d83e2bd60c81c9ffd3cea0",
                22_467_409,
            ),
        ];
        for (encoding, digest, size) in pinned {
            for threads in 1..=8 {
                let write = writes[threads % writes.len()];
                let ((), out) = encode(encoding, threads, Vec::new(), |w| {
                    let mut rest = &input[..];
                    if write == 1 {
                        for byte in rest[..4 << 20].chunks(1) {
                            w.write_all(byte)?;
                        }
                        rest = &rest[4 << 20..];
                    }
                    let size = if write == 1 { 1 << 20 } else { write };
                    for chunk in rest.chunks(size) {
                        w.write_all(chunk)?;
                        // A producer's flush must not move a byte either.
                        if size == 1 << 20 {
                            w.flush()?;
                        }
                    }
                    w.flush()
                })
                .expect("in memory");
                let blob = Blob::of(&out);
                assert_eq!(
                    (blob.digest.as_str(), blob.size),
                    (digest, size),
                    "{encoding:?}, {threads} threads, writes of {write}"
                );
            }
        }
    }

    fn data(len: u64, ratio: Ratio) -> Vec<u8> {
        let mut bytes = vec![0; usize::try_from(len).expect("small")];
        FileContent::with_ratio(&[3; 32], 1, 0, len, ratio).fill(&mut bytes);
        bytes
    }

    fn compressed(
        compression: Compression,
        level: Option<u32>,
        threads: usize,
        input: &[u8],
    ) -> Vec<u8> {
        let ((), out) = encode(
            Encoding::searched(compression, level),
            threads,
            Vec::new(),
            |w| {
                // Odd write sizes: the block cuts must not depend on them.
                for chunk in input.chunks(7919) {
                    w.write_all(chunk)?;
                }
                Ok(())
            },
        )
        .expect("in memory");
        out
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn gzip_round_trips_whatever_the_threads() {
        for len in [0, 1, 1000, GZIP_BLOCK as u64, 3 * GZIP_BLOCK as u64 + 17] {
            let input = data(len, Ratio::ONE);
            let one = compressed(Compression::Gzip, None, 1, &input);
            assert!(gunzip(&one) == input, "{len}");
            for threads in [2, 3, 8] {
                assert_eq!(
                    Blob::of(&compressed(Compression::Gzip, None, threads, &input)),
                    Blob::of(&one),
                    "{len} bytes, {threads} threads"
                );
            }
        }
    }

    #[test]
    fn gzip_blocks_see_their_predecessors() {
        // A pattern repeating across block boundaries compresses as well as a serial stream
        // would: each block refers back into the one before it.
        let unit = data(1000, Ratio::ONE);
        let repeated: Vec<u8> = unit.iter().copied().cycle().take(4 * GZIP_BLOCK).collect();
        let out = compressed(Compression::Gzip, Some(6), 2, &repeated);
        assert!(gunzip(&out) == repeated);
        assert!(out.len() < repeated.len() / 100, "{} bytes", out.len());
    }

    #[test]
    fn zstd_round_trips_whatever_the_threads() {
        let ratio = "4".parse::<Ratio>().expect("valid");
        for input in [data(9 << 20, Ratio::ONE), data(9 << 20, ratio)] {
            let one = Blob::of(&compressed(Compression::Zstd, None, 1, &input));
            let out = compressed(Compression::Zstd, None, 3, &input);
            assert_eq!(Blob::of(&out), one);
            assert!(zstd::decode_all(out.as_slice()).expect("valid zstd") == input);
        }
        let input = data(1 << 20, ratio);
        assert_ne!(
            Blob::of(&compressed(Compression::Zstd, Some(9), 1, &input)),
            Blob::of(&compressed(Compression::Zstd, None, 1, &input))
        );
    }

    #[test]
    fn pinned_encodings() {
        // A change to either encoder's bytes changes every compressed image's digest. The
        // zstd pin moved when zstd became independent frames (a decision: every zstd
        // digest changed then), this input's to one raw frame (without a checksum).
        let input = data(300 << 10, Ratio::ONE);
        let gzip = Blob::of(&compressed(Compression::Gzip, None, 2, &input));
        let zstd = Blob::of(&compressed(Compression::Zstd, None, 2, &input));
        assert_eq!(
            (gzip.digest.as_str(), gzip.size),
            (
                "sha256:b2be4e416d8c9370b37228730bf172afe0ceeb05b7d89a5a9c44a69544560d63",
                307263
            )
        );
        assert_eq!(
            (zstd.digest.as_str(), zstd.size),
            (
                "sha256:eb925c9fc5b9d46808e990f44ba86c61bdd0674d87b92674daac2bc9d9e48266",
                307218
            )
        );
    }
    /// The whole stream of `input` and its index, then the stream resumed at every one of
    /// its resume points: each must be the whole stream's bytes from that point on.
    fn resumes_at_every_piece(encoding: Encoding, input: &[u8]) -> usize {
        let ((), whole, pieces) = encode_pieces(encoding, 3, Start::Beginning, Vec::new(), |w| {
            w.write_all(input)
        })
        .expect("in memory");
        let pieces = pieces.expect("indexed");
        assert_eq!(pieces.input, input.len() as u64);
        assert_eq!(pieces.sums.len(), pieces.starts.len() + 1);
        for (i, sum) in pieces.sums.iter().enumerate() {
            let from = if i == 0 { 0 } else { pieces.starts[i - 1] };
            let to = pieces.step_end(i, whole.len() as u64);
            let bytes = &whole[from as usize..to as usize];
            assert_eq!(*sum, xxhash_rust::xxh3::xxh3_64(bytes), "step {i}");
        }
        for (i, &at) in pieces.starts.iter().enumerate() {
            let (from, output) = pieces.before(at);
            assert_eq!((from, output), ((i as u64 + 1) * pieces.step, at));
            assert_eq!(pieces.before(at + 1), (from, output), "inside the piece");
            let resume = Resume {
                input: from,
                crc: pieces.crc,
            };
            let primer = usize::try_from(resume.primer(encoding)).expect("small");
            let from = usize::try_from(from).expect("small");
            let ((), tail, none) =
                encode_pieces(encoding, 2, Start::Resume(resume), Vec::new(), |w| {
                    w.write_all(&input[from - primer..])
                })
                .expect("in memory");
            assert!(none.is_none());
            let output = usize::try_from(output).expect("small");
            assert!(tail == whole[output..], "{encoding:?}: resumed at {from}");
        }
        pieces.starts.len()
    }

    #[test]
    fn a_stream_resumed_at_a_piece_is_the_rest_of_the_whole() {
        let ratio = "3".parse::<Ratio>().expect("valid");
        // Random, compressible, and mixed: stored and searched pieces side by side.
        let mut mixed = data(5 << 20, Ratio::ONE);
        mixed[(2 << 20)..(3 << 20) + 77].copy_from_slice(&data((1 << 20) + 77, ratio));
        let gzip = Encoding::searched(Compression::Gzip, None);
        let zstd = Encoding::searched(Compression::Zstd, None);
        let generated = Some(Generated {
            repeat: crate::content::repeat_distance(ratio),
        });
        for input in [
            data(5 << 20, Ratio::ONE),
            data((5 << 20) + 999, ratio),
            mixed,
        ] {
            for encoding in [gzip, zstd] {
                let pieces = match encoding.compression {
                    Compression::Gzip => 5,
                    _ => 2,
                };
                assert_eq!(resumes_at_every_piece(encoding, &input), pieces);
                let direct = Encoding {
                    generated,
                    ..encoding
                };
                assert_eq!(resumes_at_every_piece(direct, &input), pieces);
            }
        }
        // Shorter than a step: nothing to resume at, and nothing needed.
        assert_eq!(resumes_at_every_piece(zstd, &data(1000, ratio)), 0);
    }

    #[test]
    fn raw_zstd_frames_decode_at_every_size() {
        for len in [
            0,
            1,
            255,
            256,
            65_791,
            65_792,
            128 * 1024,
            128 * 1024 + 1,
            2 << 20,
        ] {
            let input = data(len, Ratio::ONE);
            let frame = raw_frame(&input);
            assert!(
                zstd::decode_all(frame.as_slice()).expect("valid") == input,
                "{len}"
            );
            // What a stream of them is: frames one after another.
            let two = [frame.clone(), frame].concat();
            let decoded = zstd::decode_all(two.as_slice()).expect("valid");
            assert!(decoded == [input.clone(), input].concat(), "{len}");
        }
    }

    #[test]
    fn a_zstd_frame_owes_nothing_to_the_frames_before_it() {
        let ratio = "3".parse::<Ratio>().expect("valid");
        let frame = Arc::new(data(ZSTD_FRAME as u64, ratio));
        let job = |data: &Arc<Vec<u8>>| Job {
            previous: None,
            data: Arc::clone(data),
            last: false,
            output: Vec::new(),
            done: mpsc::channel().0,
        };
        let bytes = |encoded: Encoded| match encoded {
            Encoded::Bytes(bytes) => bytes,
            Encoded::Raw(data) => raw_frame(&data),
        };
        let settings = Settings {
            kind: Kind::Zstd,
            level: 3,
            generated: None,
        };
        let alone = Encoder::new(settings)
            .and_then(|mut e| e.encode(&job(&frame), Vec::new()))
            .map(bytes)
            .expect("encoded");
        let mut worker = Encoder::new(settings).expect("new");
        for before in [data(1 << 20, "7".parse().expect("valid")), frame.to_vec()] {
            worker
                .encode(&job(&Arc::new(before)), Vec::new())
                .expect("encoded");
            let again = worker.encode(&job(&frame), Vec::new()).map(bytes);
            assert!(again.expect("encoded") == alone);
        }
    }

    #[test]
    fn bounds_cover_what_each_encoding_adds() {
        assert_eq!(blob_bound(Compression::None, None, 12345), 12345);
        for size in [
            0,
            1,
            1024,
            (GZIP_BLOCK as u64),
            (GZIP_BLOCK as u64) + 1,
            (ZSTD_FRAME as u64) * 3 + 7,
        ] {
            let gzip = blob_bound(Compression::Gzip, None, size);
            let zstd = blob_bound(Compression::Zstd, Some(1), size);
            assert!(gzip > size && zstd > size, "{size}");
            // Slightly larger: under 1% and 100 bytes per piece.
            assert!(gzip <= size + size / 100 + 100 * (size / (GZIP_BLOCK as u64) + 1));
            assert!(zstd <= size + size / 100 + 100 * (size / (ZSTD_FRAME as u64) + 1));
            // gzip -1 may spend 9 bits on a byte.
            let quick = blob_bound(Compression::Gzip, Some(1), size);
            assert!(quick >= size + size / 8, "{size}");
        }
    }
}
