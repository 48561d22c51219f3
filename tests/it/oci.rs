//! `oci:DIR` as skopeo, umoci and oci-image-tool see it.

use crate::support::*;

const SPEC: &str = "5MB,2KB,300B";

/// Unpacks `dir:tag` with umoci beside `dir`; returns the rootfs.
fn umoci_unpack(umoci: Tool, dir: &std::path::Path, tag: &str) -> std::path::PathBuf {
    let bundle = dir.with_file_name("bundle");
    run_ok(umoci.cmd().args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:{tag}", path_str(dir)),
        path_str(&bundle),
    ]));
    bundle.join("rootfs")
}

fn build(dir: &std::path::Path, reference: &str, spec: &str) {
    run_ok(image_maker().args([
        "-q",
        "-s",
        spec,
        "-o",
        &format!("oci:{}", path_str(dir)),
        reference,
    ]));
}

#[test]
fn oci_image_tool_validates_the_layout() {
    let Some(oci_image_tool) = tool("oci-image-tool") else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    build(&dir, "mock/small:v1", SPEC);
    assert_valid_layout(oci_image_tool, &dir, "v1");
}

#[test]
fn skopeo_sees_three_layers_for_linux_amd64() {
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    build(&dir, "mock/small:v1", SPEC);
    let out = run_ok(
        skopeo
            .cmd()
            .args(["inspect", &format!("oci:{}:v1", path_str(&dir))]),
    );
    let info = json(&out);
    assert_eq!(info["Layers"].as_array().map(Vec::len), Some(3), "{info}");
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Os"], "linux");
    assert_eq!(
        info["Labels"]["dev.image-maker.spec"],
        "5MB:files=1,2KB:files=1,300B:files=1"
    );
}

#[test]
fn umoci_unpacks_files_of_exact_sizes_and_bytes() {
    let Some(umoci) = tool("umoci") else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let spec = SPEC;
    build(&dir, "mock/small:v1", spec);
    assert_rootfs(&umoci_unpack(umoci, &dir, "v1"), spec);
}

#[test]
fn a_tree_layer_unpacks_to_nested_directories() {
    let Some(umoci) = tool("umoci") else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let spec = "100KB:tree=600,1KB:files=2";
    build(&dir, "mock/tree:1", spec);
    let root = umoci_unpack(umoci, &dir, "1");
    assert_rootfs(&root, spec);
    // The deepest file of the tree, at least four directories down.
    let layers = image_maker::testing::plan_layers(&image_maker::Spec::parse(spec).expect("valid"));
    let deepest = layers[0]
        .files()
        .max_by_key(|f| f.path.matches('/').count())
        .expect("files");
    assert!(deepest.path.matches('/').count() >= 4, "{}", deepest.path);
    assert!(root.join(&deepest.path).is_file(), "{}", deepest.path);
}

#[test]
fn platform_is_recorded_in_config_and_index() {
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    run_ok(image_maker().args([
        "-q",
        "-s",
        "1KB",
        "--platform",
        "linux/arm64/v8",
        "-o",
        &format!("oci:{}", path_str(&dir)),
        "mock/arm:1",
    ]));
    let out = run_ok(skopeo.cmd().args([
        "inspect",
        "--raw",
        "--config",
        &format!("oci:{}:1", path_str(&dir)),
    ]));
    let config = json(&out);
    assert_eq!(
        (
            config["os"].as_str(),
            config["architecture"].as_str(),
            config["variant"].as_str()
        ),
        (Some("linux"), Some("arm64"), Some("v8"))
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "arm64");
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
}

#[test]
fn building_a_tag_again_replaces_that_tag() {
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    build(&dir, "mock/a:1", "1MB");
    build(&dir, "mock/a:1", "2KB,1KB");
    let out = run_ok(
        skopeo
            .cmd()
            .args(["inspect", &format!("oci:{}:1", path_str(&dir))]),
    );
    assert_eq!(json(&out)["Layers"].as_array().map(Vec::len), Some(2));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(1));
    // As with skopeo, the blobs of the replaced image stay: three, and the new image's four.
    assert_eq!(entries(&dir.join("blobs/sha256")).len(), 7);
    assert_eq!(entries(tmp.path()), ["layout"]);
}

/// A fixture's own reference is not the name its shared cached layout gives the image;
/// `oci_reference` is, and skopeo resolves it to the fixture's image.
#[test]
fn a_fixtures_oci_reference_names_its_image_in_the_cached_layout() {
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempdir();
    let image = image_maker::Fixture::new("1KB:files=2")
        .reference("mock/own-name:1")
        .cache(image_maker::Cache::at(tmp.path().join("cache")))
        .get()
        .expect("fixture");
    assert_eq!(image.reference(), "mock/own-name:1");
    let source = image.oci_reference().expect("a cached image has a layout");
    assert!(source.starts_with(&format!("oci:{}:", path_str(image.oci_dir()))));
    let out = run_ok(skopeo.cmd().args(["inspect", "--raw", &source]));
    let manifest = json(&out);
    assert_eq!(
        manifest["config"]["digest"].as_str(),
        Some(image.config_digest())
    );
}
