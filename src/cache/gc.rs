//! `cache ls`, `cache gc` and `cache clear`: listing entries and evicting the least recently
//! used, never one that a process holds.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{entry, Cache, Entry, KeyLock};
use crate::digest::Blob;
use crate::Error;

/// One entry, as `cache ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub spec: String,
    pub platform: String,
    pub digest: String,
    /// Bytes of the entry's blobs and archive (blobs shared with other entries included).
    pub size: u64,
    pub last_used: SystemTime,
}

/// What to evict; with neither limit, only leftovers (killed builds, unused blobs) go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcOptions {
    /// Evict least recently used entries until the cache holds at most this many bytes.
    pub max_size: Option<u64>,
    /// Evict entries not used for this long.
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub evicted: Vec<Listed>,
    /// Entries that would have gone but are in use by a running process.
    pub in_use: Vec<Listed>,
    /// Bytes freed on disk.
    pub freed: u64,
    /// Bytes the cache holds afterwards.
    pub remaining: u64,
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
                key: entry.key,
                spec: entry.spec,
                platform: entry.platform,
                digest: entry.digest,
            });
        }
        listed.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.key.cmp(&b.key)));
        Ok(listed)
    }

    /// Bytes on disk: the shared store (each blob once) and the archives.
    pub fn disk_usage(&self) -> u64 {
        ["blobs/sha256", "archives"]
            .iter()
            .map(|part| dir_size(&self.dir(part)))
            .sum()
    }

    /// Removes leftovers, then evicts entries as `options` say, oldest use first.
    pub fn gc(&self, options: GcOptions) -> Result<GcReport, Error> {
        if !self.root.join(super::FORMAT).exists() {
            return Ok(GcReport::default());
        }
        self.prepare()?;
        let before = self.disk_usage();
        self.remove_leftovers()?;
        // Counted once, then reduced by what each eviction frees.
        let mut usage = self.disk_usage();
        let mut report = GcReport::default();
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
                Some(freed) => {
                    usage = usage.saturating_sub(freed);
                    report.evicted.push(listed);
                }
                None => report.in_use.push(listed),
            }
        }
        report.remaining = usage;
        report.freed = before.saturating_sub(report.remaining);
        Ok(report)
    }

    /// Evicts every entry not in use.
    pub fn clear(&self) -> Result<GcReport, Error> {
        self.gc(GcOptions {
            max_size: Some(0),
            max_age: None,
        })
    }

    /// Removes the entry `key` unless a process holds it (then `None`); returns the bytes
    /// freed in the store and the archives.
    fn evict(&self, key: &str) -> Result<Option<u64>, Error> {
        let lock = KeyLock::open(&self.dir("locks"), key)?;
        if !lock.try_exclusive()? {
            return Ok(None);
        }
        let mut freed = 0;
        let dir = self.entry_dir(key);
        let blobs = Entry::read(&dir).map(|e| e.blobs).unwrap_or_default();
        // Renamed away first, so that no reader ever sees half an entry.
        let aside = self.dir("tmp").join(format!("{key}.evicted"));
        let _ = fs::remove_dir_all(&aside);
        if dir.exists() {
            fs::rename(&dir, &aside).map_err(Error::io("move aside", &dir))?;
            fs::remove_dir_all(&aside).map_err(Error::io("remove", &aside))?;
        }
        let archive = self.archive_path(key);
        if let Ok(m) = fs::metadata(&archive) {
            fs::remove_file(&archive).map_err(Error::io("remove", &archive))?;
            freed += m.len();
        }
        for blob in blobs {
            freed += self.remove_if_unshared(&blob)?;
        }
        Ok(Some(freed))
    }

    /// Removes a stored blob that no entry links to any more; returns the bytes freed.
    fn remove_if_unshared(&self, blob: &Blob) -> Result<u64, Error> {
        let path = self.root.join(super::FORMAT).join(blob.layout_path());
        match fs::metadata(&path) {
            Ok(m) if m.nlink() <= 1 => {
                fs::remove_file(&path).map_err(Error::io("remove", &path))?;
                Ok(m.len())
            }
            _ => Ok(0),
        }
    }

    /// Builds that were killed (their key is not locked by anyone), damaged entries, and
    /// stored blobs no entry uses.
    fn remove_leftovers(&self) -> Result<(), Error> {
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
        let entries = self.dir("entries");
        for item in fs::read_dir(&entries)
            .map_err(Error::io("read", &entries))?
            .flatten()
        {
            if Entry::read(&item.path()).is_none() {
                let key = item.file_name().to_string_lossy().into_owned();
                self.evict(&key)?;
            }
        }
        let store = self.dir("blobs/sha256");
        for item in fs::read_dir(&store)
            .map_err(Error::io("read", &store))?
            .flatten()
        {
            if item.metadata().is_ok_and(|m| m.nlink() <= 1) {
                let path = item.path();
                fs::remove_file(&path).map_err(Error::io("remove", &path))?;
            }
        }
        Ok(())
    }
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|items| {
            items
                .flatten()
                .filter_map(|i| i.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
