//! The image a build starts from (`--base SOURCE`): for each platform of the build, the
//! base's manifest digest, its layers as its manifest names them (digests kept, so that they
//! are the same blobs everywhere) and its config. Read once, before the build; the build
//! opens the source again to stream the layer blobs through to its outputs.

use std::io::Read;

use serde_json::Value;

use crate::source::{Blobs, Descriptor, OpenError, Source, SourceError};
use crate::spec::Compression;
use crate::{Error, Platform, Progress};

/// The most a base's index, manifest or config may take: they are read whole.
const METADATA_LIMIT: u64 = 4 << 20;

/// An image to build on: its layers go first, its config under the build's own.
///
/// ```no_run
/// use image_maker::{Base, BuildRequest, Progress, Reference, Source, Spec};
///
/// let platforms = [image_maker::Platform::default()];
/// let base = Base::read(&Source::parse("oci:out/base:1")?, &platforms, &mut Progress::hidden())?;
/// let request = BuildRequest::new(Spec::parse("64MB")?, Reference::parse("mock/app:1")?).base(base);
/// # Ok::<(), image_maker::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Base {
    source: Source,
    /// The digest of what the source names: a manifest, or an index.
    digest: String,
    /// One per platform asked for, in that order.
    images: Vec<BaseImage>,
}

/// One platform's base image.
#[derive(Debug, Clone)]
pub(crate) struct BaseImage {
    pub platform: Platform,
    /// Its manifest's digest.
    pub manifest: String,
    pub layers: Vec<BaseLayer>,
    /// The config's `config` object (`Env`, `Entrypoint`, `Labels`, …), as the base has it.
    pub config: Value,
    /// The config's `history`.
    pub history: Vec<Value>,
}

/// A layer of the base: its blob as the base's manifest names it, with an OCI media type.
#[derive(Debug, Clone)]
pub(crate) struct BaseLayer {
    pub blob: Descriptor,
    pub diff_id: String,
    pub compression: Compression,
}

/// Why a base cannot be used (exit 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaseError {
    /// The base has no image for a platform the build makes.
    #[error("base `{base}` has no {platform} image (it has: {available})")]
    NoPlatform {
        /// The base as given.
        base: String,
        /// The platform asked for.
        platform: String,
        /// The platforms it has.
        available: String,
    },
    /// A layer the build cannot copy: non-distributable, or of a media type that is no layer.
    #[error(
        "base `{base}` has a layer of media type `{media_type}` ({digest}), which cannot be copied"
    )]
    Layer {
        /// The base as given.
        base: String,
        /// The layer's media type.
        media_type: String,
        /// The layer's digest.
        digest: String,
    },
    /// `--shared-layers` with a base of several platforms, whose layers differ per platform.
    #[error("--shared-layers gives every platform the same layers, but base `{0}` has each platform's own")]
    SharedLayers(String),
    /// The dockerfile builder starts from `scratch`.
    #[error("the dockerfile builder cannot start from base `{0}`")]
    Dockerfile(String),
}

impl BaseError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Self::NoPlatform { .. } => "build for the base's platforms (`--platform`), or name another base",
            Self::Layer { .. } => "a base's layers must be OCI or Docker layer blobs (tar, tar+gzip, tar+zstd) that may be copied",
            Self::SharedLayers(_) => "leave out --shared-layers: each platform's image keeps its own base layers and the mock layers are generated per platform",
            Self::Dockerfile(_) => "use the native builder (the default), or write `FROM` in a Dockerfile of your own",
        })
    }
}

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

impl Base {
    /// Reads the base `source` names for each of `platforms`: from an index, each platform's
    /// own image; a single image only for its own platform. A `cache:SPEC` base is built
    /// first if the cache lacks it, with status on `progress`.
    pub fn read(
        source: &Source,
        platforms: &[Platform],
        progress: &mut Progress,
    ) -> Result<Self, Error> {
        let mut blobs = source.open(platforms, progress)?;
        let top = blobs.top().clone();
        let mut reader = Reader {
            source,
            blobs: blobs.as_mut(),
        };
        let (_, value) = reader.json(&top)?;
        let is_index = INDEX_TYPES.contains(&top.media_type.as_str())
            || value["mediaType"]
                .as_str()
                .is_some_and(|t| INDEX_TYPES.contains(&t))
            || (value.get("manifests").is_some() && value.get("layers").is_none());
        let images = if is_index {
            let manifests = value["manifests"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(Descriptor::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| reader.unreadable(format!("index {}: {e}", top.digest)))?;
            platforms
                .iter()
                .map(|platform| {
                    let chosen = choose(&manifests, platform)
                        .ok_or_else(|| BaseError::NoPlatform {
                            base: source.to_string(),
                            platform: platform.to_string(),
                            available: available(&manifests),
                        })
                        .map_err(crate::UsageError::from)?;
                    reader.image(&chosen.clone(), platform)
                })
                .collect::<Result<Vec<_>, Error>>()?
        } else {
            let image = reader.image(&top, &platforms[0])?;
            if let Some(other) = platforms.iter().find(|p| **p != image.platform) {
                return Err(crate::UsageError::from(BaseError::NoPlatform {
                    base: source.to_string(),
                    platform: other.to_string(),
                    available: image.platform.to_string(),
                })
                .into());
            }
            vec![image]
        };
        Ok(Self {
            source: source.clone(),
            digest: top.digest,
            images,
        })
    }

    /// Where the base is read from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The digest of the manifest, or index, the source names.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The base image of the build's `i`-th platform.
    pub(crate) fn image(&self, i: usize) -> &BaseImage {
        &self.images[i.min(self.images.len() - 1)]
    }

    /// Whether `request` can be built on this base: it was read for the request's
    /// platforms, and the request asks nothing a base rules out.
    pub(crate) fn check(&self, request: &crate::BuildRequest) -> Result<(), BaseError> {
        let name = || self.source.to_string();
        let platforms = request.all_platforms();
        let read: Vec<&Platform> = self.images.iter().map(|i| &i.platform).collect();
        if let Some(missing) = platforms.iter().find(|p| !read.contains(p)) {
            return Err(BaseError::NoPlatform {
                base: name(),
                platform: missing.to_string(),
                available: read
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if request.builder == crate::Builder::Dockerfile {
            return Err(BaseError::Dockerfile(name()));
        }
        if request.shared_layers && self.images.len() > 1 {
            return Err(BaseError::SharedLayers(name()));
        }
        Ok(())
    }

    /// What the cache key hashes: the images themselves, by their manifests' digests.
    pub(crate) fn key(&self) -> String {
        let manifests: Vec<&str> = self.images.iter().map(|i| i.manifest.as_str()).collect();
        manifests.join(",")
    }

    /// The source opened again, to read the layer blobs from.
    pub(crate) fn open(&self, progress: &mut Progress) -> Result<Box<dyn Blobs>, Error> {
        let platforms: Vec<Platform> = self.images.iter().map(|i| i.platform.clone()).collect();
        self.source.open(&platforms, progress)
    }

    /// The repository a registry base lives in, on `host`: the repository a push to the
    /// same registry mounts the base's blobs from.
    #[cfg_attr(not(feature = "registry"), allow(dead_code))]
    pub(crate) fn repository_on(&self, host: Option<&str>) -> Option<String> {
        match &self.source {
            Source::Registry(reference) if reference.domain() == host => {
                Some(reference.path().to_owned())
            }
            _ => None,
        }
    }
}

/// Streams the base's layer `layer` through `out`, checking that its bytes are its digest.
pub(crate) fn copy_layer(
    blobs: &mut dyn Blobs,
    source: &Source,
    layer: &BaseLayer,
    out: &mut dyn std::io::Write,
    tick: &mut dyn FnMut(u64) -> std::io::Result<()>,
) -> Result<std::io::Result<crate::digest::Blob>, Error> {
    let mut reader = match blobs.open(&layer.blob) {
        Ok(reader) => reader,
        Err(OpenError::Missing(detail)) => {
            return Err(SourceError::Unreadable {
                name: source.to_string(),
                detail: format!("layer {}: {detail}", layer.blob.digest),
            }
            .into())
        }
        Err(OpenError::Other(e)) => return Err(e),
    };
    let mut hashing = crate::digest::HashingWriter::new(out);
    let mut buf = vec![0; crate::layer::CHUNK];
    let copied = (|| loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        std::io::Write::write_all(&mut hashing, &buf[..n])?;
        tick(n as u64)?;
    })();
    Ok(copied.map(|()| hashing.complete().0))
}

struct Reader<'a> {
    source: &'a Source,
    blobs: &'a mut dyn Blobs,
}

impl Reader<'_> {
    fn unreadable(&self, detail: String) -> Error {
        SourceError::Unreadable {
            name: self.source.to_string(),
            detail,
        }
        .into()
    }

    /// A small blob, whole and checked against its digest, and its JSON.
    fn json(&mut self, d: &Descriptor) -> Result<(Vec<u8>, Value), Error> {
        if d.size > METADATA_LIMIT {
            return Err(self.unreadable(format!(
                "{} is {} bytes, more than a manifest or config takes ({METADATA_LIMIT})",
                d.digest, d.size
            )));
        }
        let mut bytes = Vec::new();
        let read = match self.blobs.open(d) {
            Ok(reader) => reader
                .take(d.size + 1)
                .read_to_end(&mut bytes)
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(OpenError::Missing(detail)) => Err(detail),
            Err(OpenError::Other(e)) => return Err(e),
        };
        read.map_err(|e| self.unreadable(format!("{}: {e}", d.digest)))?;
        let found = crate::digest::Blob::of(&bytes);
        if found.digest != d.digest || found.size != d.size {
            return Err(self.unreadable(format!(
                "{} holds {} bytes hashing to {}",
                d.digest, found.size, found.digest
            )));
        }
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| self.unreadable(format!("{}: {e}", d.digest)))?;
        Ok((bytes, value))
    }

    /// The image whose manifest `d` names, which must be for `platform`.
    fn image(&mut self, d: &Descriptor, platform: &Platform) -> Result<BaseImage, Error> {
        let (_, manifest) = self.json(d)?;
        let config_d = Descriptor::parse(&manifest["config"])
            .map_err(|e| self.unreadable(format!("manifest {}: {e}", d.digest)))?;
        let (_, config) = self.json(&config_d)?;
        let own = image_platform(&config).ok_or_else(|| {
            self.unreadable(format!(
                "config {} names no os/architecture",
                config_d.digest
            ))
        })?;
        if own.os != platform.os
            || own.architecture != platform.architecture
            || (own.variant.is_some()
                && platform.variant.is_some()
                && own.variant != platform.variant)
        {
            return Err(crate::UsageError::from(BaseError::NoPlatform {
                base: self.source.to_string(),
                platform: platform.to_string(),
                available: own.to_string(),
            })
            .into());
        }
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let layers = manifest["layers"]
            .as_array()
            .ok_or_else(|| self.unreadable(format!("manifest {} has no `layers`", d.digest)))?;
        if layers.len() != diff_ids.len() {
            return Err(self.unreadable(format!(
                "manifest {} names {} layers, its config {} diff_ids",
                d.digest,
                layers.len(),
                diff_ids.len()
            )));
        }
        let layers = layers
            .iter()
            .zip(diff_ids)
            .map(|(layer, diff_id)| {
                let mut blob = Descriptor::parse(layer)
                    .map_err(|e| self.unreadable(format!("manifest {}: {e}", d.digest)))?;
                let compression = crate::media_types::layer_encoding(&blob.media_type)
                    .filter(|(_, distributable)| *distributable && layer.get("urls").is_none())
                    .map(|(compression, _)| compression)
                    .ok_or_else(|| BaseError::Layer {
                        base: self.source.to_string(),
                        media_type: blob.media_type.clone(),
                        digest: blob.digest.clone(),
                    })
                    .map_err(crate::UsageError::from)?;
                blob.media_type = crate::image::layer_media_type(compression).to_string();
                Ok(BaseLayer {
                    blob,
                    diff_id,
                    compression,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(BaseImage {
            platform: platform.clone(),
            manifest: d.digest.clone(),
            layers,
            config: match &config["config"] {
                Value::Object(_) => config["config"].clone(),
                _ => Value::Object(Default::default()),
            },
            history: config["history"].as_array().cloned().unwrap_or_default(),
        })
    }
}

/// The platform a config names.
fn image_platform(config: &Value) -> Option<Platform> {
    let os = config["os"].as_str()?;
    let arch = config["architecture"].as_str()?;
    Some(Platform {
        os: os.to_owned(),
        architecture: arch.to_owned(),
        variant: config["variant"].as_str().map(str::to_owned),
    })
}

/// The manifest of `manifests` for `platform`: its exact platform, else the same OS and
/// architecture when either leaves the variant out.
fn choose<'a>(manifests: &'a [Descriptor], platform: &Platform) -> Option<&'a Descriptor> {
    let wanted = platform.to_string();
    manifests
        .iter()
        .find(|m| m.platform.as_deref() == Some(wanted.as_str()))
        .or_else(|| {
            manifests.iter().find(|m| {
                m.platform
                    .as_deref()
                    .and_then(|p| Platform::parse(p).ok())
                    .is_some_and(|p| {
                        p.os == platform.os
                            && p.architecture == platform.architecture
                            && (p.variant.is_none() || platform.variant.is_none())
                    })
            })
        })
}

fn available(manifests: &[Descriptor]) -> String {
    let list: Vec<&str> = manifests
        .iter()
        .filter_map(|m| m.platform.as_deref())
        .collect();
    if list.is_empty() {
        "no platforms".into()
    } else {
        list.join(", ")
    }
}

/// The label that says how many of an image's layers, from the bottom, are its base's:
/// `verify` checks the others against the spec.
pub(crate) const BASE_LAYERS_LABEL: &str = "dev.image-maker.base-layers";

impl BaseImage {
    /// `config` (an image's config, as built without a base) on top of this base, as a
    /// derived image's config is on its base's: the base's layers' diff_ids and history
    /// first; in `config`, what the build sets wins, `Env` and `Labels` merge key by key,
    /// `ExposedPorts` and `Volumes` add up, and an `Entrypoint` set drops the base's `Cmd`, as
    /// docker's `ENTRYPOINT` does. Everything else of the base's config object is kept.
    pub(crate) fn under(&self, config: &[u8]) -> Result<Vec<u8>, crate::image::MetadataError> {
        let mut ours: Value = serde_json::from_slice(config)?;
        let mut merged = self.config.clone();
        let (Some(merged_map), Some(own)) = (merged.as_object_mut(), ours["config"].as_object())
        else {
            return Ok(config.to_vec());
        };
        if own.contains_key("Entrypoint") && !own.contains_key("Cmd") {
            merged_map.remove("Cmd");
        }
        for (key, value) in own {
            match (key.as_str(), merged_map.get_mut(key)) {
                ("Env", Some(Value::Array(base_env))) => {
                    for entry in value.as_array().into_iter().flatten() {
                        let name = entry
                            .as_str()
                            .and_then(|e| e.split_once('='))
                            .map(|(k, _)| k);
                        let same = base_env.iter().position(|b| {
                            b.as_str().and_then(|b| b.split_once('=')).map(|(k, _)| k) == name
                        });
                        match same {
                            Some(i) => base_env[i] = entry.clone(),
                            None => base_env.push(entry.clone()),
                        }
                    }
                }
                ("Labels" | "ExposedPorts" | "Volumes", Some(Value::Object(base_map))) => {
                    for (k, v) in value.as_object().into_iter().flatten() {
                        base_map.insert(k.clone(), v.clone());
                    }
                }
                _ => {
                    merged_map.insert(key.clone(), value.clone());
                }
            }
        }
        let labels = merged_map
            .entry("Labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(
                BASE_LAYERS_LABEL.into(),
                self.layers.len().to_string().into(),
            );
        }
        ours["config"] = merged;
        let own_history = ours["history"].as_array().cloned().unwrap_or_default();
        ours["history"] = Value::Array(self.history.iter().cloned().chain(own_history).collect());
        crate::image::canonical_json(&ours)
    }
}
