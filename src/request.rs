//! What a build is asked for and what it reports: the types every face (CLI, fixtures,
//! xtask) fills in and every builder reads. They sit low in the module graph so that the
//! builders, the cache and the command line all depend on them, and they on nothing above.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::config::ImageConfig;
use crate::engine::EngineKind;
use crate::image::LayerInfo;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::spec::Spec;

/// Which builder produces the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Builder {
    /// Stream generated data through tar and SHA-256 straight to the outputs; no daemon.
    #[default]
    Native,
    /// Write the layer files and a Dockerfile to a temporary directory, then `<engine> build`.
    Dockerfile,
}

/// How a cache hit puts blobs into `oci:` outputs, as uv's `--link-mode`.
///
/// Whatever the mode, an output never depends on the cache staying as it is: removing the
/// output leaves the cache alone, and evicting the entry leaves the output whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum LinkMode {
    /// A copy-on-write clone (reflink) where the filesystem can; else a hard link; else a copy.
    #[default]
    Clone,
    /// A hard link to the cache's read-only blob; else a copy.
    Hardlink,
    /// A full copy.
    Copy,
}

impl fmt::Display for LinkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Clone => "clone",
            Self::Hardlink => "hardlink",
            Self::Copy => "copy",
        })
    }
}

/// What to build and where to put it.
///
/// ```
/// use image_maker::{BuildRequest, Output, Platform, Reference, Spec};
///
/// let request = BuildRequest::new(Spec::parse("1GB,512MB:compression=none")?, Reference::parse("mock/big:1")?)
///     .platforms(Platform::parse_list("linux/amd64,linux/arm64")?)
///     .mtime(1_700_000_000)
///     .output(Output::OciDir("target/mock-big".into()));
/// // `compression=none` said out loud is the same image as unsaid.
/// assert_eq!(request.spec().canonical(), "1GB:files=1,512MB:files=1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The layers.
    pub(crate) spec: Spec,
    /// The image's name and tag.
    pub(crate) reference: Reference,
    /// What the image's config (and manifest annotations) carry beyond the layers.
    pub(crate) config: ImageConfig,
    /// `--add`s: host files as layers of their own, above the spec's.
    pub(crate) added: Vec<crate::added::Added>,
    /// The image the layers go on (`--base`): its layers first, its config under ours.
    pub(crate) base: Option<crate::base::Base>,
    /// The manifests' media types: OCI, or Docker's schema 2.
    pub(crate) media_types: crate::MediaTypes,
    /// A signature, an SBOM and an attestation refer to each manifest (`--artifacts`).
    pub(crate) artifacts: bool,
    /// The platform the config names; linux/amd64 by default. With `more_platforms`, the
    /// first image of an index.
    pub(crate) platform: Platform,
    /// The other platforms of a multi-platform image: an index with one image per platform,
    /// `platform` first and these after it, in order. Empty for a single image.
    pub(crate) more_platforms: Vec<Platform>,
    /// Every platform gets the `linux/amd64` layers instead of bytes of its own.
    pub(crate) shared_layers: bool,
    /// Modification time of every tar entry and the config's `created`, in seconds.
    pub(crate) mtime: u64,
    /// Where the image goes, in the order given.
    pub(crate) outputs: Vec<Output>,
    /// The engine for `Output::Engine`; detected when `None`.
    pub(crate) engine: Option<EngineKind>,
    /// Which builder makes the image.
    pub(crate) builder: Builder,
    /// Dockerfile builder: keep the build directory instead of removing it.
    pub(crate) keep: bool,
    /// Dockerfile builder: where to make the build directory (the system temp dir if `None`).
    pub(crate) build_dir: Option<PathBuf>,
    /// Dockerfile builder: show the engine's output as it runs.
    pub(crate) verbose: bool,
    /// Build even when an earlier image can be reused: the dockerfile builder ignores the
    /// engine's images labelled with the cache key, and [`Cache::build`](crate::Cache::build)
    /// goes past the cache (the CLI's `--no-cache`).
    pub(crate) no_cache: bool,
    /// How `oci:` outputs get blobs from the cache.
    pub(crate) link_mode: LinkMode,
    /// Hash every cached blob again before using it, instead of trusting the checks of its
    /// size, inode and modification time against what was recorded when it was hashed.
    pub(crate) verify: bool,
    /// One more output the library writes for itself (the cache's copy), not reported.
    pub(crate) internal: Option<Output>,
    /// How `Output::Registry` pushes.
    pub(crate) push: RegistryOptions,
}

impl BuildRequest {
    /// Linux/amd64, mtime 0, no outputs: add them with `output`.
    pub fn new(spec: Spec, reference: Reference) -> Self {
        let spec = spec.normalized();
        Self {
            spec,
            reference,
            config: ImageConfig::default(),
            added: Vec::new(),
            base: None,
            media_types: crate::MediaTypes::Oci,
            artifacts: false,
            platform: Platform::default(),
            more_platforms: Vec::new(),
            shared_layers: false,
            mtime: 0,
            outputs: Vec::new(),
            engine: None,
            builder: Builder::Native,
            keep: false,
            build_dir: None,
            verbose: false,
            no_cache: false,
            link_mode: LinkMode::default(),
            verify: false,
            internal: None,
            push: RegistryOptions::default(),
        }
    }

    /// Adds an output.
    pub fn output(mut self, output: Output) -> Self {
        self.outputs.push(output);
        self
    }

    /// Sets the config: entrypoint, command, env, labels, ports, … and the manifest's
    /// annotations. Empty by default.
    pub fn config(mut self, config: ImageConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds a host file or directory as a layer of its own above the spec's layers (the
    /// CLI's `--add SRC:DEST`), read now: see [`Added::new`](crate::Added::new).
    pub fn add_layer(mut self, added: crate::added::Added) -> Self {
        self.added.push(added);
        self
    }

    /// Builds on `base` (the CLI's `--base SOURCE`), read for this request's platforms:
    /// its layers go first, its config under this one's.
    pub fn base(mut self, base: crate::base::Base) -> Self {
        self.base = Some(base);
        self
    }

    /// The manifests' media types: OCI (the default) or Docker's schema 2, whose manifests
    /// (and so digests) differ while the config and layers stay the same.
    pub fn media_types(mut self, media: crate::MediaTypes) -> Self {
        self.media_types = media;
        self
    }

    /// Attaches a signature, an SPDX SBOM and an in-toto attestation to each manifest, as
    /// OCI 1.1 artifacts with the manifest as their `subject` (the CLI's `--artifacts`).
    pub fn artifacts(mut self, artifacts: bool) -> Self {
        self.artifacts = artifacts;
        self
    }

    /// The base image of `platform`, when the request has a base.
    pub(crate) fn base_image(&self, platform: &Platform) -> Option<&crate::base::BaseImage> {
        let i = self.all_platforms().iter().position(|p| p == platform)?;
        self.base.as_ref().map(|base| base.image(i))
    }

    /// The config and manifest of this image for `platform` with `layers`: its spec, mtime,
    /// config, and each `--add` as the history names it (where it goes, not where it came
    /// from, so that the image does not depend on the host's paths); on its base's config,
    /// when it has one, with the base's manifest digest (and name) as the OCI annotations
    /// say.
    pub(crate) fn metadata(
        &self,
        platform: &Platform,
        layers: &[LayerInfo],
    ) -> Result<crate::image::Metadata, crate::image::MetadataError> {
        let added: Vec<String> = self.added.iter().map(|a| a.dest().to_owned()).collect();
        let metadata = crate::image::metadata(
            &self.spec,
            platform,
            self.mtime,
            layers,
            &self.config,
            &added,
        )?;
        let metadata = match (&self.base, self.base_image(platform)) {
            (Some(base), Some(image)) => {
                let mut annotations = self.config.annotations().clone();
                annotations.insert(
                    "org.opencontainers.image.base.digest".into(),
                    image.manifest.clone(),
                );
                if let crate::Source::Registry(reference) = base.source() {
                    annotations.insert(
                        "org.opencontainers.image.base.name".into(),
                        reference.to_string(),
                    );
                }
                crate::image::with_config(image.under(&metadata.config)?, layers, &annotations)?
            }
            _ => metadata,
        };
        Ok(match self.media_types {
            crate::MediaTypes::Oci => metadata,
            crate::MediaTypes::Docker => {
                let manifest = crate::media_types::to_docker(&metadata.manifest, &mut |_| None)?;
                crate::image::Metadata {
                    manifest_blob: crate::digest::Blob::of(&manifest),
                    manifest,
                    ..metadata
                }
            }
        })
    }

    /// Sets the platform: one image.
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self.more_platforms.clear();
        self
    }

    /// Sets the platforms: one is a single image, more an index of one image each, in this
    /// order. An empty list leaves the platform as it was.
    pub fn platforms(mut self, platforms: Vec<Platform>) -> Self {
        let mut platforms = platforms.into_iter();
        if let Some(first) = platforms.next() {
            self.platform = first;
            self.more_platforms = platforms.collect();
        }
        self
    }

    /// Every platform, the first one first.
    pub fn all_platforms(&self) -> Vec<Platform> {
        std::iter::once(self.platform.clone())
            .chain(self.more_platforms.iter().cloned())
            .collect()
    }

    /// Whether the image is an index of several platforms' images.
    pub fn is_multi_platform(&self) -> bool {
        !self.more_platforms.is_empty()
    }

    /// The platforms as `--platform` takes them: `linux/amd64,linux/arm64`.
    pub fn platform_list(&self) -> String {
        Platform::join(&self.all_platforms())
    }

    /// Sets the mtime of every tar entry and the config's `created`, in seconds since 1970.
    pub fn mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }

    /// Every platform gets the `linux/amd64` layers instead of bytes of its own.
    pub fn shared_layers(mut self, shared: bool) -> Self {
        self.shared_layers = shared;
        self
    }

    /// Which builder makes the image.
    pub fn builder(mut self, builder: Builder) -> Self {
        self.builder = builder;
        self
    }

    /// The engine for [`Output::Engine`] and the dockerfile builder; detected when unset.
    pub fn engine(mut self, engine: EngineKind) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Build even when an earlier image can be reused (the CLI's `--no-cache`).
    pub fn no_cache(mut self, no_cache: bool) -> Self {
        self.no_cache = no_cache;
        self
    }

    /// How `oci:` outputs get blobs from the cache.
    pub fn link_mode(mut self, mode: LinkMode) -> Self {
        self.link_mode = mode;
        self
    }

    /// Hash every cached blob again before using it (the CLI's `--verify`), instead of
    /// trusting the checks of its size, inode and modification time.
    pub fn rehash_cached(mut self, rehash: bool) -> Self {
        self.verify = rehash;
        self
    }

    /// How [`Output::Registry`] talks to the registry.
    pub fn registry_options(mut self, options: RegistryOptions) -> Self {
        self.push = options;
        self
    }

    /// Dockerfile builder: make the build directory under `dir` and keep it afterwards
    /// when `keep`.
    pub fn build_dir(mut self, dir: Option<PathBuf>, keep: bool) -> Self {
        self.build_dir = dir;
        self.keep = keep;
        self
    }

    /// Dockerfile builder: show the engine's output as it runs.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// The layers, normalised as [`new`](Self::new) normalises them.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The image's name and tag.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The config set with [`config`](Self::config).
    pub fn image_config(&self) -> &ImageConfig {
        &self.config
    }

    /// Where the image goes, in the order given.
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }
}

/// A finished image, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Built {
    /// `name:tag`.
    pub reference: String,
    /// The spec in canonical form, as the image's `dev.image-maker.spec` label has it.
    pub spec: String,
    /// Digest of the manifest, or of the index for a multi-platform image: what
    /// `NAME@DIGEST` pulls. Empty (and left out of `--json`) when the image exists only in an
    /// engine that stores no manifest (a dockerfile build with `--output engine` alone).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Digest of the config; `docker images` shows its first 12 hex digits as the image ID.
    /// For an index, the first platform's.
    pub config_digest: String,
    /// `os/arch[/variant]`; for an index, the first platform's.
    pub platform: String,
    /// The layers, in order; for an index, the first platform's.
    pub layers: Vec<LayerInfo>,
    /// For an index, each platform's image, in the index's order; empty for one image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<PlatformImage>,
    /// Where the image went, in `--output` syntax, in the order given.
    pub outputs: Vec<String>,
    /// The pushed reference and digest, for `--output registry`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<Pushed>,
}

/// One platform's image in an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PlatformImage {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Digest of its manifest: byte for byte the manifest a single-platform build of the
    /// same spec for this platform makes.
    pub digest: String,
    /// Digest of its config.
    pub config_digest: String,
    /// Its layers, in order.
    pub layers: Vec<LayerInfo>,
}

/// An `--output` destination.
///
/// ```
/// use image_maker::Output;
///
/// assert_eq!(Output::parse("oci:out/small")?, Output::OciDir("out/small".into()));
/// assert_eq!(Output::parse("oci-archive:small.tar")?.to_string(), "oci-archive:small.tar");
/// # Ok::<(), image_maker::OutputError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// Load into a container engine (`docker load`).
    Engine,
    /// An OCI image layout directory.
    OciDir(PathBuf),
    /// An OCI archive that `docker load` accepts too.
    OciArchive(PathBuf),
    /// Push to the registry named in the image reference.
    Registry,
}

/// An `--output` that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// Neither `engine`, `registry`, `oci:` nor `oci-archive:`.
    #[error("unknown output `{0}`")]
    Unknown(String),
    /// `oci:` or `oci-archive:` with nothing after it.
    #[error("output `{0}` has no path")]
    NoPath(String),
    /// A path that ends in `..` or `/`.
    #[error("output `{0}` names no file or directory")]
    NoName(String),
    /// A path with a `:` (skopeo's `oci:DIR:TAG` is not an output).
    #[error("output `{0}` has a `:` in its path")]
    Colon(String),
}

impl OutputError {
    /// What the outputs are.
    pub fn hint(&self) -> &'static str {
        "outputs are `engine`, `registry`, `oci:DIR` and `oci-archive:FILE`"
    }
}

impl Output {
    /// Parses `engine`, `registry`, `oci:DIR` or `oci-archive:FILE`.
    pub fn parse(input: &str) -> Result<Self, OutputError> {
        let path = |p: &str| {
            let path = PathBuf::from(p);
            if p.is_empty() {
                Err(OutputError::NoPath(input.to_owned()))
            } else if p.contains(':') {
                // skopeo's `oci:DIR:TAG`; a directory named `DIR:TAG` is never what was meant.
                Err(OutputError::Colon(input.to_owned()))
            } else if path.file_name().is_none() {
                Err(OutputError::NoName(input.to_owned()))
            } else {
                Ok(path)
            }
        };
        match input.split_once(':') {
            None if input == "engine" => Ok(Self::Engine),
            None if input == "registry" => Ok(Self::Registry),
            Some(("oci", p)) => path(p).map(Self::OciDir),
            Some(("oci-archive", p)) => path(p).map(Self::OciArchive),
            _ => Err(OutputError::Unknown(input.to_owned())),
        }
    }
}

impl Output {
    /// The absolute, lexically normalised path a file output ends at.
    pub(crate) fn place(&self) -> Option<PathBuf> {
        let path = match self {
            Self::Engine | Self::Registry => return None,
            Self::OciDir(p) | Self::OciArchive(p) => p,
        };
        let absolute = std::env::current_dir().unwrap_or_default().join(path);
        let mut normal = PathBuf::new();
        for part in absolute.components() {
            match part {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    normal.pop();
                }
                other => normal.push(other),
            }
        }
        Some(normal)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Engine => f.write_str("engine"),
            Self::Registry => f.write_str("registry"),
            Self::OciDir(p) => write!(f, "oci:{}", p.display()),
            Self::OciArchive(p) => write!(f, "oci-archive:{}", p.display()),
        }
    }
}

impl std::str::FromStr for Output {
    type Err = OutputError;
    fn from_str(s: &str) -> Result<Self, OutputError> {
        Self::parse(s)
    }
}

/// How image-maker talks to a registry: the pushes of [`Output::Registry`] and the pulls of
/// a `docker://` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Upload blobs in PATCH chunks of this many bytes; `None` is one streaming PUT.
    pub chunk_size: Option<u64>,
    /// A repository on the same registry to mount blobs from.
    pub mount_from: Option<String>,
    /// Plain HTTP for a registry that is not on loopback.
    pub insecure: bool,
    /// Retries of a step after a connection error or a 5xx/429 answer.
    pub retries: u32,
    /// The first wait before a retry; it doubles each time.
    pub backoff: Duration,
    /// How long a request may wait for the registry to answer.
    pub timeout: Duration,
    /// Say what each step did.
    pub verbose: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            chunk_size: None,
            mount_from: None,
            insecure: false,
            retries: 4,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(120),
            verbose: false,
        }
    }
}

/// A pushed image, as `--json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pushed {
    /// The fully qualified reference, `host/path:tag` (`docker.io/library/…` without a host).
    pub reference: String,
    /// The manifest digest: `reference@digest` pulls exactly this image.
    pub digest: String,
    /// Blobs uploaded to the registry.
    pub uploaded: usize,
    /// Blobs mounted from `--mount-from`.
    pub mounted: usize,
    /// Blobs the repository had already.
    pub skipped: usize,
}

/// The cache key of the image `request` describes.
///
/// An engine's build of a spec is another image than the native one (its own tars and
/// config), so the dockerfile builder's key hashes the builder and the version of its build
/// context too; native keys hash neither and stay as they were.
pub(crate) fn key(request: &BuildRequest) -> String {
    let mut hasher = Sha256::new();
    // One platform hashes as it always has; a list hashes all of it, in order.
    hasher.update(format!(
        // `v1` is the cache layout's version (`Cache`'s `v1/`): every key, and every image
        // users recorded by it, follows this text.
        "image-maker cache v1\n{}\n{}\n{}\n",
        request.spec.canonical(),
        request.platform_list(),
        request.mtime
    ));
    let amd64 = crate::Platform::default();
    if request.shared_layers && request.all_platforms().iter().any(|p| *p != amd64) {
        // Other platforms' bytes are linux/amd64's then; linux/amd64's are the same either way.
        hasher.update("shared layers\n");
    }
    if request.spec.layers().iter().any(|l| l.run.is_some()) {
        hasher.update(format!("run {}\n", crate::runnable::key()));
    }
    if request
        .spec
        .layers()
        .iter()
        .any(|l| l.encoding() == crate::spec::Compression::Zstd)
    {
        // zstd became independent frames: an entry made before holds other bytes.
        hasher.update("zstd frames\n");
    }
    if request.spec.layers().iter().any(|l| {
        l.encoding() != crate::spec::Compression::None
            && l.effective_level() == l.encoding().default_level()
    }) {
        // Generated layers at the default level became direct pieces: other bytes again.
        hasher.update("direct pieces\n");
    }
    for added in &request.added {
        hasher.update(format!("add {}\n", added.key()));
    }
    if let Some(base) = &request.base {
        hasher.update(format!("base {}\n", base.key()));
    }
    if !request.config.is_empty() {
        // Only when set: the keys of images without one stay as they were.
        hasher.update(format!("config {}\n", request.config.canonical()));
    }
    if request.media_types == crate::MediaTypes::Docker {
        hasher.update("media types docker\n");
    }
    if request.artifacts {
        hasher.update("artifacts 1\n");
    }
    if request.builder == Builder::Dockerfile {
        // Bumped when the build context (files or Dockerfile) changes.
        hasher.update("builder dockerfile 1\n");
    }
    crate::digest::hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_the_config_and_not_without_one() {
        let request = || {
            BuildRequest::new(
                Spec::parse("1KB").expect("valid"),
                Reference::parse("a/b:1").expect("valid"),
            )
        };
        let plain = key(&request());
        assert_eq!(key(&request().config(ImageConfig::new())), plain);
        let env = key(&request().config(ImageConfig::new().env("A=1").expect("valid")));
        let other = key(&request().config(ImageConfig::new().env("A=2").expect("valid")));
        let annotated =
            key(&request().config(ImageConfig::new().annotation("a=1").expect("valid")));
        assert_ne!(env, plain);
        assert_ne!(env, other);
        assert_ne!(annotated, plain);
    }

    #[test]
    fn parses_outputs() {
        assert_eq!(Output::parse("engine"), Ok(Output::Engine));
        assert_eq!(
            Output::parse("oci:out/x"),
            Ok(Output::OciDir("out/x".into()))
        );
        assert_eq!(
            Output::parse("oci-archive:a.tar"),
            Ok(Output::OciArchive("a.tar".into()))
        );
        assert_eq!(
            Output::parse("oci:"),
            Err(OutputError::NoPath("oci:".into()))
        );
        assert_eq!(
            Output::parse("docker"),
            Err(OutputError::Unknown("docker".into()))
        );
        assert_eq!(
            Output::parse("zip:x"),
            Err(OutputError::Unknown("zip:x".into()))
        );
        assert_eq!(Output::parse("registry"), Ok(Output::Registry));
        assert_eq!(
            Output::parse("oci:dir:tag"),
            Err(OutputError::Colon("oci:dir:tag".into()))
        );
        assert_eq!(
            Output::parse("oci:.."),
            Err(OutputError::NoName("oci:..".into()))
        );
        assert_eq!(
            Output::parse("oci-archive:/"),
            Err(OutputError::NoName("oci-archive:/".into()))
        );
    }

    #[test]
    fn the_same_place_is_caught_across_spellings() {
        let place = |s: &str| Output::parse(s).expect("valid").place();
        assert_eq!(place("oci:out"), place("oci-archive:./out/"));
        assert_eq!(place("oci:a/../out"), place("oci:out"));
        assert_ne!(place("oci:out"), place("oci:out2"));
        assert_eq!(place("engine"), None);
    }
}
