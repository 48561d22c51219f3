//! The digest memo: what one pass over an image's layers found (digest, size and diff_id
//! of each), kept as one small file per image in the cache directory (`serve/v1/KEY`, KEY
//! the SHA-256 of what the bytes depend on), so that the next server, or another replica
//! on the same directory, does not hash the layers again. Blobs are never stored.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest as _, Sha256};

use super::generate::Hashed;
use crate::digest::{hex, Blob};
use crate::platform::Platform;
use crate::progress::LogLevel;
use crate::spec::Spec;

/// Salts the memo's keys. A memo holds digests, not bytes, so it must change whenever the
/// bytes of a layer do (tar layout, content, an encoder or its settings): a server would
/// otherwise hand out digests its blobs no longer match. v3: zstd jobs of 2 MiB. v4: every
/// gzip block deflated from a known window; a memo made before may hold the digest of bytes
/// that depended on the process that made them.
pub(crate) const MEMO_SALT: &[u8] = b"image-maker serve digests v4\0";

/// What the layers' bytes of `spec`'s image for `platform` depend on: the spec, the
/// platform (through the content seed) and the mtime.
pub(crate) fn key(spec: &Spec, platform: &Platform, mtime: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(MEMO_SALT);
    hasher.update(spec.canonical().as_bytes());
    hasher.update(b"\0");
    hasher.update(crate::content::seed(spec, platform, false));
    hasher.update(mtime.to_le_bytes());
    hex(&hasher.finalize())
}

/// The memo directory of one server.
#[derive(Debug)]
pub(crate) struct MemoDir {
    dir: PathBuf,
    warned: std::sync::Once,
}

impl MemoDir {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            warned: std::sync::Once::new(),
        }
    }

    /// The layers memoized under `key`, if that memo is of this spec, platform and mtime.
    pub fn read(
        &self,
        key: &str,
        spec: &Spec,
        platform: &Platform,
        mtime: u64,
    ) -> Option<Vec<Hashed>> {
        let text = fs::read_to_string(self.dir.join(key)).ok()?;
        let memo = parse(&text)?;
        (memo.spec == spec.canonical()
            && memo.platform == *platform
            && memo.mtime == mtime
            && memo.layers.len() == spec.layers().len())
        .then_some(memo.layers)
    }

    /// `spec CANONICAL`, `platform P`, `mtime N`, then `layer DIGEST SIZE [DIFF_ID]` per
    /// layer (the diff_id of compressed layers only): about 85 bytes a layer.
    pub fn write(&self, key: &str, spec: &Spec, platform: &Platform, mtime: u64, blobs: &[Hashed]) {
        let dir = &self.dir;
        let mut text = format!(
            "spec {}\nplatform {platform}\nmtime {mtime}\n",
            spec.canonical()
        );
        for hashed in blobs {
            text.push_str(&format!(
                "layer {} {}",
                hashed.blob.digest, hashed.blob.size
            ));
            // A plain tar is its own diff_id.
            if hashed.diff_id != hashed.blob.digest {
                text.push_str(&format!(" {}", hashed.diff_id));
            }
            text.push('\n');
        }
        // Written beside its name and renamed: a reader never sees half a file.
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let part = dir.join(format!(
            ".{key}.{}.{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let written = fs::create_dir_all(dir)
            .and_then(|()| fs::File::create(&part))
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| fs::rename(&part, dir.join(key)));
        if let Err(e) = written {
            let _ = fs::remove_file(&part);
            self.warned.call_once(|| {
                crate::progress::log(
                    LogLevel::Warning,
                    &format!(
                        "cannot keep layer digests in `{}` ({e}); they are kept in memory",
                        dir.display()
                    ),
                );
            });
        }
    }

    /// Every image memoized for `mtime`, whose file is under its right key.
    pub fn images(&self, mtime: u64) -> Vec<(Spec, Platform)> {
        let Ok(items) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut images = Vec::new();
        for item in items.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let Some(memo) = fs::read_to_string(item.path())
                .ok()
                .as_deref()
                .and_then(parse)
            else {
                continue;
            };
            if memo.mtime != mtime {
                continue;
            }
            if let Ok(spec) = Spec::parse(&memo.spec) {
                if key(&spec, &memo.platform, mtime) == name {
                    images.push((spec, memo.platform));
                }
            }
        }
        images
    }
}

/// One memo file.
struct Memo {
    spec: String,
    platform: Platform,
    mtime: u64,
    layers: Vec<Hashed>,
}

fn parse(text: &str) -> Option<Memo> {
    let digest = |text: &str| {
        let valid = text.len() == 71
            && text.starts_with("sha256:")
            && text[7..].bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| text.to_owned())
    };
    let mut lines = text.lines();
    let spec = lines.next()?.strip_prefix("spec ")?.to_owned();
    let platform = Platform::parse(lines.next()?.strip_prefix("platform ")?).ok()?;
    let mtime = lines.next()?.strip_prefix("mtime ")?.parse().ok()?;
    let layers = lines
        .map(|line| {
            let mut parts = line.strip_prefix("layer ")?.split(' ');
            let blob = Blob {
                digest: digest(parts.next()?)?,
                size: parts.next()?.parse().ok()?,
            };
            let diff_id = match parts.next() {
                Some(diff_id) => digest(diff_id)?,
                None => blob.digest.clone(),
            };
            Some(Hashed { blob, diff_id })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Memo {
        spec,
        platform,
        mtime,
        layers,
    })
}
