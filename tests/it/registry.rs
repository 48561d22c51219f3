//! Pushing to a real registry: Debian's `docker-registry` (CNCF distribution), one per test
//! on a loopback port of its own, checked with skopeo, oci-image-tool and docker.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::registry::*;
use crate::support::*;

const SPEC: &str = "3MB,1KB";

#[test]
fn a_registry_whose_port_is_taken_starts_on_another() {
    // Held for the whole test: the registry cannot have this port.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let Some(registry) = Registry::start_with(None, Some(port)) else {
        return;
    };
    assert_ne!(registry.port, port);
    assert!(registry.answers());
    assert!(
        registry.log().contains("address already in use"),
        "{}",
        registry.log()
    );
}

/// `image-maker` with no credentials from the environment or a docker config.
fn anonymous(config_dir: &Path) -> Command {
    let mut cmd = image_maker();
    cmd.env_remove("IMAGE_MAKER_USERNAME")
        .env_remove("IMAGE_MAKER_PASSWORD")
        .env("DOCKER_CONFIG", config_dir);
    cmd
}

fn build_oci(dir: &Path, reference: &str) {
    run_ok(image_maker().args([
        "-q",
        "-s",
        SPEC,
        "-o",
        &format!("oci:{}", path_str(dir)),
        reference,
    ]));
}

fn skopeo_digest(skopeo: Tool, image: &str, extra: &[&str]) -> String {
    let out = run_ok(
        skopeo
            .cmd()
            .args(["inspect", "--tls-verify=false"])
            .args(extra)
            .arg(image),
    );
    json(&out)["Digest"].as_str().expect("a digest").to_owned()
}

#[test]
fn pushed_manifest_digest_equals_the_oci_build() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    build_oci(&layout, "mock/big:1");
    let local = skopeo_digest(skopeo, &format!("oci:{}:1", path_str(&layout)), &[]);
    let target = format!("{}/mock/big:1", registry.host());
    let out = run_ok(anonymous(tmp.path()).args(["-s", SPEC, "-o", "registry", "--json", &target]));
    let summary = json(&out);
    assert_eq!(summary["pushed"]["digest"], local.as_str(), "{summary}");
    assert_eq!(summary["pushed"]["reference"], target.as_str());
    assert_eq!(summary["digest"], local.as_str());
    assert_eq!(
        skopeo_digest(skopeo, &format!("docker://{target}"), &[]),
        local
    );
}

#[test]
fn skopeo_pulls_it_back_and_oci_image_tool_validates_it() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let (Some(skopeo), Some(oci_image_tool)) = (tool("skopeo"), tool("oci-image-tool")) else {
        return;
    };
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    build_oci(&layout, "mock/pull:1");
    let target = format!("{}/mock/pull:1", registry.host());
    run_ok(anonymous(tmp.path()).args(["push", &format!("oci:{}:1", path_str(&layout)), &target]));
    let pulled = tmp.path().join("pulled");
    run_ok(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:1", path_str(&pulled)),
    ]));
    assert_valid_layout(oci_image_tool, &pulled, "1");
}

#[test]
fn docker_pulls_the_pushed_image() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let image = EngineImage::named(
        docker,
        format!("{}/image-maker-test/pull:{}", registry.host(), unique()),
    );
    let target = image.reference.as_str();
    let out = run_ok(anonymous(tmp.path()).args(["-s", SPEC, "-o", "registry", "--json", target]));
    let digest = json(&out)["digest"].as_str().expect("digest").to_owned();
    let pulled = run(docker.cmd().args(["pull", target]));
    assert!(pulled.status.success(), "docker pull: {}", stderr(&pulled));
    assert!(stdout(&pulled).contains(&digest), "{}", stdout(&pulled));
}

#[test]
fn a_second_push_uploads_no_blob() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    build_oci(&layout, "mock/again:1");
    let source = format!("oci:{}", path_str(&layout));
    let target = format!("{}/mock/again:1", registry.host());
    let first = json(&run_ok(
        anonymous(tmp.path()).args(["push", "--json", &source, &target]),
    ));
    assert_eq!(first["uploaded"], 3, "{first}");
    let before = registry.uploads("mock/again");
    // POST + PUT for each of three blobs.
    assert_eq!(before, 6, "{}", registry.log());
    let second = json(&run_ok(
        anonymous(tmp.path()).args(["push", "--json", &source, &target]),
    ));
    assert_eq!(
        (second["uploaded"].clone(), second["skipped"].clone()),
        (0.into(), 3.into())
    );
    assert_eq!(second["digest"], first["digest"]);
    assert_eq!(registry.uploads("mock/again"), before, "{}", registry.log());
}

#[test]
fn chunked_upload_patches_and_lands_the_same_image() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    build_oci(&layout, "mock/chunks:1");
    let target = format!("{}/mock/chunks:1", registry.host());
    let out = run_ok(anonymous(tmp.path()).args([
        "push",
        "--json",
        "--chunk-size",
        "1MB",
        &format!("oci:{}", path_str(&layout)),
        &target,
    ]));
    // Config: 1 chunk; 3 MiB + tar headers: 4; 1 KiB layer: 1.
    assert_eq!(registry.patches("mock/chunks"), 6, "{}", registry.log());
    let local = skopeo_digest(skopeo, &format!("oci:{}:1", path_str(&layout)), &[]);
    assert_eq!(json(&out)["digest"], local.as_str());
    assert_eq!(
        skopeo_digest(skopeo, &format!("docker://{target}"), &[]),
        local
    );
}

#[test]
fn mount_from_another_repository_uploads_nothing() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    build_oci(&layout, "mock/base:1");
    let source = format!("oci:{}", path_str(&layout));
    run_ok(anonymous(tmp.path()).args([
        "push",
        &source,
        &format!("{}/mock/base:1", registry.host()),
    ]));
    let out = run_ok(anonymous(tmp.path()).args([
        "push",
        "--json",
        "--mount-from",
        "mock/base",
        &source,
        &format!("{}/mock/derived:1", registry.host()),
    ]));
    assert_eq!(json(&out)["mounted"], 3, "{}", stdout(&out));
    assert_eq!(registry.mounts("mock/derived"), 3, "{}", registry.log());
    assert_eq!(registry.uploads("mock/derived"), 0, "{}", registry.log());
}

#[test]
fn basic_auth_needs_credentials_and_never_shows_them() {
    const PASSWORD: &str = "s3cret-Pa55word";
    let Some(registry) = Registry::with_basic_auth("tester", PASSWORD) else {
        return;
    };
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    build_oci(&layout, "mock/auth:1");
    let source = format!("oci:{}", path_str(&layout));
    let target = format!("{}/mock/auth:1", registry.host());

    let denied = run(anonymous(tmp.path()).args(["push", "-v", &source, &target]));
    assert_eq!(denied.status.code(), Some(1));
    let err = stderr(&denied);
    assert!(
        err.contains(&format!(
            "registry `{}` refused access to `mock/auth` (401)",
            registry.host()
        )),
        "{err}"
    );
    assert!(err.contains("hint: check the credentials"), "{err}");

    let wrong = run(anonymous(tmp.path())
        .env("IMAGE_MAKER_USERNAME", "tester")
        .env("IMAGE_MAKER_PASSWORD", "wrong-Pa55word")
        .args(["push", "-v", &source, &target]));
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("(401)"), "{}", stderr(&wrong));
    assert!(
        !stderr(&wrong).contains("wrong-Pa55word"),
        "{}",
        stderr(&wrong)
    );

    let ok = run_ok(
        anonymous(tmp.path())
            .env("IMAGE_MAKER_USERNAME", "tester")
            .env("IMAGE_MAKER_PASSWORD", PASSWORD)
            .args(["push", "-v", "--json", &source, &target]),
    );
    let all = format!("{}{}", stdout(&ok), stderr(&ok));
    assert!(!all.contains(PASSWORD), "{all}");
    assert!(stderr(&ok).contains("user `tester`"), "{}", stderr(&ok));
    if let Some(skopeo) = tool("skopeo") {
        let digest = skopeo_digest(
            skopeo,
            &format!("docker://{target}"),
            &["--creds", &format!("tester:{PASSWORD}")],
        );
        assert_eq!(json(&ok)["digest"], digest.as_str());
    }
}

#[test]
fn credentials_come_from_the_docker_config_and_its_helpers() {
    const PASSWORD: &str = "helper-Pa55word";
    let Some(registry) = Registry::with_basic_auth("tester", PASSWORD) else {
        return;
    };
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    build_oci(&layout, "mock/config:1");
    let source = format!("oci:{}", path_str(&layout));

    // `auths` with base64 `user:password`, as `docker login` writes it.
    let auths = tmp.path().join("auths");
    fs::create_dir(&auths).expect("mkdir");
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("tester:{PASSWORD}"),
    );
    fs::write(
        auths.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{encoded}"}}}}}}"#,
            registry.host()
        ),
    )
    .expect("write config");
    run_ok(anonymous(&auths).args([
        "push",
        &source,
        &format!("{}/mock/config:1", registry.host()),
    ]));

    // A credential helper on PATH, named by `credHelpers`.
    let helpers = tmp.path().join("helpers");
    fs::create_dir(&helpers).expect("mkdir");
    let script = helpers.join("docker-credential-imtest");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = {} ] || exit 1\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"tester\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
            registry.host()
        ),
    )
    .expect("write helper");
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    fs::write(
        helpers.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"imtest"}}}}"#, registry.host()),
    )
    .expect("write config");
    let path = format!(
        "{}:{}",
        path_str(&helpers),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run_ok(anonymous(&helpers).env("PATH", path).args([
        "push",
        "-v",
        &source,
        &format!("{}/mock/helper:1", registry.host()),
    ]));
    assert!(
        stderr(&out).contains("docker-credential-imtest"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(PASSWORD), "{}", stderr(&out));
}

#[test]
fn a_registry_stopped_mid_push_fails_after_bounded_retries_and_a_restarted_one_accepts() {
    let Some(mut registry) = Registry::start() else {
        return;
    };
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    run_ok(image_maker().args([
        "-q",
        "-s",
        "8MB,1KB",
        "-o",
        &format!("oci:{}", path_str(&layout)),
        "mock/stop:1",
    ]));
    let source = format!("oci:{}", path_str(&layout));
    let target = format!("{}/mock/stop:1", registry.host());
    // Small chunks make the push long enough (hundreds of PATCHes) to stop it in the middle.
    let push = spawn(
        anonymous(tmp.path())
            .env("IMAGE_MAKER_PUSH_RETRIES", "2")
            .env("IMAGE_MAKER_PUSH_BACKOFF_MS", "100")
            .args(["push", "--chunk-size", "16KB", &source, &target]),
    );
    wait_for(
        "the push to upload a few chunks",
        Duration::from_secs(20),
        || registry.patches("mock/stop") >= 3,
    );
    // Frozen first, so the push cannot finish in between; then gone.
    registry.signal(Signal::SIGSTOP);
    registry.stop();
    // Three attempts with waits of 100 and 200 ms: bounded, far below the limit.
    let out = push.finish_within(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("after 3 attempts"), "{err}");
    assert!(err.contains("retrying in"), "{err}");
    assert!(err.contains("hint: check that the registry runs"), "{err}");

    assert!(
        matches!(registry.run(), Started::Answering),
        "the port was taken while the registry was stopped"
    );
    let out = run_ok(anonymous(tmp.path()).args(["push", "--json", &source, &target]));
    if let Some(skopeo) = tool("skopeo") {
        assert_eq!(
            skopeo_digest(skopeo, &format!("docker://{target}"), &[]),
            json(&out)["digest"].as_str().expect("digest")
        );
    }
}

/// A "registry" that takes connections and never answers: a push that reaches it has its
/// layout ready. Held by the test, so no other process gets its port.
struct Silent {
    listener: TcpListener,
}

impl Silent {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        Self { listener }
    }

    fn host(&self) -> String {
        format!(
            "127.0.0.1:{}",
            self.listener.local_addr().expect("address").port()
        )
    }

    /// Waits for the first connection that sends a request and returns it; one that closes
    /// without a byte is the check the CLI makes before building, and is passed over.
    fn accept(&self) -> TcpStream {
        loop {
            let mut stream = None;
            wait_for(
                "the push to connect",
                Duration::from_secs(120),
                || match self.listener.accept() {
                    Ok((s, _)) => {
                        stream = Some(s);
                        true
                    }
                    Err(_) => false,
                },
            );
            let stream = stream.expect("a connection");
            stream.set_nonblocking(false).expect("blocking");
            stream
                .set_read_timeout(Some(Duration::from_secs(120)))
                .expect("timeout");
            if stream.peek(&mut [0; 1]).is_ok_and(|n| n > 0) {
                return stream;
            }
        }
    }
}

/// Runs `args` (a build with `-o registry` to a [`Silent`] registry, with `TMPDIR` set to
/// `scratch`): while it connects, its staged layout is complete in `scratch`; once the
/// connection closes, the push fails and the staging directory is gone.
fn assert_staging_is_removed(build: &mut Command, scratch: &Path, registry: Silent) -> String {
    let push = spawn(
        build
            .env("TMPDIR", scratch)
            .env("IMAGE_MAKER_PUSH_RETRIES", "0"),
    );
    let connection = registry.accept();
    let staged: Vec<String> = entries(scratch)
        .into_iter()
        .filter(|name| name.starts_with("image-maker-push-"))
        .collect();
    assert_eq!(staged.len(), 1, "{:?}", entries(scratch));
    let layout = scratch.join(&staged[0]).join("layout");
    assert!(
        layout.join("index.json").is_file() && layout.join("oci-layout").is_file(),
        "{:?}",
        files_under(&layout)
    );
    drop(connection);
    drop(registry);
    let out = push.finish_within(Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(entries(scratch).is_empty(), "{:?}", entries(scratch));
    stderr(&out)
}

#[test]
fn a_failed_push_without_the_cache_removes_its_staging() {
    let tmp = tempdir();
    let scratch = tmp.path().join("tmp");
    fs::create_dir(&scratch).expect("mkdir");
    let registry = Silent::new();
    let target = format!("{}/mock/staged:1", registry.host());
    let err = assert_staging_is_removed(
        anonymous(tmp.path()).current_dir(tmp.path()).args([
            "--no-cache",
            "-s",
            "1KB",
            "-o",
            "registry",
            "-o",
            "oci:out",
            &target,
        ]),
        &scratch,
        registry,
    );
    assert!(err.contains("error: "), "{err}");
    // The push comes before the file outputs land: they do not.
    assert_eq!(entries(tmp.path()), ["tmp"]);
}

#[test]
fn a_failed_push_of_the_dockerfile_builder_removes_its_staging() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let scratch = tmp.path().join("tmp");
    fs::create_dir(&scratch).expect("mkdir");
    // docker's client writes into its config directory (`.buildNodeID`): one of its own.
    let config = tempdir();
    let registry = Silent::new();
    let image = EngineImage::named(
        docker,
        format!("{}/mock/staged:{}", registry.host(), unique()),
    );
    let err = assert_staging_is_removed(
        anonymous(config.path()).current_dir(tmp.path()).args([
            "-b",
            "dockerfile",
            "-e",
            "docker",
            "-s",
            "1KB",
            "-o",
            "registry",
            &image.reference,
        ]),
        &scratch,
        registry,
    );
    assert!(err.contains("error: "), "{err}");
    assert_eq!(entries(tmp.path()), ["tmp"]);
    assert!(!image.exists(), "{} left in docker", image.reference);
}

#[test]
fn a_failed_push_leaves_no_files_and_bad_input_is_a_usage_error() {
    let tmp = tempdir();
    // Nothing listens on port 1: the push fails before anything is built, also with another
    // output asked for.
    let out = run(anonymous(tmp.path())
        .env("IMAGE_MAKER_PUSH_RETRIES", "1")
        .env("IMAGE_MAKER_PUSH_BACKOFF_MS", "10")
        .current_dir(tmp.path())
        .args([
            "-s",
            "1KB",
            "-o",
            "registry",
            "-o",
            "oci:out",
            "127.0.0.1:1/mock/x:1",
        ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("registry `127.0.0.1:1` refuses connections"),
        "{}",
        stderr(&out)
    );
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));

    let usage = |args: &[&str], message: &str| {
        let out = run(anonymous(tmp.path()).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    };
    usage(
        &["push", "out", "x:1"],
        "push source `out` is not `oci:DIR`, `oci:DIR:TAG` or `cache:SPEC`",
    );
    usage(
        &["push", "--chunk-size", "0", "oci:out", "x:1"],
        "chunk size `0` is zero",
    );
    usage(&["push", "oci:out", "Bad/Name"], "must be lowercase");
    let missing = run(anonymous(tmp.path()).args(["push", "oci:nowhere", "127.0.0.1:1/x:1"]));
    // The source is read before the registry is tried, by the reader verify uses: a source
    // that is not there is a usage error, with the same words.
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("cannot open `oci:nowhere`")
            && stderr(&missing).contains("an `oci:` source is a directory holding `index.json`"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn a_username_without_a_password_is_a_warning() {
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    build_oci(&layout, "mock/warn:1");
    let source = format!("oci:{}", path_str(&layout));
    // Nothing listens on port 1: the warning comes before the first request.
    let push = |cmd: &mut Command| {
        stderr(&run(cmd.env("IMAGE_MAKER_PUSH_RETRIES", "0").args([
            "push",
            &source,
            "127.0.0.1:1/mock/warn:1",
        ])))
    };
    let err = push(anonymous(tmp.path()).env("IMAGE_MAKER_USERNAME", "tester"));
    assert!(
        err.contains(
            "warning: `IMAGE_MAKER_USERNAME` is set but `IMAGE_MAKER_PASSWORD` is not: ignoring it"
        ),
        "{err}"
    );
    let config = tmp.path().join("config");
    fs::create_dir(&config).expect("mkdir");
    fs::write(
        config.join("config.json"),
        r#"{"auths":{"127.0.0.1:1":{"username":"tester"}}}"#,
    )
    .expect("write config");
    let err = push(&mut anonymous(&config));
    assert!(
        err.contains(&format!(
            "warning: the docker config {} has a username for `127.0.0.1:1` but no password",
            config.join("config.json").display()
        )),
        "{err}"
    );
    // A complete pair says nothing of the kind.
    let err = push(
        anonymous(tmp.path())
            .env("IMAGE_MAKER_USERNAME", "tester")
            .env("IMAGE_MAKER_PASSWORD", "secret"),
    );
    assert!(!err.contains("warning:"), "{err}");
}

#[test]
fn every_path_to_the_registry_pushes_the_same_image() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let with_cache = |args: &[&str]| {
        let out = run_ok(
            anonymous(tmp.path())
                .env("IMAGE_MAKER_CACHE_DIR", &cache)
                .args(args)
                .arg("--json"),
        );
        json(&out)["digest"].as_str().expect("digest").to_owned()
    };
    let host = registry.host();
    // Through the cache (the default), without it, and from the cache by spec.
    let cached = with_cache(&["-s", SPEC, "-o", "registry", &format!("{host}/paths/a:1")]);
    let uncached = with_cache(&[
        "--no-cache",
        "-s",
        SPEC,
        "-o",
        "registry",
        &format!("{host}/paths/b:1"),
    ]);
    let by_spec = with_cache(&[
        "push",
        &format!("cache:{SPEC}"),
        &format!("{host}/paths/c:1"),
    ]);
    assert_eq!(cached, uncached);
    assert_eq!(cached, by_spec);
    for repo in ["a", "b", "c"] {
        assert_eq!(
            skopeo_digest(skopeo, &format!("docker://{host}/paths/{repo}:1"), &[]),
            cached
        );
    }
    let log = fs::read_to_string(cache.join("v1/log")).expect("cache log");
    assert_eq!(
        log.lines().filter(|l| l.contains(" built ")).count(),
        1,
        "{log}"
    );
}

#[test]
fn the_dockerfile_builder_pushes_what_the_engine_built() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let (Some(docker), Some(skopeo)) = (engine("docker"), tool("skopeo")) else {
        return;
    };
    let tmp = tempdir();
    // Not kept in docker, whose copy only the push needed; removed anyway if it is.
    let image = EngineImage::named(
        docker,
        format!("{}/mock/engine-built:{}", registry.host(), unique()),
    );
    let target = image.reference.clone();
    let out = run_ok(anonymous(tmp.path()).args([
        "--json",
        "-b",
        "dockerfile",
        "-e",
        "docker",
        "-s",
        "2MB,1KB",
        "-o",
        "registry",
        &target,
    ]));
    let summary = json(&out);
    let digest = skopeo_digest(skopeo, &format!("docker://{target}"), &[]);
    assert_eq!(summary["pushed"]["digest"], digest.as_str(), "{summary}");
    assert!(!image.exists(), "{target} left in docker");
    let inspected = run_ok(skopeo.cmd().args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]));
    assert_eq!(json(&inspected)["Layers"].as_array().map(Vec::len), Some(2));
}

#[test]
fn an_index_goes_up_with_every_manifest_and_docker_pulls_amd64() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let (Some(skopeo), Some(docker)) = (tool("skopeo"), engine("docker")) else {
        return;
    };
    let tmp = tempdir();
    let platforms = "linux/arm64,linux/amd64,linux/arm/v7";
    let image = EngineImage::named(
        docker,
        format!("{}/image-maker-test/multi:{}", registry.host(), unique()),
    );
    let target = image.reference.as_str();
    let out = run_ok(anonymous(tmp.path()).args([
        "-s",
        "1MB:compression=gzip,64KB",
        "--platform",
        platforms,
        "-o",
        "registry",
        "--json",
        target,
    ]));
    let built = json(&out);
    let index_digest = built["digest"].as_str().expect("digest");
    assert_eq!(built["pushed"]["digest"], index_digest);
    let raw = run_ok(skopeo.cmd().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]));
    {
        use sha2::Digest as _;
        assert_eq!(
            format!("sha256:{:x}", sha2::Sha256::digest(&raw.stdout)),
            index_digest
        );
    }
    let listed: Vec<String> = json(&raw)["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            [&p["os"], &p["architecture"], &p["variant"]]
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    assert_eq!(listed.join(","), platforms);
    // Each image is there by its own digest.
    for m in built["manifests"].as_array().expect("manifests") {
        let by_digest = format!(
            "docker://{}@{}",
            target.rsplit_once(':').expect("tag").0,
            m["digest"].as_str().expect("digest")
        );
        assert_eq!(
            skopeo_digest(skopeo, &by_digest, &[]),
            m["digest"].as_str().expect("digest")
        );
    }
    // docker resolves the index to its own platform.
    let pulled = run(docker.cmd().args(["pull", target]));
    assert!(pulled.status.success(), "docker pull: {}", stderr(&pulled));
    assert_engine_picked(&image, &built, "linux/amd64");
    // skopeo can copy the whole index from a layout into the registry too.
    let layout = tmp.path().join("layout");
    run_ok(image_maker().args([
        "-q",
        "-s",
        "64KB",
        "--platform",
        "linux/amd64,linux/arm64",
        "-o",
        &format!("oci:{}", path_str(&layout)),
        "mock/copied:1",
    ]));
    run_ok(skopeo.cmd().args([
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:1", path_str(&layout)),
        &format!("docker://{}/mock/copied:1", registry.host()),
    ]));
}
