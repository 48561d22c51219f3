//! `engine`: the image streams into `docker load` (or `podman load`) through a pipe, with
//! no copy on disk.
//!
//! Blob names in a stream cannot wait for digests, so this is a docker-archive (layers under
//! `layers/N.tar`, found through `manifest.json`), which every engine's `load` accepts.
//! Compressed layers are decompressed on the way: a tar entry's size comes before its bytes,
//! and only the uncompressed size is known then. The engine stores layers uncompressed
//! anyway, and the image it holds is the same (its ID is the config's digest). A base's
//! compressed layer, whose uncompressed size nothing says beforehand, is decompressed into
//! an unnamed temporary file first, which the system removes however the build ends.

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
    /// The current layer decompressed so far, when its size is known only at its end.
    spool: Option<std::fs::File>,
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
            spool: None,
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
        let spooled = match layer.tar_size {
            Some(size) => {
                self.io(|t| t.begin_file(&path, size))?;
                false
            }
            None => true,
        };
        self.layer_paths.push(path);
        if layer.compression == Compression::None {
            return Ok(());
        }
        if layer.compression == Compression::Zstd && !self.noted {
            self.noted = true;
            self.note = self.zstd_note();
        }
        let decoder = if spooled {
            tempfile::tempfile().and_then(|file| {
                let into = file.try_clone()?;
                self.spool = Some(file);
                decoder(layer.compression, into)
            })
        } else {
            match &self.tar {
                Some(tar) => tar
                    .out
                    .try_clone()
                    .and_then(|into| decoder(layer.compression, into)),
                None => Err(std::io::Error::other("the engine stream is closed")),
            }
        };
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
        if let Some(mut file) = self.spool.take() {
            let path = self.layer_paths.last().cloned().unwrap_or_default();
            return self.io(|t| {
                use std::io::{Seek, SeekFrom};
                let size = file.seek(SeekFrom::End(0))?;
                file.seek(SeekFrom::Start(0))?;
                t.begin_file(&path, size)?;
                std::io::copy(&mut file, &mut t.out)?;
                t.end_file()
            });
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

impl<W: Write + Send> Decode for flate2::write::GzDecoder<W> {
    fn finish(self: Box<Self>) -> std::io::Result<()> {
        (*self).finish().map(drop)
    }
}

impl<W: Write + Send> Decode for zstd::stream::write::Decoder<'static, W> {
    fn finish(mut self: Box<Self>) -> std::io::Result<()> {
        self.flush()
    }
}

fn decoder<W: Write + Send + 'static>(
    compression: Compression,
    into: W,
) -> std::io::Result<Box<dyn Decode>> {
    Ok(match compression {
        Compression::Zstd => Box::new(zstd::stream::write::Decoder::new(into)?),
        _ => Box::new(flate2::write::GzDecoder::new(into)),
    })
}
