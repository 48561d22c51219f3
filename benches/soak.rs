//! A soak of compressed layers' determinism: the layer digest of each spec below must be
//! one and the same however it was made — built with any number of compressing threads,
//! pinned to one CPU, or served by `image-maker serve` (the digest its manifest lists, and
//! the SHA-256 of the bytes a GET streams).
//!
//! The specs: `1GB:ratio=1.5:compression=gzip`, `1GB:ratio=3:compression=gzip`,
//! `1GB:ratio=10:compression=gzip`, `1GB:ratio=3:compression=gzip:level=1`,
//! `1GB:ratio=3:compression=gzip:level=9`, `1GB:compression=zstd`,
//! `1GB:ratio=3:compression=zstd` and `128MB:ratio=3:compression=zstd:level=19` (128 MB
//! rather than 1 GB: level 19 made 6 to 14 MB/s on two cores here, so 1 GB would take one
//! to three minutes a build, more than all the other specs' builds together).
//!
//! Each spec is built once a round with the release CLI (`--no-cache -q --json`, to `oci:`),
//! and each output is deleted once its layer digests are read (from the JSON, checked
//! against the layout's manifest). The rounds cycle `IMAGE_MAKER_THREADS` through 1, the
//! number of cores and twice that plus one; when `taskset` is here, the last of at least
//! two rounds runs under `taskset -c 0` without `IMAGE_MAKER_THREADS`, so the thread count
//! comes from the CPU affinity. One `serve` (on a free loopback port, with a fresh cache)
//! serves every spec: `mock:TAG`, or a name from an images file for a spec without a tag
//! form (`ratio=1.5`); for each spec its manifest is fetched and each layer blob streamed
//! with `curl` into SHA-256, three times (fewer when there are fewer rounds).
//!
//! Prints, per spec and layer, every distinct digest with how many times and on which
//! paths it was seen, and the median build time; fails if a layer ever had two digests.
//!
//! `cargo bench --bench soak` (or `cargo xtask bench soak`); not in CI. The full soak takes
//! 15 to 20 minutes on two cores (four rounds took ten). `IMAGE_MAKER_BENCH_ROUNDS` sets
//! the builds per spec (default 10), `IMAGE_MAKER_BENCH_SPEC` soaks that one spec instead
//! of the list (the first line printed names the list's first spec otherwise), and
//! `IMAGE_MAKER_BENCH_DIR` is where the outputs go (the system temp dir).

// This benchmark takes only the server of these.
#[path = "support/serve.rs"]
#[allow(dead_code)]
mod serve_support;
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use image_maker::testing::human_size;
use image_maker::Spec;
use serde_json::Value;
use serve_support::Serve;
use sha2::{Digest, Sha256};
use support::{median, Result, Settings};

const BIN: &str = env!("CARGO_BIN_EXE_image-maker");

const SPECS: [&str; 8] = [
    "1GB:ratio=1.5:compression=gzip",
    "1GB:ratio=3:compression=gzip",
    "1GB:ratio=10:compression=gzip",
    "1GB:ratio=3:compression=gzip:level=1",
    "1GB:ratio=3:compression=gzip:level=9",
    "1GB:compression=zstd",
    "1GB:ratio=3:compression=zstd",
    "128MB:ratio=3:compression=zstd:level=19",
];

/// Times each layer is fetched from serve. The first manifest runs serve's digest pass and
/// later ones come from its memo; every GET generates the blob again.
const SERVE_GETS: usize = 3;

const THREADS_VAR: &str = "IMAGE_MAKER_THREADS";

fn main() -> Result<()> {
    let Settings {
        list,
        spec,
        rounds,
        work,
    } = Settings::from_env("soak", SPECS[0], 10)?;
    let specs: Vec<(String, Spec)> = if std::env::var_os("IMAGE_MAKER_BENCH_SPEC").is_some() {
        vec![(list, spec)]
    } else {
        SPECS
            .iter()
            .map(|text| Ok(((*text).to_owned(), Spec::parse(text)?)))
            .collect::<Result<_>>()?
    };
    let dir = work.path();
    let taskset = Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let runs: Vec<Run> = (0..rounds)
        .map(|round| run_kind(round, rounds, taskset))
        .collect();
    println!(
        "{} specs; builds: {}; {} serve GETs each",
        specs.len(),
        runs.iter()
            .map(|run| run.label().replacen("build, ", "", 1))
            .collect::<Vec<_>>()
            .join(" / "),
        SERVE_GETS.min(rounds)
    );

    let names = served_names(&specs)?;
    let images = dir.join("images.toml");
    // A JSON string is a TOML basic string, and the toml crate here only parses.
    let images_file = names
        .iter()
        .zip(&specs)
        .filter(|(name, _)| name.untagged)
        .map(|(name, (text, _))| {
            Ok(format!(
                "{} = {{ layers = {} }}\n",
                serde_json::to_string(&name.reference())?,
                serde_json::to_string(text)?
            ))
        })
        .collect::<Result<String>>()?;
    let server = Serve::start(
        &dir.join("cache"),
        (!images_file.is_empty())
            .then(|| fs::write(&images, &images_file).map(|()| images.as_path()))
            .transpose()?,
    )?;

    let mut split = Vec::new();
    for ((text, spec), name) in specs.iter().zip(&names) {
        println!();
        println!("{text} ({}):", human_size(spec.total_size()));
        let mut seen = Seen::default();
        let mut times = Vec::new();
        for (round, run) in runs.iter().enumerate() {
            let out = dir.join("out");
            let started = Instant::now();
            let digests = build(text, &out, run)?;
            let took = started.elapsed();
            times.push(took);
            println!(
                "  round {}/{rounds}, {}: {:.2} s, {}",
                round + 1,
                run.label(),
                took.as_secs_f64(),
                digests.join(" ")
            );
            for (layer, digest) in digests.into_iter().enumerate() {
                seen.record(layer, digest, run.label());
            }
        }
        for get in 1..=SERVE_GETS.min(rounds) {
            let started = Instant::now();
            let layers = manifest_layers(&server, name)?;
            for (layer, (listed, size)) in layers.into_iter().enumerate() {
                let streamed = stream_sha256(&server, name, &listed)?;
                // A stream broken off is a digest of its own, seen on a path of its own:
                // the soak goes on, and fails at the end.
                let path = match &streamed.failure {
                    None => "serve GET".to_owned(),
                    Some(failure) => format!("serve GET, {failure}"),
                };
                println!(
                    "  serve {get}: layer {} listed {listed} ({size} B), streamed {} ({} B){}",
                    layer + 1,
                    streamed.digest,
                    streamed.bytes,
                    streamed
                        .failure
                        .as_ref()
                        .map_or(String::new(), |f| format!(", {f}"))
                );
                seen.record(layer, listed, "serve manifest".into());
                seen.record(layer, streamed.digest, path);
            }
            println!("  serve {get}: {:.2} s", started.elapsed().as_secs_f64());
        }
        println!(
            "  builds: median {:.2} s of {}",
            median(times).as_secs_f64(),
            runs.len()
        );
        for (layer, digests) in &seen.layers {
            let verdict = if digests.len() == 1 {
                "one digest"
            } else {
                split.push(format!("{text} layer {}", layer + 1));
                "MORE THAN ONE DIGEST"
            };
            println!("  layer {}: {verdict}", layer + 1);
            for (digest, paths) in digests {
                let total: usize = paths.values().sum();
                let paths = paths
                    .iter()
                    .map(|(path, n)| format!("{path} ×{n}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                println!("    {digest} ×{total}: {paths}");
            }
        }
    }
    println!();
    if split.is_empty() {
        println!("every layer had one digest on every path");
        Ok(())
    } else {
        Err(format!("more than one digest for {}", split.join(", ")).into())
    }
}

/// How one build runs: with `IMAGE_MAKER_THREADS` set, or pinned to CPU 0 without it.
#[derive(Clone, Copy)]
enum Run {
    Threads(usize),
    Taskset,
}

impl Run {
    fn label(&self) -> String {
        match self {
            Self::Threads(1) => "build, 1 thread".into(),
            Self::Threads(n) => format!("build, {n} threads"),
            Self::Taskset => "build, taskset -c 0".into(),
        }
    }
}

/// Consecutive rounds differ in thread count, and more threads than cores is among them:
/// the gzip blocks and zstd jobs are then handed out in yet another order.
fn run_kind(round: usize, rounds: usize, taskset: bool) -> Run {
    if taskset && rounds >= 2 && round == rounds - 1 {
        return Run::Taskset;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cycle = [1, cores.max(2), 2 * cores + 1];
    Run::Threads(cycle[round % cycle.len()])
}

/// Every digest seen for each layer (by index), and on which paths how many times.
#[derive(Default)]
struct Seen {
    layers: BTreeMap<usize, BTreeMap<String, BTreeMap<String, usize>>>,
}

impl Seen {
    fn record(&mut self, layer: usize, digest: String, path: String) {
        *self
            .layers
            .entry(layer)
            .or_default()
            .entry(digest)
            .or_default()
            .entry(path)
            .or_default() += 1;
    }
}

/// Builds `spec` to `oci:out` as `run` says and returns its layer digests, from the JSON on
/// stdout; the output is removed before returning.
fn build(spec: &str, out: &Path, run: &Run) -> Result<Vec<String>> {
    let mut command = match run {
        Run::Threads(n) => {
            let mut command = Command::new(BIN);
            command.env(THREADS_VAR, n.to_string());
            command
        }
        Run::Taskset => {
            let mut command = Command::new("taskset");
            command.args(["-c", "0", BIN]).env_remove(THREADS_VAR);
            command
        }
    };
    let target = format!("oci:{}", out.display());
    let output = command
        .args([
            "--no-cache",
            "-q",
            "--json",
            "-s",
            spec,
            "-o",
            &target,
            "x:1",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("{} of {spec} failed: {}", run.label(), output.status).into());
    }
    let json: Value = serde_json::from_slice(&output.stdout)?;
    let digests = json["layers"]
        .as_array()
        .ok_or("build JSON without layers")?
        .iter()
        .map(|layer| string(&layer["digest"]))
        .collect::<Result<Vec<_>>>()?;
    // The JSON is what the CLI says it wrote; the layout is what a reader gets.
    let written = layout_layers(out)?;
    fs::remove_dir_all(out)?;
    if written != digests {
        return Err(format!(
            "{} of {spec}: the JSON lists layers {digests:?}, the layout's manifest {written:?}",
            run.label()
        )
        .into());
    }
    Ok(digests)
}

/// The layer digests the manifest of the single image in the OCI layout `out` lists.
fn layout_layers(out: &Path) -> Result<Vec<String>> {
    let read = |digest: &Value| -> Result<Value> {
        let digest = string(digest)?;
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("digest {digest} is not sha256"))?;
        Ok(serde_json::from_slice(&fs::read(
            out.join("blobs/sha256").join(hex),
        )?)?)
    };
    let index: Value = serde_json::from_slice(&fs::read(out.join("index.json"))?)?;
    let manifest = read(&index["manifests"][0]["digest"])?;
    manifest["layers"]
        .as_array()
        .ok_or("a manifest without layers")?
        .iter()
        .map(|layer| string(&layer["digest"]))
        .collect()
}

fn string(value: &Value) -> Result<String> {
    Ok(value
        .as_str()
        .ok_or_else(|| format!("{value} is not a string"))?
        .to_owned())
}

/// Where serve has a spec's image: `mock:TAG`, or a name of the images file for a spec
/// without a tag form.
struct Name {
    repository: String,
    tag: String,
    untagged: bool,
}

impl Name {
    fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

fn served_names(specs: &[(String, Spec)]) -> Result<Vec<Name>> {
    specs
        .iter()
        .enumerate()
        .map(|(index, (text, _))| {
            Ok(match image_maker::testing::tag_of(text) {
                Ok(tag) => Name {
                    repository: "mock".into(),
                    tag,
                    untagged: false,
                },
                // Only the spec's having no tag form: serve would refuse anything else too.
                Err(image_maker::testing::TagError::Spec(e)) => return Err(e.into()),
                Err(_) => Name {
                    repository: format!("soak/untagged-{}", index + 1),
                    tag: "v1".into(),
                    untagged: true,
                },
            })
        })
        .collect()
}

/// What a GET streamed.
struct Streamed {
    digest: String,
    bytes: u64,
    /// How curl failed, when it did.
    failure: Option<String>,
}

/// The digest and size of each layer the manifest of `name` lists.
fn manifest_layers(server: &Serve, name: &Name) -> Result<Vec<(String, u64)>> {
    let url = server.url(&format!("/v2/{}/manifests/{}", name.repository, name.tag));
    let out = Command::new("curl").args(["-sSf", &url]).output()?;
    if !out.status.success() {
        return Err(format!("curl {url}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let manifest: Value = serde_json::from_slice(&out.stdout)?;
    manifest["layers"]
        .as_array()
        .ok_or_else(|| format!("{url}: a manifest without layers"))?
        .iter()
        .map(|layer| {
            Ok((
                string(&layer["digest"])?,
                layer["size"].as_u64().ok_or("a layer without a size")?,
            ))
        })
        .collect()
}

/// The SHA-256 of the bytes `curl` streams from the blob `digest` of `name`, hashed as
/// they come, so nothing is stored.
fn stream_sha256(server: &Serve, name: &Name, digest: &str) -> Result<Streamed> {
    let url = server.url(&format!("/v2/{}/blobs/{digest}", name.repository));
    let mut curl = Command::new("curl")
        .args(["-sSf", &url])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut body = curl.stdout.take().ok_or("no stdout from curl")?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    let mut bytes = 0;
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let status = curl.wait()?;
    let failure = (!status.success()).then(|| format!("broken off ({status})"));
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Streamed {
        digest: format!("sha256:{hex}"),
        bytes,
        failure,
    })
}
