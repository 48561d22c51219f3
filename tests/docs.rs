//! The README's and docs/' examples, run as they are written, so that a wrong one fails the
//! build: every ```console block through trycmd against the built `image-maker` (each file in
//! a fresh directory of its own, with a cache of its own), every ```toml and ```json block
//! parsed, and every ```rust block compiled as a doctest (src/doctests.rs). A block of any
//! other kind is in `UNCHECKED` with the reason it cannot run here, or this test fails.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "it/support/skip_log.rs"]
mod skip_log;

/// Blocks that no test runs, by file and first line, each with the reason. Kept few: an
/// example that can run here belongs in a ```console block.
const UNCHECKED: &[(&str, &str, &str)] = &[
    (
        "README.md",
        "cargo install --locked --path .",
        "installs into ~/.cargo/bin",
    ),
    (
        "README.md",
        "cargo test --workspace --no-fail-fast",
        "the test run this test is part of",
    ),
    (
        "docs/development.md",
        "cargo test --workspace --no-fail-fast",
        "test and benchmark runs, minutes each",
    ),
    (
        "docs/serve.md",
        "# /etc/systemd/system/image-maker-serve.service",
        "a systemd unit, for a machine of your own",
    ),
    (
        "docs/library.md",
        "image-maker warm            # every #[mock_image(...)] under .",
        "needs the installed command and a crate with #[mock_image] tests (.ci/run runs `cargo xtask mock-image warm`)",
    ),
];

/// Info strings that hold no command or code: diagrams and sample output.
const PROSE: &[&str] = &["text"];

/// Where the pages' registry examples find one: docker's and distribution's usual port,
/// which the tests' own registries (ports 20000 to 32000) never take.
const ADDR: &str = "127.0.0.1:5000";

/// A registry some pages' examples talk to, started at `ADDR` before them and stopped after.
#[derive(Debug, Clone, Copy)]
enum Service {
    /// Debian's docker-registry (CNCF distribution), storing in the page's directory.
    Registry,
    /// `image-maker serve`.
    Serve,
}

const SERVICES: &[(&str, Service)] = &[
    ("docs/cli.md", Service::Registry),
    ("docs/serve.md", Service::Serve),
];

/// Programs the ```console blocks may run besides `image-maker`; a file that runs one that
/// is missing here is skipped (and fails where tools are required, as in CI).
const TOOLS: &[&str] = &[
    "mkdir",
    "cat",
    "docker",
    "skopeo",
    "umoci",
    "docker-registry",
];

#[test]
fn examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The digests the examples show are those of an unset SOURCE_DATE_EPOCH. The test
    // binary runs this one test, so no other thread reads the environment meanwhile.
    std::env::remove_var("SOURCE_DATE_EPOCH");
    let work = tempfile::Builder::new()
        .prefix("image-maker-docs-")
        .tempdir()
        .expect("a temporary directory");

    let mut problems = Vec::new();
    let mut cases = Vec::new();
    let mut listed = BTreeSet::new();
    for file in markdown_files(root) {
        let name = file
            .strip_prefix(root)
            .expect("under the root")
            .to_string_lossy()
            .into_owned();
        let text = fs::read_to_string(&file).expect("readable markdown");
        let mut tools = BTreeSet::new();
        for block in blocks(&text) {
            check_block(&name, &block, &mut tools, &mut listed, &mut problems);
        }
        let service = SERVICES.iter().find(|(f, _)| *f == name).map(|(_, s)| *s);
        if let Some(Service::Registry) = service {
            tools.insert("docker-registry");
        }
        if let Some((tool, why)) = tools.iter().find_map(|t| missing(t).map(|why| (*t, why))) {
            skip(&name, tool, &why);
            continue;
        }
        // trycmd runs a case in `NAME.in/` beside it: a copy in the temporary directory, so
        // that nothing the examples write lands in the repository.
        let stem = name.replace('/', "-");
        let case = work.path().join(&stem);
        fs::write(&case, &text).expect("copy the markdown");
        fs::create_dir(work.path().join(stem.replace(".md", ".in"))).expect("its directory");
        cases.push((name, case, tools, service));
    }
    for (file, first, _) in UNCHECKED {
        if !listed.contains(&(file.to_string(), first.to_string())) {
            problems.push(format!(
                "{file}: UNCHECKED names a block starting `{first}` that is not there"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let mut failed = Vec::new();
    for (name, case, tools, service) in cases {
        let cache = work
            .path()
            .join(format!("{}.cache", name.replace('/', "-")));
        let _running = match service.map(|s| Running::start(s, work.path(), &cache)) {
            Some(Err(why)) => {
                skip(&name, ADDR, &why);
                continue;
            }
            Some(Ok(running)) => Some(running),
            None => None,
        };
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let t = trycmd::TestCases::new();
            t.register_bin("image-maker", Path::new(env!("CARGO_BIN_EXE_image-maker")))
                .env("IMAGE_MAKER_CACHE_DIR", cache.to_string_lossy())
                .env("NO_COLOR", "1")
                .timeout(Duration::from_secs(60));
            for tool in tools.iter().filter(|t| **t != "docker-registry") {
                t.register_bin(*tool, which(tool).expect("checked above"));
            }
            t.case(&case);
            t.run();
        }));
        if run.is_err() {
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "examples that fail as written: {} (a case's line numbers are the file's own)",
        failed.join(", ")
    );
}

/// README.md and every docs/*.md, in order.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// A fenced block: its info string, its first line (1-based) and its lines.
#[derive(Debug)]
struct Block {
    info: String,
    line: usize,
    body: Vec<String>,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let body = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| !l.starts_with("```"))
            .map(str::to_owned)
            .collect();
        out.push(Block {
            info: info.trim().to_owned(),
            line: n + 1,
            body,
        });
    }
    out
}

fn check_block(
    file: &str,
    block: &Block,
    tools: &mut BTreeSet<&'static str>,
    listed: &mut BTreeSet<(String, String)>,
    problems: &mut Vec<String>,
) {
    let at = format!("{file}:{}", block.line);
    let lang = block.info.split(',').next().unwrap_or("");
    let first = block.body.first().map(String::as_str).unwrap_or("");
    match lang {
        "console" => {
            for line in &block.body {
                let Some(command) = line.strip_prefix("$ ") else {
                    continue;
                };
                let program = command.split_whitespace().next().unwrap_or("");
                if program == "image-maker" {
                    continue;
                }
                match TOOLS.iter().find(|t| **t == program) {
                    Some(tool) => {
                        tools.insert(tool);
                    }
                    None => problems.push(format!(
                        "{at}: `{program}` is not in TOOLS, the programs examples may run"
                    )),
                }
            }
        }
        // Doctests; src/doctests.rs includes the file.
        "rust" => {
            let doctests = include_str!("../src/doctests.rs");
            if !doctests.contains(&format!("\"../{file}\"")) {
                problems.push(format!(
                    "{at}: a Rust block in a file src/doctests.rs does not include"
                ));
            }
        }
        "toml" => {
            let text = block.body.join("\n");
            if let Err(e) = text.parse::<toml::Table>() {
                problems.push(format!("{at}: not TOML: {e}"));
            }
            check_dependency_lines(&at, &text, problems);
        }
        "json" => {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&block.body.join("\n")) {
                problems.push(format!("{at}: not JSON: {e}"));
            }
        }
        _ if PROSE.contains(&lang) => {}
        _ => {
            let known = UNCHECKED
                .iter()
                .any(|(f, line, _)| *f == file && first.starts_with(line));
            if known {
                let entry = UNCHECKED
                    .iter()
                    .find(|(f, line, _)| *f == file && first.starts_with(line))
                    .map(|(f, line, _)| (f.to_string(), line.to_string()));
                listed.extend(entry);
            } else {
                problems.push(format!(
                    "{at}: a ```{} block nothing checks: make it ```console, or list it in \
                     UNCHECKED with the reason",
                    block.info
                ));
            }
        }
    }
}

/// A dependency on this package is written with its crates.io name and without the command
/// line's features; the dev-profile lines name the packages xtask's downstream benchmark
/// measures (`OPTIMISED` in xtask/src/bench_downstream.rs).
fn check_dependency_lines(at: &str, text: &str, problems: &mut Vec<String>) {
    let package = env!("CARGO_PKG_NAME");
    // The alternative forms stand in comments, as a table holds a key once.
    for line in text.lines() {
        let line = line.trim().trim_start_matches('#').trim();
        if line.starts_with("image-maker =") || line.starts_with("image_maker =") {
            problems.push(format!("{at}: the package is `{package}`: {line}"));
        }
        if !line.starts_with(&format!("{package} =")) {
            continue;
        }
        let dependency = match line.parse::<toml::Table>() {
            Ok(table) => table,
            Err(e) => {
                problems.push(format!("{at}: not a TOML dependency line: {line}: {e}"));
                continue;
            }
        };
        let spec = dependency.get(package).and_then(|v| v.as_table());
        let sources = ["version", "git", "path"]
            .iter()
            .filter(|k| spec.is_some_and(|s| s.contains_key(**k)))
            .count();
        let light = spec
            .and_then(|s| s.get("default-features"))
            .and_then(|v| v.as_bool())
            == Some(false);
        if sources != 1 || !light {
            problems.push(format!(
                "{at}: a fixture dependency names one of version, git or path, with \
                 `default-features = false`: {line}"
            ));
        }
    }
    let profiles: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[profile.dev.package."))
        .filter_map(|l| l.strip_suffix(']'))
        .collect();
    if !profiles.is_empty() {
        let bench = include_str!("../xtask/src/bench_downstream.rs");
        let optimised = bench
            .lines()
            .find_map(|l| l.trim().strip_prefix("pub const OPTIMISED: "))
            .and_then(|l| l.split_once('=').map(|(_, v)| v.to_owned()))
            .unwrap_or_default();
        let expected: Vec<&str> = optimised
            .trim()
            .trim_end_matches(';')
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|p| p.trim().trim_matches('"'))
            .filter(|p| !p.is_empty())
            .collect();
        if profiles != expected {
            problems.push(format!(
                "{at}: the dev-profile packages are {profiles:?}, xtask's OPTIMISED {expected:?}"
            ));
        }
    }
}

/// Why `tool` cannot run here, if it cannot; docker must also answer.
fn missing(tool: &str) -> Option<String> {
    let Some(path) = which(tool) else {
        return Some("not on PATH".into());
    };
    if tool == "docker" {
        let out = Command::new(path).arg("info").stdin(Stdio::null()).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Some(format!(
                    "`docker info` failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => return Some(format!("`docker info` cannot run: {e}")),
        }
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// As the integration tests skip: `skipped: examples: FILE: TOOL: why`.
fn skip(file: &str, tool: &str, why: &str) {
    skip_log::skip(&format!("examples: {file}"), tool, why);
}

/// A service this test started, killed when dropped.
struct Running(std::process::Child);

impl Running {
    fn start(service: Service, work: &Path, cache: &Path) -> Result<Self, String> {
        if std::net::TcpListener::bind(ADDR).is_err() {
            return Err("something else listens there".into());
        }
        let mut command = match service {
            Service::Registry => {
                let config = work.join("registry.yml");
                let yaml = format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    \
                     rootdirectory: {}\nhttp:\n  addr: {ADDR}\n",
                    work.join("registry").display()
                );
                fs::write(&config, yaml).map_err(|e| e.to_string())?;
                let mut command = Command::new("docker-registry");
                command.arg("serve").arg(config);
                command
            }
            Service::Serve => {
                let mut command = Command::new(env!("CARGO_BIN_EXE_image-maker"));
                command.args(["serve", "-q", "--addr", ADDR]);
                command
            }
        };
        let child = command
            .env("IMAGE_MAKER_CACHE_DIR", cache)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("{service:?} does not start: {e}"))?;
        let running = Self(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(ADDR).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(format!("{service:?} did not answer within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(running)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
