//! `image-maker serve` against real clients: skopeo (inspect, copy, then oci-image-tool),
//! docker, podman, containerd's ctr, Debian's docker-registry as a pull-through cache in
//! front of it, and curl for ranges, errors, faults and auth. Every server is the CLI on a
//! loopback port the system picks, with the test's own cache (its digest memo).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::registry::Registry;
use crate::support::*;

/// A running `image-maker serve`, killed when dropped; its stderr (the access log) is kept.
pub(crate) struct Served {
    child: Option<Child>,
    pub(crate) host: String,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_in(args, &test_cache())
    }

    /// With the digest memo under `cache`.
    pub(crate) fn start_in(args: &[&str], cache: &Path) -> Self {
        Self::start_within(args, cache, Duration::from_secs(60))
    }

    /// Fails the test when the server has not said where it listens within `bound`: a
    /// server that reads its cache directory at start may never get there.
    pub(crate) fn start_within(args: &[&str], cache: &Path, bound: Duration) -> Self {
        let mut child = image_maker()
            .env("IMAGE_MAKER_CACHE_DIR", cache)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("image-maker serve starts");
        let lines = BufReader::new(child.stderr.take().expect("piped"));
        let log = Arc::new(Mutex::new(String::new()));
        let shared = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                shared.lock().expect("log").push_str(&(line + "\n"));
            }
        });
        let started = Instant::now();
        let host = loop {
            let said = log.lock().expect("log").clone();
            if let Some(rest) = said
                .split_once("serving on ")
                .and_then(|(_, r)| r.split_once("://"))
            {
                break rest
                    .1
                    .split_whitespace()
                    .next()
                    .expect("an address")
                    .to_owned();
            }
            let exited = child.try_wait().expect("try_wait").is_some();
            assert!(
                started.elapsed() < bound && !exited,
                "serve did not start within {bound:?}; it said:\n{said}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        Self {
            child: Some(child),
            host,
            log,
            reader: Some(reader),
        }
    }

    /// `GET path` with curl: the status and the body. curl's own minute is a guard against
    /// a server that never answers.
    pub(crate) fn get(&self, curl: Tool, path: &str) -> (u16, Vec<u8>) {
        let work = tempdir();
        let body = work.path().join("body");
        let out = run(curl.cmd().args([
            "-sS",
            "--max-time",
            "60",
            "-o",
            path_str(&body),
            "-w",
            "%{http_code}",
            &self.url(path),
        ]));
        assert!(out.status.success(), "curl {path}: {}", stderr(&out));
        let status = stdout(&out).trim().parse().expect("a status");
        (status, fs::read(&body).unwrap_or_default())
    }

    /// `GET path`, which must answer 200: its body.
    pub(crate) fn get_ok(&self, curl: Tool, path: &str) -> Vec<u8> {
        let (status, body) = self.get(curl, path);
        assert_eq!(
            status,
            200,
            "{path}: {}\n{}",
            String::from_utf8_lossy(&body),
            self.log()
        );
        body
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// The log once it holds `line`: a request's line is written when its body is done,
    /// which can come after the client has what it asked for. The minute is a guard
    /// against a line that never comes, which fails the test.
    pub(crate) fn log_with(&self, line: &str) -> String {
        wait_for(
            &format!("`{line}` in serve's log"),
            Duration::from_secs(60),
            || self.log().contains(line),
        );
        self.log()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The server's peak resident memory so far, in KiB (`VmHWM`).
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("status")
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// Ctrl-C, then the exit status and everything it wrote on stderr.
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        send(child.id(), Signal::SIGINT);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "serve did not stop after SIGINT"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().expect("log reader");
        }
        (status, self.log())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `image-maker -s SPEC --platform P -o oci:DIR --json`: the image a served tag must equal.
fn build(list: &str, platform: &str, dir: &Path) -> serde_json::Value {
    json(&run_ok(image_maker().args([
        "-q",
        "--json",
        "-s",
        list,
        "--platform",
        platform,
        "-o",
        &format!("oci:{}", dir.display()),
        "mock/expected:1",
    ])))
}

pub(crate) fn tag(list: &str) -> String {
    stdout(&run_ok(image_maker().args(["tag", list])))
        .trim()
        .to_owned()
}

fn skopeo_digest(skopeo: Tool, image: &str, extra: &[&str]) -> String {
    let out = run_ok(
        skopeo
            .cmd()
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .args(extra)
            .arg(format!("docker://{image}")),
    );
    stdout(&out).trim().to_owned()
}

/// curl with `args`, its output and status as they are (no check).
pub(crate) fn curl(curl: Tool, args: &[&str]) -> Output {
    run(curl.cmd().arg("-sS").args(args))
}

/// The response headers of `curl -sS -D - -o /dev/null ARGS`, lowercased names.
pub(crate) fn headers(tool: Tool, args: &[&str]) -> (u16, BTreeMap<String, String>) {
    let out = curl(tool, &[&["-D", "-", "-o", "/dev/null"], args].concat());
    let text = stdout(&out);
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name != &"date")
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

pub(crate) fn error_code(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    json["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {json}"))
        .to_owned()
}

/// A `skopeo copy … dir:` copy holds the manifest `digest` and every blob of it byte for
/// byte as the OCI layout `layout` has them.
fn assert_same_blobs(kept: &Path, layout: &Path, digest: &str) {
    let manifest = fs::read(kept.join("manifest.json")).expect("manifest");
    assert_eq!(sha256(&manifest), digest);
    let hex_of = |d: &str| d.trim_start_matches("sha256:").to_owned();
    let mut blobs = manifest_layers(layout, digest);
    let doc: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    blobs.push(doc["config"]["digest"].as_str().expect("config").to_owned());
    for blob in blobs {
        let ours = fs::read(layout.join("blobs/sha256").join(hex_of(&blob))).expect("built");
        let theirs = fs::read(kept.join(hex_of(&blob))).expect("copied");
        assert!(ours == theirs, "blob {blob} differs");
    }
}

fn manifest_layers(layout: &Path, digest: &str) -> Vec<String> {
    let hex = digest.trim_start_matches("sha256:");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).expect("manifest"))
            .expect("json");
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_owned())
        .collect()
}

#[test]
fn tags_print_and_specs_without_one_say_what_to_do() {
    assert_eq!(tag("1GB,512MB"), "1GB_512MB");
    assert_eq!(tag("64MB:tree=5000"), "64MB.tree-5000");
    assert_eq!(tag("8MB:compression=gzip"), "8MB.compression-gzip");
    let out = run(image_maker().args(["tag", "1.5GB"]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: layer size `1.5GB` has a decimal point, which a tag cannot hold\nhint: use a smaller unit: `1536MB`\n"
    );
    let long = vec!["1MB"; 40].join(",");
    let out = run(image_maker().args(["tag", &long]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("a tag has at most 128") && stderr(&out).contains("`40x1MB`"),
        "{}",
        stderr(&out)
    );
    let help = stdout(&run_ok(image_maker().args(["serve", "--help"])));
    assert!(
        help.contains("`_` for `,`, `.` for `:` and `-` for `=`"),
        "{help}"
    );
    assert!(help.contains("faults/truncate/NAME"), "{help}");
}

#[test]
fn bad_serve_options_are_usage_errors_that_never_show_a_password() {
    for (args, says) in [
        (vec!["--addr", "nowhere"], "`--addr` value `nowhere`"),
        (vec!["--auth", "digest:alice:hunter2"], "`digest`"),
        (vec!["--auth", "basic:alice"], "KIND:USER:PASS"),
        // A password given alone, or with its colon, is not repeated either.
        (vec!["--auth", "hunter2"], "KIND:USER:PASS"),
        (vec!["--auth", "hunter2:"], "KIND:USER:PASS"),
    ] {
        let out = run(image_maker().arg("serve").args(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("error: ") && err.contains(says), "{err}");
        assert!(err.contains("\nhint: "), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    let dir = tempdir();
    let file = dir.path().join("images.toml");
    fs::write(&file, "\"mock/app:v1\" = { layers = \"1XB\" }\n").expect("write");
    let out = run(image_maker().args(["serve", "--images", path_str(&file)]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`mock/app:v1`"), "{}", stderr(&out));
}

#[test]
fn skopeo_copies_what_the_cli_builds_and_oci_image_tool_validates_it() {
    let (Some(skopeo), Some(validator)) = (tool("skopeo"), tool("oci-image-tool")) else {
        return;
    };
    let server = Served::start(&[]);
    let work = tempdir();
    // oci-image-tool 1.0.0-rc1 does not know zstd layers.
    for (list, platform, repository) in [
        ("3MB,1KB:files=3", "linux/amd64", "mock"),
        (
            "1MB:tree=40,2KB:compression=gzip:ratio=4",
            "linux/amd64",
            "deep/mock",
        ),
        (
            "512KB:compression=zstd",
            "linux/arm64",
            "platform/linux-arm64/mock",
        ),
    ] {
        let built = work.path().join(format!("built-{}", unique()));
        let expected = build(list, platform, &built);
        let image = format!("{}/{repository}:{}", server.host, tag(list));
        assert_eq!(
            skopeo_digest(skopeo, &image, &[]),
            expected["digest"].as_str().expect("digest"),
            "{list} for {platform}"
        );
        // skopeo checks every blob's digest as it copies; an `oci:` destination gets plain
        // layers gzipped, so a `dir:` copy (which keeps them) is compared byte for byte.
        let copied = work.path().join(format!("copied-{}", unique()));
        run_ok(skopeo.cmd().args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{image}"),
            &format!("oci:{}:copied", copied.display()),
        ]));
        if !list.contains("zstd") {
            assert_valid_layout(validator, &copied, "copied");
        }
        let kept = work.path().join(format!("kept-{}", unique()));
        run_ok(skopeo.cmd().args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{image}"),
            &format!("dir:{}", kept.display()),
        ]));
        assert_same_blobs(&kept, &built, expected["digest"].as_str().expect("digest"));
    }
    assert!(server
        .log()
        .contains("\"GET /v2/mock/manifests/3MB_1KB.files-3 HTTP/1.1\" 200"));
}

#[test]
fn docker_pulls_it() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let server = Served::start(&[]);
    let expected = build("2MB,1KB", "linux/amd64", &tempdir().path().join("oci"));
    let image = EngineImage::named(docker, format!("{}/mock:2MB_1KB", server.host));
    run_ok(docker.cmd().args(["pull", &image.reference]));
    assert_eq!(
        image.inspect("{{.Id}}"),
        expected["config_digest"].as_str().expect("config digest")
    );
}

#[test]
fn a_platform_list_is_an_index_that_skopeo_copies_and_docker_resolves() {
    let (Some(skopeo), Some(docker)) = (tool("skopeo"), engine("docker")) else {
        return;
    };
    let server = Served::start(&[]);
    let work = tempdir();
    let list = "1MB:compression=gzip,2KB";
    let built = work.path().join("built");
    let expected = build(list, "linux/arm64,linux/amd64", &built);
    let image = format!(
        "{}/platform/linux-arm64_linux-amd64/mock:{}",
        server.host,
        tag(list)
    );
    let raw = run_ok(skopeo.cmd().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    {
        assert_eq!(
            sha256(&raw.stdout),
            expected["digest"].as_str().expect("index digest")
        );
    }
    // Every image of it, byte for byte the CLI's: skopeo checks each blob as it copies.
    let copied = work.path().join("copied");
    run_ok(skopeo.cmd().args([
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{image}"),
        &format!("oci:{}:1", copied.display()),
    ]));
    let blob = |layout: &Path, digest: &str| {
        fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .expect("blob")
    };
    for m in expected["manifests"].as_array().expect("manifests") {
        let digest = m["digest"].as_str().expect("digest");
        let mut blobs = manifest_layers(&built, digest);
        blobs.push(digest.to_owned());
        blobs.push(m["config_digest"].as_str().expect("config").to_owned());
        for digest in blobs {
            assert!(
                blob(&copied, &digest) == blob(&built, &digest),
                "blob {digest} differs"
            );
        }
    }
    let pulled = EngineImage::named(docker, image.clone());
    run_ok(docker.cmd().args(["pull", &pulled.reference]));
    assert_engine_picked(&pulled, &expected, "linux/amd64");
}

#[test]
fn podman_pulls_it() {
    let Some(podman) = engine("podman") else {
        return;
    };
    let server = Served::start(&[]);
    let expected = build("2MB,2KB", "linux/amd64", &tempdir().path().join("oci"));
    let image = EngineImage::named(podman, format!("{}/mock:2MB_2KB", server.host));
    run_ok(
        podman
            .cmd()
            .args(["pull", "-q", "--tls-verify=false", &image.reference]),
    );
    assert_eq!(
        image.inspect("{{.Digest}}"),
        expected["digest"].as_str().expect("digest")
    );
}

#[test]
fn containerd_pulls_it_over_plain_http() {
    let (Some(ctr), Some(_docker)) = (tool("ctr"), engine("docker")) else {
        return;
    };
    let socket = containerd_socket();
    let server = Served::start(&[]);
    let expected = build("1MB,3KB", "linux/amd64", &tempdir().path().join("oci"));
    let image = format!("{}/mock:1MB_3KB", server.host);
    let ctr_cmd = || {
        let mut cmd = ctr.cmd();
        cmd.args(["-a", socket, "-n", "image-maker-test"]);
        cmd
    };
    run_ok(ctr_cmd().args(["images", "pull", "--plain-http", &image]));
    let listed = stdout(&run_ok(ctr_cmd().args(["images", "ls"])));
    let _ = ctr_cmd().args(["images", "rm", &image]).output();
    let line = listed
        .lines()
        .find(|l| l.starts_with(&image))
        .unwrap_or_else(|| panic!("{image} not in\n{listed}"));
    assert!(
        line.contains(expected["digest"].as_str().expect("digest")),
        "{line}"
    );
}

/// The containerd that dockerd runs: its own socket, or a system containerd's.
pub(crate) fn containerd_socket() -> &'static str {
    [
        "/var/run/docker/containerd/containerd.sock",
        "/run/containerd/containerd.sock",
    ]
    .into_iter()
    .find(|s| Path::new(s).exists())
    .expect("dockerd's containerd has a socket")
}

/// Debian's docker-registry as a pull-through cache of `upstream`; killed when dropped.
struct Proxy {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start(program: Tool, upstream: &str) -> Self {
        let dir = tempdir();
        for _ in 0..20 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\nproxy:\n  remoteurl: http://{upstream}\n",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            fs::write(&config_path, config).expect("config");
            let mut child = program
                .cmd()
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker-registry starts");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if child.try_wait().expect("try_wait").is_some() {
                    break; // the port was taken: another one
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child,
                        host: format!("127.0.0.1:{port}"),
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start on any of 20 ports");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn a_pull_through_cache_in_front_of_it_serves_the_same_image() {
    let (Some(skopeo), Some(registry)) = (tool("skopeo"), tool("docker-registry")) else {
        return;
    };
    let server = Served::start(&[]);
    let proxy = Proxy::start(registry, &server.host);
    let work = tempdir();
    let expected = build("2MB,1KB:files=2", "linux/amd64", &work.path().join("oci"));
    let through = format!("{}/library/mock:2MB_1KB.files-2", proxy.host);
    assert_eq!(
        skopeo_digest(skopeo, &through, &[]),
        expected["digest"].as_str().expect("digest")
    );
    let kept = work.path().join("kept");
    run_ok(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{through}"),
        &format!("dir:{}", kept.display()),
    ]));
    assert_same_blobs(
        &kept,
        &work.path().join("oci"),
        expected["digest"].as_str().expect("digest"),
    );
    // The cache asked the server, not the other way round.
    let log = server.log_with("/v2/library/mock/blobs/sha256:");
    assert!(log.contains("/v2/library/mock/blobs/sha256:"), "{log}");
}

#[test]
fn ranges_heads_and_errors_answer_as_the_spec_says() {
    let Some(tool) = tool("curl") else {
        return;
    };
    let server = Served::start(&[]);
    let work = tempdir();
    let list = "1MB:files=3,2KB";
    let expected = build(list, "linux/amd64", &work.path().join("oci"));
    let layer = expected["layers"][0]["digest"].as_str().expect("digest");
    let local = fs::read(
        work.path()
            .join("oci/blobs/sha256")
            .join(layer.trim_start_matches("sha256:")),
    )
    .expect("blob");
    let manifest_url = server.url(&format!("/v2/mock/manifests/{}", tag(list)));
    let (status, get) = headers(tool, &[&manifest_url]);
    let (_, head) = headers(tool, &["-I", &manifest_url]);
    assert_eq!(status, 200);
    assert_eq!(get, head, "HEAD and GET of the manifest");
    assert_eq!(
        get["docker-content-digest"],
        expected["digest"].as_str().expect("digest")
    );
    assert_eq!(
        get["content-type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let blob_url = server.url(&format!("/v2/mock/blobs/{layer}"));
    let (_, get) = headers(tool, &[&blob_url]);
    let (_, head) = headers(tool, &["-I", &blob_url]);
    assert_eq!(get, head, "HEAD and GET of a blob");
    assert_eq!(get["content-length"], local.len().to_string());
    // Slices at the start, the middle (inside the second file) and the end.
    let n = local.len();
    for (a, b) in [
        (0, 99),
        (1000, 600_000),
        (n / 2, n / 2 + 70_000),
        (n - 1500, n - 1),
    ] {
        let out = curl(
            tool,
            &["-r", &format!("{a}-{b}"), "-D", "/dev/stderr", &blob_url],
        );
        assert!(out.status.success());
        assert!(stderr(&out).starts_with("HTTP/1.1 206"), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("content-range: bytes {a}-{b}/{n}")),
            "{}",
            stderr(&out)
        );
        assert!(out.stdout == local[a..=b], "bytes {a}-{b}");
    }
    let out = curl(
        tool,
        &[
            "-r",
            &format!("{n}-"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &blob_url,
        ],
    );
    assert_eq!(stdout(&out), "416");
    // Errors: OCI JSON, with the status the spec gives each.
    let unknown = format!("sha256:{}", "0".repeat(64));
    for (path, method, status, code) in [
        (
            format!("/v2/mock/blobs/{unknown}"),
            "GET",
            "404",
            "BLOB_UNKNOWN",
        ),
        (
            format!("/v2/mock/manifests/{unknown}"),
            "GET",
            "404",
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/mock/manifests/latest".to_owned(),
            "GET",
            "404",
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/faults/nope/mock/manifests/1KB".to_owned(),
            "GET",
            "404",
            "NAME_UNKNOWN",
        ),
        (
            "/v2/mock/manifests/1KB".to_owned(),
            "PUT",
            "405",
            "UNSUPPORTED",
        ),
        (
            "/v2/mock/blobs/uploads/".to_owned(),
            "POST",
            "405",
            "UNSUPPORTED",
        ),
    ] {
        let out = curl(
            tool,
            &["-X", method, "-w", "\n%{http_code}", &server.url(&path)],
        );
        let text = stdout(&out);
        let (body, got) = text.rsplit_once('\n').expect("status");
        assert_eq!(got, status, "{method} {path}: {body}");
        assert_eq!(error_code(body.as_bytes()), code, "{method} {path}");
    }
    // A client that takes no manifest type served here is told so, not sent one (one that
    // takes Docker's gets that form: serve_registry.rs).
    let out = curl(
        tool,
        &[
            "-H",
            "Accept: text/plain",
            "-w",
            "\n%{http_code}",
            &manifest_url,
        ],
    );
    assert!(stdout(&out).ends_with("\n404"), "{}", stdout(&out));
}

#[test]
fn faults_fail_each_client_as_they_should_and_the_server_keeps_serving() {
    let (Some(skopeo), Some(tool)) = (tool("skopeo"), tool("curl")) else {
        return;
    };
    let server = Served::start(&[]);
    let work = tempdir();
    let list = "2MB,1KB";
    let t = tag(list);
    let copy = |repository: &str, extra: &[&str]| {
        run(skopeo
            .cmd()
            .args(["copy", "--src-tls-verify=false"])
            .args(extra)
            .arg(format!("docker://{}/{repository}:{t}", server.host))
            .arg(format!("oci:{}:x", work.path().join(unique()).display())))
    };
    let corrupt = copy("faults/corrupt/mock", &[]);
    assert!(!corrupt.status.success());
    assert!(
        stderr(&corrupt).contains("Digest did not match"),
        "{}",
        stderr(&corrupt)
    );
    for fault in ["truncate", "missing", "wrong-size"] {
        let out = copy(&format!("faults/{fault}/mock"), &[]);
        assert!(!out.status.success(), "{fault} succeeded");
    }
    let missing = copy("faults/missing/mock", &[]);
    assert!(
        stderr(&missing).contains("404 (Not Found)"),
        "{}",
        stderr(&missing)
    );
    // skopeo retries 5xx answers from 1.13 on (Debian 12 has 1.9, which gives up at once):
    // either way each item fails once, so a copy succeeds by the fourth try (manifest,
    // config, two layers) at the latest.
    let mut tries = 0;
    loop {
        tries += 1;
        let flaky = copy("faults/flaky/mock", &["--retry-times", "3"]);
        if flaky.status.success() {
            break;
        }
        assert!(stderr(&flaky).contains("503"), "{}", stderr(&flaky));
        assert!(tries < 4, "still failing after {tries} copies");
    }
    assert!(server
        .log()
        .contains("\"GET /v2/faults/flaky/mock/manifests/2MB_1KB HTTP/1.1\" 503"));
    // A client that retries 503 gets every item at its second request.
    let body = work.path().join("retried");
    let retried = curl(
        tool,
        &[
            "--retry",
            "1",
            "--retry-delay",
            "1",
            "-o",
            path_str(&body),
            "-w",
            "%{http_code}",
            &server.url(&format!("/v2/faults/flaky/again/manifests/{t}")),
        ],
    );
    assert_eq!(stdout(&retried), "200", "{}", stderr(&retried));
    let asked = format!("\"GET /v2/faults/flaky/again/manifests/{t} HTTP/1.1\"");
    let log = server.log_with(&format!("{asked} 200"));
    assert_eq!(log.matches(&format!("{asked} 503")).count(), 1, "{log}");
    assert_eq!(log.matches(&format!("{asked} 200")).count(), 1, "{log}");
    let manifest = curl(tool, &[&server.url(&format!("/v2/mock/manifests/{t}"))]);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).expect("json");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    // 2 MiB at 1 MiB/s: at no moment has curl more than that rate allows since before it
    // asked. A busy machine only slows the transfer, so this holds however loaded it is;
    // the minute is a guard against a stall, not part of the check.
    let rate = 1u64 << 20;
    let body = work.path().join("slow");
    let started = Instant::now();
    let mut slow = spawn(
        tool.cmd()
            .args(["-sS", "-o", path_str(&body)])
            .arg(server.url(&format!("/v2/faults/slow-1MB/mock/blobs/{layer}"))),
    );
    wait_for("the slow blob to arrive", Duration::from_secs(60), || {
        let done = slow.exited();
        let got = fs::metadata(&body).map_or(0, |m| m.len());
        let since = started.elapsed();
        // One chunk of slack (rate / 8 bytes) for a chunk that is due but still in flight.
        let allowed = since.as_secs_f64() * rate as f64 + (rate / 8) as f64;
        assert!(
            got as f64 <= allowed,
            "{got} bytes {since:?} after asking: faster than 1 MiB/s"
        );
        done
    });
    let slow = slow.finish();
    assert!(slow.status.success(), "{}", stderr(&slow));
    assert!(fs::metadata(&body).expect("body").len() > 2 << 20);
    // curl's view: a short body (18) after every byte of the blob, a corrupt byte, a break
    // at exactly half (the bytes before a break are never lost in the server's buffer).
    let wrong = curl(
        tool,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &server.url(&format!("/v2/faults/wrong-size/mock/blobs/{layer}")),
        ],
    );
    assert_eq!(wrong.status.code(), Some(18), "{}", stderr(&wrong));
    assert_eq!(
        stdout(&wrong),
        ((2u64 << 20) + 2048).to_string(),
        "all of it"
    );
    let truncated = curl(
        tool,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &server.url(&format!("/v2/faults/truncate/mock/blobs/{layer}")),
        ],
    );
    assert_eq!(truncated.status.code(), Some(18), "{}", stderr(&truncated));
    assert_eq!(
        stdout(&truncated),
        ((1u64 << 20) + 1024).to_string(),
        "half the blob"
    );
    // Faults never touch other names, and the server is still there.
    let clean = copy("mock", &[]);
    assert!(clean.status.success(), "{}", stderr(&clean));
}

#[test]
fn basic_and_bearer_auth_let_skopeo_and_docker_in_and_never_log_a_secret() {
    let (Some(skopeo), Some(tool)) = (tool("skopeo"), tool("curl")) else {
        return;
    };
    let docker = engine("docker");
    let password = format!("pw-{}", unique());
    for kind in ["basic", "bearer"] {
        let auth = format!("{kind}:alice:{password}");
        let server = Served::start(&["--auth", &auth]);
        let (status, headers) = headers(tool, &[&server.url("/v2/mock/manifests/1KB")]);
        assert_eq!(status, 401, "{kind}");
        let challenge = &headers["www-authenticate"];
        match kind {
            "basic" => assert!(challenge.starts_with("Basic realm="), "{challenge}"),
            _ => assert_eq!(
                challenge,
                &format!(
                    "Bearer realm=\"http://{}/token\",service=\"image-maker\",scope=\"repository:mock:pull\"",
                    server.host
                )
            ),
        }
        let image = format!("{}/mock:1MB_1KB", server.host);
        let anonymous = run(skopeo.cmd().args([
            "inspect",
            "--tls-verify=false",
            "--no-creds",
            &format!("docker://{image}"),
        ]));
        assert!(
            !anonymous.status.success(),
            "{kind}: in without credentials"
        );
        let wrong = run(skopeo.cmd().args([
            "inspect",
            "--tls-verify=false",
            "--creds",
            "alice:nope",
            &format!("docker://{image}"),
        ]));
        assert!(!wrong.status.success(), "{kind}: in with a wrong password");
        let creds = format!("alice:{password}");
        let digest = skopeo_digest(skopeo, &image, &["--creds", &creds]);
        assert!(digest.starts_with("sha256:"), "{digest}");
        if let Some(docker) = docker {
            docker_login_and_pull(docker, &server.host, "alice", &password, &image, kind);
        }
        let log = server.log();
        assert!(log.contains(" 401 "), "{log}");
        assert!(
            !log.contains(&password),
            "{kind}: the password is in the log"
        );
        if kind == "bearer" {
            assert!(
                log.contains("\"GET /token HTTP/1.1\" 200")
                    || log.contains("\"POST /token HTTP/1.1\" 200"),
                "{log}"
            );
            assert!(!log.contains("access_token") && !log.contains('?'), "{log}");
        }
    }
}

/// `docker login` to `host` as `user` (the password on stdin, as docker wants it), then a
/// pull of `image`, with a docker config of the test's own so that the login is forgotten
/// with it.
pub(crate) fn docker_login_and_pull(
    docker: Tool,
    host: &str,
    user: &str,
    password: &str,
    image: &str,
    kind: &str,
) {
    let config = tempdir();
    let out = run_with_stdin(
        docker.cmd().env("DOCKER_CONFIG", config.path()).args([
            "login",
            host,
            "-u",
            user,
            "--password-stdin",
        ]),
        password.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{kind}: docker login: {}",
        stderr(&out)
    );
    let pulled = EngineImage::named(docker, image.to_owned());
    run_ok(docker.cmd().env("DOCKER_CONFIG", config.path()).args([
        "pull",
        "-q",
        &pulled.reference,
    ]));
    assert!(pulled.exists());
}

#[test]
fn two_servers_serve_the_same_bytes_for_a_name() {
    let Some(tool) = tool("curl") else {
        return;
    };
    // Two caches, so that neither reads the other's digests.
    let other_cache = tempdir();
    let servers = [
        Served::start(&[]),
        Served::start_in(&[], other_cache.path()),
    ];
    let fetch = |server: &Served, path: &str| {
        let out = curl(tool, &[&server.url(path)]);
        assert!(out.status.success());
        out.stdout
    };
    let list = "2x1MB:files=3,1KB:compression=gzip";
    let manifests = servers
        .each_ref()
        .map(|s| fetch(s, &format!("/v2/mock/manifests/{}", tag(list))));
    assert_eq!(manifests[0], manifests[1]);
    let manifest: serde_json::Value = serde_json::from_slice(&manifests[0]).expect("json");
    for layer in manifest["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().expect("digest");
        let blobs = servers
            .each_ref()
            .map(|s| fetch(s, &format!("/v2/any/name/blobs/{digest}")));
        assert!(blobs[0] == blobs[1], "{digest}");
        assert_eq!(sha256(&blobs[0]), digest);
    }
}

#[test]
fn two_clients_of_a_large_layer_cost_no_disk_and_little_memory() {
    let Some(tool) = tool("curl") else {
        return;
    };
    // 256 MiB here (a debug build generates at about 90 MB/s); `cargo xtask bench serve`
    // does the same with 4 GiB. Either way a stored or buffered blob would show.
    let cache = tempdir();
    let server = Served::start_in(&["-q"], cache.path());
    // What the server itself has written to storage (`/proc/PID/io`): the disk is shared
    // with other processes, whose writes would blur a free-space count.
    let written = || -> u64 {
        fs::read_to_string(format!("/proc/{}/io", server.pid()))
            .expect("/proc/PID/io")
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("write_bytes")
    };
    let before = written();
    let manifest = curl(tool, &[&server.url("/v2/mock/manifests/256MB")]);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).expect("json");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let url = server.url(&format!("/v2/mock/blobs/{layer}"));
    let clients: Vec<Running> = (0..2)
        .map(|_| {
            spawn(
                tool.cmd()
                    .args(["-sS", "-o", "/dev/null", "-w", "%{size_download}", &url]),
            )
        })
        .collect();
    for client in clients {
        let out = client.finish_within(Duration::from_secs(120));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), ((256u64 << 20) + 2048).to_string());
    }
    let peak_kib = server.peak_rss_kib();
    assert!(peak_kib < 100 << 10, "peak RSS {peak_kib} KiB");
    // The digest memo and its index (a small file per digest, each made under a temporary
    // name, and their directories): a few dozen pages, where one stored blob would be
    // 256 MiB.
    let wrote = written() - before;
    assert!(wrote <= 256 << 10, "the server wrote {wrote} bytes to disk");
    let memo: u64 = files_under(cache.path()).iter().map(|(_, len)| len).sum();
    assert!(memo < 1024, "the cache holds {memo} bytes");
}

#[test]
fn an_images_file_names_images_and_ctrl_c_stops_the_server_cleanly() {
    let (Some(skopeo), Some(tool)) = (tool("skopeo"), tool("curl")) else {
        return;
    };
    let dir = tempdir();
    let file = dir.path().join("images.toml");
    fs::write(
        &file,
        "\"mock/app:v1\" = { layers = \"1.5MB,2KB\", platform = \"linux/arm64\" }\n\
         \"mock/app:v2\" = { layers = \"1KB\" }\n",
    )
    .expect("write");
    let server = Served::start(&["--images", path_str(&file)]);
    assert!(
        server.log().contains("; 2 named images; Ctrl-C stops)"),
        "{}",
        server.log()
    );
    let expected = build("1.5MB,2KB", "linux/arm64", &dir.path().join("oci"));
    assert_eq!(
        skopeo_digest(skopeo, &format!("{}/mock/app:v1", server.host), &[]),
        expected["digest"].as_str().expect("digest")
    );
    let tags = curl(tool, &[&server.url("/v2/mock/app/tags/list")]);
    assert_eq!(stdout(&tags), r#"{"name":"mock/app","tags":["v1","v2"]}"#);
    let (status, log) = server.interrupt();
    assert!(status.success(), "{status}: {log}");
    assert!(log.ends_with("stopped\n"), "{log}");
    assert!(
        log.contains("\"GET /v2/mock/app/tags/list HTTP/1.1\" 200"),
        "{log}"
    );
}

/// A self-signed certificate for 127.0.0.1 and its key, in `dir`.
pub(crate) fn self_signed(openssl: Tool, dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    run_ok(openssl.cmd().args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        path_str(&key),
        "-out",
        path_str(&cert),
    ]));
    (cert, key)
}

#[test]
fn tls_serves_https_with_the_given_certificate() {
    let (Some(openssl), Some(tool)) = (tool("openssl"), tool("curl")) else {
        return;
    };
    let dir = tempdir();
    let (cert, key) = self_signed(openssl, dir.path());
    let server = Served::start(&["--tls-cert", path_str(&cert), "--tls-key", path_str(&key)]);
    assert!(
        server.log().starts_with("serving on https://"),
        "{}",
        server.log()
    );
    let out = curl(
        tool,
        &[
            "--cacert",
            path_str(&cert),
            "-D",
            "/dev/stderr",
            &format!("https://{}/v2/mock/manifests/1KB", server.host),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("docker-content-digest: sha256:"),
        "{}",
        stderr(&out)
    );
    let plain = curl(tool, &[&server.url("/v2/")]);
    assert!(!plain.status.success() || !stdout(&plain).contains("{}"));
    let missing = run(image_maker().args([
        "serve",
        "--tls-cert",
        path_str(&cert),
        "--tls-key",
        path_str(&dir.path().join("none.pem")),
    ]));
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("none.pem"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn a_blob_whose_bytes_are_not_its_digest_is_broken_off_and_named() {
    let Some(tool) = tool("curl") else {
        return;
    };
    let cache = tempdir();
    let list = "3MB:ratio=2:compression=gzip";
    let path = format!("/v2/mock/manifests/{}", tag(list));
    let layer_of = |server: &Served| {
        let out = curl(tool, &[&server.url(&path)]);
        assert!(out.status.success(), "{}", server.log());
        let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        manifest["layers"][0]["digest"]
            .as_str()
            .expect("digest")
            .to_owned()
    };
    let honest = layer_of(&Served::start_in(&[], cache.path()));
    // The next server trusts the digest memo its predecessor left: one that lies makes it
    // serve bytes under a digest they do not have, as a generator that drifted would.
    let memos = cache.path().join("serve/v1");
    let memo = fs::read_dir(&memos)
        .expect("memos")
        .map(|entry| entry.expect("entry").path())
        .find(|file| fs::read_to_string(file).expect("memo").contains(&honest))
        .unwrap_or_else(|| panic!("no memo in {}", memos.display()));
    let text = fs::read_to_string(&memo).expect("memo");
    // Its pieces' sums dropped, so that the whole blob's SHA-256 is what is checked.
    let without_pieces: String = text
        .lines()
        .filter(|l| !l.starts_with("pieces "))
        .map(|l| format!("{l}\n"))
        .collect();
    let wrong = format!("sha256:{}", "0".repeat(64));
    fs::write(&memo, without_pieces.replace(&honest, &wrong)).expect("rewritten");
    let server = Served::start_in(&[], cache.path());
    assert_eq!(layer_of(&server), wrong);
    let out = curl(tool, &[&server.url(&format!("/v2/mock/blobs/{wrong}"))]);
    // 18: the transfer closed with bytes outstanding.
    assert_eq!(out.status.code(), Some(18), "{}", stderr(&out));
    let log = server.log_with("error: blob");
    let line = log
        .lines()
        .find(|l| l.starts_with("error: blob"))
        .unwrap_or_else(|| panic!("no error line in {log}"));
    assert!(
        line.contains(&wrong) && line.contains("compression=gzip"),
        "{line}"
    );
    // So does a Range to the end of it, which is made from the blob's first byte.
    let tail = curl(
        tool,
        &[
            "-r",
            "1000-",
            &server.url(&format!("/v2/mock/blobs/{wrong}")),
        ],
    );
    assert_eq!(tail.status.code(), Some(18), "{}", stderr(&tail));
    // And the server goes on serving.
    assert_eq!(layer_of(&server), wrong);
    drop(server);

    // With the pieces' sums, each MiB is checked as it goes: a sum that is not the bytes'
    // (as a drifted encoder's bytes would not be) breaks the stream off at that step.
    let pieces = text
        .lines()
        .find(|l| l.starts_with("pieces "))
        .unwrap_or_else(|| panic!("no pieces in {text}"));
    let (head, sums) = pieces.rsplit_once(' ').expect("sums");
    let mut sums: Vec<String> = sums.split(',').map(str::to_owned).collect();
    assert_eq!(
        sums.len(),
        4,
        "3 MiB of files and their headers: four steps of a MiB"
    );
    sums[1] = "1".into();
    let altered = format!("{head} {}", sums.join(","));
    fs::write(&memo, text.replace(pieces, &altered)).expect("rewritten");
    let server = Served::start_in(&[], cache.path());
    assert_eq!(layer_of(&server), honest);
    let out = curl(tool, &[&server.url(&format!("/v2/mock/blobs/{honest}"))]);
    assert_eq!(out.status.code(), Some(18), "{}", stderr(&out));
    let log = server.log_with("error: blob");
    assert!(log.contains("at MiB step 1"), "{log}");
}

#[test]
fn skopeo_copies_a_large_gzip_ratio_layer_into_a_registry_twice_in_a_row() {
    // 256 MiB of compressible input in 1,000 files: 2,048 gzip blocks over every worker.
    // When workers reused a deflate state, every GET of this blob streamed bytes other
    // than its digest, and skopeo refused them.
    let (Some(skopeo), Some(registry)) = (tool("skopeo"), Registry::start()) else {
        return;
    };
    let server = Served::start(&[]);
    let list = "256MB:tree=1000:ratio=3:compression=gzip";
    let source = format!("docker://{}/mock:{}", server.host, tag(list));
    let mut digests = Vec::new();
    for round in 1..=2 {
        // Another repository each time, so that the registry takes every blob anew.
        let target = format!("docker://{}/copied/round-{round}:1", registry.host());
        run_ok(skopeo.cmd().args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &source,
            &target,
        ]));
        digests.push(skopeo_digest(skopeo, &target["docker://".len()..], &[]));
    }
    assert_eq!(digests[0], digests[1]);
    assert_eq!(
        digests[0],
        skopeo_digest(skopeo, &source["docker://".len()..], &[])
    );
    assert!(!server.log().contains("error:"), "{}", server.log());
}

#[test]
fn blob_memory_keeps_a_checked_compressed_blob_and_sends_it_again_from_memory() {
    use crate::serve_disk::{bodies_from, first_layer};
    let Some(tool) = tool("curl") else { return };
    let list = "16MB:ratio=3:compression=gzip";
    // 5.5 MB of blob: kept under 12 MB (at most half of it a blob), not under 10 MB.
    for (budget, kept) in [("12MB", true), ("10MB", false)] {
        let server = Served::start_in(&["--blob-memory", budget], tempdir().path());
        let digest = first_layer(tool, &server, &format!("/v2/mock/manifests/{}", tag(list)));
        let blob = format!("/v2/mock/blobs/{digest}");
        // A Range is not whole: nothing kept from it.
        let part = curl(tool, &["-sSf", "-r", "100-199", &server.url(&blob)]);
        assert_eq!(part.stdout.len(), 100);
        let cpu = crate::serve_limits::cpu_seconds(server.pid());
        let whole = server.get_ok(tool, &blob);
        let generated = crate::serve_limits::cpu_seconds(server.pid()) - cpu;
        assert_eq!(sha256(&whole), digest);
        let cpu = crate::serve_limits::cpu_seconds(server.pid());
        for _ in 0..3 {
            assert_eq!(sha256(&server.get_ok(tool, &blob)), digest);
        }
        let again = crate::serve_limits::cpu_seconds(server.pid()) - cpu;
        let from_memory = bodies_from(tool, &server, "memory");
        assert_eq!(
            from_memory,
            if kept { 3.0 } else { 0.0 },
            "--blob-memory {budget}"
        );
        if kept {
            assert!(
                again * 4.0 < generated * 3.0,
                "three GETs from memory took {again:.2} CPU s, one generated {generated:.2}"
            );
            // A Range of a kept blob is its bytes.
            let part2 = curl(tool, &["-sSf", "-r", "100-199", &server.url(&blob)]);
            assert_eq!(part2.stdout, whole[100..200]);
            assert_eq!(part2.stdout, part.stdout);
        }
    }
}
