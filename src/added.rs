//! `--add SRC:DEST`: a host file or directory as a layer of its own, above the spec's.
//!
//! Its metadata is stable (mtime of the build, uid/gid 0, the file's permission bits), so
//! that its digest follows the bytes and names alone. The files are read once, when the
//! request is made, and held: what the build writes is what was hashed for the cache key,
//! whatever happens to the host files meanwhile.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::entry::{Entry, FilePlan};

/// One `--add`: the host path, where it goes, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    source: PathBuf,
    dest: String,
    entries: Arc<Vec<(Entry, Arc<[u8]>)>>,
    hash: [u8; 32],
}

/// Why an `--add` cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// Not `SRC:DEST` with an absolute DEST.
    #[error("`{0}` is not `SRC:DEST` with an absolute DEST")]
    Form(String),
    /// DEST names `/` itself, or has `.`, `..` or empty components.
    #[error("`{0}` is not a path an image can hold a file at")]
    Dest(String),
    /// SRC cannot be read.
    #[error("cannot read `{path}` for --add: {source}")]
    Read {
        /// The host path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SRC is, or holds, something other than a file, directory or symbolic link.
    #[error("`{0}` is neither a file, a directory nor a symbolic link: --add takes those")]
    Kind(PathBuf),
    /// A name that is not UTF-8, which the image's JSON cannot spell.
    #[error("`{0}` has a name that is not UTF-8")]
    Name(PathBuf),
}

impl AddError {
    /// What to do instead.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Form(_) | Self::Dest(_) => Some(
                "give the host path and where it goes in the image, e.g. `--add target/release/app:/usr/bin/app`",
            ),
            _ => None,
        }
    }
}

impl Added {
    /// Parses `SRC:DEST` and reads SRC. DEST is split at the last `:/`, so that SRC may hold
    /// a colon.
    pub fn parse(text: &str) -> Result<Self, AddError> {
        let (source, dest) = text
            .rfind(":/")
            .map(|i| (&text[..i], &text[i + 1..]))
            .filter(|(source, _)| !source.is_empty())
            .ok_or_else(|| AddError::Form(text.to_owned()))?;
        Self::new(Path::new(source), dest)
    }

    /// SRC read, to go at `dest` (absolute) in the image.
    pub fn new(source: &Path, dest: &str) -> Result<Self, AddError> {
        let inner = dest.trim_start_matches('/').trim_end_matches('/');
        let bad = inner.is_empty()
            || !dest.starts_with('/')
            || inner
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..");
        if bad {
            return Err(AddError::Dest(dest.to_owned()));
        }
        let mut entries = Vec::new();
        // The directories above DEST, as a tar that stands on its own lists them.
        let mut parent = String::new();
        for component in inner
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            parent.push_str(component);
            parent.push('/');
            entries.push((Entry::Dir(parent.clone()), empty()));
        }
        walk(source, inner, &mut entries)?;
        let mut hash = Sha256::new();
        for (entry, bytes) in &entries {
            hash.update(format!("{entry:?}\0").as_bytes());
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        }
        Ok(Self {
            source: source.to_path_buf(),
            dest: dest.to_owned(),
            entries: Arc::new(entries),
            hash: hash.finalize().into(),
        })
    }

    /// `SRC:DEST`, as the history and messages say it.
    pub fn describe(&self) -> String {
        format!("{}:{}", self.source.display(), self.dest)
    }

    /// Where it goes in the image.
    pub fn dest(&self) -> &str {
        &self.dest
    }

    /// What the cache key hashes: DEST and every entry with its bytes.
    pub(crate) fn key(&self) -> String {
        format!("{} {}", self.dest, crate::digest::hex(&self.hash))
    }

    /// The entries, in no order, with the bytes of each file.
    pub(crate) fn entries(&self) -> &[(Entry, Arc<[u8]>)] {
        &self.entries
    }
}

fn empty() -> Arc<[u8]> {
    Arc::from(&[][..])
}

/// Adds `path`, found on the host, at `at` (a tar path) and everything below it, without
/// following symbolic links.
fn walk(path: &Path, at: &str, entries: &mut Vec<(Entry, Arc<[u8]>)>) -> Result<(), AddError> {
    let read = |source| AddError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::symlink_metadata(path).map_err(read)?;
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_file() {
        let bytes: Arc<[u8]> = fs::read(path).map_err(read)?.into();
        entries.push((
            Entry::File(FilePlan {
                index: 0,
                path: at.to_owned(),
                size: bytes.len() as u64,
                mode,
            }),
            bytes,
        ));
    } else if meta.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(read)?;
        let target = target
            .to_str()
            .ok_or_else(|| AddError::Name(path.to_path_buf()))?
            .to_owned();
        entries.push((
            Entry::Symlink {
                path: at.to_owned(),
                target,
            },
            empty(),
        ));
    } else if meta.is_dir() {
        entries.push((Entry::Dir(format!("{at}/")), empty()));
        let mut children: Vec<_> = fs::read_dir(path)
            .map_err(read)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(read)?;
        children.sort();
        for name in children {
            let child = path.join(&name);
            let name = name.to_str().ok_or_else(|| AddError::Name(child.clone()))?;
            walk(&child, &format!("{at}/{name}"), entries)?;
        }
    } else {
        return Err(AddError::Kind(path.to_path_buf()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_reads_whole_and_its_key_follows_bytes_and_names_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("app");
        fs::create_dir_all(src.join("lib")).expect("mkdir");
        fs::write(src.join("bin"), b"#!x").expect("write");
        fs::set_permissions(src.join("bin"), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(src.join("lib/a.so"), b"so").expect("write");
        std::os::unix::fs::symlink("bin", src.join("link")).expect("symlink");
        let added = Added::parse(&format!("{}:/opt/app", src.display())).expect("added");
        let paths: Vec<&str> = added.entries().iter().map(|(e, _)| e.path()).collect();
        assert_eq!(
            paths,
            [
                "opt/",
                "opt/app/",
                "opt/app/bin",
                "opt/app/lib/",
                "opt/app/lib/a.so",
                "opt/app/link"
            ]
        );
        assert!(matches!(&added.entries()[2].0, Entry::File(f) if f.mode == 0o755));
        let key = added.key();
        // A new mtime is the same layer; a new byte is not.
        fs::write(src.join("lib/a.so"), b"so").expect("write");
        assert_eq!(
            Added::parse(&format!("{}:/opt/app", src.display()))
                .expect("again")
                .key(),
            key
        );
        fs::write(src.join("lib/a.so"), b"sO").expect("write");
        assert_ne!(
            Added::parse(&format!("{}:/opt/app", src.display()))
                .expect("changed")
                .key(),
            key
        );
    }

    #[test]
    fn bad_forms_are_refused_naming_them() {
        for (text, says) in [
            ("nodest", "`nodest` is not `SRC:DEST`"),
            ("x:relative", "`x:relative` is not `SRC:DEST`"),
            (":/a", "`:/a` is not `SRC:DEST`"),
            ("x:/", "`/` is not a path"),
            ("x:/a/../b", "`/a/../b` is not a path"),
        ] {
            let e = Added::parse(text).expect_err(text).to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        let e = Added::parse("/nonexistent/file:/a")
            .expect_err("missing")
            .to_string();
        assert!(
            e.starts_with("cannot read `/nonexistent/file` for --add: "),
            "{e}"
        );
    }
}
