//! Test fixtures: mock images built once per spec and shared by every test and every
//! process that asks for the same spec: through the cache (the native builder), or in a
//! container engine that keeps the image, found again by its cache key (the dockerfile
//! builder).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use crate::cache::{self, Cache, Cached};
use crate::engine::EngineKind;
#[cfg(feature = "engine")]
use crate::engine::{self, Engine};
use crate::error::UsageError;
use crate::image::LayerInfo;
use crate::request::PlatformImage;
use crate::{
    BuildRequest, Builder, Built, Error, ImageConfig, Output, Platform, Progress, Reference, Spec,
};

/// One slot per image, so a process asks the disk (or the engine) once per spec; a slot's
/// own lock makes concurrent tests wait for the first one's build instead of starting their
/// own.
type Slot = Arc<Mutex<Option<Stored>>>;
static IN_PROCESS: LazyLock<Mutex<HashMap<String, Slot>>> = LazyLock::new(Default::default);

/// A mock image, ready to use: an OCI layout in the cache (the native builder, the
/// default), or an image in a container engine (the dockerfile builder).
///
/// A cached image stays in use by the process that got it until it ends (it asks the cache
/// once per spec), and `cache gc` leaves it alone until then. An engine's image exists only
/// in the engine, under [`reference`](Self::reference): it has no OCI layout or archive on
/// disk ([`try_oci_dir`](Self::try_oci_dir) and [`oci_archive`](Self::oci_archive) say so).
///
/// It is as trustworthy as what a build exports from the cache: when it is acquired, every
/// blob of the entry is checked to be there with its size, inode and modification time as
/// recorded when its bytes were hashed; a blob that changed since is hashed again, and a
/// damaged entry is built again. A change that keeps a file's size and modification time (a
/// failing disk) is found only by hashing: `image-maker cache rehash`.
///
/// ```no_run
/// let image = image_maker::fixture("1MB,2KB:files=3")?;
/// // `oci:DIR:TAG` as skopeo, umoci and image-maker take it.
/// let source = image.oci_reference()?;
/// let status = std::process::Command::new("skopeo")
///     .args(["inspect", "--raw", &source])
///     .status()?;
/// assert!(status.success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct MockImage {
    reference: Reference,
    spec: Spec,
    platform: Platform,
    stored: Stored,
}

#[derive(Debug, Clone)]
enum Stored {
    Cache(Arc<Cached>),
    Engine(Arc<InEngine>),
}

/// What the dockerfile builder reported for an image it built, or found, in `engine`.
#[derive(Debug)]
struct InEngine {
    engine: EngineKind,
    built: Built,
}

impl MockImage {
    /// `name:tag`: the `reference` asked for, or `image-maker/mock:<key>`. An engine's image
    /// is tagged so in the engine (podman and buildah show `localhost/` in front).
    ///
    /// The cached layout is shared by every fixture of the spec, whatever its reference, so
    /// its `index.json` names the image by the cache key instead: to name the image in it,
    /// use [`oci_reference`](Self::oci_reference).
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// `oci:DIR:TAG`, the image in its cached layout, as skopeo, umoci and image-maker take
    /// it (`skopeo copy oci:DIR:TAG …`). [`Error::EngineOnly`] for an image of the
    /// dockerfile builder.
    pub fn oci_reference(&self) -> Result<String, Error> {
        match &self.stored {
            Stored::Cache(cached) => {
                let tag = cache::cache_reference(&cached.entry.key)?;
                Ok(format!("oci:{}:{}", cached.dir.display(), tag.tag()))
            }
            Stored::Engine(image) => Err(self.engine_only(image, "OCI layout")),
        }
    }

    /// Digest of the manifest, or of the index for a multi-platform image: what
    /// `NAME@DIGEST` pulls. Empty for an engine's image: an engine keeps no manifest of an
    /// image it built, only the config ([`config_digest`](Self::config_digest)).
    pub fn digest(&self) -> &str {
        match &self.stored {
            Stored::Cache(cached) => &cached.entry.digest,
            Stored::Engine(image) => &image.built.digest,
        }
    }

    /// Digest of the image index of a multi-platform image; `None` for a single image.
    pub fn index_digest(&self) -> Option<&str> {
        (!self.manifests().is_empty()).then(|| self.digest())
    }

    /// Each platform's image of a multi-platform image, in the index's order: platform,
    /// manifest and config digests, layers. Empty for a single image.
    pub fn manifests(&self) -> &[PlatformImage] {
        match &self.stored {
            Stored::Cache(cached) => &cached.entry.manifests,
            Stored::Engine(_) => &[],
        }
    }

    /// The image of `platform` (`os/arch[/variant]`) in a multi-platform image.
    pub fn manifest(&self, platform: &str) -> Option<&PlatformImage> {
        self.manifests().iter().find(|m| m.platform == platform)
    }

    /// Digest of the config: the image ID docker and podman show.
    pub fn config_digest(&self) -> &str {
        match &self.stored {
            Stored::Cache(cached) => &cached.entry.config_digest,
            Stored::Engine(image) => &image.built.config_digest,
        }
    }

    /// The spec (`spec().canonical()` is its canonical form).
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The platform; the first platform of a multi-platform image.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The engine an image of the dockerfile builder lives in; `None` for a cached image.
    pub fn engine(&self) -> Option<EngineKind> {
        match &self.stored {
            Stored::Cache(_) => None,
            Stored::Engine(image) => Some(image.engine),
        }
    }

    /// The cached OCI layout (for a multi-platform image, its `index.json` names the
    /// index); its blobs are read-only and shared, so copy before changing
    /// anything. They passed the checks described on [`MockImage`] when it was acquired.
    ///
    /// # Panics
    /// For an image of the dockerfile builder, which lives in its engine only and has no
    /// OCI layout; [`try_oci_dir`](Self::try_oci_dir) returns that as an error instead.
    #[allow(clippy::panic)]
    pub fn oci_dir(&self) -> &Path {
        match self.try_oci_dir() {
            Ok(dir) => dir,
            Err(e) => match e.hint() {
                Some(hint) => panic!("{e}\nhint: {hint}"),
                None => panic!("{e}"),
            },
        }
    }

    /// The cached OCI layout, or [`Error::EngineOnly`] for an image of the dockerfile
    /// builder.
    pub fn try_oci_dir(&self) -> Result<&Path, Error> {
        match &self.stored {
            Stored::Cache(cached) => Ok(&cached.dir),
            Stored::Engine(image) => Err(self.engine_only(image, "OCI layout")),
        }
    }

    /// Each layer's digest, diff_id, size, file count and payload (the first platform's, for
    /// a multi-platform image: see [`manifests`](Self::manifests)). For an engine's image,
    /// digest and diff_id are both the engine's diff_id (its layers are uncompressed tars)
    /// and the size is 0: the engine does not tell it without a `save`.
    pub fn layers(&self) -> &[LayerInfo] {
        match &self.stored {
            Stored::Cache(cached) => &cached.entry.layers,
            Stored::Engine(image) => &image.built.layers,
        }
    }

    /// An oci-archive of the image (also loadable with `docker load -i`), made on first use
    /// and kept in the cache. [`Error::EngineOnly`] for an image of the dockerfile builder:
    /// `docker save` (or podman's) writes that one.
    pub fn oci_archive(&self) -> Result<PathBuf, Error> {
        match &self.stored {
            Stored::Cache(cached) => cached.archive(&mut Progress::hidden()),
            Stored::Engine(image) => Err(self.engine_only(image, "oci-archive")),
        }
    }

    /// Loads the image into `engine` under [`reference`](Self::reference), unless the engine
    /// has it already. The engine is found as the CLI finds it (`DOCKER_HOST`, contexts).
    ///
    /// An image of the dockerfile builder is in its own engine already (this tags it again
    /// if the tag went); [`Error::EngineOnly`] for any other engine.
    #[cfg(feature = "engine")]
    pub fn load(&self, engine: EngineKind) -> Result<(), Error> {
        let cached = match &self.stored {
            Stored::Cache(cached) => cached,
            Stored::Engine(image) if image.engine == engine => {
                let engine = engine::detect_builder(Some(engine))?;
                return crate::build::dockerfile::retag(
                    &engine,
                    self.config_digest(),
                    &self.reference.to_string(),
                );
            }
            Stored::Engine(image) => {
                return Err(self.engine_only(image, "copy to load into another engine"))
            }
        };
        let engine = engine::detect(Some(engine))?;
        if self.loaded_in(&engine) {
            return Ok(());
        }
        let mut request = cached
            .request(self.reference.clone())?
            .output(Output::Engine);
        request.engine = Some(engine.kind);
        cached.export(&request, &mut Progress::hidden())?;
        Ok(())
    }

    /// Without the `engine` feature there is no engine to load into: this says so, naming
    /// the feature and the `Cargo.toml` line that enables it (`oci-image-maker = { version =
    /// "0.1", features = ["engine"] }`), instead of leaving the call to fail to compile with
    /// no word of why.
    #[cfg(not(feature = "engine"))]
    pub fn load(&self, engine: EngineKind) -> Result<(), Error> {
        let _ = engine;
        Err(Error::FeatureDisabled {
            feature: "engine",
            what: "`MockImage::load`",
        })
    }

    /// Whether the engine's image under this reference is this image: docker shows the
    /// config digest as the ID, or with the containerd store the manifest digest.
    #[cfg(feature = "engine")]
    fn loaded_in(&self, engine: &Engine) -> bool {
        // Of an index, the engine holds its own platform's image.
        let configs: Vec<&str> = std::iter::once(self.config_digest())
            .chain(self.manifests().iter().map(|m| m.config_digest.as_str()))
            .collect();
        crate::build::dockerfile::inspect::inspect(engine, &self.reference.to_string())
            .is_ok_and(|image| configs.contains(&image.id.as_str()) || image.id == self.digest())
    }

    fn engine_only(&self, image: &InEngine, what: &'static str) -> Error {
        Error::EngineOnly {
            reference: self.reference.to_string(),
            engine: image.engine.name(),
            what,
        }
    }
}

/// A fixture for a layer list, e.g. `fixture("1GB,512MB")`: built on first use, then
/// taken from the cache (`IMAGE_MAKER_CACHE_DIR`, else `~/.cache/image-maker`).
///
/// ```no_run
/// let image = image_maker::fixture("64MB,1KB:files=3")?;
/// assert_eq!(image.layers().len(), 2);
/// println!("{} in {}", image.digest(), image.oci_dir().display());
/// # Ok::<(), image_maker::Error>(())
/// ```
pub fn fixture(layers: &str) -> Result<MockImage, Error> {
    Fixture::new(layers).get()
}

/// A fixture with options.
///
/// ```no_run
/// use image_maker::Fixture;
///
/// let image = Fixture::new("64MB:tree=500")
///     .platform("linux/arm64")
///     .reference("mock/arm:1")
///     .get()?;
/// assert_eq!(image.platform(), "linux/arm64");
/// # Ok::<(), image_maker::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Fixture {
    layers: String,
    platform: Option<String>,
    shared_layers: bool,
    reference: Option<String>,
    cache: Option<Cache>,
    builder: Builder,
    engine: Option<EngineKind>,
    config: ImageConfig,
    /// The `run` entry's options, when the image is to run.
    runnable: Option<String>,
}

impl Fixture {
    /// A fixture for the layer list `layers` (the CLI's `--layer-sizes` grammar).
    pub fn new(layers: impl Into<String>) -> Self {
        Self {
            layers: layers.into(),
            platform: None,
            shared_layers: false,
            reference: None,
            cache: None,
            builder: Builder::Native,
            engine: None,
            config: ImageConfig::new(),
            runnable: None,
        }
    }

    /// Makes the image run: our entrypoint program (linux/amd64 and linux/arm64) writes
    /// `ready` and waits for SIGTERM, as the layer list's `run` entry does. Options as that
    /// entry takes them with [`runnable_with`](Self::runnable_with).
    ///
    /// ```no_run
    /// use image_maker::{EngineKind, Fixture};
    ///
    /// let image = Fixture::new("1MB").runnable().get()?;
    /// image.load(EngineKind::Docker)?;
    /// // `docker run IMAGE` prints `ready`.
    /// # Ok::<(), image_maker::Error>(())
    /// ```
    pub fn runnable(self) -> Self {
        self.runnable_with("")
    }

    /// [`runnable`](Self::runnable) with the `run` entry's options, e.g.
    /// `"ready=up:read=all:order=random"`.
    pub fn runnable_with(mut self, options: impl Into<String>) -> Self {
        self.runnable = Some(options.into());
        self
    }

    /// The image's config beyond its layers: entrypoint, command, env, labels, ports, … and
    /// the manifest's annotations. Part of what the image is: a fixture with a config is
    /// another image, cached apart, from one without.
    ///
    /// ```no_run
    /// use image_maker::{Fixture, ImageConfig};
    ///
    /// let config = ImageConfig::new().entrypoint("/bin/app -v")?.env("MODE=test")?;
    /// let image = Fixture::new("1MB").config(config).get()?;
    /// # Ok::<(), image_maker::Error>(())
    /// ```
    pub fn config(mut self, config: ImageConfig) -> Self {
        self.config = config;
        self
    }

    /// `os/arch[/variant]`; linux/amd64 by default. A comma-separated list
    /// (`"linux/amd64,linux/arm64"`) makes an index with one image per platform.
    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.platform = Some(platform.into());
        self
    }

    /// Every platform gets the linux/amd64 layer bytes instead of its own, so an index's
    /// images share their layer blobs.
    pub fn shared_layers(mut self, shared: bool) -> Self {
        self.shared_layers = shared;
        self
    }

    /// The name the image goes by in [`MockImage::reference`] and in engines.
    pub fn reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// A cache other than the default one (for the native builder's images).
    pub fn cache(mut self, cache: Cache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// How the image is made. [`Builder::Native`] (the default) gives an OCI layout in the
    /// cache. [`Builder::Dockerfile`] gives an image that lives in a container engine: built
    /// there on first use, or found there by the cache key an earlier build labelled it
    /// with, and tagged as [`MockImage::reference`]. It needs the `engine` feature.
    pub fn builder(mut self, builder: Builder) -> Self {
        self.builder = builder;
        self
    }

    /// The engine the dockerfile builder uses; without it, the first that answers (finch on
    /// macOS, then docker, podman, nerdctl, buildah). An option of the dockerfile builder
    /// only: with the native builder, [`get`](Self::get) fails.
    pub fn engine(mut self, engine: EngineKind) -> Self {
        self.engine = Some(engine);
        self
    }

    /// What the fixture builds, with no outputs; named as [`MockImage::reference`] says.
    pub fn request(&self) -> Result<BuildRequest, Error> {
        let mut spec = Spec::parse(&self.layers)?;
        if let Some(options) = &self.runnable {
            spec = spec.with_run(options)?;
        }
        let platforms = self
            .platform
            .as_deref()
            .map(Platform::parse_list)
            .transpose()?
            .unwrap_or_default();
        if self.builder == Builder::Native && self.engine.is_some() {
            return Err(UsageError::DockerfileOnly("Fixture::engine").into());
        }
        // The cache's own name until the key is known: the key does not depend on it.
        let provisional = Reference::parse("image-maker/mock:latest")?;
        let mut request = BuildRequest::new(spec, provisional)
            .platforms(platforms)
            .config(self.config.clone());
        request.shared_layers = self.shared_layers;
        request.builder = self.builder;
        request.engine = self.engine;
        request.reference = match &self.reference {
            Some(r) => Reference::parse(r)?,
            None => cache::cache_reference(&cache::key(&request))?,
        };
        Ok(request)
    }

    /// The image: built on first use, then taken from the cache (or the engine).
    pub fn get(&self) -> Result<MockImage, Error> {
        let request = self.request()?;
        let key = cache::key(&request);
        let (id, cache) = match request.builder {
            Builder::Native => {
                let cache = match &self.cache {
                    Some(cache) => cache.clone(),
                    None => Cache::from_env()?,
                };
                (format!("{}\0{key}", cache.root().display()), Some(cache))
            }
            // The engine's image carries its name: one slot per engine and name.
            Builder::Dockerfile => {
                let engine = request.engine.map_or("any", EngineKind::name);
                (format!("{engine}\0{key}\0{}", request.reference), None)
            }
        };
        let slot = {
            let mut slots = IN_PROCESS.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(slots.entry(id).or_default())
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let stored = match (&*slot, cache) {
            (Some(stored), _) => stored.clone(),
            (None, Some(cache)) => {
                let (cached, _) = cache.acquire(&request, &mut Progress::hidden())?;
                slot.insert(Stored::Cache(Arc::new(cached))).clone()
            }
            (None, None) => {
                let image = in_engine(request.clone())?;
                slot.insert(Stored::Engine(Arc::new(image))).clone()
            }
        };
        Ok(MockImage {
            reference: request.reference.clone(),
            spec: request.spec.clone(),
            platform: request.platform.clone(),
            stored,
        })
    }
}

/// The dockerfile builder's image for `request`, in the engine named or the first that
/// answers: found by its label, else built.
fn in_engine(mut request: BuildRequest) -> Result<InEngine, Error> {
    let engine = builder_engine(request.engine)?;
    request.engine = Some(engine);
    request.outputs = vec![Output::Engine];
    let built = crate::build::build(&request, &mut Progress::hidden())?;
    Ok(InEngine { engine, built })
}

#[cfg(feature = "engine")]
fn builder_engine(preferred: Option<EngineKind>) -> Result<EngineKind, Error> {
    Ok(engine::detect_builder(preferred)?.kind)
}

#[cfg(not(feature = "engine"))]
fn builder_engine(_: Option<EngineKind>) -> Result<EngineKind, Error> {
    Err(Error::FeatureDisabled {
        feature: "engine",
        what: "a dockerfile fixture",
    })
}

/// What `#[mock_image]` expands to. Not a public API.
#[doc(hidden)]
pub mod __private {
    use super::{Fixture, MockImage};
    use crate::{Builder, EngineKind};

    /// The fixture for a test; a test cannot go on without it, so failing is a panic with
    /// the whole error. The attribute has checked every value at compile time.
    #[allow(clippy::panic)]
    pub fn mock_image(
        layers: &str,
        platform: Option<&str>,
        reference: Option<&str>,
        builder: Option<&str>,
        engine: Option<&str>,
        config: &[(&str, &str)],
    ) -> MockImage {
        let mut image_config = crate::ImageConfig::new();
        for (key, value) in config {
            image_config = match image_config.set(key, value) {
                Ok(c) => c,
                Err(e) => panic!("mock image `{layers}`: {e}"),
            };
        }
        let mut fixture = Fixture::new(layers).config(image_config);
        if let Some(platform) = platform {
            fixture = fixture.platform(platform);
        }
        if let Some(reference) = reference {
            fixture = fixture.reference(reference);
        }
        match builder {
            None | Some("native") => {}
            Some("dockerfile") => fixture = fixture.builder(Builder::Dockerfile),
            Some(other) => panic!("mock image `{layers}`: unknown builder `{other}`"),
        }
        if let Some(engine) = engine {
            match engine.parse::<EngineKind>() {
                Ok(engine) => fixture = fixture.engine(engine),
                Err(e) => panic!("mock image `{layers}`: {e}"),
            }
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

#[cfg(all(test, not(feature = "engine")))]
mod tests {
    use super::*;

    #[test]
    fn load_without_the_engine_feature_names_it() {
        let image = Fixture::new("1KB").get().expect("a native fixture");
        let error = image
            .load(EngineKind::Docker)
            .expect_err("no engine feature");
        assert_eq!(
            error.to_string(),
            "`MockImage::load` needs image-maker's `engine` feature, which this build leaves out"
        );
        assert_eq!(
            error.hint().as_deref(),
            Some(r#"enable it: `oci-image-maker = { version = "0.1", features = ["engine"] }`"#)
        );
        assert_eq!(error.exit_code(), 2);
    }
}
