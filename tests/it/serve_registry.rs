//! `serve` behaving as the registries clients meet: listings paged with `Link`, the
//! referrers API and its absence, as curl and skopeo see them.

use std::collections::BTreeMap;
use std::fs;

use crate::serve::{curl, error_code, headers, Served};
use crate::support::*;

/// The path and query of a `Link: <…>; rel="next"` header.
fn next_link(headers: &BTreeMap<String, String>) -> Option<String> {
    let link = headers.get("link")?;
    assert!(link.ends_with("; rel=\"next\""), "{link}");
    Some(link.split_once('<')?.1.split_once('>')?.0.to_owned())
}

/// Follows `Link` from `first` to the end; every page's `key` list, in order.
fn follow(tool: Tool, served: &Served, first: &str, key: &str) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut pages = 0;
    let mut at = Some(first.to_owned());
    while let Some(path) = at {
        pages += 1;
        assert!(pages < 1000, "the links never end");
        let (status, head) = headers(tool, &[&served.url(&path)]);
        assert_eq!(status, 200, "{path}");
        let body = curl(tool, &[&served.url(&path)]).stdout;
        let page: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        names.extend(
            page[key]
                .as_array()
                .unwrap_or_else(|| panic!("no `{key}` in {page}"))
                .iter()
                .map(|n| n.as_str().unwrap_or_default().to_owned()),
        );
        at = next_link(&head);
    }
    (names, pages)
}

/// 120 repositories of 30 tags each: the catalog pages by 100 (as docker-registry's does)
/// or by `n`, a tag list by `n`, and following `Link` sees every name once, in order;
/// skopeo lists every tag; a bad `n` is a 400 naming it.
#[test]
fn listings_page_with_links_to_the_end() {
    let (Some(curl_tool), Some(skopeo)) = (tool("curl"), tool("skopeo")) else {
        return;
    };
    let tmp = tempdir();
    let file = tmp.path().join("images.toml");
    fs::write(
        &file,
        "[app]\nrepository = \"team/app-{001..120}\"\ntags = \"1..30\"\nlayers = \"1KB\"\n",
    )
    .expect("write");
    let served = Served::start(&["--images", path_str(&file)]);

    let repositories: Vec<String> = (1..=120).map(|i| format!("team/app-{i:03}")).collect();
    let (listed, pages) = follow(curl_tool, &served, "/v2/_catalog", "repositories");
    assert_eq!((listed.as_slice(), pages), (repositories.as_slice(), 2));
    let (listed, pages) = follow(curl_tool, &served, "/v2/_catalog?n=7", "repositories");
    assert_eq!((listed.as_slice(), pages), (repositories.as_slice(), 18));

    let mut tags: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    tags.sort();
    let (listed, pages) = follow(curl_tool, &served, "/v2/team/app-042/tags/list?n=4", "tags");
    assert_eq!((listed.as_slice(), pages), (tags.as_slice(), 8));
    let (listed, _) = follow(
        curl_tool,
        &served,
        "/v2/team/app-042/tags/list?n=4&last=5",
        "tags",
    );
    assert_eq!(
        listed,
        tags[tags.iter().position(|t| t == "5").expect("5") + 1..]
    );

    let out = run_ok(skopeo.cmd().args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/team/app-042", served.host),
    ]));
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut seen: Vec<String> = said["Tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t.as_str().unwrap_or_default().to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, tags);

    let bad = curl(curl_tool, &[&served.url("/v2/_catalog?n=ten")]);
    assert_eq!(error_code(&bad.stdout), "PAGINATION_NUMBER_INVALID");
    assert!(stdout(&bad).contains("`ten`"), "{}", stdout(&bad));
    // Synthesized names are endless: none is listed, and their tag lists are empty.
    let (listed, _) = follow(curl_tool, &served, "/v2/mock/tags/list", "tags");
    assert!(listed.is_empty(), "{listed:?}");
}

/// The referrers API answers an empty OCI index for any subject, says when it filtered by
/// `artifactType`, refuses a bad digest, and is missing under `no-referrers/`.
#[test]
fn the_referrers_api_answers_and_no_referrers_hides_it() {
    let Some(curl_tool) = tool("curl") else {
        return;
    };
    let served = Served::start(&[]);
    let subject = format!("sha256:{}", "ab".repeat(32));
    let path = format!("/v2/mock/referrers/{subject}");
    let (status, head) = headers(curl_tool, &[&served.url(&path)]);
    assert_eq!(status, 200);
    assert_eq!(
        head.get("content-type").map(String::as_str),
        Some("application/vnd.oci.image.index.v1+json")
    );
    assert!(!head.contains_key("oci-filters-applied"), "{head:?}");
    let index: serde_json::Value =
        serde_json::from_slice(&curl(curl_tool, &[&served.url(&path)]).stdout).expect("JSON");
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"], serde_json::json!([]));

    let filtered = format!("{path}?artifactType=application/spdx%2Bjson");
    let (status, head) = headers(curl_tool, &[&served.url(&filtered)]);
    assert_eq!(status, 200);
    assert_eq!(
        head.get("oci-filters-applied").map(String::as_str),
        Some("artifactType")
    );

    let (status, _) = headers(
        curl_tool,
        &[&served.url("/v2/mock/referrers/sha256:nothex")],
    );
    assert_eq!(status, 400);
    let (status, _) = headers(
        curl_tool,
        &[&served.url(&format!("/v2/no-referrers/mock/referrers/{subject}"))],
    );
    assert_eq!(status, 404);
    // The prefix hides the API only: the image is there.
    let (status, _) = headers(
        curl_tool,
        &[
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &served.url("/v2/no-referrers/mock/manifests/1KB"),
        ],
    );
    assert_eq!(status, 200);
}

/// `ctr` in a namespace of the tests' own, against dockerd's containerd.
fn ctr(ctr: Tool) -> std::process::Command {
    let mut cmd = ctr.cmd();
    cmd.args([
        "-a",
        crate::serve::containerd_socket(),
        "-n",
        "image-maker-test",
    ]);
    cmd
}

/// The statuses the access log shows for requests whose line contains `path`, in order.
fn statuses(log: &str, path: &str) -> Vec<u16> {
    log.lines()
        .filter(|l| l.contains(&format!(" {path} HTTP/")))
        .filter_map(|l| l.rsplit_once("\" ")?.1.split(' ').next()?.parse().ok())
        .collect()
}

/// `ratelimit-2` refuses the first two requests of each manifest and blob with 429 and
/// `Retry-After`, and each client's way with it shows: curl (no retries) gets the 429,
/// skopeo waits as told and gets through, docker gives up on the manifest at once with the
/// registry's message, containerd retries without waiting and gets through.
#[test]
fn rate_limits_show_how_each_client_retries() {
    let (Some(curl_tool), Some(skopeo), Some(ctr_tool), Some(docker)) =
        (tool("curl"), tool("skopeo"), tool("ctr"), engine("docker"))
    else {
        return;
    };
    let served = Served::start(&[]);
    let manifest =
        |fault: &str, tag: &str| served.url(&format!("/v2/faults/{fault}/mock/manifests/{tag}"));
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";
    for (seen, status) in [(1, 429), (2, 429), (3, 200)] {
        let (got, head) = headers(curl_tool, &["-H", accept, &manifest("ratelimit-2", "1KB")]);
        assert_eq!(got, status, "request {seen}");
        assert_eq!(head.contains_key("retry-after"), status == 429, "{head:?}");
    }
    let out = curl(curl_tool, &["-H", accept, &manifest("ratelimit-1", "1KB")]);
    assert_eq!(error_code(&out.stdout), "TOOMANYREQUESTS");
    let (_, head) = headers(curl_tool, &[&manifest("ratelimit-long-1", "1KB")]);
    assert_eq!(head.get("retry-after").map(String::as_str), Some("3600"));
    let (_, head) = headers(curl_tool, &[&manifest("ratelimit-date-1", "1KB")]);
    let date = head.get("retry-after").expect("retry-after");
    let when = httpdate::parse_http_date(date).expect("an HTTP date");
    let ahead = when
        .duration_since(std::time::SystemTime::now() - std::time::Duration::from_secs(1))
        .expect("in the future");
    assert!(ahead <= std::time::Duration::from_secs(3), "{date}");

    let started = std::time::Instant::now();
    let layout = tempdir();
    run_ok(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/faults/ratelimit-2/mock:2KB", served.host),
        &format!("oci:{}:1", path_str(layout.path())),
    ]));
    // Two refusals of the manifest, one second each, before anything else.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    let log = served.log();
    assert_eq!(
        statuses(&log, "/v2/faults/ratelimit-2/mock/manifests/2KB"),
        [429, 429, 200]
    );
    run_ok(image_maker().args(["verify", "-q", &format!("oci:{}", path_str(layout.path()))]));

    let image = EngineImage::named(
        docker,
        format!("{}/faults/ratelimit-2/mock:3KB", served.host),
    );
    let out = run(docker.cmd().args(["pull", &image.reference]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("toomanyrequests"), "{}", stderr(&out));

    let reference = format!("{}/faults/ratelimit-2/mock:4KB", served.host);
    run_ok(ctr(ctr_tool).args(["images", "pull", "--plain-http", &reference]));
    let _ = ctr(ctr_tool).args(["images", "rm", &reference]).output();
    let log = served.log();
    let heads: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"HEAD /v2/faults/ratelimit-2/mock/manifests/4KB "))
        .collect();
    assert_eq!(heads.len(), 3, "{log}");
    assert!(heads[..2].iter().all(|l| l.contains("\" 429 ")), "{log}");
}

/// `no-length` sends blobs chunked and every client still pulls them whole;
/// `bad-digest-header` breaks containerd, which trusts the header, and not docker or
/// skopeo, which hash what they get.
#[test]
fn chunked_blobs_pull_and_a_lying_digest_header_breaks_containerd() {
    let (Some(curl_tool), Some(skopeo), Some(ctr_tool), Some(docker)) =
        (tool("curl"), tool("skopeo"), tool("ctr"), engine("docker"))
    else {
        return;
    };
    let served = Served::start(&[]);
    let tmp = tempdir();
    let built = json(&run_ok(image_maker().args([
        "-q",
        "--json",
        "-s",
        "1MB,3KB",
        "-o",
        &format!("oci:{}", path_str(&tmp.path().join("expected"))),
        "mock:1MB_3KB",
    ])));
    let layer = built["layers"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";
    // The manifest first: blobs are known by the manifests that name them.
    run_ok(curl_tool.cmd().args([
        "-sSf",
        "-o",
        "/dev/null",
        "-H",
        accept,
        &served.url("/v2/faults/no-length/mock/manifests/1MB_3KB"),
    ]));
    let blob_url = served.url(&format!("/v2/faults/no-length/mock/blobs/{layer}"));
    let (status, head) = headers(curl_tool, &[&blob_url]);
    assert_eq!(status, 200);
    assert!(!head.contains_key("content-length"), "{head:?}");
    assert_eq!(
        head.get("transfer-encoding").map(String::as_str),
        Some("chunked")
    );
    assert_eq!(sha256(&curl(curl_tool, &[&blob_url]).stdout), layer);

    let image = EngineImage::named(
        docker,
        format!("{}/faults/no-length/mock:1MB_3KB", served.host),
    );
    run_ok(docker.cmd().args(["pull", "-q", &image.reference]));
    let copied = tmp.path().join("copied");
    run_ok(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/faults/no-length/mock:1MB_3KB", served.host),
        &format!("oci:{}:1", path_str(&copied)),
    ]));
    run_ok(image_maker().args(["verify", "-q", &format!("oci:{}", path_str(&copied))]));

    let (_, head) = headers(
        curl_tool,
        &[
            "-I",
            "-H",
            accept,
            &served.url("/v2/faults/bad-digest-header/mock/manifests/1MB_3KB"),
        ],
    );
    let said = head.get("docker-content-digest").expect("a digest header");
    assert_ne!(said, built["digest"].as_str().expect("digest"));
    assert_eq!(said.len(), 71, "{said}");
    let reference = format!("{}/faults/bad-digest-header/mock:1MB_3KB", served.host);
    let out = run(ctr(ctr_tool).args(["images", "pull", "--plain-http", &reference]));
    assert!(
        !out.status.success(),
        "containerd pulled by the header's digest"
    );
    assert!(
        stderr(&out).contains(said.as_str()) || stdout(&out).contains(said.as_str()),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let copied = tmp.path().join("lied-to");
    run_ok(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci:{}:1", path_str(&copied)),
    ]));
    run_ok(image_maker().args(["verify", "-q", &format!("oci:{}", path_str(&copied))]));
}

/// `reset-at-N` cuts each blob's connection after N bytes: curl gets exactly N, skopeo and
/// containerd fail with their short-read errors. `slow-headers-DUR` holds the answer's
/// headers that long, and a client that waits gets the image.
#[test]
fn cut_connections_fail_pulls_and_slow_headers_only_delay_them() {
    let (Some(curl_tool), Some(skopeo), Some(ctr_tool)) =
        (tool("curl"), tool("skopeo"), tool("ctr"))
    else {
        return;
    };
    let served = Served::start(&[]);
    let tmp = tempdir();
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";
    let manifest = curl(
        curl_tool,
        &[
            "-H",
            accept,
            &served.url("/v2/faults/reset-at-4096/mock/manifests/1MB"),
        ],
    );
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).expect("JSON");
    let layer = manifest["layers"][0]["digest"].as_str().expect("digest");
    let out = curl(
        curl_tool,
        &[&served.url(&format!("/v2/faults/reset-at-4096/mock/blobs/{layer}"))],
    );
    assert!(!out.status.success(), "curl saw a whole blob");
    assert_eq!(out.stdout.len(), 4096);

    let out = run(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/faults/reset-at-4096/mock:1MB", served.host),
        &format!("oci:{}:1", path_str(&tmp.path().join("cut"))),
    ]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unexpected EOF"), "{}", stderr(&out));
    let reference = format!("{}/faults/reset-at-4096/mock:2MB", served.host);
    let out = run(ctr(ctr_tool).args(["images", "pull", "--plain-http", &reference]));
    assert!(!out.status.success());
    assert!(
        format!("{}{}", stdout(&out), stderr(&out)).contains("unexpected EOF"),
        "{}",
        stderr(&out)
    );

    let timed = run_ok(curl_tool.cmd().args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{time_starttransfer}",
        "-H",
        accept,
        &served.url("/v2/faults/slow-headers-1500ms/mock/manifests/1KB"),
    ]));
    let waited: f64 = stdout(&timed).trim().parse().expect("seconds");
    assert!(waited >= 1.5, "{waited}");
    let started = std::time::Instant::now();
    run_ok(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        &format!(
            "docker://{}/faults/slow-headers-300ms/mock:1KB",
            served.host
        ),
        &format!("oci:{}:1", path_str(&tmp.path().join("slow"))),
    ]));
    // The manifest, then its blobs (which may come at once): two holds one after the other.
    assert!(started.elapsed() >= std::time::Duration::from_millis(600));
}

/// Docker's media types: `docker/` and a client that accepts only Docker's manifests get the
/// schema 2 form, whose digest `image-maker tag --digests` prints, the CLI builds and pushes
/// with `--media-types docker`, docker pulls by, and skopeo shows the type of; the config,
/// the image ID, is the OCI form's.
#[test]
fn docker_media_types_are_served_built_and_pushed_digest_for_digest() {
    let (Some(curl_tool), Some(skopeo), Some(docker)) =
        (tool("curl"), tool("skopeo"), engine("docker"))
    else {
        return;
    };
    let Some(registry) = crate::support::registry::Registry::start() else {
        return;
    };
    let served = Served::start(&[]);
    let digests = |spec: &str, platform: &str| {
        let out = run_ok(image_maker().args(["tag", "--digests", spec, "--platform", platform]));
        let text = stdout(&out);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|d| d.trim().to_owned())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        (field("oci "), field("docker "))
    };
    let (oci, docker_digest) = digests("1MB:compression=gzip,2KB", "linux/amd64");
    assert_ne!(oci, docker_digest);

    let name = format!("{}/docker/mock:1MB.compression-gzip_2KB", served.host);
    let raw = json(&run_ok(skopeo.cmd().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ])));
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let image = EngineImage::named(docker, name);
    run_ok(docker.cmd().args(["pull", "-q", &image.reference]));
    let repo_digests = image.inspect("{{json .RepoDigests}}");
    assert!(repo_digests.contains(&docker_digest), "{repo_digests}");

    // Negotiated: a client that takes only Docker's types gets them under any name.
    let (status, head) = headers(
        curl_tool,
        &[
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
            &served.url("/v2/mock/manifests/1MB.compression-gzip_2KB"),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(head.get("docker-content-digest"), Some(&docker_digest));
    let (_, head) = headers(
        curl_tool,
        &[
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &served.url("/v2/mock/manifests/1MB.compression-gzip_2KB"),
        ],
    );
    assert_eq!(head.get("docker-content-digest"), Some(&oci));

    // An index is a manifest list, whose manifests docker then asks for by digest.
    let (_, list_digest) = digests("64KB", "linux/amd64,linux/arm64");
    let list = json(&run_ok(skopeo.cmd().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!(
            "docker://{}/docker/platform/linux-amd64_linux-arm64/mock:64KB",
            served.host
        ),
    ])));
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let pulled = EngineImage::named(
        docker,
        format!(
            "{}/docker/platform/linux-amd64_linux-arm64/mock:64KB",
            served.host
        ),
    );
    run_ok(docker.cmd().args(["pull", "-q", &pulled.reference]));
    assert!(pulled
        .inspect("{{json .RepoDigests}}")
        .contains(&list_digest));

    // The CLI's Docker form is the same bytes, pushed as such.
    let tmp = tempdir();
    let target = format!("{}/image-maker-test/docker-{}:1", registry.host(), unique());
    let built = json(&run_ok(
        image_maker()
            .env("DOCKER_CONFIG", tmp.path())
            .args([
                "-q",
                "--json",
                "--media-types",
                "docker",
                "-s",
                "1MB:compression=gzip,2KB",
            ])
            .args(["-o", "registry", "-o"])
            .arg(format!("oci:{}", path_str(&tmp.path().join("layout"))))
            .arg(&target),
    ));
    assert_eq!(built["digest"], docker_digest.as_str());
    assert_eq!(built["pushed"]["digest"], docker_digest.as_str());
    let raw = json(&run_ok(skopeo.cmd().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ])));
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    run_ok(image_maker().args([
        "verify",
        "-q",
        &format!("oci:{}", path_str(&tmp.path().join("layout"))),
    ]));
    let out = run(image_maker().args([
        "-q",
        "--media-types",
        "docker",
        "--builder",
        "dockerfile",
        "-s",
        "1KB",
        "-o",
        "oci:never",
        "a:1",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Docker media types"),
        "{}",
        stderr(&out)
    );
}

/// The port of a URL: `http://127.0.0.1:PORT/…`.
fn port_of(url: &str) -> &str {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|host| host.rsplit_once(':'))
        .map_or("", |(_, port)| port)
}

/// `redirect` answers blob GETs 307 to the server's second listener under a signed URL:
/// skopeo (with the registry's credentials) and docker follow it and get their blobs there,
/// since neither forwards `Authorization` to another origin; curl that does is refused
/// with S3's 400, and an altered URL with 403.
#[test]
fn redirects_go_to_a_blob_store_that_refuses_forwarded_credentials() {
    let (Some(curl_tool), Some(skopeo), Some(docker)) =
        (tool("curl"), tool("skopeo"), engine("docker"))
    else {
        return;
    };
    let password = format!("pw-{}", unique());
    let served = Served::start(&["--auth", &format!("basic:alice:{password}")]);
    let creds = format!("alice:{password}");
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";
    let manifest = curl(
        curl_tool,
        &[
            "-u",
            &creds,
            "-H",
            accept,
            &served.url("/v2/faults/redirect/mock/manifests/1MB"),
        ],
    );
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).expect("JSON");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let blob = served.url(&format!("/v2/faults/redirect/mock/blobs/{layer}"));
    let (status, head) = headers(curl_tool, &["-u", &creds, &blob]);
    assert_eq!(status, 307);
    let location = head.get("location").expect("a Location").clone();
    assert_ne!(port_of(&location), port_of(&served.url("/")), "{location}");
    assert!(
        location.contains("expires=") && location.contains("signature="),
        "{location}"
    );

    // Followed without credentials: the blob, byte for byte.
    let got = curl(curl_tool, &["-L", "-u", &creds, &blob]);
    assert_eq!(sha256(&got.stdout), layer);
    // Forwarded credentials, as a careless client sends them: S3's refusal.
    let forwarded = curl(
        curl_tool,
        &["-L", "--location-trusted", "-u", &creds, &blob],
    );
    assert!(
        stdout(&forwarded).contains("<Code>InvalidArgument</Code>"),
        "{}",
        stdout(&forwarded)
    );
    let (status, _) = headers(curl_tool, &["-H", "Authorization: Bearer x", &location]);
    assert_eq!(status, 400);
    let altered = location.replace("signature=", "signature=x");
    let (status, _) = headers(curl_tool, &[&altered]);
    assert_eq!(status, 403);
    let other = location.replace(&layer, &format!("sha256:{}", "0".repeat(64)));
    let refused = curl(curl_tool, &[&other]);
    assert!(
        stdout(&refused).contains("SignatureDoesNotMatch"),
        "{}",
        stdout(&refused)
    );

    let tmp = tempdir();
    run_ok(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("docker://{}/faults/redirect/mock:1MB_2KB", served.host),
        &format!("oci:{}:1", path_str(&tmp.path().join("copied"))),
    ]));
    run_ok(image_maker().args([
        "verify",
        "-q",
        &format!("oci:{}", path_str(&tmp.path().join("copied"))),
    ]));
    let log = served.log();
    let from_store = log
        .lines()
        .filter(|l| l.contains("\"GET /store/faults/redirect/mock/blobs/") && l.contains("\" 200 "))
        .count();
    // The config and both layers.
    assert!(from_store >= 3, "{log}");

    let config = tmp.path().join("docker");
    fs::create_dir_all(&config).expect("mkdir");
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&creds)
    };
    fs::write(
        config.join("config.json"),
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
            served.host
        ),
    )
    .expect("write");
    let image = EngineImage::named(
        docker,
        format!("{}/faults/redirect/mock:1MB_3KB", served.host),
    );
    run_ok(
        docker
            .cmd()
            .env("DOCKER_CONFIG", &config)
            .args(["pull", "-q", &image.reference]),
    );
    assert!(image.exists());
}

/// `foreign` makes every layer non-distributable with `urls` at the blob store, and the
/// registry refuses them: containerd fetches them from there; docker asks the registry and
/// fails; skopeo copies the manifest and leaves such layers where they are.
#[test]
fn foreign_layers_come_from_their_urls_or_not_at_all() {
    let (Some(curl_tool), Some(skopeo), Some(ctr_tool), Some(docker)) =
        (tool("curl"), tool("skopeo"), tool("ctr"), engine("docker"))
    else {
        return;
    };
    let served = Served::start(&[]);
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";
    let manifest = curl(
        curl_tool,
        &[
            "-H",
            accept,
            &served.url("/v2/faults/foreign/mock/manifests/1MB_2KB"),
        ],
    );
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).expect("JSON");
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.oci.image.layer.nondistributable.v1.tar"
    );
    let digest = layer["digest"].as_str().expect("digest");
    let url = layer["urls"][0].as_str().expect("a url");
    assert_ne!(port_of(url), port_of(&served.url("/")), "{url}");
    assert_eq!(sha256(&curl(curl_tool, &[url]).stdout), digest);
    // Signed for that layer alone: no other blob is had without the registry's say.
    let (unsigned, _) = url.split_once('?').expect("a signed URL");
    let (status, _) = headers(curl_tool, &[unsigned]);
    assert_eq!(status, 403);
    let config = manifest["config"]["digest"].as_str().expect("digest");
    let (status, _) = headers(curl_tool, &[&url.replace(digest, config)]);
    assert_eq!(status, 403);
    let refused = curl(
        curl_tool,
        &[&served.url(&format!("/v2/faults/foreign/mock/blobs/{digest}"))],
    );
    assert_eq!(error_code(&refused.stdout), "BLOB_UNKNOWN");

    let reference = format!("{}/faults/foreign/mock:1MB_3KB", served.host);
    run_ok(ctr(ctr_tool).args(["images", "pull", "--plain-http", &reference]));
    let _ = ctr(ctr_tool).args(["images", "rm", &reference]).output();
    let log = served.log();
    assert!(
        log.lines()
            .filter(|l| l.contains("\"GET /foreign/sha256:") && l.contains("\" 200 "))
            .count()
            >= 2,
        "{log}"
    );

    let image = EngineImage::named(
        docker,
        format!("{}/faults/foreign/mock:1MB_4KB", served.host),
    );
    let out = run(docker.cmd().args(["pull", &image.reference]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown blob"), "{}", stderr(&out));

    let tmp = tempdir();
    let copied = tmp.path().join("copied");
    run_ok(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/faults/foreign/mock:1MB_5KB", served.host),
        &format!("oci:{}:1", path_str(&copied)),
    ]));
    let blobs: Vec<String> = fs::read_dir(copied.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    // The manifest and the config, and no layer.
    assert_eq!(blobs.len(), 2, "{blobs:?}");
}

/// `artifacts/` attaches a signature, an SBOM and an attestation to each image manifest:
/// the referrers API lists them (filtered when asked), skopeo reads each one's `subject`,
/// and the SBOM is the oracle's own SPDX document, which spdx-tools validates. An image too
/// large to hash for an SBOM is refused with the limit named.
#[test]
fn artifacts_refer_to_their_image_and_the_sbom_is_valid_spdx() {
    let (Some(curl_tool), Some(skopeo), Some(pyspdxtools)) =
        (tool("curl"), tool("skopeo"), tool("pyspdxtools"))
    else {
        return;
    };
    let served = Served::start(&[]);
    let spec = "64KB:tree=8:symlinks=2,1KB";
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";
    let digest_of = |path: &str| {
        let (status, head) = headers(curl_tool, &["-H", accept, &served.url(path)]);
        assert_eq!(status, 200, "{path}");
        head.get("docker-content-digest")
            .cloned()
            .expect("a digest")
    };
    let subject = digest_of("/v2/artifacts/mock/manifests/64KB.tree-8.symlinks-2_1KB");
    // The image is the one every other name serves.
    assert_eq!(
        digest_of("/v2/mock/manifests/64KB.tree-8.symlinks-2_1KB"),
        subject
    );
    let referrers = |query: &str| -> serde_json::Value {
        let url = served.url(&format!("/v2/artifacts/mock/referrers/{subject}{query}"));
        serde_json::from_slice(&curl(curl_tool, &[&url]).stdout).expect("JSON")
    };
    let all = referrers("");
    let types: Vec<&str> = all["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["artifactType"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.dev.cosign.artifact.sig.v1+json",
            "application/spdx+json",
            "application/vnd.in-toto+json"
        ]
    );
    // A repository's referrers are its own.
    let elsewhere = served.url(&format!("/v2/other/referrers/{subject}"));
    let none: serde_json::Value =
        serde_json::from_slice(&curl(curl_tool, &[&elsewhere]).stdout).expect("JSON");
    assert_eq!(none["manifests"], serde_json::json!([]));
    let sboms = referrers("?artifactType=application/spdx%2Bjson");
    assert_eq!(sboms["manifests"].as_array().map(Vec::len), Some(1));
    let sbom_manifest = sboms["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();

    let raw = json(&run_ok(skopeo.cmd().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/artifacts/mock@{sbom_manifest}", served.host),
    ])));
    assert_eq!(raw["subject"]["digest"], subject.as_str());
    assert_eq!(raw["artifactType"], "application/spdx+json");
    let payload = raw["layers"][0]["digest"].as_str().expect("digest");
    let tmp = tempdir();
    let sbom = tmp.path().join("sbom.spdx.json");
    let bytes = curl(
        curl_tool,
        &[&served.url(&format!("/v2/artifacts/mock/blobs/{payload}"))],
    )
    .stdout;
    assert_eq!(sha256(&bytes), payload);
    assert_eq!(
        bytes,
        run_ok(image_maker().args(["expect", "--format", "spdx", spec])).stdout
    );
    fs::write(&sbom, &bytes).expect("write");
    run_ok(pyspdxtools.cmd().args(["-i", path_str(&sbom)]));

    // An index: each platform's manifest has its own.
    let index: serde_json::Value = serde_json::from_slice(
        &curl(
            curl_tool,
            &[
                "-H",
                "Accept: application/vnd.oci.image.index.v1+json",
                &served.url("/v2/artifacts/platform/linux-amd64_linux-arm64/mock/manifests/16KB"),
            ],
        )
        .stdout,
    )
    .expect("JSON");
    for child in index["manifests"].as_array().expect("manifests") {
        let digest = child["digest"].as_str().expect("digest");
        let url = served.url(&format!("/v2/artifacts/mock/referrers/{digest}"));
        let listed: serde_json::Value =
            serde_json::from_slice(&curl(curl_tool, &[&url]).stdout).expect("JSON");
        assert_eq!(
            listed["manifests"].as_array().map(Vec::len),
            Some(3),
            "{digest}"
        );
    }

    let too_big = curl(
        curl_tool,
        &[
            "-H",
            accept,
            &served.url("/v2/artifacts/mock/manifests/2GB"),
        ],
    );
    assert_eq!(error_code(&too_big.stdout), "DENIED");
    assert!(
        stdout(&too_big).contains("at most 1GB"),
        "{}",
        stdout(&too_big)
    );
}

/// `--artifacts`: the layout lists the three artifacts beside the image (and stays one
/// image to skopeo and verify); a push to docker-registry, which has no referrers API,
/// tags them `sha256-<hex>` as the distribution spec's fallback says, once however often
/// it is pushed, and skopeo copies that tag with `--all`.
#[test]
fn built_artifacts_land_in_the_layout_and_push_under_the_referrers_tag() {
    let (Some(skopeo), Some(pyspdxtools)) = (tool("skopeo"), tool("pyspdxtools")) else {
        return;
    };
    let Some(registry) = crate::support::registry::Registry::start() else {
        return;
    };
    let tmp = tempdir();
    let spec = "64KB:tree=4,1KB";
    let layout = tmp.path().join("layout");
    let repo = format!("image-maker-test/artifacts-{}", unique());
    let target = format!("{}/{repo}:1", registry.host());
    let push = || {
        json(&run_ok(
            image_maker()
                .env("DOCKER_CONFIG", tmp.path())
                .args([
                    "-q",
                    "--json",
                    "--artifacts",
                    "-s",
                    spec,
                    "-o",
                    "registry",
                    "-o",
                ])
                .arg(format!("oci:{}", path_str(&layout)))
                .arg(&target),
        ))
    };
    let built = push();
    let digest = built["digest"].as_str().expect("digest").to_owned();

    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("JSON");
    let entries = index["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), 4, "{index}");
    let sbom_entry = entries
        .iter()
        .find(|m| m["artifactType"] == "application/spdx+json")
        .expect("an SBOM");
    let sbom_manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            layout.join("blobs/sha256").join(
                sbom_entry["digest"]
                    .as_str()
                    .expect("digest")
                    .trim_start_matches("sha256:"),
            ),
        )
        .expect("the SBOM's manifest"),
    )
    .expect("JSON");
    assert_eq!(sbom_manifest["subject"]["digest"], digest.as_str());
    let payload = layout.join("blobs/sha256").join(
        sbom_manifest["layers"][0]["digest"]
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:"),
    );
    assert_eq!(
        fs::read(&payload).expect("the SBOM"),
        run_ok(image_maker().args(["expect", "--format", "spdx", spec])).stdout
    );
    // spdx-tools knows a document by its file name's ending.
    let named = tmp.path().join("sbom.spdx.json");
    fs::copy(&payload, &named).expect("copy");
    run_ok(pyspdxtools.cmd().args(["-i", path_str(&named)]));
    run_ok(image_maker().args(["verify", "-q", &format!("oci:{}", path_str(&layout))]));
    run_ok(
        skopeo
            .cmd()
            .args(["inspect", &format!("oci:{}:1", path_str(&layout))]),
    );

    let tag = format!("sha256-{}", digest.trim_start_matches("sha256:"));
    let listed = |repository: &str| {
        json(&run_ok(skopeo.cmd().args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/{repository}:{tag}", registry.host()),
        ])))
    };
    let referrers = listed(&repo);
    assert_eq!(
        referrers["manifests"].as_array().map(Vec::len),
        Some(3),
        "{referrers}"
    );
    assert!(referrers["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .any(|m| m["artifactType"] == "application/vnd.in-toto+json"));
    // Again, from the cache: the tag keeps three.
    push();
    assert_eq!(listed(&repo)["manifests"].as_array().map(Vec::len), Some(3));

    let copy = format!("{repo}-copy");
    run_ok(skopeo.cmd().args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/{repo}:{tag}", registry.host()),
        &format!("docker://{}/{copy}:{tag}", registry.host()),
    ]));
    assert_eq!(listed(&copy)["manifests"].as_array().map(Vec::len), Some(3));

    let out = run(image_maker().args([
        "-q",
        "--artifacts",
        "-s",
        "1KB",
        "--add",
        "/bin/true:/bin/true",
        "-o",
        "oci:never",
        "a:1",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--artifacts cannot describe"),
        "{}",
        stderr(&out)
    );
}
