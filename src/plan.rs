//! Names and sizes of every file in every layer: the one plan both builders follow, so the
//! native layers and the Dockerfile build context hold the same paths and bytes.

use std::borrow::Cow;
use std::sync::Arc;

pub use crate::entry::{Entry, FilePlan};
use crate::rootfs::Rootfs;
use crate::runnable::Given;
use crate::spec::{format_size, LayerSpec, Layout, Run, Spec};
use crate::tree::{self, Sizes, Tree};

/// One layer's directory and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    /// 1-based, as in `layer1/`.
    pub number: u32,
    /// The layer's size, file count and layout, from the spec.
    pub spec: LayerSpec,
    /// The entries of a tree layer, or of any layer with links, whiteouts or empty
    /// directories, made once; a plain flat layer's are computed as they are read.
    tree: Option<Arc<Tree>>,
    /// The bytes of the `run` layer's files, which are given, not generated.
    given: Option<Arc<Given>>,
}

/// What an entry's tar bytes depend on: see [`LayerPlan::measures`].
pub(crate) struct Measure<'a> {
    pub path: &'a str,
    pub link: Option<&'a str>,
    /// A regular file's size.
    pub file: Option<u64>,
}

/// The layers of a spec, in order.
pub fn layers(spec: &Spec) -> Vec<LayerPlan> {
    planned(spec.layers())
}

/// The layers of a spec and, above them, those `--add` gives.
pub fn with_added(spec: &Spec, added: &[crate::added::Added]) -> Vec<LayerPlan> {
    let mut plans = layers(spec);
    for (add, number) in added.iter().zip(plans.len() as u32 + 1..) {
        plans.push(LayerPlan::of_given(
            number,
            LayerSpec::new(0),
            add.entries().to_vec(),
        ));
    }
    plans
}

/// The one planner: the plans of `layers`, bottom first, each made once above what those
/// before it leave. What they leave is kept up to date layer by layer rather than replayed
/// from the bottom, so the work is linear in the layers.
fn planned(layers: &[LayerSpec]) -> Vec<LayerPlan> {
    let mut plans: Vec<LayerPlan> = Vec::with_capacity(layers.len());
    let mut below = Below::default();
    // Only layers beneath the last one with links or whiteouts are ever looked at.
    let looked_at = layers
        .iter()
        .rposition(|l| l.extra.symlinks > 0 || l.extra.whiteouts > 0)
        .unwrap_or(0);
    let mut run = None;
    for (index, (layer, number)) in layers.iter().zip(1..).enumerate() {
        if let Some(options) = layer.run {
            run = Some((index, number, options));
            continue;
        }
        let plan = LayerPlan::new(number, *layer, &below);
        if index < looked_at {
            below.apply(&plan);
        }
        plans.push(plan);
    }
    // The program's layer lists the files of all the others, wherever it sits.
    if let Some((index, number, options)) = run {
        let files = if options.read > 0 {
            crate::runnable::surviving_files(plans.iter().map(|p| p.entries().collect()))
        } else {
            Vec::new()
        };
        let key: Vec<String> = layers
            .iter()
            .filter(|l| l.run.is_none())
            .map(LayerSpec::content_canonical)
            .collect();
        plans.insert(
            index,
            LayerPlan::run(number, &options, files, &key.join(",")),
        );
    }
    plans
}

/// The top directory of layer `number`: named after its place, or after its `seed=` name,
/// which no place's name can be.
fn top(number: u32, spec: &LayerSpec) -> String {
    match (spec.seed, spec.run) {
        (_, Some(_)) => crate::runnable::DIR.to_owned(),
        (Some(seed), None) => format!("seed-{seed}"),
        (None, None) => format!("layer{number}"),
    }
}

/// What the layers planned so far leave, as tar-form paths, their top directories left
/// out: what a whiteout may delete, and a link point at.
#[derive(Debug, Default)]
pub(crate) struct Below(Rootfs<()>);

impl Below {
    fn apply(&mut self, plan: &LayerPlan) {
        for entry in plan.entries() {
            match entry {
                Entry::Whiteout(path) => {
                    self.0.apply_whiteout(&path);
                }
                // Any layer's top: a whiteout layer's tar declares the tops it deletes in.
                Entry::Dir(path) if path.find('/') == Some(path.len() - 1) => {}
                other => self.0.add(other.path().to_owned(), ()),
            }
        }
    }

    /// The paths, sorted bytewise.
    fn paths(&self) -> Vec<String> {
        self.0.iter().map(|(path, ())| path.clone()).collect()
    }
}

impl LayerPlan {
    /// The `run` layer, number `number`: the programs and, when they read, the list of
    /// `files`; `key` seeds a random order. Its spec gets the size and file count it has.
    fn run(number: u32, options: &Run, files: Vec<String>, key: &str) -> Self {
        let entries = crate::runnable::entries(options, files, key);
        Self::of_given(number, LayerSpec::run(*options), entries)
    }

    /// Layer `number` of `entries` with the bytes of each file: the `run` layer, an
    /// `--add`. Its spec gets the size and file count the entries have.
    fn of_given(number: u32, mut spec: LayerSpec, entries: Vec<(Entry, Arc<[u8]>)>) -> Self {
        let mut bytes: std::collections::HashMap<String, Arc<[u8]>> =
            std::collections::HashMap::with_capacity(entries.len());
        let entries = entries
            .into_iter()
            .map(|(entry, data)| {
                bytes.insert(entry.path().to_owned(), data);
                entry
            })
            .collect();
        let tree = Tree::sorted(entries);
        let given: Vec<Arc<[u8]>> = tree
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::File(f) => bytes.get(&f.path).map(Arc::clone),
                _ => None,
            })
            .collect();
        spec.files = given.len() as u64;
        spec.size = given.iter().map(|b| b.len() as u64).sum();
        Self {
            number,
            spec,
            tree: Some(Arc::new(tree)),
            given: Some(Arc::new(Given(given))),
        }
    }

    /// Whether the layer's files are given rather than generated.
    pub(crate) fn has_given(&self) -> bool {
        self.given.is_some()
    }

    /// The bytes of file `index` when the layer's files are given (the `run` layer).
    pub(crate) fn given(&self, index: u64) -> Option<&Arc<[u8]>> {
        self.given.as_ref()?.0.get(usize::try_from(index).ok()?)
    }

    /// Layer `number` of a spec, above what the layers below leave (read only when it has
    /// links or whiteouts). A tree's or any listed layer's entries are drawn here, once.
    fn new(number: u32, spec: LayerSpec, lower: &Below) -> Self {
        let top = top(number, &spec);
        // A `seed=` layer's draws follow its name where others follow their place.
        let place = match spec.seed {
            Some(seed) => format!("seed\0{seed}"),
            None => number.to_string(),
        };
        let tree = if spec.layout == Layout::Tree {
            // The shape depends on what the layer holds and where, not on its encoding or
            // content ratio: those change no path.
            let key = format!("{}\0{}\0{place}", spec.size, spec.files);
            let sizes = if spec.even_sizes {
                Sizes::Even
            } else {
                Sizes::Skewed
            };
            Some(tree::draw(&top, &key, spec.files, spec.size, sizes))
        } else if spec.extra.total() > 0 {
            let flat = Self {
                number,
                spec,
                tree: None,
                given: None,
            };
            Some(flat.entries().collect())
        } else {
            None
        };
        let tree = tree.map(|mut entries| {
            // A `seed=` layer's links point within it alone: the rest of the image is not
            // its to know.
            let below =
                if (spec.extra.symlinks > 0 || spec.extra.whiteouts > 0) && spec.seed.is_none() {
                    lower.paths()
                } else {
                    Vec::new()
                };
            // Keyed apart from the tree: adding links to a layer moves none of its files.
            let key = format!("{}\0{place}", spec.content_canonical());
            crate::extra::add(&mut entries, &top, &key, &spec.extra, &below);
            Arc::new(Tree::sorted(entries))
        });
        Self {
            number,
            spec,
            tree,
            given: None,
        }
    }

    /// Whether the entries are listed (a tree, or links, whiteouts or empty directories),
    /// so that offsets into the tar come from a walk rather than a closed form.
    pub fn is_listed(&self) -> bool {
        self.tree.is_some()
    }

    /// The layer's top directory: `layerN`, or `seed-NAME` for a `seed=NAME` layer.
    pub fn dir(&self) -> String {
        top(self.number, &self.spec)
    }

    /// How many directory entries `entries` yields, `layerN/` included.
    pub fn dir_count(&self) -> u64 {
        match &self.tree {
            None => 1,
            Some(tree) => tree.dirs,
        }
    }

    /// A listed layer's entries as their tar headers and data measure them: the path, a
    /// link's target, a regular file's size. Borrowed, not built: offsets into a
    /// million-entry tar come from this walk.
    pub(crate) fn measures(&self) -> Option<impl Iterator<Item = Measure<'_>> + '_> {
        let tree = self.tree.as_ref()?;
        Some(tree.entries.iter().map(|entry| match entry {
            Entry::File(f) => Measure {
                path: &f.path,
                link: None,
                file: Some(f.size),
            },
            Entry::Symlink { path, target } | Entry::Hardlink { path, target, .. } => Measure {
                path,
                link: Some(target),
                file: None,
            },
            other => Measure {
                path: other.path(),
                link: None,
                file: None,
            },
        }))
    }

    /// How many tar entries the layer holds, of every kind.
    pub fn entry_count(&self) -> u64 {
        match &self.tree {
            None => 1 + self.spec.files,
            Some(tree) => tree.entries.len() as u64,
        }
    }

    /// How many entries other than regular files come before the first entry of file
    /// `index`'s part in [`entries_from`](Self::entries_from) (`layerN/` counted).
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
            _ => None,
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
        Box::new(self.entries_borrowed(first).map(Cow::into_owned))
    }

    /// [`entries_from`](Self::entries_from), a listed layer's borrowed: the tar writers
    /// copy no path.
    pub(crate) fn entries_borrowed(
        &self,
        first: u64,
    ) -> Box<dyn Iterator<Item = Cow<'_, Entry>> + '_> {
        let LayerSpec { size, files, .. } = self.spec;
        if let Some(tree) = &self.tree {
            let start = tree.part_start(first);
            return Box::new(tree.entries[start..].iter().map(Cow::Borrowed));
        }
        let base = size / files;
        let larger = size % files;
        let width = files.to_string().len();
        let top = (first == 0).then(|| Entry::Dir(format!("{}/", self.dir())));
        let files = top.into_iter().chain((first..files).map(move |index| {
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
        }));
        Box::new(files.map(Cow::Owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(list: &str) -> Vec<LayerPlan> {
        layers(&Spec::parse(list).expect("valid"))
    }

    fn paths(layer: &LayerPlan) -> Vec<String> {
        layer.entries().map(|e| e.path().to_owned()).collect()
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
                    .map(|e| e.path().to_owned())
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
    fn listings_of_every_kind_are_in_bytewise_order() {
        for list in [
            "1MB:tree=3000:symlinks=40:hardlinks=30:dirs=20,64KB:whiteouts=9:symlinks=5",
            "64KB:files=50:symlinks=5:hardlinks=5:dirs=3,1KB:whiteouts=3:dirs=1",
        ] {
            for layer in plan(list) {
                let all = paths(&layer);
                let mut sorted = all.clone();
                sorted.sort();
                assert_eq!(sorted, all, "{list}, layer {}", layer.number);
            }
        }
    }

    #[test]
    fn whiteouts_never_take_a_layers_top_directory() {
        // Layer 3 draws from what layers 1 and 2 leave, layer 2's tar declaring `layer1/`.
        let layers = plan("64KB:tree=40,1KB:whiteouts=3,1KB:whiteouts=30");
        for layer in &layers[1..] {
            for entry in layer.entries() {
                if let Entry::Whiteout(path) = entry {
                    assert!(path.matches('/').count() >= 1, "{path}");
                    assert!(
                        !(path.ends_with("/.wh..wh..opq") && path.matches('/').count() == 1),
                        "{path}"
                    );
                }
            }
        }
        let count = |n: usize| {
            layers[n]
                .entries()
                .filter(|e| matches!(e, Entry::Whiteout(_)))
                .count()
        };
        assert_eq!((count(1), count(2)), (3, 30));
        let mut below = Below::default();
        layers[..2].iter().for_each(|layer| below.apply(layer));
        let left = below.paths();
        assert!(!left.is_empty());
        assert!(
            left.iter()
                .all(|p| p.find('/').is_some_and(|at| at + 1 < p.len())),
            "a top directory among {left:?}"
        );
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
