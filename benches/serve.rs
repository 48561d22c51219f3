//! `image-maker serve` against references measured in the same run:
//! - the first manifest of `4x4GB` (one hashing pass over 16 GiB, layers on all cores)
//!   against `openssl sha256` of 16 GiB;
//! - `curl` of a 4 GiB blob to /dev/null against `openssl sha256` of 4 GiB (target ≤ 1.0×:
//!   serving is never slower than hashing);
//! - two concurrent 4 GiB streams: time and the server's peak RSS;
//! - `docker pull` of `1GB_512MB` from serve against Debian's docker-registry holding the
//!   same image (target ≤ 1.0×), rounds alternating which goes first, after the manifest
//!   was asked for once (the registry's image was hashed when it was pushed).
//!
//! `cargo bench --bench serve` (or `cargo xtask bench serve`); `IMAGE_MAKER_BENCH_GB` sets
//! the large layer's GiB (default 4), `IMAGE_MAKER_BENCH_SPEC` and
//! `IMAGE_MAKER_BENCH_ROUNDS` the docker pull's image and rounds (`1GB,512MB`, 3), and
//! `IMAGE_MAKER_BENCH_DIR` where the registry's storage goes. The docker part runs when
//! `docker info` and `docker-registry` answer.

#[path = "support/serve.rs"]
mod serve_support;
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serve_support::Serve;
use support::{Result, Settings};

const BIN: &str = env!("CARGO_BIN_EXE_image-maker");

fn main() -> Result<()> {
    let gb = serve_support::bench_gb(4)?;
    let settings = Settings::from_env("serve", "1GB,512MB", 3)?;
    let cache = settings.work.path().join("cache");
    let server = Serve::start(&cache, None)?;
    let size = gb << 30;

    // The digest pass: a fresh cache, so nothing is memoized.
    let started = Instant::now();
    let manifest = curl_text(&server.url(&format!("/v2/mock/manifests/4x{gb}GB")))?;
    let first = started.elapsed();
    let hashing = openssl_sha256(4 * size)?;
    report(
        &format!(
            "first manifest of 4x{gb}GB (digest pass, {} cores)",
            cores()
        ),
        first,
        &format!("openssl sha256 of {} GiB", 4 * gb),
        hashing,
    );

    let manifest: serde_json::Value = serde_json::from_str(&manifest)?;
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .ok_or("no layer in the manifest")?
        .to_owned();
    let url = server.url(&format!("/v2/mock/blobs/{layer}"));
    let started = Instant::now();
    curl_null(&url)?.wait()?;
    let one = started.elapsed();
    let hashing = openssl_sha256(size)?;
    report(
        &format!("GET of a {gb} GiB blob (curl to /dev/null)"),
        one,
        &format!("openssl sha256 of {gb} GiB"),
        hashing,
    );

    let started = Instant::now();
    let mut clients = [curl_null(&url)?, curl_null(&url)?];
    for client in &mut clients {
        client.wait()?;
    }
    let two = started.elapsed();
    println!(
        "two concurrent {gb} GiB streams: {:.2} s ({:.2} GB/s together), server peak RSS {} MiB",
        two.as_secs_f64(),
        (2 * size) as f64 / two.as_secs_f64() / 1e9,
        peak_rss_kib(&server)? / 1024
    );
    docker_pull(&server, &settings)?;
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn report(what: &str, ours: Duration, reference: &str, theirs: Duration) {
    println!(
        "{what}: {:.2} s; {reference}: {:.2} s; ratio {:.2}×",
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}

/// `head -c BYTES /dev/zero | openssl sha256`, timed.
fn openssl_sha256(bytes: u64) -> Result<Duration> {
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {bytes} /dev/zero | openssl sha256 >/dev/null"
        ))
        .status()?;
    if !status.success() {
        return Err("openssl sha256 failed".into());
    }
    Ok(started.elapsed())
}

fn curl_null(url: &str) -> Result<Child> {
    Ok(Command::new("curl")
        .args(["-sSf", "-o", "/dev/null", url])
        .spawn()?)
}

fn curl_text(url: &str) -> Result<String> {
    let out = Command::new("curl").args(["-sSf", url]).output()?;
    if !out.status.success() {
        return Err(format!("curl {url}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The most memory the server has held.
fn peak_rss_kib(server: &Serve) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmHWM".into())
}

/// `docker pull` of the spec from serve and from a docker-registry holding the same image.
fn docker_pull(server: &Serve, settings: &Settings) -> Result<()> {
    let work = settings.work.path();
    let docker_up = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !docker_up
        || Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_err()
    {
        println!("docker pull: skipped (docker or docker-registry is not here)");
        return Ok(());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = work.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            work.join("registry").display()
        ),
    )?;
    let mut registry = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(1));
    let tag = image_maker::testing::tag_of(&settings.list)?;
    let stored = format!("127.0.0.1:{port}/mock:{tag}");
    let pushed = Command::new(BIN)
        .args(["-q", "-s", &settings.list, "-o", "registry", &stored])
        .env("IMAGE_MAKER_CACHE_DIR", work.join("cache"))
        .status()?;
    if !pushed.success() {
        let _ = registry.kill();
        return Err("pushing to docker-registry failed".into());
    }
    let served = format!("{}/mock:{tag}", server.host);
    // The registry's copy was hashed when it was pushed; serve's digest pass (measured
    // above) is done here, so neither side's rounds include hashing.
    curl_text(&server.url(&format!("/v2/mock/manifests/{tag}")))?;
    // The push left gigabytes to write back: not during the first round.
    Command::new("sync").status()?;
    let (ours, theirs) = serve_support::alternating_pulls(settings.rounds, &served, &stored)?;
    let _ = registry.kill();
    let _ = registry.wait();
    let seconds = |all: &[Duration]| {
        all.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    // Load from elsewhere drifts over a run; a round's two pulls share it.
    let mut ratios: Vec<f64> = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "docker pull rounds, serve: {}; docker-registry: {}; median of the rounds' ratios {:.2}×",
        seconds(&ours),
        seconds(&theirs),
        ratios[ratios.len() / 2]
    );
    report(
        &format!(
            "docker pull of {tag} ({}) from serve (median of {})",
            image_maker::testing::human_size(settings.spec.total_size()),
            settings.rounds
        ),
        support::median(ours),
        "from docker-registry",
        support::median(theirs),
    );
    Ok(())
}
