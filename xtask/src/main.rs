//! Project tasks: `cargo xtask <command>`.

use anyhow::{bail, Result};
use xshell::{cmd, Shell};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  bench    native build of 1GB,512MB versus the single-pass reference (cargo bench --bench build)
  bench push
           push of 1GB,512MB to a local registry versus skopeo copy (cargo bench --bench push)
  ci       what CI runs after installing engines: fmt, clippy, tests";

trait Task {
    fn run(&self, sh: &Shell) -> Result<()>;
}

/// Runs the build benchmark; extra arguments are passed to `cargo bench`.
struct Bench {
    args: Vec<String>,
}

impl Task for Bench {
    fn run(&self, sh: &Shell) -> Result<()> {
        // `bench push` picks the push benchmark; anything else goes to `cargo bench`.
        let (bench, args) = match self.args.split_first() {
            Some((first, rest)) if first == "push" => ("push", rest),
            _ => ("build", self.args.as_slice()),
        };
        cmd!(sh, "cargo bench --bench {bench} {args...}").run()?;
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
