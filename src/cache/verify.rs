//! `cache verify`: every blob of every entry hashed again, and damaged entries removed.

use std::fs;
use std::path::Path;

use super::{short, Cache, Checked, Entry, KeyLock};
use crate::progress::Progress;
use crate::Error;

/// One entry, as `cache verify` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The cache key.
    pub key: String,
    /// The spec in canonical form; `?` when the entry is too damaged to say.
    pub spec: String,
    /// What is wrong with it, naming the blob; `None` when every blob hashes right.
    pub damage: Option<String>,
    /// A damaged entry is removed, unless a process holds it: then it is marked, and the
    /// next build replaces it.
    pub removed: bool,
}

impl Cache {
    /// Hashes every blob of every entry, or of the entry `key` alone, and removes the
    /// damaged ones. An entry being built is waited for.
    pub fn verify(&self, key: Option<&str>, progress: &Progress) -> Result<Vec<Verified>, Error> {
        let keys: Vec<String> = match key {
            Some(key) => vec![key.to_owned()],
            None => {
                let mut keys: Vec<String> = fs::read_dir(self.dir("entries"))
                    .map(|items| {
                        items
                            .flatten()
                            .map(|i| i.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                keys.sort();
                keys
            }
        };
        let mut found = Vec::new();
        for key in keys {
            let dir = self.entry_dir(&key);
            if !dir.exists() {
                continue;
            }
            let lock = KeyLock::open(&self.dir("locks"), &key)?;
            lock.shared(progress)?;
            let spec = spec_of(&dir);
            progress.stage(format!("verifying {} {spec}", short(&key)));
            let damage = match Entry::check(&dir) {
                Checked::Missing => continue,
                Checked::Damaged(why) => Some(why),
                Checked::Sound { mut entry, changed } => match Entry::hash(&dir, &entry.blobs)? {
                    Some((blob, why)) => {
                        self.damaged(&dir, Some(&dir.join(blob.layout_path())), &why);
                        Some(why)
                    }
                    None => {
                        if !changed.is_empty() {
                            // Best effort: hashed right, so the new stamps can be trusted.
                            let _ = entry.write(&dir);
                        }
                        None
                    }
                },
            };
            lock.unlock();
            let removed = damage.is_some() && self.remove(&key)?;
            found.push(Verified {
                key,
                spec,
                damage,
                removed,
            });
        }
        Ok(found)
    }

    /// Evicts the entry `key` and forgets its blobs in the store; `false` if it is in use.
    fn remove(&self, key: &str) -> Result<bool, Error> {
        let store_lock = KeyLock::open(&self.dir("locks"), super::STORE_LOCK)?;
        store_lock.exclusive(&Progress::hidden())?;
        let mut references = self.references();
        let removed = match self.evict(key)? {
            Some(evicted) => {
                self.forget(&mut references, &evicted.blobs)?;
                true
            }
            None => false,
        };
        store_lock.unlock();
        Ok(removed)
    }
}

/// The spec an entry records, read as best it can be.
fn spec_of(dir: &Path) -> String {
    fs::read(dir.join("entry.json"))
        .ok()
        .and_then(|text| serde_json::from_slice::<serde_json::Value>(&text).ok())
        .and_then(|v| v["spec"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
