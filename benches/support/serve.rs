//! The release CLI's `serve` for the benchmarks that measure it: on a port the system
//! picks, with a cache of its own, killed when dropped. Included on its own (`#[path]`),
//! only by the benchmarks that serve.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The same as `support::Result`.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub struct Serve {
    pub child: Child,
    pub host: String,
}

impl Serve {
    /// `image-maker serve` with its digest memo under `cache` and, when given, an images
    /// file; with the machine's thread count whatever the benchmark forces on its builds.
    pub fn start(cache: &Path, images: Option<&Path>) -> Result<Self> {
        let mut args = Vec::new();
        if let Some(images) = images {
            args.push("--images".into());
            args.push(images.display().to_string());
        }
        Self::start_with(cache, &args)
    }

    /// The same, with `args` after `serve`'s own.
    pub fn start_with(cache: &Path, args: &[String]) -> Result<Self> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_image-maker"));
        command
            .args(["serve", "-q", "--addr", "127.0.0.1:0"])
            .args(args);
        let mut child = command
            .env("IMAGE_MAKER_CACHE_DIR", cache)
            .env_remove("IMAGE_MAKER_THREADS")
            .stderr(Stdio::piped())
            .spawn()?;
        let mut first = String::new();
        BufReader::new(child.stderr.take().ok_or("no stderr")?).read_line(&mut first)?;
        let host = first
            .split("://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .ok_or_else(|| format!("no address in `{first}`"))?
            .to_owned();
        Ok(Self { child, host })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `docker pull -q IMAGE`, timed, with the image removed before and after.
pub fn docker_pull(image: &str) -> Result<Duration> {
    let _ = Command::new("docker").args(["rmi", "-f", image]).output();
    let started = Instant::now();
    let status = Command::new("docker")
        .args(["pull", "-q", image])
        .stdout(Stdio::null())
        .status()?;
    let took = started.elapsed();
    let _ = Command::new("docker").args(["rmi", "-f", image]).output();
    if !status.success() {
        return Err(format!("docker pull {image} failed").into());
    }
    Ok(took)
}

/// `IMAGE_MAKER_BENCH_GB`, the large layer's GiB, or `default`.
pub fn bench_gb(default: u64) -> Result<u64> {
    Ok(std::env::var("IMAGE_MAKER_BENCH_GB")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(default))
}

/// `docker pull` of `ours` and `theirs`, `rounds` times each, alternating which goes first
/// (the first of each round warms what there is to warm): the times of each.
pub fn alternating_pulls(
    rounds: usize,
    ours: &str,
    theirs: &str,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            a.push(docker_pull(ours)?);
            b.push(docker_pull(theirs)?);
        } else {
            b.push(docker_pull(theirs)?);
            a.push(docker_pull(ours)?);
        }
    }
    Ok((a, b))
}
