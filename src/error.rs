//! The library's error type: each variant says what went wrong with which value, and
//! `hint()` says what to do about it.

use std::io;
use std::path::PathBuf;

use crate::image::MetadataError;
use crate::platform::PlatformError;
use crate::reference::ReferenceError;
use crate::request::OutputError;
use crate::spec::SpecError;

/// Why a build, push or cache operation failed; [`Error::hint`] and [`Error::exit_code`]
/// say what to do and how the command line exits.
///
/// ```
/// let e = image_maker::fixture("1XB").expect_err("no such unit");
/// assert_eq!(e.exit_code(), 2);
/// eprintln!("error: {e}");
/// if let Some(hint) = e.hint() {
///     eprintln!("hint: {hint}");
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The layer list does not parse.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A config value (`--env`, `--expose`, …) does not parse.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A spec has no tag form (`image-maker tag`).
    #[error(transparent)]
    Tag(#[from] crate::spec::TagError),
    /// `image-maker serve` cannot start as asked.
    #[cfg(feature = "serve")]
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    /// The image name is not a valid reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The platform is not a known `os/arch[/variant]`.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// An `--output` value does not parse.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// A command-line value or combination of options that cannot be used as given.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The source of `verify` or `inspect` cannot be used or read.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// `verify` found the image damaged, or `inspect` could not read it.
    #[error(transparent)]
    // Boxed: its blob, place and two values would make every `Result<_, Error>` larger.
    Image(Box<crate::verify::ImageError>),
    /// `verify --rootfs` found the directory different from what the spec's image unpacks to.
    #[error(transparent)]
    // Boxed as `Image` is: a path, two values and a root.
    Rootfs(Box<crate::verify::RootfsMismatch>),
    /// A push failed, or its source or options are invalid.
    #[cfg(feature = "registry")]
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The request needs a builder or output that a cargo feature left out of this build.
    #[error("{what} needs image-maker's `{feature}` feature, which this build leaves out")]
    FeatureDisabled {
        /// The cargo feature to enable, e.g. `engine`.
        feature: &'static str,
        /// What needed it, e.g. `` `--output engine` ``.
        what: &'static str,
    },
    /// A file or directory operation failed.
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        /// What was being done, as a verb: `read`, `write`, `remove`, ….
        action: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Generating the layers of a served image failed.
    #[error("cannot generate the layers of `{spec}`: {detail}")]
    Generate {
        /// The spec, in canonical form.
        spec: String,
        /// What went wrong.
        detail: String,
    },
    /// The directory the dockerfile builder's context would be written into does not
    /// exist; it creates only the destination itself.
    #[error("the directory `{}` for output `{output}` does not exist", path.display())]
    MissingParent {
        /// The directory that is missing.
        path: PathBuf,
        /// The output as the user gave it, e.g. `oci:out/img`.
        output: String,
    },
    /// An output's path runs through something that is not a directory, so its missing
    /// parents cannot be created.
    #[error("`{}` (on the way to output `{output}`) is not a directory", path.display())]
    ParentNotDirectory {
        /// The ancestor that exists but is not a directory.
        path: PathBuf,
        /// The output as the user gave it, e.g. `oci:out/img`.
        output: String,
    },
    /// Something that image-maker may not replace is already at an output's destination.
    #[error("`{}` exists and is not {expected}", path.display())]
    DestinationTaken {
        /// The destination.
        path: PathBuf,
        /// What could be replaced there, e.g. `an empty directory`.
        expected: &'static str,
    },
    /// Two outputs name the same destination, or one output is given twice.
    #[error("output `{0}` is given twice")]
    DuplicateOutput(String),
    /// No engine was named and none of those tried in turn answered.
    #[error("no container engine is reachable (tried {tried})")]
    NoEngine {
        /// Each engine tried and why it was passed over, `; `-separated.
        tried: String,
    },
    /// The named engine's command is not on `PATH`.
    #[error("{engine} is not installed: `{engine}` is not on PATH")]
    EngineMissing {
        /// The engine's command, e.g. `docker`.
        engine: &'static str,
    },
    /// The engine's command exists but fails a cheap probe: its daemon or storage is down.
    #[error("{engine} does not answer: {detail}")]
    EngineUnreachable {
        /// The engine's command, e.g. `docker`.
        engine: &'static str,
        /// The last line the engine printed, which says why.
        detail: String,
    },
    /// An engine command other than the build (load, inspect, save) failed or printed
    /// something unusable.
    #[error("`{command}` failed: {detail}")]
    EngineFailed {
        /// The command line that failed.
        command: String,
        /// The engine's last line of output, or what was wrong with its output.
        detail: String,
    },
    /// A multi-platform image is loaded into an engine whose platform is not in its list.
    #[error("{engine} runs {platform}, which is not one of the image's platforms ({platforms})")]
    EnginePlatform {
        /// The engine's command, e.g. `docker`.
        engine: &'static str,
        /// The engine's own platform.
        platform: String,
        /// The image's platforms, as `--platform` lists them.
        platforms: String,
    },
    /// `--output engine` names an engine without `load` (buildah).
    #[error("{engine} cannot load an image stream (`--output engine` of the native builder)")]
    CannotLoad {
        /// The engine's command, e.g. `buildah`.
        engine: &'static str,
    },
    /// The engine's build of the generated Dockerfile failed.
    #[error("`{command}` failed ({status}):\n{tail}")]
    EngineBuildFailed {
        /// The build command line.
        command: String,
        /// How the command exited, e.g. `exit status: 1`.
        status: String,
        /// The engine's last lines of output, which say why.
        tail: String,
    },
    /// The device or quota filled up while the dockerfile builder wrote its build context.
    #[error(
        "no space left on the device holding `{}` (the build context needs {}, {needed} bytes)",
        path.display(),
        crate::units::human_size(*needed)
    )]
    NoSpace {
        /// The file or directory being written when the device filled up.
        path: PathBuf,
        /// Bytes the whole build context needs.
        needed: u64,
    },
    /// The engine ignored `--platform`; the image it built has been removed.
    #[error("{engine} built the image for `{built}`, not for `{wanted}`")]
    WrongPlatform {
        /// The engine's command, e.g. `docker`.
        engine: &'static str,
        /// The platform of the image the engine built, e.g. `linux/arm64`.
        built: String,
        /// The platform asked for.
        wanted: String,
    },
    /// Image metadata (config, manifest, index), a cache entry or a `--json` summary could
    /// not be serialized: a bug, not bad input.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A cache entry lacks a layer or manifest its record names, or a blob's content does
    /// not hash to its digest.
    #[error("the cached image at `{}` is damaged: {detail}", path.display())]
    CacheCorrupt {
        /// The cache entry's directory, or the blob that does not match.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The cache directory cannot be written, and what was asked needs a write.
    #[error("the cache `{}` is read-only", path.display())]
    CacheReadOnly {
        /// The cache's root directory.
        path: PathBuf,
    },
    /// The cache directory belongs to another user, who could put any image in it (as ssh
    /// refuses a `~/.ssh` of someone else's).
    #[error("the cache directory `{}` is owned by uid {owner}, not you (uid {uid})", path.display())]
    CacheNotYours {
        /// The cache's root directory.
        path: PathBuf,
        /// The uid that owns it.
        owner: u32,
        /// This process's effective uid.
        uid: u32,
    },
    /// Every user can write to the cache directory, and so put any image in it.
    #[error("the cache directory `{}` can be written by every user (mode {mode:o})", path.display())]
    CacheWorldWritable {
        /// The cache's root directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The cache is used but neither `IMAGE_MAKER_CACHE_DIR` nor a user cache directory
    /// (`~/.cache` on Linux) is known.
    #[error("no cache directory: neither IMAGE_MAKER_CACHE_DIR nor a user cache directory is set")]
    NoCacheDir,
    /// SIGINT, SIGTERM or SIGHUP arrived once the signal handlers were installed.
    #[error("interrupted")]
    Interrupted {
        /// 128 + the signal number, e.g. 130 for SIGINT.
        exit_code: i32,
    },
    /// A fixture of the dockerfile builder is an engine's image, with nothing on disk.
    #[error("mock image `{reference}` exists only in {engine}, so it has no {what}")]
    EngineOnly {
        /// The image's reference in the engine.
        reference: String,
        /// The engine that holds it.
        engine: &'static str,
        /// What was asked for: an OCI layout, an archive, …
        what: &'static str,
    },
}

impl From<crate::verify::ImageError> for Error {
    fn from(e: crate::verify::ImageError) -> Self {
        Self::Image(Box::new(e))
    }
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// What the user can do about it, if there is something useful to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Spec(e) => e.hint().map(str::to_owned),
            Self::Tag(e) => e.hint(),
            Self::Config(e) => e.hint().map(str::to_owned),
            #[cfg(feature = "serve")]
            Self::Serve(e) => e.hint(),
            Self::Reference(e) => e.hint().map(str::to_owned),
            Self::Source(e) => e.hint(),
            Self::Image(e) => e.hint(),
            Self::Rootfs(e) => Some(e.hint()),
            Self::Platform(e) => Some(e.hint().to_owned()),
            Self::Output(e) => Some(e.hint().to_owned()),
            #[cfg(feature = "registry")]
            Self::Registry(e) => e.hint(),
            Self::FeatureDisabled { feature, .. } => Some(format!(
                "enable it: `oci-image-maker = {{ version = \"0.1\", features = [\"{feature}\"] }}`"
            )),
            Self::Usage(UsageError::NearCommand { given, .. }) => Some(format!(
                "to build an image of that name, give it a tag: `{given}:latest`"
            )),
            Self::Usage(UsageError::Size { .. }) => Some(
                "a size is a number and a unit: B, KB, MB, GB, TB (powers of 1024; K..T too), e.g. `20GB`"
                    .into(),
            ),
            Self::Usage(UsageError::Duration(_)) => {
                Some("a duration is a whole number and a unit: s, m, h, d or w, e.g. `30d`".into())
            }
            Self::Usage(UsageError::Engine(_)) => {
                Some("engines are `docker`, `podman`, `finch`, `nerdctl` and `buildah`".into())
            }
            Self::Usage(e) => e.hint().map(str::to_owned),
            Self::EnginePlatform { platform, .. } => Some(format!(
                "an engine loads the image of its own platform: add `{platform}` to `--platform`, or write the index with `--output oci:DIR` or `oci-archive:FILE`"
            )),
            Self::CannotLoad { .. } => Some(
                "build with it instead (`--builder dockerfile`), or write `--output oci-archive:FILE` and `buildah pull oci-archive:FILE`"
                    .into(),
            ),
            Self::EngineBuildFailed { command, .. } => Some(format!(
                "the lines above are the end of `{command}`'s output; `-v` shows all of it, `--keep` keeps the build directory"
            )),
            Self::WrongPlatform { .. } => Some(
                "this engine does not honour `--platform` for the build: choose another with `--engine`, or use the native builder"
                    .into(),
            ),
            Self::NoSpace { .. } => Some(
                "free space there, or put the build directory elsewhere with `--build-dir DIR`".into(),
            ),
            Self::MissingParent { .. } => Some("create the directory first, or choose another path".into()),
            Self::ParentNotDirectory { .. } => Some("choose another path".into()),
            Self::DestinationTaken { .. } => Some("remove it or choose another path".into()),
            Self::NoEngine { .. } => Some(
                "start dockerd (or podman), check DOCKER_HOST, or write the image to disk with `--output oci:DIR`"
                    .into(),
            ),
            Self::EngineMissing { .. } => Some(
                "install it, choose another with `--engine`, or write the image to disk with `--output oci:DIR`".into(),
            ),
            Self::EngineUnreachable { .. } => Some(
                "start the daemon and check DOCKER_HOST and `docker context`, or use `--output oci:DIR`".into(),
            ),
            Self::EngineFailed { detail, .. } if detail.contains("max depth exceeded") => Some(
                "docker stores at most 125 layers per image: use fewer layers, or write it with `--output oci:DIR`"
                    .into(),
            ),
            Self::EngineOnly { engine, .. } => Some(format!(
                "the native builder (the fixture's default) makes an OCI layout and archive, and `load` puts it in any engine; `{engine} save` writes this one to a file"
            )),
            Self::NoCacheDir => Some("set IMAGE_MAKER_CACHE_DIR, or build with `--no-cache`".into()),
            Self::CacheCorrupt { .. } => Some(
                "the entry is marked damaged: the next build of this image replaces it; `image-maker cache rehash` checks every entry".into(),
            ),
            Self::CacheNotYours { .. } => Some(
                "use a cache directory of your own: IMAGE_MAKER_CACHE_DIR=DIR (image-maker creates it), or build with `--no-cache`".into(),
            ),
            Self::CacheWorldWritable { path, .. } => Some(format!(
                "anyone on this machine could put images in it: `chmod go-w {}`, or use a cache directory of your own: IMAGE_MAKER_CACHE_DIR=DIR",
                path.display()
            )),
            Self::CacheReadOnly { .. } => Some(
                "point IMAGE_MAKER_CACHE_DIR at a writable directory, or build with `--no-cache`".into(),
            ),
            Self::Io { source, .. } if source.raw_os_error() == Some(28) => {
                Some("the disk is full: free space or choose another path".into())
            }
            _ => None,
        }
    }

    /// 2 for bad usage, 128 + the signal after SIGINT/SIGTERM/SIGHUP, 1 for a failed build.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Spec(_)
            | Self::Config(_)
            | Self::Tag(_)
            | Self::Reference(_)
            | Self::Platform(_)
            | Self::Output(_)
            | Self::Usage(_)
            | Self::CannotLoad { .. }
            | Self::DuplicateOutput(_)
            | Self::EngineOnly { .. }
            | Self::FeatureDisabled { .. } => 2,
            Self::Interrupted { exit_code } => *exit_code,
            Self::Source(e) => e.exit_code(),
            #[cfg(feature = "serve")]
            Self::Serve(e) => e.exit_code(),
            #[cfg(feature = "registry")]
            Self::Registry(e) => e.exit_code(),
            _ => 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
/// A request that cannot be carried out as given: bad usage, exit code 2.
#[non_exhaustive]
pub enum UsageError {
    /// `--shard` is not `I/N` with 1 ≤ I ≤ N.
    #[error("--shard `{0}` is not `I/N` with I from 1 to N")]
    Shard(String),
    /// `--shard-index` (or `JOB_COMPLETION_INDEX`) is not a part of `--shards N`.
    #[error("--shard-index `{index}` is not a part of --shards {shards}: 0 to {}", shards.saturating_sub(1))]
    BadShardIndex {
        /// The index as given.
        index: String,
        /// The number of parts.
        shards: usize,
    },
    /// `--shards N` without an index.
    #[error("--shards needs this part's index: --shard-index I, or JOB_COMPLETION_INDEX")]
    ShardIndex,
    /// An `--add` that cannot be made.
    #[error(transparent)]
    Add(#[from] crate::added::AddError),
    /// `--artifacts` with layers its SBOM cannot list (`--base`, `--add`), or with the
    /// dockerfile builder.
    #[error("--artifacts cannot describe an image with {0}: its SBOM lists the spec's files")]
    Artifacts(&'static str),
    /// A `--base` that cannot be built on.
    #[error(transparent)]
    Base(#[from] crate::base::BaseError),
    /// A runnable image for a platform the entrypoint program is not built for.
    #[error(transparent)]
    Runnable(#[from] crate::runnable::Unsupported),
    /// `SOURCE_DATE_EPOCH` is set to something other than whole seconds up to year 9999.
    #[error("SOURCE_DATE_EPOCH `{0}` is not a whole number of seconds from 1970 to 9999")]
    SourceDateEpoch(String),
    /// `IMAGE_MAKER_THREADS` is set to something other than a thread count.
    #[error("IMAGE_MAKER_THREADS `{0}` is not a whole number from 1 to 256")]
    Threads(String),
    /// `--engine` names no supported engine.
    #[error(transparent)]
    Engine(#[from] crate::engine::UnknownEngine),
    /// An option of the dockerfile builder is given with the native builder.
    #[error("`{0}` is an option of the dockerfile builder")]
    DockerfileOnly(&'static str),
    /// A duration (`cache gc --max-age`) is not a whole number and a unit.
    #[error("`{0}` is not a duration")]
    Duration(String),
    /// Something only the native builder makes, asked of the dockerfile builder.
    #[error("the dockerfile builder cannot make {what}: `{value}`")]
    NativeOnly {
        /// What it cannot make: `compressed layers`, `a multi-platform image`.
        what: &'static str,
        /// The spec or platform list that asks for it.
        value: String,
    },
    /// `verify --rootfs DIR` names no directory.
    #[error("--rootfs `{}` is not a directory", .0.display())]
    RootfsNotADirectory(std::path::PathBuf),
    /// A command about one image's root filesystem is given a platform list.
    #[error("`--platform {0}` names more than one platform")]
    OnePlatform(String),
    /// `--compression` names an encoding other than `gzip`, `zstd` or `none`.
    #[error("unknown compression `{0}`")]
    Compression(String),
    /// The first word of a command line, or the IMAGE of a build, is a near miss of a
    /// command (`verfy`).
    #[error("`{given}` is not a command: did you mean `{meant}`?")]
    NearCommand {
        /// What was typed.
        given: String,
        /// The command it is close to.
        meant: &'static str,
    },
    /// A size flag (`cache gc --max-size`) is not a size in bytes.
    #[error("{flag} `{value}` {reason}")]
    Size {
        /// The flag, e.g. `--max-size`.
        flag: &'static str,
        /// What was given.
        value: String,
        /// Why it is not a size, as a predicate: `is not a number`.
        reason: String,
    },
}

impl UsageError {
    /// What the user can do about it, if there is something useful to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            // A fixture's option, or a flag of the command line.
            Self::DockerfileOnly(option) if option.starts_with("Fixture::") => {
                Some("add `.builder(Builder::Dockerfile)`")
            }
            Self::DockerfileOnly(_) => Some("add `--builder dockerfile`"),
            Self::Runnable(e) => Some(e.hint()),
            Self::Add(e) => e.hint(),
            Self::Base(e) => e.hint(),
            Self::Artifacts(_) => Some("leave out --artifacts, or build the image from a spec alone"),
            Self::Shard(_) | Self::ShardIndex | Self::BadShardIndex { .. } => Some("give the part and the number of parts, e.g. `--shard 2/4`; `1/4` to `4/4` together are the whole file"),
            Self::NativeOnly { .. } => Some(
                "an engine's build writes plain layers for one platform, and a Dockerfile can neither delete what a lower layer holds, annotate a manifest, nor set a working directory without a layer: use the native builder (`--builder native`, the default)",
            ),
            Self::Compression(_) => Some("compression is `gzip`, `zstd` or `none`"),
            Self::Threads(_) => Some(
                "it sets how many threads compress (the bytes do not depend on it); unset it to use every core",
            ),
            Self::RootfsNotADirectory(_) => Some(
                "give the unpacked root filesystem, e.g. `bundle/rootfs` after `umoci unpack --image DIR:TAG bundle`",
            ),
            Self::OnePlatform(_) => Some(
                "each platform's image unpacks to a root filesystem of its own: give one, e.g. `--platform linux/arm64`, and run once per platform",
            ),
            _ => None,
        }
    }
}
