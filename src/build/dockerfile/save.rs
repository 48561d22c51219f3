//! `oci:` and `oci-archive:` outputs of a dockerfile build: `<engine> save` writes a
//! docker-archive, whose layer tars and config stream through the same sinks as a native
//! build's. The engine's config is kept byte for byte, so the image ID stays the engine's.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

use super::run;
use crate::digest::HashingWriter;
use crate::engine::{Engine, EngineKind};
use crate::image::{self, LayerInfo, Metadata};
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::sink::{Committed, Finished, LayerStart, Sink};
use crate::source::archive::Members;
use crate::spec::Compression;
use crate::{interrupt, pipeline, Error};

/// docker's `manifest.json`: one entry per image in the archive.
#[derive(Debug, Deserialize)]
struct ArchiveManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Saves `image` (a reference or an image ID) from the engine into `dir/image.tar`; buildah
/// names it `reference` in the archive.
pub(crate) fn save(
    engine: &Engine,
    image: &str,
    reference: &Reference,
    dir: &Path,
    verbose: bool,
) -> Result<std::path::PathBuf, Error> {
    let archive = dir.join("image.tar");
    let (what, args): (String, Vec<OsString>) = match engine.kind {
        // buildah has no `save`: `push` to an archive is its way to write one.
        EngineKind::Buildah => (
            "buildah push".into(),
            vec![
                "push".into(),
                image.into(),
                format!("docker-archive:{}:{reference}", archive.display()).into(),
            ],
        ),
        kind => (
            format!("{kind} save"),
            vec![
                "save".into(),
                "-o".into(),
                archive.clone().into(),
                image.into(),
            ],
        ),
    };
    run::run(engine, &what, args, verbose)?;
    Ok(archive)
}

/// Streams the saved image's layers into `sinks`, writes its metadata and commits them all
/// (or none: one that fails takes the others back out).
pub(crate) fn export(
    archive_path: &Path,
    diff_ids: &[String],
    reference: &Reference,
    platform: &Platform,
    payloads: &[(u64, u64)],
    mut sinks: Vec<Box<dyn Sink>>,
    progress: &mut Progress,
) -> Result<(Metadata, Vec<LayerInfo>, Vec<Committed>), Error> {
    let mut file = File::open(archive_path).map_err(Error::io("open", archive_path))?;
    let Members {
        spans,
        top: manifest,
    } = Members::index(&mut file, "manifest.json").map_err(Error::io("read", archive_path))?;
    let unreadable = |detail: String| Error::EngineFailed {
        command: format!("read {}", archive_path.display()),
        detail,
    };
    let manifest = manifest.ok_or_else(|| unreadable("it has no manifest.json".into()))?;
    let manifest: Vec<ArchiveManifest> =
        serde_json::from_slice(&manifest).map_err(|e| unreadable(format!("manifest.json: {e}")))?;
    let manifest = manifest
        .into_iter()
        .next()
        .ok_or_else(|| unreadable("manifest.json lists no image".into()))?;
    let span = |path: &str| {
        spans
            .get(path)
            .copied()
            .ok_or_else(|| unreadable(format!("`{path}` is missing")))
    };
    let config = Members::read(&mut file, span(&manifest.config)?)
        .map_err(Error::io("read", archive_path))?;
    if manifest.layers.len() != diff_ids.len() {
        return Err(unreadable(format!(
            "it has {} layers, the built image {}",
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    let mut infos = Vec::with_capacity(diff_ids.len());
    progress.start(
        manifest
            .layers
            .iter()
            .filter_map(|l| spans.get(l))
            .map(|s| s.size)
            .sum(),
    );
    for (i, (path, diff_id)) in manifest.layers.iter().zip(diff_ids).enumerate() {
        let span = span(path)?;
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        for sink in sinks.iter_mut() {
            sink.begin_layer(&LayerStart {
                set: 0,
                number,
                tar_size: Some(span.size),
                blob_size: Some(span.size),
                compression: Compression::None,
            })?;
        }
        file.seek(SeekFrom::Start(span.offset))
            .map_err(Error::io("read", archive_path))?;
        let mut layer = (&mut file).take(span.size);
        let blob = pipeline::write_layer(&mut sinks, |out| {
            let mut hashing = HashingWriter::new(out);
            copy(&mut layer, &mut hashing, progress)?;
            Ok(hashing.complete().0)
        })?
        .map_err(Error::io("read", archive_path))?;
        // A compressed layer (as containerd-based engines may save) is not the tar the
        // config names; an OCI layout of it would be invalid.
        if blob.digest != *diff_id {
            return Err(unreadable(format!(
                "layer `{path}` has digest {} but the image's diff_id is {diff_id}",
                blob.digest
            )));
        }
        for sink in sinks.iter_mut() {
            sink.end_layer(&blob)?;
        }
        let (files, payload) = payloads.get(i).copied().unwrap_or_default();
        infos.push(LayerInfo {
            digest: blob.digest.clone(),
            diff_id: blob.digest,
            size: blob.size,
            files,
            payload,
            media_type: image::plain_tar(),
        });
    }
    progress.finish();
    interrupt::check()?;
    // The dockerfile builder refuses annotations (`check`): none to add.
    let metadata = image::with_config(config, &infos, &Default::default())?;
    let set = image::ImageSet::new(vec![image::PlatformMetadata {
        platform: platform.clone(),
        metadata: metadata.clone(),
        set: 0,
    }])?;
    let finished = Finished {
        reference,
        set: &set,
    };
    for sink in sinks.iter_mut() {
        sink.finish(&finished)?;
    }
    let mut committed = Vec::with_capacity(sinks.len());
    for sink in sinks {
        match interrupt::check().and_then(|()| sink.commit()) {
            Ok(done) => committed.push(done),
            Err(e) => {
                crate::sink::undo_all(committed, progress);
                return Err(e);
            }
        }
    }
    Ok((metadata, infos, committed))
}

fn copy(from: &mut impl Read, to: &mut impl io::Write, progress: &Progress) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
        progress.inc(n as u64);
        interrupt::check().map_err(|_| io::Error::other("interrupted"))?;
    }
}
