//! `serve` as a registry with many repositories, against Debian's `docker-registry` holding
//! the same images, in the same run: an images file of 100 repositories × 1,000 tags
//! (`[app] repository = "bench/app-{001..100}"`, 1 KB each) for serve, and its first 10 × 100
//! pushed to the registry with `image-maker batch` (the same file's images, digest for
//! digest). Reported: manifest GETs by tag (p50 and p99 over 10,000 requests on one
//! keep-alive connection, in a seeded random order over the pushed tags, after each was
//! asked for once), referrers GETs (the registry has no such API: its 404, as the
//! reference), and a whole tag list and catalog paged by 100.
//!
//! `cargo bench --bench registry`; `IMAGE_MAKER_BENCH_ROUNDS` sets the requests in
//! thousands (10), `IMAGE_MAKER_BENCH_DIR` where the registry's storage goes.

#[path = "support/registry.rs"]
mod registry_support;
// This benchmark takes only the server, its work directory and round count of these.
#[path = "support/serve.rs"]
#[allow(dead_code)]
mod serve_support;
#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use registry_support::Registry;
use serve_support::Serve;
use support::{Result, Settings};

const BIN: &str = env!("CARGO_BIN_EXE_image-maker");
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn main() -> Result<()> {
    let settings = Settings::from_env("registry", "1KB", 10)?;
    let requests = settings.rounds * 1000;
    let work = settings.work.path();
    let all = work.join("all.toml");
    std::fs::write(
        &all,
        "[app]\nrepository = \"bench/app-{001..100}\"\ntags = \"1..1000\"\nlayers = \"1KB\"\n",
    )?;
    let pushed = work.join("pushed.toml");
    std::fs::write(
        &pushed,
        "[app]\nrepository = \"bench/app-{001..010}\"\ntags = \"1..100\"\nlayers = \"1KB\"\n",
    )?;
    let server = Serve::start(&work.join("serve-cache"), Some(&all))?;
    let registry = Registry::start(work)?;
    let started = Instant::now();
    let status = Command::new(BIN)
        .args(["batch", "-q", "-j", "4", "--to", &registry.host])
        .arg(&pushed)
        .env("IMAGE_MAKER_CACHE_DIR", work.join("batch-cache"))
        .status()?;
    if !status.success() {
        return Err("image-maker batch to docker-registry failed".into());
    }
    println!(
        "pushed 10 x 100 images to docker-registry in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let tags: Vec<String> = (1..=10)
        .flat_map(|r| (1..=100).map(move |t| format!("bench/app-{r:03}/manifests/{t}")))
        .collect();
    let mut order: Vec<usize> = (0..requests).map(|i| i % tags.len()).collect();
    shuffle(&mut order, 0x5eed);

    let mut ours = Client::connect(&server.host)?;
    let mut theirs = Client::connect(&registry.host)?;
    // Every tag once: serve's digest passes, the registry's first reads from its disk.
    let first = tags
        .iter()
        .map(|t| ours.get(&format!("/v2/{t}"), MANIFEST))
        .collect::<Result<Vec<_>>>()?;
    for t in &tags {
        theirs.get(&format!("/v2/{t}"), MANIFEST)?;
    }
    report_pair("manifest by tag, first request", &first, &[]);
    let (mut mine, mut reference) = (Vec::new(), Vec::new());
    for (n, i) in order.iter().enumerate() {
        let path = format!("/v2/{}", tags[*i]);
        // Alternating which goes first, in case one warms the other's caches.
        if n % 2 == 0 {
            mine.push(ours.get(&path, MANIFEST)?);
            reference.push(theirs.get(&path, MANIFEST)?);
        } else {
            reference.push(theirs.get(&path, MANIFEST)?);
            mine.push(ours.get(&path, MANIFEST)?);
        }
    }
    report_pair("manifest by tag", &mine, &reference);

    let digest = ours.digest_of(&format!("/v2/{}", tags[0]))?;
    let (mut mine, mut reference) = (Vec::new(), Vec::new());
    for _ in 0..requests {
        mine.push(ours.get(&format!("/v2/bench/app-001/referrers/{digest}"), "*/*")?);
        reference.push(theirs.get(&format!("/v2/bench/app-001/referrers/{digest}"), "*/*")?);
    }
    report_pair(
        "referrers (docker-registry: 404, no API)",
        &mine,
        &reference,
    );

    let listing = |client: &mut Client, first: &str| -> Result<(Duration, usize)> {
        let started = Instant::now();
        let mut pages = 0;
        let mut next = Some(first.to_owned());
        while let Some(path) = next {
            pages += 1;
            next = client.get_link(&path)?;
        }
        Ok((started.elapsed(), pages))
    };
    let (took, pages) = listing(&mut ours, "/v2/bench/app-042/tags/list?n=100")?;
    println!(
        "serve: 1,000 tags of a repository in {pages} pages: {:.1} ms",
        took.as_secs_f64() * 1e3
    );
    let (took, pages) = listing(&mut theirs, "/v2/bench/app-004/tags/list?n=10")?;
    println!(
        "docker-registry: 100 tags of a repository in {pages} pages of 10: {:.1} ms",
        took.as_secs_f64() * 1e3
    );
    let (took, pages) = listing(&mut ours, "/v2/_catalog?n=10")?;
    println!(
        "serve: 100 repositories in {pages} pages of 10: {:.1} ms",
        took.as_secs_f64() * 1e3
    );
    let (took, pages) = listing(&mut theirs, "/v2/_catalog?n=1")?;
    println!(
        "docker-registry: 10 repositories in {pages} pages of 1: {:.1} ms",
        took.as_secs_f64() * 1e3
    );
    Ok(())
}

fn report_pair(what: &str, mine: &[Duration], reference: &[Duration]) {
    let (p50, p99) = percentiles(mine);
    if reference.is_empty() {
        println!(
            "{what}: serve p50 {:.3} ms, p99 {:.3} ms ({} requests)",
            ms(p50),
            ms(p99),
            mine.len()
        );
        return;
    }
    let (r50, r99) = percentiles(reference);
    println!(
        "{what}: serve p50 {:.3} ms, p99 {:.3} ms; docker-registry p50 {:.3} ms, p99 {:.3} ms; ratio p50 {:.2}x, p99 {:.2}x ({} requests each)",
        ms(p50),
        ms(p99),
        ms(r50),
        ms(r99),
        p50.as_secs_f64() / r50.as_secs_f64(),
        p99.as_secs_f64() / r99.as_secs_f64(),
        mine.len()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentiles(times: &[Duration]) -> (Duration, Duration) {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

/// A seeded Fisher-Yates shuffle (xorshift), so that both servers see one order.
fn shuffle(items: &mut [usize], mut state: u64) {
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

/// One keep-alive HTTP/1.1 connection: requests one after another, as a client that
/// resolves many tags does; every answer here has a `Content-Length`.
struct Client {
    host: String,
    reader: BufReader<TcpStream>,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Client {
    fn connect(host: &str) -> Result<Self> {
        let stream = TcpStream::connect(host)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            host: host.to_owned(),
            reader: BufReader::new(stream),
        })
    }

    fn request(&mut self, path: &str, accept: &str) -> Result<Answer> {
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\n\r\n",
            self.host
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status line in `{line}`"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| format!("GET {path}: no Content-Length"))?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// The time of one GET.
    fn get(&mut self, path: &str, accept: &str) -> Result<Duration> {
        let started = Instant::now();
        let answer = self.request(path, accept)?;
        let took = started.elapsed();
        if answer.status >= 500 {
            return Err(format!("GET {path}: {}", answer.status).into());
        }
        Ok(took)
    }

    fn digest_of(&mut self, path: &str) -> Result<String> {
        let answer = self.request(path, MANIFEST)?;
        answer
            .headers
            .into_iter()
            .find(|(n, _)| n == "docker-content-digest")
            .map(|(_, v)| v)
            .ok_or_else(|| format!("GET {path}: no digest").into())
    }

    /// GETs a listing page; the path of the next one, from `Link`.
    fn get_link(&mut self, path: &str) -> Result<Option<String>> {
        let answer = self.request(path, "application/json")?;
        if answer.status != 200 {
            return Err(format!(
                "GET {path}: {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )
            .into());
        }
        Ok(answer
            .headers
            .into_iter()
            .find(|(n, _)| n == "link")
            .and_then(|(_, v)| Some(v.split_once('<')?.1.split_once('>')?.0.to_owned())))
    }
}
