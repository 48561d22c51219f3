//! Families in an images file: an entry that is a table with `repository` declares many
//! images at once, ranges of repositories and tags, semantic-version aliases, and images
//! that start from another entry's (`base = "NAME"`). `serve --images` and `batch` read the
//! same file, so they name the same images, byte for byte.
//!
//! ```toml
//! [base]
//! repository = "acme/base"
//! tags = ["1.0.0"]
//! layers = "256MB:seed=base"
//!
//! [app]
//! repository = "acme/app-{1..100}"
//! tags = ["0.1.0", "0.2.0"]
//! base = "base"
//! layers = "16MB,1MB:tree=200"
//! ```
//!
//! An image on a base is the base entry's layers, then its own; the base's config, then its
//! own over it. So that the layers are the base's byte for byte, a base entry's layers
//! without `seed=` get one of the entry's name (`seed=base-1`, …); every other entry's get
//! one of the image's repository and tag, so that each image of a family is its own.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest as _, Sha256};

use super::images_file::ImagesProblem;
use crate::spec::{LayerSpec, Spec};
use crate::ImageConfig;

/// The most images one file may declare, ranges and aliases counted.
pub const MAX_IMAGES: usize = 100_000;

/// One family entry, read but not expanded.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The table's name.
    pub name: String,
    /// `repository`, braces unexpanded.
    pub repository: String,
    /// `tags`, each braces unexpanded, or one `A..B` range.
    pub tags: Vec<String>,
    /// `base = "NAME"`.
    pub base: Option<String>,
    /// `semver = true`: `1.2.3` is also `1.2` and `1`, for the highest of each.
    pub semver: bool,
    /// The entry's own layers.
    pub spec: Spec,
    /// `platform`, when given.
    pub platforms: Option<Vec<crate::Platform>>,
    /// The entry's own config.
    pub config: ImageConfig,
}

/// One image a family names: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    pub repository: String,
    pub tag: String,
    pub spec: Spec,
    pub platforms: Vec<crate::Platform>,
    pub config: ImageConfig,
}

/// Every image the entries name, in the file's order of entries, then repositories, then
/// tags; a version's aliases just before it.
pub(crate) fn expand(entries: &[Entry]) -> Result<Vec<Image>, ImagesProblem> {
    let by_name: BTreeMap<&str, &Entry> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
    let bases: BTreeSet<&str> = entries.iter().filter_map(|e| e.base.as_deref()).collect();
    // `NAME-N` for any layer count: 60 bytes leave room for `-10000`.
    if let Some(name) = bases
        .iter()
        .find(|name| name.len() > 60 || crate::spec::Word::parse(&format!("{name}-1")).is_none())
    {
        return Err(ImagesProblem::BaseName((*name).to_owned()));
    }
    let mut images = Vec::new();
    for entry in entries {
        let repositories = braces(&entry.repository, &entry.name)?;
        let tags = tags(entry)?;
        let tag_set: BTreeSet<&String> = tags.iter().collect();
        let highest = entry.semver.then(|| Highest::of(&tags));
        for repository in &repositories {
            for tag in &tags {
                let own = if bases.contains(entry.name.as_str()) {
                    seeded(&entry.spec, &entry.name)
                } else {
                    let hash = Sha256::digest(format!("{repository}:{tag}").as_bytes());
                    seeded(&entry.spec, &crate::digest::hex(&hash)[..16])
                };
                let (layers, platforms, config) = resolve(entry, own, &by_name, &mut Vec::new())?;
                let spec = Spec::from_layers(layers).map_err(|source| ImagesProblem::Spec {
                    name: entry.name.clone(),
                    source,
                })?;
                let image = Image {
                    repository: repository.clone(),
                    tag: tag.clone(),
                    spec,
                    platforms,
                    config,
                };
                // An alias is the image of the version it names, tagged again.
                let aliases = match &highest {
                    Some(highest) => highest.aliases_of(tag),
                    None => Vec::new(),
                };
                for alias in aliases.into_iter().filter(|a| !tag_set.contains(a)) {
                    images.push(Image {
                        tag: alias,
                        ..image.clone()
                    });
                }
                images.push(image);
                if images.len() > MAX_IMAGES {
                    return Err(ImagesProblem::TooMany(MAX_IMAGES));
                }
            }
        }
    }
    Ok(images)
}

type Resolved = (Vec<LayerSpec>, Vec<crate::Platform>, ImageConfig);

/// The layers, platforms and config of an image of `entry` whose own layers are `own`:
/// its base's (recursively), then its own.
fn resolve(
    entry: &Entry,
    own: Vec<LayerSpec>,
    by_name: &BTreeMap<&str, &Entry>,
    visiting: &mut Vec<String>,
) -> Result<Resolved, ImagesProblem> {
    let Some(base_name) = &entry.base else {
        let platforms = entry
            .platforms
            .clone()
            .unwrap_or_else(|| vec![crate::Platform::default()]);
        return Ok((own, platforms, entry.config.clone()));
    };
    if visiting.contains(base_name) || *base_name == entry.name {
        visiting.push(base_name.clone());
        return Err(ImagesProblem::BaseCycle(visiting.join(" → ")));
    }
    visiting.push(entry.name.clone());
    let base = by_name
        .get(base_name.as_str())
        .ok_or_else(|| ImagesProblem::NoBase {
            name: entry.name.clone(),
            base: base_name.clone(),
        })?;
    let (mut layers, platforms, config) =
        resolve(base, seeded(&base.spec, &base.name), by_name, visiting)?;
    layers.extend(own);
    let platforms = entry.platforms.clone().unwrap_or(platforms);
    Ok((layers, platforms, entry.config.over(&config)))
}

/// The layers of `spec`, each without `seed=` given one of `prefix` and its place:
/// `seed=PREFIX-N`. A layer with whiteouts (which delete what is below it) and the `run`
/// entry keep theirs.
fn seeded(spec: &Spec, prefix: &str) -> Vec<LayerSpec> {
    spec.layers()
        .iter()
        .zip(1..)
        .map(|(layer, n)| {
            let mut layer = *layer;
            if layer.seed.is_none() && layer.run.is_none() && layer.extra.whiteouts == 0 {
                layer.seed = crate::spec::Word::parse(&format!("{prefix}-{n}"));
            }
            layer
        })
        .collect()
}

/// The entry's tags, ranges expanded.
fn tags(entry: &Entry) -> Result<Vec<String>, ImagesProblem> {
    let mut tags = Vec::new();
    for tag in &entry.tags {
        match tag.split_once("..") {
            Some((from, to)) if !tag.contains('{') => {
                tags.extend(range(from, to).ok_or_else(|| ImagesProblem::Range {
                    name: entry.name.clone(),
                    text: tag.clone(),
                })?)
            }
            _ => tags.extend(braces(tag, &entry.name)?),
        }
        if tags.len() > MAX_IMAGES {
            return Err(ImagesProblem::TooMany(MAX_IMAGES));
        }
    }
    let mut seen = BTreeSet::new();
    for tag in &tags {
        if !seen.insert(tag) {
            return Err(ImagesProblem::DuplicateTag {
                name: entry.name.clone(),
                tag: tag.clone(),
            });
        }
    }
    Ok(tags)
}

/// `1.2.3` as numbers.
pub(crate) fn semver(tag: &str) -> Option<(u64, u64, u64)> {
    let mut parts = tag.split('.');
    let mut next = || {
        parts
            .next()
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))?
            .parse::<u64>()
            .ok()
    };
    let version = (next()?, next()?, next()?);
    parts.next().is_none().then_some(version)
}

/// The highest version of each `X.Y` and `X` among an entry's tags, found once.
struct Highest {
    minor: BTreeMap<(u64, u64), (u64, u64, u64)>,
    major: BTreeMap<u64, (u64, u64, u64)>,
}

impl Highest {
    fn of(tags: &[String]) -> Self {
        let mut highest = Self {
            minor: BTreeMap::new(),
            major: BTreeMap::new(),
        };
        for version in tags.iter().filter_map(|t| semver(t)) {
            let minor = highest
                .minor
                .entry((version.0, version.1))
                .or_insert(version);
            *minor = (*minor).max(version);
            let major = highest.major.entry(version.0).or_insert(version);
            *major = (*major).max(version);
        }
        highest
    }

    /// The aliases an image tagged `tag` also answers to: the `X.Y` and `X` whose highest
    /// version it is.
    fn aliases_of(&self, tag: &str) -> Vec<String> {
        let Some(version @ (major, minor, _)) = semver(tag) else {
            return Vec::new();
        };
        let mut aliases = Vec::new();
        if self.minor.get(&(major, minor)) == Some(&version) {
            aliases.push(format!("{major}.{minor}"));
        }
        if self.major.get(&major) == Some(&version) {
            aliases.push(major.to_string());
        }
        aliases
    }
}

/// `A..B`: the numbers from A to B, as wide as A when A has leading zeros.
fn range(from: &str, to: &str) -> Option<Vec<String>> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(from) || !digits(to) {
        return None;
    }
    let (a, b) = (from.parse::<u64>().ok()?, to.parse::<u64>().ok()?);
    if a > b || b - a >= MAX_IMAGES as u64 {
        return None;
    }
    let width = if from.starts_with('0') && from.len() > 1 {
        from.len()
    } else {
        0
    };
    Some((a..=b).map(|n| format!("{n:0width$}")).collect())
}

/// The most `{A..B}` groups one name may have.
const MAX_GROUPS: usize = 8;

/// `app-{1..3}-{01..02}` → every combination, in order.
fn braces(text: &str, name: &str) -> Result<Vec<String>, ImagesProblem> {
    if text.matches('{').count() > MAX_GROUPS {
        return Err(ImagesProblem::Range {
            name: name.to_owned(),
            text: text.to_owned(),
        });
    }
    expand_braces(text, name)
}

fn expand_braces(text: &str, name: &str) -> Result<Vec<String>, ImagesProblem> {
    let Some(open) = text.find('{') else {
        return Ok(vec![text.to_owned()]);
    };
    let bad = || ImagesProblem::Range {
        name: name.to_owned(),
        text: text.to_owned(),
    };
    let close = text[open..].find('}').map(|i| open + i).ok_or_else(bad)?;
    let (from, to) = text[open + 1..close].split_once("..").ok_or_else(bad)?;
    let values = range(from, to).ok_or_else(bad)?;
    let rest = expand_braces(&text[close + 1..], name)?;
    if values.len().saturating_mul(rest.len()) > MAX_IMAGES {
        return Err(ImagesProblem::TooMany(MAX_IMAGES));
    }
    let head = &text[..open];
    Ok(values
        .iter()
        .flat_map(|v| rest.iter().map(move |r| format!("{head}{v}{r}")))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, repository: &str, tags: &[&str], layers: &str) -> Entry {
        Entry {
            name: name.to_owned(),
            repository: repository.to_owned(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            base: None,
            semver: false,
            spec: Spec::parse(layers).expect("valid"),
            platforms: None,
            config: ImageConfig::new(),
        }
    }

    #[test]
    fn ranges_and_braces_expand_in_order() {
        assert_eq!(
            braces("app-{1..3}", "e").expect("valid"),
            ["app-1", "app-2", "app-3"]
        );
        assert_eq!(
            braces("a{08..10}/b{1..2}", "e").expect("valid"),
            ["a08/b1", "a08/b2", "a09/b1", "a09/b2", "a10/b1", "a10/b2"]
        );
        for bad in ["a{1..}", "a{3..1}", "a{x..2}", "a{1..2"] {
            assert!(braces(bad, "e").is_err(), "{bad}");
        }
        assert!(matches!(
            braces("{1..1000}{1..1000}", "e"),
            Err(ImagesProblem::TooMany(_))
        ));
        // Eight groups at most: no name recurses without bound.
        assert!(braces(&"{1..1}".repeat(8), "e").is_ok());
        assert!(matches!(
            braces(&"{1..1}".repeat(9), "e"),
            Err(ImagesProblem::Range { .. })
        ));
    }

    #[test]
    fn semver_aliases_are_the_highest_versions_image() {
        let mut e = entry(
            "a",
            "r",
            &["1.2.3", "1.2.10", "1.3.0", "2.0.0", "latest"],
            "1KB",
        );
        e.semver = true;
        let highest = Highest::of(&tags(&e).expect("valid"));
        assert_eq!(highest.aliases_of("1.2.10"), ["1.2"]);
        assert_eq!(highest.aliases_of("1.3.0"), ["1.3", "1"]);
        assert!(highest.aliases_of("1.2.3").is_empty());
        let images = expand(&[e]).expect("valid");
        let tag = |t: &str| images.iter().find(|i| i.tag == t).expect(t);
        assert_eq!(images.len(), 5 + 5);
        assert_eq!(tag("1").spec, tag("1.3.0").spec);
        assert_eq!(tag("1.2").spec, tag("1.2.10").spec);
        assert_eq!(tag("2").spec, tag("2.0.0").spec);
        assert_ne!(tag("1.2.3").spec, tag("1.2.10").spec);
    }

    #[test]
    fn an_image_on_a_base_starts_with_the_bases_layers_byte_for_byte() {
        let base = entry("base", "acme/base", &["1.0.0"], "4MB,1MB:seed=shared");
        let mut app = entry("app", "acme/app-{1..2}", &["1..2"], "64KB");
        app.base = Some("base".to_owned());
        app.config = ImageConfig::new().env("MODE=test").expect("valid");
        let images = expand(&[base, app]).expect("valid");
        let names: Vec<String> = images
            .iter()
            .map(|i| format!("{}:{}", i.repository, i.tag))
            .collect();
        assert_eq!(
            names,
            [
                "acme/base:1.0.0",
                "acme/app-1:1",
                "acme/app-1:2",
                "acme/app-2:1",
                "acme/app-2:2"
            ]
        );
        let base_layers = images[0].spec.layers();
        assert_eq!(
            images[0].spec.canonical(),
            "4MB:files=1:seed=base-1,1MB:files=1:seed=shared"
        );
        for app in &images[1..] {
            assert_eq!(&app.spec.layers()[..2], base_layers);
            assert_eq!(app.config.env_entries(), ["MODE=test"]);
        }
        // Each app image's own layer is its own.
        assert_ne!(images[1].spec.layers()[2], images[2].spec.layers()[2]);
    }

    #[test]
    fn a_missing_or_circular_base_is_refused() {
        let mut a = entry("a", "r/a", &["1"], "1KB");
        a.base = Some("b".to_owned());
        let e = expand(std::slice::from_ref(&a)).expect_err("no b");
        assert!(e.to_string().contains("`b`"), "{e}");
        let mut b = entry("b", "r/b", &["1"], "1KB");
        b.base = Some("a".to_owned());
        let e = expand(&[a, b]).expect_err("cycle");
        assert!(matches!(e, ImagesProblem::BaseCycle(_)), "{e}");
        // A base's name seeds `NAME-N` for every layer: 60 bytes at most.
        for (len, ok) in [(60, true), (61, false)] {
            let name = "b".repeat(len);
            let base = entry(&name, "r/b", &["1"], "1KB");
            let mut app = entry("app", "r/a", &["1"], "1KB");
            app.base = Some(name.clone());
            let got = expand(&[base, app]);
            assert_eq!(got.is_ok(), ok, "{len}: {got:?}");
        }
    }
}
