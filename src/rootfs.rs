//! A root filesystem as layers build it up: entries added in tar order, whiteouts applied
//! as the OCI image spec says. The planner uses it to know what a whiteout may still
//! delete; the oracle, to know what an unpack must produce.

use std::collections::BTreeMap;

/// The prefix of a whiteout's name.
pub const WHITEOUT: &str = ".wh.";
/// The name of the entry that makes its directory opaque.
pub const OPAQUE: &str = ".wh..wh..opq";

/// Paths in tar form (a directory's ends in `/`, none starts with one), each with a `T`.
#[derive(Debug, Clone)]
pub struct Rootfs<T> {
    entries: BTreeMap<String, T>,
}

impl<T> Default for Rootfs<T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
        }
    }
}

/// What a whiteout entry's path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// Delete the entry of this name in the whiteout's directory, and all below it.
    Path(&'a str),
    /// Delete everything below this directory (given with its `/`), keeping it.
    Opaque(&'a str),
}

/// The whiteout an entry at `path` is, if its name marks one.
pub fn whiteout(path: &str) -> Option<Whiteout<'_>> {
    let (dir, name) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    if name == OPAQUE {
        return Some(Whiteout::Opaque(dir));
    }
    name.strip_prefix(WHITEOUT)
        .filter(|deleted| !deleted.is_empty())
        .map(Whiteout::Path)
}

impl<T> Rootfs<T> {
    /// Adds or replaces the entry at `path`.
    pub fn add(&mut self, path: String, value: T) {
        self.entries.insert(path, value);
    }

    /// Applies a whiteout entry found at `path` in a layer: `dir/.wh.NAME` deletes
    /// `dir/NAME` and everything below it, `dir/.wh..wh..opq` everything below `dir/`.
    /// Returns whether `path` was a whiteout at all.
    pub fn apply_whiteout(&mut self, path: &str) -> bool {
        let dir = path.rfind('/').map_or("", |i| &path[..=i]);
        match whiteout(path) {
            None => false,
            Some(Whiteout::Opaque(_)) => {
                self.remove_below(dir);
                true
            }
            Some(Whiteout::Path(name)) => {
                let target = format!("{dir}{name}");
                self.entries.remove(&target);
                let as_dir = format!("{target}/");
                self.entries.remove(&as_dir);
                self.remove_below(&as_dir);
                true
            }
        }
    }

    /// Removes every entry whose path starts with `dir` (which ends in `/`), but `dir`.
    fn remove_below(&mut self, dir: &str) {
        let below: Vec<String> = self
            .entries
            .range::<str, _>((std::ops::Bound::Excluded(dir), std::ops::Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(dir))
            .map(|(p, _)| p.clone())
            .collect();
        for path in below {
            self.entries.remove(&path);
        }
    }

    /// The entry at `path`, if present.
    pub fn get(&self, path: &str) -> Option<&T> {
        self.entries.get(path)
    }

    /// Every entry, sorted by path bytewise.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_delete_paths_and_empty_opaque_directories() {
        let mut fs = Rootfs::default();
        for p in [
            "a/", "a/b/", "a/b/c", "a/b/d/", "a/b/d/e", "a/bb", "a/x/", "a/x/y", "z",
        ] {
            fs.add(p.to_owned(), ());
        }
        assert!(!fs.apply_whiteout("a/b"));
        assert!(fs.apply_whiteout("a/b/.wh.d"));
        let left: Vec<&String> = fs.iter().map(|(p, _)| p).collect();
        assert_eq!(left, ["a/", "a/b/", "a/b/c", "a/bb", "a/x/", "a/x/y", "z"]);
        assert!(fs.apply_whiteout("a/x/.wh..wh..opq"));
        assert!(fs.apply_whiteout(".wh.z"));
        let left: Vec<&String> = fs.iter().map(|(p, _)| p).collect();
        assert_eq!(left, ["a/", "a/b/", "a/b/c", "a/bb", "a/x/"]);
        assert_eq!(whiteout("a/.wh.b"), Some(Whiteout::Path("b")));
        assert_eq!(whiteout("a/.wh..wh..opq"), Some(Whiteout::Opaque("a/")));
    }
}
