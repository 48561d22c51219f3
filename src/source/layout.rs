//! The `index.json` of an OCI layout, on disk or in an archive: which image a tag names.

use serde_json::Value;

use super::{Descriptor, SourceError};
use crate::image::REF_NAME;

/// The descriptor in `index` (the bytes of `index.json`) tagged `tag`, or its only one.
pub(super) fn choose(
    name: &str,
    index: &[u8],
    tag: Option<&str>,
) -> Result<Descriptor, SourceError> {
    let unreadable = |detail: String| SourceError::Unreadable {
        name: name.to_owned(),
        detail,
    };
    let index: Value =
        serde_json::from_slice(index).map_err(|e| unreadable(format!("index.json: {e}")))?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| unreadable("index.json has no `manifests`".into()))?;
    let chosen = match tag {
        Some(tag) => manifests
            .iter()
            .find(|m| m["annotations"][REF_NAME].as_str() == Some(tag))
            .ok_or_else(|| SourceError::NoSuchTag {
                name: name.to_owned(),
                tag: tag.to_owned(),
                available: tags(manifests),
            })?,
        None => match manifests.as_slice() {
            [one] => one,
            [] => return Err(unreadable("index.json lists no image".into())),
            many => {
                return Err(SourceError::Ambiguous {
                    name: name.to_owned(),
                    count: many.len(),
                })
            }
        },
    };
    Descriptor::parse(chosen).map_err(|e| unreadable(format!("index.json: {e}")))
}

fn tags(manifests: &[Value]) -> String {
    let tags: Vec<String> = manifests
        .iter()
        .filter_map(|m| m["annotations"][REF_NAME].as_str())
        .map(|t| format!("`{t}`"))
        .collect();
    if tags.is_empty() {
        "no tags".into()
    } else {
        tags.join(", ")
    }
}
