//! What one client can cost `image-maker serve`: an image over a limit is refused before
//! any work, digest passes wait on a bounded pool, stalled readers are cut, half-sent
//! requests and idle connections are closed, connections over the cap are turned away,
//! and a client that leaves a compressed range costs no more CPU. Every server is the CLI
//! on a loopback port; curl, skopeo and raw sockets are the clients, `/metrics` and
//! `/proc/PID/stat` what the test reads of the server.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::serve::{self_signed, tag, Served};
use crate::serve_metrics::{first_layer, metrics_text, parse, sum};
use crate::support::*;

/// curl `path` of `server`: status, headers (lowercase names) and body.
fn get(curl: Tool, server: &Served, path: &str) -> (u16, String, String) {
    let work = tempdir();
    let head = work.path().join("head");
    let out = run_ok(curl.cmd().args([
        "-sS",
        "--max-time",
        "20",
        "-D",
        path_str(&head),
        &server.url(path),
    ]));
    let head = std::fs::read_to_string(&head)
        .expect("headers")
        .to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in `{head}`"));
    (status, head, stdout(&out))
}

/// The value of one unlabelled gauge or counter of the server's `/metrics`.
fn metric(curl: Tool, server: &Served, name: &str) -> f64 {
    sum(&parse(&metrics_text(curl, server)), name, None)
}

/// CPU seconds the process has used (user and system), from `/proc/PID/stat`.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a command name")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // `/proc` counts in USER_HZ, which is 100 on every Linux.
    ticks / 100.0
}

/// A raw connection to `server`, whose reads give up after `timeout`.
fn connect(server: &Served, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(&server.host).expect("connect");
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    stream
}

/// Reads until the server closes the connection; how long that took, or `None` when it
/// was still open after the stream's read timeout.
fn closed_after(stream: &mut TcpStream) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            // A reset is a close too.
            Err(_) => return Some(started.elapsed()),
        }
    }
}

/// The OCI error code and message of a JSON error body.
fn error_of(body: &str) -> (String, String) {
    let doc: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let error = &doc["errors"][0];
    (
        error["code"].as_str().unwrap_or_default().to_owned(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn an_image_over_a_limit_is_refused_at_once_naming_the_limit_the_value_and_the_flag() {
    let Some(curl) = tool("curl") else { return };
    // Defaults: a petabyte tag is refused before any pass, so it answers at once.
    let server = Served::start(&[]);
    let started = Instant::now();
    let (status, _, body) = get(
        curl,
        &server,
        &format!("/v2/mock/manifests/{}", tag("1000x1TB")),
    );
    let took = started.elapsed();
    assert_eq!(status, 403, "{body}");
    let (code, message) = error_of(&body);
    assert_eq!(code, "DENIED", "{body}");
    assert!(message.contains("--max-image-size"), "{message}");
    assert!(
        message.contains("16GB") || message.contains("16 GB"),
        "{message}"
    );
    assert!(took < Duration::from_secs(2), "the refusal took {took:?}");
    assert_eq!(
        metric(curl, &server, "image_maker_digest_passes_running"),
        0.0
    );
    drop(server);

    // Each limit with the input at it (served) and just over it (refused).
    let server = Served::start(&[
        "--max-image-size",
        "2MB",
        "--max-layers",
        "3",
        "--max-entries",
        "50",
    ]);
    for (spec, refused_by) in [
        ("1MB,1MB", None),
        ("1MB,1MB,1B", Some("--max-image-size")),
        ("3x1KB", None),
        ("4x1KB", Some("--max-layers")),
        ("1KB:tree=5", None),
        ("1KB:tree=1000", Some("--max-entries")),
    ] {
        let (status, _, body) = get(curl, &server, &format!("/v2/mock/manifests/{}", tag(spec)));
        match refused_by {
            None => assert_eq!(status, 200, "{spec}: {body}"),
            Some(flag) => {
                assert_eq!(status, 403, "{spec}: {body}");
                let (code, message) = error_of(&body);
                assert_eq!(code, "DENIED", "{spec}: {body}");
                assert!(message.contains(flag), "{spec}: {message}");
            }
        }
    }
    let samples = parse(&metrics_text(curl, &server));
    for limit in ["max-image-size", "max-layers", "max-entries"] {
        let key = format!("image_maker_limit_refusals_total{{limit=\"{limit}\"}}");
        assert_eq!(samples.get(&key), Some(&1.0), "{key}");
    }
}

#[test]
fn beyond_the_digest_pool_and_its_queue_a_tag_gets_429_and_a_pass_nobody_waits_for_stops() {
    let Some(curl) = tool("curl") else { return };
    let server = Served::start(&["--max-digest-passes", "1", "--digest-queue", "0"]);
    // A pass of many seconds, whose client goes away.
    let heavy = server.url(&format!(
        "/v2/mock/manifests/{}",
        tag("12GB:compression=gzip")
    ));
    let mut leaving = curl
        .cmd()
        .args(["-sS", "-o", "/dev/null", &heavy])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl starts");
    wait_for("the heavy pass to run", Duration::from_secs(30), || {
        metric(curl, &server, "image_maker_digest_passes_running") == 1.0
    });
    // Another image has no pass free and no place in the queue: 429, with when to retry.
    let (status, head, body) = get(curl, &server, &format!("/v2/mock/manifests/{}", tag("1KB")));
    assert_eq!(status, 429, "{body}");
    let (code, message) = error_of(&body);
    assert_eq!(code, "TOOMANYREQUESTS", "{body}");
    assert!(message.contains("--max-digest-passes"), "{message}");
    let retry: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in\n{head}"));
    assert!((1..=300).contains(&retry), "Retry-After: {retry}");

    // Its only requester leaves: the pass stops, and the server goes quiet.
    let _ = leaving.kill();
    let _ = leaving.wait();
    wait_for("the left pass to stop", Duration::from_secs(10), || {
        metric(curl, &server, "image_maker_digest_passes_running") == 0.0
    });
    let before = cpu_seconds(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_seconds(server.pid()) - before;
    assert!(
        spent < 0.3,
        "a pass nobody waits for still costs {spent} CPU s a second"
    );
    // And the pool is free again.
    let (status, _, body) = get(curl, &server, &format!("/v2/mock/manifests/{}", tag("1KB")));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_half_sent_request_and_an_idle_connection_are_closed_on_time() {
    let Some(_) = tool("curl") else { return };
    let server = Served::start(&["--header-timeout", "1s", "--idle-timeout", "2s"]);
    // Headers that never end: closed after the header timeout, not held.
    let mut slow = connect(&server, Duration::from_secs(8));
    slow.write_all(b"GET /v2/ HTTP/1.1\r\nHost: a\r\n")
        .expect("write");
    let took = closed_after(&mut slow).expect("a half-sent request is closed");
    assert!(took < Duration::from_secs(4), "closed after {took:?}");

    // A keep-alive connection answered once, then quiet: closed after the idle timeout.
    let mut idle = connect(&server, Duration::from_secs(8));
    idle.write_all(b"GET /v2/ HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("write");
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).expect("a response");
    assert_eq!(
        &first,
        b"HTTP/1.1 200",
        "{}",
        String::from_utf8_lossy(&first)
    );
    let took = closed_after(&mut idle).expect("an idle connection is closed");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
}

#[test]
fn a_tls_handshake_that_never_starts_is_closed_on_time() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let dir = tempdir();
    let (cert, key) = self_signed(openssl, dir.path());
    let server = Served::start(&[
        "--tls-cert",
        path_str(&cert),
        "--tls-key",
        path_str(&key),
        "--tls-handshake-timeout",
        "1s",
    ]);
    // A client that connects and never says hello.
    let mut silent = connect(&server, Duration::from_secs(8));
    let took = closed_after(&mut silent).expect("a silent TLS client is closed");
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
}

#[test]
fn over_max_connections_a_connection_is_closed_at_once_and_the_start_line_says_the_cap() {
    let Some(curl) = tool("curl") else { return };
    let server = Served::start(&["--max-connections", "4"]);
    assert!(
        server.log().contains("4 connections at most"),
        "{}",
        server.log()
    );
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| connect(&server, Duration::from_secs(5)))
        .collect();
    // The listener takes the four before the fifth.
    std::thread::sleep(Duration::from_millis(300));
    let mut over = connect(&server, Duration::from_secs(5));
    let took = closed_after(&mut over).expect("the fifth is closed");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    // One leaves: room for one more, which is served.
    held.pop();
    let mut served = false;
    for _ in 0..50 {
        let mut next = connect(&server, Duration::from_secs(5));
        let _ = next.write_all(b"GET /v2/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = next.read_to_string(&mut answer);
        if answer.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(served, "no room came free after a connection closed");
    drop(held);
    wait_for(
        "the held connections to be counted out",
        Duration::from_secs(10),
        || metric(curl, &server, "image_maker_connections_open") <= 1.0,
    );
    assert!(metric(curl, &server, "image_maker_connections_refused_total") >= 1.0);
}

#[test]
fn six_hundred_stalled_readers_and_paced_streams_leave_curl_and_skopeo_their_bytes() {
    let (Some(curl), Some(skopeo)) = (tool("curl"), tool("skopeo")) else {
        return;
    };
    // The default pool; a short write timeout, so that the end of the test comes soon.
    let server = Served::start(&["--write-timeout", "3s"]);
    let spec = tag("64MB");
    let digest = first_layer(curl, &server, "mock", &spec);
    // Room in this process for 600 sockets besides what other tests hold.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    let _ = nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        hard.min(65536),
        hard,
    );
    // 600 clients that ask for the blob and never read a byte, and paced streams at the
    // slowest rate there is; a slower one is refused, naming the floor.
    let (status, body) = server.get(curl, &format!("/v2/faults/slow-1b/mock/manifests/{spec}"));
    let (_, message) = error_of(&String::from_utf8_lossy(&body));
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("slow-1kb"), "{message}");
    let open = |path: String| {
        let mut s = connect(&server, Duration::from_secs(1));
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .expect("write");
        s
    };
    let stalled: Vec<TcpStream> = (0..600)
        .map(|_| open(format!("/v2/mock/blobs/{digest}")))
        .collect();
    let paced: Vec<TcpStream> = (0..8)
        .map(|_| open(format!("/v2/faults/slow-1kb/mock/blobs/{digest}")))
        .collect();
    wait_for(
        "the pool to fill with stalled streams",
        Duration::from_secs(20),
        || metric(curl, &server, "image_maker_blob_streams_active") >= 32.0,
    );
    // Each stalled stream holds its few MiB of chunks (158 MiB in all here, with the 600
    // connections): not the blob, and nothing that grows with the clients beyond the pool.
    let peak_kib = server.peak_rss_kib();
    assert!(peak_kib < (32 * 6 + 64) << 10, "peak RSS {peak_kib} KiB");
    // A well-behaved client gets the whole blob (after a 429 it retries, as it is told),
    // and skopeo the whole image.
    let work = tempdir();
    let blob = work.path().join("blob");
    let out = run_ok(curl.cmd().args([
        "-sS",
        "--max-time",
        "60",
        "--retry",
        "10",
        "-o",
        path_str(&blob),
        "-w",
        "%{http_code}",
        &server.url(&format!("/v2/mock/blobs/{digest}")),
    ]));
    assert_eq!(stdout(&out).trim(), "200");
    let got = std::fs::read(&blob).expect("the blob");
    assert_eq!(sha256(&got), digest);
    run_ok(skopeo.cmd().args([
        "copy",
        "--retry-times",
        "5",
        "--src-tls-verify=false",
        &format!("docker://{}/mock:{spec}", server.host),
        &format!("oci:{}:x", path_str(&work.path().join("copy"))),
    ]));
    // The stalled ones were cut, and the paced ones end with their clients: the server
    // holds no stream for any of them.
    drop(paced);
    wait_for(
        "the stalled streams to be cut",
        Duration::from_secs(30),
        || metric(curl, &server, "image_maker_blob_streams_active") == 0.0,
    );
    drop(stalled);
}

#[test]
fn a_client_that_leaves_a_compressed_range_costs_no_more_cpu() {
    let Some(curl) = tool("curl") else { return };
    let server = Served::start(&[]);
    // Big enough that its prefix takes a release build seconds to make again.
    let digest = first_layer(curl, &server, "mock", &tag("512MB:compression=gzip"));
    // The last MiB: the generator makes (and drops) everything before it.
    let url = server.url(&format!("/v2/mock/blobs/{digest}"));
    let mut leaving = curl
        .cmd()
        .args(["-sS", "-o", "/dev/null", "-r", "-1048576", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl starts");
    std::thread::sleep(Duration::from_millis(300));
    let _ = leaving.kill();
    let _ = leaving.wait();
    // Within a moment of the client leaving, the generator has stopped.
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_seconds(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_seconds(server.pid()) - before;
    assert!(
        spent < 0.2,
        "a range whose client left still costs {spent} CPU s a second"
    );
}
