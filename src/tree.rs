//! The directory tree of a `tree=N` layer, shaped like a real root filesystem: directories
//! of varied depth (1 to 8 levels) and fan-out, names from a vocabulary with extensions, a
//! few non-ASCII names and paths over 100 and 255 bytes, skewed file sizes, and varied
//! modes. Everything follows from the layer's spec and number, never from the platform, so
//! every platform's image of a spec has the same paths.
//!
//! The tree is made whole, then sorted into tar order: it costs memory in proportion to the
//! number of entries (some 300 bytes each, paths included), which the layer's size does
//! not bound.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use sha2::{Digest, Sha256};

use crate::entry::{Entry, FilePlan};

/// The deepest a file may sit below the layer's directory.
const MAX_DEPTH: usize = 8;
/// Files per directory, on average.
const FILES_PER_DIR: u64 = 10;
/// σ of the log-normal sizes: the largest of a few hundred files is around a hundred times
/// the median, as in a real image (a few big libraries among many small files).
const SIGMA: f64 = 1.6;

pub(crate) const DIR_NAMES: &[&str] = &[
    "usr",
    "lib",
    "share",
    "bin",
    "sbin",
    "etc",
    "var",
    "opt",
    "include",
    "src",
    "local",
    "python3",
    "site-packages",
    "dist-packages",
    "node_modules",
    "locale",
    "doc",
    "man",
    "man1",
    "man5",
    "cache",
    "log",
    "perl5",
    "x86_64-linux-gnu",
    "pkgconfig",
    "icons",
    "hicolor",
    "scalable",
    "apps",
    "zoneinfo",
    "Europe",
    "America",
    "ssl",
    "certs",
    "tests",
    "fixtures",
    "vendor",
    "assets",
    "static",
    "templates",
    "config",
    "modules",
    "plugins",
    "extensions",
    "data",
    "internal",
    "utils",
    "core",
    "api",
    "v1",
    "v2",
    "build",
    "dist",
];
pub(crate) const FILE_STEMS: &[&str] = &[
    "index",
    "main",
    "README",
    "LICENSE",
    "config",
    "setup",
    "utils",
    "helpers",
    "core",
    "libc",
    "libssl",
    "libcrypto",
    "libz",
    "libstdc++",
    "python3.11",
    "node",
    "bash",
    "ls",
    "cat",
    "grep",
    "sed",
    "awk",
    "tar",
    "gzip",
    "package",
    "module",
    "types",
    "errors",
    "client",
    "server",
    "handler",
    "router",
    "schema",
    "model",
    "view",
    "test_basic",
    "test_api",
    "conftest",
    "__init__",
    "version",
    "changelog",
    "copyright",
    "passwd",
    "group",
    "hosts",
    "os-release",
    "locale",
    "timezone",
    "icon",
    "logo",
    "style",
    "app",
];
pub(crate) const EXTENSIONS: &[&str] = &[
    "", "", ".so", ".so.1", ".py", ".pyc", ".js", ".json", ".h", ".c", ".txt", ".md", ".gz",
    ".png", ".svg", ".conf", ".xml", ".html", ".css", ".mo", ".pem", ".sh", ".rs", ".go",
];
/// UTF-8 names of several scripts, as locale and documentation trees hold them.
const NON_ASCII: &[&str] = &[
    "données",
    "résumé",
    "naïve",
    "Grüße",
    "ñandú",
    "日本語",
    "中文说明",
    "русский",
    "ελληνικά",
    "한국어",
    "emoji-🙂",
];
/// Words of the long directory names that take a few paths past 100 and 255 bytes.
const LONG_WORDS: &[&str] = &[
    "generated",
    "intermediate",
    "artifacts",
    "configuration",
    "dependencies",
    "platform",
    "specific",
    "resources",
    "compatibility",
    "transitive",
];

/// A layer's listing in tar order: entries sorted by path, files numbered in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tree {
    /// Every entry; a file's index is its number among the files, in this order.
    pub entries: Vec<Entry>,
    /// Where each file's part starts in `entries`: after the previous file, so with the
    /// entries before it. One more, at the end, for "past the last file".
    parts: Vec<usize>,
    /// How many directories it holds, its top included.
    pub dirs: u64,
}

/// How a tree's file sizes are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sizes {
    /// Log-normal, a few empty, summing exactly to the layer's size.
    Skewed,
    /// Equal, the first ones one byte larger (`sizes=even`).
    Even,
}

/// The tree of `files` files holding `size` bytes under `top` (`layerN`), unsorted (more
/// entries may be added); `key` names the layer and seeds everything. File indexes are
/// given when the listing is sorted ([`Tree::sorted`]).
pub(crate) fn draw(top: &str, key: &str, files: u64, size: u64, sizes: Sizes) -> Vec<Entry> {
    let mut rng = rng("image-maker tree v1", key);
    let dirs = directories(&mut rng, top, files);
    let sizes = match sizes {
        Sizes::Skewed => skewed_sizes(&mut rng, files, size),
        Sizes::Even => even_sizes(files, size),
    };
    // A file may not take a subdirectory's name, nor an earlier file's: the second
    // `index.js` of a directory is `index.js-2`. Counted per directory and name, so that
    // no path is hashed or copied for it.
    let mut subdirs: HashMap<&str, Vec<&str>> = HashMap::default();
    for dir in &dirs {
        if let Some((parent, name)) = dir.path.rsplit_once('/') {
            subdirs.entry(parent).or_default().push(name);
        }
    }
    let mut uses: HashMap<(usize, &str, &str), u64> = HashMap::default();
    let mut entries: Vec<Entry> = Vec::with_capacity(dirs.len() + sizes.len());
    entries.extend(dirs.iter().map(|d| Entry::Dir(format!("{}/", d.path))));
    let long: Vec<usize> = (0..dirs.len()).filter(|&d| dirs[d].long).collect();
    let ordinary: Vec<usize> = (0..dirs.len()).filter(|&d| !dirs[d].long).collect();
    for (i, size) in sizes.into_iter().enumerate() {
        // The first file goes to the deepest long directory (a path over 255 bytes) and
        // the fourth to the second (over 100), whatever the draws; the others favour
        // the earlier, busier directories.
        let at = match (i, long.as_slice()) {
            (0, [.., deepest]) => *deepest,
            (3, [_, second, ..]) => *second,
            _ => ordinary[pick_dir(&mut rng, ordinary.len())],
        };
        let dir = &dirs[at];
        let non_ascii = i == 1 || one_in(&mut rng, 50);
        let (stem, ext, mode) = file_name(&mut rng, dir, non_ascii);
        let is_subdir = subdirs.get(dir.path.as_str()).is_some_and(|names| {
            names.iter().any(|n| {
                n.len() == stem.len() + ext.len() && n.starts_with(stem) && n.ends_with(ext)
            })
        });
        let earlier = uses.entry((at, stem, ext)).or_insert(0);
        let taken = *earlier + u64::from(is_subdir);
        *earlier += 1;
        let path = match taken {
            0 => format!("{}/{stem}{ext}", dir.path),
            n => format!("{}/{stem}{ext}-{}", dir.path, n + 1),
        };
        entries.push(Entry::File(FilePlan {
            index: 0,
            path,
            size,
            mode,
        }));
    }
    entries
}

impl Tree {
    /// `entries` in tar order: sorted by path, bytewise, files numbered in that order.
    pub fn sorted(entries: Vec<Entry>) -> Self {
        let mut entries: Vec<Entry> = match tar_order(&entries) {
            Some(order) => {
                let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
                order.into_iter().filter_map(|i| slots[i].take()).collect()
            }
            None => {
                let mut entries = entries;
                entries.sort_unstable_by(|a, b| a.path().as_bytes().cmp(b.path().as_bytes()));
                entries
            }
        };
        let mut parts = vec![0];
        let mut dirs = 0;
        for (at, entry) in entries.iter_mut().enumerate() {
            match entry {
                Entry::File(file) => {
                    file.index = parts.len() as u64 - 1;
                    parts.push(at + 1);
                }
                Entry::Dir(_) => dirs += 1,
                _ => {}
            }
        }
        Self {
            entries,
            parts,
            dirs,
        }
    }

    /// Where file `index`'s part starts in `entries` (the file count: the end).
    pub fn part_start(&self, index: u64) -> usize {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.parts.get(i).copied())
            .unwrap_or(self.entries.len())
    }
}

/// The bytewise order of the entries' paths, found directory by directory: siblings sort
/// by name (a directory's with its `/`), and a directory's entries follow it. That is the
/// order of whole paths, since every path below `d/` starts with it and no sibling's name
/// holds a `/`; and it compares short names, a few at a time, where a sort of whole paths
/// compares their long shared prefixes a million times. `None` when an entry's directory
/// is not among the entries (the caller sorts whole paths then).
fn tar_order(entries: &[Entry]) -> Option<Vec<usize>> {
    let mut children: HashMap<&str, Vec<usize>> = HashMap::default();
    // Each entry's name within its directory, a directory's with its `/`.
    let mut names: Vec<&str> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let path = entry.path();
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        let (parent, start) = trimmed
            .rfind('/')
            .map_or(("", 0), |at| (&trimmed[..at], at + 1));
        names.push(&path[start..]);
        children.entry(parent).or_default().push(i);
    }
    let name = |i: usize| names[i].as_bytes();
    let mut order = Vec::with_capacity(entries.len());
    // Depth first: a stack of sibling lists, each sorted and read from its front.
    let mut stack: Vec<std::vec::IntoIter<usize>> = Vec::new();
    let mut visit = |dir: &str, stack: &mut Vec<std::vec::IntoIter<usize>>| {
        if let Some(mut kids) = children.remove(dir) {
            kids.sort_unstable_by(|&a, &b| name(a).cmp(name(b)));
            stack.push(kids.into_iter());
        }
    };
    visit("", &mut stack);
    while let Some(top) = stack.last_mut() {
        let Some(i) = top.next() else {
            stack.pop();
            continue;
        };
        order.push(i);
        if let Entry::Dir(path) = &entries[i] {
            visit(&path[..path.len() - 1], &mut stack);
        }
    }
    (order.len() == entries.len()).then_some(order)
}

/// A generator seeded by `domain` and `key`: one per purpose, so that adding draws to one
/// shape never moves another.
pub(crate) fn rng(domain: &str, key: &str) -> ChaCha8Rng {
    let mut seed = Sha256::new();
    seed.update(domain.as_bytes());
    seed.update(b"\0");
    seed.update(key.as_bytes());
    ChaCha8Rng::from_seed(seed.finalize().into())
}

struct Dir {
    path: String,
    depth: usize,
    /// One of the chain of long names.
    long: bool,
    /// Under a `bin` or `sbin`: executables.
    bin: bool,
}

/// Directories in a chain of long names, under the layer's top: with the top and a file
/// name, their path passes 255 bytes, and its first part 100.
const LONG_CHAIN: usize = 4;

fn directories(rng: &mut ChaCha8Rng, top: &str, files: u64) -> Vec<Dir> {
    let count = usize::try_from(files.div_ceil(FILES_PER_DIR)).unwrap_or(usize::MAX);
    let mut dirs = vec![Dir {
        path: top.to_owned(),
        depth: 0,
        long: false,
        bin: false,
    }];
    let mut taken = HashSet::default();
    // A tree of ten files or more has its long paths; a smaller one is too small to hide
    // them among ordinary ones.
    if files >= 10 {
        for level in 0..LONG_CHAIN {
            let words: Vec<&str> = (0..7)
                .map(|_| LONG_WORDS[below(rng, LONG_WORDS.len())])
                .collect();
            let parent = &dirs[dirs.len() - 1];
            let path = format!("{}/{}-{level}", parent.path, words.join("-"));
            dirs.push(Dir {
                path,
                depth: parent.depth + 1,
                long: true,
                bin: false,
            });
        }
    }
    while dirs.len() < count.max(1) {
        // Mostly below the newest directory, which makes depth; else anywhere, which
        // makes breadth.
        let newest = dirs.len() - 1;
        let parent = if dirs[newest].depth < MAX_DEPTH - 1 && !dirs[newest].long && unit(rng) < 0.55
        {
            newest
        } else {
            loop {
                let i = below(rng, dirs.len());
                if dirs[i].depth < MAX_DEPTH - 1 && !dirs[i].long {
                    break i;
                }
            }
        };
        let word = DIR_NAMES[below(rng, DIR_NAMES.len())];
        let base = format!("{}/{word}", dirs[parent].path);
        let mut path = base.clone();
        let mut n = 2;
        while !taken.insert(path.clone()) {
            path = format!("{base}{n}");
            n += 1;
        }
        dirs.push(Dir {
            path,
            depth: dirs[parent].depth + 1,
            long: false,
            bin: dirs[parent].bin || word == "bin" || word == "sbin",
        });
    }
    dirs
}

/// A directory index, favouring the earlier ones: a few directories hold many files, most
/// hold a few.
fn pick_dir(rng: &mut ChaCha8Rng, count: usize) -> usize {
    let u = unit(rng);
    ((u * u * count as f64) as usize).min(count - 1)
}

fn file_name(
    rng: &mut ChaCha8Rng,
    dir: &Dir,
    non_ascii: bool,
) -> (&'static str, &'static str, u32) {
    let stem = if non_ascii {
        NON_ASCII[below(rng, NON_ASCII.len())]
    } else {
        FILE_STEMS[below(rng, FILE_STEMS.len())]
    };
    let ext = if dir.bin {
        ""
    } else {
        EXTENSIONS[below(rng, EXTENSIONS.len())]
    };
    let mode = if dir.bin || ext == ".sh" || ext.starts_with(".so") {
        0o755
    } else if one_in(rng, 30) {
        0o600
    } else {
        0o644
    };
    (stem, ext, mode)
}

/// Log-normal sizes, one in fifty empty, summing exactly to `size`: the rounding is given
/// to the largest file.
fn skewed_sizes(rng: &mut ChaCha8Rng, files: u64, size: u64) -> Vec<u64> {
    let weights: Vec<f64> = (0..files)
        .map(|i| {
            // The third file is always empty, so that a tree of a few files has one too.
            if i == 2 || one_in(rng, 50) {
                0.0
            } else {
                (SIGMA * normal(rng)).exp()
            }
        })
        .collect();
    let total: f64 = weights.iter().sum();
    if total == 0.0 {
        return even_sizes(files, size);
    }
    let mut sizes: Vec<u64> = weights
        .iter()
        .map(|w| (w / total * size as f64).floor() as u64)
        .collect();
    let sum: u64 = sizes.iter().sum();
    let largest = (0..sizes.len())
        .max_by(|&a, &b| weights[a].total_cmp(&weights[b]).then(b.cmp(&a)))
        .unwrap_or(0);
    // Floors never add up to more than the size; a float's rounding might, by a hair.
    if sum <= size {
        sizes[largest] += size - sum;
    } else {
        return even_sizes(files, size);
    }
    sizes
}

fn even_sizes(files: u64, size: u64) -> Vec<u64> {
    let (base, larger) = (size / files, size % files);
    (0..files).map(|i| base + u64::from(i < larger)).collect()
}

/// A draw in `[0, 1)`, from 53 random bits.
pub(crate) fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A draw in `0..n`; the bias of a modulo of 64 bits is far below anything a shape shows.
pub(crate) fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

pub(crate) fn one_in(rng: &mut ChaCha8Rng, n: u64) -> bool {
    rng.next_u64().is_multiple_of(n)
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = unit(rng).max(f64::MIN_POSITIVE);
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drawn tree, sorted.
    fn tree(top: &str, key: &str, files: u64, size: u64, sizes: Sizes) -> Tree {
        Tree::sorted(draw(top, key, files, size, sizes))
    }

    fn files(tree: &Tree) -> Vec<&FilePlan> {
        tree.entries
            .iter()
            .filter_map(|e| match e {
                Entry::File(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_tree_of_500_looks_like_a_filesystem() {
        let tree = tree(
            "layer1",
            "8MB:tree=500 layer 1",
            500,
            8 << 20,
            Sizes::Skewed,
        );
        let files = files(&tree);
        assert_eq!(files.len(), 500);
        assert_eq!(files.iter().map(|f| f.size).sum::<u64>(), 8 << 20);
        let mut sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2];
        assert!(
            sizes[499] >= 20 * median,
            "largest {} median {median}",
            sizes[499]
        );
        assert!(sizes[0] == 0, "an empty file");
        let depth = files
            .iter()
            .map(|f| f.path.matches('/').count())
            .max()
            .unwrap_or(0);
        assert!((4..=MAX_DEPTH).contains(&depth), "depth {depth}");
        assert!(files.iter().any(|f| f.path.len() > 255));
        assert!(files
            .iter()
            .any(|f| f.path.len() > 100 && f.path.len() <= 255));
        assert!(files.iter().any(|f| !f.path.is_ascii()));
        for mode in [0o755, 0o644, 0o600] {
            assert!(files.iter().any(|f| f.mode == mode), "{mode:o}");
        }
        // Sorted, unique, every parent before its children.
        let paths: Vec<&str> = tree.entries.iter().map(Entry::path).collect();
        let mut sorted = paths.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, paths);
        for file in &files {
            let parent = &file.path[..file.path.rfind('/').expect("a parent")];
            assert!(paths.contains(&format!("{parent}/").as_str()), "{parent}");
        }
    }

    #[test]
    fn trees_are_deterministic_and_keyed() {
        let a = tree("layer1", "k", 50, 4096, Sizes::Skewed);
        assert_eq!(a, tree("layer1", "k", 50, 4096, Sizes::Skewed));
        assert_ne!(a, tree("layer1", "other", 50, 4096, Sizes::Skewed));
        let even = tree("layer1", "k", 50, 4096, Sizes::Even);
        let sizes: Vec<u64> = files(&even).iter().map(|f| f.size).collect();
        assert!(sizes.iter().all(|&s| s == 81 || s == 82), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<u64>(), 4096);
    }

    #[test]
    fn small_and_tiny_trees_hold_their_files() {
        for (files, size) in [(1, 1), (2, 10), (3, 3), (9, 100), (10, 9), (33, 1 << 20)] {
            let tree = tree("layer2", "k", files, size, Sizes::Skewed);
            let found = super::tests::files(&tree);
            assert_eq!(found.len() as u64, files);
            assert_eq!(found.iter().map(|f| f.size).sum::<u64>(), size);
        }
    }
}
