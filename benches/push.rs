//! Pushing a large layout to a local registry: `image-maker push` versus
//! `skopeo copy oci:… docker://…` of the same layout, in the same run, rounds alternating;
//! each to a fresh repository, so every blob is uploaded. Then our re-push (every blob
//! present). Reports medians and the ratio.
//!
//! `cargo bench --bench push` (or `cargo xtask bench push`); `IMAGE_MAKER_BENCH_SPEC` and
//! `IMAGE_MAKER_BENCH_ROUNDS` change the defaults (`1GB,512MB`, 3 rounds), and
//! `IMAGE_MAKER_BENCH_DIR` where the layout and the registry's storage go.

mod support;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{median, Result, Settings};

fn main() -> Result<()> {
    let Settings {
        list,
        spec,
        rounds,
        work,
    } = Settings::from_env("push", "1GB,512MB", 3)?;
    let layout = work.path().join("layout");
    let built = Command::new(env!("CARGO_BIN_EXE_image-maker"))
        .args(["-q", "-s", &list, "-o"])
        .arg(format!("oci:{}", layout.display()))
        .arg("bench/push:1")
        .status()?;
    if !built.success() {
        return Err(format!("building the layout failed: {built}").into());
    }
    // Every timed push goes to a fresh registry (new storage, new port): skopeo remembers
    // where it pushed a blob before (its blob-info cache) and would mount it instead.
    let fresh = || Registry::start(work.path());

    // One unrecorded round each warms the page cache.
    ours(&layout, &fresh()?.host, "warm/ours")?;
    skopeo(&layout, &fresh()?.host, "warm/skopeo")?;
    let (mut mine, mut theirs, mut again) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let registry = fresh()?;
        if round % 2 == 1 {
            mine.push(ours(&layout, &registry.host, "bench/ours")?);
            theirs.push(skopeo(&layout, &fresh()?.host, "bench/skopeo")?);
        } else {
            theirs.push(skopeo(&layout, &fresh()?.host, "bench/skopeo")?);
            mine.push(ours(&layout, &registry.host, "bench/ours")?);
        }
        again.push(ours(&layout, &registry.host, "bench/ours")?);
        println!(
            "round {round}: image-maker push {:.2} s, skopeo copy {:.2} s, re-push {:.3} s",
            mine[round - 1].as_secs_f64(),
            theirs[round - 1].as_secs_f64(),
            again[round - 1].as_secs_f64()
        );
    }
    let (mine, theirs, again) = (median(mine), median(theirs), median(again));
    let throughput = |d: Duration| spec.total_size() as f64 / d.as_secs_f64() / 1e9;
    println!();
    println!("| run | median | throughput |");
    println!("|---|---|---|");
    println!(
        "| image-maker push | {:.2} s | {:.2} GB/s |",
        mine.as_secs_f64(),
        throughput(mine)
    );
    println!(
        "| skopeo copy oci: docker:// | {:.2} s | {:.2} GB/s |",
        theirs.as_secs_f64(),
        throughput(theirs)
    );
    println!("| image-maker re-push | {:.3} s | |", again.as_secs_f64());
    println!();
    println!(
        "ratio image-maker/skopeo: {:.2} (target <= 1.00); re-push {:.3} s (target < 1 s)",
        mine.as_secs_f64() / theirs.as_secs_f64(),
        again.as_secs_f64()
    );
    Ok(())
}

fn ours(layout: &Path, host: &str, repo: &str) -> Result<Duration> {
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_image-maker"))
        .args(["push", "-q"])
        .arg(format!("oci:{}", layout.display()))
        .arg(format!("{host}/{repo}:1"))
        .env_remove("IMAGE_MAKER_USERNAME")
        .status()?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(format!("image-maker push failed: {status}").into());
    }
    Ok(elapsed)
}

fn skopeo(layout: &Path, host: &str, repo: &str) -> Result<Duration> {
    let start = Instant::now();
    let status = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{host}/{repo}:1"))
        .status()?;
    let elapsed = start.elapsed();
    if !status.success() {
        return Err(format!("skopeo copy failed: {status}").into());
    }
    Ok(elapsed)
}

/// Debian's `docker-registry` on a free loopback port, storing in a new directory under
/// `dir`, removed when dropped.
struct Registry {
    child: Child,
    host: String,
    storage: tempfile::TempDir,
}

impl Registry {
    fn start(dir: &Path) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let storage = tempfile::Builder::new()
            .prefix("registry")
            .tempdir_in(dir)?;
        let config = storage.path().join("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.path().join("data").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let registry = Self {
            child,
            host: format!("127.0.0.1:{port}"),
            storage,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("the registry did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Freed before the next timed run, as the build benchmark does after deletions.
        let _ = fs::remove_dir_all(self.storage.path());
        nix::unistd::sync();
    }
}
