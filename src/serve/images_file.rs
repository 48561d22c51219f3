//! `--images FILE`: images named explicitly, for specs without a tag form or names a test
//! suite already uses.
//!
//! ```toml
//! "mock/app:v1" = { layers = "1GB,512MB", platform = "linux/amd64" }
//! "mock/app:v2" = { layers = "1.5GB" }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use super::ServeError;
use crate::platform::Platform;
use crate::spec::Spec;

/// One image of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedImage {
    /// The layers.
    pub spec: Spec,
    /// The platform, or several for an index (`platform = "linux/amd64,linux/arm64"`);
    /// `linux/amd64` unless the file says otherwise.
    pub platforms: Vec<Platform>,
}

/// Images by repository, then tag.
pub type Named = HashMap<String, BTreeMap<String, NamedImage>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    layers: String,
    platform: Option<String>,
}

/// What is wrong in an images file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImagesProblem {
    /// The file is not TOML of the expected shape (the TOML parser's words).
    #[error("{0}")]
    Toml(String),
    /// An entry's name has no `:TAG`.
    #[error("`{0}` has no tag: write `{0}:TAG`")]
    NoTag(String),
    /// An entry's repository is not a repository name.
    #[error("`{repository}` in `{name}` is not a repository name (lowercase letters, digits, `._-`, components separated by `/`)")]
    Repository {
        /// The entry's name.
        name: String,
        /// Its repository part.
        repository: String,
    },
    /// An entry's tag is not a tag.
    #[error("`{tag}` in `{name}` is not a tag")]
    Tag {
        /// The entry's name.
        name: String,
        /// Its tag part.
        tag: String,
    },
    /// An entry's `layers` is not a spec.
    #[error("`{name}`: {source}")]
    Spec {
        /// The entry's name.
        name: String,
        /// Why.
        source: crate::SpecError,
    },
    /// An entry's `platform` is not a platform list.
    #[error("`{name}`: {source}")]
    Platform {
        /// The entry's name.
        name: String,
        /// Why.
        source: crate::PlatformError,
    },
}

/// Reads and checks the whole file; the error names the file and the entry.
pub fn read(path: &Path) -> Result<Named, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServeError::ImagesRead {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|problem| ServeError::Images {
        path: path.to_path_buf(),
        problem: Box::new(problem),
    })
}

/// Parses the file's text.
pub fn parse(text: &str) -> Result<Named, ImagesProblem> {
    let raw: BTreeMap<String, Raw> = toml::from_str(text).map_err(|e| {
        ImagesProblem::Toml(
            e.message().to_string()
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        )
    })?;
    let mut named = Named::new();
    for (name, image) in raw {
        let (repository, tag) = split(&name)?;
        let spec = Spec::parse(&image.layers).map_err(|source| ImagesProblem::Spec {
            name: name.clone(),
            source,
        })?;
        let platforms = match &image.platform {
            Some(p) => Platform::parse_list(p).map_err(|source| ImagesProblem::Platform {
                name: name.clone(),
                source,
            })?,
            None => vec![Platform::default()],
        };
        named
            .entry(repository.to_owned())
            .or_default()
            .insert(tag.to_owned(), NamedImage { spec, platforms });
    }
    Ok(named)
}

/// `repo/name:tag` → (`repo/name`, `tag`); the tag is required, and both must be what a
/// registry accepts.
fn split(name: &str) -> Result<(&str, &str), ImagesProblem> {
    let (repository, tag) = name
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .ok_or_else(|| ImagesProblem::NoTag(name.to_owned()))?;
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
    };
    if !repository.split('/').all(component_ok) {
        return Err(ImagesProblem::Repository {
            name: name.to_owned(),
            repository: repository.to_owned(),
        });
    }
    let tag_ok = tag.len() <= crate::spec::MAX_TAG_LEN
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !tag_ok {
        return Err(ImagesProblem::Tag {
            name: name.to_owned(),
            tag: tag.to_owned(),
        });
    }
    Ok((repository, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issues_example_and_errors_that_name_the_entry() {
        let named = parse(
            r#""mock/app:v1" = { layers = "1GB,512MB", platform = "linux/arm64" }
"mock/app:v2" = { layers = "1.5GB" }
"mock/app:v3" = { layers = "1MB", platform = "linux/amd64,linux/arm/v7" }"#,
        )
        .expect("valid");
        assert_eq!(named["mock/app"]["v3"].platforms.len(), 2);
        let app = &named["mock/app"];
        assert_eq!(app["v1"].spec, Spec::parse("1GB,512MB").expect("valid"));
        assert_eq!(
            app["v1"].platforms,
            [Platform::parse("linux/arm64").expect("valid")]
        );
        assert_eq!(app["v2"].platforms, [Platform::default()]);
        let e = parse(r#""mock/app" = { layers = "1GB" }"#)
            .expect_err("no tag")
            .to_string();
        assert!(e.contains("`mock/app` has no tag"), "{e}");
        let e = parse(r#""mock/app:v1" = { layers = "1XB" }"#)
            .expect_err("bad spec")
            .to_string();
        assert!(
            e.starts_with("`mock/app:v1`: ") && e.contains("`XB`"),
            "{e}"
        );
        let e = parse(r#""mock/app:v1" = { layer = "1GB" }"#)
            .expect_err("typo")
            .to_string();
        assert!(e.contains("layer"), "{e}");
        let e = parse(r#""m:v1" = { layers = "1GB", platform = "linux/arm64,linux/arm64" }"#)
            .expect_err("twice")
            .to_string();
        assert!(
            e.starts_with("`m:v1`: ") && e.contains("listed twice"),
            "{e}"
        );
        let e = parse(r#""Mock:v1" = { layers = "1GB" }"#)
            .expect_err("uppercase")
            .to_string();
        assert!(e.contains("`Mock`"), "{e}");
    }
}
