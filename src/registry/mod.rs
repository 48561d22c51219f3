//! Pushing an OCI image layout to a registry (the OCI distribution API).
//!
//! `push` is synchronous; inside, a current-thread tokio runtime drives `oci-client`.
//! Blobs go one at a time, each HEADed first (present blobs are skipped, so a re-push
//! uploads nothing), then mounted from `--mount-from` if asked, else streamed from its file.
//! Failures worth retrying (connection errors, 5xx, 429) restart the step — for an upload,
//! the whole blob — with backoff, a bounded number of times; blobs already pushed stay.

mod auth;
pub(crate) mod client;
mod error;
mod layout;
mod referrers;
mod upload;

use std::path::Path;
#[cfg(feature = "cli")]
use std::path::PathBuf;
use std::time::Duration;

pub use crate::request::{Pushed, RegistryOptions};
pub use client::check_reachable;
pub use error::RegistryError;

use crate::units::human_size;
use crate::{interrupt, Error, Progress, Reference};
use client::Session;
use upload::{Failure, Outcome};

/// What `image-maker push` reads: `oci:DIR`, `oci:DIR:TAG` or `cache:SPEC`.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushSource {
    /// `oci:DIR[:TAG]`: an image in an OCI image layout on disk.
    OciDir {
        /// The layout's directory.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` of the manifest to push; `None` for the
        /// layout's only manifest.
        tag: Option<String>,
    },
    /// `cache:SPEC`: the cached image of a layer list, built first if the cache lacks it.
    Cached {
        /// The layer list, as given (parsed later, with the spec's own errors).
        spec: String,
    },
}

#[cfg(feature = "cli")]
impl PushSource {
    /// Parses `oci:DIR`, `oci:DIR:TAG` (as skopeo spells them), a layout directory without
    /// `oci:`, or `cache:SPEC`: the sources [`Source::parse`](crate::source::Source::parse)
    /// reads that a push can take.
    pub fn parse(input: &str) -> Result<Self, RegistryError> {
        use crate::source::Source;
        match Source::parse(input) {
            Ok(Source::OciDir { path, tag }) => Ok(Self::OciDir { path, tag }),
            Ok(Source::Cache { spec }) => Ok(Self::Cached { spec }),
            Ok(Source::OciArchive { .. } | Source::Registry(_)) | Err(_) => {
                Err(RegistryError::BadSource(input.to_owned()))
            }
        }
    }
}

/// Pushes the image of the OCI layout at `layout` (the manifest tagged `tag`, or its only
/// manifest) to `target`.
pub fn push(
    layout: &Path,
    tag: Option<&str>,
    target: &Reference,
    options: &RegistryOptions,
    progress: &mut Progress,
) -> Result<Pushed, Error> {
    let image = layout::read(layout, tag)?;
    let mount_from = options
        .mount_from
        .as_deref()
        .map(|repo| mount_source(repo, target))
        .transpose()?;
    let mut session = Session::new(target, options)?;
    for warning in &session.auth_warnings {
        progress.stage(format!("warning: {warning}"));
    }
    // One connection, to fail at once where nothing listens, instead of after the retries.
    check_reachable(target, options)?;
    let verbose = options.verbose && progress.is_verbose();
    let say = |progress: &Progress, message: String| {
        if verbose {
            progress.stage(message);
        }
    };
    say(
        progress,
        format!(
            "registry {} ({}), {}",
            session.registry,
            session.base,
            match &session.credentials {
                Some(c) => format!("user `{}` from {}", c.username, c.source),
                None => "anonymous".into(),
            }
        ),
    );
    let authorization = retrying(
        &session,
        options,
        progress,
        "GET /v2/ (authentication)",
        |s, _| s.runtime.block_on(s.authenticate()),
    )?;
    say(
        progress,
        format!(
            "authentication: {}",
            match authorization.as_deref() {
                Some(a) if a.starts_with("Bearer") => "bearer token",
                Some(_) => "basic",
                None => "none",
            }
        ),
    );
    session.authorization = authorization;

    let mut pushed = Pushed {
        reference: target.normalized(),
        digest: image.digest.clone(),
        uploaded: 0,
        mounted: 0,
        skipped: 0,
    };
    // An index's images go first, each by digest: a registry takes an index only once it
    // has every manifest it names.
    for child in &image.images {
        push_image(
            &session,
            options,
            progress,
            child,
            mount_from.as_ref(),
            &mut pushed,
        )?;
        let by_digest = oci_client::Reference::with_digest(
            session.image.registry().to_owned(),
            session.image.repository().to_owned(),
            child.digest.clone(),
        );
        push_manifest(&session, options, progress, child, &by_digest, target)?;
    }
    push_image(
        &session,
        options,
        progress,
        &image,
        mount_from.as_ref(),
        &mut pushed,
    )?;
    push_manifest(&session, options, progress, &image, &session.image, target)?;
    let subjects: Vec<&str> = std::iter::once(image.digest.as_str())
        .chain(image.images.iter().map(|i| i.digest.as_str()))
        .collect();
    let artifacts = layout::artifacts(layout, &subjects)?;
    if !artifacts.is_empty() {
        referrers::push(&session, options, progress, &artifacts, target, &mut pushed)?;
    }
    Ok(pushed)
}

/// Pushes the blobs of `image` (none for an index), counting each in `pushed`.
pub(crate) fn push_image(
    session: &Session,
    options: &RegistryOptions,
    progress: &mut Progress,
    image: &layout::Image,
    mount_from: Option<&oci_client::Reference>,
    pushed: &mut Pushed,
) -> Result<(), Error> {
    for blob in &image.blobs {
        interrupt::check()?;
        let short = &blob.digest[..std::cmp::min(19, blob.digest.len())];
        let outcome = push_blob(session, options, progress, blob, mount_from)?;
        let (verb, count) = match outcome {
            Outcome::Present => ("already present", &mut pushed.skipped),
            Outcome::Mounted => ("mounted", &mut pushed.mounted),
            Outcome::Uploaded => ("uploaded", &mut pushed.uploaded),
        };
        *count += 1;
        progress.stage(format!("blob {short}… ({}): {verb}", human_size(blob.size)));
    }
    Ok(())
}

/// Puts the manifest (or index) of `image` at `reference`: the target's tag, or a digest.
pub(crate) fn push_manifest(
    session: &Session,
    options: &RegistryOptions,
    progress: &mut Progress,
    image: &layout::Image,
    reference: &oci_client::Reference,
    target: &Reference,
) -> Result<(), Error> {
    interrupt::check()?;
    let content_type = reqwest::header::HeaderValue::from_str(&image.media_type).map_err(|e| {
        RegistryError::Client {
            step: "the manifest's media type",
            detail: e.to_string(),
        }
    })?;
    retrying(session, options, progress, "the manifest push", |s, _| {
        s.runtime.block_on(s.client.push_manifest_raw(
            reference,
            image.manifest.clone(),
            content_type.clone(),
        ))
    })
    .map_err(|e| match e {
        // A 400 on the manifest is the registry refusing it: say so with its reasons.
        Error::Registry(RegistryError::Status {
            registry,
            status: 400,
            detail,
            ..
        }) => Error::Registry(RegistryError::ManifestRejected {
            registry,
            reference: target.to_string(),
            detail,
        }),
        other => other,
    })?;
    Ok(())
}

fn push_blob(
    session: &Session,
    options: &RegistryOptions,
    progress: &mut Progress,
    blob: &layout::BlobFile,
    mount_from: Option<&oci_client::Reference>,
) -> Result<Outcome, Error> {
    let what = format!("HEAD of blob {}", blob.digest);
    if retrying(session, options, progress, &what, |s, _| {
        s.runtime.block_on(upload::exists(s, blob))
    })? {
        return Ok(Outcome::Present);
    }
    if let Some(from) = mount_from {
        let what = format!("the mount of blob {}", blob.digest);
        if retrying(session, options, progress, &what, |s, _| {
            s.runtime.block_on(upload::mount(s, from, blob))
        })? {
            return Ok(Outcome::Mounted);
        }
    }
    let what = format!("the upload of blob {}", blob.digest);
    retrying(session, options, progress, &what, |s, progress| {
        // A retried upload starts over, with a fresh bar.
        progress.finish();
        progress.start(blob.size);
        let counter = progress.counter();
        let result = match options.chunk_size {
            Some(chunk) => s.runtime.block_on(upload::chunked(s, blob, chunk, counter)),
            None => s.runtime.block_on(upload::put(s, blob, counter)),
        };
        progress.finish();
        result
    })?;
    Ok(Outcome::Uploaded)
}

/// Runs `step` until it succeeds, fails for good, or has been retried `options.retries`
/// times with doubling waits.
pub(crate) fn retrying<T>(
    session: &Session,
    options: &RegistryOptions,
    progress: &mut Progress,
    what: &str,
    mut step: impl FnMut(&Session, &mut Progress) -> Result<T, oci_client::errors::OciDistributionError>,
) -> Result<T, Error> {
    let mut wait = options.backoff;
    let mut attempt = 1;
    loop {
        interrupt::check()?;
        let error = match step(session, progress) {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        // A signal surfaces as a broken body stream: report the signal.
        interrupt::check()?;
        match upload::classify(session, what, error) {
            Failure::Fatal(e) => return Err(e.into()),
            Failure::Retry(detail) if attempt > options.retries => {
                return Err(RegistryError::GaveUp {
                    registry: session.registry.clone(),
                    what: what.to_owned(),
                    attempts: attempt,
                    detail,
                }
                .into())
            }
            Failure::Retry(detail) => {
                progress.stage(format!(
                    "{what} failed ({detail}); retrying in {:.1} s ({attempt}/{})",
                    wait.as_secs_f64(),
                    options.retries
                ));
                sleep(wait)?;
                wait = wait.saturating_mul(2);
                attempt += 1;
            }
        }
    }
}

/// Waits, waking for signals.
fn sleep(total: Duration) -> Result<(), Error> {
    let step = Duration::from_millis(50);
    let mut left = total;
    while !left.is_zero() {
        interrupt::check()?;
        let now = left.min(step);
        std::thread::sleep(now);
        left -= now;
    }
    Ok(())
}

/// `--mount-from REPO`: a repository on the target's registry.
fn mount_source(repo: &str, target: &Reference) -> Result<oci_client::Reference, RegistryError> {
    let bad = || RegistryError::BadMountFrom(repo.to_owned());
    let parsed = Reference::parse(repo).map_err(|_| bad())?;
    if parsed.domain().is_some() && parsed.domain() != target.domain() {
        return Err(bad());
    }
    let host = target.domain().unwrap_or("docker.io");
    format!("{host}/{}", parsed.path())
        .parse::<Reference>()
        .map_err(|_| bad())?
        .normalized()
        .parse()
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        let dir = |p: &str, t: Option<&str>| PushSource::OciDir {
            path: p.into(),
            tag: t.map(Into::into),
        };
        assert_eq!(PushSource::parse("oci:out").ok(), Some(dir("out", None)));
        assert_eq!(
            PushSource::parse("oci:out:1").ok(),
            Some(dir("out", Some("1")))
        );
        assert_eq!(
            PushSource::parse("oci:/tmp/a:b/c").ok(),
            Some(dir("/tmp/a:b/c", None))
        );
        assert_eq!(
            PushSource::parse("cache:1GB,512MB").ok(),
            Some(PushSource::Cached {
                spec: "1GB,512MB".into()
            })
        );
        assert!(PushSource::parse("cache:").is_err());
        assert!(PushSource::parse("out").is_err());
        assert!(PushSource::parse("oci:").is_err());
        assert!(PushSource::parse("oci:out:").is_err());
    }
}
