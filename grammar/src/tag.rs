//! A spec as an image tag, and back: `_` for `,`, `.` for `:`, `-` for `=`.
//!
//! `1GB,512MB` is served as `mock:1GB_512MB`, `64MB:tree=5000` as `mock:64MB.tree-5000`. The
//! three characters swapped are the only punctuation a tag may hold (`[A-Za-z0-9_.-]`, at
//! most 128 characters), and none of them has a meaning of its own in a spec written without
//! decimals or blanks, so the mapping is one reversible function of the text. A spec that
//! has no tag form (a decimal size, more than 128 characters) is named in an images file
//! instead (`image-maker serve --images FILE`).

use crate::spec::{format_size, Spec, SpecError};

/// The most characters a tag may have (OCI distribution spec).
pub const MAX_TAG_LEN: usize = 128;

/// Why a spec has no tag form; each variant says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    /// The spec does not parse.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A size is written with a decimal point, which a tag would read as `:`.
    #[error("layer size `{size}` has a decimal point, which a tag cannot hold")]
    Decimal {
        /// The size as given, e.g. `1.5GB`.
        size: String,
        /// The same size in a smaller unit, e.g. `1536MB`.
        instead: String,
    },
    /// A `ratio=` has a decimal point: no tag form, and no smaller unit to write it in.
    #[error("`ratio={0}` has a decimal point, which a tag cannot hold")]
    DecimalRatio(String),
    /// The tag would be longer than a registry accepts.
    #[error("the tag of `{spec}` would have {len} characters; a tag has at most 128")]
    TooLong {
        /// The spec as given.
        spec: String,
        /// The length of its tag.
        len: usize,
        /// An equal spec whose tag fits (`Nx` for repeated layers), when there is one.
        shorter: Option<String>,
    },
    /// The text has a character that neither a spec nor a tag gives a meaning to.
    #[error("`{0}` has characters a tag cannot hold")]
    Characters(String),
}

impl TagError {
    /// What to write instead.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Spec(e) => e.hint().map(str::to_owned),
            Self::Decimal { instead, .. } => Some(format!("use a smaller unit: `{instead}`")),
            Self::TooLong {
                shorter: Some(shorter),
                ..
            } => Some(format!(
                "`{shorter}` is the same image with tag `{}`; or name the image in a names file (`serve --images FILE`)",
                tag_text(shorter)
            )),
            Self::TooLong { .. } | Self::Characters(_) | Self::DecimalRatio(_) => Some(
                "name the image in a names file: `serve --images FILE` with `\"mock/app:v1\" = { layers = \"…\" }`"
                    .to_owned(),
            ),
        }
    }
}

/// The tag of the spec written as `text`: `1GB,512MB` → `1GB_512MB`. Blanks are dropped;
/// the spec is checked first.
pub fn tag_of(text: &str) -> Result<String, TagError> {
    let spec = Spec::parse(text)?;
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    // Blanks only ever separate tokens; should one have been inside a number, the compact
    // text would mean something else, and this says so rather than serving another image.
    if Spec::parse(&compact).ok().as_ref() != Some(&spec) {
        return Err(TagError::Characters(text.to_owned()));
    }
    if let Some(token) = compact.split([',', ':']).find(|token| token.contains('.')) {
        if let Some(ratio) = token.strip_prefix("ratio=") {
            return Err(TagError::DecimalRatio(ratio.to_owned()));
        }
        // A tag reads `.` as `:`, so such a name has no tag form.
        if token.starts_with("seed=") {
            return Err(TagError::Characters(text.to_owned()));
        }
        // A size, after its `Nx`.
        let size = token.rsplit(['x', 'X']).next().unwrap_or(token);
        let bytes = crate::spec::parse_byte_size(size)?;
        return Err(TagError::Decimal {
            size: size.to_owned(),
            instead: format_size(bytes),
        });
    }
    if compact.contains(['_', '-']) || !compact.is_ascii() {
        return Err(TagError::Characters(text.to_owned()));
    }
    let tag = tag_text(&compact);
    if tag.len() > MAX_TAG_LEN {
        let shorter = short_form(&spec).filter(|s| tag_text(s).len() <= MAX_TAG_LEN);
        return Err(TagError::TooLong {
            spec: text.to_owned(),
            len: tag.len(),
            shorter,
        });
    }
    Ok(tag)
}

/// The spec a tag names: `1GB_512MB` → `1GB,512MB`. Fails as the spec would.
pub fn spec_of_tag(tag: &str) -> Result<Spec, SpecError> {
    Spec::parse(&spec_text(tag))
}

/// The spec's text of a tag, unchecked: the inverse of [`tag_of`].
pub fn spec_text(tag: &str) -> String {
    tag.chars()
        .map(|c| match c {
            '_' => ',',
            '.' => ':',
            '-' => '=',
            c => c,
        })
        .collect()
}

fn tag_text(spec: &str) -> String {
    spec.chars()
        .map(|c| match c {
            ',' => '_',
            ':' => '.',
            '=' => '-',
            c => c,
        })
        .collect()
}

/// The spec with runs of equal layers written `Nx` and default options left out:
/// `1GB,1GB,1GB` → `3x1GB`.
fn short_form(spec: &Spec) -> Option<String> {
    let mut parts: Vec<(usize, String)> = Vec::new();
    for layer in spec.layers() {
        let text = match layer.canonical() {
            c if layer.files == 1 && c.ends_with(":files=1") => format_size(layer.size),
            c => c,
        };
        match parts.last_mut() {
            Some((count, last)) if *last == text => *count += 1,
            _ => parts.push((1, text)),
        }
    }
    let text = parts
        .into_iter()
        .map(|(count, text)| match count {
            1 => text,
            n => format!("{n}x{text}"),
        })
        .collect::<Vec<_>>()
        .join(",");
    (Spec::parse(&text).ok().as_ref() == Some(spec)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issues_examples() {
        for (spec, tag) in [
            ("1GB,512MB", "1GB_512MB"),
            ("100x1MB", "100x1MB"),
            ("64MB:tree=5000", "64MB.tree-5000"),
            ("3x1G, 100x4k:files=2", "3x1G_100x4k.files-2"),
            ("8MB:compression=gzip", "8MB.compression-gzip"),
            ("1GB:seed=base,64MB", "1GB.seed-base_64MB"),
            (
                "2x1MB:ratio=4:compression=zstd:level=9,1KB",
                "2x1MB.ratio-4.compression-zstd.level-9_1KB",
            ),
        ] {
            assert_eq!(tag_of(spec).expect("has a tag"), tag);
            assert_eq!(
                spec_of_tag(tag).expect("a spec"),
                Spec::parse(spec).expect("valid")
            );
        }
    }

    #[test]
    fn decimals_name_the_smaller_unit() {
        let e = tag_of("1GB,1.5GB").expect_err("decimal");
        assert_eq!(
            e,
            TagError::Decimal {
                size: "1.5GB".into(),
                instead: "1536MB".into()
            }
        );
        assert_eq!(e.hint().as_deref(), Some("use a smaller unit: `1536MB`"));
        let e = tag_of("1MB:ratio=2.5").expect_err("decimal ratio");
        assert_eq!(e, TagError::DecimalRatio("2.5".into()));
        assert!(e.hint().expect("hint").contains("--images"));
        assert!(matches!(
            tag_of("2x.5KB:files=2"),
            Err(TagError::Decimal { instead, .. }) if instead == "512B"
        ));
    }

    #[test]
    fn long_specs_suggest_the_short_form_or_the_names_file() {
        let long = vec!["1MB"; 40].join(",");
        let e = tag_of(&long).expect_err("too long");
        assert!(
            matches!(&e, TagError::TooLong { len: 159, shorter: Some(s), .. } if s == "40x1MB")
        );
        assert!(e.hint().expect("hint").contains("tag `40x1MB`"));
        let varied = (1..=40)
            .map(|n| format!("{n}KB"))
            .collect::<Vec<_>>()
            .join(",");
        let e = tag_of(&varied).expect_err("too long");
        assert!(matches!(e, TagError::TooLong { shorter: None, .. }));
        assert!(e.hint().expect("hint").contains("--images"));
    }

    #[test]
    fn bad_specs_fail_as_specs() {
        assert!(matches!(tag_of("1XB"), Err(TagError::Spec(_))));
        assert!(spec_of_tag("latest").is_err());
        assert!(matches!(tag_of("1 0MB"), Err(TagError::Spec(_))));
    }

    proptest::proptest! {
        #[test]
        fn every_tag_names_the_spec_it_came_from(
            layers in proptest::collection::vec((1u64..5000, 1u64..4, 0u8..3, 1usize..4), 1..6)
        ) {
            let text = layers
                .iter()
                .map(|(size, files, layout, repeat)| {
                    let size = format!("{}KB", size * files);
                    let layer = match layout {
                        0 => size,
                        1 => format!("{size}:files={files}"),
                        _ => format!("{size}:tree={files}"),
                    };
                    match repeat {
                        1 => layer,
                        n => format!("{n}x{layer}"),
                    }
                })
                .collect::<Vec<_>>()
                .join(",");
            let tag = tag_of(&text).expect("a tag");
            proptest::prop_assert!(tag.len() <= MAX_TAG_LEN);
            proptest::prop_assert!(tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
            proptest::prop_assert_eq!(spec_text(&tag), text.clone());
            proptest::prop_assert_eq!(spec_of_tag(&tag).expect("a spec"), Spec::parse(&text).expect("valid"));
        }
    }
}
