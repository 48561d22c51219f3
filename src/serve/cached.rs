//! Layer blobs sent from the local cache when it holds them (a build, `image-maker warm`,
//! a fixture or `serve --warm` put them there) instead of generated: a file read in large
//! chunks costs a fraction of making the bytes again, most of all for a compressed layer.
//!
//! A file is sent only while the cache's own rules vouch for it: its entry is sound, and
//! the file has the size, inode and modification time its entry recorded when it was
//! hashed (its stamp), checked on the open file before the first byte and again before
//! the last. One that fails is not sent: the stream is generated instead, as for any
//! other name, and the entry is checked as a build would check it (its changed blobs
//! hashed, a damaged one marking it). An entry `--warm` made is then built again, which
//! heals it; any other waits for its next build.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::body::{Chunks, Handover};
use crate::cache::{Cache, Stamp, TrustedLayer};
use crate::progress::LogLevel;
use crate::{BuildRequest, Progress};

/// Bytes per read: as many as a response chunk holds.
const READ: usize = 1 << 20;

/// How long the index of the cache's layers is trusted when no entry came or went: a
/// stamp that moved meanwhile is caught at the open anyway.
const RESCAN: Duration = Duration::from_secs(30);

/// The cache's layer blobs, by digest.
#[derive(Debug)]
pub(crate) struct FromCache {
    cache: Cache,
    index: Mutex<Index>,
    /// `--warm`'s requests, by cache key: what builds a damaged entry again.
    warm: Mutex<HashMap<String, BuildRequest>>,
    /// Entries being checked after a failed stamp: one check each at a time.
    healing: Mutex<HashSet<PathBuf>>,
}

#[derive(Debug, Default)]
struct Index {
    layers: HashMap<String, TrustedLayer>,
    /// The entries directory's modification time at the last scan, and when that was.
    scanned: Option<(Option<SystemTime>, Instant)>,
}

/// What the cache has of a blob.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A file that passed its stamp: send it.
    File(CachedFile),
    /// A file whose stamp failed: generate the blob, and [`FromCache::heal`] its entry.
    Stale(TrustedLayer),
    /// Nothing.
    Missing,
}

/// A cached blob's open file, with the stamp it must keep while it is read.
#[derive(Debug)]
pub(crate) struct CachedFile {
    file: File,
    layer: TrustedLayer,
    digest: String,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl FromCache {
    pub fn new(cache: Cache) -> Self {
        Self {
            cache,
            index: Mutex::default(),
            warm: Mutex::default(),
            healing: Mutex::default(),
        }
    }

    /// The cached file of the layer blob `digest`, `size` bytes, when there is a sound one.
    pub fn lookup(&self, digest: &str, size: u64) -> Lookup {
        let layer = {
            let mut index = lock(&self.index);
            self.refresh(&mut index);
            match index.layers.get(digest) {
                Some(layer) if layer.size == size => layer.clone(),
                _ => return Lookup::Missing,
            }
        };
        match open(&layer, digest) {
            Some(file) => Lookup::File(CachedFile {
                file,
                layer,
                digest: digest.to_owned(),
            }),
            None => {
                // Not offered again until its entry has been checked.
                lock(&self.index).layers.remove(digest);
                Lookup::Stale(layer)
            }
        }
    }

    /// Scans the entries again when one came or went, or the scan is old.
    fn refresh(&self, index: &mut Index) {
        let changed = self.cache.entries_changed();
        let fresh = index
            .scanned
            .is_some_and(|(seen, at)| seen == changed && at.elapsed() < RESCAN);
        if fresh {
            return;
        }
        index.layers = self
            .cache
            .trusted_layers()
            .into_iter()
            .map(|layer| (layer.stamp.digest.clone(), layer))
            .collect();
        index.scanned = Some((changed, Instant::now()));
    }

    fn forget_scan(&self) {
        lock(&self.index).scanned = None;
    }

    /// Checks the entry of a file whose stamp failed, on a thread of its own: the blobs
    /// that changed are hashed, a damaged one marks the entry, and an entry `--warm` made
    /// is built again.
    pub fn heal(self: &Arc<Self>, layer: TrustedLayer) {
        if !lock(&self.healing).insert(layer.entry.clone()) {
            return;
        }
        let this = Arc::clone(self);
        let entry = layer.entry.clone();
        let spawned = std::thread::Builder::new()
            .name("image-maker-heal".into())
            .spawn(move || {
                this.check_and_rebuild(&layer);
                lock(&this.healing).remove(&layer.entry);
                this.forget_scan();
            });
        if spawned.is_err() {
            lock(&self.healing).remove(&entry);
        }
    }

    fn check_and_rebuild(&self, layer: &TrustedLayer) {
        let path = layer.path.display();
        match self.cache.recheck(&layer.entry) {
            Ok(true) => crate::progress::log(
                LogLevel::Note,
                &format!("cache: {path} was touched but its bytes are right: served from the cache again"),
            ),
            Ok(false) => {
                let key = layer
                    .entry
                    .file_name()
                    .map(|k| k.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let request = lock(&self.warm).get(&key).cloned();
                let Some(request) = request else {
                    crate::progress::log(
                        LogLevel::Warning,
                        &format!("cache: {path} is damaged: its entry is marked, and the blob is generated until the entry is built again"),
                    );
                    return;
                };
                crate::progress::log(
                    LogLevel::Warning,
                    &format!("cache: {path} is damaged: building its entry again (--warm)"),
                );
                if let Err(e) = self.cache.acquire(&request, &mut Progress::hidden()) {
                    crate::progress::log(
                        LogLevel::Warning,
                        &format!("cache: building {} again failed: {e}", request.spec.canonical()),
                    );
                }
            }
            Err(e) => crate::progress::log(
                LogLevel::Warning,
                &format!("cache: checking {path} failed: {e}"),
            ),
        }
    }

    /// Builds `requests` into the cache, one after another, on a thread of its own; an
    /// entry there already costs a check. Their blobs are sent from the cache from then on.
    pub fn warm(self: &Arc<Self>, requests: Vec<BuildRequest>) {
        if requests.is_empty() {
            return;
        }
        {
            let mut warm = lock(&self.warm);
            for request in &requests {
                warm.insert(crate::request::key(request), request.clone());
            }
        }
        let this = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("image-maker-warm".into())
            .spawn(move || {
                let started = Instant::now();
                let mut failed = 0;
                for request in &requests {
                    if let Err(e) = this.cache.acquire(request, &mut Progress::hidden()) {
                        failed += 1;
                        crate::progress::log(
                            LogLevel::Warning,
                            &format!("cache: warming {} failed: {e}", request.spec.canonical()),
                        );
                    }
                    this.forget_scan();
                }
                crate::progress::log(
                    LogLevel::Note,
                    &format!(
                        "cache: warmed {} of {} images in {:.1} s; their blobs are sent from the cache",
                        requests.len() - failed,
                        requests.len(),
                        started.elapsed().as_secs_f64()
                    ),
                );
            });
        if let Err(e) = spawned {
            crate::progress::log(LogLevel::Warning, &format!("cache: cannot warm: {e}"));
        }
    }
}

/// The file of `layer`, opened without following a symlink, if it still has its stamp.
fn open(layer: &TrustedLayer, digest: &str) -> Option<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&layer.path)
        .ok()?;
    holds(&file, layer, digest).then_some(file)
}

/// Whether the open `file` is still what its entry hashed.
fn holds(file: &File, layer: &TrustedLayer, digest: &str) -> bool {
    file.metadata().is_ok_and(|meta| {
        meta.is_file() && meta.len() == layer.size && Stamp::of(digest, &meta) == layer.stamp
    })
}

impl CachedFile {
    /// Bytes `range` of the blob, read in large chunks, each handed over as it was read.
    /// The last is sent only if the file still has its stamp then: a file written to while
    /// it was read fails the stream short of its length, as a generator's mismatch does.
    pub fn send(&self, range: Range<u64>, out: &mut dyn Handover) -> io::Result<()> {
        let end = range.end.min(self.layer.size);
        let len = READ.min(usize::try_from(end.saturating_sub(range.start)).unwrap_or(READ));
        let mut chunks = Chunks::default();
        let mut at = range.start;
        while at < end {
            let n = usize::try_from(end - at).map_or(len, |left| left.min(len));
            let mut buf = chunks.take(n);
            self.file.read_exact_at(&mut buf, at)?;
            at += n as u64;
            if at == end && !holds(&self.file, &self.layer, &self.digest) {
                return Err(io::Error::other(format!(
                    "the cached blob {} changed while it was sent",
                    self.layer.path.display()
                )));
            }
            out.hand(chunks.seal(buf))?;
        }
        Ok(())
    }
}
