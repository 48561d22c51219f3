//! `entry.json`: what a cache entry holds, and the checks that tell a sound entry from a
//! damaged one.
//!
//! Every blob is hashed once, as the entry is filled. Its size, inode and modification time
//! are recorded then (its *stamp*): writing to a file moves its modification time, so a blob
//! whose stamp still matches has not been written since it was hashed, and checking that costs
//! one `stat`. A blob whose stamp differs (written to, or the cache copied or restored
//! elsewhere) is hashed again before it is used; hashing is also what `--verify` and
//! `cache verify` do to every blob. A blob found damaged marks every entry holding it, and the
//! next build of such an entry replaces it.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::digest::Blob;
use crate::image::{self, LayerInfo};
use crate::reference::Reference;
use crate::request::PlatformImage;
use crate::{BuildRequest, Built, Error};

const ENTRY_FILE: &str = "entry.json";
/// Written into an entry found damaged; says why. The next build replaces the entry.
const DAMAGED_FILE: &str = "damaged";
const FORMAT: u32 = 1;

/// A cached image, as `entry.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The version of this record's format; another version is not read.
    pub format: u32,
    /// The cache key: the directory's name under `entries/`.
    pub key: String,
    /// The spec in canonical form.
    pub spec: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Modification time of every tar entry, in seconds since 1970.
    pub mtime: u64,
    /// Digest of the manifest.
    pub digest: String,
    /// Digest of the config: the image ID engines show.
    pub config_digest: String,
    /// The layers, in order.
    pub layers: Vec<LayerInfo>,
    /// For a multi-platform image, each platform's image, in the index's order; `digest` is
    /// the index's then, and `platform`, `config_digest` and `layers` the first image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<PlatformImage>,
    /// Whether every platform holds the linux/amd64 layers (`--shared-layers`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_layers: bool,
    /// What the image's config and manifest carry beyond the layers; absent when empty,
    /// as in entries written before there was one.
    #[serde(default, skip_serializing_if = "crate::ImageConfig::is_empty")]
    pub config: crate::ImageConfig,
    /// The manifests' media types; absent for OCI's, as in entries written before Docker's.
    #[serde(default, skip_serializing_if = "crate::MediaTypes::is_oci")]
    pub media_types: crate::MediaTypes,
    /// Every blob of the layout: manifest, config and layers.
    pub blobs: Vec<Blob>,
    /// When it was built, in seconds since 1970.
    pub created: u64,
    /// Each blob's inode and modification time when it was last hashed. Entries written
    /// before stamps were recorded have none: their blobs are hashed on first use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stamps: Vec<Stamp>,
}

/// A blob's inode and modification time, as they were when its content was hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// `sha256:` and 64 hex digits.
    pub digest: String,
    /// The file's inode when its bytes were hashed.
    pub ino: u64,
    /// Its modification time then: seconds since 1970.
    pub mtime: i64,
    /// The nanoseconds of that modification time.
    pub mtime_nsec: i64,
}

impl Stamp {
    pub(crate) fn of(digest: &str, meta: &fs::Metadata) -> Self {
        Self {
            digest: digest.to_owned(),
            ino: meta.ino(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// What the cheap checks (sizes and stamps, no hashing) say about an entry directory.
#[derive(Debug)]
pub(crate) enum Checked {
    /// No entry.
    Missing,
    /// Something is wrong with it: what.
    Damaged(String),
    /// Every blob is there with its size; those in `changed` were modified or replaced
    /// since they were hashed, and are hashed again before they are trusted.
    Sound {
        entry: Box<Entry>,
        changed: Vec<Blob>,
    },
}

impl Entry {
    /// The entry in `dir`, if it is complete and passes the cheap checks.
    pub fn read(dir: &Path) -> Option<Self> {
        match Self::check(dir) {
            Checked::Sound { entry, .. } => Some(*entry),
            _ => None,
        }
    }

    /// Checks the entry in `dir` by sizes and stamps, without reading any blob.
    pub(crate) fn check(dir: &Path) -> Checked {
        let text = match fs::read(dir.join(ENTRY_FILE)) {
            Ok(text) => text,
            Err(_) if !dir.exists() => return Checked::Missing,
            Err(e) => return Checked::Damaged(format!("{ENTRY_FILE} cannot be read: {e}")),
        };
        // Any file of that name marks the entry, whatever it is; only a small regular
        // one is read for the reason.
        match super::files::read_small(&dir.join(DAMAGED_FILE), 4096) {
            Ok(why) => return Checked::Damaged(String::from_utf8_lossy(&why).trim().to_owned()),
            Err(super::files::Unfit::Missing) => {}
            Err(e) => return Checked::Damaged(format!("marked damaged ({DAMAGED_FILE}: {e})")),
        }
        let entry: Self = match serde_json::from_slice(&text) {
            Ok(entry) => entry,
            Err(e) => return Checked::Damaged(format!("{ENTRY_FILE} does not parse: {e}")),
        };
        if entry.format != FORMAT {
            return Checked::Damaged(format!("{ENTRY_FILE} has format {}", entry.format));
        }
        for file in ["index.json", "oci-layout"] {
            if !dir.join(file).is_file() {
                return Checked::Damaged(format!("{file} is missing"));
            }
        }
        let stamps: HashMap<&str, &Stamp> = entry
            .stamps
            .iter()
            .map(|s| (s.digest.as_str(), s))
            .collect();
        let mut changed = Vec::new();
        for blob in &entry.blobs {
            let meta = match fs::metadata(dir.join(blob.layout_path())) {
                Ok(meta) if meta.is_file() => meta,
                _ => return Checked::Damaged(format!("blob {} is missing", blob.digest)),
            };
            if meta.len() != blob.size {
                return Checked::Damaged(format!(
                    "blob {} holds {} bytes, not {}",
                    blob.digest,
                    meta.len(),
                    blob.size
                ));
            }
            if stamps.get(blob.digest.as_str()).copied() != Some(&Stamp::of(&blob.digest, &meta)) {
                changed.push(blob.clone());
            }
        }
        Checked::Sound {
            entry: Box::new(entry),
            changed,
        }
    }

    /// Hashes `blobs` of the entry in `dir`: the first that is not what it should be, as
    /// the reason the entry is damaged.
    pub(crate) fn hash(dir: &Path, blobs: &[Blob]) -> Result<Option<(Blob, String)>, Error> {
        for blob in blobs {
            let path = dir.join(blob.layout_path());
            let found = match Blob::of_file(&path) {
                Ok(found) => found,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(Some((
                        blob.clone(),
                        format!("blob {} is missing", blob.digest),
                    )))
                }
                Err(e) => {
                    return Err(crate::interrupt::check()
                        .err()
                        .unwrap_or_else(|| Error::io("read", &path)(e)))
                }
            };
            if found.size != blob.size {
                let why = format!(
                    "blob {} holds {} bytes, not {}",
                    blob.digest, found.size, blob.size
                );
                return Ok(Some((blob.clone(), why)));
            }
            if found.digest != blob.digest {
                let why = format!("blob {} hashes to {}", blob.digest, found.digest);
                return Ok(Some((blob.clone(), why)));
            }
        }
        Ok(None)
    }

    /// Writes `entry.json` for a layout just built, and names the image after the cache
    /// instead of after the build that happened to fill it. Stamps come later, once the
    /// blobs are in the store: [`Entry::write`].
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
        let index = if built.manifests.is_empty() {
            image::index(&manifest, reference, &request.platform, request.media_types)?
        } else {
            image::index_of_index(&manifest, reference, request.media_types)?
        };
        let index_path = layout.join("index.json");
        let index = with_artifacts_of(&index_path, index)?;
        super::files::replace(layout, "index.json", &index)
            .map_err(Error::io("write", &index_path))?;
        Ok(Self {
            format: FORMAT,
            key: key.to_owned(),
            spec: built.spec.clone(),
            platform: built.platform.clone(),
            mtime: request.mtime,
            digest: built.digest.clone(),
            config_digest: built.config_digest.clone(),
            layers: built.layers.clone(),
            manifests: built.manifests.clone(),
            shared_layers: request.shared_layers,
            config: request.config.clone(),
            media_types: request.media_types,
            blobs,
            created: now(),
            stamps: Vec::new(),
        })
    }

    /// Records the stamps of the blobs in `dir` as they are now (they were just hashed),
    /// and writes `entry.json` there, replacing any earlier one in a single rename.
    pub(super) fn write(&mut self, dir: &Path) -> Result<(), Error> {
        self.stamps = self
            .blobs
            .iter()
            .map(|blob| {
                let path = dir.join(blob.layout_path());
                fs::metadata(&path)
                    .map(|meta| Stamp::of(&blob.digest, &meta))
                    .map_err(Error::io("read", path))
            })
            .collect::<Result<_, _>>()?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Metadata(e.into()))?;
        let path = dir.join(ENTRY_FILE);
        super::files::replace(dir, ENTRY_FILE, &json).map_err(Error::io("write", &path))
    }

    /// The platforms, as `--platform` lists them.
    pub fn platforms(&self) -> String {
        if self.manifests.is_empty() {
            return self.platform.clone();
        }
        let list: Vec<&str> = self.manifests.iter().map(|m| m.platform.as_str()).collect();
        list.join(",")
    }

    /// The layers of each layer set the image streams: one, or one per platform of an
    /// index whose platforms have layers of their own.
    pub(crate) fn layer_sets(&self) -> Vec<&[LayerInfo]> {
        match (self.manifests.as_slice(), self.shared_layers) {
            ([], _) | (_, true) => vec![&self.layers],
            (images, false) => images.iter().map(|m| m.layers.as_slice()).collect(),
        }
    }

    /// Bytes of all the entry's blobs (shared ones included).
    pub fn size(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

/// `index` (naming the entry's image) with the artifacts the index at `path` lists beside
/// its image (`--artifacts`), so that a push from the entry takes them along.
fn with_artifacts_of(path: &Path, index: Vec<u8>) -> Result<Vec<u8>, Error> {
    let Ok(old) = fs::read(path) else {
        return Ok(index);
    };
    let old: serde_json::Value = serde_json::from_slice(&old).unwrap_or_default();
    let artifacts: Vec<serde_json::Value> = old["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m.get("artifactType").is_some())
        .cloned()
        .collect();
    if artifacts.is_empty() {
        return Ok(index);
    }
    let mut new: serde_json::Value =
        serde_json::from_slice(&index).map_err(|e| Error::Metadata(e.into()))?;
    if let Some(list) = new["manifests"].as_array_mut() {
        list.extend(artifacts);
    }
    serde_json::to_vec(&new).map_err(|e| Error::Metadata(e.into()))
}

/// Marks the entry in `dir` damaged, saying `why`, so that the next build replaces it.
/// Best effort: a read-only cache cannot be marked, and is not changed either.
pub(super) fn mark_damaged(dir: &Path, why: &str) {
    let _ = super::files::replace(dir, DAMAGED_FILE, format!("{why}\n").as_bytes());
}

/// Marks the entry in `dir` as used now: gc evicts the least recently used first.
pub(super) fn touch(dir: &Path) {
    // Best effort: a read-only cache still serves its entries. The owner may set the
    // times of a file opened to read; a symlink or FIFO there is not opened.
    if let Ok((file, _)) = super::files::open_small(&dir.join(ENTRY_FILE), u64::MAX) {
        let _ = file.set_modified(SystemTime::now());
    }
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
///
/// A stored blob is linked into the new entry only when its size matches and its stamp is
/// one that a sound entry recorded when it hashed it (`trusted`): then its bytes are the
/// ones hashed. Otherwise the new entry's blob, hashed as it was just written, takes its
/// place in the store.
pub(super) fn share_blobs(
    layout: &Path,
    store: &Path,
    trusted: &HashMap<String, Vec<Stamp>>,
) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let blobs_dir = layout.join("blobs/sha256");
    for item in fs::read_dir(&blobs_dir).map_err(Error::io("read", &blobs_dir))? {
        let item = item.map_err(Error::io("read", &blobs_dir))?;
        let path = item.path();
        let name = item.file_name();
        let digest = format!("sha256:{}", name.to_string_lossy());
        let stored = store.join(&name);
        let readonly = fs::Permissions::from_mode(0o444);
        fs::set_permissions(&path, readonly).map_err(Error::io("make read-only", &path))?;
        let size = fs::metadata(&path).map_err(Error::io("read", &path))?.len();
        let sound = fs::metadata(&stored).is_ok_and(|m| {
            m.len() == size
                && trusted
                    .get(&digest)
                    .is_some_and(|stamps| stamps.contains(&Stamp::of(&digest, &m)))
        });
        let linked = path.with_extension("link");
        if sound && fs::hard_link(&stored, &linked).is_ok() {
            fs::rename(&linked, &path).map_err(Error::io("rename", &path))?;
        } else {
            // In one rename, so the store never lacks the name while others look it up.
            let fresh = store.join(format!(
                ".{}.{}",
                name.to_string_lossy(),
                std::process::id()
            ));
            let _ = fs::remove_file(&fresh);
            fs::hard_link(&path, &fresh).map_err(Error::io("link", &fresh))?;
            fs::rename(&fresh, &stored).map_err(|e| {
                let _ = fs::remove_file(&fresh);
                Error::io("rename into", &stored)(e)
            })?;
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
