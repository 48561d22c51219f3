//! What `verify` finds wrong with an image: always the blob, and where in it.

/// The first thing found wrong with an image (exit 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// A descriptor names a blob the source does not have.
    #[error("blob `{blob}` is missing: {detail}")]
    Missing {
        /// The blob's digest.
        blob: String,
        /// Where it was looked for.
        detail: String,
    },
    /// A blob's bytes differ from what its descriptor, the config or the spec says.
    #[error("blob `{blob}`{}: {what}: expected {expected}, found {found}", place_text(.place))]
    Mismatch {
        /// The blob's digest, as its descriptor gives it.
        blob: String,
        /// Where in the blob: a layer's entry and byte offset, or nothing for the blob as a whole.
        place: Option<Place>,
        /// What was compared: `digest`, `size`, `diff_id`, `entry`, `byte`, ….
        what: String,
        /// What the descriptor, config or spec says.
        expected: String,
        /// What the bytes hold.
        found: String,
    },
    /// A blob cannot be parsed as what it should be (JSON, gzip, zstd, tar).
    #[error("blob `{blob}`{} is malformed: {detail}", place_text(.place))]
    Malformed {
        /// The blob's digest.
        blob: String,
        /// Where the reading stopped, inside a layer.
        place: Option<Place>,
        /// The parser's complaint.
        detail: String,
    },
}

/// A place inside a layer: its number in the manifest, the path of the entry and a byte
/// offset within that entry's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// 1-based layer number.
    pub layer: usize,
    /// The entry's path inside the layer; `None` past the last entry.
    pub path: Option<String>,
    /// The byte offset inside the entry's data, when the entry has data.
    pub offset: Option<u64>,
}

fn place_text(place: &Option<Place>) -> String {
    match place {
        None => String::new(),
        Some(Place {
            layer,
            path,
            offset,
        }) => {
            let mut text = format!(" (layer {layer}");
            if let Some(path) = path {
                text.push_str(&format!(", `{path}`"));
            }
            if let Some(offset) = offset {
                text.push_str(&format!(", byte {offset}"));
            }
            text.push(')');
            text
        }
    }
}

impl ImageError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::Missing { .. } => {
                "the image is incomplete: copy or push it again from a sound source".into()
            }
            Self::Mismatch { .. } | Self::Malformed { .. } => {
                "the image was damaged or changed after it was built: build or copy it again".into()
            }
        })
    }
}
