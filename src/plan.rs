//! Names and sizes of every file in every layer: the one plan both builders follow, so the
//! native layers and the Dockerfile build context hold the same paths and bytes.

use crate::content::FileContent;
use crate::spec::{format_size, LayerSpec, Layout, Spec};

/// Files per directory of a `tree=N` layer.
const FILES_PER_DIR: u64 = 32;
/// Subdirectories per directory of a `tree=N` layer: one hex digit per level.
const FANOUT: u64 = 16;

/// One layer's directory and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    /// 1-based, as in `layer1/`.
    pub number: u32,
    /// The layer's size, file count and layout, from the spec.
    pub spec: LayerSpec,
}

/// One regular file of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    /// 0-based index within the layer; part of the content seed.
    pub index: u64,
    /// Path relative to the layer root, e.g. `layer1/1GB-file`.
    pub path: String,
    /// Bytes of content; the files of a layer differ by at most one byte.
    pub size: u64,
}

/// A tar entry of a layer, in the order the tar holds them (sorted by path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory path ending in `/`.
    Dir(String),
    /// A regular file and its content's size.
    File(FilePlan),
}

/// The layers of a spec, in order.
pub fn layers(spec: &Spec) -> Vec<LayerPlan> {
    spec.layers()
        .iter()
        .zip(1..)
        .map(|(spec, number)| LayerPlan {
            number,
            spec: *spec,
        })
        .collect()
}

impl LayerPlan {
    /// The layer's top directory, `layerN`.
    pub fn dir(&self) -> String {
        format!("layer{}", self.number)
    }

    /// The bytes of `file`, a file of this layer, in the image whose content seed is
    /// `seed` ([`crate::content::seed`]).
    pub fn content(&self, seed: &[u8; 32], file: &FilePlan) -> FileContent {
        FileContent::with_ratio(seed, self.number, file.index, file.size, self.spec.ratio)
    }

    /// How many directory entries `entries` yields, `layerN/` included.
    pub fn dir_count(&self) -> u64 {
        match self.spec.layout {
            Layout::Flat => 1,
            Layout::Tree => {
                let tree = Tree::new(self.spec.files);
                let leaves = self.spec.files.div_ceil(FILES_PER_DIR);
                // Level `l` (1 = top) has one directory per distinct prefix of `l` digits.
                1 + (1..=tree.depth)
                    .map(|level| leaves.div_ceil(FANOUT.pow(tree.depth - level)))
                    .sum::<u64>()
            }
        }
    }

    /// How many directory entries come before the first entry of file `index`'s part in
    /// [`entries_from`](Self::entries_from) (`layerN/` counted): in closed form, so that an
    /// offset into the tar is found without walking the files before it.
    pub fn dirs_before(&self, index: u64) -> u64 {
        match self.spec.layout {
            _ if index == 0 => 0,
            Layout::Flat => 1,
            Layout::Tree => {
                let depth = Tree::new(self.spec.files).depth;
                let leaf = (index - 1) / FILES_PER_DIR;
                // Leaves 0..=leaf are contiguous: at each level they have one directory per
                // distinct prefix.
                1 + (1..=depth)
                    .map(|level| leaf / FANOUT.pow(depth - level) + 1)
                    .sum::<u64>()
            }
        }
    }

    /// The regular files, in tar order: lazy, so a layer of a million files costs no
    /// memory up front.
    pub fn files(&self) -> impl Iterator<Item = FilePlan> + '_ {
        self.entries().filter_map(|e| match e {
            Entry::File(f) => Some(f),
            Entry::Dir(_) => None,
        })
    }

    /// Directories and files in tar order, starting with `layerN/`.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.entries_from(0)
    }

    /// The entries from file `first` on: the directories that file opens, the file, and
    /// everything after it (with `layerN/` first when `first` is 0). A reader that starts
    /// in the middle of a layer needs nothing before.
    pub fn entries_from(&self, first: u64) -> impl Iterator<Item = Entry> + '_ {
        let LayerSpec {
            size,
            files,
            layout,
            ..
        } = self.spec;
        let base = size / files;
        let larger = size % files;
        let width = files.to_string().len();
        let tree = Tree::new(files);
        let top = (first == 0).then(|| Entry::Dir(format!("{}/", self.dir())));
        top.into_iter().chain((first..files).flat_map(move |index| {
            let (dirs, parent) = match layout {
                Layout::Flat => (Vec::new(), self.dir()),
                Layout::Tree => tree.place(&self.dir(), index),
            };
            let name = if files == 1 && layout == Layout::Flat {
                format!("{}-file", format_size(size))
            } else {
                // Zero-padded so that name order is number order.
                format!("file-{:0width$}", index + 1)
            };
            let file = FilePlan {
                index,
                path: format!("{parent}/{name}"),
                size: base + u64::from(index < larger),
            };
            dirs.into_iter()
                .map(Entry::Dir)
                .chain(std::iter::once(Entry::File(file)))
        }))
    }
}

/// Directory shape of a `tree=N` layer: `FILES_PER_DIR` files per leaf directory, leaves
/// numbered in hex, one digit per level (`layer1/d0/d3/file-0097`), all at the same depth.
#[derive(Debug, Clone, Copy)]
struct Tree {
    depth: u32,
}

impl Tree {
    fn new(files: u64) -> Self {
        let leaves = files.div_ceil(FILES_PER_DIR).max(1);
        let mut depth = 1;
        while FANOUT.pow(depth) < leaves {
            depth += 1;
        }
        Self { depth }
    }

    /// The hex digits naming leaf directory `leaf`, most significant first.
    fn digits(&self, leaf: u64) -> Vec<u64> {
        (0..self.depth)
            .rev()
            .map(|level| leaf / FANOUT.pow(level) % FANOUT)
            .collect()
    }

    /// File `index`'s directory, and the directories that must precede it in the tar:
    /// the first file of a leaf opens every level from the first digit that changed.
    fn place(&self, top: &str, index: u64) -> (Vec<String>, String) {
        let leaf = index / FILES_PER_DIR;
        let digits = self.digits(leaf);
        let first_new_level = if !index.is_multiple_of(FILES_PER_DIR) {
            digits.len()
        } else if leaf == 0 {
            0
        } else {
            let previous = self.digits(leaf - 1);
            digits
                .iter()
                .zip(&previous)
                .position(|(a, b)| a != b)
                .unwrap_or(0)
        };
        let mut path = top.to_owned();
        let mut new_dirs = Vec::new();
        for (level, digit) in digits.iter().enumerate() {
            path.push_str(&format!("/d{digit:x}"));
            if level >= first_new_level {
                new_dirs.push(format!("{path}/"));
            }
        }
        (new_dirs, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(list: &str) -> Vec<LayerPlan> {
        layers(&Spec::parse(list).expect("valid"))
    }

    fn paths(layer: &LayerPlan) -> Vec<String> {
        layer
            .entries()
            .map(|e| match e {
                Entry::Dir(d) => d,
                Entry::File(f) => f.path,
            })
            .collect()
    }

    #[test]
    fn single_file_is_named_after_its_size() {
        let layers = plan("1GB,300B");
        let files: Vec<_> = layers
            .iter()
            .flat_map(|l| l.files().collect::<Vec<_>>())
            .collect();
        assert_eq!(files[0].path, "layer1/1GB-file");
        assert_eq!(files[0].size, 1 << 30);
        assert_eq!(files[1].path, "layer2/300B-file");
        assert_eq!(paths(&layers[1]), ["layer2/", "layer2/300B-file"]);
    }

    #[test]
    fn many_files_sum_exactly_and_sort_by_number() {
        let layers = plan("1001B:files=10");
        let files: Vec<_> = layers[0].files().collect();
        assert_eq!(files.len(), 10);
        assert_eq!(files.iter().map(|f| f.size).sum::<u64>(), 1001);
        assert_eq!(files[0].size, 101);
        assert_eq!(files[9].size, 100);
        assert_eq!(files[0].path, "layer1/file-01");
        assert_eq!(files[9].path, "layer1/file-10");
        let all = paths(&layers[0]);
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, all);
    }

    #[test]
    fn tree_spreads_files_over_sorted_directories() {
        // 5000 files: 157 leaves of up to 32 files, two hex levels.
        let layer = &plan("1MB:tree=5000")[0];
        let all = paths(layer);
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, all, "tar entries must be sorted");
        let mut unique = sorted.clone();
        unique.dedup();
        assert_eq!(unique.len(), all.len(), "no entry twice");
        let files: Vec<_> = layer.files().collect();
        assert_eq!(files.len(), 5000);
        assert_eq!(files.iter().map(|f| f.size).sum::<u64>(), 1 << 20);
        assert_eq!(files[0].path, "layer1/d0/d0/file-0001");
        assert_eq!(files[32].path, "layer1/d0/d1/file-0033");
        assert_eq!(files[4999].path, "layer1/d9/dc/file-5000");
        // Every file's parent directories come before it.
        let dirs: Vec<&String> = all.iter().filter(|p| p.ends_with('/')).collect();
        assert_eq!(dirs.len(), 1 + 10 + 157);
        assert_eq!(layer.dir_count(), 1 + 10 + 157);
        for f in &files {
            let mut parent = f.path.as_str();
            while let Some((up, _)) = parent.rsplit_once('/') {
                assert!(
                    dirs.contains(&&format!("{up}/")),
                    "{up}/ missing for {}",
                    f.path
                );
                parent = up;
            }
        }
    }

    #[test]
    fn entries_from_a_file_and_dirs_before_it_agree_with_the_whole_walk() {
        for list in [
            "3B:files=3",
            "1MB:tree=5000",
            "40B:tree=33",
            "9000B:tree=4097",
            "1KB",
        ] {
            let layer = &plan(list)[0];
            let all = paths(layer);
            let files = layer.spec.files;
            for index in [0, 1, 2, 31, 32, 33, 512, 513, files - 1] {
                if index >= files {
                    continue;
                }
                let tail: Vec<String> = layer
                    .entries_from(index)
                    .map(|e| match e {
                        Entry::Dir(d) => d,
                        Entry::File(f) => f.path,
                    })
                    .collect();
                let skipped = all.len() - tail.len();
                assert_eq!(all[skipped..], tail, "{list} from {index}");
                // Before file `index`'s part: every earlier file, and the directories.
                assert_eq!(
                    skipped as u64,
                    layer.dirs_before(index) + index,
                    "{list} from {index}"
                );
            }
        }
    }

    #[test]
    fn small_trees() {
        assert_eq!(
            paths(&plan("3B:tree=1")[0]),
            ["layer1/", "layer1/d0/", "layer1/d0/file-1"]
        );
        let two_leaves = paths(&plan("40B:tree=33")[0]);
        assert_eq!(two_leaves.len(), 1 + 2 + 33);
        assert_eq!(two_leaves[34], "layer1/d1/");
        assert_eq!(two_leaves[35], "layer1/d1/file-33");
    }
}
