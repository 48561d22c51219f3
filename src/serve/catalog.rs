//! The catalog of what the server can make and has made: manifests computed from a spec and platform through
//! the builders' own metadata code, and every digest it has handed out, so that a client
//! can come back by digest.
//!
//! A layer's digest needs one pass over its bytes. That pass runs once per spec (on the
//! bounded pool of `passes`): layers in parallel on the pass's threads, the result kept in
//! memory and in the memo (`memo`). Blobs are never stored. What is kept in memory is
//! bounded (`bounded`): a digest forgotten is found again from its tag, or the memo.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::bounded::Bounded;
use super::generate::{image_seed, Hashed, Layer, PlanCache, Plans};
use super::memo::{self, MemoDir};
use super::passes::Cancel;
use crate::digest::Blob;
use crate::image;
use crate::platform::Platform;
use crate::spec::Spec;
use crate::{Error, ImageConfig};

/// The manifest media type served.
pub(crate) const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of a multi-platform image's index.
pub(crate) const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// A manifest, ready to send.
#[derive(Debug)]
pub(crate) struct Manifest {
    pub bytes: Bytes,
    pub digest: String,
    pub media_type: &'static str,
}

/// A blob the server can send.
#[derive(Debug, Clone)]
pub(crate) enum Stored {
    /// Generated as it is sent; the size is the blob's (compressed, for a compressed layer).
    Layer(Layer, u64),
    /// A config: small, kept.
    Config(Bytes),
}

impl Stored {
    pub fn size(&self) -> u64 {
        match self {
            Self::Layer(_, size) => *size,
            Self::Config(bytes) => bytes.len() as u64,
        }
    }
}

/// How much the catalog keeps in memory, and the work one pass may do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Bytes of plans kept when no stream uses them (`--plan-cache`).
    pub plans: u64,
    /// Bytes of layer digests kept, by image (`~200` a layer).
    pub digests: u64,
    /// Bytes of known blobs kept, by digest (`~300` a layer, a config's size).
    pub blobs: u64,
    /// Bytes of manifests and indexes kept, by digest.
    pub manifests: u64,
}

/// 16 MiB each of digests and manifests, 32 of blobs: tens of thousands of images, each a
/// pass of seconds, before anything is forgotten; and at most 64 MiB in all.
pub(crate) const MAP_BUDGETS: (u64, u64, u64) = (16 << 20, 32 << 20, 16 << 20);

impl Bounds {
    pub fn with_plans(plans: u64) -> Self {
        let (digests, blobs, manifests) = MAP_BUDGETS;
        Self {
            plans,
            digests,
            blobs,
            manifests,
        }
    }
}

/// The threads a pass hashes on and the flag that stops it.
#[derive(Debug, Clone)]
pub(crate) struct Work {
    pub threads: usize,
    pub cancel: Cancel,
}

impl Default for Work {
    /// Every core, never stopped: a call from outside a pass (a test, the memo at start).
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cancel: Cancel::default(),
        }
    }
}

/// What an entry of the maps costs besides its value: the key, the LRU's links, the
/// allocator's rounding.
const ENTRY: u64 = 160;

/// Every manifest and blob the server has made, by digest.
#[derive(Debug)]
pub(crate) struct Catalog {
    mtime: u64,
    memo: Option<MemoDir>,
    plans: Arc<PlanCache>,
    /// Layer digests of images, by memo key. A pass is not shared here but on the pool
    /// (`passes`), which joins requesters of one image: a cancelled pass leaves nothing.
    digests: Bounded<String, Arc<Vec<Hashed>>>,
    blobs: Bounded<String, Stored>,
    manifests: Bounded<String, Arc<Manifest>>,
    /// The artifacts that refer to a manifest (`artifacts/`), by repository and digest
    /// (`REPOSITORY@DIGEST`): as in a registry, a repository's referrers are its own.
    referrers: Bounded<String, Arc<Vec<crate::artifacts::Artifact>>>,
}

impl Catalog {
    /// `memo`: the directory of the digest memo, read as images are asked for (never all
    /// at start); `None` keeps digests in memory only.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn new(mtime: u64, memo: Option<PathBuf>) -> Self {
        Self::bounded(mtime, memo, Bounds::with_plans(super::limits::PLAN_CACHE))
    }

    /// [`new`](Self::new), keeping within `bounds`.
    pub fn bounded(mtime: u64, memo: Option<PathBuf>, bounds: Bounds) -> Self {
        Self {
            mtime,
            memo: memo.map(MemoDir::new),
            plans: Arc::new(PlanCache::new(bounds.plans)),
            digests: Bounded::new(bounds.digests, |key, blobs| {
                ENTRY + key.len() as u64 + 200 * blobs.len() as u64
            }),
            blobs: Bounded::new(bounds.blobs, |key, stored| {
                ENTRY
                    + key.len() as u64
                    + match stored {
                        Stored::Layer(..) => std::mem::size_of::<Stored>() as u64 + 64,
                        Stored::Config(bytes) => bytes.len() as u64,
                    }
            }),
            manifests: Bounded::new(bounds.manifests, |key, manifest| {
                ENTRY + key.len() as u64 + (manifest.bytes.len() + manifest.digest.len()) as u64
            }),
            // The manifests' budget again: a subject's artifacts are three small manifests
            // (their payloads are blobs, weighed there).
            referrers: Bounded::new(bounds.manifests, |key, artifacts| {
                ENTRY
                    + key.len() as u64
                    + artifacts
                        .iter()
                        .map(|a| a.manifest.len() as u64 + ENTRY)
                        .sum::<u64>()
            }),
        }
    }

    /// The manifest of `spec` for `platform`: the one `image-maker -s SPEC --platform P -o oci:`
    /// writes. The first call for a spec hashes its layers; call it off the async threads.
    #[cfg(test)]
    pub fn manifest(&self, spec: &Spec, platform: &Platform) -> Result<Arc<Manifest>, Error> {
        self.image(
            spec,
            &ImageConfig::new(),
            std::slice::from_ref(platform),
            Some(&Work::default()),
        )
        .map(|found| found.expect("a pass always finds digests"))
    }

    /// The manifest of `spec` for one platform, or the index of several: with `work`, a
    /// pass on its threads (stopped by its flag) for digests not known; without, only from
    /// the digests in memory (`None` when one is not there), which costs no pass.
    ///
    /// `config` is what an images file's entry sets beyond the layers; the memo holds layer
    /// digests only, so an image with a config is recalled by its tag, not by its digest.
    pub fn image(
        &self,
        spec: &Spec,
        config: &ImageConfig,
        platforms: &[Platform],
        work: Option<&Work>,
    ) -> Result<Option<Arc<Manifest>>, Error> {
        match platforms {
            [platform] => self.manifest_with(spec, config, platform, work),
            list => self.index_with(spec, config, list, work),
        }
    }

    fn manifest_with(
        &self,
        spec: &Spec,
        config: &ImageConfig,
        platform: &Platform,
        work: Option<&Work>,
    ) -> Result<Option<Arc<Manifest>>, Error> {
        // As a build request spells it.
        let spec = Arc::new(spec.normalized());
        let Some(blobs) = self.layer_blobs(&spec, platform, work)? else {
            return Ok(None);
        };
        let metadata = memo::image_metadata(&spec, platform, self.mtime, &blobs, config)?;
        let manifest = Arc::new(Manifest {
            bytes: Bytes::from(metadata.manifest),
            digest: metadata.manifest_blob.digest,
            media_type: MANIFEST_TYPE,
        });
        // Layers first, so that the manifest is never known without its blobs.
        let seed = image_seed(&spec, platform);
        for (hashed, number) in blobs.iter().zip(1..) {
            self.blobs.put_new(hashed.blob.digest.clone(), || {
                // No plan held: what is kept per blob costs no memory for a plan.
                let plans = Plans::new(&self.plans);
                let layer = Layer::new(Arc::clone(&spec), plans, seed, number, self.mtime)
                    .with_pieces(hashed);
                Stored::Layer(layer, hashed.blob.size)
            });
        }
        self.blobs.put(
            metadata.config_blob.digest,
            Stored::Config(Bytes::from(metadata.config)),
        );
        self.manifests
            .put(manifest.digest.clone(), Arc::clone(&manifest));
        Ok(Some(manifest))
    }

    /// The index of `spec` for `platforms`: the one `image-maker -s SPEC --platform A,B -o
    /// oci:` writes, naming each platform's manifest (which clients then ask for by digest).
    fn index_with(
        &self,
        spec: &Spec,
        config: &ImageConfig,
        platforms: &[Platform],
        work: Option<&Work>,
    ) -> Result<Option<Arc<Manifest>>, Error> {
        let mut manifests = Vec::with_capacity(platforms.len());
        for platform in platforms {
            match self.manifest_with(spec, config, platform, work)? {
                Some(manifest) => manifests.push(manifest),
                None => return Ok(None),
            }
        }
        let blobs: Vec<Blob> = manifests
            .iter()
            .map(|m| Blob {
                digest: m.digest.clone(),
                size: m.bytes.len() as u64,
            })
            .collect();
        let pairs: Vec<(&Blob, &Platform)> = blobs.iter().zip(platforms).collect();
        let bytes = image::image_index(&pairs)?;
        let index = Arc::new(Manifest {
            digest: Blob::of(&bytes).digest,
            bytes: Bytes::from(bytes),
            media_type: INDEX_TYPE,
        });
        // A replica asked for this index by digest finds its images' memos through it
        // (those of images without a config: a memo holds none).
        if let (Some(memo), true) = (&self.memo, config.is_empty()) {
            let spec = spec.normalized();
            let keys: Vec<String> = platforms
                .iter()
                .map(|platform| memo::key(&spec, platform, self.mtime))
                .collect();
            memo.write_index(&index.digest, &keys);
        }
        self.manifests.put(index.digest.clone(), Arc::clone(&index));
        Ok(Some(index))
    }

    /// The Docker schema 2 form of `found` (an OCI manifest or index), known by its digest
    /// from now on; for an index, its manifests' Docker forms too.
    pub fn docker_form(&self, found: &Manifest) -> Result<Arc<Manifest>, Error> {
        let mut child = |digest: &str| {
            let manifest = self.manifests.get(&digest.to_owned())?;
            let docker = self.docker_form(&manifest).ok()?;
            Some((docker.digest.clone(), docker.bytes.len() as u64))
        };
        let bytes = crate::media_types::to_docker(&found.bytes, &mut child)?;
        let media_type = if found.media_type == INDEX_TYPE {
            crate::media_types::DOCKER_LIST
        } else {
            crate::media_types::DOCKER_MANIFEST
        };
        let docker = Arc::new(Manifest {
            digest: Blob::of(&bytes).digest,
            bytes: Bytes::from(bytes),
            media_type,
        });
        self.manifests
            .put(docker.digest.clone(), Arc::clone(&docker));
        Ok(docker)
    }

    /// `found`, an OCI manifest, with non-distributable layers whose `urls` are `url`'s;
    /// known by its digest from now on. An index is left as it is (its manifests are
    /// what a client fetches).
    pub fn foreign_form(
        &self,
        found: &Manifest,
        url: &dyn Fn(&str) -> String,
    ) -> Result<Arc<Manifest>, Error> {
        let bytes = crate::media_types::to_foreign(&found.bytes, url)?;
        let foreign = Arc::new(Manifest {
            digest: Blob::of(&bytes).digest,
            bytes: Bytes::from(bytes),
            media_type: found.media_type,
        });
        self.manifests
            .put(foreign.digest.clone(), Arc::clone(&foreign));
        Ok(foreign)
    }

    /// The artifacts that refer to the manifest `digest` in `repository` (the name an
    /// images file knows, prefixes left out), when they have been made.
    pub fn referrers(
        &self,
        repository: &str,
        digest: &str,
    ) -> Option<Arc<Vec<crate::artifacts::Artifact>>> {
        self.referrers.get(&format!("{repository}@{digest}"))
    }

    /// Makes `subject`'s artifacts (its SBOM is `spec`'s on `platform`: every file hashed),
    /// known by their digests from now on. Call it off the async threads.
    pub fn attach_artifacts(
        &self,
        subject: &Manifest,
        repository: &str,
        spec: &Spec,
        platform: &Platform,
    ) -> Result<Arc<Vec<crate::artifacts::Artifact>>, Error> {
        if let Some(known) = self.referrers(repository, &subject.digest) {
            return Ok(known);
        }
        let expected = crate::expect::Expected::new(spec, platform, false)?;
        let mut sbom = Vec::new();
        crate::expect::spdx::write(&expected, &image::rfc3339(self.mtime), &mut sbom).map_err(
            |e| Error::Generate {
                spec: spec.canonical(),
                detail: e.to_string(),
            },
        )?;
        let subject_blob = Blob {
            digest: subject.digest.clone(),
            size: subject.bytes.len() as u64,
        };
        let artifacts = crate::artifacts::attach(
            &crate::artifacts::Subject {
                manifest: &subject_blob,
                media_type: subject.media_type,
                repository,
            },
            sbom,
        )?;
        self.blobs.put(
            Blob::of(crate::artifacts::EMPTY_CONFIG).digest,
            Stored::Config(Bytes::from_static(crate::artifacts::EMPTY_CONFIG)),
        );
        for artifact in &artifacts {
            self.blobs.put(
                artifact.payload_blob.digest.clone(),
                Stored::Config(Bytes::from(artifact.payload.clone())),
            );
            self.manifests.put(
                artifact.manifest_blob.digest.clone(),
                Arc::new(Manifest {
                    bytes: Bytes::from(artifact.manifest.clone()),
                    digest: artifact.manifest_blob.digest.clone(),
                    media_type: MANIFEST_TYPE,
                }),
            );
        }
        let artifacts = Arc::new(artifacts);
        self.referrers.put(
            format!("{repository}@{}", subject.digest),
            Arc::clone(&artifacts),
        );
        Ok(artifacts)
    }

    /// A manifest handed out before, by this server or (through the memo) by another.
    pub fn manifest_by_digest(&self, digest: &str) -> Option<Arc<Manifest>> {
        let found = || self.manifests.get(&digest.to_owned());
        // Only a well-formed digest is looked for on disk.
        found().or_else(|| (crate::digest::is_sha256(digest) && self.recall(digest)).then(found)?)
    }

    /// A blob of a manifest handed out before, by this server or (through the memo) by
    /// another.
    pub fn blob(&self, digest: &str) -> Option<Stored> {
        let found = || self.blobs.get(&digest.to_owned());
        found().or_else(|| self.recall(digest).then(found)?)
    }

    /// On a digest this server has not made: the image another server memoized with it,
    /// made known here (its memo is not hashed again). `false` when there is none.
    fn recall(&self, digest: &str) -> bool {
        let Some(memo) = &self.memo else { return false };
        let Some(recalled) = memo.recall(digest, self.mtime) else {
            return false;
        };
        let made = MemoDir::with_recalled(&recalled, || {
            let platforms: Vec<Platform> =
                recalled.images.iter().map(|(p, ..)| p.clone()).collect();
            // From the memos alone: never a pass.
            match (recalled.index, platforms.as_slice()) {
                (false, [platform]) => {
                    self.manifest_with(&recalled.spec, &ImageConfig::new(), platform, None)
                }
                _ => self.index_with(&recalled.spec, &ImageConfig::new(), &platforms, None),
            }
            .is_ok_and(|made| made.is_some())
        });
        let key = digest.to_owned();
        let known = made && (self.blobs.get(&key).is_some() || self.manifests.get(&key).is_some());
        if !known {
            memo.missed(digest);
        }
        known
    }

    /// Digest, size and diff_id of each layer of `spec` for `platform`: from memory, the
    /// memo, or one pass.
    fn layer_blobs(
        &self,
        spec: &Arc<Spec>,
        platform: &Platform,
        work: Option<&Work>,
    ) -> Result<Option<Arc<Vec<Hashed>>>, Error> {
        let key = memo::key(spec, platform, self.mtime);
        if let Some(blobs) = self.digests.get(&key) {
            return Ok(Some(blobs));
        }
        let memo = self.memo.as_ref();
        // A memo is one small file, read without blocking: no pass.
        if let Some(blobs) = memo.and_then(|m| m.read(&key, spec, platform, self.mtime)) {
            let blobs = Arc::new(blobs);
            self.digests.put(key, Arc::clone(&blobs));
            return Ok(Some(blobs));
        }
        let Some(work) = work else { return Ok(None) };
        let result = (|| {
            let plans = Plans::new(&self.plans);
            let blobs =
                hash_layers(spec, &plans, platform, self.mtime, work).map_err(|e| e.to_string())?;
            if let Some(memo) = memo {
                memo.write(&key, spec, platform, self.mtime, &blobs);
            }
            Ok(Arc::new(blobs))
        })();
        let blobs = result.map_err(|detail| Error::Generate {
            spec: spec.canonical(),
            detail,
        })?;
        self.digests.put(key, Arc::clone(&blobs));
        Ok(Some(blobs))
    }
}

/// Hashes every layer of `spec` on `work.threads` threads: that many layers at once, and
/// a layer's encoder on the threads left over (one layer of a one-layer image gets them
/// all). Every layer stops at its next chunk once the pass is cancelled.
fn hash_layers(
    spec: &Arc<Spec>,
    plans: &Plans,
    platform: &Platform,
    mtime: u64,
    work: &Work,
) -> std::io::Result<Vec<Hashed>> {
    let count = spec.layers().len();
    let workers = work.threads.max(1).min(count.max(1));
    let encoders = (work.threads / workers).max(1);
    // Planned and seeded once, here, and held by every layer of the pass while it runs.
    plans.of(spec);
    let seed = image_seed(spec, platform);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<std::io::Result<Hashed>>>> =
        Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count || work.cancel.load(Ordering::Relaxed) {
                    return;
                }
                let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
                let layer = Layer::new(Arc::clone(spec), plans.clone(), seed, number, mtime);
                let blob = layer.hash(encoders, &work.cancel);
                results.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(blob);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(std::io::Error::other("a layer was not hashed"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn the_memo_is_written_once_and_read_by_the_next_server_on_a_miss() {
        let dir = tempfile::tempdir().expect("temp dir");
        let memos = dir.path().join("v1");
        let spec = Spec::parse("3KB,1KB:files=2").expect("valid");
        let first = Catalog::new(0, Some(memos.clone()));
        let manifest = first
            .manifest(&spec, &Platform::default())
            .expect("manifest");
        let files: Vec<_> = fs::read_dir(&memos).expect("memo").flatten().collect();
        assert_eq!(files.len(), 1, "one small file, no leftovers");
        let text = fs::read_to_string(files[0].path()).expect("memo");
        assert!(
            text.starts_with(
                "spec 3KB:files=1,1KB:files=2\nplatform linux/amd64\nmtime 0\nlayer sha256:"
            ),
            "{text}"
        );
        assert!(text.len() < 250, "{text}");
        // Every digest of the image points at it: two layers, the config, the manifest.
        let key = files[0].file_name().to_string_lossy().into_owned();
        let pointers: Vec<_> = fs::read_dir(dir.path().join("v1-by-digest"))
            .expect("index")
            .flatten()
            .collect();
        assert_eq!(pointers.len(), 4, "{pointers:?}");
        for pointer in &pointers {
            let text = fs::read_to_string(pointer.path()).expect("pointer");
            assert_eq!(text, format!("image {key}\n"));
        }
        let doc: serde_json::Value = serde_json::from_slice(&manifest.bytes).expect("json");
        let named = |digest: &str| {
            let hex = digest.trim_start_matches("sha256:");
            pointers.iter().any(|p| p.file_name() == hex)
        };
        assert!(named(&manifest.digest));
        assert!(named(doc["config"]["digest"].as_str().expect("config")));
        // Nothing is read at start: the memo is read on the first miss.
        let second = Catalog::new(0, Some(memos.clone()));
        assert_eq!(second.manifests.usage().0, 0);
        let layer = doc["layers"][1]["digest"].as_str().expect("digest");
        assert!(matches!(second.blob(layer), Some(Stored::Layer(..))));
        let again = second
            .manifest_by_digest(&manifest.digest)
            .expect("found through the memo");
        assert_eq!(again.bytes, manifest.bytes);
        let config = doc["config"]["digest"].as_str().expect("config");
        assert!(matches!(
            Catalog::new(0, Some(memos.clone())).blob(config),
            Some(Stored::Config(_))
        ));
        // Another mtime is another image: not taken from this memo.
        let other = Catalog::new(5, Some(memos.clone()));
        assert!(other.manifest_by_digest(&manifest.digest).is_none());
        assert!(other.blob(layer).is_none());
        // Nor is what is not a digest, or one nobody made.
        assert!(second.manifest_by_digest("sha256:../../etc").is_none());
        assert!(second.blob(&format!("sha256:{}", "0".repeat(64))).is_none());
    }

    #[test]
    fn an_index_is_found_by_digest_with_its_images() {
        let dir = tempfile::tempdir().expect("temp dir");
        let memos = dir.path().join("v1");
        let spec = Spec::parse("2KB,1KB:compression=gzip").expect("valid");
        let platforms = Platform::parse_list("linux/arm64,linux/amd64").expect("platforms");
        let index = Catalog::new(0, Some(memos.clone()))
            .image(
                &spec,
                &ImageConfig::new(),
                &platforms,
                Some(&Work::default()),
            )
            .expect("index")
            .expect("made by a pass");
        let replica = Catalog::new(0, Some(memos));
        let found = replica
            .manifest_by_digest(&index.digest)
            .expect("found through the memo");
        assert_eq!(found.bytes, index.bytes);
        assert_eq!(found.media_type, INDEX_TYPE);
        let doc: serde_json::Value = serde_json::from_slice(&index.bytes).expect("json");
        for image in doc["manifests"].as_array().expect("manifests") {
            let digest = image["digest"].as_str().expect("digest");
            assert!(replica.manifest_by_digest(digest).is_some(), "{digest}");
        }
    }

    /// The determinism test's golden images. When one of these digests changes, the layer
    /// bytes changed: bump `MEMO_SALT` with it, or memos written before would be trusted.
    #[test]
    fn memo_salt_follows_the_layer_bytes() {
        let digest = |list: &str| {
            Catalog::new(0, None)
                .manifest(&Spec::parse(list).expect("valid"), &Platform::default())
                .expect("manifest")
                .digest
                .clone()
        };
        let gzip = digest("2MB:compression=gzip:ratio=3,300KB:files=3:compression=gzip");
        let zstd = digest("2MB:compression=zstd:ratio=3,300KB:files=3:compression=zstd");
        assert_eq!(
            (memo::MEMO_SALT, gzip.as_str(), zstd.as_str()),
            (
                &b"image-maker serve digests v6\0"[..],
                "sha256:5a8051f87e5478904185cc0033993af2e649298671cc5e5748096f4d17c9e952",
                "sha256:0f907f9f10b76b8fc2a07ea880f0f08c738d05862ddcc2ed6c00d3b143dc2e96",
            )
        );
    }
}
