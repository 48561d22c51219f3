//! Names and sizes of every file in every layer: the one plan both builders follow, so the
//! native layers and the Dockerfile build context hold the same paths and bytes.

use std::sync::Arc;

use crate::content::FileContent;
use crate::spec::{format_size, LayerSpec, Layout, Spec};
use crate::tree::{Sizes, Tree, TreeEntry};

/// One layer's directory and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    /// 1-based, as in `layer1/`.
    pub number: u32,
    /// The layer's size, file count and layout, from the spec.
    pub spec: LayerSpec,
    /// A tree layer's entries, made once.
    tree: Option<Arc<Tree>>,
}

/// One regular file of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    /// 0-based index within the layer; part of the content seed.
    pub index: u64,
    /// Path relative to the layer root, e.g. `layer1/1GB-file`.
    pub path: String,
    /// Bytes of content.
    pub size: u64,
    /// Permission bits: 0644, or a tree's 0755 and 0600.
    pub mode: u32,
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
        .map(|(spec, number)| LayerPlan::new(number, *spec))
        .collect()
}

impl LayerPlan {
    /// Layer `number` of a spec: a tree layer's entries are drawn here, once.
    pub fn new(number: u32, spec: LayerSpec) -> Self {
        let tree = (spec.layout == Layout::Tree).then(|| {
            // The shape depends on what the layer holds and where, not on its encoding or
            // content ratio: those change no path.
            let key = format!("{}\0{}\0{number}", spec.size, spec.files);
            let sizes = if spec.even_sizes {
                Sizes::Even
            } else {
                Sizes::Skewed
            };
            Arc::new(Tree::new(
                &format!("layer{number}"),
                &key,
                spec.files,
                spec.size,
                sizes,
            ))
        });
        Self { number, spec, tree }
    }

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
        match &self.tree {
            None => 1,
            Some(tree) => tree.dirs(),
        }
    }

    /// How many directory entries come before the first entry of file `index`'s part in
    /// [`entries_from`](Self::entries_from) (`layerN/` counted).
    pub fn dirs_before(&self, index: u64) -> u64 {
        match &self.tree {
            _ if index == 0 => 0,
            None => 1,
            Some(tree) => tree.part_start(index) as u64 - index,
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
    pub fn entries_from(&self, first: u64) -> Box<dyn Iterator<Item = Entry> + '_> {
        let LayerSpec { size, files, .. } = self.spec;
        if let Some(tree) = &self.tree {
            let start = tree.part_start(first);
            let mut index = first;
            return Box::new(tree.entries[start..].iter().map(move |entry| match entry {
                TreeEntry::Dir(path) => Entry::Dir(path.clone()),
                TreeEntry::File(file) => {
                    index += 1;
                    Entry::File(FilePlan {
                        index: index - 1,
                        path: file.path.clone(),
                        size: file.size,
                        mode: file.mode,
                    })
                }
            }));
        }
        let base = size / files;
        let larger = size % files;
        let width = files.to_string().len();
        let top = (first == 0).then(|| Entry::Dir(format!("{}/", self.dir())));
        Box::new(top.into_iter().chain((first..files).map(move |index| {
            let name = if files == 1 {
                format!("{}-file", format_size(size))
            } else {
                // Zero-padded so that name order is number order.
                format!("file-{:0width$}", index + 1)
            };
            Entry::File(FilePlan {
                index,
                path: format!("{}/{name}", self.dir()),
                size: base + u64::from(index < larger),
                mode: 0o644,
            })
        })))
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
    fn a_tree_is_sorted_whole_and_sums_exactly() {
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
        assert!(files.iter().enumerate().all(|(i, f)| f.index == i as u64));
        // Every file's parent directories come before it.
        let dirs: Vec<&String> = all.iter().filter(|p| p.ends_with('/')).collect();
        assert_eq!(layer.dir_count(), dirs.len() as u64);
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
        // Another platform, encoding or ratio draws the same tree; another layer does not.
        assert_eq!(
            paths(&plan("1MB:tree=5000:ratio=2:compression=gzip")[0]),
            all
        );
        assert_ne!(paths(&plan("1KB,1MB:tree=5000")[1]).len(), 0);
        assert_ne!(paths(&plan("1KB,1MB:tree=5000")[1])[1..], all[1..]);
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
        let one = paths(&plan("3B:tree=1")[0]);
        assert_eq!(one.len(), 2, "{one:?}");
        assert_eq!(one[0], "layer1/");
        let even = plan("40B:tree=33:sizes=even")[0]
            .files()
            .collect::<Vec<_>>();
        assert!(even.iter().all(|f| f.size == 1 || f.size == 2));
        assert_eq!(even.iter().map(|f| f.size).sum::<u64>(), 40);
    }
}
