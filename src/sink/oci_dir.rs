//! `oci:DIR`: an OCI image layout, built in a hidden sibling directory and renamed into place.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::{parent_dir, taken, temp_prefix, Committed, Finished, Sink};
use crate::digest::Blob;
use crate::image::{self, OCI_LAYOUT};
use crate::request::Output;
use crate::Error;

pub(crate) struct OciDir {
    dest: PathBuf,
    output: String,
    temp: TempDir,
    layer: Option<(File, PathBuf)>,
}

impl OciDir {
    pub fn create(dest: &Path, output: &Output) -> Result<Self, Error> {
        // Replacing a previous layout is fine; clobbering anything else is not.
        if dest.exists() && !is_layout_or_empty(dest) {
            return Err(taken(dest, EXPECTED));
        }
        let parent = parent_dir(dest, output)?;
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
        })
    }

    fn write_file(&self, relative: &str, bytes: &[u8]) -> Result<(), Error> {
        let path = self.temp.path().join(relative);
        fs::write(&path, bytes).map_err(Error::io("write", path))
    }
}

impl Sink for OciDir {
    fn begin_layer(&mut self, number: u32, _size: u64) -> Result<(), Error> {
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
        if let Some((_, partial)) = self.layer.take() {
            let path = self.temp.path().join(blob.layout_path());
            fs::rename(&partial, &path).map_err(Error::io("rename", partial))?;
        }
        Ok(())
    }

    fn finish(&mut self, image: &Finished<'_>) -> Result<(), Error> {
        let meta = image.metadata;
        self.write_file(&meta.config_blob.layout_path(), &meta.config)?;
        self.write_file(&meta.manifest_blob.layout_path(), &meta.manifest)?;
        let index = image::index(&meta.manifest_blob, image.reference, image.platform)?;
        self.write_file("index.json", &index)?;
        self.write_file("oci-layout", OCI_LAYOUT)
    }

    fn commit(self: Box<Self>) -> Result<Committed, Error> {
        let Self {
            dest, output, temp, ..
        } = *self;
        // Checked again: a build can be long, and the destination may have changed meanwhile.
        if dest.exists() && !is_layout_or_empty(&dest) {
            return Err(taken(&dest, EXPECTED));
        }
        let staged = temp.path().to_path_buf();
        Committed::place(&staged, &dest, output, Box::new(temp))
    }
}

const EXPECTED: &str = "an OCI image layout or an empty directory";

fn is_layout_or_empty(path: &Path) -> bool {
    path.is_dir()
        && (path.join("oci-layout").is_file()
            || fs::read_dir(path)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false))
}
