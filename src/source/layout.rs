//! The `index.json` of an OCI layout, on disk or in an archive: which image a tag names.

use serde_json::Value;

use super::{Descriptor, SourceError};
use crate::image::{choose_tagged, Unchosen};

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
    let chosen = choose_tagged(manifests, tag).map_err(|why| match why {
        Unchosen::NoSuchTag(available) => SourceError::NoSuchTag {
            name: name.to_owned(),
            tag: tag.unwrap_or_default().to_owned(),
            available,
        },
        Unchosen::Empty => unreadable("index.json lists no image".into()),
        Unchosen::Ambiguous(count) => SourceError::Ambiguous {
            name: name.to_owned(),
            count,
        },
    })?;
    Descriptor::parse(chosen).map_err(|e| unreadable(format!("index.json: {e}")))
}
