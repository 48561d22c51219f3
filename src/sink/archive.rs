//! `oci-archive:FILE`: one tar holding an OCI layout plus docker's `manifest.json`, so that
//! both `skopeo … oci-archive:` and `docker load` (20.10 and later) accept it.
//!
//! A layer's digest is known only after its bytes are written, yet its tar header comes
//! first: the header goes out under a placeholder name and is rewritten in place once the
//! digest is known. The header's size never changes, so nothing else moves.

use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tar::EntryType;
use tempfile::NamedTempFile;

use super::{parent_dir, taken, temp_prefix, Committed, Finished, LayerStart, Parents, Sink};
use crate::digest::Blob;
use crate::image::{self, OCI_LAYOUT};
use crate::layer::{header, TarOptions, TarWriter};
use crate::request::Output;
use crate::Error;

/// The archive's metadata files, to follow the layer blobs: configs, manifests and the
/// index, `index.json`, and docker's `manifest.json`, which names one image: the set's
/// image number `docker`, whose layers are at `layer_paths`.
pub(crate) fn metadata_files(
    image: &Finished<'_>,
    docker: usize,
    layer_paths: &[String],
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut files: Vec<(String, Vec<u8>)> = image
        .set
        .blobs()
        .into_iter()
        .map(|(blob, bytes)| (blob.layout_path(), bytes.to_vec()))
        .collect();
    files.push((
        "index.json".to_owned(),
        image.set.layout_index(image.reference)?,
    ));
    if let Some(chosen) = image.set.images.get(docker) {
        let config_path = chosen.metadata.config_blob.layout_path();
        let manifest = image::docker_manifest(&config_path, image.reference, layer_paths)?;
        files.push(("manifest.json".to_owned(), manifest));
    }
    Ok(files)
}

/// Whether `dest` can take the archive; returns the directory its temporary sibling goes in.
pub(crate) fn check(dest: &Path, output: &Output) -> Result<PathBuf, Error> {
    if dest.exists() && !dest.is_file() {
        return Err(taken(dest, EXPECTED));
    }
    parent_dir(dest, output)
}

pub(crate) struct OciArchive {
    dest: PathBuf,
    output: String,
    temp_path: PathBuf,
    tar: TarWriter<BufWriter<NamedTempFile>>,
    /// Where the current layer's header is, and the size it announced, if it knew it.
    header_at: u64,
    announced: Option<u64>,
    /// Docker's `manifest.json` names the first image: the paths of the first layer set.
    layer_paths: Vec<String>,
    /// The set of the layer being written.
    set: usize,
    /// Last, so that the temporary file goes before the directories made for it.
    parents: Parents,
}

impl OciArchive {
    pub fn create(dest: &Path, output: &Output, options: TarOptions) -> Result<Self, Error> {
        let parent = check(dest, output)?;
        let parents = Parents::create(&parent)?;
        let file = tempfile::Builder::new()
            .prefix(&temp_prefix(dest))
            .suffix(".partial")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(&parent)
            .map_err(Error::io("create a temporary file in", &parent))?;
        let temp_path = file.path().to_path_buf();
        let mut sink = Self {
            dest: dest.to_path_buf(),
            output: output.to_string(),
            temp_path,
            tar: TarWriter::new(BufWriter::with_capacity(64 * 1024, file), options),
            header_at: 0,
            announced: None,
            layer_paths: Vec::new(),
            set: 0,
            parents,
        };
        sink.io(|t| {
            t.dir("blobs/")?;
            t.dir("blobs/sha256/")?;
            t.file("oci-layout", OCI_LAYOUT)
        })?;
        Ok(sink)
    }

    fn io(
        &mut self,
        f: impl FnOnce(&mut TarWriter<BufWriter<NamedTempFile>>) -> io::Result<()>,
    ) -> Result<(), Error> {
        f(&mut self.tar).map_err(Error::io("write", &self.temp_path))
    }
}

/// Same length as the real name, so the rewritten header is the same size.
fn placeholder() -> String {
    format!("blobs/sha256/{}", "0".repeat(64))
}

impl Sink for OciArchive {
    fn begin_layer(&mut self, layer: &LayerStart) -> Result<(), Error> {
        self.header_at = self
            .tar
            .out
            .stream_position()
            .map_err(Error::io("seek in", &self.temp_path))?;
        self.announced = layer.blob_size;
        self.set = layer.set;
        // A compressed blob's size is known only at its end: the header says 0 until then.
        self.io(|t| t.begin_file(&placeholder(), layer.blob_size.unwrap_or(0)))
    }

    fn write_layer(&mut self, data: &[u8]) -> Result<(), Error> {
        self.io(|t| t.data(data))
    }

    fn end_layer(&mut self, blob: &Blob) -> Result<(), Error> {
        let at = self.header_at;
        let path = blob.layout_path();
        if self.announced.is_some_and(|size| size != blob.size) {
            // A tar of the wrong size would corrupt every later entry.
            return Err(Error::io("write", &self.temp_path)(io::Error::other(
                format!(
                    "layer of {} bytes announced as {}",
                    blob.size,
                    self.announced.unwrap_or_default()
                ),
            )));
        }
        self.io(|t| {
            t.end_file_of(blob.size)?;
            let end = t.out.stream_position()?;
            let h = header(&path, blob.size, EntryType::Regular, t.options)?;
            t.out.seek(SeekFrom::Start(at))?;
            t.out.write_all(h.as_bytes())?;
            t.out.seek(SeekFrom::Start(end))?;
            Ok(())
        })?;
        if self.set == 0 {
            self.layer_paths.push(path);
        }
        Ok(())
    }

    fn finish(&mut self, image: &Finished<'_>) -> Result<(), Error> {
        let files = metadata_files(image, 0, &self.layer_paths)?;
        self.io(|t| t.finish_with(&files))
    }

    fn commit(self: Box<Self>) -> Result<Committed, Error> {
        let Self {
            dest,
            output,
            temp_path,
            tar,
            parents,
            ..
        } = *self;
        let file = tar
            .out
            .into_inner()
            .map_err(|e| Error::io("write", &temp_path)(e.into_error()))?;
        if dest.exists() && !dest.is_file() {
            return Err(taken(&dest, EXPECTED));
        }
        let (file, guard) = file.into_parts();
        drop(file);
        let staged = guard.to_path_buf();
        Committed::place(&staged, &dest, output, Box::new((guard, parents)))
    }
}

const EXPECTED: &str = "a regular file";
