//! `GET /metrics` of `image-maker serve`: skopeo and curl make real requests, curl scrapes,
//! and Debian's promtool checks the text as Prometheus would read it.

use std::collections::BTreeMap;
use std::fs;
use std::process::Stdio;
use std::time::Duration;

use crate::serve::{tag, Served};
use crate::support::*;

/// Each sample of a scrape: `name{labels}` and its value.
pub(crate) type Samples = BTreeMap<String, f64>;

/// The text of `/metrics`, which must answer 200.
pub(crate) fn metrics_text(curl: Tool, server: &Served) -> String {
    stdout(&run_ok(curl.cmd().args([
        "-sS",
        "--fail",
        &server.url("/metrics"),
    ])))
}

pub(crate) fn parse(text: &str) -> Samples {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: `{line}`"));
            let value = value
                .parse()
                .unwrap_or_else(|e| panic!("not a number ({e}): `{line}`"));
            (key.to_owned(), value)
        })
        .collect()
}

/// The sum of every sample of `name` (any labels) but those whose labels hold `except`.
pub(crate) fn sum(samples: &Samples, name: &str, except: Option<&str>) -> f64 {
    samples
        .iter()
        .filter(|(key, _)| key.split('{').next() == Some(name))
        .filter(|(key, _)| except.is_none_or(|e| !key.contains(e)))
        .map(|(_, value)| value)
        .sum()
}

fn requests(samples: &Samples, route: &str, status: u16) -> f64 {
    let key = format!("image_maker_http_requests_total{{route=\"{route}\",status=\"{status}\"}}");
    samples.get(&key).copied().unwrap_or(0.0)
}

/// A scrape once every response counted so far has also ended (its bytes are in): as many
/// durations observed as responses started. A response's body can end a moment after its
/// client has it all; the minute is a guard against one that never does.
fn settled(curl: Tool, server: &Served) -> Samples {
    let mut samples = Samples::new();
    wait_for(
        "every response counted to have ended",
        Duration::from_secs(60),
        || {
            samples = parse(&metrics_text(curl, server));
            let started = sum(&samples, "image_maker_http_requests_total", None);
            let ended = sum(
                &samples,
                "image_maker_http_request_duration_seconds_count",
                None,
            );
            started == ended
        },
    );
    samples
}

/// curl `url` with extra `args`, body to /dev/null: its status and the body bytes it got.
pub(crate) fn fetch(curl: Tool, url: &str, args: &[&str]) -> (u16, u64) {
    let out = run_ok(
        curl.cmd()
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download}",
            ])
            .args(args)
            .arg(url),
    );
    let text = stdout(&out);
    let (status, size) = text
        .split_once(' ')
        .unwrap_or_else(|| panic!("curl wrote `{text}`"));
    (
        status.parse().expect("a status"),
        size.trim().parse().expect("a size"),
    )
}

pub(crate) fn first_layer(curl: Tool, server: &Served, repository: &str, tag: &str) -> String {
    let out = run_ok(curl.cmd().args([
        "-sS",
        "--fail",
        &server.url(&format!("/v2/{repository}/manifests/{tag}")),
    ]));
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    manifest["layers"][0]["digest"]
        .as_str()
        .expect("a layer digest")
        .to_owned()
}

#[test]
fn metrics_count_real_requests_by_route_and_status_and_the_bytes_curl_received() {
    let (Some(skopeo), Some(curl)) = (tool("skopeo"), tool("curl")) else {
        return;
    };
    let server = Served::start(&[]);
    let t = tag("1MB,2KB");
    let image = format!("{}/mock:{t}", server.host);
    run_ok(skopeo.cmd().args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    let work = tempdir();
    let copy = work.path().join("copy");
    run_ok(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{image}"),
        &format!("dir:{}", copy.display()),
    ]));
    let before = settled(curl, &server);
    assert!(requests(&before, "base", 200) >= 1.0, "{before:#?}");
    assert!(requests(&before, "manifest", 200) >= 1.0, "{before:#?}");
    // Two layers and the config, each fetched at least once by the copy.
    assert!(requests(&before, "blob", 200) >= 3.0, "{before:#?}");
    let copied: u64 = fs::read_dir(&copy)
        .expect("the copy")
        .map(|entry| entry.expect("entry"))
        .filter(|entry| entry.file_name().len() == 64)
        .map(|entry| entry.metadata().expect("metadata").len())
        .sum();
    let blob_bytes = before
        .get("image_maker_http_response_body_bytes_total{route=\"blob\"}")
        .copied()
        .unwrap_or(0.0);
    assert!(
        blob_bytes >= copied as f64,
        "{blob_bytes} blob bytes counted, {copied} copied"
    );

    // Then curl alone, whose byte counts are known: the counts move by exactly these.
    let layer = first_layer(curl, &server, "mock", &t);
    let unknown = format!("sha256:{}", "0".repeat(64));
    let asked = [
        (
            "manifest",
            fetch(curl, &server.url(&format!("/v2/mock/manifests/{t}")), &[]),
        ),
        (
            "blob",
            fetch(
                curl,
                &server.url(&format!("/v2/mock/blobs/{layer}")),
                &["-H", "Range: bytes=10-1009"],
            ),
        ),
        (
            "blob",
            fetch(curl, &server.url(&format!("/v2/mock/blobs/{unknown}")), &[]),
        ),
        ("other", fetch(curl, &server.url("/not/a/route"), &[])),
    ];
    let statuses: Vec<(&str, u16)> = asked.iter().map(|(r, (s, _))| (*r, *s)).collect();
    assert_eq!(
        statuses,
        [
            ("manifest", 200),
            ("blob", 206),
            ("blob", 404),
            ("other", 404)
        ]
    );
    assert_eq!(asked[1].1 .1, 1000, "the range's bytes");
    let after = settled(curl, &server);
    // `first_layer`'s manifest request comes on top of the four.
    let moved = |route, status| requests(&after, route, status) - requests(&before, route, status);
    assert_eq!(moved("manifest", 200), 2.0, "{after:#?}");
    assert_eq!(moved("blob", 206), 1.0, "{after:#?}");
    assert_eq!(moved("blob", 404), 1.0, "{after:#?}");
    assert_eq!(moved("other", 404), 1.0, "{after:#?}");
    assert_eq!(moved("blob", 200), 0.0, "{after:#?}");
    let manifest_bytes = asked[0].1 .1;
    let received: u64 = asked.iter().map(|(_, (_, size))| size).sum::<u64>() + manifest_bytes;
    // The scrapes' own bytes aside: those of the scrapes in between are counted too.
    let bytes = "image_maker_http_response_body_bytes_total";
    let scrapes = "route=\"metrics\"";
    let counted = sum(&after, bytes, Some(scrapes)) - sum(&before, bytes, Some(scrapes));
    assert_eq!(counted, received as f64, "{after:#?}");
}

#[test]
fn promtool_passes_the_metrics_and_no_label_holds_what_a_client_sent() {
    let (Some(curl), Some(promtool)) = (tool("curl"), tool("promtool")) else {
        return;
    };
    let server = Served::start(&[]);
    let t = tag("1MB");
    let layer = first_layer(curl, &server, "private-team/secret-app", &t);
    fetch(
        curl,
        &server.url(&format!("/v2/private-team/secret-app/blobs/{layer}")),
        &[],
    );
    fetch(
        curl,
        &server.url("/v2/private-team/secret-app/tags/list"),
        &[],
    );
    fetch(curl, &server.url("/secret-path"), &[]);
    fetch(curl, &server.url("/v2/"), &["-I"]);
    settled(curl, &server);
    let out = run_ok(
        curl.cmd()
            .args(["-sS", "--fail", "-D", "-", &server.url("/metrics")]),
    );
    let response = stdout(&out);
    let (head, text) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no headers in {response}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let work = tempdir();
    let file = work.path().join("metrics.txt");
    fs::write(&file, text).expect("write");
    let checked = promtool
        .cmd()
        .args(["check", "metrics"])
        .stdin(fs::File::open(&file).expect("open"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("promtool runs");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{text}",
        stdout(&checked),
        stderr(&checked)
    );
    for family in [
        "image_maker_http_requests_total counter",
        "image_maker_http_response_body_bytes_total counter",
        "image_maker_http_request_duration_seconds histogram",
        "image_maker_blob_streams_active gauge",
        "image_maker_digest_passes_running gauge",
        "image_maker_digest_passes_queued gauge",
        // `image_maker_limit_refusals_total` has a series for each limit the server is
        // told of (`Metrics::limits`), none of which this branch has yet.
        "image_maker_auth_failures_total counter",
        "image_maker_connections_open gauge",
        "image_maker_connections_refused_total counter",
    ] {
        assert!(
            text.contains(&format!("\n# TYPE {family}\n")),
            "{family}:\n{text}"
        );
    }
    let samples = parse(text);
    assert_eq!(requests(&samples, "tags", 200), 1.0, "{text}");
    assert_eq!(requests(&samples, "blob", 200), 1.0, "{text}");
    assert_eq!(requests(&samples, "base", 200), 1.0, "{text}");
    assert_eq!(requests(&samples, "other", 404), 1.0, "{text}");
    assert!(
        !text.contains("secret"),
        "a client's name in a label:\n{text}"
    );
}

#[test]
fn the_active_streams_gauge_counts_a_slow_blob_until_its_client_leaves() {
    let Some(curl) = tool("curl") else {
        return;
    };
    let server = Served::start(&[]);
    let streams = |server: &Served| {
        parse(&metrics_text(curl, server))
            .get("image_maker_blob_streams_active")
            .copied()
            .expect("the gauge")
    };
    assert_eq!(streams(&server), 0.0);
    // 64 MiB at 1 MiB/s: a minute of stream, which the client leaves after a moment.
    let t = tag("64MB");
    let layer = first_layer(curl, &server, "faults/slow-1mb/mock", &t);
    let client = spawn(curl.cmd().args([
        "-sS",
        "-o",
        "/dev/null",
        &server.url(&format!("/v2/faults/slow-1mb/mock/blobs/{layer}")),
    ]));
    // The minutes are guards against a stall, not part of the check.
    wait_for("the stream to be counted", Duration::from_secs(60), || {
        streams(&server) == 1.0
    });
    drop(client);
    wait_for(
        "the stream to be counted out once its client left",
        Duration::from_secs(60),
        || streams(&server) == 0.0,
    );
    let after = settled(curl, &server);
    assert_eq!(requests(&after, "blob", 200), 1.0, "{after:#?}");
    let sent = after["image_maker_http_response_body_bytes_total{route=\"blob\"}"];
    assert!(
        sent < (64u64 << 20) as f64,
        "{sent} bytes of a stream left early"
    );
}

#[test]
fn metrics_are_open_by_default_behind_the_credentials_or_off_as_asked() {
    let Some(curl) = tool("curl") else {
        return;
    };
    let url = "/metrics";
    // Open with `--auth`: the registry wants credentials, a scraper does not.
    let open = Served::start(&["--auth", "basic:ci:change-me"]);
    assert_eq!(fetch(curl, &open.url("/v2/"), &[]).0, 401);
    assert_eq!(fetch(curl, &open.url(url), &[]).0, 200);
    drop(open);
    let guarded = Served::start(&["--auth", "bearer:ci:change-me", "--metrics", "auth"]);
    assert_eq!(fetch(curl, &guarded.url(url), &[]).0, 401);
    assert_eq!(fetch(curl, &guarded.url(url), &["-u", "ci:wrong"]).0, 401);
    assert_eq!(
        fetch(curl, &guarded.url(url), &["-u", "ci:change-me"]).0,
        200
    );
    drop(guarded);
    let off = Served::start(&["--metrics", "off"]);
    assert_eq!(fetch(curl, &off.url(url), &[]).0, 404);
    drop(off);
    // Behind credentials there are none: a usage error, before anything listens.
    let out = run(image_maker().args(["serve", "--addr", "127.0.0.1:0", "--metrics", "auth"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--auth"), "{}", stderr(&out));
}
