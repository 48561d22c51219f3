//! `image-maker verify` and `inspect`: every source reads back, and a damaged image fails on
//! its first difference, naming the blob, the place and both values.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::registry::Registry;
use crate::support::*;

/// One layer of each encoding, one of them a tree.
const MIXED: &str = "2MB:compression=gzip,1MB:tree=40:compression=zstd,512KB";

/// Builds `spec` into `oci:DIR` (and any other outputs in `extra`) without the cache: the
/// cache's blobs are read-only links, and these tests damage theirs.
fn build(dir: &Path, spec: &str, extra: &[&str]) -> serde_json::Value {
    let mut cmd = image_maker();
    cmd.args(["-q", "--json", "--no-cache", "-s", spec, "-o"])
        .arg(format!("oci:{}", path_str(dir)))
        .args(extra)
        .arg("mock/verify:1");
    json(&run_ok(&mut cmd))
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn verify(source: &str) -> std::process::Output {
    run(image_maker().args(["verify", source]))
}

/// Verify fails with exit 1, naming each of `needles`.
fn assert_fails_naming(source: &str, needles: &[&str]) -> String {
    let out = verify(source);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` not in:\n{err}");
    }
    err
}

#[test]
fn verify_passes_on_oci_archive_and_cache_images() {
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let archive = tmp.path().join("image.tar");
    build(
        &dir,
        "300KB:files=3,20KB:tree=40",
        &["-o", &format!("oci-archive:{}", path_str(&archive))],
    );
    for source in [
        format!("oci:{}", path_str(&dir)),
        format!("oci:{}:1", path_str(&dir)),
        format!("oci-archive:{}", path_str(&archive)),
    ] {
        let out = run_ok(image_maker().args(["verify", &source]));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("verified {source}: 2 layers, 43 files")),
            "{err}"
        );
    }
    // Built into the test's cache first, then read from it.
    let out = run_ok(image_maker().args(["verify", "cache:100KB,1KB"]));
    assert!(
        stderr(&out).contains("verified cache:100KB,1KB: 2 layers, 2 files"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn verify_passes_on_an_index_and_on_gzip_and_zstd_layers() {
    let tmp = tempdir();
    let own = tmp.path().join("own");
    let shared = tmp.path().join("shared");
    let platforms = ["--platform", "linux/amd64,linux/arm64"];
    build(&own, MIXED, &platforms);
    build(
        &shared,
        "200KB,10KB:compression=zstd",
        &[&platforms[..], &["--shared-layers"]].concat(),
    );
    let out = run_ok(image_maker().args(["verify", &format!("oci:{}", path_str(&own))]));
    assert!(
        stderr(&out).contains("2 images (linux/amd64, linux/arm64), 6 layers, 84 files"),
        "{}",
        stderr(&out)
    );
    // The arm64 image holds amd64's bytes: verify finds that seed from layer 1's first file.
    run_ok(image_maker().args(["verify", &format!("oci:{}", path_str(&shared))]));
}

#[test]
fn verify_reads_an_image_from_a_registry() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let image = format!("{}/mock/verify:1", registry.host());
    run_ok(image_maker().args([
        "-q",
        "-s",
        "1MB:compression=gzip,3KB:files=2",
        "-o",
        "registry",
        &image,
    ]));
    let source = format!("docker://{image}");
    let out = run_ok(image_maker().args(["verify", &source]));
    assert!(
        stderr(&out).contains(&format!("verified {source}: 2 layers, 3 files")),
        "{}",
        stderr(&out)
    );
    // A tag the registry does not have is an error, not a pass.
    let out = verify(&format!("docker://{}/mock/verify:2", registry.host()));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn a_flipped_byte_is_named_by_blob_path_and_offset() {
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let built = build(&dir, "64KB,1KB", &[]);
    let digest = built["layers"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let path = blob(&dir, &digest);
    let mut bytes = fs::read(&path).expect("read blob");
    // Two headers (`layer1/`, then the file's), then the file's data.
    bytes[1024 + 1000] ^= 0xff;
    fs::write(&path, bytes).expect("write blob");
    let err = assert_fails_naming(
        &format!("oci:{}", path_str(&dir)),
        &[
            &digest,
            "layer 1",
            "`layer1/64KB-file`",
            "byte 1000",
            "expected byte 0x",
        ],
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
}

#[test]
fn a_truncated_blob_fails_on_its_size() {
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let built = build(&dir, "64KB:compression=gzip,1KB", &[]);
    let digest = built["layers"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let size = built["layers"][0]["size"].as_u64().expect("size");
    let file = fs::OpenOptions::new()
        .write(true)
        .open(blob(&dir, &digest))
        .expect("open");
    file.set_len(size / 2).expect("truncate");
    assert_fails_naming(
        &format!("oci:{}", path_str(&dir)),
        &[
            &digest,
            "size",
            &format!("expected {size} bytes, found {} bytes", size / 2),
        ],
    );
}

#[test]
fn a_wrong_diff_id_in_the_config_is_named() {
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let built = build(&dir, "8KB:compression=zstd,1KB", &[]);
    let layer = built["layers"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let right = built["layers"][0]["diff_id"]
        .as_str()
        .expect("diff_id")
        .to_owned();
    let wrong = format!("sha256:{}", "0".repeat(64));
    // Rewrite the config, then the manifest and index.json that name it, so that the only
    // thing wrong is the diff_id.
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(&index_path).expect("index")).expect("json");
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(&dir, &manifest_digest)).expect("manifest"))
            .expect("json");
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let mut config: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(&dir, &config_digest)).expect("config"))
            .expect("json");
    config["rootfs"]["diff_ids"][0] = wrong.clone().into();
    let config = serde_json::to_vec(&config).expect("json");
    fs::write(blob(&dir, &sha256(&config)), &config).expect("write config");
    manifest["config"]["digest"] = sha256(&config).into();
    manifest["config"]["size"] = config.len().into();
    let manifest = serde_json::to_vec(&manifest).expect("json");
    fs::write(blob(&dir, &sha256(&manifest)), &manifest).expect("write manifest");
    index["manifests"][0]["digest"] = sha256(&manifest).into();
    index["manifests"][0]["size"] = manifest.len().into();
    fs::write(&index_path, serde_json::to_vec(&index).expect("json")).expect("write index");
    assert_fails_naming(
        &format!("oci:{}", path_str(&dir)),
        &[
            &layer,
            "diff_id",
            &format!("expected {wrong}, found {right}"),
        ],
    );
}

#[test]
fn a_manifest_naming_a_missing_blob_fails() {
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let built = build(&dir, "4KB,1KB", &[]);
    let digest = built["layers"][1]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    fs::remove_file(blob(&dir, &digest)).expect("remove blob");
    assert_fails_naming(&format!("oci:{}", path_str(&dir)), &[&digest, "missing"]);
}

#[test]
fn a_bad_source_is_a_usage_error() {
    let tmp = tempdir();
    let missing = tmp.path().join("nothing");
    for source in [
        "nothing:here".to_owned(),
        "oci:".to_owned(),
        format!("oci:{}", path_str(&missing)),
        format!("oci-archive:{}", path_str(&missing)),
    ] {
        for command in ["verify", "inspect"] {
            let out = run(image_maker().args([command, &source]));
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command} {source}: {}",
                stderr(&out)
            );
            assert!(stderr(&out).contains("error:"), "{}", stderr(&out));
        }
    }
}

#[test]
fn inspect_shows_media_types_sizes_and_counts() {
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let built = build(&dir, MIXED, &[]);
    let source = format!("oci:{}", path_str(&dir));
    let report = json(&run_ok(image_maker().args(["inspect", "--json", &source])));
    assert_eq!(report["reference"], source.as_str());
    assert!(report["index"].is_null());
    let image = &report["images"][0];
    assert_eq!(image["platform"], "linux/amd64");
    assert_eq!(image["manifest"]["digest"], built["digest"]);
    assert_eq!(image["config"]["digest"], built["config_digest"]);
    assert_eq!(image["spec"], built["spec"]);
    let layers = image["layers"].as_array().expect("layers");
    let column =
        |key: &str| -> Vec<serde_json::Value> { layers.iter().map(|l| l[key].clone()).collect() };
    assert_eq!(
        column("media_type"),
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar",
        ]
    );
    assert_eq!(column("files"), [1, 40, 1]);
    let tree = image_maker::Spec::parse("1MB:tree=40").expect("valid");
    let tree_dirs = image_maker::testing::plan_layers(&tree)[0].dir_count();
    assert_eq!(column("dirs"), [1, tree_dirs, 1]);
    assert_eq!(column("links"), [0, 0, 0]);
    assert_eq!(column("whiteouts"), [0, 0, 0]);
    for (layer, want) in layers
        .iter()
        .zip(built["layers"].as_array().expect("layers"))
    {
        assert_eq!(layer["digest"], want["digest"]);
        assert_eq!(layer["size"], want["size"]);
        assert_eq!(layer["diff_id"], want["diff_id"]);
        assert!(layer["uncompressed_size"].as_u64() >= want["payload"].as_u64());
    }
    // The plain layer's tar is the blob itself.
    assert_eq!(layers[2]["uncompressed_size"], layers[2]["size"]);
    let text = stdout(&run_ok(image_maker().args(["inspect", &source])));
    assert!(
        text.contains("application/vnd.oci.image.layer.v1.tar+zstd"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "spec       {}",
            built["spec"].as_str().expect("spec")
        )),
        "{text}"
    );
}

#[test]
fn inspect_shows_the_platforms_of_an_index() {
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    build(&dir, "20KB", &["--platform", "linux/amd64,linux/arm64/v8"]);
    let source = format!("oci:{}", path_str(&dir));
    let report = json(&run_ok(image_maker().args(["inspect", "--json", &source])));
    assert_eq!(
        report["index"]["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<&str> = report["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["platform"].as_str().expect("platform"))
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    let text = stdout(&run_ok(image_maker().args(["inspect", &source])));
    assert!(text.contains("platform   linux/arm64/v8"), "{text}");
}
