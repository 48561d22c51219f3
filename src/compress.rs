//! Layer encodings: gzip and zstd on every core, with output bytes that depend on the input
//! and the level alone, never on how many cores or threads did the work.
//!
//! gzip is compressed as pigz does: the input is cut into fixed blocks, each deflated on its
//! own with the 32 KiB before it as its dictionary and ended on a byte boundary, and the
//! pieces are joined behind one header. Since the cut points are fixed, and each block is
//! deflated from a state that holds nothing of any earlier block ([`Deflater::restart`]),
//! so is every byte.
//! zstd runs its own multi-threaded mode, whose output is the same for any number of
//! workers from one up (it differs from the single-threaded mode, which is never used here).
//! Neither encoder sees the producer's flushes: the blob is framed by `encode` alone.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use flate2::{Compress, FlushCompress};

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
/// zstd's job size, fixed rather than derived from the level's window, so that memory stays
/// bounded: a 1 GiB zstd layer peaked at 36 MiB RSS with 2 MiB jobs, 62 MiB with 4 MiB.
const ZSTD_JOB: u32 = 2 << 20;

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
    encode(
        plan.spec.encoding(),
        plan.spec.effective_level(),
        threads,
        Some(layer::tar_size(plan)),
        out,
        |encoder| {
            if !diff_id {
                layer::write_tar(plan, seed, options, encoder, tick)?;
                return Ok(None);
            }
            let mut tar = HashingWriter::new(encoder);
            layer::write_tar(plan, seed, options, &mut tar, tick)?;
            Ok(Some(tar.complete().0.digest))
        },
    )
}

/// Runs `produce` with a writer whose bytes reach `out` encoded as `compression` says, at
/// `level` (the encoding's default when `None`), using `threads` compressing threads; `size`
/// is the number of bytes `produce` will write, when known (zstd records it). Returns what
/// `produce` returned and `out`.
pub(crate) fn encode<W: Write, T>(
    compression: Compression,
    level: Option<u32>,
    threads: usize,
    size: Option<u64>,
    out: W,
    produce: impl FnOnce(&mut dyn Write) -> io::Result<T>,
) -> io::Result<(T, W)> {
    let level = level.or(compression.default_level()).unwrap_or(0);
    match compression {
        Compression::None => {
            let mut out = out;
            let value = produce(&mut out)?;
            Ok((value, out))
        }
        Compression::Gzip => gzip(level, threads.max(1), out, produce),
        Compression::Zstd => zstd(level, threads.max(1), size, out, produce),
    }
}

fn zstd<W: Write, T>(
    level: u32,
    threads: usize,
    size: Option<u64>,
    out: W,
    produce: impl FnOnce(&mut dyn Write) -> io::Result<T>,
) -> io::Result<(T, W)> {
    use zstd::zstd_safe::CParameter;
    let level = i32::try_from(level).map_err(io::Error::other)?;
    let mut encoder = zstd::stream::write::Encoder::new(out, level)?;
    encoder.multithread(u32::try_from(threads).unwrap_or(u32::MAX))?;
    encoder.set_parameter(CParameter::JobSize(ZSTD_JOB))?;
    encoder.include_checksum(true)?;
    encoder.set_pledged_src_size(size)?;
    let mut unflushed = Unflushed(encoder);
    let value = produce(&mut unflushed)?;
    let mut encoder = unflushed.0;
    // One flush before the end, where the tar writer always put it: the released zstd
    // digests were made that way.
    encoder.flush()?;
    Ok((value, encoder.finish()?))
}

/// Passes writes on and swallows flushes. A zstd flush ends the current job early, so a
/// producer's flush would move the blob's bytes: where a producer flushes (a tar writer at
/// its end, a hashing layer between) must not matter.
struct Unflushed<W>(W);

impl<W: Write> Write for Unflushed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One block of a gzip stream, deflated by a worker.
struct Job {
    /// The previous block's input, whose end is this block's dictionary.
    previous: Option<Arc<Vec<u8>>>,
    data: Arc<Vec<u8>>,
    last: bool,
    done: Sender<io::Result<Vec<u8>>>,
}

fn gzip<W: Write, T>(
    level: u32,
    threads: usize,
    mut out: W,
    produce: impl FnOnce(&mut dyn Write) -> io::Result<T>,
) -> io::Result<(T, W)> {
    out.write_all(&GZIP_HEADER)?;
    std::thread::scope(|scope| {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads {
            let queue = Arc::clone(&queue);
            scope.spawn(move || deflate_jobs(&queue, level));
        }
        let mut writer = GzipWriter {
            out: &mut out,
            jobs,
            pending: VecDeque::new(),
            in_flight: 2 * threads,
            current: Vec::with_capacity(GZIP_BLOCK),
            previous: None,
            crc: crc32fast::Hasher::new(),
            size: 0,
        };
        let value = produce(&mut writer)?;
        writer.finish()?;
        // Dropping the writer closes the queue, which ends the workers.
        Ok(value)
    })
    .map(|value| (value, out))
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

/// Deflates blocks from `queue` until it closes.
fn deflate_jobs(queue: &Mutex<Receiver<Job>>, level: u32) {
    // One deflate state of each kind per worker, restarted between blocks: allocating one
    // costs more than compressing a block of random data.
    let states = Deflater::new(flate2::Compression::new(level)).and_then(|deflate| {
        Ok((
            deflate,
            Deflater::new(flate2::Compression::none())?,
            Deflater::new(flate2::Compression::fast())?,
        ))
    });
    let (mut deflate, mut store, mut probe) = match states {
        Ok(states) => states,
        // The writer sees the workers gone and reports it.
        Err(_) => return,
    };
    loop {
        let job = match queue.lock() {
            Ok(queue) => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let result = if incompressible(&mut probe, &job.data) {
            deflate_block(&mut store, &job)
        } else {
            deflate_block(&mut deflate, &job)
        };
        // The writer may have stopped waiting (an error elsewhere): nothing to do then.
        let _ = job.done.send(result);
    }
}

/// Bytes of each sample [`incompressible`] tries: less than the window's half, so that a
/// sample never writes where the probe's restart put its zeros.
const SAMPLE: usize = 4096;
const _: () = assert!(SAMPLE + 2 * 258 < DICTIONARY);

/// Whether deflate would gain nothing on `data`: three samples of it (start, middle, end)
/// do not shrink at the fastest level. Such a block is stored rather than searched for
/// matches, which on random data is about ten times faster and makes a blob a few bytes
/// larger per block than the searching would; the choice depends on the bytes alone, so
/// the stream stays deterministic.
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

/// The producer's side of a parallel gzip stream: cuts blocks, hands them to the workers,
/// and writes their results in order.
struct GzipWriter<'a, W: Write> {
    out: &'a mut W,
    jobs: Sender<Job>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    in_flight: usize,
    current: Vec<u8>,
    previous: Option<Arc<Vec<u8>>>,
    crc: crc32fast::Hasher,
    size: u64,
}

impl<W: Write> GzipWriter<'_, W> {
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let data = Arc::new(std::mem::replace(
            &mut self.current,
            Vec::with_capacity(GZIP_BLOCK),
        ));
        let (done, result) = mpsc::channel();
        let job = Job {
            previous: self.previous.replace(Arc::clone(&data)),
            data,
            last,
            done,
        };
        self.jobs
            .send(job)
            .map_err(|_| io::Error::other("the gzip workers stopped"))?;
        self.pending.push_back(result);
        while self.pending.len() > self.in_flight {
            self.write_next()?;
        }
        Ok(())
    }

    /// Waits for the oldest block and writes it.
    fn write_next(&mut self) -> io::Result<()> {
        let Some(result) = self.pending.pop_front() else {
            return Ok(());
        };
        let block = result
            .recv()
            .map_err(|_| io::Error::other("a gzip worker stopped"))??;
        self.out.write_all(&block)
    }

    fn finish(mut self) -> io::Result<()> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.write_next()?;
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        // ISIZE: the input's length modulo 2^32, as RFC 1952 has it.
        self.out.write_all(&(self.size as u32).to_le_bytes())?;
        self.out.flush()
    }
}

impl<W: Write> Write for GzipWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (GZIP_BLOCK - self.current.len()).min(buf.len());
        self.current.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.size += n as u64;
        if self.current.len() == GZIP_BLOCK {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
/// - zstd: each 2 MiB job bounded as `ZSTD_compressBound` bounds one input (n + n/256, plus
///   up to 64 bytes when n < 128 KiB), plus 18 bytes of frame header and 4 of checksum.
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
        Compression::Zstd => {
            18 + 4
                + pieces(u64::from(ZSTD_JOB), &|n| {
                    n + (n >> 8)
                        + if n < 128 * 1024 {
                            ((128 * 1024) - n) >> 11
                        } else {
                            0
                        }
                })
        }
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
        let pinned = [
            (
                Compression::Gzip,
                "sha256:b73ef46affd89b7a998b922e05df160ca8a5387c4c1ce2ddac9dfdb39489efd4",
                22_875_776,
            ),
            (
                Compression::Zstd,
                "sha256:e3d03effd2999f9f0522741f7e05d99cd303e5d3c0099645213604a9fe0ccb85",
                22_517_437,
            ),
        ];
        for (compression, digest, size) in pinned {
            for threads in 1..=8 {
                let write = writes[threads % writes.len()];
                let ((), out) = encode(
                    compression,
                    None,
                    threads,
                    Some(input.len() as u64),
                    Vec::new(),
                    |w| {
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
                    },
                )
                .expect("in memory");
                let blob = Blob::of(&out);
                assert_eq!(
                    (blob.digest.as_str(), blob.size),
                    (digest, size),
                    "{compression:?}, {threads} threads, writes of {write}"
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
            compression,
            level,
            threads,
            Some(input.len() as u64),
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
        // zstd pin moved by 3 bytes (an empty block) when `encode` took over the flush
        // before the end, which only the tar writer had made: images kept their digests,
        // and this input, written without a flush, now ends as theirs do.
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
                "sha256:7d92480ee1ec6def1766962124385d28175ba94b19aaef98540abb9b9cec32fd",
                307225
            )
        );
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
            u64::from(ZSTD_JOB) * 3 + 7,
        ] {
            let gzip = blob_bound(Compression::Gzip, None, size);
            let zstd = blob_bound(Compression::Zstd, Some(1), size);
            assert!(gzip > size && zstd > size, "{size}");
            // Slightly larger: under 1% and 100 bytes per piece.
            assert!(gzip <= size + size / 100 + 100 * (size / (GZIP_BLOCK as u64) + 1));
            assert!(zstd <= size + size / 100 + 100 * (size / u64::from(ZSTD_JOB) + 1));
            // gzip -1 may spend 9 bits on a byte.
            let quick = blob_bound(Compression::Gzip, Some(1), size);
            assert!(quick >= size + size / 8, "{size}");
        }
    }
}
