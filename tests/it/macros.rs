//! `#[mock_image]`: what it does to a real test, and the compile errors it gives.

use image_maker::cache::Cache;
use image_maker::{mock_image, EngineKind, Fixture, MockImage};

use crate::support::*;

#[test]
fn attribute_errors_are_spanned_and_say_what_is_wrong() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}

#[mock_image(layers = "2MB,1KB:files=3")]
fn the_attribute_passes_the_built_image(img: MockImage) {
    assert_eq!(img.spec(), "2MB:files=1,1KB:files=3");
    assert_eq!(img.layers().len(), 2);
    assert_eq!(img.layers()[1].files, 3);
    assert_eq!(img.platform(), "linux/amd64");
    assert!(img.reference().starts_with("image-maker/mock:"));
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
