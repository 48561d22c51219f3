//! Cache-hit latency of `fixture()` in a fresh process, for a cached `1GB` spec (or
//! `IMAGE_MAKER_BENCH_SPEC`), next to the cold build that filled the cache and, as the
//! reference in the same run, a fresh process that does nothing. Target: a hit under 20 ms.
//!
//! `cargo bench --bench cache` (or `cargo xtask bench cache`); `IMAGE_MAKER_BENCH_ROUNDS`
//! (default 20) and `IMAGE_MAKER_BENCH_DIR` (where the cache goes; the system temp dir).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::{median, Settings};

use image_maker::Cache;
use image_maker::Fixture;

const CHILD: &str = "IMAGE_MAKER_BENCH_CHILD";

fn main() -> support::Result<()> {
    match std::env::var(CHILD).as_deref() {
        Ok("noop") => return Ok(()),
        Ok(dir) => return child(&support::spec_list("1GB"), dir),
        Err(_) => {}
    }
    let Settings {
        list,
        spec,
        rounds,
        work,
    } = Settings::from_env("cache", "1GB", 20)?;
    let cache = work
        .path()
        .to_str()
        .ok_or("the bench directory is not UTF-8")?;

    let (cold, _) = spawn(cache)?;
    println!(
        "cold build of {list} into the cache: {:.2} s ({:.2} GB/s)",
        cold.as_secs_f64(),
        spec.total_size() as f64 / cold.as_secs_f64() / 1e9
    );
    let mut hits = Vec::new();
    let mut hit_processes = Vec::new();
    let mut noop_processes = Vec::new();
    for _ in 0..rounds {
        let (process, inside) = spawn(cache)?;
        hit_processes.push(process);
        hits.push(inside);
        noop_processes.push(spawn("noop")?.0);
    }
    let (hit, hit_process, noop) = (median(hits), median(hit_processes), median(noop_processes));
    println!();
    println!("| run | median |");
    println!("|---|---|");
    println!(
        "| fixture() cache hit, inside a fresh process | {:.2} ms |",
        ms(hit)
    );
    println!(
        "| fresh process with a cache hit, start to exit | {:.2} ms |",
        ms(hit_process)
    );
    println!(
        "| reference: fresh process doing nothing | {:.2} ms |",
        ms(noop)
    );
    println!();
    println!(
        "cache hit {:.2} ms (target < 20 ms); a hit adds {:.2} ms to a process; cold build {:.2} s = {:.0}x a hit",
        ms(hit),
        ms(hit_process.saturating_sub(noop)),
        cold.as_secs_f64(),
        cold.as_secs_f64() / hit.as_secs_f64()
    );
    Ok(())
}

/// Runs this bench again as a child; returns its wall time and the time it reported.
fn spawn(mode: &str) -> support::Result<(Duration, Duration)> {
    let start = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .env(CHILD, mode)
        .output()?;
    let wall = start.elapsed();
    if !out.status.success() {
        return Err(format!("child failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let inside = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u64>()
        .map_or(Duration::ZERO, Duration::from_nanos);
    Ok((wall, inside))
}

/// In the child: one `fixture()` call, timed from before the call to the image in hand.
fn child(list: &str, cache: &str) -> support::Result<()> {
    let start = Instant::now();
    let image = Fixture::new(list).cache(Cache::at(cache)).get()?;
    let elapsed = start.elapsed();
    std::hint::black_box(image.oci_dir());
    println!("{}", elapsed.as_nanos());
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
