//! Cross-process locks per cache key, with std's `File::lock` (flock on Unix). The kernel
//! drops a lock when its process dies, so a killed builder never leaves a key locked.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;

use crate::progress::Progress;
use crate::{interrupt, Error};

const POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// One key's lock file. Clones share the same open file, and so the same lock.
///
/// In a read-only cache the lock file is opened for reading, which is all flock needs; when
/// there is none to open, nobody can have built anything there since, and locking does
/// nothing.
#[derive(Debug, Clone)]
pub(crate) struct KeyLock {
    file: Option<Arc<File>>,
    path: std::path::PathBuf,
}

impl KeyLock {
    pub fn open(dir: &Path, key: &str) -> Result<Self, Error> {
        let path = dir.join(format!("{key}.lock"));
        let file = match super::files::open_lock(&path, true) {
            Ok(file) => Some(file),
            Err(e) if super::cannot_write(&e) => match super::files::open_lock(&path, false) {
                Ok(file) => Some(file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io("open the lock", &path)(e)),
            },
            Err(e) => return Err(Error::io("open the lock", &path)(e)),
        };
        Ok(Self {
            file: file.map(Arc::new),
            path,
        })
    }

    /// Shared: others may use the entry too, nobody may rebuild or evict it.
    pub fn shared(&self, progress: &Progress) -> Result<(), Error> {
        self.wait(progress, File::try_lock_shared)
    }

    /// Exclusive: this process builds or evicts the entry. Converting a shared lock is not
    /// atomic (flock drops it first), which is why callers check the entry again after.
    pub fn exclusive(&self, progress: &Progress) -> Result<(), Error> {
        self.wait(progress, File::try_lock)
    }

    /// Polls rather than blocks, so that Ctrl-C still ends a process waiting for another's
    /// build (a blocking flock would simply be restarted after the signal).
    fn wait(
        &self,
        progress: &Progress,
        try_lock: fn(&File) -> Result<(), TryLockError>,
    ) -> Result<(), Error> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut told = false;
        loop {
            match try_lock(file) {
                Ok(()) => return Ok(()),
                Err(TryLockError::WouldBlock) => {
                    if !told {
                        progress.stage(
                            if self.path.ends_with(format!("{}.lock", super::STORE_LOCK)) {
                                "waiting for `cache gc` to finish"
                            } else {
                                "waiting for another process building the same image"
                            },
                        );
                        told = true;
                    }
                    interrupt::check()?;
                    std::thread::sleep(POLL);
                }
                Err(TryLockError::Error(e)) => return Err(Error::io("lock", &self.path)(e)),
            }
        }
    }

    /// Exclusive if nobody holds the lock; `false` if the key is in use.
    pub fn try_exclusive(&self) -> Result<bool, Error> {
        let Some(file) = &self.file else {
            return Ok(true);
        };
        match file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &self.path)(e)),
        }
    }

    pub fn unlock(&self) {
        if let Some(file) = &self.file {
            let _ = file.unlock();
        }
    }
}
