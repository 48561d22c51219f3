//! Test fixtures: mock images built once per spec through the cache and shared by every
//! test and every process that asks for the same spec.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use crate::cache::{self, Cache, Cached};
#[cfg(feature = "engine")]
use crate::engine::{self, Engine, EngineKind};
use crate::image::LayerInfo;
#[cfg(feature = "engine")]
use crate::Output;
use crate::{BuildRequest, Error, Platform, Progress, Reference, Spec};

/// One slot per cache entry, so a process asks the disk once per spec; a slot's own lock
/// makes concurrent tests wait for the first one's build instead of starting their own.
type Slot = Arc<Mutex<Option<Arc<Cached>>>>;
static IN_PROCESS: LazyLock<Mutex<HashMap<String, Slot>>> = LazyLock::new(Default::default);

/// A mock image in the cache, ready to use. The process that got it keeps it in use until
/// it ends (it asks the cache once per spec), and `cache gc` leaves it alone until then.
///
/// It is as trustworthy as what a build exports from the cache: when it is acquired, every
/// blob of the entry is checked to be there with its size, inode and modification time as
/// recorded when its bytes were hashed; a blob that changed since is hashed again, and a
/// damaged entry is built again. A change that keeps a file's size and modification time (a
/// failing disk) is found only by hashing: `image-maker cache verify`.
#[derive(Debug, Clone)]
pub struct MockImage {
    reference: String,
    cached: Arc<Cached>,
}

impl MockImage {
    /// `name:tag`: the `reference` asked for, or `image-maker/mock:<key>`.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Digest of the manifest.
    pub fn digest(&self) -> &str {
        &self.cached.entry.digest
    }

    /// Digest of the config: the image ID docker and podman show.
    pub fn config_digest(&self) -> &str {
        &self.cached.entry.config_digest
    }

    /// The spec in canonical form.
    pub fn spec(&self) -> &str {
        &self.cached.entry.spec
    }

    pub fn platform(&self) -> &str {
        &self.cached.entry.platform
    }

    /// The cached OCI layout; its blobs are read-only and shared, so copy before changing
    /// anything. They passed the checks described on [`MockImage`] when it was acquired.
    pub fn oci_dir(&self) -> &Path {
        &self.cached.dir
    }

    pub fn layers(&self) -> &[LayerInfo] {
        &self.cached.entry.layers
    }

    /// An oci-archive of the image (also loadable with `docker load -i`), made on first use
    /// and kept in the cache.
    pub fn oci_archive(&self) -> Result<PathBuf, Error> {
        self.cached.archive(&mut Progress::hidden())
    }

    /// Loads the image into `engine` under [`reference`](Self::reference), unless the engine
    /// has it already. The engine is found as the CLI finds it (`DOCKER_HOST`, contexts).
    #[cfg(feature = "engine")]
    pub fn load(&self, engine: EngineKind) -> Result<(), Error> {
        let engine = engine::detect(Some(engine))?;
        if self.loaded_in(&engine) {
            return Ok(());
        }
        let mut request = self
            .cached
            .request(Reference::parse(&self.reference)?)?
            .output(Output::Engine);
        request.engine = Some(engine.kind);
        self.cached.export(&request, &mut Progress::hidden())?;
        Ok(())
    }

    /// Whether the engine's image under this reference is this image: docker shows the
    /// config digest as the ID, or with the containerd store the manifest digest.
    #[cfg(feature = "engine")]
    fn loaded_in(&self, engine: &Engine) -> bool {
        crate::build::dockerfile::inspect::inspect(engine, &self.reference)
            .is_ok_and(|image| image.id == self.config_digest() || image.id == self.digest())
    }
}

/// A fixture for a layer list, e.g. `fixture("1GB,512MB")`: built on first use, then
/// taken from the cache (`IMAGE_MAKER_CACHE_DIR`, else `~/.cache/image-maker`).
pub fn fixture(layers: &str) -> Result<MockImage, Error> {
    Fixture::new(layers).get()
}

/// A fixture with options: `Fixture::new("64MB").platform("linux/arm64").get()`.
#[derive(Debug, Clone)]
pub struct Fixture {
    layers: String,
    platform: Option<String>,
    reference: Option<String>,
    cache: Option<Cache>,
}

impl Fixture {
    pub fn new(layers: impl Into<String>) -> Self {
        Self {
            layers: layers.into(),
            platform: None,
            reference: None,
            cache: None,
        }
    }

    /// `os/arch[/variant]`; linux/amd64 by default.
    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.platform = Some(platform.into());
        self
    }

    /// The name the image goes by in [`MockImage::reference`] and in engines.
    pub fn reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// A cache other than the default one.
    pub fn cache(mut self, cache: Cache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// What the fixture builds, with no outputs; named as [`MockImage::reference`] says.
    pub fn request(&self) -> Result<BuildRequest, Error> {
        let spec = Spec::parse(&self.layers)?;
        let platform = self
            .platform
            .as_deref()
            .map(Platform::parse)
            .transpose()?
            .unwrap_or_default();
        // The cache's own name until the key is known: the key does not depend on it.
        let provisional = Reference::parse("image-maker/mock:latest")?;
        let mut request = BuildRequest::new(spec, provisional).platform(platform);
        request.reference = match &self.reference {
            Some(r) => Reference::parse(r)?,
            None => cache::cache_reference(&cache::key(&request))?,
        };
        Ok(request)
    }

    pub fn get(&self) -> Result<MockImage, Error> {
        let request = self.request()?;
        let cache = match &self.cache {
            Some(cache) => cache.clone(),
            None => Cache::from_env()?,
        };
        let key = cache::key(&request);
        let slot = {
            let mut slots = IN_PROCESS.lock().unwrap_or_else(PoisonError::into_inner);
            let id = format!("{}\0{key}", cache.root().display());
            Arc::clone(slots.entry(id).or_default())
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = match &*slot {
            Some(cached) => Arc::clone(cached),
            None => {
                let (cached, _) = cache.acquire(&request, &mut Progress::hidden())?;
                Arc::clone(slot.insert(Arc::new(cached)))
            }
        };
        Ok(MockImage {
            reference: request.reference.to_string(),
            cached,
        })
    }
}

/// What `#[mock_image]` expands to. Not a public API.
#[doc(hidden)]
pub mod __private {
    use super::{Fixture, MockImage};

    /// The fixture for a test; a test cannot go on without it, so failing is a panic with
    /// the whole error.
    #[allow(clippy::panic)]
    pub fn mock_image(layers: &str, platform: Option<&str>, reference: Option<&str>) -> MockImage {
        let mut fixture = Fixture::new(layers);
        if let Some(platform) = platform {
            fixture = fixture.platform(platform);
        }
        if let Some(reference) = reference {
            fixture = fixture.reference(reference);
        }
        match fixture.get() {
            Ok(image) => image,
            Err(e) => match e.hint() {
                Some(hint) => panic!("mock image `{layers}`: {e}\nhint: {hint}"),
                None => panic!("mock image `{layers}`: {e}"),
            },
        }
    }
}
