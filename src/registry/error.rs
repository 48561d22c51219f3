//! What can go wrong on the way to a registry, said in terms of the registry and the image.

use std::path::PathBuf;

/// Why a push failed, or why its source or options cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The source of `image-maker push` has neither the `oci:` nor the `cache:` prefix, or
    /// lacks a path or tag after it.
    #[error("push source `{0}` is not `oci:DIR`, `oci:DIR:TAG` or `cache:SPEC`")]
    BadSource(String),
    /// `--chunk-size` is not a size, or is zero.
    #[error("chunk size `{value}` {reason}")]
    BadChunkSize {
        /// The size as given.
        value: String,
        /// Why it is refused, as a predicate: `is not a number`, `is zero`.
        reason: String,
    },
    /// `--mount-from` is not a repository name, or names a repository on another registry
    /// than the target's.
    #[error("`--mount-from` repository `{0}` is not a repository name")]
    BadMountFrom(String),
    /// The source directory lacks a readable `index.json`, or its index, manifest or config
    /// is malformed or does not match its digest.
    #[error("`{}` is not an OCI image layout: {detail}", path.display())]
    BadLayout {
        /// The directory given as the source.
        path: PathBuf,
        /// What is missing or malformed.
        detail: String,
    },
    /// The docker config file exists but cannot be read or parsed, or holds an `auth` that
    /// is not base64 of `user:password`.
    #[error("cannot read the docker config `{}`: {detail}", path.display())]
    DockerConfig {
        /// The config file, usually `~/.docker/config.json`.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The credential helper the docker config names could not run, failed, or answered
    /// something unreadable.
    #[error("credential helper `{helper}` failed for `{registry}`: {detail}")]
    CredentialHelper {
        /// The helper's program, e.g. `docker-credential-pass`.
        helper: String,
        /// The registry whose credentials were asked for.
        registry: String,
        /// Why it failed, as the helper said.
        detail: String,
    },
    /// The HTTP client or its runtime cannot be set up, or the target gives no valid URL.
    #[error("cannot set up the registry client: {step}: {detail}")]
    Client {
        /// What was being made: `the registry's URL`, `the HTTP client`, ….
        step: &'static str,
        /// The HTTP library's words.
        detail: String,
    },
    /// The registry answered 401 or 403: credentials are missing, wrong, or lack push
    /// rights.
    #[error(
        "registry `{registry}` refused access to `{repository}` ({status}){}",
        with_body(detail)
    )]
    Unauthorized {
        /// The registry host, e.g. `localhost:5000`.
        registry: String,
        /// The repository pushed to.
        repository: String,
        /// The HTTP status: 401 or 403.
        status: u16,
        /// The response body, if any.
        detail: String,
    },
    /// The registry answered 404, as registries do that need repositories created first.
    #[error(
        "registry `{registry}` has no repository `{repository}` (404){}",
        with_body(detail)
    )]
    RepositoryNotFound {
        /// The registry host.
        registry: String,
        /// The repository pushed to.
        repository: String,
        /// The response body, if any.
        detail: String,
    },
    /// The registry answered 400 to the manifest upload, the last step of a push.
    #[error("registry `{registry}` rejected the manifest of `{reference}`: {detail}")]
    ManifestRejected {
        /// The registry host.
        registry: String,
        /// The image pushed, `name:tag`.
        reference: String,
        /// The registry's reasons.
        detail: String,
    },
    /// The registry answered with an HTTP status that is neither success, one with its own
    /// variant here, nor worth retrying (429, 5xx).
    #[error(
        "registry `{registry}` answered {status} to {what}{}",
        with_body(detail)
    )]
    Status {
        /// The registry host.
        registry: String,
        /// The step that failed, e.g. `the upload of blob sha256:…`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The response body, if any.
        detail: String,
    },
    /// A step kept failing with connection errors, 429 or 5xx after every retry allowed.
    #[error("giving up on {what} at registry `{registry}` after {attempts} attempts: {detail}")]
    GaveUp {
        /// The registry host.
        registry: String,
        /// The step that kept failing.
        what: String,
        /// How many times it was tried: the first attempt and every retry.
        attempts: u32,
        /// The last failure.
        detail: String,
    },
    /// Nothing listens at the registry's address: every address it resolves to refused the
    /// connection.
    #[error("registry `{registry}` refuses connections at {address}")]
    Refused {
        /// The registry host, as the image names it.
        registry: String,
        /// The addresses tried.
        address: String,
    },
    /// The registry answered with OCI error codes, or the connection failed in a way not
    /// worth retrying (TLS, a malformed answer).
    #[error("cannot talk to registry `{registry}` ({what}): {detail}")]
    Protocol {
        /// The registry host.
        registry: String,
        /// The step that failed.
        what: String,
        /// The client's error with its causes, or the registry's error codes.
        detail: String,
    },
}

fn with_body(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl RegistryError {
    /// What the user can do about it, if there is something useful to say.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::BadSource(_) => {
                "e.g. `oci:out/layout`, `oci:out/layout:1` or `cache:1GB,512MB`; a directory needs no `oci:` when it holds `oci-layout`".into()
            }
            Self::BadChunkSize { .. } => "sizes are like `4MB` or `512KB` (powers of 1024)".into(),
            Self::Unauthorized { .. } => "check the credentials: `docker login` (~/.docker/config.json, credential helpers) or IMAGE_MAKER_USERNAME and IMAGE_MAKER_PASSWORD".into(),
            Self::RepositoryNotFound { .. } => {
                "some registries (ECR, Harbor projects) need the repository created before a push".into()
            }
            Self::Refused { .. } => {
                "start the registry, or check the host and port in IMAGE (`host[:port]/name[:tag]`); nothing was built".into()
            }
            Self::GaveUp { .. } => {
                "check that the registry runs and answers; blobs already pushed are skipped next time".into()
            }
            Self::Protocol { detail, .. }
                if detail.contains("certificate") || detail.contains("InvalidContentType") || detail.contains("tls") =>
            {
                "for a registry without TLS, pass `--insecure` (plain HTTP is automatic only for localhost and 127.0.0.0/8)".into()
            }
            _ => return None,
        })
    }

    /// Bad command-line input is a usage error (2); everything else a failed push (1).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::BadSource(_) | Self::BadChunkSize { .. } | Self::BadMountFrom(_) => 2,
            _ => 1,
        }
    }
}
