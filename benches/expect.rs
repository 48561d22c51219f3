//! The oracle against the build it predicts: `image-maker expect 512MB:tree=100000 >
//! /dev/null` versus `image-maker -s 512MB:tree=100000 --no-cache -o oci:DIR`, the release
//! CLI, rounds alternating in order so machine noise hits both alike. The oracle generates
//! and hashes every byte the build generates, but writes nothing and hashes each file on
//! its own: target ≤ 1.0× the build.
//!
//! `cargo bench --bench expect` (or `cargo xtask bench expect`); `IMAGE_MAKER_BENCH_SPEC`,
//! `IMAGE_MAKER_BENCH_ROUNDS` (default 3) and `IMAGE_MAKER_BENCH_DIR` (where the build
//! writes; the system temp dir).

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{median, Settings};

const TARGET: f64 = 1.0;

fn main() -> support::Result<()> {
    let Settings {
        list,
        spec,
        rounds,
        work,
    } = Settings::from_env("expect", "512MB:tree=100000", 3)?;
    let dir = work.path();
    let (mut oracle, mut build) = (Vec::new(), Vec::new());
    // One unrecorded run of each warms the binary and the page cache.
    run(expect_cmd(&list))?;
    run(build_cmd(dir, &list))?;
    clean(dir)?;
    for round in 1..=rounds {
        let oracle_first = round % 2 == 1;
        if oracle_first {
            oracle.push(run(expect_cmd(&list))?);
        }
        build.push(run(build_cmd(dir, &list))?);
        clean(dir)?;
        if !oracle_first {
            oracle.push(run(expect_cmd(&list))?);
        }
    }
    let (oracle, build) = (median(oracle), median(build));
    let ratio = oracle.as_secs_f64() / build.as_secs_f64();
    println!(
        "expect {list} > /dev/null        {:>8.3} s",
        oracle.as_secs_f64()
    );
    println!(
        "build {list} --no-cache to oci:  {:>8.3} s",
        build.as_secs_f64()
    );
    println!(
        "expect generates and hashes {:.0} MiB/s",
        spec.total_size() as f64 / oracle.as_secs_f64() / f64::from(1 << 20)
    );
    println!(
        "ratio {ratio:.2}× (target ≤ {TARGET:.1}×): {}",
        if ratio <= TARGET { "met" } else { "MISSED" }
    );
    Ok(())
}

fn expect_cmd(list: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_image-maker"));
    cmd.args(["expect", list]).stdout(Stdio::null());
    cmd
}

fn build_cmd(dir: &Path, list: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_image-maker"));
    cmd.args(["-q", "--no-cache", "-s", list, "-o"])
        .arg(format!("oci:{}", dir.join("out").display()))
        .arg("bench/expect:1")
        .env_remove("SOURCE_DATE_EPOCH")
        .env("IMAGE_MAKER_CACHE_DIR", dir.join("unused"));
    cmd
}

/// How long `cmd` takes to succeed.
fn run(mut cmd: Command) -> support::Result<Duration> {
    let started = Instant::now();
    let status = cmd.status()?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}").into());
    }
    Ok(started.elapsed())
}

/// Removes the build's output, and lets the filesystem free it before the next timing.
fn clean(dir: &Path) -> std::io::Result<()> {
    for item in fs::read_dir(dir)? {
        fs::remove_dir_all(item?.path())?;
    }
    nix::unistd::sync();
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}
