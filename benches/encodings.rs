//! Compressed layers against the tools a user would otherwise reach for, each pair in the
//! same run with rounds alternating in order, so machine noise hits both alike:
//!
//! - `1GB:compression=gzip` (random content) versus `gzip -1` on one thread of the same
//!   uncompressed tar (target ≤ 0.5×);
//! - `256MB:ratio=4:compression=gzip` versus `gzip -6` of the same uncompressed tar
//!   (target ≤ 0.6×);
//! - `1GB:compression=zstd` versus the uncompressed `1GB` build (target ≤ 1.5×).
//!
//! Every build is the release CLI with `--no-cache` writing `oci:`. The tars the references
//! compress are the layer blobs of uncompressed builds made once before the rounds (their
//! digests are checked against the compressed builds' `diff_id`s), and `gzip` writes its
//! output to a file beside them, because image-maker writes its blob to disk too: `gzip`
//! to `/dev/null` would skip a write the build pays. Also reported: the blobs' sizes and
//! each process's peak RSS (target < 64 MiB for a 1 GiB layer, gzip and zstd alike).
//!
//! `cargo bench --bench encodings` (or `cargo xtask bench encodings`);
//! `IMAGE_MAKER_BENCH_SPEC` replaces `1GB` in the first and last pair (the ratio=4 layer
//! stays 256MB), `IMAGE_MAKER_BENCH_ROUNDS` (default 3) and `IMAGE_MAKER_BENCH_DIR` (where
//! the data is written; the system temp dir).

mod support;
#[path = "support/usage.rs"]
mod usage;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{median, Settings};
use usage::{measured, Usage};

use image_maker::testing::human_size;
use serde_json::Value;

const RATIO_LIST: &str = "256MB:ratio=4";

fn main() -> support::Result<()> {
    if let Some(reported) = usage::report_if_asked() {
        return reported;
    }
    let Settings {
        list,
        spec,
        rounds,
        work,
    } = Settings::from_env("encodings", "1GB", 3)?;
    let dir = work.path();

    // The references' input, built once; these builds also warm the binary, and the page
    // cache holds the tars the references then read, as it holds nothing image-maker reads.
    let large = build(dir, &list, "none", "source-large")?;
    let ratio = build(dir, RATIO_LIST, "none", "source-ratio")?;

    let pairs = [
        Pair {
            ours: format!("{list} with compression=gzip"),
            reference: "gzip -1 of the uncompressed tar".into(),
            target: 0.5,
            input: &large,
            run_ours: Box::new(|| build(dir, &list, "gzip", "ours")),
            run_reference: Box::new(|| gzip(dir, &large, "-1")),
        },
        Pair {
            ours: format!("{RATIO_LIST} with compression=gzip"),
            reference: "gzip -6 of the uncompressed tar".into(),
            target: 0.6,
            input: &ratio,
            run_ours: Box::new(|| build(dir, RATIO_LIST, "gzip", "ours")),
            run_reference: Box::new(|| gzip(dir, &ratio, "-6")),
        },
        Pair {
            ours: format!("{list} with compression=zstd"),
            reference: format!("{list} uncompressed"),
            target: 1.5,
            input: &large,
            run_ours: Box::new(|| build(dir, &list, "zstd", "ours")),
            run_reference: Box::new(|| build(dir, &list, "none", "reference")),
        },
    ];

    let mut results: Vec<Results> = pairs.iter().map(|_| Results::default()).collect();
    for round in 1..=rounds {
        let mut line = format!("round {round}:");
        for (pair, results) in pairs.iter().zip(&mut results) {
            // The order alternates, because a run right after a large deletion pays for the
            // filesystem's cleanup.
            if round % 2 == 1 {
                results.ours.push((pair.run_ours)()?);
                results.reference.push((pair.run_reference)()?);
            } else {
                results.reference.push((pair.run_reference)()?);
                results.ours.push((pair.run_ours)()?);
            }
            // Ours compresses the very files the reference reads (or writes plain).
            let built = &results.ours[round - 1];
            if built.diff_ids != pair.input.diff_ids {
                return Err(format!(
                    "{}: diff_ids {:?}, but the uncompressed tar's are {:?}",
                    pair.ours, built.diff_ids, pair.input.diff_ids
                )
                .into());
            }
            line += &format!(
                " {} {:.2} s / {:.2} s;",
                pair.ours,
                secs(results.ours[round - 1].usage.wall),
                secs(results.reference[round - 1].usage.wall),
            );
        }
        println!("{}", line.trim_end_matches(';'));
    }

    println!();
    println!("| figure | ours (median) | reference (median) | ratio | target | met |");
    println!("|---|---|---|---|---|---|");
    for (pair, results) in pairs.iter().zip(&results) {
        let (ours, reference) = (results.median_ours(), results.median_reference());
        let ratio = secs(ours) / secs(reference);
        println!(
            "| {} vs {} | {:.2} s | {:.2} s | {ratio:.3} | <= {:.1} | {} |",
            pair.ours,
            pair.reference,
            secs(ours),
            secs(reference),
            pair.target,
            if ratio <= pair.target { "yes" } else { "no" },
        );
    }

    println!();
    println!("| blob | size | uncompressed / size |");
    println!("|---|---|---|");
    let sized = |name: &str, size: u64, of: u64| {
        println!(
            "| {name} | {} ({size} B) | {:.3} |",
            human_size(size),
            of as f64 / size as f64
        );
    };
    let (large_size, ratio_size) = (large.size(), ratio.size());
    sized(&format!("{list} uncompressed tar"), large_size, large_size);
    sized(
        &format!("{list} with compression=gzip"),
        results[0].ours[0].size(),
        large_size,
    );
    sized("gzip -1 of it", results[0].reference[0].size(), large_size);
    sized(
        &format!("{RATIO_LIST} uncompressed tar"),
        ratio_size,
        ratio_size,
    );
    sized(
        &format!("{RATIO_LIST} with compression=gzip"),
        results[1].ours[0].size(),
        ratio_size,
    );
    sized("gzip -6 of it", results[1].reference[0].size(), ratio_size);
    sized(
        &format!("{list} with compression=zstd"),
        results[2].ours[0].size(),
        large_size,
    );

    println!();
    println!("| process | peak RSS (highest round) | CPU time (median) | wall (median) |");
    println!("|---|---|---|---|");
    for (pair, results) in pairs.iter().zip(&results) {
        for (name, runs) in [
            (&pair.ours, &results.ours),
            (&pair.reference, &results.reference),
        ] {
            let rss = runs.iter().map(|r| r.usage.peak_rss_kib).max().unwrap_or(0);
            let cpu = median(runs.iter().map(|r| r.usage.cpu).collect());
            let wall = median(runs.iter().map(|r| r.usage.wall).collect());
            println!(
                "| {name} | {:.1} MiB | {:.2} s | {:.2} s |",
                rss as f64 / 1024.0,
                secs(cpu),
                secs(wall)
            );
        }
    }
    println!();
    for (index, encoding) in [(0, "gzip"), (2, "zstd")] {
        let rss = results[index]
            .ours
            .iter()
            .map(|r| r.usage.peak_rss_kib)
            .max()
            .unwrap_or(0);
        println!(
            "peak RSS of image-maker, {} {encoding} layer: {:.1} MiB (target < 64 MiB: {})",
            human_size(spec.total_size()),
            rss as f64 / 1024.0,
            if rss < 64 * 1024 { "met" } else { "missed" }
        );
    }
    Ok(())
}

/// Two commands timed against each other: ours and the reference.
struct Pair<'a> {
    ours: String,
    reference: String,
    target: f64,
    /// The uncompressed build whose files ours compresses.
    input: &'a Run,
    run_ours: Box<dyn Fn() -> support::Result<Run> + 'a>,
    run_reference: Box<dyn Fn() -> support::Result<Run> + 'a>,
}

#[derive(Default)]
struct Results {
    ours: Vec<Run>,
    reference: Vec<Run>,
}

impl Results {
    fn median_ours(&self) -> Duration {
        median(self.ours.iter().map(|r| r.usage.wall).collect())
    }

    fn median_reference(&self) -> Duration {
        median(self.reference.iter().map(|r| r.usage.wall).collect())
    }
}

/// One measured command and what it wrote.
struct Run {
    usage: Usage,
    /// The sizes of the blobs (or files) it wrote.
    sizes: Vec<u64>,
    /// The `diff_id`s of the image it built; empty for a reference.
    diff_ids: Vec<String>,
    /// The layer blobs of the image it built, while they exist.
    blobs: Vec<PathBuf>,
}

impl Run {
    fn size(&self) -> u64 {
        self.sizes.iter().sum()
    }
}

/// Builds `list` with `--compression encoding` to `oci:DIR/name`. The output stays only
/// for the sources the references read; any other is removed before the next run.
fn build(dir: &Path, list: &str, encoding: &str, name: &str) -> support::Result<Run> {
    let out = dir.join(name);
    let args: Vec<OsString> = vec![
        "-q".into(),
        "--no-cache".into(),
        "-s".into(),
        list.into(),
        "--compression".into(),
        encoding.into(),
        "-o".into(),
        format!("oci:{}", out.display()).into(),
        "bench/encodings:1".into(),
    ];
    let usage = measured(dir, env!("CARGO_BIN_EXE_image-maker").as_ref(), &args, None)?;
    let (blobs, sizes, diff_ids) = layers(&out)?;
    let keep = name.starts_with("source");
    if !keep {
        fs::remove_dir_all(&out)?;
        settle();
    }
    Ok(Run {
        usage,
        sizes,
        diff_ids,
        blobs: if keep { blobs } else { Vec::new() },
    })
}

/// `gzip LEVEL -c` of each layer blob of `source`, one after the other, to a file.
fn gzip(dir: &Path, source: &Run, level: &str) -> support::Result<Run> {
    let out = dir.join("reference.gz");
    let mut wall = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    let mut peak_rss_kib = 0;
    let mut sizes = Vec::new();
    for blob in &source.blobs {
        let args = [level.into(), "-c".into(), blob.clone().into_os_string()];
        let usage = measured(dir, "gzip".as_ref(), &args, Some(&out))?;
        wall += usage.wall;
        cpu += usage.cpu;
        peak_rss_kib = peak_rss_kib.max(usage.peak_rss_kib);
        sizes.push(fs::metadata(&out)?.len());
        fs::remove_file(&out)?;
        settle();
    }
    Ok(Run {
        usage: Usage {
            wall,
            cpu,
            peak_rss_kib,
        },
        sizes,
        diff_ids: Vec::new(),
        blobs: Vec::new(),
    })
}

/// The layer blobs of the single image in the OCI layout `out`, their sizes and the
/// config's `diff_id`s.
fn layers(out: &Path) -> support::Result<(Vec<PathBuf>, Vec<u64>, Vec<String>)> {
    let blob = |digest: &Value| -> support::Result<PathBuf> {
        let digest = digest.as_str().ok_or("a digest that is not a string")?;
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("digest {digest} is not sha256"))?;
        Ok(out.join("blobs/sha256").join(hex))
    };
    let read =
        |path: &Path| -> support::Result<Value> { Ok(serde_json::from_slice(&fs::read(path)?)?) };
    let index = read(&out.join("index.json"))?;
    let manifest = read(&blob(&index["manifests"][0]["digest"])?)?;
    let config = read(&blob(&manifest["config"]["digest"])?)?;
    let mut blobs = Vec::new();
    let mut sizes = Vec::new();
    for layer in manifest["layers"]
        .as_array()
        .ok_or("a manifest without layers")?
    {
        blobs.push(blob(&layer["digest"])?);
        sizes.push(layer["size"].as_u64().ok_or("a layer without a size")?);
    }
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .ok_or("a config without diff_ids")?
        .iter()
        .map(|d| {
            d.as_str()
                .map(String::from)
                .ok_or("a diff_id that is not a string")
        })
        .collect::<Result<_, _>>()?;
    Ok((blobs, sizes, diff_ids))
}

/// Lets the filesystem finish freeing what a run deleted before the next run is timed.
fn settle() {
    nix::unistd::sync();
    std::thread::sleep(Duration::from_millis(500));
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
