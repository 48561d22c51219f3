//! Deterministic file bytes: ChaCha8 seeded from (spec hash, layer, file).
//!
//! Every builder reads file data from here, so the same spec yields the same bytes
//! whichever builder, machine or buffer size produced them.

use std::io;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest as _, Sha256};

/// ChaCha's block: reads are served in whole blocks so the stream does not depend on how
/// the caller slices it (`fill_bytes` drops the tail of a partly used word).
const BLOCK: usize = 64;

/// The bytes of one file, exactly `len` of them.
#[derive(Debug)]
pub struct FileContent {
    rng: ChaCha8Rng,
    remaining: u64,
    spare: [u8; BLOCK],
    spare_pos: usize,
}

impl FileContent {
    /// The content of file `file` (0-based) in layer `layer` (1-based) of the spec with
    /// hash `spec_hash`.
    pub fn new(spec_hash: &[u8; 32], layer: u32, file: u64, len: u64) -> Self {
        let mut seed = Sha256::new();
        seed.update(b"image-maker content v1\0");
        seed.update(spec_hash);
        seed.update(u64::from(layer).to_le_bytes());
        seed.update(file.to_le_bytes());
        Self {
            rng: ChaCha8Rng::from_seed(seed.finalize().into()),
            remaining: len,
            spare: [0; BLOCK],
            spare_pos: BLOCK,
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Skips the next `n` bytes (at most what is left) without generating them: ChaCha's
    /// block counter is set directly, so a read can start anywhere in a file in O(1).
    pub fn skip(&mut self, n: u64) {
        let n = n.min(self.remaining);
        let buffered = (BLOCK - self.spare_pos) as u64;
        if n <= buffered {
            self.spare_pos += n as usize;
        } else {
            // The stream position is the generator's, less the spare bytes not yet read.
            let at = self.rng.get_word_pos() * 4 - u128::from(buffered) + u128::from(n);
            let block = BLOCK as u128;
            self.rng.set_word_pos(at / block * (block / 4));
            self.spare_pos = BLOCK;
            let within = (at % block) as usize;
            if within > 0 {
                self.rng.fill_bytes(&mut self.spare);
                self.spare_pos = within;
            }
        }
        self.remaining -= n;
    }

    /// Fills as much of `buf` as the file has left; returns how much.
    pub fn fill(&mut self, buf: &mut [u8]) -> usize {
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let buf = &mut buf[..want];
        let mut done = 0;
        if self.spare_pos < BLOCK {
            let n = (BLOCK - self.spare_pos).min(want);
            buf[..n].copy_from_slice(&self.spare[self.spare_pos..self.spare_pos + n]);
            self.spare_pos += n;
            done = n;
        }
        let whole = (want - done) / BLOCK * BLOCK;
        self.rng.fill_bytes(&mut buf[done..done + whole]);
        done += whole;
        if done < want {
            self.rng.fill_bytes(&mut self.spare);
            let n = want - done;
            buf[done..].copy_from_slice(&self.spare[..n]);
            self.spare_pos = n;
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
        let reference = read_all(FileContent::new(&[1; 32], 2, 3, 10_007), 4096);
        for chunk in [1, 3, 63, 64, 65, 1000, 20_000] {
            assert_eq!(
                read_all(FileContent::new(&[1; 32], 2, 3, 10_007), chunk),
                reference,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn skipping_lands_where_reading_would() {
        let all = read_all(FileContent::new(&[3; 32], 1, 0, 5000), 4096);
        for (first, skip) in [
            (0, 0),
            (0, 1),
            (0, 64),
            (0, 100),
            (10, 54),
            (10, 3000),
            (70, 4930),
        ] {
            let mut content = FileContent::new(&[3; 32], 1, 0, 5000);
            let mut head = vec![0; first];
            content.fill(&mut head);
            content.skip(skip as u64);
            let start = first + skip;
            assert_eq!(content.remaining(), (5000 - start) as u64);
            assert_eq!(
                read_all(content, 777),
                all[start..],
                "read {first}, skip {skip}"
            );
        }
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
