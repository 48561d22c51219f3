//! What can go wrong on the way to a registry, said in terms of the registry and the image.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("push source `{0}` is not `oci:DIR`, `oci:DIR:TAG` or `cache:SPEC`")]
    BadSource(String),
    #[error("chunk size `{value}` is invalid: {reason}")]
    BadChunkSize { value: String, reason: String },
    #[error("`--mount-from` repository `{0}` is not a repository name")]
    BadMountFrom(String),
    #[error("`{}` is not an OCI image layout: {detail}", path.display())]
    BadLayout { path: PathBuf, detail: String },
    #[error("the OCI layout `{}` has no image tagged `{tag}` (it has: {available})", path.display())]
    NoSuchTag {
        path: PathBuf,
        tag: String,
        available: String,
    },
    #[error("the OCI layout `{}` holds {count} images: name one", path.display())]
    Ambiguous { path: PathBuf, count: usize },
    #[error("cannot read the docker config `{}`: {detail}", path.display())]
    DockerConfig { path: PathBuf, detail: String },
    #[error("credential helper `{helper}` failed for `{registry}`: {detail}")]
    CredentialHelper {
        helper: String,
        registry: String,
        detail: String,
    },
    #[error("cannot set up the registry client: {0}")]
    Client(String),
    #[error(
        "registry `{registry}` refused access to `{repository}` ({status}){}",
        with_body(detail)
    )]
    Unauthorized {
        registry: String,
        repository: String,
        status: u16,
        detail: String,
    },
    #[error(
        "registry `{registry}` has no repository `{repository}` (404){}",
        with_body(detail)
    )]
    RepositoryNotFound {
        registry: String,
        repository: String,
        detail: String,
    },
    #[error("registry `{registry}` rejected the manifest of `{reference}`: {detail}")]
    ManifestRejected {
        registry: String,
        reference: String,
        detail: String,
    },
    #[error(
        "registry `{registry}` answered {status} to {what}{}",
        with_body(detail)
    )]
    Status {
        registry: String,
        what: String,
        status: u16,
        detail: String,
    },
    #[error("giving up on {what} at registry `{registry}` after {attempts} attempts: {detail}")]
    GaveUp {
        registry: String,
        what: String,
        attempts: u32,
        detail: String,
    },
    #[error("cannot talk to registry `{registry}` ({what}): {detail}")]
    Protocol {
        registry: String,
        what: String,
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
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::BadSource(_) => {
                "e.g. `oci:out/layout`, `oci:out/layout:1` or `cache:1GB,512MB`".into()
            }
            Self::BadChunkSize { .. } => "sizes are like `4MB` or `512KB` (powers of 1024)".into(),
            Self::Ambiguous { path, .. } => format!(
                "pick one by its tag: `oci:{}:TAG`",
                path.display()
            ),
            Self::Unauthorized { .. } => "check the credentials: `docker login` (~/.docker/config.json, credential helpers) or IMAGE_MAKER_USERNAME and IMAGE_MAKER_PASSWORD".into(),
            Self::RepositoryNotFound { .. } => {
                "some registries (ECR, Harbor projects) need the repository created before a push".into()
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
