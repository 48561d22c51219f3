//! `oci:DIR`: an OCI image layout, built in a hidden sibling directory and renamed into place.
//! Its blobs are either written from the stream, or linked from a layout that has them (the
//! cache's entry, or the cache's new entry as each of its blobs is complete).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::link::Linker;
use super::{parent_dir, taken, temp_prefix, Committed, Finished, LayerStart, Parents, Sink};
use crate::digest::Blob;
use crate::image::OCI_LAYOUT;
use crate::request::Output;
use crate::Error;

/// Whether `dest` can take the layout; returns the directory its temporary sibling goes in.
pub(crate) fn check(dest: &Path, output: &Output) -> Result<PathBuf, Error> {
    // Replacing a previous layout is fine; clobbering anything else is not.
    if dest.exists() && !is_layout_or_empty(dest) {
        return Err(taken(dest, EXPECTED));
    }
    parent_dir(dest, output)
}

pub(crate) struct OciDir {
    dest: PathBuf,
    output: String,
    temp: TempDir,
    layer: Option<(File, PathBuf)>,
    /// Where the blobs come from instead of the stream.
    link: Option<Linker>,
    /// Last, so that the temporary directory goes before the directories made for it.
    parents: Parents,
}

impl OciDir {
    pub fn create(dest: &Path, output: &Output) -> Result<Self, Error> {
        let parent = check(dest, output)?;
        let parents = Parents::create(&parent)?;
        // Created with the mode a plain `mkdir` would give, as it becomes the destination.
        let temp = tempfile::Builder::new()
            .prefix(&temp_prefix(dest))
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .tempdir_in(&parent)
            .map_err(Error::io("create a temporary directory in", &parent))?;
        let blobs = temp.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(Error::io("create", &blobs))?;
        Ok(Self {
            dest: dest.to_path_buf(),
            output: output.to_string(),
            temp,
            layer: None,
            link: None,
            parents,
        })
    }

    /// A layout whose blobs are linked from the layout `linker` reads, not written.
    pub fn linked(dest: &Path, output: &Output, linker: Linker) -> Result<Self, Error> {
        let mut sink = Self::create(dest, output)?;
        sink.link = Some(linker);
        Ok(sink)
    }

    /// Puts the blob `blob` in place from the linked layout.
    fn link_blob(&mut self, blob: &Blob) -> Result<(), Error> {
        let relative = blob.layout_path();
        let to = self.temp.path().join(&relative);
        if let Some(linker) = &mut self.link {
            linker.link(&relative, &to).map_err(Error::io("link", to))?;
        }
        Ok(())
    }

    fn write_file(&self, relative: &str, bytes: &[u8]) -> Result<(), Error> {
        let path = self.temp.path().join(relative);
        fs::write(&path, bytes).map_err(Error::io("write", path))
    }
}

impl Sink for OciDir {
    fn begin_layer(&mut self, layer: &LayerStart) -> Result<(), Error> {
        let number = layer.number;
        if self.link.is_some() {
            return Ok(());
        }
        let path = self
            .temp
            .path()
            .join(format!("blobs/sha256/.layer{number}.partial"));
        let file = File::create(&path).map_err(Error::io("create", &path))?;
        self.layer = Some((file, path));
        Ok(())
    }

    fn write_layer(&mut self, data: &[u8]) -> Result<(), Error> {
        if let Some((file, path)) = &mut self.layer {
            file.write_all(data)
                .map_err(Error::io("write", path.as_path()))?;
        }
        Ok(())
    }

    fn end_layer(&mut self, blob: &Blob) -> Result<(), Error> {
        if self.link.is_some() {
            return self.link_blob(blob);
        }
        if let Some((_, partial)) = self.layer.take() {
            let path = self.temp.path().join(blob.layout_path());
            fs::rename(&partial, &path).map_err(Error::io("rename", partial))?;
        }
        Ok(())
    }

    fn finish(&mut self, image: &Finished<'_>) -> Result<(), Error> {
        for (blob, bytes) in image.set.blobs() {
            if self.link.is_some() {
                self.link_blob(blob)?;
            } else {
                self.write_file(&blob.layout_path(), bytes)?;
            }
        }
        // Written fresh: they name this output's image, not the cache's.
        let index = image.set.layout_index(image.reference)?;
        self.write_file("index.json", &index)?;
        self.write_file("oci-layout", OCI_LAYOUT)
    }

    fn wants_data(&self) -> bool {
        self.link.is_none()
    }

    fn staged_layout(&self) -> Option<&Path> {
        Some(self.temp.path())
    }

    fn take_note(&mut self) -> Option<String> {
        self.link.as_mut().and_then(Linker::take_note)
    }

    fn commit(self: Box<Self>) -> Result<Committed, Error> {
        let Self {
            dest,
            output,
            temp,
            parents,
            ..
        } = *self;
        // Checked again: a build can be long, and the destination may have changed meanwhile.
        if dest.exists() && !is_layout_or_empty(&dest) {
            return Err(taken(&dest, EXPECTED));
        }
        let staged = temp.path().to_path_buf();
        if dest.join("index.json").is_file() {
            add_to_layout(&dest, &staged)?;
        }
        Committed::place(&staged, &dest, output, Box::new((temp, parents)))
    }
}

/// Makes the layout staged at `staged` the layout at `dest` plus the new image: the index
/// keeps the images `dest` has under other tags, and `dest`'s blobs are linked in (or copied
/// where links cannot be made), so that the rename replaces the layout with a superset of it.
fn add_to_layout(dest: &Path, staged: &Path) -> Result<(), Error> {
    let old_index = dest.join("index.json");
    let existing = fs::read(&old_index).map_err(Error::io("read", &old_index))?;
    let new_index = staged.join("index.json");
    let fresh = fs::read(&new_index).map_err(Error::io("read", &new_index))?;
    let merged = crate::image::merge_layout_index(&existing, &fresh).map_err(|e| {
        Error::io("read", &old_index)(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an OCI image index: {e}"),
        ))
    })?;
    let blobs = dest.join("blobs/sha256");
    let list = match fs::read_dir(&blobs) {
        Ok(list) => list,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fs::write(&new_index, merged).map_err(Error::io("write", new_index));
        }
        Err(e) => return Err(Error::io("read", &blobs)(e)),
    };
    for entry in list {
        let entry = entry.map_err(Error::io("read", &blobs))?;
        let name = entry.file_name();
        // Leftovers of another writer's partial blobs are not blobs.
        if name.to_string_lossy().starts_with('.') || !entry.path().is_file() {
            continue;
        }
        let to = staged.join("blobs/sha256").join(&name);
        if to.exists() {
            continue;
        }
        let from = entry.path();
        fs::hard_link(&from, &to)
            .or_else(|_| reflink_copy::reflink_or_copy(&from, &to).map(drop))
            .map_err(Error::io("link", &from))?;
    }
    fs::write(&new_index, merged).map_err(Error::io("write", new_index))
}

const EXPECTED: &str = "an OCI image layout or an empty directory";

fn is_layout_or_empty(path: &Path) -> bool {
    path.is_dir()
        && (path.join("oci-layout").is_file()
            || fs::read_dir(path)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false))
}
