//! How the cache (and the server's digest memo under it) reads and writes its small files:
//! a cache directory is a place other processes write to, so nothing there is trusted to be
//! what its name says. A write never opens an existing name (a symlink planted there would
//! be followed, a FIFO would block), and a read never follows a symlink, never blocks on a
//! FIFO or device, and never reads more than it asked for.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

/// The mode of every directory the cache creates: only its owner looks inside.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents, each 0700. Directories that are there already
/// keep their mode.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Writes `bytes` to `dir/name` through a temporary file of a name nobody can guess,
/// created exclusively (`O_EXCL`: no symlink or FIFO planted under that name is ever
/// opened), then renamed over `name`: a reader sees the old file or the new one, whole.
pub(crate) fn replace(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut part = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)?;
    part.write_all(bytes)?;
    part.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

/// As [`replace`], but leaves a file already at `dir/name` alone (`link`, which never
/// replaces a name): `Ok(false)` then.
#[cfg_attr(not(feature = "serve"), allow(dead_code))] // the memo index's
pub(crate) fn create(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<bool> {
    let mut part = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)?;
    part.write_all(bytes)?;
    match part.persist_noclobber(dir.join(name)) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error),
    }
}

/// Flags of every open of a name in the cache: a symlink is an error (`ELOOP`) rather
/// than followed, and a FIFO opens at once instead of waiting for a writer.
fn guarded(options: &mut OpenOptions) -> &mut OpenOptions {
    options.custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
}

/// `path` opened to append, created if missing: for a log, whose lines are single writes.
/// Anything there that is not a regular file (a symlink, a FIFO, a device) is refused.
pub(crate) fn append(path: &Path) -> io::Result<File> {
    let file = guarded(OpenOptions::new().create(true).append(true)).open(path)?;
    regular(&file, path)?;
    Ok(file)
}

/// `path` opened as [`KeyLock`](super::KeyLock) needs it: created if missing, never
/// truncated, never through a symlink.
pub(crate) fn open_lock(path: &Path, write: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    if write {
        options.write(true).create(true).truncate(false);
    }
    let file = guarded(&mut options).open(path)?;
    regular(&file, path)?;
    Ok(file)
}

/// `path` opened to read, if it is a regular file of at most `bound` bytes; otherwise why
/// not, as [`Unfit`].
pub(crate) fn open_small(path: &Path, bound: u64) -> Result<(File, u64), Unfit> {
    let file = guarded(OpenOptions::new().read(true))
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ENOENT) => Unfit::Missing,
            Some(nix::libc::ELOOP) => Unfit::Kind("a symbolic link"),
            _ => Unfit::Unreadable(e),
        })?;
    // The opened file's own metadata: what the name pointed to when it was opened.
    let meta = file.metadata().map_err(Unfit::Unreadable)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt;
        return Err(Unfit::Kind(match () {
            () if kind.is_dir() => "a directory",
            () if kind.is_fifo() => "a FIFO",
            () if kind.is_socket() => "a socket",
            () if kind.is_char_device() || kind.is_block_device() => "a device",
            () => "not a regular file",
        }));
    }
    if meta.len() > bound {
        return Err(Unfit::TooLarge(meta.len()));
    }
    Ok((file, meta.len()))
}

/// The bytes of `path`, if it is a regular file of at most `bound` bytes. Reads at most
/// `bound` bytes whatever the file does meanwhile.
pub(crate) fn read_small(path: &Path, bound: u64) -> Result<Vec<u8>, Unfit> {
    let (file, len) = open_small(path, bound)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(bound)
        .read_to_end(&mut bytes)
        .map_err(Unfit::Unreadable)?;
    Ok(bytes)
}

/// Why [`read_small`] did not read a file.
#[derive(Debug)]
pub(crate) enum Unfit {
    /// There is no such file.
    Missing,
    /// It is something else than a regular file: what.
    Kind(&'static str),
    /// It holds more bytes than the bound: how many.
    TooLarge(u64),
    /// Opening or reading it failed.
    Unreadable(io::Error),
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => write!(f, "it is missing"),
            Self::Kind(kind) => write!(f, "it is {kind}, not a regular file"),
            Self::TooLarge(len) => write!(f, "it holds {len} bytes, more than a memo can"),
            Self::Unreadable(e) => write!(f, "{e}"),
        }
    }
}

fn regular(file: &File, path: &Path) -> io::Result<()> {
    if file.metadata()?.is_file() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "`{}` is not a regular file",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_planted_is_followed_or_waited_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("target");
        fs::write(&target, "untouched").expect("target");
        let planted = dir.path().join("planted");
        std::os::unix::fs::symlink(&target, &planted).expect("symlink");
        assert!(append(&planted).is_err());
        assert!(open_lock(&planted, true).is_err());
        assert!(matches!(read_small(&planted, 100), Err(Unfit::Kind(_))));
        replace(dir.path(), "planted", b"new").expect("replaced");
        assert_eq!(fs::read_to_string(&target).expect("target"), "untouched");
        assert_eq!(fs::read_to_string(&planted).expect("file"), "new");
        assert!(!create(dir.path(), "planted", b"newer").expect("kept"));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        assert!(matches!(read_small(&fifo, 100), Err(Unfit::Kind("a FIFO"))));
        assert!(append(&fifo).is_err());
        let big = dir.path().join("big");
        File::create(&big)
            .and_then(|f| f.set_len(1 << 40))
            .expect("sparse");
        assert!(matches!(read_small(&big, 100), Err(Unfit::TooLarge(_))));
        assert!(matches!(
            read_small(&dir.path().join("none"), 100),
            Err(Unfit::Missing)
        ));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .filter(|i| i.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
