//! Layer encodings: gzip and zstd on every core, with output bytes that depend on the input
//! and the level alone, never on how many cores or threads did the work.
//!
//! gzip is compressed as pigz does: the input is cut into fixed blocks, each deflated on its
//! own with the 32 KiB before it as its dictionary and ended on a byte boundary, and the
//! pieces are joined behind one header. Since the cut points are fixed, so is every byte.
//! zstd runs its own multi-threaded mode, whose output is the same for any number of
//! workers from one up (it differs from the single-threaded mode, which is never used here).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use flate2::{Compress, FlushCompress};

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

/// How many threads compress: every core this process may use. The output does not depend
/// on it.
pub(crate) fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
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
    let value = produce(&mut encoder)?;
    Ok((value, encoder.finish()?))
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

/// Deflates blocks from `queue` until it closes.
fn deflate_jobs(queue: &Mutex<Receiver<Job>>, level: u32) {
    // One deflate state of each kind per worker, reset between blocks: allocating one costs
    // more than compressing a block of random data.
    let mut deflate = Compress::new(flate2::Compression::new(level), false);
    let mut store = Compress::new(flate2::Compression::none(), false);
    let mut probe = Compress::new(flate2::Compression::fast(), false);
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

/// Bytes of each sample [`incompressible`] tries.
const SAMPLE: usize = 4096;

/// Whether deflate would gain nothing on `data`: three samples of it (start, middle, end)
/// do not shrink at the fastest level. Such a block is stored rather than searched for
/// matches, which on random data is about ten times faster and makes a blob a few bytes
/// larger per block than the searching would; the choice depends on the bytes alone, so
/// the stream stays deterministic.
fn incompressible(probe: &mut Compress, data: &[u8]) -> bool {
    if data.len() < 3 * SAMPLE {
        return false;
    }
    let mut output = Vec::with_capacity(2 * SAMPLE);
    [0, data.len() / 2 - SAMPLE / 2, data.len() - SAMPLE]
        .into_iter()
        .all(|start| {
            probe.reset();
            output.clear();
            let sample = &data[start..start + SAMPLE];
            match probe.compress_vec(sample, &mut output, FlushCompress::Finish) {
                Ok(flate2::Status::StreamEnd) => output.len() >= SAMPLE * 99 / 100,
                _ => false,
            }
        })
}

fn deflate_block(deflate: &mut Compress, job: &Job) -> io::Result<Vec<u8>> {
    deflate.reset();
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
        let mut probe = Compress::new(flate2::Compression::fast(), false);
        assert!(incompressible(&mut probe, &random));
        let ratio = "2".parse::<Ratio>().expect("valid");
        assert!(!incompressible(&mut probe, &data(GZIP_BLOCK as u64, ratio)));
        // Random but for a compressible middle: compressed.
        let mut mixed = random.clone();
        mixed[GZIP_BLOCK / 2 - SAMPLE..GZIP_BLOCK / 2 + SAMPLE].fill(b'a');
        assert!(!incompressible(&mut probe, &mixed));
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
        // A change to either encoder's bytes changes every compressed image's digest.
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
                "sha256:59eab2d836ef9af3d4d6d10f5c6f37e3cb2a3e7817f5dbc38703d6419fc3f71e",
                307222
            )
        );
    }
}
