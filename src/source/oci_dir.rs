//! `oci:DIR[:TAG]`: blobs are files under `blobs/sha256/`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{layout, Blobs, Descriptor, OpenError, SourceError};

#[derive(Debug)]
pub(crate) struct OciDir {
    dir: PathBuf,
    top: Descriptor,
}

impl OciDir {
    pub fn open(dir: &Path, tag: Option<&str>) -> Result<Self, SourceError> {
        let name = format!("oci:{}", dir.display());
        let index = std::fs::read(dir.join("index.json")).map_err(|e| SourceError::Missing {
            name: name.clone(),
            detail: format!("{}: {e}", dir.join("index.json").display()),
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            top: layout::choose(&name, &index, tag)?,
        })
    }
}

impl Blobs for OciDir {
    fn top(&self) -> &Descriptor {
        &self.top
    }

    fn open(&mut self, descriptor: &Descriptor) -> Result<Box<dyn Read + '_>, OpenError> {
        let path = self.dir.join("blobs/sha256").join(descriptor.hex());
        match File::open(&path) {
            Ok(file) => Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, file))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(OpenError::Missing(format!(
                "`{}` does not exist",
                path.display()
            ))),
            Err(e) => Err(OpenError::Other(crate::Error::Io {
                action: "read",
                path,
                source: e,
            })),
        }
    }
}
