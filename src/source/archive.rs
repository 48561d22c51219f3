//! `oci-archive:FILE[:TAG]`: a tar of an OCI layout. One pass over its headers finds where
//! each blob's bytes are; a blob is then read in place, never extracted.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{layout, Blobs, Descriptor, OpenError, SourceError};
use crate::Error;

#[derive(Debug)]
pub(crate) struct Archive {
    path: PathBuf,
    /// Path inside the archive → (offset of its data, size).
    members: HashMap<String, (u64, u64)>,
    top: Descriptor,
}

impl Archive {
    pub fn open(path: &Path, tag: Option<&str>) -> Result<Self, Error> {
        let name = format!("oci-archive:{}", path.display());
        let file = File::open(path).map_err(|e| SourceError::Missing {
            name: name.clone(),
            detail: e.to_string(),
        })?;
        let unreadable = |detail: String| SourceError::Unreadable {
            name: name.clone(),
            detail,
        };
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let mut index = None;
        // Seeking past each member's data: the layers are never read here.
        for entry in archive
            .entries_with_seek()
            .map_err(|e| unreadable(e.to_string()))?
        {
            let mut entry = entry.map_err(|e| unreadable(e.to_string()))?;
            let member = String::from_utf8_lossy(&entry.path_bytes())
                .trim_start_matches("./")
                .to_owned();
            if member == "index.json" {
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| unreadable(e.to_string()))?;
                index = Some(bytes);
            }
            members.insert(member, (entry.raw_file_position(), entry.size()));
        }
        let index = index.ok_or_else(|| unreadable("the archive holds no `index.json`".into()))?;
        let top = layout::choose(&name, &index, tag)?;
        Ok(Self {
            path: path.to_path_buf(),
            members,
            top,
        })
    }
}

impl Blobs for Archive {
    fn top(&self) -> &Descriptor {
        &self.top
    }

    fn open(&mut self, descriptor: &Descriptor) -> Result<Box<dyn Read + '_>, OpenError> {
        let member = format!("blobs/sha256/{}", descriptor.hex());
        let Some(&(offset, size)) = self.members.get(&member) else {
            return Err(OpenError::Missing(format!(
                "the archive holds no `{member}`"
            )));
        };
        let mut file = File::open(&self.path).map_err(Error::io("read", &self.path))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(Error::io("read", &self.path))?;
        Ok(Box::new(
            std::io::BufReader::with_capacity(1 << 20, file).take(size),
        ))
    }
}
