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
    members: Members,
    top: Descriptor,
}

/// Where a member's bytes are in the archive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub offset: u64,
    pub size: u64,
}

/// The regular files of a tar of files (an OCI layout's, or `docker save`'s), by path
/// without `./`, and the bytes of the one member read on the way (its `index.json` or
/// `manifest.json`): the one pass that finds where everything is, seeking past the data.
#[derive(Debug, Default)]
pub(crate) struct Members {
    pub spans: HashMap<String, Span>,
    pub top: Option<Vec<u8>>,
}

impl Members {
    pub fn index(file: impl Read + Seek, top: &str) -> std::io::Result<Self> {
        let mut members = Self::default();
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries_with_seek()? {
            let mut entry = entry?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = String::from_utf8_lossy(&entry.path_bytes())
                .trim_start_matches("./")
                .to_owned();
            if path == top {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                members.top = Some(bytes);
            }
            let span = Span {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            members.spans.insert(path, span);
        }
        Ok(members)
    }

    /// The bytes of `span`, read from `file`, the archive indexed.
    #[cfg_attr(not(feature = "engine"), allow(dead_code))]
    pub fn read(file: &mut File, span: Span) -> std::io::Result<Vec<u8>> {
        file.seek(SeekFrom::Start(span.offset))?;
        let mut bytes = Vec::new();
        file.take(span.size).read_to_end(&mut bytes)?;
        Ok(bytes)
    }
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
        let mut members =
            Members::index(file, "index.json").map_err(|e| unreadable(e.to_string()))?;
        let index = members
            .top
            .take()
            .ok_or_else(|| unreadable("the archive holds no `index.json`".into()))?;
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
        let Some(&Span { offset, size }) = self.members.spans.get(&member) else {
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
