//! Reading an image that exists already: from an OCI layout, an OCI archive, a registry or
//! the cache. A source hands out blobs as streams by descriptor, so that `verify` and
//! `inspect` read each blob once, in order, without storing it.

pub(crate) mod archive;
mod cache;
mod layout;
mod oci_dir;
#[cfg(feature = "registry")]
mod registry;

use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;

#[cfg(feature = "registry")]
pub(crate) use oci_dir::OciDir;

use crate::{Error, Platform, Progress, Reference};

/// Where an image is read from: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker://REF`
/// or `cache:SPEC` (and a directory holding `oci-layout`, without `oci:`).
///
/// ```
/// use image_maker::Source;
///
/// let source = Source::parse("oci:out/small:1")?;
/// assert_eq!(source.to_string(), "oci:out/small:1");
/// assert!(Source::parse("cache:1GB,512MB").is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `oci:DIR[:TAG]`: an OCI image layout on disk.
    OciDir {
        /// The layout's directory.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` to read; `None` for the only image.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`: a tar of an OCI image layout.
    OciArchive {
        /// The archive.
        path: PathBuf,
        /// As for `oci:`.
        tag: Option<String>,
    },
    /// `docker://REF`: an image in a registry, read over the distribution API.
    Registry(Reference),
    /// `cache:SPEC`: the cached image of a layer list, built first if the cache lacks it.
    Cache {
        /// The layer list, as given.
        spec: String,
    },
}

impl Source {
    /// Parses a source as skopeo spells them (`oci:DIR:TAG`; a tag has no `/`).
    pub fn parse(input: &str) -> Result<Self, SourceError> {
        let bad = || SourceError::BadSource(input.to_owned());
        let path_and_tag = |rest: &str| -> Result<(PathBuf, Option<String>), SourceError> {
            let (path, tag) = match rest.rsplit_once(':') {
                Some((path, tag)) if !tag.contains('/') => (path, Some(tag)),
                _ => (rest, None),
            };
            if path.is_empty() || tag.is_some_and(str::is_empty) {
                return Err(bad());
            }
            Ok((path.into(), tag.map(str::to_owned)))
        };
        if let Some(spec) = input.strip_prefix("cache:") {
            return match spec {
                "" => Err(bad()),
                spec => Ok(Self::Cache {
                    spec: spec.to_owned(),
                }),
            };
        }
        if let Some(rest) = input.strip_prefix("docker://") {
            return Reference::parse(rest)
                .map(Self::Registry)
                .map_err(|_| bad());
        }
        if let Some(rest) = input.strip_prefix("oci-archive:") {
            let (path, tag) = path_and_tag(rest)?;
            return Ok(Self::OciArchive { path, tag });
        }
        if let Some(rest) = input.strip_prefix("oci:") {
            let (path, tag) = path_and_tag(rest)?;
            return Ok(Self::OciDir { path, tag });
        }
        // Without a prefix, only a directory that holds `oci-layout` is read as a layout
        // (`DIR`, or `DIR:TAG` when `DIR` is one): nothing else on disk can be mistaken for
        // one, and a mistyped path still gets the error listing the prefixes.
        if is_layout(input) {
            return Ok(Self::OciDir {
                path: input.into(),
                tag: None,
            });
        }
        match path_and_tag(input) {
            Ok((path, Some(tag))) if is_layout(&path) => Ok(Self::OciDir {
                path,
                tag: Some(tag),
            }),
            _ => Err(bad()),
        }
    }

    /// Opens the source. `platforms` is the platform list of a `cache:` image; a missing
    /// cache entry is built first, with status on `progress`.
    pub(crate) fn open(
        &self,
        platforms: &[Platform],
        progress: &mut Progress,
    ) -> Result<Box<dyn Blobs>, Error> {
        Ok(match self {
            Self::OciDir { path, tag } => Box::new(oci_dir::OciDir::open(path, tag.as_deref())?),
            Self::OciArchive { path, tag } => {
                Box::new(archive::Archive::open(path, tag.as_deref())?)
            }
            Self::Cache { spec } => Box::new(cache::open(spec, platforms, progress)?),
            #[cfg(feature = "registry")]
            Self::Registry(reference) => Box::new(registry::Remote::open(reference)?),
            #[cfg(not(feature = "registry"))]
            Self::Registry(_) => {
                return Err(Error::FeatureDisabled {
                    feature: "registry",
                    what: "a `docker://` source",
                })
            }
        })
    }
}

/// Whether `path` is a directory holding an OCI layout's `oci-layout` file.
fn is_layout(path: impl AsRef<std::path::Path>) -> bool {
    let path = path.as_ref();
    path.is_dir() && path.join("oci-layout").is_file()
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tagged =
            |f: &mut std::fmt::Formatter<'_>, kind, path: &PathBuf, tag: &Option<String>| {
                write!(f, "{kind}:{}", path.display())?;
                match tag {
                    Some(tag) => write!(f, ":{tag}"),
                    None => Ok(()),
                }
            };
        match self {
            Self::OciDir { path, tag } => tagged(f, "oci", path, tag),
            Self::OciArchive { path, tag } => tagged(f, "oci-archive", path, tag),
            Self::Registry(reference) => write!(f, "docker://{reference}"),
            Self::Cache { spec } => write!(f, "cache:{spec}"),
        }
    }
}

/// A blob as a manifest or index names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// `os/arch[/variant]`, when an index names the platform.
    pub platform: Option<String>,
}

impl Descriptor {
    /// The descriptor in `value`, or what is wrong with it.
    pub fn parse(value: &Value) -> Result<Self, String> {
        let digest = value["digest"]
            .as_str()
            .ok_or_else(|| "a descriptor has no `digest`".to_owned())?;
        if !crate::digest::is_sha256(digest) {
            return Err(format!("digest `{digest}` is not sha256"));
        }
        let size = value["size"]
            .as_u64()
            .ok_or_else(|| format!("descriptor {digest} has no `size`"))?;
        let platform = value.get("platform").and_then(|p| {
            let os = p["os"].as_str()?;
            let arch = p["architecture"].as_str()?;
            Some(match p["variant"].as_str() {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            })
        });
        Ok(Self {
            media_type: value["mediaType"].as_str().unwrap_or_default().to_owned(),
            digest: digest.to_owned(),
            size,
            platform,
        })
    }

    /// The 64 hex digits after `sha256:`.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// An opened source: what its reference resolves to, and each blob as a stream.
pub(crate) trait Blobs {
    /// The descriptor of the image (a manifest or an index) the source names.
    fn top(&self) -> &Descriptor;
    /// The blob `descriptor` names, as its bytes stream in; [`OpenError::Missing`] when the
    /// source does not have it.
    fn open(&mut self, descriptor: &Descriptor) -> Result<Box<dyn Read + '_>, OpenError>;
}

/// Why a blob cannot be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The source lacks the blob: the image is damaged.
    Missing(String),
    /// Something else went wrong (a connection, a permission).
    Other(Error),
}

impl From<Error> for OpenError {
    fn from(e: Error) -> Self {
        Self::Other(e)
    }
}

/// Why a source cannot be used as given (exit 2), or cannot be read at all (exit 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The source has none of the known prefixes (and is no layout directory), or lacks its
    /// path or tag.
    #[error("source `{0}` is not `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker://REF` or `cache:SPEC`")]
    BadSource(String),
    /// The layout, archive or its `index.json` is not there.
    #[error("cannot open `{name}`: {detail}")]
    Missing {
        /// The source as given.
        name: String,
        /// Why, from the operating system.
        detail: String,
    },
    /// `:TAG` names a tag the layout's index does not carry.
    #[error("`{name}` has no image tagged `{tag}` (it has: {available})")]
    NoSuchTag {
        /// The layout or archive.
        name: String,
        /// The tag asked for.
        tag: String,
        /// The tags it has, comma-separated, or `no tags`.
        available: String,
    },
    /// No tag was given and the layout's index names several images.
    #[error("`{name}` holds {count} images: name one")]
    Ambiguous {
        /// The layout or archive.
        name: String,
        /// How many images its index names.
        count: usize,
    },
    /// The source exists but cannot be read: a malformed `index.json`, a registry that
    /// refuses or does not answer.
    #[error("cannot read `{name}`: {detail}")]
    Unreadable {
        /// The source as given.
        name: String,
        /// What went wrong.
        detail: String,
    },
}

impl SourceError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::BadSource(_) => Some(
                "e.g. `oci:out/img`, `oci:out/img:1`, `oci-archive:img.tar`, `docker://localhost:5000/mock/img:1`, `cache:1GB,512MB`; a directory needs no `oci:` when it holds `oci-layout`".into(),
            ),
            Self::Missing { .. } => Some("check the path; an `oci:` source is a directory holding `index.json`".into()),
            Self::NoSuchTag { .. } | Self::Ambiguous { .. } => {
                Some("name the image by its tag: `oci:DIR:TAG`".into())
            }
            Self::Unreadable { .. } => None,
        }
    }

    /// 2 for a source that cannot be used as given; 1 for one that fails to read.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Unreadable { .. } => 1,
            _ => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        let dir = |p: &str, t: Option<&str>| Source::OciDir {
            path: p.into(),
            tag: t.map(Into::into),
        };
        assert_eq!(Source::parse("oci:out").ok(), Some(dir("out", None)));
        assert_eq!(Source::parse("oci:out:1").ok(), Some(dir("out", Some("1"))));
        assert_eq!(Source::parse("oci:/a:b/c").ok(), Some(dir("/a:b/c", None)));
        assert!(matches!(
            Source::parse("oci-archive:x.tar"),
            Ok(Source::OciArchive { tag: None, .. })
        ));
        assert!(matches!(
            Source::parse("docker://localhost:5000/a/b:1"),
            Ok(Source::Registry(_))
        ));
        assert!(matches!(
            Source::parse("cache:1MB"),
            Ok(Source::Cache { .. })
        ));
        let tmp = tempfile::tempdir().expect("temp dir");
        let layout = tmp.path().join("lay");
        std::fs::create_dir(&layout).expect("mkdir");
        let bare = layout.to_str().expect("utf-8");
        // Not a layout yet: a bare path is no source.
        assert!(Source::parse(bare).is_err());
        std::fs::write(layout.join("oci-layout"), "{}").expect("write");
        assert_eq!(Source::parse(bare).ok(), Some(dir(bare, None)));
        assert_eq!(
            Source::parse(&format!("{bare}:1")).ok(),
            Some(dir(bare, Some("1")))
        );
        assert!(Source::parse(&format!("{bare}/nope")).is_err());
        for bad in [
            "out",
            "oci:",
            "oci:out:",
            "cache:",
            "docker://",
            "oci-archive:",
        ] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Source::parse("oci:out:1")
                .map(|s| s.to_string())
                .ok()
                .as_deref(),
            Some("oci:out:1")
        );
    }
}
