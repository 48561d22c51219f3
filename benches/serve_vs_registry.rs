//! `image-maker serve` against Debian's `docker-registry` holding the same blobs, for each
//! kind of layer: plain, gzip and zstd at ratio 1 and 3. Per kind, five alternating
//! rounds, medians:
//! - `curl` of the layer blob from serve with nothing cached (generated: zero disk);
//! - the same from a serve whose cache holds the image (its files sent);
//! - the same from a zero-disk serve that keeps compressed blobs in memory
//!   (`--blob-memory 2GB`), after one GET made and kept it;
//! - the same from docker-registry (its filesystem store, page cache warm);
//! - a Range of the blob's last MiB from the zero-disk serve, against its full GET;
//! - `docker pull` of a 2-layer image of the kind from the zero-disk serve and from
//!   docker-registry.
//!
//! Every figure is also given as a ratio to docker-registry in the same run. Targets:
//! zero-disk ≤ 1.0× for plain and zstd, ≤ 1.5× for gzip ratio 3; from the cache ≤ 1.0×
//! for every kind; the last MiB ≤ 0.05× the full GET.
//!
//! `cargo xtask bench serve-vs-registry` (or `cargo bench --bench serve_vs_registry`);
//! `IMAGE_MAKER_BENCH_GB` sets the layer's GiB (1), `IMAGE_MAKER_BENCH_ROUNDS` the rounds
//! (5), `IMAGE_MAKER_BENCH_KINDS` a comma-separated subset of the kinds' names,
//! `IMAGE_MAKER_BENCH_PULL=0` leaves the docker pulls out.

#[path = "support/registry.rs"]
mod registry_support;
#[path = "support/serve.rs"]
mod serve_support;
// This benchmark takes only the work directory and round count of its settings.
#[allow(dead_code)]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use registry_support::Registry;
use serve_support::Serve;
use support::{median, Result, Settings};

const BIN: &str = env!("CARGO_BIN_EXE_image-maker");

/// The kinds: a name, and the layer's options.
const KINDS: [(&str, &str); 5] = [
    ("plain", ""),
    ("gzip-1", ":compression=gzip"),
    ("gzip-3", ":ratio=3:compression=gzip"),
    ("zstd-1", ":compression=zstd"),
    ("zstd-3", ":ratio=3:compression=zstd"),
];

fn main() -> Result<()> {
    let gb = serve_support::bench_gb(1)?;
    let settings = Settings::from_env("serve-vs-registry", "1KB", 5)?;
    let only = std::env::var("IMAGE_MAKER_BENCH_KINDS").ok();
    let pull = std::env::var("IMAGE_MAKER_BENCH_PULL").map_or(true, |v| v != "0") && docker_up();
    let work = settings.work.path();
    let registry = Registry::start(work)?;
    let zero_disk = Serve::start(&work.join("memo-only"), None)?;
    let in_memory = Serve::start_with(
        &work.join("memo-only-2"),
        &["--blob-memory".into(), "2GB".into()],
    )?;
    let cached_dir = work.join("cache");
    let mut table = Vec::new();
    for (name, options) in KINDS {
        if only
            .as_deref()
            .is_some_and(|only| !only.split(',').any(|k| k == name))
        {
            continue;
        }
        let list = format!("{gb}GB{options}");
        let tag = image_maker::testing::tag_of(&list)?;
        // Built into the cache and pushed in one run: the registry holds the same blobs.
        push(
            &list,
            &format!("{}/bench/{name}:1", registry.host),
            &cached_dir,
        )?;
        let from_cache = Serve::start(&cached_dir, None)?;
        let manifest: serde_json::Value = serde_json::from_str(&curl_text(
            &zero_disk.url(&format!("/v2/mock/manifests/{tag}")),
        )?)?;
        let layer = &manifest["layers"][0];
        let digest = layer["digest"].as_str().ok_or("no layer")?.to_owned();
        let size = layer["size"].as_u64().ok_or("no size")?;
        // serve's digest pass is done (above); the cached serve learns its digests from its
        // memo-less pass once too, so no round includes hashing.
        curl_text(&from_cache.url(&format!("/v2/mock/manifests/{tag}")))?;
        curl_text(&in_memory.url(&format!("/v2/mock/manifests/{tag}")))?;
        let urls = [
            zero_disk.url(&format!("/v2/mock/blobs/{digest}")),
            from_cache.url(&format!("/v2/mock/blobs/{digest}")),
            format!("http://{}/v2/bench/{name}/blobs/{digest}", registry.host),
            in_memory.url(&format!("/v2/mock/blobs/{digest}")),
        ];
        // The GET that makes the blob and keeps it (a plain tar is never kept).
        curl_time(&urls[3], None)?;
        let tail = format!("{}-{}", size.saturating_sub(1 << 20), size - 1);
        let mut times: [Vec<Duration>; 5] = Default::default();
        for round in 0..settings.rounds {
            // Alternating which goes first: neither always meets a cold page cache.
            let mut order = [0, 1, 2, 3];
            order.rotate_left(round % 4);
            for i in order {
                times[i].push(curl_time(&urls[i], None)?);
            }
            times[4].push(curl_time(&urls[0], Some(&tail))?);
        }
        let [generated, cached, registry_time, memory, last] = times.map(median);
        let ratio = |d: Duration| d.as_secs_f64() / registry_time.as_secs_f64();
        println!(
            "{name} ({list}, {:.0} MiB blob): zero-disk {:.2} s ({:.2}×), kept in memory {:.2} s ({:.2}×), from the cache {:.2} s ({:.2}×), docker-registry {:.2} s; last MiB {:.3} s ({:.3}× the full GET)",
            size as f64 / (1 << 20) as f64,
            generated.as_secs_f64(),
            ratio(generated),
            memory.as_secs_f64(),
            ratio(memory),
            cached.as_secs_f64(),
            ratio(cached),
            registry_time.as_secs_f64(),
            last.as_secs_f64(),
            last.as_secs_f64() / generated.as_secs_f64(),
        );
        // Docker before 23 cannot read zstd layers at all.
        let pulled = if pull && (!name.starts_with("zstd") || docker_reads_zstd()) {
            Some(docker_pulls(
                &zero_disk,
                &registry,
                name,
                &list,
                gb,
                &cached_dir,
                settings.rounds,
            )?)
        } else {
            None
        };
        table.push((
            name,
            [ratio(generated), ratio(memory), ratio(cached)],
            last.as_secs_f64() / generated.as_secs_f64(),
            pulled,
        ));
    }
    println!("\n| kind | zero-disk ÷ registry | kept in memory ÷ registry | cache ÷ registry | last MiB ÷ full GET | docker pull ÷ registry |");
    println!("|---|---|---|---|---|---|");
    for (name, [generated, memory, cached], last, pulled) in table {
        let pulled = pulled.map_or("—".to_owned(), |r| format!("{r:.2}"));
        println!("| {name} | {generated:.2} | {memory:.2} | {cached:.2} | {last:.3} | {pulled} |");
    }
    Ok(())
}

/// Whether the engine is docker 23 or later, the first to read zstd layers.
fn docker_reads_zstd() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8(out.stdout).ok()?;
            text.trim().split('.').next()?.parse::<u32>().ok()
        })
        .is_some_and(|major| major >= 23)
}

fn docker_up() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `image-maker -s LIST -o registry REFERENCE`, its image built into `cache` on the way.
fn push(list: &str, reference: &str, cache: &std::path::Path) -> Result<()> {
    let pushed = Command::new(BIN)
        .args(["-q", "-s", list, "-o", "registry", reference])
        .env("IMAGE_MAKER_CACHE_DIR", cache)
        .status()?;
    if !pushed.success() {
        return Err(format!("pushing {list} to {reference} failed").into());
    }
    // The build left its blobs to write back: not during the first round.
    Command::new("sync").status()?;
    Ok(())
}

/// A GET of `url` (bytes `range` of it) to /dev/null, timed.
fn curl_time(url: &str, range: Option<&str>) -> Result<Duration> {
    let mut command = Command::new("curl");
    command.args(["-sSf", "-o", "/dev/null"]);
    if let Some(range) = range {
        command.args(["-r", range]);
    }
    let started = Instant::now();
    let status = command.arg(url).status()?;
    if !status.success() {
        return Err(format!("curl {url} failed").into());
    }
    Ok(started.elapsed())
}

fn curl_text(url: &str) -> Result<String> {
    let out = Command::new("curl")
        .args([
            "-sSf",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            url,
        ])
        .output()?;
    if !out.status.success() {
        return Err(format!("curl {url}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `docker pull` of a 2-layer image of the kind (the layer, and a quarter of it) from the
/// zero-disk serve and from docker-registry, alternating; serve's median ÷ the registry's.
fn docker_pulls(
    server: &Serve,
    registry: &Registry,
    name: &str,
    list: &str,
    gb: u64,
    cache: &std::path::Path,
    rounds: usize,
) -> Result<f64> {
    let options = list.split_once(':').map_or("", |(_, o)| o);
    let two = if options.is_empty() {
        format!("{list},{}MB", gb * 256)
    } else {
        format!("{list},{}MB:{options}", gb * 256)
    };
    let tag = image_maker::testing::tag_of(&two)?;
    let stored = format!("{}/bench/{name}-pull:1", registry.host);
    push(&two, &stored, cache)?;
    let served = format!("{}/mock:{tag}", server.host);
    // serve's digest pass, outside the rounds (the registry hashed at its push).
    curl_text(&server.url(&format!("/v2/mock/manifests/{tag}")))?;
    let (ours, theirs) = serve_support::alternating_pulls(rounds, &served, &stored)?;
    let (ours, theirs) = (median(ours), median(theirs));
    println!(
        "{name}: docker pull of {two}: serve {:.2} s, docker-registry {:.2} s ({:.2}×)",
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    Ok(ours.as_secs_f64() / theirs.as_secs_f64())
}
