//! [`MockRegistry`]: the server as a test fixture.

use std::net::SocketAddr;

use super::{ServeOptions, Server};
use crate::spec::tag_of;
use crate::Error;

/// A registry on a free loopback port inside the test process, serving every spec by its
/// tag; it stops when dropped. Layer digests are kept in the user's cache directory
/// (`IMAGE_MAKER_CACHE_DIR`), as [`crate::fixture()`]'s images are, so a spec is hashed once
/// across test runs.
///
/// ```no_run
/// let registry = image_maker::MockRegistry::start()?;
/// let image = registry.reference("1GB,512MB"); // "127.0.0.1:PORT/mock:1GB_512MB"
/// # Ok::<(), image_maker::Error>(())
/// ```
#[derive(Debug)]
pub struct MockRegistry {
    server: Server,
}

impl MockRegistry {
    /// Starts serving on `127.0.0.1` at a port the system picks.
    pub fn start() -> Result<Self, Error> {
        let mut options = ServeOptions::new(SocketAddr::from(([127, 0, 0, 1], 0)));
        options.cache_dir = crate::Cache::from_env()
            .ok()
            .map(|c| c.root().to_path_buf());
        Self::with_options(options)
    }

    /// Starts a server with `options` (auth, TLS, an images file, …).
    pub fn with_options(options: ServeOptions) -> Result<Self, Error> {
        Ok(Self {
            server: Server::start(options)?,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// `127.0.0.1:PORT/mock:TAG`, the image of `spec`. Panics when the spec is invalid or
    /// has no tag form; [`MockRegistry::try_reference`] returns the error instead.
    pub fn reference(&self, spec: &str) -> String {
        self.try_reference("mock", spec)
            .unwrap_or_else(|e| panic!("no image for `{spec}`: {e}"))
    }

    /// `127.0.0.1:PORT/REPOSITORY:TAG`, e.g. with `faults/corrupt/mock` for a corrupt image.
    pub fn try_reference(&self, repository: &str, spec: &str) -> Result<String, Error> {
        Ok(format!("{}/{repository}:{}", self.host(), tag_of(spec)?))
    }
}
