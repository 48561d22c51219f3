//! `cargo xtask mock-image ARGS…` (the CLI's own arguments) and `cargo xtask mock-image warm`
//! (build every spec the workspace's `#[mock_image]` tests use, once, into the cache).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use image_maker::cache::{self, Cache};
use image_maker::cli::{self, Args};
use image_maker::{BuildRequest, Fixture, Progress};
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{Expr, ExprLit, Lit, MetaNameValue, Token};
use xshell::Shell;

use crate::Task;

/// Builds an image with exactly the CLI's arguments.
pub struct MockImage {
    pub args: Vec<String>,
}

impl Task for MockImage {
    fn run(&self, _sh: &Shell) -> Result<()> {
        let args = Args::try_parse_from(
            std::iter::once("cargo xtask mock-image".to_owned()).chain(self.args.iter().cloned()),
        )
        .unwrap_or_else(|e| e.exit());
        image_maker::interrupt::install()?;
        cli::run(&args).map_err(with_hint)?;
        Ok(())
    }
}

/// Fills the cache with every spec `#[mock_image]` names under `root`.
pub struct Warm {
    pub root: PathBuf,
}

impl Task for Warm {
    fn run(&self, _sh: &Shell) -> Result<()> {
        image_maker::interrupt::install()?;
        let found = find_specs(&self.root)?;
        let cache = Cache::from_env().map_err(with_hint)?;
        let mut progress = Progress::stderr();
        let (mut built, mut cached, mut skipped) = (0, 0, 0);
        for fixture in &found {
            let request = match fixture.request() {
                Ok(request) => request,
                // The compiler reports these where they are; warming the rest still helps.
                Err(e) => {
                    eprintln!("skipped {} ({}): {e}", fixture.layers, fixture.location);
                    skipped += 1;
                    continue;
                }
            };
            if cache.contains(&request) {
                println!("cached  {}  {}", fixture.describe(), fixture.location);
                cached += 1;
            } else {
                cache::build(&cache, &request, &mut progress).map_err(with_hint)?;
                println!("built   {}  {}", fixture.describe(), fixture.location);
                built += 1;
            }
        }
        println!(
            "{} spec{} for {}: {built} built, {cached} already cached, {skipped} invalid",
            found.len(),
            if found.len() == 1 { "" } else { "s" },
            cache.root().display()
        );
        Ok(())
    }
}

fn with_hint(e: image_maker::Error) -> anyhow::Error {
    match e.hint() {
        Some(hint) => anyhow::anyhow!("{e}\nhint: {hint}"),
        None => anyhow::anyhow!("{e}"),
    }
}

/// One distinct image that `#[mock_image]` asks for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FoundSpec {
    pub layers: String,
    pub platform: Option<String>,
    /// Where it was first seen, `path:line`.
    pub location: String,
}

impl FoundSpec {
    fn request(&self) -> Result<BuildRequest, image_maker::Error> {
        let mut fixture = Fixture::new(&self.layers);
        if let Some(platform) = &self.platform {
            fixture = fixture.platform(platform);
        }
        fixture.request()
    }

    fn describe(&self) -> String {
        match &self.platform {
            Some(p) => format!("{} ({p})", self.layers),
            None => self.layers.clone(),
        }
    }
}

/// Every distinct `(layers, platform)` of a `#[mock_image(...)]` in the `.rs` files under
/// `root`, skipping `target/` and hidden directories.
pub fn find_specs(root: &Path) -> Result<Vec<FoundSpec>> {
    let mut files = Vec::new();
    collect_rust_files(root, &mut files)?;
    files.sort();
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        // A file that does not parse is the compiler's to report.
        let Ok(parsed) = syn::parse_file(&text) else {
            continue;
        };
        let mut visitor = Finder {
            file: file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string(),
            found: Vec::new(),
        };
        visitor.visit_file(&parsed);
        for spec in visitor.found {
            if seen.insert((spec.layers.clone(), spec.platform.clone())) {
                found.push(spec);
            }
        }
    }
    Ok(found)
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for item in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let item = item?;
        let path = item.path();
        let name = item.file_name();
        let name = name.to_string_lossy();
        if item.file_type()?.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect_rust_files(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

struct Finder {
    file: String,
    found: Vec<FoundSpec>,
}

impl<'ast> Visit<'ast> for Finder {
    fn visit_attribute(&mut self, attr: &'ast syn::Attribute) {
        let is_ours = attr
            .path()
            .segments
            .last()
            .is_some_and(|s| s.ident == "mock_image");
        if !is_ours {
            return;
        }
        let Ok(pairs) =
            attr.parse_args_with(Punctuated::<MetaNameValue, Token![,]>::parse_terminated)
        else {
            return;
        };
        let value = |key: &str| {
            pairs
                .iter()
                .find(|p| p.path.is_ident(key))
                .and_then(|p| match &p.value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    }) => Some(s.value()),
                    _ => None,
                })
        };
        if let Some(layers) = value("layers") {
            let line = syn::spanned::Spanned::span(attr).start().line;
            self.found.push(FoundSpec {
                layers,
                platform: value("platform"),
                location: format!("{}:{line}", self.file),
            });
        }
    }
}

/// `warm`, or the CLI's arguments.
pub fn task(args: Vec<String>, root: PathBuf) -> Result<Box<dyn Task>> {
    match args.first().map(String::as_str) {
        Some("warm") if args.len() == 1 => Ok(Box::new(Warm { root })),
        Some("warm") => bail!("`cargo xtask mock-image warm` takes no arguments"),
        _ => Ok(Box::new(MockImage { args })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_distinct_spec_once() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("tests"))?;
        std::fs::create_dir_all(dir.path().join("target/debug"))?;
        std::fs::write(
            dir.path().join("tests/a.rs"),
            r#"
            use image_maker::{mock_image, MockImage};
            #[mock_image(layers = "1GB,512MB")]
            fn one(img: MockImage) {}
            mod inner {
                #[image_maker::mock_image(layers = "1GB,512MB", tag = "x:1")]
                fn same_spec(img: MockImage) {}
                #[mock_image(layers = "64MB", platform = "linux/arm64")]
                #[tokio::test]
                async fn arm(img: MockImage) {}
            }
            #[other(layers = "5MB")]
            fn not_ours() {}
            "#,
        )?;
        std::fs::write(
            dir.path().join("target/debug/gen.rs"),
            r#"#[mock_image(layers = "9MB")] fn x() {}"#,
        )?;
        let found = find_specs(dir.path())?;
        let specs: Vec<(&str, Option<&str>)> = found
            .iter()
            .map(|f| (f.layers.as_str(), f.platform.as_deref()))
            .collect();
        assert_eq!(specs, [("1GB,512MB", None), ("64MB", Some("linux/arm64"))]);
        assert_eq!(found[0].location, "tests/a.rs:3");
        Ok(())
    }
}
