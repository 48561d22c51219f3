//! `cache ls`, `cache gc` and `cache clear`: listing entries and evicting the least recently
//! used, never one that a process holds.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{entry, Cache, Entry, KeyLock};
use crate::progress::Progress;
use crate::Error;

/// One entry, as `cache ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The cache key.
    pub key: String,
    /// The spec in canonical form.
    pub spec: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Digest of the manifest.
    pub digest: String,
    /// Bytes of the entry's blobs and archive (blobs shared with other entries included).
    pub size: u64,
    /// When a build or fixture last used it.
    pub last_used: SystemTime,
    /// When it was built, in seconds since 1970.
    pub created: u64,
}

/// What to evict; with neither limit, only leftovers (killed builds, damaged entries, unused
/// blobs) go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcOptions {
    /// Evict least recently used entries until the cache holds at most this many bytes.
    pub max_size: Option<u64>,
    /// Evict entries not used for this long.
    pub max_age: Option<Duration>,
}

/// What `gc` or `clear` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The entries removed.
    pub evicted: Vec<Listed>,
    /// Entries that would have gone but are in use by a running process.
    pub in_use: Vec<Listed>,
    /// Bytes freed on disk.
    pub freed: u64,
    /// Bytes the cache holds afterwards.
    pub remaining: u64,
    /// Damaged entries removed: key, and what was wrong.
    pub damaged: Vec<(String, String)>,
    /// How many of the server's digest memos (`serve/v1/`) were removed.
    pub memos: usize,
}

impl Cache {
    /// Every complete entry, least recently used first.
    pub fn list(&self) -> Result<Vec<Listed>, Error> {
        let dir = self.dir("entries");
        let items = match fs::read_dir(&dir) {
            Ok(items) => items,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read", &dir)(e)),
        };
        let mut listed = Vec::new();
        for item in items {
            let item = item.map_err(Error::io("read", &dir))?;
            let Some(entry) = Entry::read(&item.path()) else {
                continue;
            };
            let archive = fs::metadata(self.archive_path(&entry.key)).map_or(0, |m| m.len());
            listed.push(Listed {
                size: entry.size() + archive,
                last_used: entry::last_used(&item.path()),
                platform: entry.platforms(),
                created: entry.created,
                key: entry.key,
                spec: entry.spec,
                digest: entry.digest,
            });
        }
        listed.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.key.cmp(&b.key)));
        Ok(listed)
    }

    /// Bytes on disk: the shared store (each blob once), the archives, and the server's
    /// digest memos.
    pub fn disk_usage(&self) -> u64 {
        let memos = [super::MEMOS, super::MEMO_INDEX].map(|part| self.root.join(part));
        ["blobs/sha256", "archives"]
            .iter()
            .map(|part| self.dir(part))
            .chain(memos)
            .map(|dir| dir_size(&dir))
            .sum()
    }

    /// Removes leftovers, then evicts entries as `options` say, oldest use first, then
    /// the server's digest memos by the same rules.
    pub fn gc(&self, options: GcOptions) -> Result<GcReport, Error> {
        let before = self.disk_usage();
        let mut report = GcReport::default();
        let mut usage = before;
        if self.root.join(super::FORMAT).exists() {
            usage = self.gc_entries(options, &mut report)?;
        }
        self.gc_memos(options, &mut usage, &mut report);
        report.remaining = usage;
        report.freed = before.saturating_sub(report.remaining);
        Ok(report)
    }

    /// The entries' part of [`Cache::gc`]: returns the bytes the cache holds after it.
    fn gc_entries(&self, options: GcOptions, report: &mut GcReport) -> Result<u64, Error> {
        self.prepare()?;
        self.remove_leftovers(report)?;
        // Builds add blobs to the store while they hold it shared: none is half-added now.
        let store_lock = KeyLock::open(&self.dir("locks"), super::STORE_LOCK)?;
        store_lock.exclusive(&Progress::hidden())?;
        let mut references = self.sweep_store()?;
        // Counted once, then reduced by what each eviction frees.
        let mut usage = self.disk_usage();
        let now = SystemTime::now();
        for listed in self.list()? {
            let too_old = options.max_age.is_some_and(|age| {
                now.duration_since(listed.last_used)
                    .is_ok_and(|idle| idle > age)
            });
            let too_big = options.max_size.is_some_and(|max| usage > max);
            if !(too_old || too_big) {
                continue;
            }
            match self.evict(&listed.key)? {
                Some(evicted) => {
                    let freed = evicted.archive + self.forget(&mut references, &evicted.blobs)?;
                    usage = usage.saturating_sub(freed);
                    report.evicted.push(listed);
                }
                None => report.in_use.push(listed),
            }
        }
        store_lock.unlock();
        Ok(usage)
    }

    /// The server's digest memos: each is one small file, used when a server reads it (which
    /// moves its modification time), so age and size evict them as they do entries, oldest
    /// first, after the entries. A pointer of the digest index whose memo is gone goes too,
    /// and so do temporary files a killed server left. Best effort: a server may write a
    /// memo meanwhile, and a memo that cannot be removed is only kept.
    fn gc_memos(&self, options: GcOptions, usage: &mut u64, report: &mut GcReport) {
        let dir = self.root.join(super::MEMOS);
        let now = SystemTime::now();
        let idle = |m: &fs::Metadata| {
            m.modified()
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default()
        };
        let everything = options.max_size == Some(0);
        // A memo is written in well under a second: a temporary file older than this one
        // belongs to no server still writing it.
        let stale = |m: &fs::Metadata| everything || idle(m) > Duration::from_secs(600);
        let mut memos = Vec::new();
        for (path, meta) in items(&dir) {
            if is_temporary(&path) {
                if stale(&meta) && remove(&path, &meta) {
                    *usage = usage.saturating_sub(size_of(&meta));
                }
                continue;
            }
            memos.push((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                path,
                meta,
            ));
        }
        memos.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        for (_, path, meta) in memos {
            let too_old = options.max_age.is_some_and(|age| idle(&meta) > age);
            let too_big = options.max_size.is_some_and(|max| *usage > max);
            if (too_old || too_big) && remove(&path, &meta) {
                *usage = usage.saturating_sub(size_of(&meta));
                report.memos += 1;
            }
        }
        for (path, meta) in items(&self.root.join(super::MEMO_INDEX)) {
            let gone = if is_temporary(&path) {
                stale(&meta)
            } else {
                everything || !points_to_memos(&path, &dir)
            };
            if gone && remove(&path, &meta) {
                *usage = usage.saturating_sub(size_of(&meta));
            }
        }
    }

    /// Evicts every entry not in use.
    pub fn clear(&self) -> Result<GcReport, Error> {
        self.gc(GcOptions {
            max_size: Some(0),
            max_age: None,
        })
    }

    /// Removes the entry `key` and its archive unless a process holds it (then `None`).
    /// The store keeps the blobs: [`Cache::forget`] removes those no other entry uses.
    pub(super) fn evict(&self, key: &str) -> Result<Option<Evicted>, Error> {
        let lock = KeyLock::open(&self.dir("locks"), key)?;
        if !lock.try_exclusive()? {
            return Ok(None);
        }
        let dir = self.entry_dir(key);
        let blobs = names(&dir.join("blobs/sha256"));
        // Renamed away first, so that no reader ever sees half an entry. Only names go:
        // an output linked from the entry keeps its files.
        let aside = self.dir("tmp").join(format!("{key}.evicted"));
        let _ = fs::remove_dir_all(&aside);
        if dir.exists() {
            fs::rename(&dir, &aside).map_err(Error::io("move aside", &dir))?;
            fs::remove_dir_all(&aside).map_err(Error::io("remove", &aside))?;
        }
        let mut archive = 0;
        let path = self.archive_path(key);
        if let Ok(m) = fs::metadata(&path) {
            fs::remove_file(&path).map_err(Error::io("remove", &path))?;
            archive = m.len();
        }
        Ok(Some(Evicted { archive, blobs }))
    }

    /// After an eviction: removes from the store the `blobs` that no entry uses any more,
    /// by the count of entries using each; returns the bytes the store no longer holds.
    /// The caller holds the store lock exclusively.
    pub(super) fn forget(
        &self,
        references: &mut HashMap<OsString, usize>,
        blobs: &[OsString],
    ) -> Result<u64, Error> {
        let mut freed = 0;
        for name in blobs {
            let count = references.entry(name.clone()).or_default();
            *count = count.saturating_sub(1);
            if *count > 0 {
                continue;
            }
            let path = self.dir("blobs/sha256").join(name);
            if let Ok(m) = fs::metadata(&path) {
                fs::remove_file(&path).map_err(Error::io("remove", &path))?;
                freed += m.len();
            }
        }
        Ok(freed)
    }

    /// How many entries use each blob, by its name in the store.
    pub(super) fn references(&self) -> HashMap<OsString, usize> {
        let mut references = HashMap::new();
        for entry in names(&self.dir("entries")) {
            for blob in names(&self.dir("entries").join(entry).join("blobs/sha256")) {
                *references.entry(blob).or_default() += 1;
            }
        }
        references
    }

    /// Removes from the store what no entry uses: blobs of entries evicted or replaced, and
    /// what a killed build left half-added. Whether an output still links a file is not the
    /// cache's business (link counts include outputs). The caller holds the store lock
    /// exclusively. Returns the references it counted.
    fn sweep_store(&self) -> Result<HashMap<OsString, usize>, Error> {
        let references = self.references();
        let store = self.dir("blobs/sha256");
        for name in names(&store) {
            if !references.contains_key(&name) {
                let path = store.join(&name);
                fs::remove_file(&path).map_err(Error::io("remove", &path))?;
            }
        }
        Ok(references)
    }

    /// Builds that were killed (their key is not locked by anyone), and damaged entries: those
    /// the cheap checks find (a blob missing or of the wrong size, or marked damaged when a
    /// read hashed it), and those whose blobs changed on disk and no longer hash right.
    fn remove_leftovers(&self, report: &mut GcReport) -> Result<(), Error> {
        let tmp = self.dir("tmp");
        for item in fs::read_dir(&tmp)
            .map_err(Error::io("read", &tmp))?
            .flatten()
        {
            let name = item.file_name().to_string_lossy().into_owned();
            let key = name.split('.').next().unwrap_or_default();
            if KeyLock::open(&self.dir("locks"), key)?.try_exclusive()? {
                let _ = fs::remove_dir_all(item.path());
            }
        }
        for key in names(&self.dir("entries")) {
            let key = key.to_string_lossy().into_owned();
            let dir = self.entry_dir(&key);
            let lock = KeyLock::open(&self.dir("locks"), &key)?;
            // An entry being built or evicted right now is that process's business.
            if !lock.try_exclusive()? {
                continue;
            }
            let damage = self.sound(&dir, &Progress::hidden())?.err().flatten();
            lock.unlock();
            if let Some(why) = damage {
                if self.evict(&key)?.is_some() {
                    report.damaged.push((key, why));
                }
            }
        }
        Ok(())
    }
}

/// What an eviction removed: the archive's bytes, and the names of the entry's blobs.
#[derive(Debug)]
pub(super) struct Evicted {
    pub archive: u64,
    pub blobs: Vec<OsString>,
}

/// The names in `dir`; none when it cannot be read.
fn names(dir: &Path) -> Vec<OsString> {
    fs::read_dir(dir)
        .map(|items| items.flatten().map(|i| i.file_name()).collect())
        .unwrap_or_default()
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|items| {
            items
                .flatten()
                .filter_map(|i| i.metadata().ok())
                .map(|m| size_of(&m))
                .sum()
        })
        .unwrap_or(0)
}

/// What a directory entry counts for: the bytes of a regular file, nothing for the rest.
fn size_of(meta: &fs::Metadata) -> u64 {
    if meta.is_file() {
        meta.len()
    } else {
        0
    }
}

/// Every name in `dir` with its own metadata (a symlink's, not its target's).
fn items(dir: &Path) -> Vec<(std::path::PathBuf, fs::Metadata)> {
    fs::read_dir(dir)
        .map(|items| {
            items
                .flatten()
                .filter_map(|i| Some((i.path(), i.metadata().ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Temporary files of the memo's writes start with a dot.
fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Whether the pointer at `path` (words, each a memo's key) names memos that are all in
/// `memos`: one that names none, or cannot be read as a small file, is a dangling one.
fn points_to_memos(path: &Path, memos: &Path) -> bool {
    let Ok(text) = super::files::read_small(path, 64 << 10) else {
        return false;
    };
    let text = String::from_utf8_lossy(&text);
    let keys: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    !keys.is_empty()
        && keys
            .iter()
            .all(|key| fs::symlink_metadata(memos.join(key)).is_ok_and(|m| m.is_file()))
}

/// Removes what is at `path` (a directory with what it holds; a symlink, not its target).
fn remove(path: &Path, meta: &fs::Metadata) -> bool {
    if meta.is_dir() {
        fs::remove_dir_all(path).is_ok()
    } else {
        fs::remove_file(path).is_ok()
    }
}
