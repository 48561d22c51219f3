//! The cache at link speed: `1GB,512MB` (or `IMAGE_MAKER_BENCH_SPEC`) to `oci:`, with the
//! CLI as users run it, all in the same run so machine noise hits every path alike:
//!
//! - `--no-cache`: the reference, every byte written once;
//! - a cold build through an empty cache (target ≤ 1.1× the reference: the entry is written
//!   and the output links it, so nothing is written twice);
//! - a cache hit (target ≤ 0.05× the reference: links, no byte copied or hashed);
//! - six processes at once on one spec, to six `oci:` outputs, from an empty cache (target
//!   ≤ 1.3× one cold build: one build, five waits, six sets of links).
//!
//! `cargo bench --bench link` (or `cargo xtask bench link`); `IMAGE_MAKER_BENCH_ROUNDS`
//! (default 3) and `IMAGE_MAKER_BENCH_DIR` (where caches and outputs go; the system temp dir).

mod support;

use std::fs;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use support::{median, Settings};

const PROCESSES: usize = 6;

fn main() -> support::Result<()> {
    let Settings {
        list,
        spec,
        rounds,
        work,
    } = Settings::from_env("link", "1GB,512MB", 3)?;
    let dir = work.path();
    let (mut no_cache, mut cold, mut hit, mut six) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let cache = dir.join("cache");
    let no_cache_build = || timed(1, |_| cli(dir, None, &list, "nocache", &["--no-cache"]));
    // One unrecorded run warms the page cache and the binary; then the order of the two
    // builds alternates, because a run right after a large deletion pays for the
    // filesystem's cleanup.
    no_cache_build()?;
    clean(dir)?;
    for round in 1..=rounds {
        let no_cache_first = round % 2 == 1;
        if no_cache_first {
            no_cache.push(no_cache_build()?);
            clean(dir)?;
        }
        cold.push(timed(1, |_| cli(dir, Some(&cache), &list, "cold", &[]))?);
        clean_outputs(dir)?;
        if !no_cache_first {
            no_cache.push(no_cache_build()?);
            clean_outputs(dir)?;
        }
        hit.push(timed(1, |_| cli(dir, Some(&cache), &list, "hit", &[]))?);
        clean(dir)?;
        six.push(timed(PROCESSES, |i| {
            cli(dir, Some(&cache), &list, &format!("six{i}"), &[])
        })?);
        let built = fs::read_to_string(cache.join("v1/log"))?
            .lines()
            .filter(|l| l.contains(" built "))
            .count();
        if built != 1 {
            return Err(format!("{PROCESSES} processes built {built} times").into());
        }
        clean(dir)?;
        println!(
            "round {round}: --no-cache {:.2} s, cold {:.2} s, hit {:.3} s, {PROCESSES} processes {:.2} s",
            secs(no_cache[round - 1]),
            secs(cold[round - 1]),
            secs(hit[round - 1]),
            secs(six[round - 1]),
        );
    }
    let (no_cache, cold, hit, six) = (median(no_cache), median(cold), median(hit), median(six));
    println!();
    println!("| run, {list} to oci: | median |");
    println!("|---|---|");
    println!(
        "| --no-cache (reference) | {:.2} s ({:.2} GB/s) |",
        secs(no_cache),
        spec.total_size() as f64 / secs(no_cache) / 1e9
    );
    println!("| cold build through the cache | {:.2} s |", secs(cold));
    println!("| cache hit | {:.3} s |", secs(hit));
    println!(
        "| {PROCESSES} processes at once, {PROCESSES} outputs | {:.2} s |",
        secs(six)
    );
    println!();
    println!(
        "ratio cold/--no-cache: {:.2} (target <= 1.10); hit/--no-cache: {:.3} (target <= 0.05); {PROCESSES} processes/cold: {:.2} (target <= 1.30)",
        secs(cold) / secs(no_cache),
        secs(hit) / secs(no_cache),
        secs(six) / secs(cold),
    );
    Ok(())
}

/// Starts the CLI writing `oci:DIR/name`, through `cache` or with `extra` arguments.
fn cli(
    dir: &Path,
    cache: Option<&Path>,
    list: &str,
    name: &str,
    extra: &[&str],
) -> std::io::Result<Child> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_image-maker"));
    cmd.args(["-q", "-s", list, "-o"])
        .arg(format!("oci:{}", dir.join(name).display()))
        .args(extra)
        .arg("bench/link:1")
        .env_remove("SOURCE_DATE_EPOCH");
    match cache {
        Some(cache) => cmd.env("IMAGE_MAKER_CACHE_DIR", cache),
        None => cmd.env("IMAGE_MAKER_CACHE_DIR", dir.join("unused")),
    };
    cmd.spawn()
}

/// Starts `n` children at once; the time from their start until the last one ends.
fn timed(n: usize, start: impl Fn(usize) -> std::io::Result<Child>) -> support::Result<Duration> {
    let started = Instant::now();
    let children = (0..n).map(start).collect::<Result<Vec<_>, _>>()?;
    for mut child in children {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("image-maker failed: {status}").into());
        }
    }
    Ok(started.elapsed())
}

/// Removes the outputs, keeping the cache.
fn clean_outputs(dir: &Path) -> std::io::Result<()> {
    for item in fs::read_dir(dir)? {
        let item = item?;
        if item.file_name() != "cache" {
            fs::remove_dir_all(item.path())?;
        }
    }
    settle();
    Ok(())
}

/// Removes everything, cache included.
fn clean(dir: &Path) -> std::io::Result<()> {
    for item in fs::read_dir(dir)? {
        fs::remove_dir_all(item?.path())?;
    }
    settle();
    Ok(())
}

/// Lets the filesystem finish freeing what was deleted before the next run is timed.
fn settle() {
    nix::unistd::sync();
    std::thread::sleep(Duration::from_millis(500));
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
