//! The digest memo: what one pass over an image's layers found (digest, size and diff_id
//! of each), kept as one small file per image in the cache directory (`serve/v1/KEY`, KEY
//! the SHA-256 of what the bytes depend on), so that the next server, or another replica
//! on the same directory, does not hash the layers again. Blobs are never stored.
//!
//! Memos are read when they are needed (a tag's first request, or a digest this server has
//! not made), never all at start: a directory that others write to may hold anything, and
//! only small regular files are read (see `cache::files`). Beside the memos, `…-by-digest/HEX`
//! names the memo that holds each digest (`image KEY`, or `index KEY…` for an index), so
//! that a replica asked for a digest another made reads one small file, not the directory.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest as _, Sha256};

use super::generate::Hashed;
use crate::cache::files::{self, Unfit};
use crate::digest::{hex, Blob};
use crate::image::{self, LayerInfo};
use crate::platform::Platform;
use crate::progress::LogLevel;
use crate::spec::Spec;

/// The most a memo may hold: about 12,000 layers (85 bytes each). Anything larger is not a
/// memo this server wrote, and is not read.
const MEMO_BOUND: u64 = 1 << 20;
/// The most a pointer of the index may hold: the keys of an index's images.
const POINTER_BOUND: u64 = 64 << 10;
/// How long a digest found nowhere is not looked for again: a client asking for random
/// digests costs one failed `open` per digest, then nothing.
const MISS_TTL: Duration = Duration::from_secs(5);
/// Misses remembered at most; beyond, the oldest half is forgotten.
const MISSES: usize = 4096;
/// Names warned about at most, so that a directory of junk cannot fill the log.
const WARNINGS: usize = 64;

/// Salts the memo's keys. A memo holds digests, not bytes, so it must change whenever the
/// bytes of a layer do (tar layout, content, an encoder or its settings): a server would
/// otherwise hand out digests its blobs no longer match. v3: zstd jobs of 2 MiB. v4: every
/// gzip block deflated from a known window; a memo made before may hold the digest of bytes
/// that depended on the process that made them. v5: zstd as independent 2 MiB frames, and
/// the pieces' resume points after each compressed layer. v6: generated layers at the
/// default level written from their matches ([`crate::compress`]).
pub(crate) const MEMO_SALT: &[u8] = b"image-maker serve digests v6\0";

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
    /// `DIR-by-digest`: which memo holds each digest.
    index: PathBuf,
    warned: std::sync::Once,
    skipped: Mutex<HashSet<PathBuf>>,
    misses: Mutex<HashMap<String, Instant>>,
}

/// What a digest's pointer led to: the memos of one image, or of each image of an index,
/// read and checked.
#[derive(Debug)]
pub(crate) struct Recalled {
    pub spec: Spec,
    /// Each image: its platform and layers, under its memo's key.
    pub images: Vec<(Platform, String, Vec<Hashed>)>,
    /// Whether the digest is an index's.
    pub index: bool,
}

thread_local! {
    /// Memos [`MemoDir::recall`] has just read, for [`MemoDir::read`] on the same thread
    /// to take instead of reading them again (the file may be gone by then).
    static RECALLED: RefCell<Vec<(String, Vec<Hashed>)>> = const { RefCell::new(Vec::new()) };
}

impl MemoDir {
    pub fn new(dir: PathBuf) -> Self {
        let name = dir
            .file_name()
            .map_or_else(|| "memo".to_owned(), |n| n.to_string_lossy().into_owned());
        Self {
            index: dir.with_file_name(format!("{name}-by-digest")),
            dir,
            warned: std::sync::Once::new(),
            skipped: Mutex::default(),
            misses: Mutex::default(),
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
        let recalled = RECALLED.with_borrow_mut(|list| {
            let at = list.iter().position(|(k, _)| k == key)?;
            Some(list.swap_remove(at).1)
        });
        if recalled.is_some() {
            return recalled;
        }
        let memo = self.load(key)?;
        let fits = memo.spec == spec.canonical()
            && memo.platform == *platform
            && memo.mtime == mtime
            && memo.layers.len() == spec.layers().len();
        if !fits {
            return None;
        }
        // Memos written before the index are indexed now, and a pointer gc removed with
        // another memo is put back.
        self.index_image(key, spec, platform, mtime, &memo.layers);
        Some(memo.layers)
    }

    /// `spec CANONICAL`, `platform P`, `mtime N`, then `layer DIGEST SIZE [DIFF_ID]` per
    /// layer (the diff_id of compressed layers only): about 85 bytes a layer, and for a
    /// compressed one a `pieces` line (about 7 bytes a MiB of tar). Then the
    /// index points every digest of the image at it.
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
            if let Some(pieces) = &hashed.pieces {
                text.push_str(&pieces_line(pieces));
            }
        }
        let written =
            files::create_dir(dir).and_then(|()| files::replace(dir, key, text.as_bytes()));
        match written {
            Ok(()) => self.index_image(key, spec, platform, mtime, blobs),
            Err(e) => self.cannot_write(&e),
        }
    }

    /// Points the digest of an index at the memos of its images (`keys`, in its order).
    pub fn write_index(&self, digest: &str, keys: &[String]) {
        let Some(hex) = crate::digest::sha256_hex(digest) else {
            return;
        };
        if fs::symlink_metadata(self.index.join(hex)).is_ok() {
            return;
        }
        let text = format!("index {}\n", keys.join(" "));
        let written = files::create_dir(&self.index)
            .and_then(|()| files::create(&self.index, hex, text.as_bytes()));
        if let Err(e) = written {
            self.cannot_write(&e);
        }
    }

    /// The memos that hold `digest` (a layer, config, manifest or index another server
    /// made), read and checked against `mtime`; `None` when there are none. One small file
    /// is read per digest, and a digest found nowhere is not looked for again for a while.
    pub fn recall(&self, digest: &str, mtime: u64) -> Option<Recalled> {
        let hex = crate::digest::sha256_hex(digest)?;
        let now = Instant::now();
        {
            let misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
            if misses
                .get(digest)
                .is_some_and(|at| now.duration_since(*at) < MISS_TTL)
            {
                return None;
            }
        }
        let found = self.find(hex, mtime);
        if found.is_none() {
            self.missed(digest);
        }
        found
    }

    /// Runs `register` with the memos of `recalled` at hand, so that the [`MemoDir::read`]
    /// calls it makes on this thread take them rather than read the files again.
    pub fn with_recalled<T>(recalled: &Recalled, register: impl FnOnce() -> T) -> T {
        RECALLED.with_borrow_mut(|list| {
            list.extend(
                recalled
                    .images
                    .iter()
                    .map(|(_, key, layers)| (key.clone(), layers.clone())),
            );
        });
        let result = register();
        RECALLED.with_borrow_mut(Vec::clear);
        result
    }

    /// Remembers that `digest` is nowhere to be found, for a while.
    pub fn missed(&self, digest: &str) {
        let now = Instant::now();
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        if misses.len() >= MISSES {
            misses.retain(|_, at| now.duration_since(*at) < MISS_TTL);
        }
        if misses.len() >= MISSES {
            // Still full of fresh misses: a client asking for random digests. Forget the
            // older half; what it asks for next costs one failed open each.
            let mut ages: Vec<Instant> = misses.values().copied().collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            misses.retain(|_, at| *at > cut);
        }
        misses.insert(digest.to_owned(), now);
    }

    fn find(&self, hex: &str, mtime: u64) -> Option<Recalled> {
        let path = self.index.join(hex);
        let text = match files::read_small(&path, POINTER_BOUND) {
            Ok(text) => String::from_utf8(text).ok()?,
            Err(Unfit::Missing) => return None,
            Err(why) => {
                self.skip(&path, &why);
                return None;
            }
        };
        let mut words = text.split_whitespace();
        let index = match words.next()? {
            "image" => false,
            "index" => true,
            _ => return None,
        };
        let keys: Vec<&str> = words.collect();
        if keys.is_empty() || (!index && keys.len() > 1) {
            return None;
        }
        let mut spec: Option<Spec> = None;
        let mut images = Vec::new();
        for key in keys {
            crate::digest::sha256_hex(&format!("sha256:{key}"))?;
            let memo = self.load(key)?;
            if memo.mtime != mtime {
                return None;
            }
            let parsed = Spec::parse(&memo.spec).ok()?.normalized();
            // Under its right key, and every image of an index of the same spec.
            let right = key == self::key(&parsed, &memo.platform, mtime)
                && memo.layers.len() == parsed.layers().len()
                && spec
                    .as_ref()
                    .is_none_or(|s| s.canonical() == parsed.canonical());
            if !right {
                return None;
            }
            spec = Some(parsed);
            images.push((memo.platform, key.to_owned(), memo.layers));
        }
        Some(Recalled {
            spec: spec?,
            images,
            index,
        })
    }

    /// The memo under `key`, if it is a small regular file that parses. Reading it moves
    /// its modification time: gc ages out the memos nobody reads.
    fn load(&self, key: &str) -> Option<Memo> {
        let path = self.dir.join(key);
        let (file, _) = match files::open_small(&path, MEMO_BOUND) {
            Ok(opened) => opened,
            Err(Unfit::Missing) => return None,
            Err(why) => {
                self.skip(&path, &why);
                return None;
            }
        };
        let mut text = String::new();
        if let Err(e) = (&file).take(MEMO_BOUND).read_to_string(&mut text) {
            self.skip(&path, &Unfit::Unreadable(e));
            return None;
        }
        let Some(memo) = parse(&text) else {
            self.skip(&path, &Unfit::Kind("not a memo"));
            return None;
        };
        let _ = file.set_modified(SystemTime::now());
        Some(memo)
    }

    /// Points every digest of the image (layers, config, manifest) at the memo `key`, where
    /// no pointer is yet. The manifest's goes last: when it is there, the others are.
    fn index_image(
        &self,
        key: &str,
        spec: &Spec,
        platform: &Platform,
        mtime: u64,
        blobs: &[Hashed],
    ) {
        let Some((config, manifest)) = image_digests(spec, platform, mtime, blobs) else {
            return;
        };
        let digests = blobs
            .iter()
            .map(|b| b.blob.digest.as_str())
            .chain([config.as_str(), manifest.as_str()]);
        let text = format!("image {key}\n");
        let mut written = files::create_dir(&self.index);
        for digest in digests {
            let Some(hex) = crate::digest::sha256_hex(digest) else {
                continue;
            };
            if written.is_err() {
                break;
            }
            if fs::symlink_metadata(self.index.join(hex)).is_err() {
                written = files::create(&self.index, hex, text.as_bytes()).map(drop);
            }
        }
        if let Err(e) = written {
            self.cannot_write(&e);
        }
    }

    fn cannot_write(&self, e: &std::io::Error) {
        self.warned.call_once(|| {
            crate::progress::log(
                LogLevel::Warning,
                &format!(
                    "cannot keep layer digests in `{}` ({e}); they are kept in memory",
                    self.dir.display()
                ),
            );
        });
    }

    /// Says once per name that something in the memo directory is not read, and why.
    fn skip(&self, path: &Path, why: &Unfit) {
        let mut skipped = self.skipped.lock().unwrap_or_else(|e| e.into_inner());
        if skipped.len() < WARNINGS && skipped.insert(path.to_path_buf()) {
            crate::progress::log(
                LogLevel::Warning,
                &format!("skipping `{}` in the digest memo: {why}", path.display()),
            );
        }
    }
}

/// The config's and the manifest's digests of the image whose layers are `blobs`, as
/// [`Catalog::manifest`](super::catalog::Catalog::manifest) makes them.
fn image_digests(
    spec: &Spec,
    platform: &Platform,
    mtime: u64,
    blobs: &[Hashed],
) -> Option<(String, String)> {
    // An image's config is not in its memo: these are the digests without one.
    let metadata = image_metadata(spec, platform, mtime, blobs, &crate::ImageConfig::new()).ok()?;
    Some((metadata.config_blob.digest, metadata.manifest_blob.digest))
}

/// The config and manifest of `spec`'s image for `platform` whose layers hashed to `blobs`:
/// what the catalog serves, and what a memo's digests are checked against.
pub(crate) fn image_metadata(
    spec: &Spec,
    platform: &Platform,
    mtime: u64,
    blobs: &[Hashed],
    config: &crate::ImageConfig,
) -> Result<image::Metadata, image::MetadataError> {
    let infos: Vec<LayerInfo> = blobs
        .iter()
        .zip(spec.layers())
        .map(|(hashed, layer)| LayerInfo {
            digest: hashed.blob.digest.clone(),
            size: hashed.blob.size,
            diff_id: hashed.diff_id.clone(),
            files: layer.files,
            payload: layer.size,
            media_type: image::layer_media_type(layer.encoding()).to_string(),
        })
        .collect();
    image::metadata(spec, platform, mtime, &infos, config, &[])
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
    let mut layers: Vec<Hashed> = Vec::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix("pieces ") {
            layers.last_mut()?.pieces = Some(std::sync::Arc::new(parse_pieces(rest)?));
            continue;
        }
        let mut parts = line.strip_prefix("layer ")?.split(' ');
        let blob = Blob {
            digest: digest(parts.next()?)?,
            size: parts.next()?.parse().ok()?,
        };
        let diff_id = match parts.next() {
            Some(diff_id) => digest(diff_id)?,
            None => blob.digest.clone(),
        };
        layers.push(Hashed {
            blob,
            diff_id,
            pieces: None,
        });
    }
    Some(Memo {
        spec,
        platform,
        mtime,
        layers,
    })
}

/// `pieces STEP INPUT CRC D1,D2,… S0,S1,…`: the resume points as the differences between
/// successive output offsets (`-` for none), then each step's sum in hex.
fn pieces_line(pieces: &crate::compress::Pieces) -> String {
    let mut before = 0;
    let deltas: Vec<String> = pieces
        .starts
        .iter()
        .map(|&start| {
            let delta = start - before;
            before = start;
            delta.to_string()
        })
        .collect();
    let deltas = if deltas.is_empty() {
        "-".to_owned()
    } else {
        deltas.join(",")
    };
    let sums: Vec<String> = pieces.sums.iter().map(|s| format!("{s:x}")).collect();
    format!(
        "pieces {} {} {} {deltas} {}\n",
        pieces.step,
        pieces.input,
        pieces.crc,
        sums.join(",")
    )
}

fn parse_pieces(text: &str) -> Option<crate::compress::Pieces> {
    let mut parts = text.split(' ');
    let step: u64 = parts.next()?.parse().ok()?;
    let input: u64 = parts.next()?.parse().ok()?;
    let crc = parts.next()?.parse().ok()?;
    let mut at = 0u64;
    let starts = match parts.next()? {
        "-" => Vec::new(),
        deltas => deltas
            .split(',')
            .map(|delta| {
                at = at.checked_add(delta.parse().ok()?)?;
                Some(at)
            })
            .collect::<Option<Vec<u64>>>()?,
    };
    let sums = parts
        .next()?
        .split(',')
        .map(|sum| u64::from_str_radix(sum, 16).ok())
        .collect::<Option<Vec<u64>>>()?;
    // At most one resume point per step of input: anything else is not a memo this
    // server wrote.
    let fits = step > 0 && starts.len() as u64 <= input / step && sums.len() == starts.len() + 1;
    (fits && parts.next().is_none()).then_some(crate::compress::Pieces {
        step,
        starts,
        sums,
        crc,
        input,
    })
}
