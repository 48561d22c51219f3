//! `--dry-run`: what a build would write, worked out from the plan alone. Everything a real
//! build checks before its first byte is checked the same way (the same functions), and
//! nothing is created: no output, no cache entry, no temporary directory.
//!
//! Sizes are exact where the bytes are known before encoding: a plain tar's size follows
//! from the plan in closed form, and metadata holds digests of fixed length. A compressed
//! blob's size is known only once it is encoded: it gets an upper bound ([`compress::blob_bound`](crate::compress::blob_bound)),
//! and for `ratio=R` content an expected size of about tar/R.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cache::Cache;
use crate::compress::blob_bound;
use crate::image::{self, ImageSet, LayerInfo, PlatformMetadata, OCI_LAYOUT};
use crate::plan::{self, Entry, LayerPlan};
use crate::request::{BuildRequest, Builder, Output};
use crate::sink::{self, Finished};
use crate::spec::{Compression, Layout};
use crate::{layer, Error};

/// How much of the plan to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Entries listed per layer (paths in tar order); the rest are only counted.
    pub entries: usize,
    /// Whether the cache takes part, as without `--no-cache`: its entry is then written
    /// too, unless it is there already.
    pub use_cache: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            entries: 5,
            use_cache: true,
        }
    }
}

/// The plan of a build, as `--dry-run --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DryRun {
    /// `name:tag`.
    pub reference: String,
    /// The spec in canonical form.
    pub spec: String,
    /// Every platform, in the index's order.
    pub platforms: Vec<String>,
    /// The layer sets: one per platform, or a single one that every platform shares (one
    /// platform, or `--shared-layers`).
    pub layer_sets: Vec<LayerSet>,
    /// Bytes of every config and manifest, and the index for several platforms.
    pub metadata: u64,
    /// The image it is built on (`--base`), whose blobs every output holds too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseNeed>,
    /// What each output, and the cache, would take.
    pub outputs: Vec<OutputNeed>,
    /// Each filesystem written to: what it would take there and what is free.
    pub space: Vec<Space>,
    /// Whether every filesystem has room (one whose free space is unknown counts as room).
    pub fits: bool,
}

/// The base's part of a build: blobs copied as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseNeed {
    /// The source, as `--base` takes it.
    pub source: String,
    /// The digest of the manifest or index it names.
    pub digest: String,
    /// Its layers, every platform's together, each blob once.
    pub layers: usize,
    /// Their bytes, exact.
    pub bytes: u64,
}

/// One set of layers: what the platforms in `platforms` hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSet {
    /// The platforms whose images hold these layers.
    pub platforms: Vec<String>,
    /// The layers, in order.
    pub layers: Vec<LayerEstimate>,
}

/// One layer as it would be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerEstimate {
    /// 1-based.
    pub number: u32,
    /// Bytes of file data (the size the spec asks for).
    pub payload: u64,
    /// Regular files.
    pub files: u64,
    /// `flat` or `tree`.
    pub layout: &'static str,
    /// Directory entries, `layerN/` included (and the lower layers' directories that hold
    /// this layer's whiteouts).
    pub dirs: u64,
    /// Symbolic links (`symlinks=`).
    pub symlinks: u64,
    /// Hard links (`hardlinks=`).
    pub hardlinks: u64,
    /// Whiteouts (`whiteouts=`), the opaque one included.
    pub whiteouts: u64,
    /// `none`, `gzip` or `zstd`.
    pub encoding: &'static str,
    /// The uncompressed tar's exact size, headers included.
    pub tar_size: u64,
    /// The blob as stored.
    pub blob: BlobSize,
    /// Entries in the tar, of every kind.
    pub entry_count: u64,
    /// The first [`Options::entries`] of them: paths in tar order, directories ending in `/`.
    pub entries: Vec<String>,
}

/// A blob's size before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BlobSize {
    /// The size, when it is known before encoding (a plain tar).
    pub exact: Option<u64>,
    /// The most it can be: `exact`, or `compress::blob_bound` for a compressed blob.
    pub at_most: u64,
    /// What to expect for `ratio=R` content, about tar/R; `None` when nothing better than
    /// `at_most` is known (random data barely changes size when compressed).
    pub expected: Option<u64>,
}

/// What one output (or the cache) would take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputNeed {
    /// The output as `--output` takes it; `cache` for the cache's entry, `staging` for the
    /// layout a push reads, `build context` for the dockerfile builder's directory.
    pub output: String,
    /// Bytes written: files of the layout, the archive, what the engine stores
    /// (uncompressed layers), or what is uploaded to the registry.
    pub bytes: u64,
    /// Whether `bytes` is exact, rather than an upper bound (or, for an engine, an estimate).
    pub exact: bool,
    /// Where they go on this machine; `None` for a registry, or an engine whose store
    /// could not be found.
    pub path: Option<PathBuf>,
}

/// One filesystem written to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Space {
    /// The first destination on it, as given (it need not exist yet).
    pub path: PathBuf,
    /// What is written there, `, `-separated.
    pub uses: String,
    /// Bytes written there, all outputs together.
    pub needed: u64,
    /// Bytes free there for this user; `None` when unknown.
    pub free: Option<u64>,
    /// Whether `needed` fits in `free`.
    pub fits: bool,
}

/// Checks `request` as a build would before writing, and works out what it would write.
/// Creates nothing. An engine output asks the engine whether it answers (and where it
/// stores images); nothing else runs.
pub fn plan(request: &BuildRequest, options: &Options) -> Result<DryRun, Error> {
    validate(request)?;
    let spec = &request.spec;
    let layers = plan::with_added(spec, &request.added);
    let platforms = request.all_platforms();
    let shared = request.shared_layers || platforms.len() == 1;
    let estimates: Vec<LayerEstimate> = layers.iter().map(|l| estimate(l, options)).collect();
    let layer_sets: Vec<LayerSet> = if shared {
        vec![LayerSet {
            platforms: platforms.iter().map(ToString::to_string).collect(),
            layers: estimates,
        }]
    } else {
        // Each platform's layers hold other bytes of the same sizes.
        platforms
            .iter()
            .map(|p| LayerSet {
                platforms: vec![p.to_string()],
                layers: estimates.clone(),
            })
            .collect()
    };
    let exact = !spec.is_compressed();
    // Metadata with placeholder digests: digests have a fixed length, and the sizes written
    // in are the bounds, so the bytes are exact for plain layers and at most a few digits
    // over otherwise.
    let infos: Vec<Vec<LayerInfo>> = layer_sets
        .iter()
        .zip(&platforms)
        .map(|(set, platform)| {
            let base = request.base_image(platform).map_or(&[][..], |b| &b.layers);
            let base = base.iter().map(|l| LayerInfo {
                digest: l.blob.digest.clone(),
                size: l.blob.size,
                diff_id: l.diff_id.clone(),
                files: 0,
                payload: 0,
                media_type: l.blob.media_type.clone(),
            });
            base.chain(
                set.layers
                    .iter()
                    .zip(&layers)
                    .map(|(estimate, plan)| LayerInfo {
                        digest: placeholder(),
                        size: estimate.blob.at_most,
                        diff_id: placeholder(),
                        files: plan.spec.files,
                        payload: plan.spec.size,
                        media_type: image::layer_media_type(plan.spec.encoding()).to_string(),
                    }),
            )
            .collect()
        })
        .collect();
    let images = platforms
        .iter()
        .enumerate()
        .map(|(i, platform)| {
            let set = if shared { 0 } else { i };
            Ok(PlatformMetadata {
                platform: platform.clone(),
                metadata: request.metadata(platform, &infos[set])?,
                set,
            })
        })
        .collect::<Result<Vec<_>, image::MetadataError>>()?;
    let set = ImageSet::with_media(images, request.media_types)?;
    let metadata: u64 = set.blobs().iter().map(|(blob, _)| blob.size).sum();
    let base = request.base.as_ref().map(|base| {
        let mut blobs: Vec<(&str, u64)> = platforms
            .iter()
            .filter_map(|p| request.base_image(p))
            .flat_map(|image| &image.layers)
            .map(|l| (l.blob.digest.as_str(), l.blob.size))
            .collect();
        blobs.sort_unstable();
        blobs.dedup();
        // In an archive, each blob is a tar header and its bytes padded to a block.
        let in_archive = blobs
            .iter()
            .map(|(_, size)| 512 + size.div_ceil(512) * 512)
            .sum();
        let need = BaseNeed {
            source: base.source().to_string(),
            digest: base.digest().to_owned(),
            layers: blobs.len(),
            bytes: blobs.iter().map(|(_, size)| size).sum(),
        };
        (need, in_archive)
    });
    let base_archive = base.as_ref().map_or(0, |(_, in_archive)| *in_archive);
    let base = base.map(|(need, _)| need);
    let base_bytes = base.as_ref().map_or(0, |b| b.bytes);
    let layer_bytes: u64 = base_bytes
        + layer_sets
            .iter()
            .flat_map(|s| &s.layers)
            .map(|l| l.blob.at_most)
            .sum::<u64>();
    let layout = layer_bytes
        + metadata
        + set.layout_index(&request.reference)?.len() as u64
        + OCI_LAYOUT.len() as u64;
    let finished = Finished {
        reference: &request.reference,
        set: &set,
    };
    let archive = archive_size(&layer_sets, &finished, &infos)? + base_archive;
    // An engine loads one platform's image and stores its layers unpacked (a base's
    // compressed layers count as their blobs: their unpacked size is not known here).
    let engine_bytes: u64 = layer_sets[0].layers.iter().map(|l| l.tar_size).sum::<u64>()
        + platforms
            .first()
            .and_then(|p| request.base_image(p))
            .map_or(0, |image| image.layers.iter().map(|l| l.blob.size).sum());

    let mut outputs = Vec::new();
    let native = request.builder == Builder::Native;
    let cache = (native && options.use_cache && !request.no_cache)
        .then(Cache::from_env)
        .and_then(Result::ok);
    for output in &request.outputs {
        outputs.push(match output {
            Output::OciDir(path) => OutputNeed {
                output: output.to_string(),
                bytes: layout,
                exact,
                path: Some(path.clone()),
            },
            Output::OciArchive(path) => OutputNeed {
                output: output.to_string(),
                bytes: archive,
                exact,
                path: Some(path.clone()),
            },
            // An estimate either way: the engine unpacks the layers into its own store,
            // where file system overhead replaces the tar headers.
            Output::Engine => OutputNeed {
                output: output.to_string(),
                bytes: engine_bytes,
                exact: false,
                path: engine_store(request),
            },
            Output::Registry => OutputNeed {
                output: output.to_string(),
                bytes: layer_bytes + metadata,
                exact,
                path: None,
            },
        });
    }
    // A push without the cache reads a layout staged in the temp dir; with the cache, the
    // cache's entry.
    if request.outputs.contains(&Output::Registry) && cache.is_none() {
        outputs.push(OutputNeed {
            output: "staging".into(),
            bytes: layout,
            exact,
            path: Some(std::env::temp_dir()),
        });
    }
    if let Some(cache) = &cache {
        if !cache.contains(request) {
            outputs.push(OutputNeed {
                output: "cache".into(),
                bytes: layout,
                exact,
                path: Some(cache.root().to_path_buf()),
            });
        }
    }
    if request.builder == Builder::Dockerfile {
        outputs.push(OutputNeed {
            output: "build context".into(),
            bytes: spec.total_size(),
            exact: false,
            path: Some(request.build_dir.clone().unwrap_or_else(std::env::temp_dir)),
        });
    }
    let space = space(&outputs, free_space);
    let fits = space.iter().all(|s| s.fits);
    Ok(DryRun {
        reference: request.reference.to_string(),
        spec: spec.canonical(),
        platforms: platforms.iter().map(ToString::to_string).collect(),
        layer_sets,
        metadata,
        base,
        outputs,
        space,
        fits,
    })
}

impl DryRun {
    /// The first filesystem without room, if any.
    pub fn shortfall(&self) -> Option<&Space> {
        self.space.iter().find(|s| !s.fits)
    }
}

/// What a build checks before it writes: features, builder and option combinations, the
/// outputs' places, and that an engine answers.
fn validate(request: &BuildRequest) -> Result<(), Error> {
    request.check_features()?;
    sink::check(&request.outputs)?;
    match request.builder {
        Builder::Native =>
        {
            #[cfg(feature = "engine")]
            if request.outputs.contains(&Output::Engine) {
                crate::engine::detect(request.engine)?;
            }
        }
        Builder::Dockerfile => {
            #[cfg(feature = "engine")]
            {
                crate::build::dockerfile::check(request)?;
                crate::engine::detect_builder(request.engine)?;
            }
            #[cfg(not(feature = "engine"))]
            return Err(Error::FeatureDisabled {
                feature: "engine",
                what: "the dockerfile builder",
            });
        }
    }
    Ok(())
}

fn placeholder() -> String {
    format!("sha256:{}", "0".repeat(64))
}

fn estimate(plan: &LayerPlan, options: &Options) -> LayerEstimate {
    let spec = &plan.spec;
    let tar_size = layer::tar_size(plan);
    let encoding = spec.encoding();
    let blob = match encoding {
        Compression::None => BlobSize {
            exact: Some(tar_size),
            at_most: tar_size,
            expected: None,
        },
        compressed => BlobSize {
            exact: None,
            at_most: blob_bound(compressed, spec.level, tar_size),
            expected: (spec.ratio.hundredths() > 100).then(|| {
                let expected = u128::from(tar_size) * 100 / u128::from(spec.ratio.hundredths());
                u64::try_from(expected).unwrap_or(u64::MAX)
            }),
        },
    };
    LayerEstimate {
        number: plan.number,
        payload: spec.size,
        files: spec.files,
        layout: match spec.layout {
            Layout::Flat => "flat",
            Layout::Tree => "tree",
        },
        dirs: plan.dir_count(),
        symlinks: spec.extra.symlinks,
        hardlinks: spec.extra.hardlinks,
        whiteouts: spec.extra.whiteouts,
        encoding: encoding.name(),
        tar_size,
        blob,
        entry_count: plan.entry_count(),
        entries: plan
            .entries()
            .take(options.entries)
            .map(|e| match e {
                Entry::Symlink { path, target } => format!("{path} -> {target}"),
                Entry::Hardlink { path, target, .. } => format!("{path} link to {target}"),
                other => other.path().to_owned(),
            })
            .collect(),
    }
}

/// The archive's size: its layout's files as tar entries, with docker's `manifest.json`.
fn archive_size(
    sets: &[LayerSet],
    finished: &Finished<'_>,
    infos: &[Vec<LayerInfo>],
) -> Result<u64, Error> {
    const BLOCK: u64 = 512;
    let entry = |bytes: u64| BLOCK + bytes.div_ceil(BLOCK) * BLOCK;
    let layer_paths: Vec<String> = infos[0].iter().map(|l| l.blob().layout_path()).collect();
    let files = sink::metadata_files(finished, 0, &layer_paths)?;
    // `blobs/` and `blobs/sha256/`, `oci-layout`, the layers, the metadata, the end.
    Ok(2 * BLOCK
        + entry(OCI_LAYOUT.len() as u64)
        + sets
            .iter()
            .flat_map(|s| &s.layers)
            .map(|l| entry(l.blob.at_most))
            .sum::<u64>()
        + files
            .iter()
            .map(|(_, bytes)| entry(bytes.len() as u64))
            .sum::<u64>()
        + 2 * BLOCK)
}

/// Where the engine keeps images: docker's `DockerRootDir`, podman's graph root. `None`
/// when the engine does not say, or has no such place on this machine.
fn engine_store(request: &BuildRequest) -> Option<PathBuf> {
    #[cfg(feature = "engine")]
    {
        use crate::engine::EngineKind;
        let engine = crate::engine::detect(request.engine).ok()?;
        let format = match engine.kind {
            EngineKind::Docker => "{{.DockerRootDir}}",
            EngineKind::Podman | EngineKind::Buildah => "{{.Store.GraphRoot}}",
            _ => return None,
        };
        let out = engine
            .stdout(&["info", "--format", format], String::new())
            .ok()?;
        let text = String::from_utf8_lossy(&out).trim().to_owned();
        // A remote daemon's path means nothing here.
        let path = PathBuf::from(text);
        (path.is_absolute() && path.exists()).then_some(path)
    }
    #[cfg(not(feature = "engine"))]
    {
        let _ = request;
        None
    }
}

/// Free bytes for this user on the filesystem of `path`, or of its nearest existing
/// ancestor (a destination is made later), and an id telling filesystems apart.
pub fn free_space(path: &Path) -> Option<(u64, u64)> {
    let absolute = std::env::current_dir().ok()?.join(path);
    let existing = absolute.ancestors().find(|p| p.exists())?;
    let device = nix::sys::stat::stat(existing).ok()?.st_dev;
    let stats = nix::sys::statvfs::statvfs(existing).ok()?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    let free = (stats.blocks_available() as u64).saturating_mul(stats.fragment_size() as u64);
    #[allow(clippy::unnecessary_cast)]
    Some((device as u64, free))
}

/// Groups `outputs` by filesystem and decides whether each has room; `free` gives a path's
/// filesystem id and free bytes ([`free_space`] on a real machine). Outputs without a path
/// (a registry) take no room here.
pub fn space(outputs: &[OutputNeed], free: impl Fn(&Path) -> Option<(u64, u64)>) -> Vec<Space> {
    // Keyed by filesystem; paths whose filesystem cannot be told are kept apart.
    let mut groups: BTreeMap<(u64, String), Space> = BTreeMap::new();
    let mut order = Vec::new();
    for need in outputs {
        let Some(path) = &need.path else { continue };
        let found = free(path);
        let key = match found {
            Some((device, _)) => (device, String::new()),
            None => (u64::MAX, path.display().to_string()),
        };
        let space = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            Space {
                path: path.clone(),
                uses: String::new(),
                needed: 0,
                free: found.map(|(_, bytes)| bytes),
                fits: true,
            }
        });
        if !space.uses.is_empty() {
            space.uses.push_str(", ");
        }
        space.uses.push_str(&need.output);
        space.needed = space.needed.saturating_add(need.bytes);
        space.fits = space.free.is_none_or(|f| space.needed <= f);
    }
    order
        .into_iter()
        .filter_map(|key| groups.remove(&key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(output: &str, bytes: u64, path: &str) -> OutputNeed {
        OutputNeed {
            output: output.into(),
            bytes,
            exact: true,
            path: Some(path.into()),
        }
    }

    #[test]
    fn outputs_on_one_filesystem_add_up() {
        // `/a` and `/b` on filesystem 1 with 100 bytes free, `/c` on 2 with 1000.
        let free = |p: &Path| match p.to_str() {
            Some("/a" | "/b") => Some((1, 100)),
            Some("/c") => Some((2, 1000)),
            _ => None,
        };
        let fits = space(&[need("oci:/a", 60, "/a"), need("cache", 40, "/b")], free);
        assert_eq!(fits.len(), 1);
        assert_eq!((fits[0].needed, fits[0].fits), (100, true));
        assert_eq!(fits[0].uses, "oci:/a, cache");

        let over = space(
            &[
                need("oci:/a", 60, "/a"),
                need("oci:/c", 999, "/c"),
                need("cache", 41, "/b"),
            ],
            free,
        );
        assert_eq!(over.len(), 2);
        assert_eq!((over[0].needed, over[0].fits), (101, false));
        assert_eq!((over[1].needed, over[1].fits), (999, true));
        let plan = DryRun {
            reference: String::new(),
            spec: String::new(),
            platforms: Vec::new(),
            layer_sets: Vec::new(),
            metadata: 0,
            base: None,
            outputs: Vec::new(),
            fits: false,
            space: over,
        };
        let short = plan.shortfall().expect("does not fit");
        assert_eq!(short.path, std::path::Path::new("/a"));
        assert_eq!((short.needed, short.free), (101, Some(100)));
    }

    #[test]
    fn unknown_free_space_and_registries_do_not_block() {
        let unknown = space(&[need("engine", 1 << 40, "/nowhere")], |_| None);
        assert_eq!(unknown[0].free, None);
        assert!(unknown[0].fits);
        let registry = OutputNeed {
            output: "registry".into(),
            bytes: 1 << 40,
            exact: true,
            path: None,
        };
        assert!(space(&[registry], |_| Some((1, 0))).is_empty());
    }

    #[test]
    fn plain_layers_are_exact_and_nine_gib_is_planned_without_data() {
        let spec = crate::Spec::parse("9GB").expect("valid");
        let request = BuildRequest::new(spec, crate::Reference::parse("mock/a:1").expect("ok"));
        let options = Options {
            entries: 5,
            use_cache: false,
        };
        let plan = plan(&request, &options).expect("plan");
        let layer = &plan.layer_sets[0].layers[0];
        // `layer1/`, the file's header, its 9 GiB, the end.
        assert_eq!(layer.tar_size, 512 + 512 + (9 << 30) + 1024);
        assert_eq!(layer.blob.exact, Some(layer.tar_size));
        assert_eq!(layer.entries, ["layer1/", "layer1/9GB-file"]);
        assert!(plan.outputs.is_empty() && plan.fits);
    }
}
