//! Cache-hit latency of `fixture()` in a fresh process, for a cached `1GB` spec (or
//! `IMAGE_MAKER_BENCH_SPEC`), next to the cold build that filled the cache and, as the
//! reference in the same run, a fresh process that does nothing. Target: a hit under 20 ms.
//!
//! `cargo bench --bench cache` (or `cargo xtask bench cache`); `IMAGE_MAKER_BENCH_ROUNDS`
//! (default 20) and `IMAGE_MAKER_BENCH_DIR` (where the cache goes; the system temp dir).

use std::process::Command;
use std::time::{Duration, Instant};

use image_maker::cache::Cache;
use image_maker::Fixture;

const CHILD: &str = "IMAGE_MAKER_BENCH_CHILD";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let list = std::env::var("IMAGE_MAKER_BENCH_SPEC").unwrap_or_else(|_| "1GB".into());
    match std::env::var(CHILD).as_deref() {
        Ok("noop") => return Ok(()),
        Ok(dir) => return child(&list, dir),
        Err(_) => {}
    }
    let rounds: usize = std::env::var("IMAGE_MAKER_BENCH_ROUNDS").map_or(Ok(20), |r| r.parse())?;
    let parent =
        std::env::var_os("IMAGE_MAKER_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let work = tempfile::Builder::new()
        .prefix("image-maker-bench-cache")
        .tempdir_in(parent)?;
    let cache = work
        .path()
        .to_str()
        .ok_or("the bench directory is not UTF-8")?;
    println!("spec {list}, {rounds} rounds, cache in {cache}");

    let (cold, _) = spawn(cache)?;
    println!("cold build into the cache: {:.2} s", cold.as_secs_f64());
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
fn spawn(mode: &str) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
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
fn child(list: &str, cache: &str) -> Result<(), Box<dyn std::error::Error>> {
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

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
