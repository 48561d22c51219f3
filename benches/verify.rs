//! `image-maker verify oci:DIR` of a 1.5 GiB image versus `sha256sum` of all its blob
//! files — the floor for re-reading and hashing every blob — in the same run, rounds
//! alternating in order, so machine noise hits both alike. Reports medians, the ratio
//! (target ≤ 1.3×) and each process's peak RSS and CPU time.
//!
//! The default spec, `1GB,256MB:tree=20000,256MB`, is 1.5 GiB like `1GB,512MB`, with a
//! quarter of it in a tree of 20000 files: verify walks every tar entry and compares it
//! with the plan, so a per-entry cost shows here, where a few huge files would hide it.
//! The image is built once, before the rounds, with the release CLI (`--no-cache`, to
//! `oci:`); both commands then read the same files, from the page cache alike.
//!
//! `cargo bench --bench verify` (or `cargo xtask bench verify`); `IMAGE_MAKER_BENCH_SPEC`
//! and `IMAGE_MAKER_BENCH_ROUNDS` change the defaults (that spec, 5 rounds), and
//! `IMAGE_MAKER_BENCH_DIR` where the image is written (the system temp dir).

mod support;
#[path = "support/usage.rs"]
mod usage;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{median, Settings};
use usage::{measured, Usage};

const TARGET: f64 = 1.3;

fn main() -> support::Result<()> {
    if let Some(reported) = usage::report_if_asked() {
        return reported;
    }
    let Settings {
        list,
        spec,
        rounds,
        work,
    } = Settings::from_env("verify", "1GB,256MB:tree=20000,256MB", 5)?;
    let dir = work.path();
    let image = dir.join("image");
    let built = measured(
        dir,
        env!("CARGO_BIN_EXE_image-maker").as_ref(),
        &[
            "-q".into(),
            "--no-cache".into(),
            "-s".into(),
            list.clone().into(),
            "-o".into(),
            format!("oci:{}", image.display()).into(),
            "bench/verify:1".into(),
        ],
        None,
    )?;
    let blobs = blob_files(&image)?;
    let bytes: u64 = blobs
        .iter()
        .map(|b| fs::metadata(b).map(|m| m.len()))
        .sum::<Result<_, _>>()?;
    println!(
        "built {} blobs ({bytes} B; payload {} B) in {:.2} s",
        blobs.len(),
        spec.total_size(),
        built.wall.as_secs_f64()
    );

    let verify_args: Vec<OsString> = vec![
        "verify".into(),
        "-q".into(),
        format!("oci:{}", image.display()).into(),
    ];
    let run_verify = || {
        measured(
            dir,
            env!("CARGO_BIN_EXE_image-maker").as_ref(),
            &verify_args,
            None,
        )
    };
    let sha_args: Vec<OsString> = blobs.iter().map(|b| b.clone().into_os_string()).collect();
    let devnull = Path::new("/dev/null");
    let run_sha = || measured(dir, "sha256sum".as_ref(), &sha_args, Some(devnull));

    // One unrecorded run of each warms the binaries and the page cache.
    run_verify()?;
    run_sha()?;
    let mut ours = Vec::new();
    let mut reference = Vec::new();
    for round in 1..=rounds {
        if round % 2 == 1 {
            ours.push(run_verify()?);
            reference.push(run_sha()?);
        } else {
            reference.push(run_sha()?);
            ours.push(run_verify()?);
        }
        println!(
            "round {round}: verify {:.2} s, sha256sum {:.2} s",
            secs(ours[round - 1].wall),
            secs(reference[round - 1].wall)
        );
    }

    let wall = |runs: &[Usage]| median(runs.iter().map(|r| r.wall).collect());
    let cpu = |runs: &[Usage]| median(runs.iter().map(|r| r.cpu).collect());
    let rss = |runs: &[Usage]| runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0);
    let throughput = |d: Duration| bytes as f64 / secs(d) / 1e9;
    println!();
    println!("| process | wall (median) | throughput | CPU time (median) | peak RSS (highest) |");
    println!("|---|---|---|---|---|");
    for (name, runs) in [
        (format!("image-maker verify ({list})"), &ours),
        ("sha256sum of every blob".to_owned(), &reference),
    ] {
        println!(
            "| {name} | {:.2} s | {:.2} GB/s | {:.2} s | {:.1} MiB |",
            secs(wall(runs)),
            throughput(wall(runs)),
            secs(cpu(runs)),
            rss(runs) as f64 / 1024.0
        );
    }
    let ratio = secs(wall(&ours)) / secs(wall(&reference));
    println!();
    println!(
        "ratio verify/sha256sum: {ratio:.2} (target <= {TARGET:.1}: {})",
        if ratio <= TARGET { "met" } else { "missed" }
    );
    Ok(())
}

/// Every file under `blobs/` of the OCI layout `image`: layers, configs and manifests.
fn blob_files(image: &Path) -> support::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for algorithm in fs::read_dir(image.join("blobs"))? {
        for blob in fs::read_dir(algorithm?.path())? {
            files.push(blob?.path());
        }
    }
    files.sort();
    Ok(files)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
