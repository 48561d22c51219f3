//! The spec-hash cache: each image is built once and shared by every process that asks.
//!
//! ```text
//! ROOT/v1/
//!   entries/KEY/      a complete OCI layout (oci-layout, index.json, blobs/) and entry.json
//!   blobs/sha256/     the shared store; entries' blobs are hard links to it, so a layer that
//!                     two specs have in common is stored once
//!   locks/KEY.lock    shared while an entry is in use, exclusive while it is built or evicted
//!   tmp/KEY.XXXXXX/   builds in progress; what a killed builder leaves is removed by the next
//!   archives/KEY.tar  oci-archives made on request
//!   log               one line per build
//! ```
//!
//! KEY is the SHA-256 of the format version, the spec's canonical form, the platform and the
//! mtime: everything the image's digest depends on. The reference is not part of it. The
//! dockerfile builder labels its images in the engine with a key that hashes the builder too
//! ([`key`]); those images are not stored here.

mod entry;
mod gc;
mod lock;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub use entry::Entry;
pub use gc::{GcOptions, GcReport, Listed};
pub(crate) use lock::KeyLock;

use crate::build::{self, Source};
use crate::interrupt;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::request::{Builder, Output};
use crate::{BuildRequest, Built, Error};

/// The directory under the root that holds this format's entries; a format change starts a
/// new one instead of misreading the old.
const FORMAT: &str = "v1";

/// The cache under one root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `IMAGE_MAKER_CACHE_DIR`, else the user's cache directory (`~/.cache/image-maker`).
    pub fn from_env() -> Result<Self, Error> {
        if let Some(dir) = std::env::var_os("IMAGE_MAKER_CACHE_DIR").filter(|d| !d.is_empty()) {
            return Ok(Self::at(dir));
        }
        dirs::cache_dir()
            .map(|d| Self::at(d.join("image-maker")))
            .ok_or(Error::NoCacheDir)
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory, as `image-maker cache path` prints it.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, part: &str) -> PathBuf {
        self.root.join(FORMAT).join(part)
    }

    fn entry_dir(&self, key: &str) -> PathBuf {
        self.dir("entries").join(key)
    }

    fn archive_path(&self, key: &str) -> PathBuf {
        self.dir("archives").join(format!("{key}.tar"))
    }

    fn prepare(&self) -> Result<(), Error> {
        for part in ["entries", "blobs/sha256", "locks", "tmp", "archives"] {
            let dir = self.dir(part);
            fs::create_dir_all(&dir).map_err(Error::io("create the cache directory", dir))?;
        }
        Ok(())
    }

    /// Whether the cache holds `request`'s image, complete.
    pub fn contains(&self, request: &BuildRequest) -> bool {
        Entry::read(&self.entry_dir(&key(request))).is_some()
    }

    /// The entry for `request`'s image, built first if it is missing or damaged. A build
    /// streams to `request.outputs` in the same pass and returns what it built; an entry that
    /// was there already leaves the outputs to [`Cached::export`].
    pub fn acquire(
        &self,
        request: &BuildRequest,
        progress: &mut Progress,
    ) -> Result<(Cached, Option<Built>), Error> {
        self.prepare()?;
        let key = key(request);
        let lock = KeyLock::open(&self.dir("locks"), &key)?;
        let mut built = None;
        loop {
            lock.shared(progress)?;
            if let Some(entry) = Entry::read(&self.entry_dir(&key)) {
                entry::touch(&self.entry_dir(&key));
                let cached = Cached {
                    dir: self.entry_dir(&key),
                    entry,
                    cache: self.clone(),
                    _lock: lock,
                };
                return Ok((cached, built));
            }
            lock.exclusive(progress)?;
            // Another process may have built it while this one waited.
            if Entry::read(&self.entry_dir(&key)).is_none() {
                built = Some(self.fill(&key, request, progress)?);
            }
            // Back to shared; an eviction in between means going round again.
            lock.unlock();
        }
    }

    /// Builds the entry for `key` into a temporary directory and renames it into place.
    /// The caller holds the key's exclusive lock, so nobody else is building it.
    fn fill(
        &self,
        key: &str,
        request: &BuildRequest,
        progress: &mut Progress,
    ) -> Result<Built, Error> {
        let tmp_root = self.dir("tmp");
        remove_stale(&tmp_root, key);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{key}."))
            .tempdir_in(&tmp_root)
            .map_err(Error::io("create a temporary directory in", &tmp_root))?;
        let layout = tmp.path().join("layout");
        let mut with_cache = request.clone();
        with_cache.builder = Builder::Native;
        with_cache.internal = Some(Output::OciDir(layout.clone()));
        let built = build::build(&with_cache, progress)?;
        let entry = Entry::create(&layout, key, request, &built, &cache_reference(key)?)?;
        entry::share_blobs(&layout, &self.dir("blobs/sha256"))?;
        let dest = self.entry_dir(key);
        if dest.exists() {
            // Damaged (it failed `Entry::read`): out of the way first, then gone.
            let aside = tmp.path().join("damaged");
            fs::rename(&dest, &aside).map_err(Error::io("move aside", &dest))?;
        }
        fs::rename(&layout, &dest).map_err(Error::io("rename into", &dest))?;
        self.log(&format!(
            "built {key} {} {} {}",
            entry.spec, entry.platform, entry.digest
        ));
        progress.stage(format!("cached {} as {}", entry.spec, dest.display()));
        Ok(built)
    }

    /// Appends a line to the cache's log. Lines are short single writes to a file opened
    /// for appending, so concurrent processes do not interleave within a line.
    fn log(&self, line: &str) {
        let path = self.root.join(FORMAT).join("log");
        let text = format!("{} {} {line}\n", entry::now(), std::process::id());
        // The log is for people and tests; a build does not fail over it.
        let _ = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
    }
}

/// An entry in use: it stays in the cache (gc skips it) until every clone is dropped.
#[derive(Debug)]
pub struct Cached {
    pub dir: PathBuf,
    pub entry: Entry,
    cache: Cache,
    /// Held, never read: its shared lock is what keeps gc away from the entry.
    _lock: KeyLock,
}

impl Cached {
    /// Writes the cached image to `request.outputs` from its blobs, without regenerating.
    pub fn export(&self, request: &BuildRequest, progress: &mut Progress) -> Result<Built, Error> {
        let source = Source::Blobs {
            layout: &self.dir,
            layers: &self.entry.layers,
        };
        build::deliver(request, &source, progress)
    }

    /// An oci-archive of the image, made once and kept with the entry.
    pub fn archive(&self, progress: &mut Progress) -> Result<PathBuf, Error> {
        let key = &self.entry.key;
        let path = self.cache.archive_path(key);
        if path.is_file() {
            return Ok(path);
        }
        let lock = KeyLock::open(&self.cache.dir("locks"), &format!("{key}.archive"))?;
        lock.exclusive(progress)?;
        if !path.is_file() {
            let request = self
                .request(cache_reference(key)?)?
                .output(Output::OciArchive(path.clone()));
            self.export(&request, progress)?;
        }
        Ok(path)
    }

    /// A request for this image under `reference`, with no outputs.
    pub fn request(&self, reference: Reference) -> Result<BuildRequest, Error> {
        Ok(
            BuildRequest::new(crate::Spec::parse(&self.entry.spec)?, reference)
                .platform(crate::Platform::parse(&self.entry.platform)?)
                .mtime(self.entry.mtime),
        )
    }

    /// What `--json` reports for this image.
    pub fn built(&self, reference: &Reference, outputs: &[Output]) -> Built {
        Built {
            pushed: None,
            reference: reference.to_string(),
            spec: self.entry.spec.clone(),
            digest: self.entry.digest.clone(),
            config_digest: self.entry.config_digest.clone(),
            platform: self.entry.platform.clone(),
            layers: self.entry.layers.clone(),
            outputs: outputs.iter().map(ToString::to_string).collect(),
        }
    }
}

/// The cache key of the image `request` describes.
///
/// An engine's build of a spec is another image than the native one (its own tars and
/// config), so the dockerfile builder's key hashes the builder and the version of its build
/// context too; native keys hash neither and stay as they were.
pub fn key(request: &BuildRequest) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "image-maker cache {FORMAT}\n{}\n{}\n{}\n",
        request.spec.canonical(),
        request.platform,
        request.mtime
    ));
    if request.builder == Builder::Dockerfile {
        // Bumped when the build context (files or Dockerfile) changes.
        hasher.update("builder dockerfile 1\n");
    }
    crate::digest::hex(&hasher.finalize())
}

/// The name a cache entry's own `index.json` gives its image, and fixtures default to.
pub fn cache_reference(key: &str) -> Result<Reference, Error> {
    let short = key.get(..12).unwrap_or(key);
    Ok(Reference::parse(&format!("image-maker/mock:{short}"))?)
}

/// Removes what killed builders of `key` left in `tmp`. Only the holder of the key's
/// exclusive lock calls this, so none of it belongs to a build still running.
fn remove_stale(tmp: &Path, key: &str) {
    let prefix = format!("{key}.");
    let Ok(dir) = fs::read_dir(tmp) else { return };
    for item in dir.flatten() {
        if item.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_dir_all(item.path());
        }
    }
}

/// Builds through the user's cache ([`Cache::from_env`]), or without one when there is none.
pub fn build_in_user_cache(
    request: &BuildRequest,
    progress: &mut Progress,
) -> Result<Built, Error> {
    match Cache::from_env() {
        Ok(cache) => build(&cache, request, progress),
        Err(e) => {
            progress.stage(format!("warning: building without the cache: {e}"));
            build::build(request, progress)
        }
    }
}

/// Builds through the cache: the image is built once, then exported to the outputs.
pub fn build(
    cache: &Cache,
    request: &BuildRequest,
    progress: &mut Progress,
) -> Result<Built, Error> {
    // The cache holds what the native builder makes; an engine's build stays in the engine,
    // where the dockerfile builder finds it again by the key's label.
    if request.builder == Builder::Dockerfile || request.no_cache {
        return build::build(request, progress);
    }
    // A read-only home or a full cache disk should not stop a build that needs no cache.
    if let Err(e) = cache.prepare() {
        progress.stage(format!("warning: building without the cache: {e}"));
        return build::build(request, progress);
    }
    if request.outputs.contains(&Output::Registry) {
        return push_and_export(cache, request, progress);
    }
    let (cached, built) = cache.acquire(request, progress)?;
    match built {
        Some(built) => Ok(built),
        None if request.outputs.is_empty() => Ok(cached.built(&request.reference, &[])),
        None => cached.export(request, progress),
    }
}

/// With a registry output, the cached layout is pushed as it is (no staging copy), before any
/// file output lands, as a build without the cache does too.
fn push_and_export(
    cache: &Cache,
    request: &BuildRequest,
    progress: &mut Progress,
) -> Result<Built, Error> {
    let mut others = request.clone();
    others.outputs.retain(|o| *o != Output::Registry);
    let mut cache_only = others.clone();
    cache_only.outputs.clear();
    let (cached, _) = cache.acquire(&cache_only, progress)?;
    interrupt::check()?;
    let pushed = crate::build::staging::push(&cached.dir, request, progress)
        .map_err(|e| interrupt::check().err().unwrap_or(e))?;
    let mut built = if others.outputs.is_empty() {
        cached.built(&request.reference, &[])
    } else {
        cached.export(&others, progress)?
    };
    built.outputs = request.outputs.iter().map(ToString::to_string).collect();
    built.pushed = Some(pushed);
    Ok(built)
}
