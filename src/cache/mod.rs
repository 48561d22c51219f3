//! The spec-hash cache: each image is built once and shared by every process that asks.
//!
//! ```text
//! ROOT/v1/
//!   entries/KEY/      a complete OCI layout (oci-layout, index.json, blobs/) and entry.json
//!   blobs/sha256/     the shared store; entries' blobs are hard links to it, so a layer that
//!                     two specs have in common is stored once
//!   locks/KEY.lock    shared while an entry is in use, exclusive while it is built or evicted
//!   locks/store.lock  shared while a build adds blobs to the store, exclusive while gc sweeps it
//!   tmp/KEY.XXXXXX/   builds in progress; what a killed builder leaves is removed by the next
//!   archives/KEY.tar  oci-archives made on request
//!   log               one line per build
//! ROOT/serve/v1/KEY   `image-maker serve`'s digest memo of one image (not an entry: no blobs)
//! ROOT/serve/v1-by-digest/HEX   which memo holds a digest, for replicas sharing the root
//! ```
//!
//! Every directory is created 0700, and a root that another user owns, or that every user
//! can write to, is refused. Files are written under a temporary name created exclusively
//! and renamed into place; nothing is opened through a symlink (see `files`).
//!
//! KEY is the SHA-256 of the format version, the spec's canonical form, the platform (or
//! the list of them, for an index) and the mtime: everything the image's digest depends on. The reference is not part of it. The
//! dockerfile builder labels its images in the engine with a key that hashes the builder too
//! ([`key`]); those images are not stored here.
//!
//! Outputs link the entries' blobs (see `LinkMode`), so an output may hold the same file as
//! the cache: gc and eviction only ever unlink the cache's own names, and decide what the store
//! still needs from the entries, never from link counts.
//!
//! A read-only cache serves its entries (locks are taken on files opened for reading, or not
//! at all when there is none) and a miss is built without it.

mod entry;
pub(crate) mod files;
mod gc;
mod lock;
mod verify;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use entry::Checked;
pub use entry::{Entry, Stamp};
pub use gc::GcOptions;
#[cfg(feature = "cli")]
pub use gc::GcReport;
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

/// The lock that keeps gc's sweep of the store and builds adding to it apart.
const STORE_LOCK: &str = "store";

/// Under the root: `image-maker serve`'s digest memos, one small file per image, which gc
/// ages out as it does entries.
pub(crate) const MEMOS: &str = "serve/v1";
/// Under the root: the memos' index by digest (a file per digest, holding memo keys).
pub(crate) const MEMO_INDEX: &str = "serve/v1-by-digest";

/// The cache under one root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `IMAGE_MAKER_CACHE_DIR`, else the user's cache directory (`~/.cache/image-maker`).
    /// A directory there that another user owns, or that every user can write to, is
    /// refused: whoever can write to it decides what the cache's images hold.
    pub fn from_env() -> Result<Self, Error> {
        let cache = match std::env::var_os("IMAGE_MAKER_CACHE_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => Self::at(dir),
            None => dirs::cache_dir()
                .map(|d| Self::at(d.join("image-maker")))
                .ok_or(Error::NoCacheDir)?,
        };
        cache.check_owner()?;
        Ok(cache)
    }

    /// Refuses a root that is someone else's or that anyone can write to, as ssh refuses
    /// such a `~/.ssh`. A group-writable one is only warned about: with a group of one's
    /// own (the usual `umask 002` set-up) that is nobody else, and refusing would lock
    /// those users out of the caches they have. A root that is not there yet is created
    /// 0700 when first used.
    fn check_owner(&self) -> Result<(), Error> {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = fs::metadata(&self.root) else {
            return Ok(());
        };
        let uid = nix::unistd::geteuid().as_raw();
        if meta.uid() != uid {
            return Err(Error::CacheNotYours {
                path: self.root.clone(),
                owner: meta.uid(),
                uid,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o002 != 0 {
            return Err(Error::CacheWorldWritable {
                path: self.root.clone(),
                mode,
            });
        }
        if mode & 0o020 != 0 {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                crate::progress::log(
                    crate::progress::LogLevel::Warning,
                    &format!(
                        "the cache directory `{}` can be written by its group (mode {mode:o}); `chmod g-w` it unless that group is you alone",
                        self.root.display()
                    ),
                );
            });
        }
        Ok(())
    }

    /// The cache under `root`, whatever the environment says.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Builds `request`'s image into the cache once, then exports it to the request's
    /// outputs by link where it can; [`build`](crate::build) is the same without a cache.
    ///
    /// ```no_run
    /// use image_maker::{BuildRequest, Cache, Output, Progress, Reference, Spec};
    ///
    /// let request = BuildRequest::new(Spec::parse("5MB")?, Reference::parse("mock/small:1")?)
    ///     .output(Output::OciDir("target/mock-small".into()));
    /// let built = Cache::from_env()?.build(&request, &mut Progress::hidden())?;
    /// println!("{}", built.digest);
    /// # Ok::<(), image_maker::Error>(())
    /// ```
    pub fn build(&self, request: &BuildRequest, progress: &mut Progress) -> Result<Built, Error> {
        build(self, request, progress)
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
            files::create_dir(&dir).map_err(Error::io("create the cache directory", dir))?;
        }
        // The root may have been made by someone else since `from_env` looked.
        self.check_owner()
    }

    /// Whether the cache holds `request`'s image, complete.
    pub fn contains(&self, request: &BuildRequest) -> bool {
        Entry::read(&self.entry_dir(&key(request))).is_some()
    }

    /// The entry for `request`'s image, built first if it is missing or damaged. A build
    /// streams to `request.outputs` in the same pass and returns what it built; an entry that
    /// was there already leaves the outputs to [`Cached::export`].
    ///
    /// The entry is checked without reading its blobs: each is there with its size, and its
    /// inode and modification time are those recorded when it was hashed. A blob that was
    /// written to or replaced since is hashed again; a damaged entry is built again, with a
    /// `warning:` line.
    pub(crate) fn acquire(
        &self,
        request: &BuildRequest,
        progress: &mut Progress,
    ) -> Result<(Cached, Option<Built>), Error> {
        self.prepare()?;
        let key = key(request);
        let dir = self.entry_dir(&key);
        let lock = KeyLock::open(&self.dir("locks"), &key)?;
        let mut built = None;
        let mut warned = false;
        loop {
            lock.shared(progress)?;
            if let Ok(entry) = self.sound(&dir, progress)? {
                entry::touch(&dir);
                let cached = Cached {
                    dir,
                    entry,
                    cache: self.clone(),
                    _lock: lock,
                };
                return Ok((cached, built));
            }
            lock.exclusive(progress)?;
            // Another process may have built it while this one waited.
            if let Err(damage) = self.sound(&dir, progress)? {
                if built.is_some() {
                    // Just built, and not sound: building again would not help.
                    return Err(Error::CacheCorrupt {
                        path: dir,
                        detail: damage.unwrap_or_else(|| "it vanished after the build".into()),
                    });
                }
                if let (Some(why), false) = (&damage, warned) {
                    warned = true;
                    progress.stage(format!(
                        "warning: the cached image of {} ({}) is damaged: {why}; building it again",
                        request.spec.canonical(),
                        short(&key)
                    ));
                }
                built = Some(self.fill(&key, request, progress)?);
            }
            // Back to shared; an eviction in between means going round again.
            lock.unlock();
        }
    }

    /// The entry in `dir` if it is sound, after hashing the blobs whose stamps changed;
    /// otherwise why not (`None`: there is no entry).
    fn sound(
        &self,
        dir: &Path,
        progress: &Progress,
    ) -> Result<Result<Entry, Option<String>>, Error> {
        match Entry::check(dir) {
            Checked::Missing => Ok(Err(None)),
            Checked::Damaged(why) => Ok(Err(Some(why))),
            Checked::Sound { entry, changed } if changed.is_empty() => Ok(Ok(*entry)),
            Checked::Sound { mut entry, changed } => {
                progress.stage(format!(
                    "checking {} blob{} of the cached image that changed on disk since {} hashed",
                    changed.len(),
                    if changed.len() == 1 { "" } else { "s" },
                    if changed.len() == 1 {
                        "it was"
                    } else {
                        "they were"
                    },
                ));
                match Entry::hash(dir, &changed)? {
                    Some((blob, why)) => {
                        self.damaged(dir, Some(&dir.join(blob.layout_path())), &why);
                        Ok(Err(Some(why)))
                    }
                    None => {
                        // Sound: the new stamps spare the next use this hashing. Best effort,
                        // as a read-only cache cannot keep them.
                        let _ = entry.write(dir);
                        Ok(Ok(*entry))
                    }
                }
            }
        }
    }

    /// Records that the entry in `dir` is damaged (`why`), so that the next build replaces
    /// it. When the damage is in the blob at `blob`, every entry holding that same file is
    /// marked too, and the store forgets it, so that no new entry links it.
    pub(crate) fn damaged(&self, dir: &Path, blob: Option<&Path>, why: &str) {
        use std::os::unix::fs::MetadataExt;
        entry::mark_damaged(dir, why);
        let Some((name, ino)) =
            blob.and_then(|b| Some((b.file_name()?.to_owned(), fs::metadata(b).ok()?.ino())))
        else {
            return;
        };
        let same = |p: &Path| fs::metadata(p).is_ok_and(|m| m.ino() == ino);
        if let Ok(items) = fs::read_dir(self.dir("entries")) {
            for item in items.flatten() {
                if same(&item.path().join("blobs/sha256").join(&name)) {
                    entry::mark_damaged(&item.path(), why);
                }
            }
        }
        let stored = self.dir("blobs/sha256").join(&name);
        if same(&stored) {
            let _ = fs::remove_file(stored);
        }
    }

    /// Every layer blob of every sound entry whose stamp still holds: bytes that are what
    /// was hashed, which a server may send as they are. One `stat` per blob.
    // Only serve sends the cache's files.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn trusted_layers(&self) -> Vec<TrustedLayer> {
        let mut trusted = Vec::new();
        let Ok(items) = fs::read_dir(self.dir("entries")) else {
            return trusted;
        };
        for item in items.flatten() {
            let dir = item.path();
            let Checked::Sound { entry, changed } = Entry::check(&dir) else {
                continue;
            };
            let stamps: HashMap<&str, &Stamp> = entry
                .stamps
                .iter()
                .map(|s| (s.digest.as_str(), s))
                .collect();
            for layer in entry.layer_sets().into_iter().flatten() {
                let digest = &layer.digest;
                if changed.iter().any(|b| &b.digest == digest) {
                    continue;
                }
                if let Some(stamp) = stamps.get(digest.as_str()) {
                    trusted.push(TrustedLayer {
                        path: dir
                            .join("blobs/sha256")
                            .join(digest.trim_start_matches("sha256:")),
                        entry: dir.clone(),
                        size: layer.size,
                        stamp: (*stamp).clone(),
                    });
                }
            }
        }
        trusted
    }

    /// When an entry last came or went: the entries directory's modification time.
    // Only serve sends the cache's files.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn entries_changed(&self) -> Option<std::time::SystemTime> {
        fs::metadata(self.dir("entries"))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Checks the entry in `dir` as a build would before using it: blobs whose stamps
    /// moved are hashed, and one found damaged marks the entry (and every entry holding
    /// it), so that its next build replaces it. Whether it is sound.
    // Only serve sends the cache's files.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn recheck(&self, dir: &Path) -> Result<bool, Error> {
        Ok(self.sound(dir, &Progress::hidden())?.is_ok())
    }

    /// The stamps of every sound entry's blobs, by digest: what the store's files must match
    /// to be linked into a new entry unhashed.
    fn trusted_stamps(&self) -> HashMap<String, Vec<Stamp>> {
        let mut trusted: HashMap<String, Vec<Stamp>> = HashMap::new();
        let Ok(items) = fs::read_dir(self.dir("entries")) else {
            return trusted;
        };
        for item in items.flatten() {
            if let Checked::Sound { entry, changed } = Entry::check(&item.path()) {
                for stamp in entry.stamps {
                    if !changed.iter().any(|b| b.digest == stamp.digest) {
                        trusted.entry(stamp.digest.clone()).or_default().push(stamp);
                    }
                }
            }
        }
        trusted
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
            .map_err(|e| match cannot_write(&e) {
                true => Error::CacheReadOnly {
                    path: self.root.clone(),
                },
                false => Error::io("create a temporary directory in", &tmp_root)(e),
            })?;
        let layout = tmp.path().join("layout");
        let mut with_cache = request.clone();
        with_cache.builder = Builder::Native;
        with_cache.internal = Some(Output::OciDir(layout.clone()));
        let built = build::build(&with_cache, progress)?;
        let mut entry = Entry::create(&layout, key, request, &built, &cache_reference(key)?)?;
        // gc does not sweep the store while blobs go in.
        let store_lock = KeyLock::open(&self.dir("locks"), STORE_LOCK)?;
        store_lock.shared(progress)?;
        let dest = self.entry_dir(key);
        if dest.exists() {
            // Damaged: out of the way first (its stamps vouch for nothing), then gone.
            let aside = tmp.path().join("damaged");
            fs::rename(&dest, &aside).map_err(Error::io("move aside", &dest))?;
        }
        entry::share_blobs(&layout, &self.dir("blobs/sha256"), &self.trusted_stamps())?;
        entry.write(&layout)?;
        fs::rename(&layout, &dest).map_err(Error::io("rename into", &dest))?;
        store_lock.unlock();
        self.log(&format!(
            "built {key} {} {} {}",
            entry.spec,
            entry.platforms(),
            entry.digest
        ));
        progress.stage(format!("cached {} as {}", entry.spec, dest.display()));
        Ok(built)
    }

    /// Appends a line to the cache's log. Lines are short single writes to a file opened
    /// for appending, so concurrent processes do not interleave within a line. A log that
    /// is not a regular file (a symlink, a FIFO) is not written to.
    fn log(&self, line: &str) {
        let path = self.root.join(FORMAT).join("log");
        let text = format!("{} {} {line}\n", entry::now(), std::process::id());
        // The log is for people and tests; a build does not fail over it.
        let _ = files::append(&path).and_then(|mut f| f.write_all(text.as_bytes()));
    }
}

/// A layer blob of a cache entry, as its entry recorded it when it was hashed.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) struct TrustedLayer {
    /// The blob's file in the entry.
    pub path: PathBuf,
    /// The entry's directory.
    pub entry: PathBuf,
    pub size: u64,
    pub stamp: Stamp,
}

/// An entry in use: it stays in the cache (gc skips it) until every clone is dropped.
#[derive(Debug)]
pub struct Cached {
    /// The entry's directory: a complete OCI image layout.
    pub dir: PathBuf,
    /// What `entry.json` records of the image.
    pub entry: Entry,
    cache: Cache,
    /// Held, never read: its shared lock is what keeps gc away from the entry.
    _lock: KeyLock,
}

impl Cached {
    /// Writes the cached image to `request.outputs` from its blobs, without regenerating:
    /// `oci:` outputs link them as `request.link_mode` says, the others read them. A blob
    /// found damaged on the way (`request.verify` hashes each) fails the export and marks
    /// the entry, which the next build replaces.
    pub fn export(&self, request: &BuildRequest, progress: &mut Progress) -> Result<Built, Error> {
        let source = Source::Blobs {
            layout: &self.dir,
            sets: self.entry.layer_sets(),
        };
        build::deliver(request, &source, progress).inspect_err(|e| {
            if let Error::CacheCorrupt { path, detail } = e {
                self.cache.damaged(&self.dir, Some(path), detail);
            }
        })
    }

    /// Hashes every blob of the entry; a damaged one marks the entry and is the error.
    pub fn verify(&self) -> Result<(), Error> {
        match Entry::hash(&self.dir, &self.entry.blobs)? {
            None => Ok(()),
            Some((blob, detail)) => {
                let path = self.dir.join(blob.layout_path());
                self.cache.damaged(&self.dir, Some(&path), &detail);
                Err(Error::CacheCorrupt { path, detail })
            }
        }
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
        let mut request = BuildRequest::new(crate::Spec::parse(&self.entry.spec)?, reference)
            .platforms(crate::Platform::parse_list(&self.entry.platforms())?)
            .mtime(self.entry.mtime);
        request.shared_layers = self.entry.shared_layers;
        request.config = self.entry.config.clone();
        request.media_types = self.entry.media_types;
        Ok(request)
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
            manifests: self.entry.manifests.clone(),
            outputs: outputs.iter().map(ToString::to_string).collect(),
        }
    }
}

pub(crate) use crate::request::key;

/// The name a cache entry's own `index.json` gives its image, and fixtures default to.
pub fn cache_reference(key: &str) -> Result<Reference, Error> {
    let short = key.get(..12).unwrap_or(key);
    Ok(Reference::parse(&format!("image-maker/mock:{short}"))?)
}

/// The first 12 hex digits of a key, as `cache ls` shows it.
fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

/// Whether an error says that the cache cannot be written (a read-only filesystem, or
/// someone else's directory), rather than that something went wrong.
pub(crate) fn cannot_write(e: &std::io::Error) -> bool {
    use nix::libc::{EACCES, EPERM, EROFS};
    use std::io::ErrorKind;
    // tempfile's errors carry the path and keep only the kind.
    matches!(e.raw_os_error(), Some(EROFS | EACCES | EPERM))
        || matches!(
            e.kind(),
            ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied
        )
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
#[cfg(feature = "cli")]
pub fn build_in_user_cache(
    request: &BuildRequest,
    progress: &mut Progress,
) -> Result<Built, Error> {
    match Cache::from_env() {
        Ok(cache) => build(&cache, request, progress),
        // Refused, not skipped: a warning on every build would be read past.
        Err(e @ (Error::CacheNotYours { .. } | Error::CacheWorldWritable { .. })) => Err(e),
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
    request.check_features()?;
    // The cache holds what the native builder makes; an engine's build stays in the engine,
    // where the dockerfile builder finds it again by the key's label.
    if request.builder == Builder::Dockerfile || request.no_cache {
        return build::build(request, progress);
    }
    // A read-only home or a full cache disk should not stop a build that needs no cache.
    if let Err(e) = cache.prepare() {
        if matches!(
            e,
            Error::CacheNotYours { .. } | Error::CacheWorldWritable { .. }
        ) {
            return Err(e);
        }
        progress.stage(format!("warning: building without the cache: {e}"));
        return build::build(request, progress);
    }
    if request.outputs.contains(&Output::Registry) {
        return push_and_export(cache, request, progress);
    }
    let Some((cached, built)) = acquire_or_warn(cache, request, progress)? else {
        return build::build(request, progress);
    };
    match built {
        Some(built) => Ok(built),
        None if request.outputs.is_empty() => Ok(cached.built(&request.reference, &[])),
        None => cached.export(request, progress),
    }
}

/// [`Cache::acquire`]; `None`, with a warning, when the image is not cached and the cache
/// is read-only: the caller builds without it.
fn acquire_or_warn(
    cache: &Cache,
    request: &BuildRequest,
    progress: &mut Progress,
) -> Result<Option<(Cached, Option<Built>)>, Error> {
    match cache.acquire(request, progress) {
        Ok(acquired) => Ok(Some(acquired)),
        Err(e @ Error::CacheReadOnly { .. }) => {
            progress.stage(format!("warning: {e}; building without it"));
            Ok(None)
        }
        Err(e) => Err(e),
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
    let Some((cached, _)) = acquire_or_warn(cache, &cache_only, progress)? else {
        return build::build(request, progress);
    };
    if request.verify {
        cached.verify()?;
    }
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
