//! The library's error type: each variant says what went wrong with which value, and
//! `hint()` says what to do about it.

use std::io;
use std::path::PathBuf;

use crate::image::MetadataError;
use crate::platform::PlatformError;
use crate::reference::ReferenceError;
use crate::request::OutputError;
use crate::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[cfg(feature = "registry")]
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error("{what} needs image-maker's `{feature}` feature, which this build leaves out")]
    FeatureDisabled {
        feature: &'static str,
        what: &'static str,
    },
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the directory `{}` for output `{output}` does not exist", path.display())]
    MissingParent { path: PathBuf, output: String },
    #[error("`{}` exists and is not {expected}", path.display())]
    DestinationTaken {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("output `{0}` is given twice")]
    DuplicateOutput(String),
    #[error("no container engine is reachable (tried {tried})")]
    NoEngine { tried: String },
    #[error("{engine} is not installed: `{engine}` is not on PATH")]
    EngineMissing { engine: &'static str },
    #[error("{engine} does not answer: {detail}")]
    EngineUnreachable {
        engine: &'static str,
        detail: String,
    },
    #[error("`{command}` failed: {detail}")]
    EngineFailed { command: String, detail: String },
    #[error("{engine} cannot load an image stream (`--output engine` of the native builder)")]
    CannotLoad { engine: &'static str },
    /// `tail` is the engine's last lines of output, which say why.
    #[error("`{command}` failed ({status}):\n{tail}")]
    EngineBuildFailed {
        command: String,
        status: String,
        tail: String,
    },
    #[error(
        "no space left on the device holding `{}` (the build context needs {}, {needed} bytes)",
        path.display(),
        crate::units::human_size(*needed)
    )]
    NoSpace { path: PathBuf, needed: u64 },
    #[error("{engine} built the image for `{built}`, not for `{wanted}`")]
    WrongPlatform {
        engine: &'static str,
        built: String,
        wanted: String,
    },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("the cached image at `{}` is damaged: {detail}", path.display())]
    CacheCorrupt { path: PathBuf, detail: String },
    #[error("the cache `{}` is read-only", path.display())]
    CacheReadOnly { path: PathBuf },
    #[error("{count} cached image{} damaged", if *count == 1 { " was" } else { "s were" })]
    CacheDamaged { count: usize },
    #[error("no cache directory: neither IMAGE_MAKER_CACHE_DIR nor a user cache directory is set")]
    NoCacheDir,
    #[error("{failed} of the {total} mock images failed to build")]
    WarmFailed { failed: usize, total: usize },
    #[error("interrupted")]
    Interrupted { exit_code: i32 },
    /// A fixture of the dockerfile builder is an engine's image, with nothing on disk.
    #[error("mock image `{reference}` exists only in {engine}, so it has no {what}")]
    EngineOnly {
        reference: String,
        engine: &'static str,
        what: &'static str,
    },
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
            Self::Reference(e) => e.hint().map(str::to_owned),
            Self::Platform(e) => Some(e.hint().to_owned()),
            Self::Output(e) => Some(e.hint().to_owned()),
            #[cfg(feature = "registry")]
            Self::Registry(e) => e.hint(),
            Self::FeatureDisabled { feature, .. } => Some(format!(
                "enable it: `image-maker = {{ version = \"0.1\", features = [\"{feature}\"] }}`"
            )),
            Self::Usage(UsageError::Duration(_)) => {
                Some("a duration is a whole number and a unit: s, m, h, d or w, e.g. `30d`".into())
            }
            Self::Usage(UsageError::Engine(_)) => {
                Some("engines are `docker`, `podman`, `finch`, `nerdctl` and `buildah`".into())
            }
            Self::Usage(e) => e.hint().map(str::to_owned),
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
            Self::WarmFailed { .. } => {
                Some("each `failed` line (or the JSON's `reason`) says why".into())
            }
            Self::NoCacheDir => Some("set IMAGE_MAKER_CACHE_DIR, or build with `--no-cache`".into()),
            Self::CacheCorrupt { .. } => Some(
                "the entry is marked damaged: the next build of this image replaces it; `image-maker cache verify` checks every entry".into(),
            ),
            Self::CacheDamaged { .. } => Some(
                "each was removed, or marked when in use: the next build of it makes it again".into(),
            ),
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
            | Self::Reference(_)
            | Self::Platform(_)
            | Self::Output(_)
            | Self::Usage(_)
            | Self::CannotLoad { .. }
            | Self::DuplicateOutput(_)
            | Self::EngineOnly { .. }
            | Self::FeatureDisabled { .. } => 2,
            Self::Interrupted { exit_code } => *exit_code,
            #[cfg(feature = "registry")]
            Self::Registry(e) => e.exit_code(),
            _ => 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
/// A request that cannot be carried out as given: bad usage, exit code 2.
pub enum UsageError {
    #[error("SOURCE_DATE_EPOCH `{0}` is not a whole number of seconds from 1970 to 9999")]
    SourceDateEpoch(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::UnknownEngine),
    #[error("`{0}` is an option of the dockerfile builder")]
    DockerfileOnly(&'static str),
    #[error("`{0}` is not a duration")]
    Duration(String),
}

impl UsageError {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            // A fixture's option, or a flag of the command line.
            Self::DockerfileOnly(option) if option.starts_with("Fixture::") => {
                Some("add `.builder(Builder::Dockerfile)`")
            }
            Self::DockerfileOnly(_) => Some("add `--builder dockerfile`"),
            _ => None,
        }
    }
}
