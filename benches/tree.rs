//! A tree layer of skewed file sizes (the default: most files small, a few large) versus
//! the same tree with `sizes=even`, in the same run, rounds alternating in order, so
//! machine noise hits both alike: what the realistic shape costs over the simple one
//! (target ≤ 1.2×). Reports medians, the ratio, and each build's peak RSS and CPU time.
//!
//! Every build is the release CLI with `--no-cache` writing `oci:` into the work
//! directory; the output is removed after each run, untimed.
//!
//! `cargo bench --bench tree` (or `cargo xtask bench tree`); `IMAGE_MAKER_BENCH_SPEC`
//! replaces `64MB:tree=100000` (the even build appends `:sizes=even` to each of its `tree=`
//! layers), `IMAGE_MAKER_BENCH_ROUNDS` (default 5) and `IMAGE_MAKER_BENCH_DIR` (where the
//! data is written; the system temp dir).

mod support;
#[path = "support/usage.rs"]
mod usage;

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::Duration;
use support::{median, Settings};
use usage::{measured, Usage};

const TARGET: f64 = 1.2;

fn main() -> support::Result<()> {
    if let Some(reported) = usage::report_if_asked() {
        return reported;
    }
    let Settings {
        list,
        spec,
        rounds,
        work,
    } = Settings::from_env("tree", "64MB:tree=100000", 5)?;
    let dir = work.path();
    let even = even_sizes(&list);
    println!("reference: {even}");

    // One unrecorded build of each warms the binary and the filesystem.
    build(dir, &list)?;
    build(dir, &even)?;
    let mut skewed = Vec::new();
    let mut reference = Vec::new();
    for round in 1..=rounds {
        // The order alternates, because a run right after a large deletion pays for the
        // filesystem's cleanup.
        if round % 2 == 1 {
            skewed.push(build(dir, &list)?);
            reference.push(build(dir, &even)?);
        } else {
            reference.push(build(dir, &even)?);
            skewed.push(build(dir, &list)?);
        }
        println!(
            "round {round}: skewed {:.2} s, even {:.2} s",
            secs(skewed[round - 1].wall),
            secs(reference[round - 1].wall)
        );
    }

    let wall = |runs: &[Usage]| median(runs.iter().map(|r| r.wall).collect());
    let cpu = |runs: &[Usage]| median(runs.iter().map(|r| r.cpu).collect());
    let rss = |runs: &[Usage]| runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0);
    println!();
    let throughput = |d: Duration| spec.total_size() as f64 / secs(d) / 1e6;
    println!(
        "| build | wall (median) | payload throughput | CPU time (median) | peak RSS (highest) |"
    );
    println!("|---|---|---|---|---|");
    for (name, runs) in [(&list, &skewed), (&even, &reference)] {
        println!(
            "| {name} | {:.2} s | {:.0} MB/s | {:.2} s | {:.1} MiB |",
            secs(wall(runs)),
            throughput(wall(runs)),
            secs(cpu(runs)),
            rss(runs) as f64 / 1024.0
        );
    }
    let ratio = secs(wall(&skewed)) / secs(wall(&reference));
    println!();
    println!(
        "ratio skewed/even: {ratio:.2} (target <= {TARGET:.1}: {})",
        if ratio <= TARGET { "met" } else { "missed" }
    );
    Ok(())
}

/// `list` with `:sizes=even` on each layer that has a tree (and does not say already).
fn even_sizes(list: &str) -> String {
    list.split(',')
        .map(|layer| {
            if layer.contains("tree=") && !layer.contains("sizes=") {
                format!("{layer}:sizes=even")
            } else {
                layer.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Builds `list` to `oci:DIR/out` and removes the output, untimed.
fn build(dir: &Path, list: &str) -> support::Result<Usage> {
    let out = dir.join("out");
    let args: Vec<OsString> = vec![
        "-q".into(),
        "--no-cache".into(),
        "-s".into(),
        list.into(),
        "-o".into(),
        format!("oci:{}", out.display()).into(),
        "bench/tree:1".into(),
    ];
    let usage = measured(dir, env!("CARGO_BIN_EXE_image-maker").as_ref(), &args, None)?;
    fs::remove_dir_all(&out)?;
    settle();
    Ok(usage)
}

/// Lets the filesystem finish freeing what a run deleted before the next run is timed.
fn settle() {
    nix::unistd::sync();
    std::thread::sleep(Duration::from_millis(500));
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
