//! `--base SOURCE`: an image built on another one keeps the base's blobs (digests and all),
//! takes its config under its own, and is checked, cached and pushed as such.

use crate::support::registry::Registry;
use crate::support::*;

fn layer_digests(built: &serde_json::Value) -> Vec<String> {
    built["layers"]
        .as_array()
        .map(|layers| {
            layers
                .iter()
                .map(|l| l["digest"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn build(args: &[&str]) -> serde_json::Value {
    json(&run_ok(image_maker().args(["-q", "--json"]).args(args)))
}

/// The base's gzip and plain layers and its runnable entrypoint, under a layer and an `--env`
/// of the derived image's own: the layout validates, the config merges as docker's
/// `FROM` does, verify passes, and docker (which gets the base's compressed layers
/// decompressed) runs the base's program.
#[test]
fn a_derived_image_keeps_the_base_and_runs_under_docker() {
    let (Some(docker), Some(skopeo), Some(oci_image_tool)) =
        (engine("docker"), tool("skopeo"), tool("oci-image-tool"))
    else {
        return;
    };
    let tmp = tempdir();
    let dir = |name: &str| path_str(&tmp.path().join(name)).to_owned();
    let base = build(&[
        "-s",
        "1MB:compression=gzip,64KB:tree=5",
        "--runnable",
        "ready=base-up",
        "--env",
        "A=1",
        "--env",
        "B=1",
        "--label",
        "from=base",
        "-o",
        &format!("oci:{}", dir("base")),
        "mock/base:1",
    ]);
    let image = EngineImage::new(docker, "derived");
    let derived = build(&[
        "-s",
        "128KB",
        "--env",
        "B=2",
        "--base",
        &format!("oci:{}:1", dir("base")),
        "-o",
        &format!("oci:{}", dir("app")),
        "-o",
        "engine",
        "-e",
        "docker",
        &image.reference,
    ]);
    let (base_layers, layers) = (layer_digests(&base), layer_digests(&derived));
    assert_eq!(base_layers.len(), 3, "{base}");
    assert_eq!(layers.len(), 4, "{derived}");
    assert_eq!(layers[..3], base_layers[..], "{derived}");
    assert_valid_layout(oci_image_tool, &tmp.path().join("app"), image.tag());

    let config = json(&run_ok(skopeo.cmd().args([
        "inspect",
        "--config",
        &format!("oci:{}:{}", dir("app"), image.tag()),
    ])));
    assert_eq!(config["config"]["Env"], serde_json::json!(["A=1", "B=2"]));
    assert_eq!(config["config"]["Labels"]["from"], "base");
    assert_eq!(
        config["config"]["Labels"]["dev.image-maker.base-layers"],
        "3"
    );
    assert_eq!(
        config["config"]["Labels"]["dev.image-maker.spec"],
        "128KB:files=1"
    );
    assert_eq!(config["history"].as_array().map(Vec::len), Some(4));
    let manifest = json(&run_ok(skopeo.cmd().args([
        "inspect",
        "--raw",
        &format!("oci:{}:{}", dir("app"), image.tag()),
    ])));
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        base["digest"]
    );
    run_ok(image_maker().args(["verify", "-q", &format!("oci:{}", dir("app"))]));

    let out = run_ok(docker.cmd().args(["run", "--rm", "-d", &image.reference]));
    let id = stdout(&out).trim().to_owned();
    wait_for(
        "the base's ready line",
        std::time::Duration::from_secs(20),
        || stdout(&run(docker.cmd().args(["logs", &id]))).contains("base-up"),
    );
    run_ok(docker.cmd().args(["stop", &id]));
}

/// A two-platform base gives each platform's image that platform's base layers; a platform
/// the base lacks, `--shared-layers` over it and the dockerfile builder are refused.
#[test]
fn a_multi_platform_base_gives_each_platform_its_own() {
    let tmp = tempdir();
    let base_dir = path_str(&tmp.path().join("base")).to_owned();
    let base = build(&[
        "-s",
        "64KB",
        "--platform",
        "linux/amd64,linux/arm64",
        "-o",
        &format!("oci:{base_dir}"),
        "mock/base:2",
    ]);
    let source = format!("oci:{base_dir}");
    let derived = build(&[
        "-s",
        "1KB",
        "--platform",
        "linux/arm64,linux/amd64",
        "--base",
        &source,
        "-o",
        &format!("oci:{}", path_str(&tmp.path().join("app"))),
        "mock/app:2",
    ]);
    let first = |image: &serde_json::Value, platform: &str| {
        image["manifests"]
            .as_array()
            .and_then(|list| list.iter().find(|m| m["platform"] == platform))
            .map(|m| m["layers"][0]["digest"].clone())
            .unwrap_or_default()
    };
    for platform in ["linux/amd64", "linux/arm64"] {
        assert_eq!(
            first(&derived, platform),
            first(&base, platform),
            "{platform}"
        );
    }
    assert_ne!(
        first(&derived, "linux/amd64"),
        first(&derived, "linux/arm64")
    );
    run_ok(image_maker().args([
        "verify",
        "-q",
        "--platform",
        "linux/arm64",
        &format!("oci:{}", path_str(&tmp.path().join("app"))),
    ]));

    let refused = |extra: &[&str], says: &str| {
        let out = run(image_maker()
            .args(["-q", "-s", "1KB", "--base", &source, "-o"])
            .arg(format!("oci:{}", path_str(&tmp.path().join("never"))))
            .args(extra)
            .arg("mock/app:3"));
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
        assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));
    };
    refused(
        &["--platform", "linux/s390x"],
        "has no linux/s390x image (it has: linux/amd64, linux/arm64)",
    );
    refused(
        &["--platform", "linux/amd64,linux/arm64", "--shared-layers"],
        "--shared-layers",
    );
    refused(&["--builder", "dockerfile"], "cannot start from base");
    assert!(!tmp.path().join("never").exists());

    for (base, says) in [
        ("oci:/nonexistent/base", "cannot open"),
        ("nonsense", "is not `oci:DIR[:TAG]`"),
        (
            &format!("oci:{base_dir}:nope") as &str,
            "has no image tagged `nope`",
        ),
    ] {
        let out =
            run(image_maker().args(["-q", "-s", "1KB", "--base", base, "-o", "oci:x", "a:1"]));
        assert_eq!(out.status.code(), Some(2), "{base}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{base}: {}", stderr(&out));
    }
}

/// A base in the registry the image goes to: its blobs are mounted from the base's
/// repository, never uploaded again, and the image pulls with them.
#[test]
fn a_registry_base_is_mounted_on_push() {
    let (Some(registry), Some(skopeo)) = (Registry::start(), tool("skopeo")) else {
        return;
    };
    let tmp = tempdir();
    let repo = format!("image-maker-test/base-{}", unique());
    let push = |args: &[&str], target: &str| {
        let mut cmd = image_maker();
        cmd.env("DOCKER_CONFIG", tmp.path())
            .args(["-q", "--json", "-o", "registry"])
            .args(args)
            .arg(target);
        json(&run_ok(&mut cmd))
    };
    let base_ref = format!("{}/{repo}:1", registry.host());
    let base = push(&["-s", "512KB:compression=gzip,64KB"], &base_ref);
    let app_repo = format!("{repo}-app");
    let app = push(
        &["-s", "32KB", "--base", &format!("docker://{base_ref}")],
        &format!("{}/{app_repo}:1", registry.host()),
    );
    assert_eq!(layer_digests(&app)[..2], layer_digests(&base)[..]);
    // The config and the image's own layer go up; the base's two layers are mounted.
    assert_eq!(
        (&app["pushed"]["uploaded"], &app["pushed"]["mounted"]),
        (&2.into(), &2.into()),
        "{app}"
    );
    assert_eq!(registry.mounts(&app_repo), 2, "{}", registry.log());
    let manifest = json(&run_ok(skopeo.cmd().args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/{app_repo}:1", registry.host()),
    ])));
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        base_ref
    );
    let copied = tmp.path().join("copied");
    run_ok(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/{app_repo}:1", registry.host()),
        &format!("oci:{}:1", path_str(&copied)),
    ]));
    run_ok(image_maker().args(["verify", "-q", &format!("oci:{}", path_str(&copied))]));
}

/// The same base image read from a layout, an archive or the cache gives the same image;
/// the cache key follows the base's manifest, so a base rebuilt under the same name is
/// built on again, not served stale.
#[test]
fn the_base_is_part_of_the_image_and_of_its_cache_key() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let at = |name: &str| path_str(&tmp.path().join(name)).to_owned();
    let cached_build = |args: &[&str]| {
        json(&run_ok(
            image_maker()
                .env("IMAGE_MAKER_CACHE_DIR", &cache)
                .args(["-q", "--json"])
                .args(args),
        ))
    };
    let base = |spec: &str| {
        let _ = std::fs::remove_dir_all(at("base"));
        let _ = std::fs::remove_file(at("base.tar"));
        build(&[
            "-s",
            spec,
            "-o",
            &format!("oci:{}", at("base")),
            "-o",
            &format!("oci-archive:{}", at("base.tar")),
            "mock/base:1",
        ])
    };
    let derived = |source: &str, out: &str| {
        cached_build(&[
            "-s",
            "16KB",
            "--base",
            source,
            "-o",
            &format!("oci:{}", at(out)),
            "mock/app:1",
        ])
    };
    base("48KB:compression=gzip");
    let from_dir = derived(&format!("oci:{}", at("base")), "a");
    let builds_now = builds(&cache);
    let from_archive = derived(&format!("oci-archive:{}", at("base.tar")), "b");
    assert_eq!(from_archive["digest"], from_dir["digest"]);
    assert_eq!(builds(&cache), builds_now, "the same base is a cache hit");
    let from_cache = derived("cache:48KB:compression=gzip", "c");
    assert_eq!(from_cache["digest"], from_dir["digest"]);

    base("48KB:compression=zstd");
    let rebuilt = derived(&format!("oci:{}", at("base")), "d");
    assert_ne!(rebuilt["digest"], from_dir["digest"]);
    assert_ne!(layer_digests(&rebuilt)[0], layer_digests(&from_dir)[0]);
    // The image's own layer is the same bytes whatever it stands on.
    assert_eq!(layer_digests(&rebuilt)[1], layer_digests(&from_dir)[1]);
    assert_eq!(
        builds(&cache),
        builds_now + 2,
        "the rebuilt base is built on"
    );
}
