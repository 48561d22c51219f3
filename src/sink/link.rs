//! Putting a blob that exists already (in the cache) into an output without writing its bytes
//! again: a copy-on-write clone where the filesystem can, else a hard link, else a copy, as
//! [`LinkMode`] asks. The first fallback is remembered, so that the blobs after it go straight
//! to what works and the user is told once.
//!
//! Either kind of link leaves the output independent of the cache: removing the output unlinks
//! its names only, and evicting the entry unlinks the cache's names only. The data goes when
//! the last name does.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::interrupt;
use crate::request::LinkMode;

/// How much a copy moves between two checks for Ctrl-C.
const COPY_CHUNK: u64 = 64 << 20;

/// Links blobs of the layout in `from` into one output.
#[derive(Debug)]
pub(crate) struct Linker {
    from: PathBuf,
    /// What was asked for, and what works for this output so far.
    asked: LinkMode,
    mode: LinkMode,
    /// Where the output goes, for the status line.
    dest: PathBuf,
    cannot_clone: Option<io::Error>,
    cannot_link: Option<io::Error>,
    note: Option<String>,
    /// The mode the user has been told about (nothing is said while it is the one asked
    /// for, except that copies are copies).
    told: Option<LinkMode>,
}

impl Linker {
    pub fn new(from: &Path, mode: LinkMode, dest: &Path) -> Self {
        Self {
            from: from.to_path_buf(),
            asked: mode,
            mode,
            dest: dest.to_path_buf(),
            cannot_clone: None,
            cannot_link: None,
            note: None,
            told: None,
        }
    }

    /// Puts the file at `relative` in the source layout at `to`, which does not exist yet.
    pub fn link(&mut self, relative: &str, to: &Path) -> io::Result<()> {
        let from = self.from.join(relative);
        loop {
            let result = match self.mode {
                LinkMode::Clone => reflink_copy::reflink(&from, to),
                LinkMode::Hardlink => fs::hard_link(&from, to),
                LinkMode::Copy => copy(&from, to),
            };
            match result {
                Ok(()) => break,
                // The same blob twice in one image: it is there already.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => break,
                // A missing source is no reason to fall back: it is a damaged cache.
                Err(e) if e.kind() == io::ErrorKind::NotFound || self.mode == LinkMode::Copy => {
                    return Err(e)
                }
                Err(e) if self.mode == LinkMode::Clone => {
                    self.cannot_clone = Some(e);
                    self.mode = LinkMode::Hardlink;
                }
                Err(e) => {
                    self.cannot_link = Some(e);
                    self.mode = LinkMode::Copy;
                }
            }
        }
        // Once for the first blob, and again only if a later one falls back further.
        if self.told != Some(self.mode) {
            self.told = Some(self.mode);
            self.note = self.fallback();
        }
        Ok(())
    }

    /// What to tell the user about the first blob, if it did not go as asked.
    fn fallback(&self) -> Option<String> {
        let dir = self.dest.display();
        let other_fs = |e: &Option<io::Error>| {
            e.as_ref()
                .is_some_and(|e| e.raw_os_error() == Some(nix::libc::EXDEV))
        };
        let why = |e: &Option<io::Error>| e.as_ref().map(ToString::to_string).unwrap_or_default();
        Some(match (self.asked, self.mode) {
            (LinkMode::Copy, _) => format!("linking: copying into {dir}, as link mode `copy` asks"),
            (asked, now) if asked == now => return None,
            (_, LinkMode::Hardlink) => {
                format!("linking: the filesystem of {dir} cannot clone; hard-linking instead")
            }
            _ if other_fs(&self.cannot_link) => {
                format!("linking: {dir} is on another filesystem than the cache; copying instead")
            }
            (LinkMode::Clone, _) => format!(
                "linking: cannot clone or hard-link into {dir} ({}); copying instead",
                why(&self.cannot_link)
            ),
            _ => format!(
                "linking: cannot hard-link into {dir} ({}); copying instead",
                why(&self.cannot_link)
            ),
        })
    }

    /// The status line about a fallback, once per output.
    pub fn take_note(&mut self) -> Option<String> {
        self.note.take()
    }
}

/// Copies `from` to the new file `to` in the kernel (`copy_file_range`), in chunks so that
/// Ctrl-C still stops a copy of gigabytes.
fn copy(from: &Path, to: &Path) -> io::Result<()> {
    let mut source = File::open(from)?;
    let mut out = File::create_new(to)?;
    loop {
        let n = io::copy(&mut (&mut source).take(COPY_CHUNK), &mut out)?;
        if n == 0 {
            return Ok(());
        }
        interrupt::check().map_err(|_| io::Error::other("interrupted"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(tmp.path().join("from/blobs/sha256")).expect("mkdir");
        fs::write(tmp.path().join("from/blobs/sha256/a"), b"blob").expect("write");
        fs::write(tmp.path().join("from/blobs/sha256/b"), b"blob two").expect("write");
        tmp
    }

    #[test]
    fn copies_as_asked_and_says_so_once() {
        let tmp = layout();
        let mut linker = Linker::new(&tmp.path().join("from"), LinkMode::Copy, Path::new("out"));
        linker
            .link("blobs/sha256/a", &tmp.path().join("a"))
            .expect("copy");
        assert!(linker
            .take_note()
            .is_some_and(|n| n.contains("copying into out")));
        linker
            .link("blobs/sha256/b", &tmp.path().join("b"))
            .expect("copy");
        assert_eq!(linker.take_note(), None);
        assert_eq!(fs::read(tmp.path().join("b")).expect("read"), b"blob two");
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| fs::metadata(p).expect("stat").ino();
        assert_ne!(
            ino(&tmp.path().join("a")),
            ino(&tmp.path().join("from/blobs/sha256/a"))
        );
    }

    #[test]
    fn a_missing_source_is_an_error_not_a_fallback() {
        let tmp = layout();
        let mut linker = Linker::new(&tmp.path().join("from"), LinkMode::Clone, Path::new("out"));
        let err = linker
            .link("blobs/sha256/gone", &tmp.path().join("x"))
            .expect_err("missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn clone_falls_back_to_what_the_filesystem_can() {
        let tmp = layout();
        let mut linker = Linker::new(&tmp.path().join("from"), LinkMode::Clone, Path::new("out"));
        linker
            .link("blobs/sha256/a", &tmp.path().join("a"))
            .expect("link");
        assert_eq!(fs::read(tmp.path().join("a")).expect("read"), b"blob");
        // Cloned (no note), or hard-linked with one note, depending on the filesystem.
        match linker.mode {
            LinkMode::Clone => assert_eq!(linker.take_note(), None),
            _ => assert!(linker.take_note().is_some()),
        }
    }
}
