//! Moving a finished output from its temporary sibling name to its destination, in a way
//! that can be undone until the whole build has committed: with several outputs, one that
//! fails to land takes the others back out.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// An output at its destination. What was there before now sits at the temporary name and
/// is deleted when `guard` (the temporary directory or file) is dropped.
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
    pub fn undo(self) {
        let _ = if self.replaced {
            exchange(&self.staged, &self.dest)
        } else {
            fs::rename(&self.dest, &self.staged)
        };
        drop(self.guard);
    }
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
    exchange_in_steps(a, b)
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
        placed.undo();
        assert_eq!(fs::read_to_string(&dest).expect("read"), "old");

        let fresh = tmp.path().join("fresh");
        let placed = Placed::new(&staged, &fresh, Box::new(())).expect("placed");
        assert!(fresh.exists() && !staged.exists());
        placed.undo();
        assert!(!fresh.exists() && staged.exists());
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
