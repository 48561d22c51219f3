//! `cargo xtask bench serve-attack`: well-behaved clients pulling from `image-maker serve`,
//! alone and then while an attack set runs (not in CI: it takes minutes and both cores).
//!
//! The server runs on loopback with a fresh cache; the well-behaved clients pull a mix of
//! plain, gzip, zstd and `tree=` images, Range GETs, and `docker pull` when a docker daemon
//! answers, for `--duration` seconds a phase. The attack parts (each on threads of its own,
//! each switched off by a count of 0) start `--ramp` seconds before the second phase and
//! stop with it. The report: the clients' throughput under attack over alone, their
//! manifest latency, the server's peak RSS, threads and CPU (sampled from /proc), and how
//! long its CPU takes to fall under 5% of a core once the attack has stopped.

mod attack;
mod http;
mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use xshell::{cmd, Shell};

use attack::{Part, Target};
use http::{Client, Ctx, Fail};
use server::{Sample, Server, TICKS};

/// One request of a pull: path, `START-END` range, and whether to keep the body.
type Fetch<'a> = dyn FnMut(&str, Option<&str>, bool) -> Result<http::Response, Fail> + 'a;

/// What a registry client sends for a manifest.
pub(crate) const ACCEPT: (&str, &str) = (
    "Accept",
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json",
);

/// Throughput under attack over alone that the issue asks for, and the seconds to idle.
const TARGET_RATIO: f64 = 0.8;
const TARGET_IDLE: f64 = 5.0;
/// "Idle": under this share of one core, over a second.
const IDLE_CORES: f64 = 0.05;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask bench serve-attack",
    about = "Well-behaved pulls from `image-maker serve`, alone and under an attack set"
)]
struct Opts {
    /// The image-maker binary to serve with (default: build the workspace's release binary)
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// Seconds each phase of well-behaved load lasts
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Well-behaved clients
    #[arg(long, default_value_t = 24)]
    clients: usize,
    /// Well-behaved client: `std` (keep-alive HTTP on a TcpStream) or `curl` (a process
    /// per request)
    #[arg(long, default_value = "std", value_parser = ["std", "curl"])]
    client: String,
    /// Layer size of the pulled images
    #[arg(long, default_value = "16MB")]
    size: String,
    /// Seconds a well-behaved request may take before it counts as timed out
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Seconds the attack runs before the second phase starts measuring
    #[arg(long, default_value_t = 5)]
    ramp: u64,
    /// Seconds to wait at most for the server's CPU to return to idle
    #[arg(long, default_value_t = 30)]
    idle_wait: u64,
    /// No `docker pull` among the clients
    #[arg(long)]
    no_docker: bool,
    /// Slowloris sockets: half a request, a header byte every `--trickle` seconds
    #[arg(long, default_value_t = 2000)]
    slowloris: usize,
    #[arg(long, default_value_t = 5)]
    trickle: u64,
    /// Readers that send a blob GET and stop reading
    #[arg(long, default_value_t = 600)]
    stalled: usize,
    /// Distinct large tags (`1000x1GB`, `1001x1GB`, …), each a digest pass over a TB
    #[arg(long, default_value_t = 100)]
    large_tags: usize,
    /// Distinct petabyte tags (`1000x1TB`, `1001x1TB`, …)
    #[arg(long, default_value_t = 4)]
    petabyte_tags: usize,
    /// Seconds after which a petabyte tag's client gives up and asks again
    #[arg(long, default_value_t = 2)]
    petabyte_hang_up: u64,
    /// Blob streams under `faults/slow-RATE/`
    #[arg(long, default_value_t = 100)]
    slow_streams: usize,
    /// The rate of those streams (the smallest a byte size can say)
    #[arg(long, default_value = "1b")]
    slow_rate: String,
    /// Distinct `tree=` bombs (`1MB.tree-1000000`, `1MB.tree-999999`, …): the manifest and a
    /// 1-byte Range GET, again and again
    #[arg(long, default_value_t = 4)]
    tree_bombs: usize,
    /// The server's soft file limit (default: this process's soft limit before it raised
    /// its own, what a service would start with)
    #[arg(long)]
    server_nofile: Option<u64>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: &[String], sh: &Shell) -> Result<()> {
    let opts = Opts::try_parse_from(
        std::iter::once("cargo xtask bench serve-attack".to_owned()).chain(args.iter().cloned()),
    )
    .unwrap_or_else(|e| e.exit());
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))?;
    }
    let (soft, limit) = raise_nofile()?;
    let needed = opts.slowloris
        + opts.stalled
        + opts.large_tags
        + opts.petabyte_tags
        + opts.slow_streams
        + opts.tree_bombs
        + 2 * opts.clients
        + 64;
    if (limit as usize) < needed {
        eprintln!(
            "warning: the file limit is {limit}, the attack wants about {needed} sockets: some connects will fail here, not at the server"
        );
    }
    let (bin, given) = match &opts.bin {
        Some(bin) => (bin.clone(), true),
        None => {
            cmd!(sh, "cargo build --release --bin image-maker").run()?;
            (sh.current_dir().join("target/release/image-maker"), false)
        }
    };
    if !bin.is_file() {
        bail!("--bin {}: no such file", bin.display());
    }
    let work = tempfile::Builder::new()
        .prefix("image-maker-serve-attack")
        .tempdir()?;
    let nofile = opts.server_nofile.unwrap_or(soft);
    let log = work.path().join("serve.log");
    let mut server = Server::start(&bin, &work.path().join("cache"), &log, nofile)?;
    eprintln!("{}", server.start_line);
    let samples: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
    let sampling = AtomicBool::new(true);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while sampling.load(Ordering::Relaxed) {
                match server::sample(server.pid) {
                    Some(sample) => lock(&samples).push(sample),
                    None => break,
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // However the bench ends, the sampler stops with it.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&sampling);
        Bench {
            opts: &opts,
            addr: server.addr,
            pid: server.pid,
            samples: &samples,
            interrupted: &interrupted,
        }
        .run()
    });
    server.kill();
    let tail: String = {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    };
    let measured = result.with_context(|| format!("the server's log ends:\n{tail}"))?;
    let info = Info {
        bin: bin.display().to_string(),
        given,
        start_line: server.start_line.clone(),
        nofile,
        limit,
        log_tail: tail,
    };
    if opts.json {
        println!("{:#}", measured.json(&opts, &info));
    } else {
        measured.print(&opts, &info);
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's soft file limit before and after raising it to the hard one.
fn raise_nofile() -> Result<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("raising RLIMIT_NOFILE")?;
    Ok((soft, hard))
}

struct Info {
    bin: String,
    given: bool,
    start_line: String,
    nofile: u64,
    limit: u64,
    log_tail: String,
}

/// The layers (digest, size) of a manifest's JSON.
pub(crate) fn layers(manifest: &[u8]) -> Vec<(String, u64)> {
    let Ok(v) = serde_json::from_slice::<Value>(manifest) else {
        return Vec::new();
    };
    v["layers"]
        .as_array()
        .map(|layers| {
            layers
                .iter()
                .filter_map(|l| Some((l["digest"].as_str()?.to_owned(), l["size"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn config(manifest: &[u8]) -> Option<(String, u64)> {
    let v: Value = serde_json::from_slice(manifest).ok()?;
    Some((
        v["config"]["digest"].as_str()?.to_owned(),
        v["config"]["size"].as_u64()?,
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Plain,
    Gzip,
    Zstd,
    Tree,
    Range,
    Docker,
}

impl Kind {
    const MIX: [Kind; 5] = [Kind::Plain, Kind::Gzip, Kind::Zstd, Kind::Tree, Kind::Range];

    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Gzip => "gzip",
            Kind::Zstd => "zstd",
            Kind::Tree => "tree",
            Kind::Range => "range",
            Kind::Docker => "docker",
        }
    }

    /// The tag of the image this kind pulls.
    fn tag(self, size: &str) -> String {
        match self {
            Kind::Plain | Kind::Range | Kind::Docker => size.to_owned(),
            Kind::Gzip => format!("{size}.compression-gzip"),
            Kind::Zstd => format!("{size}.compression-zstd"),
            Kind::Tree => format!("{size}.tree-1000"),
        }
    }
}

/// What the well-behaved clients did in one phase.
#[derive(Default)]
struct Load {
    bytes: AtomicU64,
    pulls: Mutex<BTreeMap<Kind, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Every manifest request's time; a timed-out one counts as the time waited.
    latencies: Mutex<Vec<Duration>>,
    timed_out: AtomicU64,
}

impl Load {
    fn error(&self, kind: Kind, what: &str) {
        *lock(&self.errors)
            .entry(format!("{}: {what}", kind.name()))
            .or_default() += 1;
    }
}

struct Phase {
    seconds: f64,
    bytes: u64,
    pulls: BTreeMap<Kind, u64>,
    errors: BTreeMap<String, u64>,
    manifests: usize,
    timed_out: u64,
    p50: Option<Duration>,
    p99: Option<Duration>,
    server: Usage,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.bytes as f64 / self.seconds.max(1e-9)
    }

    fn pulls(&self) -> u64 {
        self.pulls.values().sum()
    }

    fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The server in a stretch of time, from the samples.
#[derive(Default, Clone, Copy)]
struct Usage {
    cpu_mean: f64,
    cpu_peak: f64,
    rss_peak_kib: u64,
    hwm_kib: u64,
    threads_peak: u64,
    /// The server was gone before the stretch ended.
    exited: bool,
}

fn usage(samples: &[Sample], from: Instant, to: Instant) -> Usage {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .collect();
    let (Some(first), Some(last)) = (inside.first(), inside.last()) else {
        return Usage {
            exited: true,
            ..Usage::default()
        };
    };
    let cores = |a: &Sample, b: &Sample| {
        (b.ticks - a.ticks) as f64 / TICKS / (b.at - a.at).as_secs_f64().max(1e-9)
    };
    let mut peak: f64 = 0.0;
    for (i, a) in inside.iter().enumerate() {
        if let Some(b) = inside[i..]
            .iter()
            .find(|b| b.at - a.at >= Duration::from_secs(1))
        {
            peak = peak.max(cores(a, b));
        }
    }
    Usage {
        cpu_mean: if last.at > first.at {
            cores(first, last)
        } else {
            0.0
        },
        cpu_peak: peak,
        rss_peak_kib: inside.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        hwm_kib: last.hwm_kib,
        threads_peak: inside.iter().map(|s| s.threads).max().unwrap_or(0),
        exited: to.saturating_duration_since(last.at) > Duration::from_secs(1),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

struct Bench<'a> {
    opts: &'a Opts,
    addr: std::net::SocketAddr,
    pid: i32,
    samples: &'a Mutex<Vec<Sample>>,
    interrupted: &'a AtomicBool,
}

struct Measured {
    docker: Result<(), String>,
    warm_seconds: f64,
    alone: Phase,
    idle_after_alone: Option<f64>,
    attacked: Phase,
    idle_after_attack: Option<f64>,
    attack_usage: Usage,
    parts: Vec<Part>,
}

impl Bench<'_> {
    fn run(&self) -> Result<Measured> {
        let docker = if self.opts.no_docker {
            Err("--no-docker".to_owned())
        } else {
            docker_answers()
        };
        if let Err(why) = &docker {
            eprintln!("docker pull: skipped ({why})");
        }
        // The digest passes of the mix, before anything is measured.
        eprintln!("warming: the mix's manifests (their digest passes)");
        let warmed = Instant::now();
        let mut images: BTreeMap<Kind, Vec<u8>> = BTreeMap::new();
        let mut client = Client::new(self.addr);
        for kind in Kind::MIX {
            let ctx = Ctx {
                deadline: Instant::now() + Duration::from_secs(1800),
                stop: self.interrupted,
                counter: None,
            };
            let path = format!("/v2/mock/manifests/{}", kind.tag(&self.opts.size));
            let got = client
                .get(&path, &[ACCEPT], 1 << 20, &ctx)
                .map_err(|e| anyhow::anyhow!("warming {path}: {e}"))?;
            if got.status != 200 {
                bail!(
                    "warming {path}: {}: {}",
                    got.status,
                    String::from_utf8_lossy(&got.body)
                );
            }
            images.insert(kind, got.body);
        }
        let warm_seconds = warmed.elapsed().as_secs_f64();
        let plain = layers(&images[&Kind::Plain]);
        let Some((blob, _)) = plain.first().cloned() else {
            bail!("the plain image has no layer");
        };
        let docker_on = docker.is_ok();

        eprintln!(
            "phase 1: {} clients alone for {} s",
            self.opts.clients, self.opts.duration
        );
        let alone = self.load(docker_on)?;
        let idle_after_alone = self.idle_after(Instant::now())?;

        let stop = AtomicBool::new(false);
        let target = Target {
            addr: self.addr,
            stop: &stop,
        };
        let o = self.opts;
        let tags: Vec<String> = (0..o.tree_bombs)
            .map(|i| format!("1MB.tree-{}", 1_000_000 - i))
            .collect();
        let started = Instant::now();
        eprintln!(
            "phase 2: the attack, {} s of ramp, then {} clients for {} s",
            o.ramp, o.clients, o.duration
        );
        let (attacked, parts) = std::thread::scope(|s| -> Result<(Phase, Vec<Part>)> {
            let mut handles = Vec::new();
            if o.slowloris > 0 {
                handles.push(s.spawn(move || {
                    attack::slowloris(target, o.slowloris, Duration::from_secs(o.trickle))
                }));
            }
            if o.stalled > 0 {
                let blob = blob.clone();
                handles.push(s.spawn(move || attack::stalled_readers(target, o.stalled, &blob)));
            }
            if o.large_tags > 0 {
                let paths: Vec<String> = (0..o.large_tags)
                    .map(|i| format!("/v2/mock/manifests/{}x1GB", 1000 + i))
                    .collect();
                handles.push(s.spawn(move || attack::flood(target, "large tags", &paths, None)));
            }
            if o.petabyte_tags > 0 {
                let paths: Vec<String> = (0..o.petabyte_tags)
                    .map(|i| format!("/v2/mock/manifests/{}x1TB", 1000 + i))
                    .collect();
                let hang_up = Some(Duration::from_secs(o.petabyte_hang_up));
                handles
                    .push(s.spawn(move || attack::flood(target, "petabyte tags", &paths, hang_up)));
            }
            if o.slow_streams > 0 {
                let blob = blob.clone();
                let rate = o.slow_rate.clone();
                handles.push(
                    s.spawn(move || attack::slow_streams(target, o.slow_streams, &rate, &blob)),
                );
            }
            let bombs: Vec<_> = tags
                .iter()
                .map(|tag| s.spawn(move || attack::tree_bomb(target, tag)))
                .collect();
            // The attack stops however this ends.
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let stopper = Stop(&stop);
            self.sleep(Duration::from_secs(o.ramp))?;
            let phase = self.load(docker_on)?;
            drop(stopper);
            let mut parts: Vec<Part> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect();
            if !tags.is_empty() {
                let bombed = bombs
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect();
                parts.push(attack::tree_bombs_part(&tags, bombed));
            }
            Ok((phase, parts))
        })?;
        // Every attack socket is closed now.
        let stopped = Instant::now();
        let attack_usage = usage(&lock(self.samples), started, stopped);
        eprintln!("the attack stopped: waiting for the server's CPU to settle");
        let idle_after_attack = self.idle_after(stopped)?;
        Ok(Measured {
            docker,
            warm_seconds,
            alone,
            idle_after_alone,
            attacked,
            idle_after_attack,
            attack_usage,
            parts,
        })
    }

    /// Sleeps, unless interrupted.
    fn sleep(&self, time: Duration) -> Result<()> {
        let until = Instant::now() + time;
        while Instant::now() < until {
            if self.interrupted.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Seconds from `since` until the server's CPU stays under `IDLE_CORES` for a second;
    /// None if it did not within `--idle-wait`.
    fn idle_after(&self, since: Instant) -> Result<Option<f64>> {
        let until = since + Duration::from_secs(self.opts.idle_wait);
        loop {
            {
                let samples = lock(self.samples);
                let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= since).collect();
                for (i, a) in after.iter().enumerate() {
                    let Some(b) = after[i..]
                        .iter()
                        .find(|b| b.at - a.at >= Duration::from_secs(1))
                    else {
                        break;
                    };
                    let cores = (b.ticks - a.ticks) as f64 / TICKS / (b.at - a.at).as_secs_f64();
                    if cores < IDLE_CORES {
                        return Ok(Some((a.at - since).as_secs_f64()));
                    }
                }
            }
            if Instant::now() >= until || !alive(self.pid) {
                return Ok(None);
            }
            self.sleep(Duration::from_millis(200))?;
        }
    }

    /// One phase of well-behaved load.
    fn load(&self, docker: bool) -> Result<Phase> {
        let load = Load::default();
        let over = AtomicBool::new(false);
        let started = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            for i in 0..self.opts.clients {
                let (load, over) = (&load, &over);
                s.spawn(move || self.client(i, docker && i == 0, load, over));
            }
            let ended = self.sleep(Duration::from_secs(self.opts.duration));
            over.store(true, Ordering::Relaxed);
            ended
        })?;
        let ended = Instant::now();
        let Load {
            bytes,
            pulls,
            errors,
            latencies,
            timed_out,
        } = load;
        let mut latencies = latencies.into_inner().unwrap_or_else(|e| e.into_inner());
        latencies.sort();
        let samples = lock(self.samples);
        Ok(Phase {
            seconds: (ended - started).as_secs_f64(),
            bytes: bytes.into_inner(),
            pulls: pulls.into_inner().unwrap_or_else(|e| e.into_inner()),
            errors: errors.into_inner().unwrap_or_else(|e| e.into_inner()),
            manifests: latencies.len(),
            timed_out: timed_out.into_inner(),
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
            server: usage(&samples, started, ended),
        })
    }

    /// One well-behaved client: pulls one kind after another until `over`.
    fn client(&self, index: usize, docker: bool, load: &Load, over: &AtomicBool) {
        let mut client = Client::new(self.addr);
        let mut random = Random::new(index as u64);
        let mut round = index;
        while !over.load(Ordering::Relaxed) {
            let kind = if docker {
                Kind::Docker
            } else {
                Kind::MIX[round % Kind::MIX.len()]
            };
            round += 1;
            let done = match (kind, self.opts.client.as_str()) {
                (Kind::Docker, _) => self.docker_pull(load, over),
                (_, "curl") => self.pull(kind, load, &mut random, &mut |path, range, keep| {
                    self.curl(path, range, keep, load, over)
                }),
                _ => self.pull(kind, load, &mut random, &mut |path, range, keep| {
                    let range = range.map(|r| format!("bytes={r}"));
                    let headers: Vec<(&str, &str)> = match &range {
                        Some(range) => vec![("Range", range.as_str())],
                        None => vec![ACCEPT],
                    };
                    let limit = if keep { 1 << 20 } else { 0 };
                    client.get(path, &headers, limit, &self.ctx(load, over))
                }),
            };
            match done {
                Ok(()) => *lock(&load.pulls).entry(kind).or_default() += 1,
                Err(Fail::Stopped) => {}
                Err(e) => {
                    load.error(kind, &e.to_string());
                    // A refused connection should not spin.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn ctx<'a>(&self, load: &'a Load, over: &'a AtomicBool) -> Ctx<'a> {
        Ctx {
            deadline: Instant::now() + Duration::from_secs(self.opts.timeout),
            stop: over,
            counter: Some(&load.bytes),
        }
    }

    fn manifest_timed(
        &self,
        load: &Load,
        result: Result<http::Response, Fail>,
        asked: Instant,
    ) -> Result<http::Response, Fail> {
        match &result {
            Ok(_) => lock(&load.latencies).push(asked.elapsed()),
            Err(Fail::Timeout) => {
                load.timed_out.fetch_add(1, Ordering::Relaxed);
                lock(&load.latencies).push(asked.elapsed());
            }
            Err(_) => {}
        }
        result
    }

    /// One pull of `kind`: its manifest, then its config and layers (four 1 MiB ranges of
    /// its layer for `Kind::Range`). `fetch(path, range, keep)` makes one request, `range`
    /// as `START-END`, keeping the body when `keep`.
    fn pull(
        &self,
        kind: Kind,
        load: &Load,
        random: &mut Random,
        fetch: &mut Fetch<'_>,
    ) -> Result<(), Fail> {
        let path = format!("/v2/mock/manifests/{}", kind.tag(&self.opts.size));
        let asked = Instant::now();
        let got = fetch(&path, None, true);
        let manifest = self.manifest_timed(load, got, asked)?;
        expect(&manifest, 200)?;
        let layers = layers(&manifest.body);
        let blobs: Vec<(String, Option<String>, u64)> = if kind == Kind::Range {
            let (digest, size) = layers.first().ok_or_else(|| Fail::Bad("no layer".into()))?;
            (0..4)
                .map(|_| {
                    let length = (1u64 << 20).min(*size);
                    let start = random.below(size - length + 1);
                    let range = format!("{start}-{}", start + length - 1);
                    (digest.clone(), Some(range), length)
                })
                .collect()
        } else {
            config(&manifest.body)
                .into_iter()
                .chain(layers)
                .map(|(d, s)| (d, None, s))
                .collect()
        };
        for (digest, range, size) in blobs {
            let got = fetch(&format!("/v2/mock/blobs/{digest}"), range.as_deref(), false)?;
            expect(&got, if range.is_some() { 206 } else { 200 })?;
            if got.bytes != size {
                return Err(Fail::Bad(format!("{} bytes of {size}", got.bytes)));
            }
        }
        Ok(())
    }

    fn curl(
        &self,
        path: &str,
        range: Option<&str>,
        keep: bool,
        load: &Load,
        over: &AtomicBool,
    ) -> Result<http::Response, Fail> {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--max-time"])
            .arg(self.opts.timeout.to_string())
            .args(["-H", &format!("{}: {}", ACCEPT.0, ACCEPT.1)])
            .args(["-w", "%{stderr}\n%{http_code} %{size_download}\n"])
            .args(["-o", if keep { "-" } else { "/dev/null" }]);
        if let Some(range) = range {
            command.args(["-r", range]);
        }
        let child = command
            .arg(format!("http://{}{path}", self.addr))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Fail::Io)?;
        let out = wait_or_kill(child, over)?;
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or_default();
        let mut fields = last.split(' ');
        let status: u16 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let bytes: u64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        load.bytes.fetch_add(bytes, Ordering::Relaxed);
        match out.status.code() {
            Some(0) => {}
            Some(28) => return Err(Fail::Timeout),
            _ => {
                return Err(Fail::Bad(
                    err.lines().next().unwrap_or("curl failed").into(),
                ))
            }
        }
        Ok(http::Response {
            status,
            body: out.stdout,
            bytes,
        })
    }

    /// `docker pull` of the plain image, then `docker rmi`; its bytes count once it is done.
    fn docker_pull(&self, load: &Load, over: &AtomicBool) -> Result<(), Fail> {
        let image = format!("{}/mock:{}", self.addr, Kind::Plain.tag(&self.opts.size));
        let child = Command::new("docker")
            .args(["pull", "-q", &image])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Fail::Io)?;
        let out = wait_or_kill(child, over);
        let _ = Command::new("docker")
            .args(["rmi", "-f", &image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let out = out?;
        if !out.status.success() {
            return Err(Fail::Bad(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        let mut client = Client::new(self.addr);
        let manifest = client.get(
            &format!("/v2/mock/manifests/{}", Kind::Plain.tag(&self.opts.size)),
            &[ACCEPT],
            1 << 20,
            &Ctx {
                deadline: Instant::now() + Duration::from_secs(self.opts.timeout),
                stop: over,
                counter: None,
            },
        )?;
        let bytes: u64 = layers(&manifest.body).iter().map(|(_, s)| s).sum();
        load.bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }
}

fn expect(response: &http::Response, status: u16) -> Result<(), Fail> {
    if response.status == status {
        Ok(())
    } else {
        Err(Fail::Bad(format!("status {}", response.status)))
    }
}

/// Waits for a child, killing it if `over` is raised first.
fn wait_or_kill(
    mut child: std::process::Child,
    over: &AtomicBool,
) -> Result<std::process::Output, Fail> {
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(Fail::Io),
            Ok(None) if over.load(Ordering::Relaxed) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Fail::Stopped);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(Fail::Io(e)),
        }
    }
}

fn docker_answers() -> Result<(), String> {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("no docker: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err
            .lines()
            .last()
            .unwrap_or("docker failed")
            .trim()
            .to_owned())
    }
}

fn alive(pid: i32) -> bool {
    server::sample(pid).is_some()
}

/// xorshift64*: random offsets without a dependency.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Self {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self((seed + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ time | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
}

fn idle_text(idle: Option<f64>, wait: u64) -> String {
    idle.map_or(format!("not within {wait} s"), |s| format!("{s:.1} s"))
}

impl Measured {
    fn ratio(&self) -> f64 {
        self.attacked.rate() / self.alone.rate().max(1e-9)
    }

    fn print(&self, opts: &Opts, info: &Info) {
        println!();
        println!(
            "serve-attack: {}{}",
            info.bin,
            if info.given {
                " (--bin: the figures mean something only for a release build)"
            } else {
                " (release build)"
            }
        );
        println!(
            "server: {} (soft file limit {}; this process's {})",
            info.start_line, info.nofile, info.limit
        );
        println!(
            "load: {} {} clients, {} s a phase, {} layers: {} ({} s to warm); docker pull: {}",
            opts.clients,
            opts.client,
            opts.duration,
            opts.size,
            Kind::MIX.map(Kind::name).join(", "),
            fmt1(self.warm_seconds),
            match &self.docker {
                Ok(()) => "client 0".to_owned(),
                Err(why) => format!("skipped ({why})"),
            }
        );
        let (a, b) = (&self.alone, &self.attacked);
        let rows: Vec<(String, String, String, String)> = vec![
            (
                "throughput".into(),
                format!("{:.1} MB/s", a.rate() / 1e6),
                format!("{:.1} MB/s", b.rate() / 1e6),
                format!("ratio {:.2} (target ≥ {TARGET_RATIO})", self.ratio()),
            ),
            (
                "pulls done / failed".into(),
                format!("{} / {}", a.pulls(), a.failed()),
                format!("{} / {}", b.pulls(), b.failed()),
                String::new(),
            ),
            (
                "manifest p50 / p99".into(),
                format!("{} / {}", ms(a.p50), ms(a.p99)),
                format!("{} / {}", ms(b.p50), ms(b.p99)),
                format!("timeout {} s", opts.timeout),
            ),
            (
                "manifests (timed out)".into(),
                format!("{} ({})", a.manifests, a.timed_out),
                format!("{} ({})", b.manifests, b.timed_out),
                String::new(),
            ),
            (
                "server CPU mean / peak".into(),
                format!("{:.2} / {:.2}", a.server.cpu_mean, a.server.cpu_peak),
                format!(
                    "{:.2} / {:.2}",
                    self.attack_usage.cpu_mean, self.attack_usage.cpu_peak
                ),
                "cores; attack column with its ramp".into(),
            ),
            (
                "server peak RSS".into(),
                format!("{} MiB", a.server.rss_peak_kib / 1024),
                format!("{} MiB", self.attack_usage.rss_peak_kib / 1024),
                format!("VmHWM at the end {} MiB", self.attack_usage.hwm_kib / 1024),
            ),
            (
                "server peak threads".into(),
                a.server.threads_peak.to_string(),
                self.attack_usage.threads_peak.to_string(),
                String::new(),
            ),
            (
                "CPU back to idle".into(),
                idle_text(self.idle_after_alone, opts.idle_wait),
                idle_text(self.idle_after_attack, opts.idle_wait),
                format!("< {IDLE_CORES} of a core; target ≤ {TARGET_IDLE} s"),
            ),
        ];
        println!();
        println!(
            "{:<24} {:>18} {:>18}   ",
            "well-behaved clients", "alone", "under attack"
        );
        for (name, x, y, note) in rows {
            println!("{name:<24} {x:>18} {y:>18}   {note}");
        }
        if self.attack_usage.exited || b.server.exited {
            println!(
                "THE SERVER EXITED during the attack; its log ends:\n{}",
                info.log_tail
            );
        }
        println!();
        println!("attack parts:");
        for part in &self.parts {
            println!("  {:<16} {}", part.name, part.summary);
        }
        for (name, phase) in [("alone", a), ("under attack", b)] {
            if !phase.errors.is_empty() {
                println!(
                    "errors {name}: {}",
                    phase
                        .errors
                        .iter()
                        .map(|(e, n)| format!("{n}× {e}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }

    fn json(&self, opts: &Opts, info: &Info) -> Value {
        let phase = |p: &Phase, u: &Usage, idle: Option<f64>| {
            json!({
                "seconds": p.seconds,
                "bytes": p.bytes,
                "bytes_per_second": p.rate(),
                "pulls": p.pulls.iter().map(|(k, n)| (k.name().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "errors": p.errors,
                "manifests": p.manifests,
                "manifests_timed_out": p.timed_out,
                "manifest_p50_s": p.p50.map(|d| d.as_secs_f64()),
                "manifest_p99_s": p.p99.map(|d| d.as_secs_f64()),
                "server": {
                    "cpu_mean_cores": u.cpu_mean,
                    "cpu_peak_cores": u.cpu_peak,
                    "rss_peak_kib": u.rss_peak_kib,
                    "vm_hwm_kib": u.hwm_kib,
                    "threads_peak": u.threads_peak,
                    "exited": u.exited,
                },
                "idle_after_s": idle,
            })
        };
        json!({
            "bin": info.bin,
            "release_build": !info.given,
            "start_line": info.start_line,
            "server_nofile": info.nofile,
            "clients": opts.clients,
            "client": opts.client,
            "duration_s": opts.duration,
            "size": opts.size,
            "docker": self.docker.as_ref().map_or_else(|why| json!({"skipped": why}), |()| json!(true)),
            "warm_s": self.warm_seconds,
            "alone": phase(&self.alone, &self.alone.server, self.idle_after_alone),
            "attack": phase(&self.attacked, &self.attack_usage, self.idle_after_attack),
            "throughput_ratio": self.ratio(),
            "targets": { "throughput_ratio": TARGET_RATIO, "idle_after_s": TARGET_IDLE, "idle_cores": IDLE_CORES },
            "parts": self.parts.iter().map(|p| (p.name.clone(), p.json.clone())).collect::<serde_json::Map<_, _>>(),
        })
    }
}

fn fmt1(x: f64) -> String {
    format!("{x:.1}")
}
