//! The builders, side by side beneath one dispatch: `native` streams generated data through
//! tar and SHA-256 straight to the outputs; `dockerfile` has a container engine build the
//! image from a generated Dockerfile.

#[cfg(feature = "engine")]
pub mod dockerfile;
pub(crate) mod native;
pub(crate) mod staging;

pub(crate) use native::{deliver, Source};

use crate::progress::Progress;
use crate::request::{BuildRequest, Builder, Built, Output};
use crate::{interrupt, Error, UsageError};

/// Builds the image `request` describes with the builder it names, writing every output,
/// without the cache: [`Cache::build`](crate::Cache::build) builds once and exports after.
pub fn build(request: &BuildRequest, progress: &mut Progress) -> Result<Built, Error> {
    request.check_features()?;
    match request.builder {
        Builder::Native => deliver(request, &Source::Generate, progress),
        // A signal may surface first as the engine's failure: the signal is the cause.
        Builder::Dockerfile => {
            dockerfile_build(request, progress).map_err(|e| interrupt::check().err().unwrap_or(e))
        }
    }
}

#[cfg(feature = "engine")]
fn dockerfile_build(request: &BuildRequest, progress: &mut Progress) -> Result<Built, Error> {
    dockerfile::build(request, progress)
}

#[cfg(not(feature = "engine"))]
fn dockerfile_build(_: &BuildRequest, _: &mut Progress) -> Result<Built, Error> {
    Err(Error::FeatureDisabled {
        feature: "engine",
        what: "the dockerfile builder",
    })
}

impl BuildRequest {
    /// Whether this build of image-maker can do what the request asks.
    pub(crate) fn check_features(&self) -> Result<(), Error> {
        crate::runnable::check(&self.spec, &self.all_platforms()).map_err(UsageError::from)?;
        if let Some(base) = &self.base {
            base.check(self).map_err(UsageError::from)?;
        }
        if self.artifacts {
            let with = [
                (self.base.is_some(), "a --base"),
                (!self.added.is_empty(), "--add layers"),
                (self.builder == Builder::Dockerfile, "a dockerfile build"),
            ];
            if let Some((_, what)) = with.into_iter().find(|(given, _)| *given) {
                return Err(UsageError::Artifacts(what).into());
            }
        }
        let needs = |output: &Output| match output {
            Output::Engine => {
                (!cfg!(feature = "engine")).then_some(("engine", "`--output engine`"))
            }
            Output::Registry => {
                (!cfg!(feature = "registry")).then_some(("registry", "`--output registry`"))
            }
            Output::OciDir(_) | Output::OciArchive(_) => None,
        };
        match self.outputs.iter().find_map(needs) {
            Some((feature, what)) => Err(Error::FeatureDisabled { feature, what }),
            None => Ok(()),
        }
    }
}
