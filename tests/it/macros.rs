//! `#[mock_image]`: what it does to a real test, and the compile errors it gives.

use std::process::Command;

use image_maker::{mock_image, EngineKind, MockImage};

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
    if !tool("skopeo") {
        return;
    }
    let out = run_ok(Command::new("skopeo").args([
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
    if !tool("skopeo") {
        return;
    }
    let out = run_ok(
        Command::new("skopeo").args(["inspect", &format!("oci-archive:{}", path_str(&archive))]),
    );
    assert!(stdout(&out).contains(img.digest()), "{}", stdout(&out));
}

#[mock_image(layers = "2KB,1KB", tag = "image-maker-test/fixture-load:1")]
fn load_skips_an_image_the_engine_has(img: MockImage) {
    if !engine("docker") {
        return;
    }
    let image = EngineImage::new("docker", "fixture-load");
    assert_eq!(
        image.reference,
        format!("image-maker-test/fixture-load:{}", std::process::id())
    );
    let _ = Command::new("docker")
        .args(["rmi", "-f", img.reference()])
        .output();
    img.load(EngineKind::Docker).expect("load");
    let id = |r: &str| {
        stdout(&run_ok(Command::new("docker").args([
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.Metadata.LastTagTime}}",
            r,
        ])))
    };
    let first = id(img.reference());
    assert!(first.starts_with(img.config_digest()), "{first}");
    // Loading again changes nothing: not even the time docker last tagged it.
    img.load(EngineKind::Docker).expect("load again");
    assert_eq!(id(img.reference()), first);
    let _ = Command::new("docker")
        .args(["rmi", "-f", img.reference()])
        .output();
}
