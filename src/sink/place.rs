//! Moving a finished output from its temporary sibling name to its destination, in a way
//! that can be undone until the whole build has committed: with several outputs, one that
//! fails to land takes the others back out.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// An output at its destination. What was there before now sits at the temporary name and
/// is deleted when `guard` (the temporary directory or file) is dropped — unless an undo
/// could not put it back, in which case it is kept (see [`UndoError`]).
pub(crate) struct Placed {
    dest: PathBuf,
    staged: PathBuf,
    replaced: bool,
    guard: Box<dyn Send>,
}

impl Placed {
    /// Moves `staged` to `dest`. A previous `dest` is swapped out, never deleted here;
    /// `guard` owns `staged` and removes whatever is there when dropped.
    pub fn new(staged: &Path, dest: &Path, guard: Box<dyn Send>) -> io::Result<Self> {
        let replaced = dest.symlink_metadata().is_ok();
        if replaced {
            exchange(staged, dest)?;
        } else {
            fs::rename(staged, dest)?;
        }
        Ok(Self {
            dest: dest.to_path_buf(),
            staged: staged.to_path_buf(),
            replaced,
            guard,
        })
    }

    /// Puts back what was at the destination before (or nothing), and deletes the new output.
    /// When the previous output cannot be put back, it is never deleted: it is moved to
    /// `DEST.previous` (or left at the temporary name, should that fail too), and the error
    /// says where.
    pub fn undo(self) -> Result<(), UndoError> {
        let Self {
            dest,
            staged,
            replaced,
            guard,
        } = self;
        if !replaced {
            // `guard` is dropped on return: with the new output moved back to it, or with
            // nothing there; never with old data.
            return fs::rename(&dest, &staged)
                .map_err(|source| UndoError::NewOutputStays { dest, source });
        }
        let Err(source) = exchange(&staged, &dest) else {
            return Ok(());
        };
        if staged.symlink_metadata().is_err() {
            // Only the last step of a stepwise exchange failed: the previous output is back.
            return Ok(());
        }
        // `staged` holds the previous output, and `guard` would delete it.
        let kept = match keep_aside(&staged, &dest) {
            Ok(kept) => kept,
            Err(_) => {
                std::mem::forget(guard);
                staged
            }
        };
        Err(UndoError::PreviousKept { dest, kept, source })
    }
}

/// An undo that could not restore the destination. Nothing was deleted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UndoError {
    #[error(
        "cannot put the previous {} back ({source}); it is kept at {}",
        dest.display(),
        kept.display()
    )]
    PreviousKept {
        dest: PathBuf,
        kept: PathBuf,
        source: io::Error,
    },
    #[error("cannot remove the new output {} ({source}); it stays there", dest.display())]
    NewOutputStays { dest: PathBuf, source: io::Error },
}

/// Moves `from` (the previous output of `dest`) to the first free `DEST.previous`,
/// `DEST.previous.2`, … beside `dest`; returns where it went.
fn keep_aside(from: &Path, dest: &Path) -> io::Result<PathBuf> {
    injected("keep aside")?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    for n in 1..=100 {
        let suffix = if n == 1 {
            ".previous".to_owned()
        } else {
            format!(".previous.{n}")
        };
        let kept = dest.with_file_name(format!("{name}{suffix}"));
        if kept.symlink_metadata().is_err() {
            fs::rename(from, &kept)?;
            return Ok(kept);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "every `.previous` name is taken",
    ))
}

impl std::fmt::Debug for Placed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placed")
            .field("dest", &self.dest)
            .field("replaced", &self.replaced)
            .finish_non_exhaustive()
    }
}

/// Swaps two paths atomically, so that `b` never goes missing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    injected("exchange")?;
    use nix::errno::Errno;
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => Ok(()),
        // Filesystems without RENAME_EXCHANGE.
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => exchange_in_steps(a, b),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    injected("exchange")?;
    exchange_in_steps(a, b)
}

#[cfg(test)]
thread_local! {
    /// Steps the unit tests make fail, by name.
    static FAILING: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Fails `step` when a unit test asks for it; nothing otherwise.
#[cfg(test)]
fn injected(step: &'static str) -> io::Result<()> {
    if FAILING.with(|f| f.borrow().contains(&step)) {
        return Err(io::Error::other(format!("{step} failed (injected)")));
    }
    Ok(())
}

#[cfg(not(test))]
#[inline(always)]
fn injected(_step: &'static str) -> io::Result<()> {
    Ok(())
}

/// Moves `b` aside, `a` to `b`, and the old `b` to `a`. If the second step fails, `b` is
/// put back; nothing is ever deleted.
fn exchange_in_steps(a: &Path, b: &Path) -> io::Result<()> {
    let mut aside = a.as_os_str().to_owned();
    aside.push(".previous");
    let aside = PathBuf::from(aside);
    fs::rename(b, &aside)?;
    if let Err(e) = fs::rename(a, b) {
        fs::rename(&aside, b)?;
        return Err(e);
    }
    fs::rename(&aside, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_and_undo_keep_the_previous_output() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dest = tmp.path().join("out");
        let staged = tmp.path().join("staged");
        fs::write(&dest, "old").expect("write");
        fs::write(&staged, "new").expect("write");
        let placed = Placed::new(&staged, &dest, Box::new(())).expect("placed");
        assert_eq!(fs::read_to_string(&dest).expect("read"), "new");
        assert_eq!(fs::read_to_string(&staged).expect("read"), "old");
        placed.undo().expect("undone");
        assert_eq!(fs::read_to_string(&dest).expect("read"), "old");

        let fresh = tmp.path().join("fresh");
        let placed = Placed::new(&staged, &fresh, Box::new(())).expect("placed");
        assert!(fresh.exists() && !staged.exists());
        placed.undo().expect("undone");
        assert!(!fresh.exists() && staged.exists());
    }

    /// Deletes its path when dropped, as the temporary directory guarding a staged output.
    struct Guard(PathBuf);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Places a new `out` over an old one, then undoes it with `failing` steps failing.
    fn undo_failing(failing: &[&'static str]) -> (tempfile::TempDir, PathBuf, UndoError) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dest = tmp.path().join("out");
        let staged = tmp.path().join(".out.image-maker-staged");
        fs::create_dir(&dest).expect("mkdir");
        fs::write(dest.join("index.json"), "old").expect("write");
        fs::create_dir(&staged).expect("mkdir");
        fs::write(staged.join("index.json"), "new").expect("write");
        let placed = Placed::new(&staged, &dest, Box::new(Guard(staged.clone()))).expect("placed");
        FAILING.with(|f| f.borrow_mut().extend(failing));
        let undone = placed.undo();
        FAILING.with(|f| f.borrow_mut().clear());
        (tmp, staged, undone.expect_err("the undo fails"))
    }

    #[test]
    fn a_failed_swap_back_keeps_the_previous_output_beside_the_destination() {
        let (tmp, _, error) = undo_failing(&["exchange"]);
        let kept = tmp.path().join("out.previous");
        assert_eq!(
            fs::read_to_string(kept.join("index.json")).expect("the previous output survives"),
            "old"
        );
        // The new output stays where it landed; nothing else is left.
        assert_eq!(
            fs::read_to_string(tmp.path().join("out/index.json")).expect("read"),
            "new"
        );
        assert_eq!(fs::read_dir(tmp.path()).expect("list").count(), 2);
        let message = error.to_string();
        assert!(
            message.contains(&format!("it is kept at {}", kept.display())),
            "{message}"
        );
    }

    #[test]
    fn a_previous_output_that_cannot_move_either_stays_at_its_temporary_name() {
        let (_tmp, staged, error) = undo_failing(&["exchange", "keep aside"]);
        assert_eq!(
            fs::read_to_string(staged.join("index.json")).expect("the previous output survives"),
            "old"
        );
        assert!(
            error
                .to_string()
                .contains(&format!("it is kept at {}", staged.display())),
            "{error}"
        );
    }

    #[test]
    fn stepwise_exchange_swaps_directories() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fs::create_dir(&a).expect("mkdir");
        fs::create_dir(&b).expect("mkdir");
        fs::write(a.join("x"), "").expect("write");
        exchange_in_steps(&a, &b).expect("exchange");
        assert!(b.join("x").exists() && !a.join("x").exists());
    }
}
