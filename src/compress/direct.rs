//! gzip and zstd pieces for generated content, written from the matches its generator made
//! rather than searched for.
//!
//! A generated layer's tar holds three kinds of bytes: random ones, copies of the random
//! bytes a fixed distance before them (a compressible file's segments,
//! [`crate::content::repeat_distance`]), and runs of one byte (the zeros of tar headers and
//! padding). A general encoder tries every position against a hash of earlier ones to find
//! those matches: deflate level 6 ran at 125 MB/s a core on `ratio=3` data here, zstd level
//! 3 at about 450. Knowing the two distances, a probe every 8 bytes finds every match of 15
//! bytes or more with one compare per distance, and the rest is random: it is written as
//! it is (deflate's stored blocks, zstd's raw literals), which is what it would cost coded.
//! Encoding is then about as cheap as copying, and the blob about as small as level 6's or
//! 3's (within a percent on `ratio=3`).
//!
//! The output is valid for any input (what the probe does not find is written as
//! literals), and depends on the input and the distance alone. Each piece is complete in
//! itself: nothing refers to bytes before it, so a stream resumes at any piece with no
//! dictionary.

/// Bytes a probe compares.
const PROBE: usize = 8;
/// Probes tried together: in random bytes (a third of a `ratio=3` layer, all of a plain one)
/// almost every probe fails, and four of them cost about what one did.
const PROBES: usize = 4;
/// Bytes a match is extended by first; each stretch that holds doubles the next, up to
/// `LONGEST_STRETCH`, since a copy runs to its segment's end, thousands of bytes on.
const STRETCH: usize = 64;
const LONGEST_STRETCH: usize = 16 << 10;
/// The shortest match written: shorter ones save too little to pay for coding them (and in
/// zstd for the block a change of code starts).
const MIN_MATCH: usize = 32;

/// `len` bytes at `start` equal to the `distance` bytes before each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Match {
    start: usize,
    len: usize,
    distance: usize,
}

impl Match {
    fn end(&self) -> usize {
        self.start + self.len
    }
}

/// The matches of `data` at distance `repeat` and 1, in order, none overlapping, none
/// reaching before `data`: a probe every `PROBE` bytes, each that holds extended both ways.
fn matches(data: &[u8], repeat: Option<usize>) -> Vec<Match> {
    let word = |i: usize| u64::from_ne_bytes(data[i..i + PROBE].try_into().expect("8 bytes"));
    let repeat = repeat.filter(|&d| d > 1);
    let mut found = Vec::new();
    let (mut at, mut floor) = (0, 0);
    while at + PROBE <= data.len() {
        // Until a probe can reach back by `repeat`, probes go one by one.
        let far = repeat.filter(|&d| at >= d);
        if at >= 1 && at + PROBE * PROBES <= data.len() && repeat.is_some() == far.is_some() {
            // No probe of the next few holds at either distance: all of them fail, as they
            // would one by one. At distance 1 a probe holds only where its 8 bytes are one
            // byte 8 times, which a probe tells from its own word.
            let block = &data[at..at + PROBE * PROBES];
            let back = far.map(|d| &data[at - d..at - d + PROBE * PROBES]);
            let word_of = |bytes: &[u8], i: usize| {
                u64::from_ne_bytes(bytes[i * PROBE..(i + 1) * PROBE].try_into().expect("8"))
            };
            let mut held = false;
            for i in 0..PROBES {
                let here = word_of(block, i);
                held |= here == here.rotate_left(8);
                held |= back.is_some_and(|back| here == word_of(back, i));
            }
            if !held {
                at += PROBE * PROBES;
                continue;
            }
        }
        let here = word(at);
        let distance = match repeat {
            Some(d) if at >= d && here == word(at - d) => d,
            _ if at >= 1 && here == word(at - 1) => 1,
            _ => {
                at += PROBE;
                continue;
            }
        };
        let mut start = at;
        while start > floor.max(distance) && data[start - 1] == data[start - 1 - distance] {
            start -= 1;
        }
        let end = extend(data, at + PROBE, distance);
        if end - start >= MIN_MATCH {
            found.push(Match {
                start,
                len: end - start,
                distance,
            });
            (floor, at) = (end, end);
        } else {
            at += PROBE;
        }
    }
    found
}

/// The end of the run of bytes from `end` on that equal those `distance` before them.
fn extend(data: &[u8], mut end: usize, distance: usize) -> usize {
    let same =
        |at: usize, len: usize| data[at..at + len] == data[at - distance..at - distance + len];
    // Stretches compared with the library's vectorised compare, longer while they hold and
    // shorter once one fails, then bytes: the run's end, found in few calls.
    let mut stretch = STRETCH;
    loop {
        if end + stretch <= data.len() && same(end, stretch) {
            end += stretch;
            stretch = (stretch * 2).min(LONGEST_STRETCH);
        } else if stretch > STRETCH {
            stretch /= 2;
        } else {
            break;
        }
    }
    while end < data.len() && data[end] == data[end - distance] {
        end += 1;
    }
    end
}

/// Bits written least significant first, as both formats order them.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    count: u32,
}

impl Bits {
    /// Bits after the bytes `out` holds.
    fn after(out: Vec<u8>) -> Self {
        Self {
            out,
            acc: 0,
            count: 0,
        }
    }

    /// The low `count` bits of `value`; `count` at most 32.
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value & mask(count)) << self.count;
        self.count += count;
        while self.count >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.count -= 8;
        }
    }

    /// Zeros to the next byte boundary.
    fn align(&mut self) {
        if self.count > 0 {
            self.out.push(self.acc as u8);
            (self.acc, self.count) = (0, 0);
        }
    }
}

fn mask(count: u32) -> u32 {
    if count >= 32 {
        u32::MAX
    } else {
        (1 << count) - 1
    }
}

/// The last entry of `bases` at most `value`: the code whose range holds it.
fn code(bases: &[u32], value: u32) -> usize {
    bases.partition_point(|&base| base <= value) - 1
}

// deflate (RFC 1951 §3.2.5): length and distance codes' first values and extra bits.
const LENGTH_BASE: [u32; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DISTANCE_BASE: [u32; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DISTANCE_EXTRA: [u32; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// deflate's longest match, and its window.
const LONGEST: usize = 258;
const WINDOW: usize = 32 * 1024;
/// The most a stored block holds.
const STORED_MOST: usize = 65_535;
/// Literals from this many on are stored rather than coded: a stored block costs 5 bytes
/// and the end of a fixed block, a fixed code 0.44 bits a random byte over 8.
const STORED_LEAST: usize = 128;

/// One piece of a deflate stream: `data`'s matches in fixed-Huffman blocks, its other bytes
/// in stored blocks (or coded, a few at a time), ended on a byte boundary by an empty stored
/// block, the stream's last when `last`. Appended to `out`.
pub(super) fn deflate(data: &[u8], repeat: Option<usize>, last: bool, out: &mut Vec<u8>) {
    out.reserve(data.len() + data.len() / 1024 + 64);
    let mut piece = Deflate {
        bits: Bits::after(std::mem::take(out)),
        fixed: false,
    };
    let found = matches(data, repeat);
    if found.is_empty() {
        // Stored whole, however short: never larger than stored blocks (what
        // `blob_bound` allows), where a few coded bytes could take 9 bits each.
        piece.stored_all(data);
    } else {
        let mut at = 0;
        for found in found {
            debug_assert!(found.distance <= WINDOW);
            piece.literals(&data[at..found.start]);
            piece.copy(found);
            at = found.end();
        }
        piece.literals(&data[at..]);
    }
    piece.end_fixed();
    piece.stored(&[], last);
    *out = piece.bits.out;
}

struct Deflate {
    bits: Bits,
    /// Whether a fixed-Huffman block is open.
    fixed: bool,
}

impl Deflate {
    /// A fixed-Huffman code, which deflate writes most significant bit first.
    fn symbol(&mut self, symbol: u32) {
        let (code, count) = match symbol {
            0..=143 => (0x30 + symbol, 8),
            144..=255 => (0x190 + symbol - 144, 9),
            256..=279 => (symbol - 256, 7),
            _ => (0xC0 + symbol - 280, 8),
        };
        self.bits.put(code.reverse_bits() >> (32 - count), count);
    }

    fn open_fixed(&mut self) {
        if !self.fixed {
            // BFINAL 0, BTYPE 01.
            self.bits.put(0b010, 3);
            self.fixed = true;
        }
    }

    fn end_fixed(&mut self) {
        if self.fixed {
            self.symbol(256);
            self.fixed = false;
        }
    }

    fn stored(&mut self, bytes: &[u8], last: bool) {
        // BFINAL, BTYPE 00, then LEN and its complement from the next byte.
        self.bits.put(u32::from(last), 3);
        self.bits.align();
        let len = bytes.len() as u16;
        self.bits.out.extend_from_slice(&len.to_le_bytes());
        self.bits.out.extend_from_slice(&(!len).to_le_bytes());
        self.bits.out.extend_from_slice(bytes);
    }

    fn literals(&mut self, bytes: &[u8]) {
        if bytes.len() < STORED_LEAST {
            if !bytes.is_empty() {
                self.open_fixed();
            }
            for &byte in bytes {
                self.symbol(u32::from(byte));
            }
            return;
        }
        self.stored_all(bytes);
    }

    fn stored_all(&mut self, bytes: &[u8]) {
        self.end_fixed();
        for part in bytes.chunks(STORED_MOST) {
            self.stored(part, false);
        }
    }

    fn copy(&mut self, found: Match) {
        self.open_fixed();
        let distance = found.distance as u32;
        let distance_code = code(&DISTANCE_BASE, distance);
        let mut left = found.len;
        while left > 0 {
            // Every part at least 3 long, deflate's shortest.
            let part = match left {
                0..=LONGEST => left,
                _ if left - LONGEST < 3 => left - 3,
                _ => LONGEST,
            };
            let length = part as u32;
            let length_code = code(&LENGTH_BASE, length);
            self.symbol(257 + length_code as u32);
            self.bits
                .put(length - LENGTH_BASE[length_code], LENGTH_EXTRA[length_code]);
            // Distance codes are 5 bits, most significant first.
            self.bits
                .put((distance_code as u32).reverse_bits() >> 27, 5);
            self.bits.put(
                distance - DISTANCE_BASE[distance_code],
                DISTANCE_EXTRA[distance_code],
            );
            left -= part;
        }
    }
}

// zstd (RFC 8878 §3.1.1.3.2.1.1): literal and match length codes' first values and extra
// bits.
const LITERALS_BASE: [u32; 36] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 28, 32, 40, 48, 64,
    128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
];
const LITERALS_EXTRA: [u32; 36] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11,
    12, 13, 14, 15, 16,
];
const MATCH_BASE: [u32; 53] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
    28, 29, 30, 31, 32, 33, 34, 35, 37, 39, 41, 43, 47, 51, 59, 67, 83, 99, 131, 259, 515, 1027,
    2051, 4099, 8195, 16387, 32771, 65539,
];
const MATCH_EXTRA: [u32; 53] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
];
/// A block's most content: the format's 128 KiB.
pub(super) const BLOCK: usize = 128 * 1024;

/// One sequence: literals, then a match.
#[derive(Debug, Clone, Copy)]
struct Sequence {
    literals: u32,
    len: u32,
    /// The offset plus 3: never a repeat code.
    offset: u32,
}

impl Sequence {
    /// Literal length, offset and match length codes.
    fn codes(&self) -> (usize, u32, usize) {
        (
            code(&LITERALS_BASE, self.literals),
            31 - self.offset.leading_zeros(),
            code(&MATCH_BASE, self.len),
        )
    }
}

/// The blocks of one zstd frame of `data`, appended to `out` (which holds the frame's
/// header): runs of sequences that share their codes in compressed blocks whose tables are
/// one symbol each (RLE mode, so that a sequence costs only its extra bits), literals raw,
/// and raw blocks where that would not be smaller. False, with nothing appended, when
/// `data` has no match: its raw frame is that, and is better written from where it is.
pub(super) fn zstd_blocks(data: &[u8], repeat: Option<usize>, out: &mut Vec<u8>) -> bool {
    let found = matches(data, repeat);
    if found.is_empty() {
        return false;
    }
    out.reserve(data.len() + data.len() / 256 + 16);
    let mut frame = Frame {
        data,
        out: std::mem::take(out),
        from: 0,
        cursor: 0,
        sequences: Vec::new(),
        codes: None,
    };
    for found in found {
        frame.add(found);
    }
    *out = frame.finish();
    true
}

struct Frame<'a> {
    data: &'a [u8],
    out: Vec<u8>,
    /// Where the open block starts.
    from: usize,
    /// The end of its last match.
    cursor: usize,
    sequences: Vec<Sequence>,
    codes: Option<(usize, u32, usize)>,
}

impl Frame<'_> {
    fn add(&mut self, found: Match) {
        let mut next = Sequence {
            literals: (found.start - self.cursor) as u32,
            len: found.len as u32,
            offset: found.distance as u32 + 3,
        };
        if !self.sequences.is_empty()
            && (Some(next.codes()) != self.codes || found.end() - self.from > BLOCK)
        {
            self.close(self.cursor, false);
        }
        if found.end() - self.from > BLOCK {
            // Too long for a block of its own: the literals go alone, then the match in
            // parts, each at least 3 long, zstd's shortest.
            self.raw(found.start, false);
            let mut left = found.len;
            while left > BLOCK {
                let part = if left - BLOCK < 3 { BLOCK - 3 } else { BLOCK };
                let sequence = Sequence {
                    literals: 0,
                    len: part as u32,
                    offset: next.offset,
                };
                self.codes = Some(sequence.codes());
                self.sequences.push(sequence);
                self.cursor += part;
                self.close(self.cursor, false);
                left -= part;
            }
            next.literals = 0;
            next.len = left as u32;
        }
        self.codes = Some(next.codes());
        self.sequences.push(next);
        self.cursor = found.end();
    }

    fn finish(mut self) -> Vec<u8> {
        let end = self.data.len();
        if !self.sequences.is_empty() && end - self.from <= BLOCK {
            self.close(end, true);
        } else {
            if !self.sequences.is_empty() {
                self.close(self.cursor, false);
            }
            self.raw(end, true);
        }
        self.out
    }

    /// Raw blocks up to `until`; at least one, empty, when `last` and nothing is left.
    fn raw(&mut self, until: usize, last: bool) {
        let bytes = &self.data[self.from..until];
        if bytes.is_empty() && last {
            self.out.extend_from_slice(&[1, 0, 0]);
        }
        let mut parts = bytes.chunks(BLOCK).peekable();
        while let Some(part) = parts.next() {
            let last = last && parts.peek().is_none();
            block_header(&mut self.out, last, 0, part.len());
            self.out.extend_from_slice(part);
        }
        (self.from, self.cursor) = (until, until);
    }

    /// The open block's sequences, and its literals up to `until`, as a compressed block
    /// (or raw, when that is smaller).
    fn close(&mut self, until: usize, last: bool) {
        let content = until - self.from;
        let count = self.sequences.len();
        let Some((literal_code, offset_code, match_code)) = self.codes.filter(|_| count > 0) else {
            return self.raw(until, last);
        };
        let matched: usize = self.sequences.iter().map(|s| s.len as usize).sum();
        let literals = content - matched;
        // Written in place behind a header whose size is known at the end; taken back for
        // raw blocks when they are smaller.
        let mark = self.out.len();
        let body = &mut self.out;
        body.extend_from_slice(&[0; 3]);
        // Raw literals: type 0, then the size in 5, 12 or 20 bits.
        match literals {
            0..=31 => body.push((literals as u8) << 3),
            32..=4095 => body.extend_from_slice(&((literals as u16) << 4 | 0b0100).to_le_bytes()),
            _ => body.extend_from_slice(&((literals as u32) << 4 | 0b1100).to_le_bytes()[..3]),
        }
        let mut at = self.from;
        for sequence in &self.sequences {
            let literals = sequence.literals as usize;
            body.extend_from_slice(&self.data[at..at + literals]);
            at += literals + sequence.len as usize;
        }
        body.extend_from_slice(&self.data[at..until]);
        match count {
            0..=127 => body.push(count as u8),
            _ => body.extend_from_slice(&((count as u16) | 0x8000).to_be_bytes()),
        }
        // All three tables in RLE mode, each its one symbol.
        body.extend_from_slice(&[
            0b0101_0100,
            literal_code as u8,
            offset_code as u8,
            match_code as u8,
        ]);
        // Read backwards: the last sequence's bits are written first.
        let mut bits = Bits::after(std::mem::take(body));
        for sequence in self.sequences.iter().rev() {
            bits.put(
                sequence.literals - LITERALS_BASE[literal_code],
                LITERALS_EXTRA[literal_code],
            );
            bits.put(
                sequence.len - MATCH_BASE[match_code],
                MATCH_EXTRA[match_code],
            );
            bits.put(sequence.offset - (1 << offset_code), offset_code);
        }
        bits.put(1, 1);
        bits.align();
        self.out = bits.out;
        self.sequences.clear();
        self.codes = None;
        let size = self.out.len() - mark - 3;
        if size < content {
            let mut header = Vec::with_capacity(3);
            block_header(&mut header, last, 2, size);
            self.out[mark..mark + 3].copy_from_slice(&header);
            (self.from, self.cursor) = (until, until);
        } else {
            self.out.truncate(mark);
            self.raw(until, last);
        }
    }
}

/// A block's header: last-block bit, type, size; 24 bits, little-endian.
pub(super) fn block_header(out: &mut Vec<u8>, last: bool, kind: u32, size: usize) {
    let header = u32::from(last) | kind << 1 | (size as u32) << 3;
    out.extend_from_slice(&header.to_le_bytes()[..3]);
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    use super::*;

    fn inflate(pieces: &[Vec<u8>]) -> Vec<u8> {
        let stream = pieces.concat();
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&stream[..])
            .read_to_end(&mut out)
            .expect("a valid deflate stream");
        out
    }

    fn deflated(data: &[u8], repeat: Option<usize>, last: bool) -> Vec<u8> {
        let mut out = Vec::new();
        deflate(data, repeat, last, &mut out);
        out
    }

    fn unzstd(frame: &[u8]) -> Vec<u8> {
        zstd::stream::decode_all(frame).expect("a valid zstd frame")
    }

    fn frame(data: &[u8], repeat: Option<usize>) -> Vec<u8> {
        let mut out = super::super::frame_header(data.len() as u64);
        match zstd_blocks(data, repeat, &mut out) {
            true => out,
            false => super::super::raw_frame(data),
        }
    }

    /// Random runs, copies at `repeat` and at other distances, runs of one byte, in random
    /// lengths: every path of both writers.
    fn mixture(seed: u64, len: usize, repeat: usize) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut data = vec![0; 0];
        while data.len() < len {
            let kind = rng.next_u32() % 5;
            let run = [1, 7, 31, 33, 300, 5000, 70_000, 200_000][rng.next_u32() as usize % 8];
            let run = run.min(len - data.len());
            match kind {
                0 => {
                    let mut random = vec![0; run];
                    rng.fill_bytes(&mut random);
                    data.extend_from_slice(&random);
                }
                1 | 2 if data.len() >= repeat => {
                    let distance = if kind == 1 { repeat } else { 1 + repeat / 2 };
                    for _ in 0..run {
                        data.push(data[data.len() - distance]);
                    }
                }
                _ => data.extend(std::iter::repeat_n(rng.next_u32() as u8, run)),
            }
        }
        data
    }

    /// One probe at a time, each match extended a byte at a time: what `matches` finds.
    fn matches_one_by_one(data: &[u8], repeat: Option<usize>) -> Vec<Match> {
        let word = |i: usize| u64::from_ne_bytes(data[i..i + PROBE].try_into().expect("8"));
        let repeat = repeat.filter(|&d| d > 1);
        let mut found = Vec::new();
        let (mut at, mut floor) = (0, 0);
        while at + PROBE <= data.len() {
            let here = word(at);
            let distance = match repeat {
                Some(d) if at >= d && here == word(at - d) => d,
                _ if at >= 1 && here == word(at - 1) => 1,
                _ => {
                    at += PROBE;
                    continue;
                }
            };
            let mut start = at;
            while start > floor.max(distance) && data[start - 1] == data[start - 1 - distance] {
                start -= 1;
            }
            let mut end = at + PROBE;
            while end < data.len() && data[end] == data[end - distance] {
                end += 1;
            }
            if end - start >= MIN_MATCH {
                found.push(Match {
                    start,
                    len: end - start,
                    distance,
                });
                (floor, at) = (end, end);
            } else {
                at += PROBE;
            }
        }
        found
    }

    #[test]
    fn probes_taken_together_find_what_probes_one_by_one_do() {
        for (seed, repeat) in [(3, 1365), (4, 9), (5, 2), (6, 4096)] {
            let data = mixture(seed, 3 << 20, repeat);
            for len in [0, 7, 8, 31, 33, 100, 5000, data.len()] {
                let data = &data[..len];
                for repeat in [None, Some(repeat)] {
                    assert_eq!(
                        matches(data, repeat),
                        matches_one_by_one(data, repeat),
                        "seed {seed}, {len} bytes, repeat {repeat:?}"
                    );
                }
            }
        }
        let ratio = "3".parse::<crate::spec::Ratio>().expect("ratio");
        let mut segments = vec![0; 8 << 20];
        let mut file =
            crate::content::FileContent::with_ratio(&[7; 32], 1, 0, segments.len() as u64, ratio);
        file.fill(&mut segments);
        let repeat = crate::content::repeat_distance(ratio);
        assert_eq!(
            matches(&segments, repeat),
            matches_one_by_one(&segments, repeat)
        );
    }

    #[test]
    fn matches_are_found_at_both_distances_and_nowhere_they_are_not() {
        let data = mixture(1, 1 << 20, 1365);
        let found = matches(&data, Some(1365));
        assert!(found.iter().any(|m| m.distance == 1365));
        assert!(found.iter().any(|m| m.distance == 1));
        let mut end = 0;
        for m in &found {
            assert!(m.start >= end && m.start >= m.distance && m.len >= MIN_MATCH);
            for i in m.start..m.end() {
                assert_eq!(data[i], data[i - m.distance]);
            }
            end = m.end();
        }
    }

    #[test]
    fn deflate_pieces_decode_to_their_input() {
        for seed in 0..12 {
            let len = [0, 1, 100, 4096, 131_072, 700_001][seed as usize % 6];
            let data = mixture(seed, len, 1365);
            let mut pieces = Vec::new();
            let parts: Vec<&[u8]> = data.chunks(40_000).collect();
            for (i, part) in parts.iter().enumerate() {
                pieces.push(deflated(part, Some(1365), i + 1 == parts.len()));
            }
            if parts.is_empty() {
                pieces.push(deflated(&[], Some(1365), true));
            }
            assert!(inflate(&pieces) == data, "seed {seed}, {len} bytes");
            // Each piece is a stream of its own, but for the last block's flag.
            let alone = deflated(&data, None, true);
            assert!(inflate(&[alone]) == data);
        }
    }

    #[test]
    fn zstd_frames_decode_to_their_input() {
        for seed in 0..12 {
            let len = [0, 1, 100, 4096, BLOCK, BLOCK + 1, 2 << 20][seed as usize % 7];
            let data = mixture(seed, len, 1365);
            assert!(unzstd(&frame(&data, Some(1365))) == data, "seed {seed}");
            assert!(unzstd(&frame(&data, None)) == data, "seed {seed}");
        }
        // One long run: a match longer than a block, in parts.
        let mut data = vec![7; 3 * BLOCK + 2];
        data[0] = 1;
        assert!(unzstd(&frame(&data, None)) == data);
        assert!(frame(&data, None).len() < 100);
    }

    #[test]
    fn nothing_grows_beyond_stored_blocks() {
        // What `blob_bound` allows a piece: its bytes in stored (or raw) blocks.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for len in [
            0,
            1,
            31,
            100,
            127,
            128,
            1000,
            65_535,
            65_536,
            BLOCK + 1,
            1 << 20,
        ] {
            let mut data = vec![0; len];
            rng.fill_bytes(&mut data);
            // High bytes, whose fixed codes are 9 bits.
            let high: Vec<u8> = data.iter().map(|b| b | 0x90).collect();
            for data in [data, high] {
                let stored = len + 5 * (len / STORED_MOST + 1) + 5;
                assert!(deflated(&data, Some(1365), false).len() <= stored, "{len}");
                let raw = super::super::raw_frame(&data).len();
                assert!(frame(&data, Some(1365)).len() <= raw, "{len}");
                assert!(inflate(&[deflated(&data, Some(1365), true)]) == data);
            }
        }
    }

    #[test]
    fn compressible_content_shrinks_as_a_searching_encoder_would() {
        let ratio = "3".parse().expect("valid");
        let distance = crate::content::repeat_distance(ratio);
        let mut data = vec![0; 2 << 20];
        crate::content::FileContent::with_ratio(&[3; 32], 1, 0, data.len() as u64, ratio)
            .fill(&mut data);
        let gzip = deflated(&data, distance, true).len();
        let zstd = frame(&data, distance).len();
        // No larger than zstd level 3 makes it; gzip within 3% of zlib's level 6, whose
        // dynamic codes make a match cheaper than the fixed ones here.
        let reference = zstd::bulk::compress(&data, 3).expect("compresses").len();
        assert!(zstd <= reference, "{zstd} against {reference}");
        let mut zlib = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        std::io::Write::write_all(&mut zlib, &data).expect("in memory");
        let reference = zlib.finish().expect("in memory").len();
        assert!(gzip * 100 < reference * 103, "{gzip} against {reference}");
        assert!(unzstd(&frame(&data, distance)) == data);
    }
}
