//! Native build of a large spec versus the single-pass reference — generate the same bytes
//! with the same generator, SHA-256 them, write them to a file — in the same run, rounds
//! alternating, so machine noise hits both alike. Reports medians, the ratio and peak RSS.
//! When docker answers, each round also times the dockerfile builder on the same spec
//! (files + Dockerfile + `docker build`), and the ratio dockerfile/native is reported.
//!
//! `cargo bench --bench build` (or `cargo xtask bench`); `IMAGE_MAKER_BENCH_SPEC` and
//! `IMAGE_MAKER_BENCH_ROUNDS` change the defaults (`1GB,512MB`, 3 rounds), and
//! `IMAGE_MAKER_BENCH_DIR` where the data is written (the system temp dir).

mod support;

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{median, Settings};

use image_maker::testing::FileContent;
use image_maker::testing::SpecHash as _;
use image_maker::Spec;
use nix::sys::resource::{getrusage, UsageWho};
use sha2::{Digest, Sha256};

const CHUNK: usize = 256 * 1024;

fn main() -> support::Result<()> {
    let Settings {
        list,
        spec,
        rounds,
        work,
    } = Settings::from_env("build", "1GB,512MB", 3)?;

    // One unrecorded round warms caches; then the order alternates, because a run right
    // after a large deletion pays for the filesystem's cleanup (discard, journal).
    single_pass(&spec, work.path())?;
    native_build(&list, work.path())?;
    let mut reference = Vec::new();
    let mut native = Vec::new();
    let docker = docker_answers();
    if !docker {
        println!("docker does not answer: the dockerfile builder is not timed");
    }
    let mut dockerfile = Vec::new();
    for round in 1..=rounds {
        if docker {
            dockerfile.push(dockerfile_build(&list, work.path())?);
        }
        if round % 2 == 1 {
            reference.push(single_pass(&spec, work.path())?);
            native.push(native_build(&list, work.path())?);
        } else {
            native.push(native_build(&list, work.path())?);
            reference.push(single_pass(&spec, work.path())?);
        }
        println!(
            "round {round}: reference {:.2} s, native {:.2} s{}",
            reference[round - 1].as_secs_f64(),
            native[round - 1].as_secs_f64(),
            dockerfile
                .get(round - 1)
                .map(|d| format!(", dockerfile {:.2} s", d.as_secs_f64()))
                .unwrap_or_default()
        );
    }
    let (reference, native) = (median(reference), median(native));
    let rss_kib = getrusage(UsageWho::RUSAGE_CHILDREN)?.max_rss();
    let throughput = |d: Duration| spec.total_size() as f64 / d.as_secs_f64() / 1e9;
    println!();
    println!("| run | median | throughput |");
    println!("|---|---|---|");
    println!(
        "| reference: generate + SHA-256 + write | {:.2} s | {:.2} GB/s |",
        reference.as_secs_f64(),
        throughput(reference)
    );
    println!(
        "| native build to oci: | {:.2} s | {:.2} GB/s |",
        native.as_secs_f64(),
        throughput(native)
    );
    let dockerfile = (!dockerfile.is_empty()).then(|| median(dockerfile));
    if let Some(dockerfile) = dockerfile {
        println!(
            "| dockerfile build with docker | {:.2} s | {:.2} GB/s |",
            dockerfile.as_secs_f64(),
            throughput(dockerfile)
        );
    }
    println!();
    if let Some(dockerfile) = dockerfile {
        println!(
            "ratio dockerfile/native: {:.1} (expected >= 10)",
            dockerfile.as_secs_f64() / native.as_secs_f64()
        );
    }
    println!(
        "ratio native/reference: {:.2} (target <= 1.30); peak RSS of the child processes: {:.1} MiB (target < 64 MiB)",
        native.as_secs_f64() / reference.as_secs_f64(),
        rss_kib as f64 / 1024.0
    );
    Ok(())
}

/// The floor for any builder: the same bytes, hashed once and written once.
fn single_pass(spec: &Spec, dir: &Path) -> std::io::Result<Duration> {
    let hash = spec.hash();
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    for (layer, number) in spec.layers().iter().zip(1..) {
        let path = dir.join(format!("reference-{number}"));
        let mut file = File::create(&path)?;
        let mut sha = Sha256::new();
        let mut content = FileContent::new(&hash, number, 0, layer.size);
        while content.remaining() > 0 {
            let n = content.fill(&mut buf);
            sha.update(&buf[..n]);
            file.write_all(&buf[..n])?;
        }
        std::hint::black_box(sha.finalize());
    }
    let elapsed = start.elapsed();
    for number in 1..=spec.layers().len() {
        fs::remove_file(dir.join(format!("reference-{number}")))?;
    }
    settle();
    Ok(elapsed)
}

/// The CLI as users run it, in a child process so its peak RSS is its own.
fn native_build(list: &str, dir: &Path) -> std::io::Result<Duration> {
    let out = dir.join("native");
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_image-maker"))
        .args(["-q", "--no-cache", "-s", list, "-o"])
        .arg(format!("oci:{}", out.display()))
        .arg("bench/native:1")
        .status()?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "image-maker failed: {status}"
        )));
    }
    fs::remove_dir_all(&out)?;
    settle();
    Ok(elapsed)
}

/// The dockerfile builder as users run it: layer files and a Dockerfile in a build
/// directory, `docker build`, the directory removed. The image is removed untimed, which
/// also drops its layers, so the next round builds from nothing.
fn dockerfile_build(list: &str, dir: &Path) -> std::io::Result<Duration> {
    const IMAGE: &str = "image-maker-bench/dockerfile:1";
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_image-maker"))
        .args([
            "-q",
            "-b",
            "dockerfile",
            // Timed is a build, not the lookup of an image an earlier round left.
            "--no-cache",
            "-e",
            "docker",
            "-s",
            list,
            "--build-dir",
        ])
        .arg(dir)
        .arg(IMAGE)
        .status()?;
    let elapsed = start.elapsed();
    let removed = Command::new("docker")
        .args(["image", "rm", IMAGE])
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() || !removed.success() {
        return Err(std::io::Error::other(format!(
            "the dockerfile build failed ({status}) or its image stayed ({removed})"
        )));
    }
    settle();
    Ok(elapsed)
}

fn docker_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Lets the filesystem finish freeing what a run deleted before the next run is timed.
fn settle() {
    nix::unistd::sync();
    std::thread::sleep(Duration::from_millis(500));
}
