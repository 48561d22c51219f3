//! Layer bytes on request: the whole blob through the builders' own tar writer, or any
//! byte range of it, started from offsets computed from the plan (in O(log files) for a
//! flat layer, by a walk over a tree's entries). Nothing is ever stored but plans, and those
//! within a byte budget ([`PlanCache`]).

use std::io::{self, Write};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use rustc_hash::FxHashMap;

use super::body::{Handing, Handover};
use super::passes::Cancel;
use crate::digest::{Blob, HashingWriter};
use crate::layer::{self, TarOptions, TarWriter, CHUNK};
use crate::plan::LayerPlan;
use crate::platform::Platform;
use crate::spec::{Compression, LayerSpec, Spec};
use crate::{compress, content};

/// One layer of one image: everything its bytes depend on.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub spec: Arc<Spec>,
    /// The content seed: the spec's, and the platform's but for linux/amd64.
    pub seed: [u8; 32],
    /// 1-based.
    pub number: u32,
    pub mtime: u64,
    /// Where the compressed blob's pieces start, once its digest pass has found them: a
    /// range is then made from the piece that holds its first byte.
    pieces: Option<Arc<compress::Pieces>>,
    /// The image's plans, taken from the cache on first use and then held by this layer
    /// (and its clones made after), so that links and whiteouts see the layers below
    /// without planning them again.
    plans: Plans,
}

/// Where a [`Layer`] gets its image's plans: the cache, once, then kept while the layer
/// lives. A clone made before first use takes them from the cache again: what the catalog
/// keeps per blob holds none, so a plan no stream uses is the cache's to drop.
#[derive(Debug, Clone)]
pub(crate) struct Plans {
    cache: Arc<PlanCache>,
    got: OnceLock<Arc<Vec<LayerPlan>>>,
}

impl Plans {
    pub fn new(cache: &Arc<PlanCache>) -> Self {
        Self {
            cache: Arc::clone(cache),
            got: OnceLock::new(),
        }
    }

    /// The plans of `spec`'s layers, from the cache (or made there) on first use.
    pub fn of(&self, spec: &Spec) -> &Arc<Vec<LayerPlan>> {
        self.got.get_or_init(|| self.cache.get(spec))
    }
}

/// Plans of specs by their canonical form (a plan depends on the spec alone, not the
/// platform or mtime), least recently used dropped first beyond `budget` bytes. A plan
/// dropped here lives on while a stream holds it and is made again when asked for; a plan
/// larger than the whole budget is made for its users and never kept.
#[derive(Debug)]
pub(crate) struct PlanCache {
    budget: u64,
    inner: Mutex<PlanInner>,
}

#[derive(Debug)]
struct PlanInner {
    kept: lru::LruCache<String, (Arc<Vec<LayerPlan>>, u64)>,
    weight: u64,
    /// Plans being made, so that requesters of the same spec wait for one.
    making: FxHashMap<String, Arc<OnceLock<Arc<Vec<LayerPlan>>>>>,
}

impl PlanCache {
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            inner: Mutex::new(PlanInner {
                kept: lru::LruCache::unbounded(),
                weight: 0,
                making: FxHashMap::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlanInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The plans of `spec`'s layers: kept, being made by another request, or made here.
    pub fn get(&self, spec: &Spec) -> Arc<Vec<LayerPlan>> {
        let key = spec.canonical();
        let cell = {
            let mut inner = self.lock();
            if let Some((plans, _)) = inner.kept.get(&key) {
                return Arc::clone(plans);
            }
            Arc::clone(inner.making.entry(key.clone()).or_default())
        };
        let plans = Arc::clone(cell.get_or_init(|| Arc::new(crate::plan::layers(spec))));
        let mut inner = self.lock();
        if inner
            .making
            .get(&key)
            .is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            inner.making.remove(&key);
            let weight = plan_weight(&plans);
            if weight <= self.budget {
                inner.weight += weight;
                if let Some((_, old)) = inner.kept.put(key, (Arc::clone(&plans), weight)) {
                    inner.weight -= old;
                }
                while inner.weight > self.budget {
                    let Some((_, (_, dropped))) = inner.kept.pop_lru() else {
                        break;
                    };
                    inner.weight -= dropped;
                }
            }
        }
        plans
    }

    /// Bytes of the plans kept.
    #[cfg(test)]
    pub fn weight(&self) -> u64 {
        self.lock().weight
    }
}

/// Roughly what `plans` hold in memory: a listed layer's entries, their paths and link
/// targets, and the index of its files; a flat layer's are computed as they are read.
/// Counted as allocated (a `String`'s bytes in blocks of 16, as malloc rounds them).
pub(crate) fn plan_weight(plans: &[LayerPlan]) -> u64 {
    let round = |len: usize| len.div_ceil(16) as u64 * 16;
    let entry = std::mem::size_of::<crate::plan::Entry>() as u64;
    let per_plan = std::mem::size_of::<LayerPlan>() as u64;
    plans
        .iter()
        .map(|plan| {
            let listed = plan.measures().map_or(0, |measures| {
                measures
                    .map(|m| {
                        // The entry, its path, its target, and a file's place in the index.
                        entry
                            + round(m.path.len())
                            + m.link.map_or(0, |l| round(l.len()))
                            + if m.file.is_some() { 8 } else { 0 }
                    })
                    .sum()
            });
            per_plan + listed
        })
        .sum()
}

/// The seed of the file bytes of `spec`'s image for `platform`, which every layer of it
/// shares: hashed once per image, since it reads the whole spec.
pub(crate) fn image_seed(spec: &Spec, platform: &Platform) -> [u8; 32] {
    content::seed(spec, platform, false)
}

/// A layer blob's digest and size, and the digest of its tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hashed {
    pub blob: Blob,
    pub diff_id: String,
    /// A compressed blob's resume points; `None` for a plain tar (which needs none) and
    /// for a memo written without them.
    pub pieces: Option<Arc<compress::Pieces>>,
}

impl Layer {
    /// Layer `number` of `spec`'s image whose file bytes are seeded by `seed` (its
    /// platform's: [`image_seed`]); `plans` is shared by the layers of every image of the
    /// spec.
    pub fn new(spec: Arc<Spec>, plans: Plans, seed: [u8; 32], number: u32, mtime: u64) -> Self {
        Self {
            seed,
            spec,
            number,
            mtime,
            pieces: None,
            plans,
        }
    }

    /// The same layer, its ranges made from the pieces of `hashed` when it has them.
    pub fn with_pieces(mut self, hashed: &Hashed) -> Self {
        self.pieces = hashed.pieces.clone();
        self
    }

    /// Whether a range of it can be made without making the bytes before it: a plain tar,
    /// or a compressed blob whose pieces are known.
    pub fn seeks(&self) -> bool {
        !self.compressed() || self.pieces.is_some()
    }

    /// The compressed blob's pieces, when known.
    pub fn pieces(&self) -> Option<Arc<compress::Pieces>> {
        self.pieces.clone()
    }

    /// Whether a compressed range from `at` starts at a piece past the first: otherwise it
    /// is made from the blob's first byte.
    pub fn resumes_at(&self, at: u64) -> bool {
        self.pieces.as_ref().is_some_and(|p| p.before(at).0 > 0)
    }

    fn layer_spec(&self) -> LayerSpec {
        self.spec.layers()[self.number as usize - 1]
    }

    fn plan(&self) -> &LayerPlan {
        &self.plans.of(&self.spec)[self.number as usize - 1]
    }

    fn options(&self) -> TarOptions {
        TarOptions { mtime: self.mtime }
    }

    /// Whether the blob is compressed, and so can only be produced from its start.
    pub fn compressed(&self) -> bool {
        self.layer_spec().encoding() != Compression::None
    }

    /// The whole blob, from its first byte, compressed (when the layer is) on `threads`
    /// threads. The bytes do not depend on the threads.
    pub fn write(&self, out: &mut dyn Write, threads: usize) -> io::Result<()> {
        let mut tick = |_| Ok(());
        let Some(pieces) = &self.pieces else {
            return compress::encode_layer(
                self.plan(),
                &self.seed,
                self.options(),
                out,
                false,
                threads,
                &mut tick,
            )
            .map(drop);
        };
        // Resumed at its first byte: gzip's trailer takes the CRC the digest pass found
        // rather than a second pass over every byte of tar.
        let resume = compress::Resume {
            input: 0,
            crc: pieces.crc,
        };
        compress::encode_pieces(
            compress::Encoding::of(self.plan()),
            threads,
            compress::Start::Resume(resume),
            out,
            |tar| layer::write_tar_to(self.plan(), &self.seed, self.options(), tar, &mut tick),
        )
        .map(drop)
    }

    /// [`Self::write`] into a stream that takes its chunks whole: a plain tar is made
    /// straight into the chunks `out` sends, with no copy of its GiBs on the way.
    pub fn hand(&self, out: &mut dyn Handover, threads: usize) -> io::Result<()> {
        if self.compressed() {
            return self.write(out, threads);
        }
        let mut handing = Handing::new(out);
        layer::write_tar_to(
            self.plan(),
            &self.seed,
            self.options(),
            &mut handing,
            &mut |_| Ok(()),
        )?;
        handing.finish()
    }

    /// Digest, size and diff_id: one pass over the generated bytes, compressed (when the
    /// layer is) on `threads` threads, stopped at the next chunk once `cancel` is set. The
    /// bytes do not depend on the threads.
    pub fn hash(&self, threads: usize, cancel: &Cancel) -> io::Result<Hashed> {
        let mut hashing = HashingWriter::new(io::sink());
        let plan = self.plan();
        let mut tick = |_| {
            if cancel.load(Ordering::Relaxed) {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the digest pass was cancelled: its requesters left",
                ));
            }
            Ok(())
        };
        let (diff_id, _, pieces) = compress::encode_pieces(
            compress::Encoding::of(plan),
            threads,
            compress::Start::Beginning,
            &mut hashing,
            |encoder| {
                let (seed, options) = (&self.seed, self.options());
                if !self.compressed() {
                    layer::write_tar_to(plan, seed, options, encoder, &mut tick)?;
                    return Ok(None);
                }
                let mut tar = HashingWriter::new(encoder);
                layer::write_tar(plan, seed, options, &mut tar, &mut tick)?;
                Ok(Some(tar.complete().0.digest))
            },
        )?;
        let blob = hashing.complete().0;
        Ok(Hashed {
            diff_id: diff_id.unwrap_or_else(|| blob.digest.clone()),
            blob,
            pieces: pieces.map(Arc::new),
        })
    }

    /// Bytes `range` of the blob (clipped to its end), compressed on `threads` threads. A
    /// plain tar starts at the file that holds `range.start`: headers sit at computable
    /// offsets and the content generator seeks, so nothing before the range is generated.
    /// A compressed blob starts at the piece that holds it, when its pieces are known, and
    /// from its first byte otherwise; the bytes before the range are dropped.
    pub fn write_range(
        &self,
        range: Range<u64>,
        out: &mut dyn Write,
        threads: usize,
    ) -> io::Result<()> {
        if !self.compressed() {
            return self.write_tar_range(range, out);
        }
        let encoding = compress::Encoding::of(self.plan());
        let (input, output) = self
            .pieces
            .as_ref()
            .map_or((0, 0), |p| p.before(range.start));
        let mut window = Window {
            out,
            skip: range.start - output,
            left: range.end.saturating_sub(range.start),
            stop_when_full: true,
        };
        let made = match &self.pieces {
            Some(pieces) if input > 0 => {
                let resume = compress::Resume {
                    input,
                    crc: pieces.crc,
                };
                let from = input - resume.primer(encoding);
                compress::encode_pieces(
                    encoding,
                    threads,
                    compress::Start::Resume(resume),
                    &mut window,
                    |tar| self.write_tar_range(from..u64::MAX, tar),
                )
                .map(drop)
            }
            _ => self.write(&mut window, threads),
        };
        match made {
            // The window full: the rest is not wanted.
            Err(e) if window.left == 0 && e.kind() == io::ErrorKind::WriteZero => Ok(()),
            other => other,
        }
    }

    /// Bytes `range` of the layer's tar (clipped to its end), made from the file that
    /// holds `range.start` on.
    fn write_tar_range(&self, range: Range<u64>, out: &mut dyn Write) -> io::Result<()> {
        let plan = self.plan();
        let end = range.end.min(layer::tar_size(plan));
        if range.start >= end {
            return Ok(());
        }
        let (first, start) = layer::locate(plan, range.start);
        let window = Window {
            out,
            skip: range.start - start,
            left: end - range.start,
            stop_when_full: false,
        };
        let mut tar = TarWriter::new(window, self.options());
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(end - range.start).unwrap_or(CHUNK))];
        for entry in plan.entries_borrowed(first) {
            if tar.out.left == 0 {
                return Ok(());
            }
            let Some(file) = tar.plan_entry(&entry)? else {
                continue;
            };
            let mut content = content::FileContent::of(plan, &self.seed, file);
            let skip = tar.out.skip.min(file.size);
            content.seek(skip);
            tar.out.skip -= skip;
            while content.remaining() > 0 && tar.out.left > 0 {
                let want = usize::try_from(tar.out.left).map_or(buf.len(), |l| l.min(buf.len()));
                let n = content.fill(&mut buf[..want]);
                tar.data(&buf[..n])?;
            }
            if tar.out.left == 0 {
                return Ok(());
            }
            tar.end_file()?;
        }
        tar.finish()
    }
}

/// Passes on the bytes after the first `skip`, `left` of them. The rest is dropped, so the
/// tar writer can run past the end of the range without knowing about it; or, with
/// `stop_when_full`, refused, which stops an encoder that cannot be stopped otherwise.
struct Window<'a> {
    out: &'a mut dyn Write,
    skip: u64,
    left: u64,
    stop_when_full: bool,
}

impl Write for Window<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut data = buf;
        let skipped = usize::try_from(self.skip).map_or(data.len(), |s| s.min(data.len()));
        data = &data[skipped..];
        self.skip -= skipped as u64;
        let take = usize::try_from(self.left).map_or(data.len(), |l| l.min(data.len()));
        self.out.write_all(&data[..take])?;
        self.left -= take as u64;
        if self.stop_when_full && self.left == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_beyond_the_budget_are_dropped_once_unused_and_made_again() {
        let tree = Spec::parse("1MB:tree=2000").expect("valid");
        let one = plan_weight(&crate::plan::layers(&tree));
        // About 100 bytes an entry, counted as allocated.
        assert!((150_000..400_000).contains(&one), "{one}");
        let cache = PlanCache::new(one * 3 / 2);
        let held = cache.get(&tree);
        assert!(Arc::ptr_eq(&held, &cache.get(&tree)), "kept");
        assert_eq!(cache.weight(), one);
        // Another tree: over the budget, so the first goes, though a stream still holds it.
        let other = Spec::parse("1MB:tree=2001").expect("valid");
        cache.get(&other);
        assert_eq!(cache.weight(), one.max(plan_weight(&cache.get(&other))));
        let again = cache.get(&tree);
        assert!(!Arc::ptr_eq(&held, &again), "made again");
        assert_eq!(*held, *again, "the same plan");
        // Larger than the whole budget: made for its users, never kept.
        let small = PlanCache::new(1000);
        small.get(&tree);
        assert_eq!(small.weight(), 0);
    }

    fn whole(layer: &Layer) -> Vec<u8> {
        let mut out = Vec::new();
        layer.write(&mut out, 2).expect("in memory");
        out
    }

    #[test]
    fn every_range_equals_the_same_bytes_of_the_whole_blob() {
        for list in [
            "1000B",
            "3001B:files=3",
            "100KB:tree=600",
            "40B:tree=33",
            "70KB:files=70",
            "100KB:tree=600:symlinks=9:hardlinks=5:dirs=4",
            "64KB:tree=40,2KB:whiteouts=6:symlinks=2",
            // Compressed: produced from the first byte and cut, on every encoder thread.
            "300KB:ratio=2:compression=gzip",
            "70KB:tree=30:compression=zstd:level=5",
            // Past a resume point or several: made from the piece that holds the start.
            "3MB:files=3:ratio=2:compression=gzip",
            "5MB:compression=zstd:ratio=3",
        ] {
            let spec = Arc::new(Spec::parse(list).expect("valid"));
            let top = spec.layers().len() as u32;
            let cache = Arc::new(PlanCache::new(1 << 30));
            let seed = image_seed(&spec, &Platform::default());
            let layer = Layer::new(spec, Plans::new(&cache), seed, top, 0);
            let all = whole(&layer);
            let hashed = layer.hash(2, &Cancel::default()).expect("hashed");
            assert_eq!(all.len() as u64, hashed.blob.size);
            assert_eq!(hashed.pieces.is_some(), layer.compressed(), "{list}");
            // Without pieces a compressed range is made from the start: small ones only.
            let layer = match hashed.pieces.as_ref().is_some_and(|p| !p.starts.is_empty()) {
                true => layer.with_pieces(&hashed),
                false => layer,
            };
            let n = all.len() as u64;
            let mut points = vec![
                0,
                1,
                511,
                512,
                513,
                1023,
                1024,
                1500,
                n / 3,
                n / 2,
                n - 1025,
                n - 1024,
                n - 1,
                n,
            ];
            points.extend((0..40).map(|k| k * 997 % n));
            for &a in &points {
                for len in [0, 1, 100, 511, 512, 4096, 70_000] {
                    let b = (a + len).min(n);
                    let mut out = Vec::new();
                    layer.write_range(a..b, &mut out, 2).expect("in memory");
                    assert!(out == all[a as usize..b as usize], "{list}: {a}..{b}");
                }
            }
            let mut past = Vec::new();
            layer
                .write_range(n - 10..n + 100, &mut past, 1)
                .expect("in memory");
            assert_eq!(past, all[all.len() - 10..], "{list}: clipped at the end");
        }
    }
}
