//! `entry.json`: what a cache entry holds, and the checks that tell a complete entry from
//! a damaged one.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::digest::Blob;
use crate::image::{self, LayerInfo};
use crate::reference::Reference;
use crate::{BuildRequest, Built, Error};

const ENTRY_FILE: &str = "entry.json";
const FORMAT: u32 = 1;

/// A cached image, as `entry.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub format: u32,
    pub key: String,
    /// The spec in canonical form.
    pub spec: String,
    pub platform: String,
    pub mtime: u64,
    /// Digest of the manifest.
    pub digest: String,
    pub config_digest: String,
    pub layers: Vec<LayerInfo>,
    /// Every blob of the layout: manifest, config and layers.
    pub blobs: Vec<Blob>,
    /// When it was built, in seconds since 1970.
    pub created: u64,
}

impl Entry {
    /// The entry in `dir`, if it is complete: `entry.json` parses and every blob it names is
    /// there with its size. Checking sizes, not hashes, keeps a cache hit in milliseconds;
    /// an export hashes the layers again anyway.
    pub fn read(dir: &Path) -> Option<Self> {
        let text = fs::read(dir.join(ENTRY_FILE)).ok()?;
        let entry: Self = serde_json::from_slice(&text).ok()?;
        let complete = entry.format == FORMAT
            && dir.join("index.json").is_file()
            && dir.join("oci-layout").is_file()
            && entry.blobs.iter().all(|b| {
                fs::metadata(dir.join(b.layout_path()))
                    .is_ok_and(|m| m.is_file() && m.len() == b.size)
            });
        complete.then_some(entry)
    }

    /// Writes `entry.json` for a layout just built, and names the image after the cache
    /// instead of after the build that happened to fill it.
    pub(super) fn create(
        layout: &Path,
        key: &str,
        request: &BuildRequest,
        built: &Built,
        reference: &Reference,
    ) -> Result<Self, Error> {
        let blobs_dir = layout.join("blobs/sha256");
        let mut blobs = Vec::new();
        for item in fs::read_dir(&blobs_dir).map_err(Error::io("read", &blobs_dir))? {
            let item = item.map_err(Error::io("read", &blobs_dir))?;
            let size = item
                .metadata()
                .map_err(Error::io("read", item.path()))?
                .len();
            blobs.push(Blob {
                digest: format!("sha256:{}", item.file_name().to_string_lossy()),
                size,
            });
        }
        blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
        let manifest = blobs
            .iter()
            .find(|b| b.digest == built.digest)
            .cloned()
            .ok_or_else(|| Error::CacheCorrupt {
                path: layout.to_path_buf(),
                detail: format!("the manifest {} was not written", built.digest),
            })?;
        let index = image::index(&manifest, reference, &request.platform)?;
        let index_path = layout.join("index.json");
        fs::write(&index_path, index).map_err(Error::io("write", &index_path))?;
        let entry = Self {
            format: FORMAT,
            key: key.to_owned(),
            spec: built.spec.clone(),
            platform: built.platform.clone(),
            mtime: request.mtime,
            digest: built.digest.clone(),
            config_digest: built.config_digest.clone(),
            layers: built.layers.clone(),
            blobs,
            created: now(),
        };
        let json = serde_json::to_vec_pretty(&entry).map_err(|e| Error::Metadata(e.into()))?;
        let path = layout.join(ENTRY_FILE);
        fs::write(&path, json).map_err(Error::io("write", &path))?;
        Ok(entry)
    }

    /// Bytes of all the entry's blobs (shared ones included).
    pub fn size(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

/// Marks the entry in `dir` as used now: gc evicts the least recently used first.
pub(super) fn touch(dir: &Path) {
    // Best effort: a read-only cache still serves its entries.
    let _ = fs::File::options()
        .write(true)
        .open(dir.join(ENTRY_FILE))
        .and_then(|f| f.set_modified(SystemTime::now()));
}

/// When the entry in `dir` was last used.
pub(super) fn last_used(dir: &Path) -> SystemTime {
    fs::metadata(dir.join(ENTRY_FILE))
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Replaces each blob of `layout` by a hard link into the shared `store` (adding it there
/// first if it is new), and makes them read-only: the store is content-addressed, and a
/// test that writes into `oci_dir()` must not change every other user's image.
pub(super) fn share_blobs(layout: &Path, store: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let blobs_dir = layout.join("blobs/sha256");
    for item in fs::read_dir(&blobs_dir).map_err(Error::io("read", &blobs_dir))? {
        let item = item.map_err(Error::io("read", &blobs_dir))?;
        let path = item.path();
        let stored = store.join(item.file_name());
        let readonly = fs::Permissions::from_mode(0o444);
        fs::set_permissions(&path, readonly).map_err(Error::io("make read-only", &path))?;
        let same_size = |p: &Path| {
            fs::metadata(p)
                .ok()
                .zip(fs::metadata(&path).ok())
                .is_some_and(|(a, b)| a.len() == b.len())
        };
        let linked = path.with_extension("link");
        // Already stored by another entry: keep one copy. (If gc removes it in between, the
        // link fails and this entry's copy is stored instead.)
        if same_size(&stored) && fs::hard_link(&stored, &linked).is_ok() {
            fs::rename(&linked, &path).map_err(Error::io("rename", &path))?;
        } else {
            let _ = fs::remove_file(&stored);
            match fs::hard_link(&path, &stored) {
                Ok(()) => {}
                // Another entry stored it at the same moment: theirs is the same bytes.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("link", &stored)(e)),
            }
        }
    }
    Ok(())
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
