//! A push reads an OCI layout: builds that push without the cache stage one in a temporary
//! directory, as their last output, and push it before any other output lands.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::progress::Progress;
use crate::request::{BuildRequest, Output, Pushed};
use crate::Error;

/// A temporary directory for the layout a push reads, when `outputs` include a registry.
pub(crate) fn staging(outputs: &[Output]) -> Result<Option<TempDir>, Error> {
    if !outputs.contains(&Output::Registry) {
        return Ok(None);
    }
    tempfile::Builder::new()
        .prefix("image-maker-push-")
        .tempdir()
        .map(Some)
        .map_err(Error::io(
            "create a temporary directory in",
            std::env::temp_dir(),
        ))
}

/// Where in a [`staging`] directory the layout goes.
pub(crate) fn layout(staging: &TempDir) -> PathBuf {
    staging.path().join("layout")
}

/// Pushes the only image of `layout` as `request.reference`, with `request`'s options.
#[cfg(feature = "registry")]
pub(crate) fn push(
    layout: &Path,
    request: &BuildRequest,
    progress: &mut Progress,
) -> Result<Pushed, Error> {
    let mut options = request.push.clone();
    if options.mount_from.is_none() {
        // A base on the same registry has its blobs there already: mount them from it.
        options.mount_from = request
            .base
            .as_ref()
            .and_then(|base| base.repository_on(request.reference.domain()))
            .filter(|repository| repository != request.reference.path());
    }
    let pushed = crate::registry::push(layout, None, &request.reference, &options, progress)?;
    progress.stage(format!("pushed {}@{}", pushed.reference, pushed.digest));
    Ok(pushed)
}

/// Unreachable in practice: [`BuildRequest::check_features`] turns the request down first.
#[cfg(not(feature = "registry"))]
pub(crate) fn push(_: &Path, _: &BuildRequest, _: &mut Progress) -> Result<Pushed, Error> {
    Err(Error::FeatureDisabled {
        feature: "registry",
        what: "`--output registry`",
    })
}
