//! The native builder: plan → content → layer → image → sinks, in one pass over the data.

use std::io::{Read, Write};
use std::path::Path;

use crate::build::staging;
use crate::digest::{Blob, HashingWriter};
use crate::image::{self, ImageSet, LayerInfo, PlatformMetadata};
use crate::layer::{self, TarOptions};
use crate::progress::Progress;
use crate::request::{BuildRequest, Built, Output, PlatformImage};
use crate::sink::{self, Finished, LayerStart, Sink};
use crate::spec::Compression;
use crate::units::human_size;
use crate::{compress, content, interrupt, pipeline, plan, Error};

/// Where the layer bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum Source<'a> {
    /// Generated from the spec.
    Generate,
    /// The blobs of a cached OCI layout, never regenerated: `oci:` outputs link them, other
    /// outputs read them. They were hashed when the cache was filled and checked by size,
    /// inode and modification time when the entry was acquired; `BuildRequest::verify`
    /// hashes them again on the way.
    Blobs {
        layout: &'a Path,
        /// The layers of each layer set: one, or one per platform of an index.
        sets: Vec<&'a [LayerInfo]>,
    },
}

/// Streams every layer from `source` to all outputs at the same time.
pub(crate) fn deliver(
    request: &BuildRequest,
    source: &Source<'_>,
    progress: &mut Progress,
) -> Result<Built, Error> {
    // A terminal's Ctrl-C reaches `docker load` too, so the engine's broken pipe may surface
    // first: the signal is the cause to report.
    build_once(request, source, progress).map_err(|e| interrupt::check().err().unwrap_or(e))
}

fn build_once(
    request: &BuildRequest,
    source: &Source<'_>,
    progress: &mut Progress,
) -> Result<Built, Error> {
    let spec = &request.spec;
    let options = TarOptions {
        mtime: request.mtime,
    };
    let platforms = sink::Platforms::of(request);
    // The cache's own layout comes first: as each of its blobs is complete, the `oci:`
    // outputs link it instead of writing the same bytes again.
    let mut sinks = match &request.internal {
        Some(internal) => sink::open(std::slice::from_ref(internal), None, options, &platforms)?,
        None => Vec::new(),
    };
    let link_from = match source {
        Source::Blobs { layout, .. } => Some(layout.to_path_buf()),
        Source::Generate => sinks
            .first()
            .and_then(|s| s.staged_layout())
            .map(Path::to_path_buf),
    };
    let mut outputs = request.outputs.clone();
    // A push reads an OCI layout: one is staged in a temporary directory, as the last sink.
    let staging = staging::staging(&request.outputs)?;
    outputs.extend(
        staging
            .as_ref()
            .map(|dir| Output::OciDir(staging::layout(dir))),
    );
    sinks.extend(sink::open_linked(
        &outputs,
        request.engine,
        options,
        link_from.as_deref().map(|from| (from, request.link_mode)),
        &platforms,
    )?);
    let stream = sinks.iter().any(|s| s.wants_data());
    let layers = plan::with_added(spec, &request.added);
    let platforms = platforms.list;
    // With shared layers every platform's image holds the first set: it streams once.
    let sets = if request.shared_layers {
        1
    } else {
        platforms.len()
    };
    let base_bytes: u64 = platforms
        .iter()
        .take(sets)
        .filter_map(|p| request.base_image(p))
        .flat_map(|b| &b.layers)
        .map(|l| l.blob.size)
        .sum();
    let total = spec.total_size() * sets as u64 + base_bytes;
    progress.stage(format!(
        "{} {} ({} layer{}, {}) for {}{}",
        match source {
            Source::Generate => "building",
            Source::Blobs { .. } => "exporting cached",
        },
        request.reference,
        layers.len(),
        if layers.len() == 1 { "" } else { "s" },
        human_size(spec.total_size()),
        request.platform_list(),
        match &request.base {
            Some(base) => format!(" on {}", base.source()),
            None => String::new(),
        }
    ));
    if let Source::Generate = source {
        crate::speed::check(total);
    }
    progress.start(total);
    let mut infos: Vec<Vec<LayerInfo>> = Vec::with_capacity(sets);
    // Base layers come from the base's source when generating; a cached image has them.
    let mut base_blobs = match (&request.base, source) {
        (Some(base), Source::Generate) => Some(base.open(progress)?),
        _ => None,
    };
    for (set, platform) in platforms.iter().take(sets).enumerate() {
        let seed = content::seed(spec, platform, request.shared_layers);
        let base = request.base_image(platform);
        let base_layers = base.map_or(&[][..], |b| b.layers.as_slice());
        let mut set_infos = Vec::with_capacity(base_layers.len() + layers.len());
        for (number, base_layer) in (1..).zip(base_layers) {
            let size = base_layer.blob.size;
            let start = LayerStart {
                set,
                number,
                tar_size: (base_layer.compression == Compression::None).then_some(size),
                blob_size: Some(size),
                compression: base_layer.compression,
            };
            let from = Layer::Base {
                layer: base_layer,
                blobs: base_blobs.as_deref_mut(),
            };
            let (blob, diff_id) =
                stream_layer(request, source, &mut sinks, progress, from, &start, stream)?;
            progress.stage(format!(
                "{platform} base layer {number}/{}: {}",
                base_layers.len(),
                blob.digest
            ));
            set_infos.push(LayerInfo {
                diff_id,
                digest: blob.digest,
                size: blob.size,
                files: 0,
                payload: 0,
                media_type: base_layer.blob.media_type.clone(),
            });
        }
        let below = base_layers.len() as u32;
        for layer in &layers {
            let tar_size = layer::tar_size(layer);
            let compression = layer.spec.encoding();
            let start = LayerStart {
                set,
                number: below + layer.number,
                tar_size: Some(tar_size),
                blob_size: (compression == Compression::None).then_some(tar_size),
                compression,
            };
            let from = Layer::Plan {
                plan: layer,
                seed: &seed,
            };
            let (blob, diff_id) =
                stream_layer(request, source, &mut sinks, progress, from, &start, stream)?;
            if sets > 1 {
                progress.stage(format!(
                    "{platform} layer {}/{}: {} -> {}",
                    layer.number,
                    layers.len(),
                    human_size(layer.spec.size),
                    blob.digest
                ));
            } else {
                progress.stage(format!(
                    "layer {}/{}: {} in {} file{} -> {}",
                    layer.number,
                    layers.len(),
                    human_size(layer.spec.size),
                    layer.spec.files,
                    if layer.spec.files == 1 { "" } else { "s" },
                    blob.digest
                ));
            }
            set_infos.push(LayerInfo {
                diff_id,
                digest: blob.digest,
                size: blob.size,
                files: layer.spec.files,
                payload: layer.spec.size,
                media_type: image::layer_media_type(start.compression).to_string(),
            });
        }
        infos.push(set_infos);
    }
    progress.finish();
    interrupt::check()?;
    let images = platforms
        .iter()
        .enumerate()
        .map(|(i, platform)| {
            let set = if request.shared_layers { 0 } else { i };
            let metadata = request.metadata(platform, &infos[set])?;
            Ok(PlatformMetadata {
                platform: platform.clone(),
                metadata,
                set,
            })
        })
        .collect::<Result<Vec<_>, image::MetadataError>>()?;
    let mut set = ImageSet::with_media(images, request.media_types)?;
    if request.artifacts {
        progress.stage("artifacts: a signature, an SBOM and an attestation for each manifest");
        let media_type = match request.media_types {
            crate::MediaTypes::Oci => "application/vnd.oci.image.manifest.v1+json",
            crate::MediaTypes::Docker => crate::media_types::DOCKER_MANIFEST,
        };
        let mut artifacts = Vec::new();
        for image in &set.images {
            artifacts.extend(crate::artifacts::for_manifest(
                &image.metadata.manifest_blob,
                media_type,
                request.reference.path(),
                spec,
                &image.platform,
                request.shared_layers,
                request.mtime,
            )?);
        }
        set.artifacts = artifacts;
    }
    if let (Source::Blobs { layout, .. }, true) = (source, request.verify) {
        for (blob, _) in set.blobs() {
            let path = layout.join(blob.layout_path());
            let found = Blob::of_file(&path).map_err(Error::io("read", &path))?;
            check_blob(&path, &found, blob, Some(blob.size))?;
        }
    }
    let finished = Finished {
        reference: &request.reference,
        set: &set,
    };
    for sink in sinks.iter_mut() {
        sink.finish(&finished)?;
    }
    // Pushed before any output commits: like loading, it is the step most likely to fail.
    let pushed = match (&staging, sinks.pop()) {
        (Some(dir), Some(layout)) => {
            let _placed = layout.commit()?;
            interrupt::check()?;
            Some(staging::push(&staging::layout(dir), request, progress)?)
        }
        (None, Some(last)) => {
            sinks.push(last);
            None
        }
        (_, None) => None,
    };
    // All outputs land, or none of the files do: one that fails takes the others back out.
    let mut committed = Vec::with_capacity(sinks.len());
    for sink in sinks {
        match interrupt::check().and_then(|()| sink.commit()) {
            Ok(done) => committed.push(done),
            Err(e) => {
                sink::undo_all(committed, progress);
                return Err(e);
            }
        }
    }
    let internal = request.internal.as_ref().map(ToString::to_string);
    let top = set.top();
    for done in committed
        .iter()
        .filter(|c| Some(&c.description) != internal.as_ref())
    {
        progress.stage(format!(
            "wrote {} {} to {}",
            request.reference, top.digest, done.description
        ));
    }
    let manifests = if set.index.is_some() {
        set.images
            .iter()
            .map(|image| PlatformImage {
                platform: image.platform.to_string(),
                digest: image.metadata.manifest_blob.digest.clone(),
                config_digest: image.metadata.config_blob.digest.clone(),
                layers: infos[image.set].clone(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let first = infos.swap_remove(0);
    Ok(Built {
        reference: request.reference.to_string(),
        spec: spec.canonical(),
        digest: top.digest,
        config_digest: set.images[0].metadata.config_blob.digest.clone(),
        platform: request.platform.to_string(),
        layers: first,
        manifests,
        outputs: request.outputs.iter().map(ToString::to_string).collect(),
        pushed,
    })
}

/// What a layer's bytes are made from when they are not in the cache.
enum Layer<'a> {
    /// Generated from its plan.
    Plan {
        plan: &'a plan::LayerPlan,
        seed: &'a [u8; 32],
    },
    /// Copied from the base's source (`None` when the cache has the image).
    Base {
        layer: &'a crate::base::BaseLayer,
        blobs: Option<&'a mut (dyn crate::source::Blobs + 'static)>,
    },
}

/// Streams one layer from `source` to every sink: its blob and its diff_id.
fn stream_layer(
    request: &BuildRequest,
    source: &Source<'_>,
    sinks: &mut [Box<dyn Sink>],
    progress: &mut Progress,
    from: Layer<'_>,
    start: &LayerStart,
    stream: bool,
) -> Result<(Blob, String), Error> {
    let options = TarOptions {
        mtime: request.mtime,
    };
    for sink in sinks.iter_mut() {
        sink.begin_layer(start)?;
        if let Some(note) = sink.take_note() {
            progress.stage(note);
        }
    }
    // An interrupt surfaces as an I/O error here; `build` reports it as what it is.
    let mut tick = |n| {
        progress.inc(n);
        interrupt::check().map_err(|_| std::io::Error::other("interrupted"))
    };
    let (blob, diff_id) = match (source, from) {
        (Source::Generate, Layer::Plan { plan: layer, seed }) => {
            pipeline::write_layer(sinks, |out| {
                // tar → SHA-256 (diff_id) → encoder → SHA-256 (digest) → outputs, in one pass.
                let (diff_id, hashing) = compress::encode_layer(
                    layer,
                    seed,
                    options,
                    HashingWriter::new(out),
                    true,
                    compress::workers(),
                    &mut tick,
                )?;
                Ok((hashing.complete().0, diff_id.unwrap_or_default()))
            })?
            .map_err(Error::io("generate", layer.dir()))?
        }
        (Source::Generate, Layer::Base { layer, blobs }) => {
            let base = request.base.as_ref().ok_or_else(|| no_base_source(layer))?;
            let blobs = blobs.ok_or_else(|| no_base_source(layer))?;
            let mut failure = None;
            let copied = pipeline::write_layer(sinks, |out| {
                match crate::base::copy_layer(blobs, base.source(), layer, out, &mut tick) {
                    Ok(result) => result,
                    Err(e) => {
                        failure = Some(e);
                        Err(std::io::Error::other("the base is unreadable"))
                    }
                }
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            let blob = copied.map_err(|e| {
                Error::from(crate::source::SourceError::Unreadable {
                    name: base.source().to_string(),
                    detail: format!("layer {}: {e}", layer.blob.digest),
                })
            })?;
            if blob.digest != layer.blob.digest || blob.size != layer.blob.size {
                return Err(crate::source::SourceError::Unreadable {
                    name: base.source().to_string(),
                    detail: format!(
                        "layer {} holds {} bytes hashing to {}",
                        layer.blob.digest, blob.size, blob.digest
                    ),
                }
                .into());
            }
            (blob, layer.diff_id.clone())
        }
        (Source::Blobs { layout, sets }, _) => {
            let index = usize::try_from(start.number - 1).unwrap_or(usize::MAX);
            let expected = sets
                .get(start.set)
                .and_then(|layers| layers.get(index))
                .ok_or_else(|| Error::CacheCorrupt {
                    path: layout.to_path_buf(),
                    detail: format!("no layer {} in set {}", start.number, start.set + 1),
                })?;
            let path = layout.join(expected.blob().layout_path());
            let blob = if request.verify {
                pipeline::write_layer(sinks, |out| {
                    let mut hashing = HashingWriter::new(out);
                    copy_counted(&path, &mut hashing, &mut tick)?;
                    Ok(hashing.complete().0)
                })?
                .map_err(Error::io("read", &path))?
            } else if stream {
                // Hashed when the cache was filled: counting the bytes is enough here.
                let size = pipeline::write_layer(sinks, |out| {
                    let mut counting = CountingWriter {
                        inner: out,
                        size: 0,
                    };
                    copy_counted(&path, &mut counting, &mut tick)?;
                    Ok(counting.size)
                })?
                .map_err(Error::io("read", &path))?;
                Blob {
                    digest: expected.digest.clone(),
                    size,
                }
            } else {
                // Only links: no byte to read. The size was checked when the entry was
                // acquired.
                tick(expected.size).map_err(Error::io("read", &path))?;
                expected.blob()
            };
            check_blob(&path, &blob, &expected.blob(), start.blob_size)?;
            (blob, expected.diff_id.clone())
        }
    };
    for sink in sinks.iter_mut() {
        sink.end_layer(&blob)?;
        if let Some(note) = sink.take_note() {
            progress.stage(note);
        }
    }
    Ok((blob, diff_id))
}

/// A base layer to copy with the base's source not open: a bug, said as a damaged source.
fn no_base_source(layer: &crate::base::BaseLayer) -> Error {
    crate::source::SourceError::Unreadable {
        name: "--base".into(),
        detail: format!("layer {}: the base is not open", layer.blob.digest),
    }
    .into()
}

/// A cached blob is what the entry says (and `size`, when the plan knows it), or the cache
/// is damaged.
fn check_blob(path: &Path, found: &Blob, expected: &Blob, size: Option<u64>) -> Result<(), Error> {
    let detail = if found.size != expected.size || size.is_some_and(|size| found.size != size) {
        format!(
            "blob {} holds {} bytes, not {}",
            expected.digest, found.size, expected.size
        )
    } else if found.digest != expected.digest {
        format!("blob {} hashes to {}", expected.digest, found.digest)
    } else {
        return Ok(());
    };
    Err(Error::CacheCorrupt {
        path: path.to_path_buf(),
        detail,
    })
}

/// Counts the bytes written through it.
struct CountingWriter<W> {
    inner: W,
    size: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Copies a file in chunks, reporting each one to `tick` (progress and interrupts).
fn copy_counted(
    path: &Path,
    out: &mut impl Write,
    tick: &mut dyn FnMut(u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0; layer::CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
        tick(n as u64)?;
    }
}
