//! Names and sizes of every file in every layer: the one plan both builders follow, so the
//! native layers and the Dockerfile build context hold the same paths and bytes.

use crate::spec::{format_size, LayerSpec, Spec};

/// One layer's directory and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPlan {
    /// 1-based, as in `layer1/`.
    pub number: u32,
    pub spec: LayerSpec,
}

/// One regular file of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    /// 0-based index within the layer; part of the content seed.
    pub index: u64,
    /// Path relative to the layer root, e.g. `layer1/1GB-file`.
    pub path: String,
    pub size: u64,
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
    /// The layer's only directory, `layerN`.
    pub fn dir(&self) -> String {
        format!("layer{}", self.number)
    }

    /// The files in tar order (sorted by path): a lazy iterator, so a layer of a million
    /// files costs no memory up front.
    pub fn files(&self) -> impl Iterator<Item = FilePlan> + '_ {
        let LayerSpec { size, files } = self.spec;
        let base = size / files;
        let larger = size % files;
        let width = files.to_string().len();
        (0..files).map(move |index| {
            let name = if files == 1 {
                format!("{}-file", format_size(size))
            } else {
                // Zero-padded so that name order is number order.
                format!("file-{:0width$}", index + 1)
            };
            FilePlan {
                index,
                path: format!("{}/{name}", self.dir()),
                size: base + u64::from(index < larger),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(list: &str) -> Vec<LayerPlan> {
        layers(&Spec::parse(list).expect("valid"))
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
        let mut sorted = files.clone();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(sorted, files);
    }
}
