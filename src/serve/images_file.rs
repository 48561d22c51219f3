//! `--images FILE`: images named explicitly, for specs without a tag form or names a test
//! suite already uses.
//!
//! ```toml
//! "mock/app:v1" = { layers = "1GB,512MB", platform = "linux/amd64" }
//! "mock/app:v2" = { layers = "1.5GB" }
//! "mock/app:v3" = { layers = "1MB", entrypoint = ["/bin/app", "-v"], env = ["MODE=test"], labels = { team = "storage" }, expose = ["8080"] }
//! ```
//!
//! An entry's config keys are the command line's flags: `entrypoint` and `cmd` (an array of
//! strings, or a string split on whitespace), `env = ["K=V"]`, `workdir`, `user`, `labels`
//! and `annotations` (a table, or `["K=V"]`), `expose = ["80/tcp"]`, `stop_signal`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::ServeError;
use crate::platform::Platform;
use crate::spec::Spec;
use crate::ImageConfig;

/// One image of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedImage {
    /// The layers.
    pub spec: Spec,
    /// The platform, or several for an index (`platform = "linux/amd64,linux/arm64"`);
    /// `linux/amd64` unless the file says otherwise.
    pub platforms: Vec<Platform>,
    /// The config beyond the layers (`entrypoint`, `env`, …); empty unless the entry sets it.
    pub config: ImageConfig,
}

/// Images by repository, then tag.
pub type Named = BTreeMap<String, BTreeMap<String, NamedImage>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    layers: String,
    platform: Option<String>,
    entrypoint: Option<Words>,
    cmd: Option<Words>,
    #[serde(default)]
    env: Vec<String>,
    workdir: Option<String>,
    user: Option<String>,
    #[serde(default)]
    labels: Pairs,
    #[serde(default)]
    annotations: Pairs,
    #[serde(default)]
    expose: Vec<String>,
    stop_signal: Option<String>,
    runnable: Option<Runnable>,
    // A family's keys (family.rs): an entry that has `repository` is one.
    repository: Option<String>,
    tags: Option<Tags>,
    base: Option<String>,
    #[serde(default)]
    semver: bool,
}

/// `tags`: a list, or one string (`"1..20"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Tags {
    One(String),
    List(Vec<String>),
}

/// `runnable = true`, or the `run` entry's options as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Runnable {
    Yes(bool),
    Options(String),
}

/// `entrypoint` and `cmd`: the arguments, or one string split on whitespace.
#[derive(Deserialize)]
#[serde(untagged)]
enum Words {
    Text(String),
    List(Vec<String>),
}

/// `labels` and `annotations`: a table, or a list of `K=V`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Pairs {
    Table(BTreeMap<String, String>),
    List(Vec<String>),
}

impl Default for Pairs {
    fn default() -> Self {
        Self::List(Vec::new())
    }
}

impl Pairs {
    fn entries(&self) -> Vec<String> {
        match self {
            Self::Table(map) => map.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            Self::List(list) => list.clone(),
        }
    }
}

impl Raw {
    /// The entry's config, through the one parser the command line's flags go through (an
    /// array of arguments as the JSON text `--entrypoint` takes).
    fn config(&self) -> Result<ImageConfig, crate::ConfigError> {
        let words = |words: &Option<Words>| -> Vec<String> {
            match words {
                None => Vec::new(),
                Some(Words::Text(text)) => vec![text.clone()],
                Some(Words::List(list)) => {
                    vec![serde_json::to_string(list).unwrap_or_else(|_| "[]".into())]
                }
            }
        };
        let one = |value: &Option<String>| value.iter().cloned().collect::<Vec<_>>();
        let keys: [(&str, Vec<String>); 9] = [
            ("entrypoint", words(&self.entrypoint)),
            ("cmd", words(&self.cmd)),
            ("env", self.env.clone()),
            ("workdir", one(&self.workdir)),
            ("user", one(&self.user)),
            ("label", self.labels.entries()),
            ("annotation", self.annotations.entries()),
            ("expose", self.expose.clone()),
            ("stop_signal", one(&self.stop_signal)),
        ];
        let mut config = ImageConfig::new();
        for (key, values) in keys {
            for value in values {
                config = config.set(key, &value)?;
            }
        }
        Ok(config)
    }
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
    /// An entry's config value (`env`, `expose`, …) does not parse.
    #[error("`{name}`: {source}")]
    Config {
        /// The entry's name.
        name: String,
        /// Why.
        source: crate::ConfigError,
    },
    /// A family entry without `tags`, or with family keys but no `repository`.
    #[error(
        "`{0}`: a family entry has `repository` and `tags`; an entry named `REPO:TAG` has neither"
    )]
    Family(String),
    /// A `{A..B}` or `A..B` that is not a range of whole numbers, A at most B.
    #[error("`{name}`: `{text}` is not a range `{{A..B}}` of whole numbers from A to B")]
    Range {
        /// The entry's name.
        name: String,
        /// The text as given.
        text: String,
    },
    /// The file names more images than it may.
    #[error("the file names more than {0} images")]
    TooMany(usize),
    /// `base` names no entry.
    #[error("`{name}`: its base `{base}` is no entry of the file")]
    NoBase {
        /// The entry's name.
        name: String,
        /// The base as given.
        base: String,
    },
    /// A base entry's name, which seeds its layers, is not a `seed=` name.
    #[error("`{0}` is a base, and a base's name seeds its layers: letters, digits and `._-`, at most 60")]
    BaseName(String),
    /// Entries that are each other's base.
    #[error("the entries' bases go round: {0}")]
    BaseCycle(String),
    /// An entry names a tag twice.
    #[error("`{name}` names the tag `{tag}` twice")]
    DuplicateTag {
        /// The entry's name.
        name: String,
        /// The tag.
        tag: String,
    },
    /// Two entries name the same image.
    #[error("`{0}` is named by two entries")]
    DuplicateImage(String),
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
    let mut families = Vec::new();
    let mut insert = |repository: &str, tag: &str, image: NamedImage| {
        let tags = named.entry(repository.to_owned()).or_default();
        match tags.insert(tag.to_owned(), image) {
            None => Ok(()),
            Some(_) => Err(ImagesProblem::DuplicateImage(format!("{repository}:{tag}"))),
        }
    };
    for (name, image) in raw {
        let run = match &image.runnable {
            None | Some(Runnable::Yes(false)) => None,
            Some(Runnable::Yes(true)) => Some(""),
            Some(Runnable::Options(options)) => Some(options.as_str()),
        };
        let spec = Spec::parse(&image.layers)
            .and_then(|spec| match run {
                Some(options) => spec.with_run(options),
                None => Ok(spec),
            })
            .map_err(|source| ImagesProblem::Spec {
                name: name.clone(),
                source,
            })?;
        let platforms = match &image.platform {
            Some(p) => Some(
                Platform::parse_list(p).map_err(|source| ImagesProblem::Platform {
                    name: name.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        let config = image.config().map_err(|source| ImagesProblem::Config {
            name: name.clone(),
            source,
        })?;
        match (image.repository, image.tags) {
            (None, None) if image.base.is_none() && !image.semver => {
                let (repository, tag) = split(&name)?;
                let platforms = platforms.unwrap_or_else(|| vec![Platform::default()]);
                insert(
                    repository,
                    tag,
                    NamedImage {
                        spec,
                        platforms,
                        config,
                    },
                )?;
            }
            (Some(repository), Some(tags)) if !name.contains(':') => {
                families.push(super::family::Entry {
                    name,
                    repository,
                    tags: match tags {
                        Tags::One(tag) => vec![tag],
                        Tags::List(tags) => tags,
                    },
                    base: image.base,
                    semver: image.semver,
                    spec,
                    platforms,
                    config,
                });
            }
            _ => return Err(ImagesProblem::Family(name)),
        }
    }
    for image in super::family::expand(&families)? {
        let name = format!("{}:{}", image.repository, image.tag);
        split(&name)?;
        insert(
            &image.repository,
            &image.tag,
            NamedImage {
                spec: image.spec,
                platforms: image.platforms,
                config: image.config,
            },
        )?;
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
        assert!(app["v2"].config.is_empty());
        let named = parse(
            r#""m:a" = { layers = "1KB", entrypoint = ["/bin/a b", "-v"], cmd = "x  y", env = ["A=1"], labels = { team = "s" }, annotations = ["o.a=b"], expose = ["80", "53/udp"], stop_signal = "TERM", workdir = "/w", user = "u" }
"m:b" = { layers = "1KB", labels = ["team=s"] }"#,
        )
        .expect("valid");
        let config = &named["m"]["a"].config;
        assert_eq!(
            config.entrypoint_args(),
            Some(&["/bin/a b".to_owned(), "-v".to_owned()][..])
        );
        assert_eq!(
            config.cmd_args(),
            Some(&["x".to_owned(), "y".to_owned()][..])
        );
        assert_eq!(config.exposed_ports(), ["53/udp", "80/tcp"]);
        assert_eq!(config.annotations()["o.a"], "b");
        assert_eq!(config.labels(), named["m"]["b"].config.labels());
        let run = parse(
            r#""m:a" = { layers = "1MB", runnable = true }
"m:b" = { layers = "1MB", runnable = "ready=up" }
"m:c" = { layers = "1MB", runnable = false }"#,
        )
        .expect("valid");
        let canonical = |tag: &str| run["m"][tag].spec.canonical();
        assert_eq!(canonical("a"), "1MB:files=1,run");
        assert_eq!(canonical("b"), "1MB:files=1,run:ready=up");
        assert_eq!(canonical("c"), "1MB:files=1");
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
        let e = parse(r#""m:v1" = { layers = "1GB", expose = ["0"] }"#)
            .expect_err("port 0")
            .to_string();
        assert_eq!(e, "`m:v1`: port `0` is not a port number from 1 to 65535");
        let e = parse(r#""m:v1" = { layers = "1GB", labels = { "" = "x" } }"#)
            .expect_err("empty key")
            .to_string();
        assert_eq!(e, "`m:v1`: label `=x` has an empty key");
        let e = parse(r#""m:v1" = { layers = "1GB", entrypoint = "{}" }"#)
            .expect_err("not an array")
            .to_string();
        assert_eq!(e, "`m:v1`: entrypoint `{}` is not a JSON array of strings");
        let e = parse(r#""Mock:v1" = { layers = "1GB" }"#)
            .expect_err("uppercase")
            .to_string();
        assert!(e.contains("`Mock`"), "{e}");
    }
}
