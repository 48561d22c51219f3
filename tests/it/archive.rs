//! `oci-archive:FILE` as skopeo and `docker load` see it.

use std::fs::File;

use crate::support::*;

fn build_archive(file: &std::path::Path, reference: &str, spec: &str) -> serde_json::Value {
    let out = run_ok(image_maker().args([
        "-q",
        "--json",
        "-s",
        spec,
        "-o",
        &format!("oci-archive:{}", path_str(file)),
        reference,
    ]));
    json(&out)
}

#[test]
fn archive_holds_an_oci_layout_and_docker_manifest() {
    let tmp = tempdir();
    let file = tmp.path().join("image.tar");
    let built = build_archive(&file, "mock/arch:1", "3KB,1KB");
    let mut names: Vec<String> = tar::Archive::new(File::open(&file).expect("archive"))
        .entries()
        .expect("tar")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    for name in ["oci-layout", "index.json", "manifest.json"] {
        assert!(
            names.contains(&name.to_owned()),
            "{name} missing from {names:?}"
        );
    }
    for layer in built["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().expect("digest");
        let path = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        assert!(names.contains(&path), "{path} missing from {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.contains("000000000000")),
        "placeholder left: {names:?}"
    );
    assert_eq!(entries(tmp.path()), ["image.tar"]);
}

#[test]
fn skopeo_inspects_the_archive() {
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempdir();
    let file = tmp.path().join("image.tar");
    let built = build_archive(&file, "mock/arch:1", "5MB,2KB,300B");
    let out = run_ok(
        skopeo
            .cmd()
            .args(["inspect", &format!("oci-archive:{}", path_str(&file))]),
    );
    let info = json(&out);
    assert_eq!(info["Digest"], built["digest"]);
    assert_eq!(info["Layers"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        (info["Os"].as_str(), info["Architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );
}

#[test]
fn docker_loads_the_archive_with_matching_diff_ids() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let file = tmp.path().join("image.tar");
    let image = EngineImage::new(docker, "archive");
    let built = build_archive(&file, &image.reference, "5MB,2KB:files=2,3KB:tree=40");
    let out = run_ok(docker.cmd().args(["load", "-i", path_str(&file)]));
    assert!(stdout(&out).contains(&image.reference), "{}", stdout(&out));
    let rootfs: Vec<String> =
        serde_json::from_str(&image.inspect("{{json .RootFS.Layers}}")).expect("json");
    // The config inside the archive, found the way docker finds it: through manifest.json.
    let docker_manifest: serde_json::Value =
        serde_json::from_slice(&archive_entry(&file, "manifest.json")).expect("json");
    let config_path = docker_manifest[0]["Config"].as_str().expect("Config");
    let config: serde_json::Value =
        serde_json::from_slice(&archive_entry(&file, config_path)).expect("json");
    assert_eq!(
        rootfs,
        config["rootfs"]["diff_ids"]
            .as_array()
            .map(|ids| ids
                .iter()
                .map(|id| id.as_str().expect("diff_id").to_owned())
                .collect::<Vec<_>>())
            .expect("diff_ids")
    );
    assert_eq!(rootfs.len(), 3);
    assert_eq!(image.inspect("{{.Os}}/{{.Architecture}}"), "linux/amd64");
    // docker's image ID is the config digest.
    assert_eq!(
        image.inspect("{{.Id}}"),
        built["config_digest"].as_str().expect("config digest")
    );
}

/// The bytes of entry `path` in the tar `file`.
fn archive_entry(file: &std::path::Path, path: &str) -> Vec<u8> {
    use std::io::Read;
    let mut archive = tar::Archive::new(File::open(file).expect("archive"));
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path").to_str() == Some(path) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read");
            return bytes;
        }
    }
    panic!("{path} is not in {}", file.display());
}
