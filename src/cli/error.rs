//! What only the command line fails with, beside the library's errors: a fixture user's
//! error type carries none of these.

use std::path::PathBuf;

use crate::units::human_size;
use crate::Error;

/// An error of the `image-maker` command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// What the library reported.
    #[error(transparent)]
    Lib(#[from] Error),
    /// `--dry-run`: a destination's filesystem has less free space than the build would
    /// write there.
    #[error(
        "not enough space at `{}` for {uses}: {} needed, {} free ({} short)",
        path.display(),
        human_size(*needed),
        human_size(*free),
        human_size(needed.saturating_sub(*free))
    )]
    DoesNotFit {
        /// A directory on the filesystem that lacks room.
        path: PathBuf,
        /// What would be written there, e.g. `` oci:/tmp/x, the cache ``.
        uses: String,
        /// Bytes the build would write to that filesystem.
        needed: u64,
        /// Bytes free there for this user.
        free: u64,
    },
    /// `cache rehash` found damaged entries (it names each and removes it).
    #[error("{count} cached image{} damaged", if *count == 1 { " was" } else { "s were" })]
    CacheDamaged {
        /// How many entries were damaged.
        count: usize,
    },
    /// `image-maker warm` could not build some of the images it found.
    #[error("{failed} of the {total} mock images failed to build")]
    WarmFailed {
        /// How many failed.
        failed: usize,
        /// How many images were found.
        total: usize,
    },
}

impl CliError {
    /// The process exit code: 2 for usage errors, 1 for failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Lib(e) => e.exit_code(),
            Self::DoesNotFit { .. } | Self::CacheDamaged { .. } | Self::WarmFailed { .. } => 1,
        }
    }

    /// What to do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Lib(e) => e.hint(),
            Self::DoesNotFit { .. } => Some(
                "free space there, choose another path, or build fewer or smaller layers".into(),
            ),
            Self::CacheDamaged { .. } => Some(
                "each was removed, or marked when in use: the next build of it makes it again"
                    .into(),
            ),
            Self::WarmFailed { .. } => {
                Some("each `failed` line (or the JSON's `reason`) says why".into())
            }
        }
    }
}

/// `?` on any of the library's own errors, as on an [`Error`].
macro_rules! from_library {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for CliError {
            fn from(e: $error) -> Self {
                Self::Lib(e.into())
            }
        })*
    };
}

from_library!(
    crate::SpecError,
    crate::ReferenceError,
    crate::PlatformError,
    crate::UsageError,
    crate::OutputError,
    crate::spec::TagError,
    crate::source::SourceError,
    crate::registry::RegistryError,
    crate::serve::ServeError,
);
