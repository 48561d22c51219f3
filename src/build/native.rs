//! The native builder: plan → content → layer → image → sinks, in one pass over the data.

use std::io::{Read, Write};
use std::path::Path;

use crate::build::staging;
use crate::digest::HashingWriter;
use crate::image::{self, LayerInfo};
use crate::layer::{self, TarOptions};
use crate::progress::Progress;
use crate::request::{BuildRequest, Built, Output};
use crate::sink::{self, Finished};
use crate::spec::human_size;
use crate::{interrupt, pipeline, plan, Error};

/// Where the layer bytes come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// Generated from the spec.
    Generate,
    /// The blobs of a cached OCI layout: copied (and hashed again, so a damaged cache
    /// cannot pass for a good image), never regenerated.
    Blobs {
        layout: &'a Path,
        layers: &'a [LayerInfo],
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
    let mut outputs = request.outputs.clone();
    outputs.extend(request.internal.clone());
    // A push reads an OCI layout: one is staged in a temporary directory, as the last sink.
    let staging = staging::staging(&request.outputs)?;
    outputs.extend(
        staging
            .as_ref()
            .map(|dir| Output::OciDir(staging::layout(dir))),
    );
    let mut sinks = sink::open(&outputs, request.engine, options)?;
    let layers = plan::layers(spec);
    let spec_hash = spec.hash();
    progress.stage(format!(
        "{} {} ({} layer{}, {}) for {}",
        match source {
            Source::Generate => "building",
            Source::Blobs { .. } => "exporting cached",
        },
        request.reference,
        layers.len(),
        if layers.len() == 1 { "" } else { "s" },
        human_size(spec.total_size()),
        request.platform
    ));
    if let Source::Generate = source {
        crate::speed::check(spec.total_size());
    }
    progress.start(spec.total_size());
    let mut infos = Vec::with_capacity(layers.len());
    for layer in &layers {
        let size = layer::tar_size(layer);
        for sink in sinks.iter_mut() {
            sink.begin_layer(layer.number, size)?;
        }
        // An interrupt surfaces as an I/O error here; `build` reports it as what it is.
        let mut tick = |n| {
            progress.inc(n);
            interrupt::check().map_err(|_| std::io::Error::other("interrupted"))
        };
        let blob = match source {
            Source::Generate => pipeline::write_layer(&mut sinks, |out| {
                let mut hashing = HashingWriter::new(out);
                layer::write_tar(layer, &spec_hash, options, &mut hashing, &mut tick)?;
                Ok(hashing.complete().0)
            })?
            .map_err(Error::io("generate", layer.dir()))?,
            Source::Blobs { layout, layers } => {
                let index = usize::try_from(layer.number - 1).unwrap_or(usize::MAX);
                let expected = layers.get(index).ok_or_else(|| Error::CacheCorrupt {
                    path: layout.to_path_buf(),
                    detail: format!("no layer {}", layer.number),
                })?;
                let path = layout.join(expected.blob().layout_path());
                let blob = pipeline::write_layer(&mut sinks, |out| {
                    let mut hashing = HashingWriter::new(out);
                    copy_counted(&path, &mut hashing, &mut tick)?;
                    Ok(hashing.complete().0)
                })?
                .map_err(Error::io("read", &path))?;
                if blob != expected.blob() || blob.size != size {
                    return Err(Error::CacheCorrupt {
                        path,
                        detail: format!("its content hashes to {}", blob.digest),
                    });
                }
                blob
            }
        };
        for sink in sinks.iter_mut() {
            sink.end_layer(&blob)?;
        }
        progress.stage(format!(
            "layer {}/{}: {} in {} file{} -> {}",
            layer.number,
            layers.len(),
            human_size(layer.spec.size),
            layer.spec.files,
            if layer.spec.files == 1 { "" } else { "s" },
            blob.digest
        ));
        infos.push(LayerInfo {
            diff_id: blob.digest.clone(),
            digest: blob.digest,
            size: blob.size,
            files: layer.spec.files,
            payload: layer.spec.size,
        });
    }
    progress.finish();
    interrupt::check()?;
    let metadata = image::metadata(spec, &request.platform, request.mtime, &infos)?;
    let finished = Finished {
        reference: &request.reference,
        platform: &request.platform,
        metadata: &metadata,
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
                committed.into_iter().rev().for_each(sink::Committed::undo);
                return Err(e);
            }
        }
    }
    let internal = request.internal.as_ref().map(ToString::to_string);
    for done in committed
        .iter()
        .filter(|c| Some(&c.description) != internal.as_ref())
    {
        progress.stage(format!(
            "wrote {} {} to {}",
            request.reference, metadata.manifest_blob.digest, done.description
        ));
    }
    Ok(Built {
        reference: request.reference.to_string(),
        spec: spec.canonical(),
        digest: metadata.manifest_blob.digest,
        config_digest: metadata.config_blob.digest,
        platform: request.platform.to_string(),
        layers: infos,
        outputs: request.outputs.iter().map(ToString::to_string).collect(),
        pushed,
    })
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
