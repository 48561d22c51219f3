//! `image-maker warm [DIR]` and `cargo xtask mock-image warm`: find every
//! `#[mock_image(...)]` in the Rust sources under a directory and build each image it asks
//! for into the cache. A project's CI runs it with the release binary before `cargo test`,
//! whose tests are compiled without optimisation and would generate the data far slower.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::Serialize;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, ExprLit, Lit, MetaNameValue, Token};

use super::{print_json, print_stderr, print_stdout, progress, CliError};
use crate::cache::Cache;
use crate::engine::EngineKind;
use crate::progress::Progress;
use crate::request::Builder;
use crate::{interrupt, Error, Fixture};

/// `image-maker warm [DIR]`.
#[derive(Debug, Clone, clap::Args)]
pub struct WarmArgs {
    /// Where the tests are: every `.rs` file below it, except under `target/` and hidden
    /// directories
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,

    /// Print a JSON report (each image, its status and where it was found) on stdout
    #[arg(long)]
    pub json: bool,

    /// Print nothing on stderr but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// One image a `#[mock_image(...)]` asks for, as the attribute writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundSpec {
    /// The `layers` key: a layer list.
    pub layers: String,
    /// The `platform` key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The `tag` key: the image's reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The `builder` key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    /// The `engine` key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The config keys (`entrypoint`, `env`, …), each value with the grammar's key (`env`,
    /// `label`, …), in order: part of the image, so of its cache key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<(String, String)>,
    /// Where it was first seen, `path:line`, the path relative to the directory searched.
    pub location: String,
}

impl FoundSpec {
    /// The layer list, and what else sets the image apart.
    pub fn describe(&self) -> String {
        let mut extra: Vec<&str> = [&self.platform, &self.builder, &self.engine]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if !self.config.is_empty() {
            extra.push("with a config");
        }
        match extra.as_slice() {
            [] => self.layers.clone(),
            extra => format!("{} ({})", self.layers, extra.join(", ")),
        }
    }

    /// The fixture the attribute's test would get, checked as the attribute checks it.
    fn resolve(&self, cache: &Cache) -> Result<Resolved, String> {
        let builder = match &self.builder {
            None => Builder::Native,
            Some(name) => <Builder as ValueEnum>::from_str(name, false).map_err(|_| {
                format!("unknown builder `{name}`: the builders are `native` and `dockerfile`")
            })?,
        };
        let engine = self
            .engine
            .as_deref()
            .map(str::parse::<EngineKind>)
            .transpose()
            .map_err(|e| e.to_string())?;
        let mut config = crate::ImageConfig::new();
        for (key, value) in &self.config {
            config = config.set(key, value).map_err(|e| e.to_string())?;
        }
        let mut fixture = Fixture::new(&self.layers)
            .cache(cache.clone())
            .config(config);
        if let Some(platform) = &self.platform {
            fixture = fixture.platform(platform);
        }
        if let Some(tag) = &self.tag {
            fixture = fixture.reference(tag);
        }
        fixture = fixture.builder(builder);
        if let Some(engine) = engine {
            fixture = fixture.engine(engine);
        }
        Ok(Resolved { fixture, builder })
    }
}

struct Resolved {
    fixture: Fixture,
    builder: Builder,
}

/// What `warm` did with one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Built into the cache now.
    Built,
    /// In the cache already.
    Cached,
    /// Not built: the attribute is invalid (the compiler says so too), or asks for
    /// something `warm` does not build.
    Skipped,
    /// The build failed.
    Failed,
    /// A dockerfile builder's image, now in its engine: built there, or found by the label
    /// with its cache key.
    InEngine,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Self::Built => "built",
            Self::Cached => "cached",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::InEngine => "in-engine",
        }
    }
}

/// One image and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Warmed {
    /// The attribute that asked for it.
    #[serde(flatten)]
    pub spec: FoundSpec,
    /// What became of it.
    pub status: Status,
    /// The manifest digest of a built or cached image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Why it was skipped or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Warmed {
    fn new(spec: &FoundSpec, status: Status) -> Self {
        Self {
            spec: spec.clone(),
            status,
            digest: None,
            reason: None,
        }
    }

    fn because(mut self, reason: String) -> Self {
        self.reason = Some(reason);
        self
    }

    /// `built   2MB,512KB  tests/layout.rs:6`, and the reason of a skip or failure.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{:<7} {}  {}",
            self.status.word(),
            self.spec.describe(),
            self.spec.location
        );
        if let Some(reason) = &self.reason {
            line += &format!(": {reason}");
        }
        line
    }
}

/// Builds each image into `cache`, one after another, calling `each` as each is done. A
/// failed build does not stop the others; an interrupt does.
pub fn warm(
    found: &[FoundSpec],
    cache: &Cache,
    progress: &mut Progress,
    mut each: impl FnMut(&Warmed) -> Result<(), Error>,
) -> Result<Vec<Warmed>, Error> {
    let mut report = Vec::with_capacity(found.len());
    for spec in found {
        let warmed = warm_one(spec, cache, progress)?;
        each(&warmed)?;
        report.push(warmed);
    }
    Ok(report)
}

fn warm_one(spec: &FoundSpec, cache: &Cache, progress: &mut Progress) -> Result<Warmed, Error> {
    // The compiler reports invalid attributes where they are; warming the rest still helps.
    let skipped = |reason: String| Warmed::new(spec, Status::Skipped).because(reason);
    let resolved = match spec.resolve(cache) {
        Ok(resolved) => resolved,
        Err(reason) => return Ok(skipped(reason)),
    };
    let request = match resolved.fixture.request() {
        Ok(request) => request,
        Err(e) => return Ok(skipped(e.to_string())),
    };
    if resolved.builder == Builder::Dockerfile {
        return in_engine(spec, resolved);
    }
    match cache.acquire(&request, progress) {
        Ok((cached, built)) => {
            let status = match built {
                Some(_) => Status::Built,
                None => Status::Cached,
            };
            let mut warmed = Warmed::new(spec, status);
            warmed.digest = Some(cached.entry.digest.clone());
            Ok(warmed)
        }
        Err(e) => {
            interrupt::check()?;
            let reason = match e.hint() {
                Some(hint) => format!("{e} (hint: {hint})"),
                None => e.to_string(),
            };
            Ok(Warmed::new(spec, Status::Failed).because(reason))
        }
    }
}

/// A dockerfile builder's image lives in its engine, not in the cache: the fixture builds it
/// there, or finds it by the label with its cache key.
fn in_engine(spec: &FoundSpec, resolved: Resolved) -> Result<Warmed, Error> {
    match resolved.fixture.get() {
        Ok(image) => {
            let mut warmed = Warmed::new(spec, Status::InEngine);
            warmed.digest = Some(image.config_digest().to_owned());
            Ok(warmed)
        }
        Err(e) => {
            interrupt::check()?;
            // What the builder refuses as asked (annotations, a workdir) the attribute
            // refuses at compile time: the compiler reports it, as for invalid specs.
            let status = match e.exit_code() {
                2 => Status::Skipped,
                _ => Status::Failed,
            };
            Ok(Warmed::new(spec, status).because(e.to_string()))
        }
    }
}

/// Runs `image-maker warm`: the report on stdout (lines, or JSON with `--json`), build
/// status on stderr. Fails when any image failed to build.
pub fn run(args: &WarmArgs) -> Result<(), CliError> {
    let found = find_specs(&args.dir)?;
    let cache = Cache::from_env()?;
    let mut progress = progress(args.quiet);
    let report = warm(&found, &cache, &mut progress, |warmed| {
        if args.json {
            return Ok(());
        }
        let line = format!("{}\n", warmed.line());
        match warmed.status {
            Status::Failed => print_stderr(&line),
            _ => print_stdout(&line),
        }
    })?;
    let count = |status| report.iter().filter(|w| w.status == status).count();
    let failed = count(Status::Failed);
    if args.json {
        print_json(&report)?;
    } else {
        print_stdout(&format!(
            "{} image{} under {} for {}: {} built, {} already cached, {} in an engine, {} skipped, {failed} failed\n",
            report.len(),
            if report.len() == 1 { "" } else { "s" },
            args.dir.display(),
            cache.root().display(),
            count(Status::Built),
            count(Status::Cached),
            count(Status::InEngine),
            count(Status::Skipped),
        ))?;
    }
    match failed {
        0 => Ok(()),
        failed => Err(CliError::WarmFailed {
            failed,
            total: report.len(),
        }),
    }
}

/// Every distinct image that a `#[mock_image(...)]` in the `.rs` files under `root` asks
/// for, in path order, skipping `target/` and hidden directories. Images that differ only
/// in their tag are one image.
pub fn find_specs(root: &Path) -> Result<Vec<FoundSpec>, Error> {
    let mut files = Vec::new();
    collect_rust_files(root, &mut files)?;
    files.sort();
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(Error::io("read", &file))?;
        // A file that does not parse is the compiler's to report.
        let Ok(parsed) = syn::parse_file(&text) else {
            continue;
        };
        let mut finder = Finder {
            file: file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string(),
            found: Vec::new(),
        };
        finder.visit_file(&parsed);
        for spec in finder.found {
            let image = (
                spec.layers.clone(),
                spec.platform.clone(),
                spec.builder.clone(),
                spec.engine.clone(),
                spec.config.clone(),
            );
            if seen.insert(image) {
                found.push(spec);
            }
        }
    }
    Ok(found)
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let items = std::fs::read_dir(dir).map_err(Error::io("read the directory", dir))?;
    for item in items {
        let item = item.map_err(Error::io("read the directory", dir))?;
        let path = item.path();
        let name = item.file_name();
        let name = name.to_string_lossy();
        let kind = item.file_type().map_err(Error::io("read", &path))?;
        if kind.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect_rust_files(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The attribute's config keys and the grammar's key of each value.
const CONFIG_KEYS: &[(&str, &str)] = &[
    ("entrypoint", "entrypoint"),
    ("cmd", "cmd"),
    ("workdir", "workdir"),
    ("user", "user"),
    ("stop_signal", "stop_signal"),
    ("env", "env"),
    ("labels", "label"),
    ("annotations", "annotation"),
    ("expose", "expose"),
];

/// Collects the `#[mock_image(...)]` attributes of one file, wherever they sit.
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
        // `Some(None)`: the key is given, but not as a string literal.
        let value = |key: &str| {
            pairs
                .iter()
                .find(|p| p.path.is_ident(key))
                .map(|p| match &p.value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    }) => Some(s.value()),
                    _ => None,
                })
        };
        let keys = ["layers", "platform", "tag", "builder", "engine"].map(value);
        // Anything but a string is the compiler's to report, and says nothing to build.
        if keys.iter().any(|v| matches!(v, Some(None))) {
            return;
        }
        let [Some(Some(layers)), platform, tag, builder, engine] = keys else {
            return;
        };
        // As the attribute reads it: `true`, or the `run` entry's options.
        let run = pairs
            .iter()
            .find(|p| p.path.is_ident("runnable"))
            .and_then(|p| match &p.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Bool(b), ..
                }) => b.value.then(String::new),
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value()),
                _ => None,
            });
        let layers = match run {
            None => layers,
            Some(run) => match crate::spec::Spec::parse(&layers).and_then(|s| s.with_run(&run)) {
                Ok(spec) => spec.canonical(),
                // The compiler reports it.
                Err(_) => return,
            },
        };
        // As the attribute reads them: one string, or a list of strings for the plural keys.
        let mut config = Vec::new();
        for pair in &pairs {
            let Some((_, key)) = CONFIG_KEYS
                .iter()
                .find(|(name, _)| pair.path.is_ident(name))
            else {
                continue;
            };
            let strings = match &pair.value {
                Expr::Array(array) => array.elems.iter().collect(),
                single => vec![single],
            };
            for value in strings {
                let Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) = value
                else {
                    return;
                };
                config.push(((*key).to_owned(), s.value()));
            }
        }
        self.found.push(FoundSpec {
            layers,
            platform: platform.flatten(),
            tag: tag.flatten(),
            builder: builder.flatten(),
            engine: engine.flatten(),
            config,
            location: format!("{}:{}", self.file, attr.span().start().line),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn finds_each_distinct_image_once() -> TestResult {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("tests"))?;
        std::fs::create_dir_all(dir.path().join("target/debug"))?;
        std::fs::create_dir_all(dir.path().join(".git"))?;
        std::fs::write(
            dir.path().join("tests/a.rs"),
            r#"
            use image_maker::{mock_image, MockImage};
            #[mock_image(layers = "1GB,512MB")]
            fn one(img: MockImage) {}
            mod inner {
                #[image_maker::mock_image(layers = "1GB,512MB", tag = "x:1")]
                fn same_image(img: MockImage) {}
                #[mock_image(layers = "64MB", platform = "linux/arm64")]
                #[tokio::test]
                async fn arm(img: MockImage) {}
                #[mock_image(layers = "64MB", builder = "dockerfile", engine = "podman", tag = "a/b:1")]
                fn in_the_engine(img: MockImage) {}
                #[mock_image(layers = "64MB", platform = 5)]
                fn not_a_string(img: MockImage) {}
                #[mock_image]
                fn no_layers(img: MockImage) {}
                #[mock_image(layers = "1GB,512MB", env = ["A=1", "B=2"], cmd = "x y")]
                fn configured(img: MockImage) {}
                #[mock_image(layers = "1MB", runnable = true)]
                fn runs(img: MockImage) {}
                #[mock_image(layers = "1MB", runnable = "ready=up")]
                fn runs_with_options(img: MockImage) {}
            }
            #[other(layers = "5MB")]
            fn not_ours() {}
            "#,
        )?;
        for hidden in ["target/debug/gen.rs", ".git/x.rs"] {
            std::fs::write(
                dir.path().join(hidden),
                r#"#[mock_image(layers = "9MB")] fn x() {}"#,
            )?;
        }
        let found = find_specs(dir.path())?;
        let described: Vec<String> = found.iter().map(FoundSpec::describe).collect();
        assert_eq!(
            described,
            [
                "1GB,512MB",
                "64MB (linux/arm64)",
                "64MB (dockerfile, podman)",
                "1GB,512MB (with a config)",
                "1MB:files=1,run",
                "1MB:files=1,run:ready=up"
            ]
        );
        assert_eq!(
            found[3].config,
            [("env", "A=1"), ("env", "B=2"), ("cmd", "x y")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(found[0].location, "tests/a.rs:3");
        assert_eq!(found[0].tag, None);
        assert_eq!(found[2].tag.as_deref(), Some("a/b:1"));
        assert_eq!(found[2].location, "tests/a.rs:11");
        Ok(())
    }

    fn spec(layers: &str) -> FoundSpec {
        FoundSpec {
            layers: layers.to_owned(),
            platform: None,
            tag: None,
            builder: None,
            engine: None,
            config: Vec::new(),
            location: "tests/t.rs:1".to_owned(),
        }
    }

    #[test]
    fn builds_once_then_finds_it_cached() -> TestResult {
        use Status::*;
        let dir = tempfile::tempdir()?;
        let cache = Cache::at(dir.path());
        let mut arm = spec("1KB");
        arm.platform = Some("linux/arm64".to_owned());
        arm.tag = Some("mock/arm:1".to_owned());
        let mut unknown = spec("1KB");
        unknown.builder = Some("kaniko".to_owned());
        let found = [spec("1KB"), arm, spec("0x1KB"), unknown];
        let mut lines = Vec::new();
        let statuses = |report: &[Warmed]| report.iter().map(|w| w.status).collect::<Vec<_>>();
        let first = warm(&found, &cache, &mut Progress::hidden(), |w| {
            lines.push(w.line());
            Ok(())
        })?;
        assert_eq!(statuses(&first), [Built, Built, Skipped, Skipped]);
        assert!(
            lines[0].starts_with("built   1KB  tests/t.rs:1"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("built   1KB (linux/arm64)"),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("skipped 0x1KB  tests/t.rs:1: "),
            "{lines:?}"
        );
        assert!(lines[3].contains("unknown builder `kaniko`"), "{lines:?}");
        let again = warm(&found, &cache, &mut Progress::hidden(), |_| Ok(()))?;
        assert_eq!(statuses(&again), [Cached, Cached, Skipped, Skipped]);
        assert_eq!(first[0].digest, again[0].digest);
        assert!(first[0].digest.is_some());
        Ok(())
    }
}
