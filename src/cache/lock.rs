//! Cross-process locks per cache key, with std's `File::lock` (flock on Unix). The kernel
//! drops a lock when its process dies, so a killed builder never leaves a key locked.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;

use crate::progress::Progress;
use crate::Error;

/// One key's lock file. Clones share the same open file, and so the same lock.
#[derive(Debug, Clone)]
pub(crate) struct KeyLock {
    file: Arc<File>,
    path: std::path::PathBuf,
}

impl KeyLock {
    pub fn open(dir: &Path, key: &str) -> Result<Self, Error> {
        let path = dir.join(format!("{key}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("open the lock", &path))?;
        Ok(Self {
            file: Arc::new(file),
            path,
        })
    }

    /// Shared: others may use the entry too, nobody may rebuild or evict it.
    pub fn shared(&self, progress: &Progress) -> Result<(), Error> {
        match self.file.try_lock_shared() {
            Ok(()) => Ok(()),
            Err(TryLockError::WouldBlock) => {
                progress.stage("waiting for another process building the same image");
                self.file
                    .lock_shared()
                    .map_err(Error::io("lock", &self.path))
            }
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &self.path)(e)),
        }
    }

    /// Exclusive: this process builds or evicts the entry. Converting a shared lock is not
    /// atomic (flock drops it first), which is why callers check the entry again after.
    pub fn exclusive(&self, progress: &Progress) -> Result<(), Error> {
        match self.file.try_lock() {
            Ok(()) => Ok(()),
            Err(TryLockError::WouldBlock) => {
                progress.stage("waiting for another process building the same image");
                self.file.lock().map_err(Error::io("lock", &self.path))
            }
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &self.path)(e)),
        }
    }

    /// Exclusive if nobody holds the lock; `false` if the key is in use.
    pub fn try_exclusive(&self) -> Result<bool, Error> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &self.path)(e)),
        }
    }

    pub fn unlock(&self) {
        let _ = self.file.unlock();
    }
}
