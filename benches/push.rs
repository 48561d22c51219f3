//! Pushing a large layout to a local registry: `image-maker push` versus
//! `skopeo copy oci:… docker://…` of the same layout, in the same run, rounds alternating;
//! each to a fresh repository, so every blob is uploaded. Then our re-push (every blob
//! present). Reports medians and the ratio.
//!
//! `cargo bench --bench push` (or `cargo xtask bench push`); `IMAGE_MAKER_BENCH_SPEC` and
//! `IMAGE_MAKER_BENCH_ROUNDS` change the defaults (`1GB,512MB`, 3 rounds), and
//! `IMAGE_MAKER_BENCH_DIR` where the layout and the registry's storage go.

#[path = "support/registry.rs"]
mod registry_support;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use registry_support::Registry;
use support::{median, Result, Settings};

fn main() -> Result<()> {
    let Settings {
        list,
        spec,
        rounds,
        work,
    } = Settings::from_env("push", "1GB,512MB", 3)?;
    let layout = work.path().join("layout");
    let built = Command::new(env!("CARGO_BIN_EXE_image-maker"))
        .args(["-q", "-s", &list, "-o"])
        .arg(format!("oci:{}", layout.display()))
        .arg("bench/push:1")
        .status()?;
    if !built.success() {
        return Err(format!("building the layout failed: {built}").into());
    }
    // Every timed push goes to a fresh registry (new storage, new port): skopeo remembers
    // where it pushed a blob before (its blob-info cache) and would mount it instead.
    let fresh = || Registry::start(work.path());

    // One unrecorded round each warms the page cache.
    ours(&layout, &fresh()?.host, "warm/ours")?;
    skopeo(&layout, &fresh()?.host, "warm/skopeo")?;
    let (mut mine, mut theirs, mut again) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let registry = fresh()?;
        if round % 2 == 1 {
            mine.push(ours(&layout, &registry.host, "bench/ours")?);
            theirs.push(skopeo(&layout, &fresh()?.host, "bench/skopeo")?);
        } else {
            theirs.push(skopeo(&layout, &fresh()?.host, "bench/skopeo")?);
            mine.push(ours(&layout, &registry.host, "bench/ours")?);
        }
        again.push(ours(&layout, &registry.host, "bench/ours")?);
        println!(
            "round {round}: image-maker push {:.2} s, skopeo copy {:.2} s, re-push {:.3} s",
            mine[round - 1].as_secs_f64(),
            theirs[round - 1].as_secs_f64(),
            again[round - 1].as_secs_f64()
        );
    }
    let (mine, theirs, again) = (median(mine), median(theirs), median(again));
    let throughput = |d: Duration| spec.total_size() as f64 / d.as_secs_f64() / 1e9;
    println!();
    println!("| run | median | throughput |");
    println!("|---|---|---|");
    println!(
        "| image-maker push | {:.2} s | {:.2} GB/s |",
        mine.as_secs_f64(),
        throughput(mine)
    );
    println!(
        "| skopeo copy oci: docker:// | {:.2} s | {:.2} GB/s |",
        theirs.as_secs_f64(),
        throughput(theirs)
    );
    println!("| image-maker re-push | {:.3} s | |", again.as_secs_f64());
    println!();
    println!(
        "ratio image-maker/skopeo: {:.2} (target <= 1.00); re-push {:.3} s (target < 1 s)",
        mine.as_secs_f64() / theirs.as_secs_f64(),
        again.as_secs_f64()
    );
    Ok(())
}

fn ours(layout: &Path, host: &str, repo: &str) -> Result<Duration> {
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_image-maker"))
        .args(["push", "-q"])
        .arg(format!("oci:{}", layout.display()))
        .arg(format!("{host}/{repo}:1"))
        .env_remove("IMAGE_MAKER_USERNAME")
        .status()?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(format!("image-maker push failed: {status}").into());
    }
    Ok(elapsed)
}

fn skopeo(layout: &Path, host: &str, repo: &str) -> Result<Duration> {
    let start = Instant::now();
    let status = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{host}/{repo}:1"))
        .status()?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(format!("skopeo copy failed: {status}").into());
    }
    Ok(elapsed)
}
