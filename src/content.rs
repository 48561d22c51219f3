//! Deterministic file bytes: ChaCha8 seeded from (image seed, layer, file).
//!
//! Every builder reads file data from here, so the same spec yields the same bytes
//! whichever builder, machine or buffer size produced them. Any byte of a file can be
//! reached directly (`seek`): ChaCha is a counter-mode stream.

use std::io;
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest as _, Sha256};

use crate::plan::{FilePlan, LayerPlan};
use crate::platform::Platform;
use crate::spec::{LayerSpec, Ratio, Spec};

/// ChaCha's block: reads are served in whole blocks so the stream does not depend on how
/// the caller slices it (`fill_bytes` drops the tail of a partly used word).
const BLOCK: usize = 64;
/// A compressible file is made of segments of this size: `L` random bytes, then those `L`
/// bytes repeated to the end of the segment. gzip and zstd both see one literal run and
/// one long match per segment (the distance is well inside gzip's 32 KiB window), so the
/// ratio is about `SEGMENT / L`; the byte values stay uniform, and no two segments are alike.
const SEGMENT: usize = 4096;

/// The seed of an image's file bytes, for one platform.
///
/// It hashes the spec's content form (sizes, layouts, ratios; not the encodings, so a
/// gzip layer holds the same files as a plain one). Each platform of a multi-platform image
/// gets bytes of its own, as real multi-arch images do, except `linux/amd64`, whose seed is
/// the spec's alone: the `linux/amd64` image of a list is the single-platform image of the
/// spec. `shared` gives every platform those same bytes (`--shared-layers`).
pub fn seed(spec: &Spec, platform: &Platform, shared: bool) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(spec.content_canonical().as_bytes());
    if !shared && *platform != Platform::default() {
        hash.update(b"\0platform\0");
        hash.update(platform.to_string().as_bytes());
    }
    hash.finalize().into()
}

/// How far back a compressible file's bytes repeat: the random bytes at the start of each
/// segment, which the rest of the segment copies; `None` for random content. An encoder
/// that knows it finds every long match by comparing at this one distance.
pub(crate) fn repeat_distance(ratio: Ratio) -> Option<usize> {
    (ratio != Ratio::ONE).then(|| {
        let literal =
            (SEGMENT * 100 + usize::from(ratio.hundredths()) / 2) / usize::from(ratio.hundredths());
        literal.clamp(1, SEGMENT)
    })
}

/// The bytes of one file, exactly `len` of them.
#[derive(Debug)]
pub struct FileContent {
    rng: ChaCha8Rng,
    len: u64,
    remaining: u64,
    /// Random bytes, or the current segment of a compressible file.
    spare: Vec<u8>,
    spare_pos: usize,
    /// Random bytes per segment; `None` for incompressible (all random) content.
    literal: Option<usize>,
    /// The bytes themselves, for a file that is given rather than generated.
    given: Option<Arc<[u8]>>,
}

impl FileContent {
    /// The bytes of `file`, a file of `layer`, in the image whose content seed is `seed`
    /// ([`seed`]).
    pub fn of(layer: &LayerPlan, seed: &[u8; 32], file: &FilePlan) -> Self {
        match layer.given(file.index) {
            Some(bytes) => Self::given(Arc::clone(bytes)),
            None => Self::in_layer(&layer.spec, layer.number, seed, file.index, file.size),
        }
    }

    /// A file whose bytes are given: the `run` layer's.
    pub(crate) fn given(bytes: Arc<[u8]>) -> Self {
        let len = bytes.len() as u64;
        Self {
            rng: ChaCha8Rng::from_seed([0; 32]),
            len,
            remaining: len,
            spare: Vec::new(),
            spare_pos: 0,
            literal: None,
            given: Some(bytes),
        }
    }

    /// File `file` of layer `number`, whose spec is `layer`, in the image whose content seed
    /// is `seed`; `len` bytes of it. A `seed=NAME` layer's bytes are its own: drawn from its
    /// name and options, whatever image and place it is in.
    pub fn in_layer(layer: &LayerSpec, number: u32, seed: &[u8; 32], file: u64, len: u64) -> Self {
        match layer.seed {
            None => Self::with_ratio(seed, number, file, len, layer.ratio),
            Some(_) => {
                let own: [u8; 32] = Sha256::new()
                    .chain_update(b"image-maker seeded layer v1\0")
                    .chain_update(layer.content_canonical().as_bytes())
                    .finalize()
                    .into();
                Self::with_ratio(&own, 0, file, len, layer.ratio)
            }
        }
    }

    /// The content of file `file` (0-based) in layer `layer` (1-based) of the image whose
    /// [`seed`] is `seed`, with random bytes (ratio 1:1).
    pub fn new(seed: &[u8; 32], layer: u32, file: u64, len: u64) -> Self {
        Self::with_ratio(seed, layer, file, len, Ratio::ONE)
    }

    /// The same, compressible about `ratio`:1.
    pub fn with_ratio(seed: &[u8; 32], layer: u32, file: u64, len: u64, ratio: Ratio) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"image-maker content v1\0");
        hash.update(seed);
        hash.update(u64::from(layer).to_le_bytes());
        hash.update(file.to_le_bytes());
        let literal = repeat_distance(ratio);
        let spare = vec![0; if literal.is_some() { SEGMENT } else { BLOCK }];
        let spare_pos = spare.len();
        Self {
            rng: ChaCha8Rng::from_seed(hash.finalize().into()),
            len,
            remaining: len,
            spare,
            spare_pos,
            literal,
            given: None,
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Moves to byte `offset` of the file (at most its length) in constant time: the next
    /// read starts there.
    pub fn seek(&mut self, offset: u64) {
        let offset = offset.min(self.len);
        self.remaining = self.len - offset;
        if self.given.is_some() {
            return;
        }
        let unit = self.spare.len() as u64;
        let (index, within) = (offset / unit, (offset % unit) as usize);
        // ChaCha counts 32-bit words: 16 to a block.
        let word = match self.literal {
            None => index * 16,
            Some(literal) => index * Self::drawn(literal) as u64 / 4,
        };
        self.rng.set_word_pos(u128::from(word));
        self.spare_pos = self.spare.len();
        if within > 0 {
            self.refill();
            self.spare_pos = within;
        }
    }

    /// Random bytes drawn per segment: whole blocks, so that a segment's bytes start at a
    /// block of the stream and `seek` can find them.
    fn drawn(literal: usize) -> usize {
        literal.div_ceil(BLOCK) * BLOCK
    }

    /// The next block of random bytes, or the next segment.
    fn refill(&mut self) {
        match self.literal {
            None => self.rng.fill_bytes(&mut self.spare),
            Some(literal) => Self::segment(&mut self.rng, literal, &mut self.spare),
        }
        self.spare_pos = 0;
    }

    /// The next segment of a compressible file, into `segment` (`SEGMENT` bytes).
    fn segment(rng: &mut ChaCha8Rng, literal: usize, segment: &mut [u8]) {
        let drawn = Self::drawn(literal).min(SEGMENT);
        rng.fill_bytes(&mut segment[..drawn]);
        for start in (literal..SEGMENT).step_by(literal) {
            let end = (start + literal).min(SEGMENT);
            segment.copy_within(0..end - start, start);
        }
    }

    /// Fills as much of `buf` as the file has left; returns how much.
    pub fn fill(&mut self, buf: &mut [u8]) -> usize {
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let buf = &mut buf[..want];
        if let Some(given) = &self.given {
            let at = (self.len - self.remaining) as usize;
            buf.copy_from_slice(&given[at..at + want]);
            self.remaining -= want as u64;
            return want;
        }
        let mut done = 0;
        while done < want {
            if self.spare_pos == self.spare.len() {
                if self.literal.is_none() && want - done >= BLOCK {
                    // Random bytes go straight into the caller's buffer, whole blocks at a time.
                    let whole = (want - done) / BLOCK * BLOCK;
                    self.rng.fill_bytes(&mut buf[done..done + whole]);
                    done += whole;
                    continue;
                }
                if let Some(literal) = self.literal.filter(|_| want - done >= SEGMENT) {
                    // So do whole segments: one copy fewer of every byte.
                    Self::segment(&mut self.rng, literal, &mut buf[done..done + SEGMENT]);
                    done += SEGMENT;
                    continue;
                }
                self.refill();
            }
            let n = (self.spare.len() - self.spare_pos).min(want - done);
            buf[done..done + n].copy_from_slice(&self.spare[self.spare_pos..self.spare_pos + n]);
            self.spare_pos += n;
            done += n;
        }
        self.remaining -= want as u64;
        want
    }
}

impl io::Read for FileContent {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.fill(buf))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::digest::hex;
    use crate::spec::SpecHash as _;

    fn read_all(mut content: FileContent, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            let n = content.read(&mut buf).expect("infallible");
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn golden_vector() {
        // Pinned so that a dependency bump cannot silently change every image digest.
        let content = FileContent::new(&[7; 32], 1, 0, 1 << 20);
        let bytes = read_all(content, 1 << 16);
        assert_eq!(bytes.len(), 1 << 20);
        assert_eq!(hex(&bytes[..16]), "592db85bb05318228fccf38c8f647278");
        assert_eq!(
            hex(&Sha256::digest(&bytes)),
            "999bef62c25326781a149757ad43ef0fd63f948388ba2968596357481c9a1cb0"
        );
    }

    #[test]
    fn output_does_not_depend_on_read_sizes() {
        for ratio in ["1", "3", "1.01", "100"] {
            let ratio: Ratio = ratio.parse().expect("valid");
            let file = || FileContent::with_ratio(&[1; 32], 2, 3, 30_007, ratio);
            let reference = read_all(file(), 4096);
            for chunk in [1, 3, 63, 64, 65, 1000, 4095, 4097, 20_000, 1 << 16] {
                assert_eq!(read_all(file(), chunk), reference, "{ratio}, chunk {chunk}");
            }
        }
    }

    #[test]
    fn seek_lands_where_reading_would() {
        for ratio in ["1", "4", "2.5", "100"] {
            let ratio: Ratio = ratio.parse().expect("valid");
            let file = || FileContent::with_ratio(&[4; 32], 1, 2, 20_000, ratio);
            let whole = read_all(file(), 777);
            for offset in [0, 1, 63, 64, 65, 4095, 4096, 4097, 12_345, 19_999, 20_000] {
                let mut content = file();
                content.seek(offset);
                assert_eq!(content.remaining(), 20_000 - offset);
                let rest = read_all(content, 333);
                assert!(
                    rest == whole[offset as usize..],
                    "ratio {ratio}, offset {offset}"
                );
            }
        }
    }

    #[test]
    fn compressible_content_repeats_within_segments_only() {
        let ratio: Ratio = "4".parse().expect("valid");
        let bytes = read_all(
            FileContent::with_ratio(&[5; 32], 1, 0, 3 * 4096, ratio),
            4096,
        );
        // 1024 random bytes, repeated to the end of each 4 KiB segment.
        assert_eq!(bytes[..1024], bytes[1024..2048]);
        assert_eq!(bytes[..1024], bytes[3072..4096]);
        assert_ne!(bytes[..1024], bytes[4096..5120]);
        // Ratio 1 is the random stream, whatever the constructor.
        assert!(
            read_all(FileContent::with_ratio(&[5; 32], 1, 0, 999, Ratio::ONE), 64)
                == read_all(FileContent::new(&[5; 32], 1, 0, 999), 64)
        );
    }

    #[test]
    fn platforms_get_bytes_of_their_own_but_linux_amd64() {
        let spec: Spec = "1MB".parse().expect("valid");
        let amd64 = Platform::default();
        let arm64 = Platform::parse("linux/arm64").expect("valid");
        // linux/amd64 keeps the seed every single-platform image had: the spec hash.
        assert_eq!(seed(&spec, &amd64, false), spec.hash());
        assert_ne!(seed(&spec, &arm64, false), spec.hash());
        assert_eq!(seed(&spec, &arm64, true), spec.hash());
        // The encoding is not part of what the files hold.
        let gzip: Spec = "1MB:compression=gzip:level=9".parse().expect("valid");
        assert_eq!(seed(&gzip, &amd64, false), spec.hash());
    }

    #[test]
    fn layers_and_files_differ() {
        let a = read_all(FileContent::new(&[1; 32], 1, 0, 64), 64);
        let b = read_all(FileContent::new(&[1; 32], 2, 0, 64), 64);
        let c = read_all(FileContent::new(&[1; 32], 1, 1, 64), 64);
        let d = read_all(FileContent::new(&[2; 32], 1, 0, 64), 64);
        assert!(a != b && a != c && b != c && a != d);
    }
}
