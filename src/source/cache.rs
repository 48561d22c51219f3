//! `cache:SPEC`: the cached image of a layer list, read as the OCI layout it is stored as.

use std::io::Read;

use super::oci_dir::OciDir;
use super::{Blobs, Descriptor, OpenError};
use crate::cache::{Cache, Cached};
use crate::{BuildRequest, Error, Platform, Progress, Reference, Spec};

#[derive(Debug)]
pub(crate) struct CacheSource {
    layout: OciDir,
    /// Held while the image is read: gc leaves an entry in use alone.
    _cached: Cached,
}

/// The entry for `spec` on `platforms`, built first if the cache lacks it (as `push
/// cache:SPEC` does).
pub(crate) fn open(
    spec: &str,
    platforms: &[Platform],
    progress: &mut Progress,
) -> Result<CacheSource, Error> {
    let spec = Spec::parse(spec)?;
    // The cache's key ignores the name; any valid one does.
    let reference = Reference::parse("image-maker/verify:latest")?;
    let request = BuildRequest::new(spec, reference).platforms(platforms.to_vec());
    let (cached, _) = Cache::from_env()?.acquire(&request, progress)?;
    Ok(CacheSource {
        layout: OciDir::open(&cached.dir, None)?,
        _cached: cached,
    })
}

impl Blobs for CacheSource {
    fn top(&self) -> &Descriptor {
        self.layout.top()
    }

    fn open(&mut self, descriptor: &Descriptor) -> Result<Box<dyn Read + '_>, OpenError> {
        self.layout.open(descriptor)
    }
}
