//! Project tasks: `cargo xtask <command>`.

mod bench_downstream;
mod mock_image;
mod serve_attack;

use anyhow::{bail, Result};
use xshell::{cmd, Shell};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  bench [NAME]       a benchmark: `build` (default; native and dockerfile builds of 1GB,512MB
                     versus the single-pass reference), `cache` (fixture() cache-hit latency),
                     `push` (push to a local registry versus skopeo copy), `encodings` (gzip
                     and zstd layers versus gzip -1/-6 of the same tar and the uncompressed
                     build), `serve` (serve's digest pass, blob GETs and docker pull versus
                     openssl sha256 and docker-registry), `verify` (verify of a 1.5 GiB image
                     versus sha256sum of its blobs), `tree` (a 100000-file tree of skewed
                     sizes versus sizes=even), `expect` (the oracle of 512MB:tree=100000
                     versus building it) or `soak` (compressed layers' digests across
                     thread counts, taskset and serve; not in CI), `serve-vs-registry`
                     (1 GiB blobs of each layer kind from serve zero-disk and from its
                     cache, a last-MiB Range and docker pull, versus docker-registry)
  bench downstream [compile|fixture]
                     what a fixture user pays: examples/downstream's cold test build with
                     and without default features; a 256 MB fixture in a debug-profile test
                     (the README's advice) versus the release CLI
  ci                 what CI runs after installing engines: fmt, clippy, tests
  mock-image ARGS    build an image with the CLI's arguments (see `cargo xtask mock-image --help`)
  mock-image warm    build every spec a #[mock_image] test in the workspace uses into the cache";

pub(crate) trait Task {
    fn run(&self, sh: &Shell) -> Result<()>;
}

/// Runs a benchmark (`build` unless the first argument names another); the other
/// arguments are passed to `cargo bench`.
struct Bench {
    args: Vec<String>,
}

impl Task for Bench {
    fn run(&self, sh: &Shell) -> Result<()> {
        let (name, args) = match self.args.split_first() {
            Some((name, rest)) if !name.starts_with('-') => (name.as_str(), rest),
            _ => ("build", self.args.as_slice()),
        };
        if name == "downstream" {
            return bench_downstream::BenchDownstream::from_args(args)?.run(sh);
        }
        if name == "serve-attack" {
            return serve_attack::run(args, sh);
        }
        let name = match name {
            "serve-vs-registry" => "serve_vs_registry",
            other => other,
        };
        cmd!(sh, "cargo bench --bench {name} {args...}").run()?;
        Ok(())
    }
}

/// The checks of `.ci/run`, without installing anything.
struct Ci;

impl Task for Ci {
    fn run(&self, sh: &Shell) -> Result<()> {
        cmd!(sh, "cargo fmt --all -- --check").run()?;
        cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings").run()?;
        cmd!(sh, "cargo test --workspace --no-fail-fast").run()?;
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let task: Box<dyn Task> = match command.as_deref() {
        Some("bench") => Box::new(Bench { args: rest }),
        Some("ci") => Box::new(Ci),
        Some("mock-image") => mock_image::task(rest, project_root())?,
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
    };
    let sh = Shell::new()?;
    sh.change_dir(project_root());
    task.run(&sh)
}

fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}
