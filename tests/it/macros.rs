//! `#[mock_image]`: what it does to a real test, and the compile errors it gives.

use image_maker::Cache;
use std::process::Command;

use image_maker::{mock_image, Builder, EngineKind, Error, Fixture, MockImage};

use crate::support::*;

#[test]
fn attribute_errors_are_spanned_and_say_what_is_wrong() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}

#[mock_image(layers = "2MB,1KB:files=3")]
fn the_attribute_passes_the_built_image(img: MockImage) {
    assert_eq!(img.spec().canonical(), "2MB:files=1,1KB:files=3");
    assert_eq!(img.layers().len(), 2);
    assert_eq!(img.layers()[1].files, 3);
    assert_eq!(img.platform(), "linux/amd64");
    assert!(img.reference().to_string().starts_with("image-maker/mock:"));
    assert!(img.digest().starts_with("sha256:"));
    // Fixtures of this workspace's tests are cached under target/ (`.cargo/config.toml`),
    // never in the user's own cache.
    let cache = Cache::from_env().expect("a cache");
    assert!(img.oci_dir().starts_with(cache.root()));
    let users = dirs::cache_dir()
        .expect("a user cache dir")
        .join("image-maker");
    assert!(
        !cache.root().starts_with(&users),
        "{}",
        cache.root().display()
    );
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let out = run_ok(skopeo.cmd().args([
        "inspect",
        "--raw",
        &format!("oci:{}", path_str(img.oci_dir())),
    ]));
    assert!(stdout(&out).contains(&img.layers()[0].digest));
}

#[mock_image(layers = "1MB", platform = "linux/arm64", tag = "mock/arm:1")]
fn options_and_result_returning_tests(img: MockImage) -> Result<(), std::io::Error> {
    assert_eq!(img.platform(), "linux/arm64");
    assert_eq!(img.reference(), "mock/arm:1");
    let config = std::fs::read_to_string(
        img.oci_dir()
            .join("blobs/sha256")
            .join(img.config_digest().trim_start_matches("sha256:")),
    )?;
    assert!(config.contains(r#""architecture":"arm64""#), "{config}");
    Ok(())
}

#[mock_image(layers = "3KB:files=2")]
#[tokio::test]
async fn alongside_tokio_test(img: MockImage) {
    let archive = tokio::task::spawn_blocking(move || img.oci_archive())
        .await
        .expect("joined")
        .expect("archive");
    assert!(archive.is_file());
}

#[mock_image(layers = "4KB:files=2,1KB")]
fn an_archive_is_made_once(img: MockImage) {
    let archive = img.oci_archive().expect("archive");
    let made = std::fs::metadata(&archive)
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(img.oci_archive().expect("archive"), archive);
    assert_eq!(
        std::fs::metadata(&archive)
            .and_then(|m| m.modified())
            .expect("mtime"),
        made
    );
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let out = run_ok(
        skopeo
            .cmd()
            .args(["inspect", &format!("oci-archive:{}", path_str(&archive))]),
    );
    assert!(stdout(&out).contains(img.digest()), "{}", stdout(&out));
}

/// A blob of the layout `dir`, parsed.
fn blob_json(dir: &std::path::Path, digest: &str) -> serde_json::Value {
    let path = dir
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(&path).expect("blob")).expect("json")
}

#[test]
fn load_skips_an_image_the_engine_has() {
    let Some(docker) = engine("docker") else {
        return;
    };
    // The fixture goes by a name of this run's own, so that concurrent runs do not load over
    // each other; docker forgets it when the test ends.
    let image = EngineImage::new(docker, "fixture-load");
    let img = Fixture::new("2KB,1KB")
        .reference(image.reference.as_str())
        .get()
        .expect("fixture");
    img.load(EngineKind::Docker).expect("load");
    // What docker holds is the image the cache holds: its config and layers, as read from the
    // cached layout itself.
    let index = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(img.oci_dir().join("index.json")).expect("index"),
    )
    .expect("json");
    let manifest = blob_json(
        img.oci_dir(),
        index["manifests"][0]["digest"].as_str().expect("digest"),
    );
    let config_digest = manifest["config"]["digest"].as_str().expect("digest");
    let config = blob_json(img.oci_dir(), config_digest);
    assert_eq!(image.inspect("{{.Id}}"), config_digest);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&image.inspect("{{json .RootFS.Layers}}"))
            .expect("json"),
        config["rootfs"]["diff_ids"]
    );
    let first = image.inspect("{{.Id}} {{.Metadata.LastTagTime}}");
    // Loading again changes nothing: not even the time docker last tagged it.
    img.load(EngineKind::Docker).expect("load again");
    assert_eq!(image.inspect("{{.Id}} {{.Metadata.LastTagTime}}"), first);
}

/// How the parent tells `dockerfile_fixture` the layers of this run.
const FIXTURE_SPEC_VAR: &str = "IMAGE_MAKER_TEST_DOCKERFILE_FIXTURE";

/// Layers no other run asks for: the engine finds a dockerfile fixture by a label that hashes
/// its spec, so with a fixed spec two runs on one daemon would find, and remove, each
/// other's image. The second layer's size (1 KiB to 1 KiB + 1 MiB) is this run's.
fn dockerfile_fixture_spec() -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    unique().hash(&mut hasher);
    format!("3KB:files=2,{}B", 1024 + hasher.finish() % (1 << 20))
}

/// A fixture of the dockerfile builder, run only in the child processes of
/// `a_dockerfile_fixture_is_built_once_across_processes` (alone it would leave its image in
/// docker). It prints its image for the parent. What
/// `#[mock_image(layers = "…", builder = "dockerfile", engine = "docker")]` expands to, with
/// the parent's layers, which no literal can be.
#[test]
#[ignore = "run in child processes by a_dockerfile_fixture_is_built_once_across_processes"]
fn dockerfile_fixture() {
    let layers = std::env::var(FIXTURE_SPEC_VAR).expect("the parent's layers");
    let img = image_maker::__private::mock_image(
        &layers,
        None,
        None,
        Some("dockerfile"),
        Some("docker"),
        &[],
    );
    let canonical = image_maker::Spec::parse(&layers)
        .expect("valid spec")
        .canonical();
    assert_eq!(img.spec().canonical(), canonical);
    assert!(
        img.spec().canonical().starts_with("3KB:files=2,"),
        "{}",
        img.spec()
    );
    assert_eq!(img.engine(), Some(EngineKind::Docker));
    assert_eq!(img.layers().len(), 2);
    assert_eq!(img.layers()[0].files, 2);
    assert!(img.config_digest().starts_with("sha256:"));
    // An engine's image: no manifest, no layout, no archive, and errors that say so.
    assert_eq!(img.digest(), "");
    let err = img.try_oci_dir().expect_err("no OCI layout");
    assert!(matches!(err, Error::EngineOnly { .. }), "{err}");
    assert!(
        err.to_string()
            .ends_with("exists only in docker, so it has no OCI layout"),
        "{err}"
    );
    assert!(err.hint().is_some_and(|h| h.contains("native builder")));
    assert!(std::panic::catch_unwind(|| img.oci_dir().to_owned()).is_err());
    assert!(matches!(img.oci_archive(), Err(Error::EngineOnly { .. })));
    img.load(EngineKind::Docker).expect("in docker already");
    assert!(matches!(
        img.load(EngineKind::Podman),
        Err(Error::EngineOnly { .. })
    ));
    // Asked again in this process: the same image, without asking docker.
    let again = Fixture::new(&layers)
        .builder(Builder::Dockerfile)
        .engine(EngineKind::Docker)
        .get()
        .expect("fixture");
    assert_eq!(again.config_digest(), img.config_digest());
    println!("image {} {}", img.reference(), img.config_digest());
}

#[test]
fn a_dockerfile_fixture_is_built_once_across_processes() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let layers = dockerfile_fixture_spec();
    // Removes the images with this run's label when the test ends, also one that fails.
    let labelled =
        crate::dockerfile::Labelled::new(docker, crate::dockerfile::dockerfile_key(&layers, 0));
    // The test binary again, running only the fixture's test.
    let child = || {
        let out = run_ok(
            Command::new(std::env::current_exe().expect("test binary"))
                .args(["--exact", "macros::dockerfile_fixture", "--ignored"])
                .env(FIXTURE_SPEC_VAR, &layers)
                .arg("--nocapture"),
        );
        stdout(&out)
            .lines()
            .find_map(|l| l.strip_prefix("image "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no image line in {}", stdout(&out)))
    };
    let first = child();
    assert_eq!(child(), first);
    // One engine build: a second would have left a second image with the label.
    assert_eq!(labelled.ids().len(), 1, "{first}");
    let (reference, id) = first.split_once(' ').expect("reference and ID");
    assert_eq!(labelled.ids(), [id]);
    // Named by the dockerfile builder's key, never the native image's name.
    let native = Fixture::new(&layers).request().expect("request");
    assert!(reference.starts_with("image-maker/mock:"), "{reference}");
    assert_ne!(reference, native.reference().to_string());
    let tagged = run_ok(
        docker
            .cmd()
            .args(["image", "inspect", "--format", "{{.Id}}", reference]),
    );
    assert_eq!(stdout(&tagged).trim(), id);
}

#[test]
fn an_engine_is_an_option_of_the_dockerfile_builder() {
    let err = Fixture::new("1KB")
        .engine(EngineKind::Docker)
        .get()
        .expect_err("native builder");
    assert_eq!(
        err.to_string(),
        "`Fixture::engine` is an option of the dockerfile builder"
    );
    assert_eq!(
        err.hint().as_deref(),
        Some("add `.builder(Builder::Dockerfile)`")
    );
}

#[mock_image(layers = "2KB,1KB", platform = "linux/amd64,linux/arm64")]
fn a_platform_list_gives_an_index(img: MockImage) {
    assert_eq!(img.index_digest(), Some(img.digest()));
    let platforms: Vec<&str> = img
        .manifests()
        .iter()
        .map(|m| m.platform.as_str())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(img.platform(), "linux/amd64");
    assert_eq!(img.layers(), img.manifests()[0].layers);
    let index = blob_json(img.oci_dir(), img.digest());
    assert_eq!(
        index["manifests"][1]["digest"],
        img.manifest("linux/arm64").expect("arm64").digest.as_str()
    );
}

#[mock_image(
    layers = "1KB",
    entrypoint = r#"["/bin/app","-v"]"#,
    cmd = "serve --port 8080",
    env = ["MODE=macro", "EMPTY="],
    workdir = "/srv",
    user = "app",
    labels = ["team=storage"],
    annotations = ["org.example.a=b"],
    expose = ["8080", "53/udp"],
    stop_signal = "INT"
)]
fn the_attribute_sets_the_config(img: MockImage) {
    let blob = |digest: &str| {
        let path = img
            .oci_dir()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let bytes = std::fs::read(&path).expect("blob");
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("json")
    };
    let config = blob(img.config_digest());
    let config = &config["config"];
    assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/app", "-v"]));
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["serve", "--port", "8080"])
    );
    assert_eq!(config["Env"], serde_json::json!(["MODE=macro", "EMPTY="]));
    assert_eq!(config["WorkingDir"], "/srv");
    assert_eq!(config["User"], "app");
    assert_eq!(config["Labels"]["team"], "storage");
    assert_eq!(config["Labels"]["dev.image-maker.spec"], "1KB:files=1");
    assert_eq!(
        config["ExposedPorts"],
        serde_json::json!({ "8080/tcp": {}, "53/udp": {} })
    );
    assert_eq!(config["StopSignal"], "SIGINT");
    assert_eq!(
        blob(img.digest())["annotations"],
        serde_json::json!({ "org.example.a": "b" })
    );
}
