//! `engine`: the image streams into `docker load` (or `podman load`) through a pipe, with
//! no copy on disk.
//!
//! Blob names in a stream cannot wait for digests, so this is a docker-archive (layers under
//! `layers/N.tar`, found through `manifest.json`), which every engine's `load` accepts.
//! Compressed layers are decompressed on the way: a tar entry's size comes before its bytes,
//! and only the uncompressed size is known then. The engine stores layers uncompressed
//! anyway, and the image it holds is the same (its ID is the config's digest).

use std::io::Write;

use super::archive::metadata_files;
use super::{Committed, Finished, LayerStart, Platforms, Sink};
use crate::digest::Blob;
use crate::engine::{last_line, Engine};
use crate::layer::{TarOptions, TarWriter};
use crate::platform::Platform;
use crate::spec::Compression;
use crate::Error;

pub(crate) struct EngineLoad {
    engine: Engine,
    tar: Option<TarWriter<os_pipe::PipeWriter>>,
    /// Decompresses the current layer into the stream, when it is compressed.
    decoder: Option<Box<dyn Decode>>,
    /// Said once: the engine could not have read the layers as they are.
    note: Option<String>,
    noted: bool,
    child: Option<duct::Handle>,
    layer_paths: Vec<String>,
    /// Of a multi-platform image, the engine's own platform's: its number in the set and the
    /// layer set it uses. Other sets' layers pass by.
    image: usize,
    set: usize,
    /// Whether the layer streaming past is skipped.
    skipping: bool,
}

impl EngineLoad {
    pub fn start(
        engine: Engine,
        options: TarOptions,
        platforms: &Platforms,
    ) -> Result<Self, Error> {
        let (image, set) = match platforms.list.as_slice() {
            [_] => (0, 0),
            list => {
                let own = engine.platform()?;
                let image = choose(list, &own).ok_or_else(|| Error::EnginePlatform {
                    engine: engine.kind.name(),
                    platform: own.to_string(),
                    platforms: Platform::join(&platforms.list),
                })?;
                (image, if platforms.shared { 0 } else { image })
            }
        };
        let (reader, writer) =
            os_pipe::pipe().map_err(Error::io("create a pipe to", &engine.program))?;
        let child = engine
            .cmd(["load"])
            .stdin_file(reader)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .start()
            .map_err(Error::io("run", &engine.program))?;
        Ok(Self {
            engine,
            tar: Some(TarWriter::new(writer, options)),
            decoder: None,
            note: None,
            noted: false,
            child: Some(child),
            layer_paths: Vec::new(),
            image,
            set,
            skipping: false,
        })
    }

    /// Docker before 23 has no zstd decompressor: it would fail on such a layer with a bare
    /// "unexpected EOF" or "invalid tar header". Layers reach the engine decompressed, so the
    /// load works; this says why it differs from what `docker load -i` would do.
    fn zstd_note(&self) -> Option<String> {
        if self.engine.kind != crate::EngineKind::Docker {
            return None;
        }
        let args = ["version", "--format", "{{.Server.Version}}"];
        let version = self.engine.stdout(&args, "docker version".into()).ok()?;
        let version = String::from_utf8_lossy(&version).trim().to_owned();
        let major: u32 = version.split('.').next()?.parse().ok()?;
        (major < 23).then(|| {
            format!(
                "note: docker {version} cannot read zstd layers (`docker load -i` of this image's oci-archive fails there); they are loaded decompressed, as the same image"
            )
        })
    }

    fn command(&self) -> String {
        format!("{} load", self.engine.kind)
    }

    /// A write failed: the engine has most likely exited, and its stderr says why.
    fn failed(&mut self, e: std::io::Error) -> Error {
        self.tar = None;
        let detail = match self
            .child
            .take()
            .map(|c| c.wait().map(|o| last_line(&o.stderr)))
        {
            Some(Ok(line)) if line != "no output" => line,
            _ => e.to_string(),
        };
        Error::EngineFailed {
            command: self.command(),
            detail,
        }
    }

    fn io(
        &mut self,
        f: impl FnOnce(&mut TarWriter<os_pipe::PipeWriter>) -> std::io::Result<()>,
    ) -> Result<(), Error> {
        let result = match self.tar.as_mut() {
            Some(tar) => f(tar),
            None => Err(std::io::Error::other("the engine stream is closed")),
        };
        result.map_err(|e| self.failed(e))
    }
}

impl Sink for EngineLoad {
    fn begin_layer(&mut self, layer: &LayerStart) -> Result<(), Error> {
        self.skipping = layer.set != self.set;
        if self.skipping {
            return Ok(());
        }
        let path = format!("layers/{}.tar", layer.number);
        self.io(|t| t.begin_file(&path, layer.tar_size))?;
        self.layer_paths.push(path);
        let into = match (&self.tar, layer.compression) {
            (_, Compression::None) => return Ok(()),
            (Some(tar), _) => tar.out.try_clone(),
            (None, _) => Err(std::io::Error::other("the engine stream is closed")),
        };
        if layer.compression == Compression::Zstd && !self.noted {
            self.noted = true;
            self.note = self.zstd_note();
        }
        let decoder = into.and_then(|into| decoder(layer.compression, into));
        self.decoder = Some(decoder.map_err(|e| self.failed(e))?);
        Ok(())
    }

    fn write_layer(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.skipping {
            return Ok(());
        }
        match self.decoder.as_mut() {
            Some(decoder) => match decoder.write_all(data) {
                Ok(()) => Ok(()),
                Err(e) => Err(self.failed(e)),
            },
            None => self.io(|t| t.data(data)),
        }
    }

    fn take_note(&mut self) -> Option<String> {
        self.note.take()
    }

    fn end_layer(&mut self, _blob: &Blob) -> Result<(), Error> {
        if self.skipping {
            return Ok(());
        }
        if let Some(decoder) = self.decoder.take() {
            decoder.finish().map_err(|e| self.failed(e))?;
        }
        self.io(|t| t.end_file())
    }

    fn finish(&mut self, image: &Finished<'_>) -> Result<(), Error> {
        let files = metadata_files(image, self.image, &self.layer_paths)?;
        self.io(|t| t.finish_with(&files))
    }

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        // Closing the pipe tells the engine the archive is complete.
        if let Some(mut tar) = self.tar.take() {
            tar.out.flush().map_err(|e| self.failed(e))?;
        }
        let child = self.child.take();
        let out = match child {
            Some(child) => child
                .wait()
                .map_err(Error::io("wait for", &self.engine.program))?
                .clone(),
            None => return Err(self.failed(std::io::Error::other("the engine exited"))),
        };
        if !out.status.success() {
            return Err(Error::EngineFailed {
                command: self.command(),
                detail: last_line(&out.stderr),
            });
        }
        // `Loaded image: NAME` names what the engine now holds.
        Ok(Committed {
            description: format!("{} ({})", self.engine.kind, last_line(&out.stdout)),
            placed: None,
        })
    }
}

impl Drop for EngineLoad {
    fn drop(&mut self) {
        // An unfinished archive must not become an image: stop the engine before it reads
        // the end of a truncated stream.
        if let Some(child) = self.child.take() {
            let _ = child.kill();
        }
    }
}

/// The image of `list` an engine on `own` runs: its exact platform, else the same OS and
/// architecture (an engine on arm may not say its variant).
fn choose(list: &[Platform], own: &Platform) -> Option<usize> {
    list.iter().position(|p| p == own).or_else(|| {
        list.iter()
            .position(|p| p.os == own.os && p.architecture == own.architecture)
    })
}

/// A writer that decompresses into the engine's stream.
trait Decode: Write + Send {
    /// Writes what is still buffered; an incomplete stream is an error.
    fn finish(self: Box<Self>) -> std::io::Result<()>;
}

impl Decode for flate2::write::GzDecoder<os_pipe::PipeWriter> {
    fn finish(self: Box<Self>) -> std::io::Result<()> {
        (*self).finish().map(drop)
    }
}

impl Decode for zstd::stream::write::Decoder<'static, os_pipe::PipeWriter> {
    fn finish(mut self: Box<Self>) -> std::io::Result<()> {
        self.flush()
    }
}

fn decoder(
    compression: Compression,
    into: os_pipe::PipeWriter,
) -> std::io::Result<Box<dyn Decode>> {
    Ok(match compression {
        Compression::Zstd => Box::new(zstd::stream::write::Decoder::new(into)?),
        _ => Box::new(flate2::write::GzDecoder::new(into)),
    })
}
