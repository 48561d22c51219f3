//! `cargo xtask bench downstream [compile|fixture]`: what a crate that tests with
//! `#[mock_image]` pays.
//!
//! - `compile`: `examples/downstream`, cold `cargo test --no-run` in a fresh target dir:
//!   crates compiled and seconds, with image-maker's default features (the whole command
//!   line, as every fixture user compiled before the features) and with none (what the
//!   example asks for).
//! - `fixture`: a 256 MiB fixture built in a debug-profile test of a crate outside this
//!   workspace (profiles are only honoured at a workspace's root) that follows the README's
//!   advice, against the release CLI's `warm` building the same image, in the same run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::Task;

/// The packages the README tells fixture users to optimise in their dev profile.
pub const OPTIMISED: [&str; 4] = ["oci-image-maker", "sha2", "rand_chacha", "rand_core"];

/// The spec of the `fixture` comparison.
const SPEC: &str = "256MB";

pub struct BenchDownstream {
    pub compile: bool,
    pub fixture: bool,
    pub rounds: usize,
}

impl BenchDownstream {
    pub fn from_args(args: &[String]) -> Result<Self> {
        let rounds = std::env::var("IMAGE_MAKER_BENCH_ROUNDS").map_or(Ok(3), |r| r.parse())?;
        match args {
            [] => Ok(Self {
                compile: true,
                fixture: true,
                rounds,
            }),
            [part] if part == "compile" || part == "fixture" => Ok(Self {
                compile: part == "compile",
                fixture: part == "fixture",
                rounds,
            }),
            _ => bail!("usage: cargo xtask bench downstream [compile|fixture]"),
        }
    }
}

impl Task for BenchDownstream {
    fn run(&self, sh: &Shell) -> Result<()> {
        if self.compile {
            let before = compile(sh, &["--features", "oci-image-maker/default"])?;
            let after = compile(sh, &[])?;
            println!("examples/downstream, cold `cargo test --no-run` (2 builds in one run):");
            println!(
                "  image-maker's default features: {:>3} crates compiled, {:>6.1} s{}",
                before.crates,
                before.time.as_secs_f64(),
                before.cpu()
            );
            println!(
                "  default-features = false:       {:>3} crates compiled, {:>6.1} s{} ({:.2}x the time)",
                after.crates,
                after.time.as_secs_f64(),
                after.cpu(),
                after.time.as_secs_f64() / before.time.as_secs_f64()
            );
        }
        if self.fixture {
            fixture(sh, self.rounds)?;
        }
        Ok(())
    }
}

struct Compiled {
    crates: usize,
    time: Duration,
    /// CPU seconds of cargo and the compilers: steadier than `time` on a shared machine.
    cpu: Option<f64>,
}

/// A cold `cargo test -p downstream --no-run` in a fresh target directory.
fn compile(sh: &Shell, extra: &[&str]) -> Result<Compiled> {
    let target = tempfile::Builder::new()
        .prefix("image-maker-bench-downstream-target")
        .tempdir()?;
    let cpu_before = children_cpu();
    let start = Instant::now();
    let out = cmd!(sh, "cargo test -p downstream --no-run {extra...}")
        .env("CARGO_TARGET_DIR", target.path())
        .quiet()
        .ignore_status()
        .output()?;
    let time = start.elapsed();
    let cpu = children_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("cargo test -p downstream --no-run {extra:?} failed:\n{log}");
    }
    let crates = log
        .lines()
        .filter(|l| l.trim_start().starts_with("Compiling "))
        .count();
    Ok(Compiled { crates, time, cpu })
}

/// User and system seconds of the children this process has waited for (Linux, with the
/// usual 100 clock ticks a second): cargo's, which include its compilers'.
fn children_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name start at the third, the state; cutime and cstime
    // are the 16th and 17th.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks: f64 = fields.get(13)?.parse::<f64>().ok()? + fields.get(14)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

impl Compiled {
    fn cpu(&self) -> String {
        self.cpu
            .map_or(String::new(), |cpu| format!(", {cpu:.0} s of CPU"))
    }
}

/// The README's `[profile.dev.package.…]` lines.
pub fn profile_toml() -> String {
    OPTIMISED
        .iter()
        .map(|p| format!("[profile.dev.package.{p}]\nopt-level = 3\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A crate outside the workspace whose one test builds a `SPEC` fixture, timed inside the
/// test so that neither cargo nor the process start is counted.
fn fixture_crate(root: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("tests"))?;
    std::fs::create_dir_all(dir.join("src"))?;
    let manifest = format!(
        "[package]\nname = \"bench-fixture-user\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         publish = false\n\n[workspace]\n\n[dev-dependencies]\n\
         oci-image-maker = {{ path = {:?}, default-features = false }}\n\n\
         # As the README advises fixture users.\n{}",
        root.display().to_string(),
        profile_toml()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), "")?;
    std::fs::write(
        dir.join("tests/fixture.rs"),
        format!(
            r#"use image_maker::{{mock_image, Fixture}};

#[test]
fn build() {{
    let start = std::time::Instant::now();
    let image = Fixture::new("{SPEC}").get().expect("the fixture");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(image.layers().len(), 1);
    eprintln!("fixture-seconds {{secs}}");
}}

// What `image-maker warm` finds and builds.
#[mock_image(layers = "{SPEC}")]
#[ignore]
fn warmed() {{}}
"#
        ),
    )?;
    // The workspace's lock file keeps the versions (and an offline build) the same.
    let lock = dir.join("Cargo.lock");
    if !lock.exists() {
        std::fs::copy(root.join("Cargo.lock"), lock)?;
    }
    Ok(())
}

fn fixture(sh: &Shell, rounds: usize) -> Result<()> {
    let root = sh.current_dir();
    let work = root.join("target/bench-downstream");
    let krate = work.join("fixture-user");
    fixture_crate(&root, &krate)?;
    println!("building the release CLI and the fixture user's tests (dev profile, README advice)");
    cmd!(sh, "cargo build --release --bin image-maker")
        .quiet()
        .run()?;
    let cli = root.join("target/release/image-maker");
    let manifest = krate.join("Cargo.toml");
    let target = work.join("target");
    cmd!(sh, "cargo test --manifest-path {manifest} --no-run")
        .env("CARGO_TARGET_DIR", &target)
        .quiet()
        .run()?;
    let (mut test_times, mut cli_times) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let cache = fresh_cache(&work)?;
        let out = cmd!(
            sh,
            "cargo test --manifest-path {manifest} --test fixture -- --exact build --nocapture"
        )
        .env("CARGO_TARGET_DIR", &target)
        .env("IMAGE_MAKER_CACHE_DIR", cache.path())
        .quiet()
        .ignore_status()
        .output()?;
        let log = String::from_utf8_lossy(&out.stderr);
        let secs: f64 = log
            .lines()
            .find_map(|l| l.split("fixture-seconds ").nth(1))
            .with_context(|| format!("the fixture test printed no time:\n{log}"))?
            .trim()
            .parse()?;
        test_times.push(Duration::from_secs_f64(secs));
        drop(cache);

        let cache = fresh_cache(&work)?;
        let start = Instant::now();
        cmd!(sh, "{cli} warm --quiet {krate}")
            .env("IMAGE_MAKER_CACHE_DIR", cache.path())
            .quiet()
            .ignore_stdout()
            .run()?;
        cli_times.push(start.elapsed());
    }
    let (test, cli) = (median(test_times), median(cli_times));
    let advised = format!(
        "debug-profile test, {} at opt-level 3",
        OPTIMISED.join(", ")
    );
    let release = "release CLI, `image-maker warm`";
    let width = advised.len().max(release.len()) + 1;
    println!("a {SPEC} fixture into an empty cache, median of {rounds} rounds:");
    println!("  {:<width$} {:>6.2} s", advised + ":", test.as_secs_f64());
    println!(
        "  {:<width$} {:>6.2} s",
        release.to_owned() + ":",
        cli.as_secs_f64()
    );
    println!(
        "  ratio test / CLI: {:.2}",
        test.as_secs_f64() / cli.as_secs_f64()
    );
    Ok(())
}

fn fresh_cache(work: &Path) -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("cache").tempdir_in(work)?)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
