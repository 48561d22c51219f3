//! Compressed layer blobs kept in memory once a whole GET has made (and checked) them,
//! within `--blob-memory`, so that the next GET sends them instead of compressing again:
//! the trade of memory for speed that `--warm` makes with disk. Off unless asked for.
//!
//! A blob is kept only from a stream that sent it whole from its first byte, undamaged,
//! and whose check passed: what is kept is what the digest pass found. The bytes being
//! collected count against the budget too, so that streams at once cannot hold more.

use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::body::Handover;
use super::bounded::Bounded;

/// The kept blobs, by digest.
#[derive(Debug)]
pub(crate) struct KeptBlobs {
    budget: u64,
    blobs: Bounded<String, Arc<Kept>>,
    /// Bytes being collected by streams now.
    collecting: AtomicU64,
}

/// A blob's bytes, as the chunks it was sent in.
#[derive(Debug)]
pub(crate) struct Kept {
    chunks: Vec<Bytes>,
    size: u64,
}

/// A stream's claim on the budget for the blob it collects.
#[derive(Debug)]
pub(crate) struct Keep {
    blobs: Arc<KeptBlobs>,
    digest: String,
    size: u64,
}

impl KeptBlobs {
    /// At most `budget` bytes kept (and being collected); 0 keeps none.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            blobs: Bounded::new(budget, |key, kept| key.len() as u64 + kept.size),
            collecting: AtomicU64::new(0),
        }
    }

    /// The kept bytes of `digest`.
    pub fn get(&self, digest: &str) -> Option<Arc<Kept>> {
        self.blobs.get(&digest.to_owned())
    }

    /// A claim to collect the `size` bytes of `digest`, when they fit: a blob of at most
    /// half the budget (so that one never pushes out all others), not kept already, and
    /// within what other streams are collecting.
    pub fn claim(self: &Arc<Self>, digest: &str, size: u64) -> Option<Keep> {
        if size == 0 || size > self.budget / 2 || self.get(digest).is_some() {
            return None;
        }
        self.collecting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now + size <= self.budget).then_some(now + size)
            })
            .ok()?;
        Some(Keep {
            blobs: Arc::clone(self),
            digest: digest.to_owned(),
            size,
        })
    }
}

impl Keep {
    /// Keeps `chunks`, the whole blob, checked.
    pub fn keep(self, chunks: Vec<Bytes>) {
        let size = chunks.iter().map(|c| c.len() as u64).sum();
        if size == self.size {
            self.blobs
                .blobs
                .put(self.digest.clone(), Arc::new(Kept { chunks, size }));
        }
    }
}

impl Drop for Keep {
    fn drop(&mut self) {
        self.blobs.collecting.fetch_sub(self.size, Ordering::AcqRel);
    }
}

impl Kept {
    /// Bytes `range` of the blob.
    pub fn send(&self, range: Range<u64>, out: &mut dyn Handover) -> io::Result<()> {
        let mut at = 0u64;
        for chunk in &self.chunks {
            let end = at + chunk.len() as u64;
            if end > range.start && at < range.end {
                let from = usize::try_from(range.start.saturating_sub(at)).unwrap_or(0);
                let to = usize::try_from(range.end.min(end) - at).unwrap_or(chunk.len());
                out.hand(chunk.slice(from..to))?;
            }
            at = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_fit_the_budget_and_ranges_cut_across_chunks() {
        let blobs = Arc::new(KeptBlobs::new(100));
        assert!(blobs.claim("big", 51).is_none(), "over half the budget");
        let a = blobs.claim("a", 50).expect("fits");
        let b = blobs.claim("b", 50).expect("fits");
        assert!(
            blobs.claim("c", 1).is_none(),
            "the budget is being collected"
        );
        a.keep(vec![
            Bytes::from(vec![1u8; 20]),
            Bytes::from((0u8..30).collect::<Vec<_>>()),
        ]);
        drop(b);
        let kept = blobs.get("a").expect("kept");
        let mut out = Vec::new();
        kept.send(15..25, &mut out).expect("in memory");
        assert_eq!(out, [1, 1, 1, 1, 1, 0, 1, 2, 3, 4]);
        assert!(blobs.claim("a", 50).is_none(), "kept already");
        // A stream that sent less than the blob keeps nothing.
        blobs
            .claim("d", 10)
            .expect("fits")
            .keep(vec![Bytes::from(vec![0u8; 9])]);
        assert!(blobs.get("d").is_none());
    }
}
