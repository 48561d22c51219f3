//! Multi-platform images: an index with one image per platform, as skopeo, docker and the
//! cache see it.

use std::collections::BTreeSet;
use std::path::Path;

use image_maker::{Cache, Fixture};

use crate::support::*;

const SPEC: &str = "1MB:compression=gzip,256KB:files=2";
const THREE: &str = "linux/amd64,linux/arm64,linux/arm/v7";

fn build(dir: &Path, platforms: &str, extra: &[&str]) -> serde_json::Value {
    let mut cmd = image_maker();
    cmd.args(["-q", "--json", "-s", SPEC, "--platform", platforms, "-o"])
        .arg(format!("oci:{}", path_str(dir)))
        .args(extra)
        .arg("mock/multi:1");
    json(&run_ok(&mut cmd))
}

fn blob_json(dir: &Path, digest: &str) -> serde_json::Value {
    let path = dir
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(&path).expect("blob")).expect("json blob")
}

fn raw(skopeo: Tool, image: &str) -> serde_json::Value {
    json(&run_ok(skopeo.cmd().args(["inspect", "--raw", image])))
}

/// `(platform, manifest digest)` of each entry of an index, in order.
fn entries_of(index: &serde_json::Value) -> Vec<(String, String)> {
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut platform = format!(
                "{}/{}",
                p["os"].as_str().expect("os"),
                p["architecture"].as_str().expect("architecture")
            );
            if let Some(variant) = p["variant"].as_str() {
                platform = format!("{platform}/{variant}");
            }
            (platform, m["digest"].as_str().expect("digest").to_owned())
        })
        .collect()
}

#[test]
fn an_index_lists_each_platform_and_skopeo_copies_all_of_it() {
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("multi");
    let archive = tmp.path().join("multi.tar");
    let built = build(
        &dir,
        THREE,
        &["-o", &format!("oci-archive:{}", path_str(&archive))],
    );
    let index = raw(skopeo, &format!("oci:{}:1", path_str(&dir)));
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let layout_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index.json"))
            .expect("json");
    assert_eq!(layout_index["manifests"][0]["digest"], built["digest"]);
    assert_eq!(
        blob_json(&dir, built["digest"].as_str().expect("digest")),
        index
    );
    let entries = entries_of(&index);
    let platforms: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64", "linux/arm/v7"]);
    // The archive holds the same index.
    let from_archive = raw(skopeo, &format!("oci-archive:{}", path_str(&archive)));
    assert_eq!(entries_of(&from_archive), entries);
    // Each config names its platform; each platform's layers are bytes of its own.
    let mut layers = BTreeSet::new();
    for ((platform, digest), reported) in entries
        .iter()
        .zip(built["manifests"].as_array().expect("manifests"))
    {
        assert_eq!(reported["platform"], platform.as_str());
        assert_eq!(reported["digest"], digest.as_str());
        let manifest = blob_json(&dir, digest);
        let config = blob_json(&dir, manifest["config"]["digest"].as_str().expect("config"));
        let parts: Vec<&str> = platform.split('/').collect();
        assert_eq!(config["os"], parts[0], "{config}");
        assert_eq!(config["architecture"], parts[1], "{config}");
        assert_eq!(
            config["variant"].as_str(),
            parts.get(2).copied(),
            "{config}"
        );
        for layer in manifest["layers"].as_array().expect("layers") {
            assert!(layers.insert(layer["digest"].as_str().expect("digest").to_owned()));
        }
    }
    assert_eq!(layers.len(), 6);
    // Debian's oci-image-tool validates no layout holding an index (`--type image` wants a
    // manifest), but it validates the index and each manifest and config as blobs.
    if let Some(validator) = tool("oci-image-tool") {
        let blob = |digest: &str| {
            dir.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        };
        let mut checks = vec![(
            "imageIndex",
            blob(built["digest"].as_str().expect("digest")),
        )];
        for (_, digest) in &entries {
            let manifest = blob_json(&dir, digest);
            checks.push(("manifest", blob(digest)));
            checks.push((
                "config",
                blob(manifest["config"]["digest"].as_str().expect("config")),
            ));
        }
        for (kind, path) in checks {
            let out = run_ok(
                validator
                    .cmd()
                    .args(["validate", "--type", kind])
                    .arg(&path),
            );
            assert!(
                stdout(&out).contains("Validation succeeded"),
                "{kind}: {}",
                stdout(&out)
            );
        }
    }
    // skopeo copies every image of the index, and the copy is the same index (without
    // `--preserve-digests` it would gzip the plain layer).
    let copy = tmp.path().join("copy");
    run_ok(skopeo.cmd().args([
        "copy",
        "--all",
        "--preserve-digests",
        &format!("oci:{}:1", path_str(&dir)),
        &format!("oci:{}:1", path_str(&copy)),
    ]));
    assert_eq!(
        entries_of(&raw(skopeo, &format!("oci:{}:1", path_str(&copy)))),
        entries
    );
    // A client that wants one platform gets that one.
    let arm = json(&run_ok(skopeo.cmd().args([
        "inspect",
        "--override-arch",
        "arm",
        "--override-variant",
        "v7",
        &format!("oci:{}:1", path_str(&dir)),
    ])));
    assert_eq!(arm["Digest"], built["digest"]);
    assert_eq!(arm["Architecture"], "arm");
    let arm_manifest = blob_json(&dir, &entries[2].1);
    let digests = |list: &serde_json::Value, key: Option<&str>| -> Vec<String> {
        list.as_array()
            .expect("layers")
            .iter()
            .map(|l| {
                key.map_or(l, |k| &l[k])
                    .as_str()
                    .expect("digest")
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        digests(&arm["Layers"], None),
        digests(&arm_manifest["layers"], Some("digest"))
    );
}

#[test]
fn each_image_of_an_index_is_its_single_platform_build() {
    let tmp = tempdir();
    let multi = build(&tmp.path().join("multi"), "linux/arm64,linux/amd64", &[]);
    for (i, platform) in ["linux/arm64", "linux/amd64"].into_iter().enumerate() {
        let single = build(&tmp.path().join(format!("single{i}")), platform, &[]);
        assert_eq!(
            multi["manifests"][i]["digest"], single["digest"],
            "{platform}"
        );
        assert_eq!(
            multi["manifests"][i]["layers"], single["layers"],
            "{platform}"
        );
    }
    // The first platform's image is what the summary's single-image fields describe.
    assert_eq!(multi["platform"], "linux/arm64");
    assert_eq!(multi["layers"], multi["manifests"][0]["layers"]);
}

#[test]
fn shared_layers_are_one_set_of_blobs() {
    let tmp = tempdir();
    let dir = tmp.path().join("shared");
    let built = build(&dir, THREE, &["--shared-layers"]);
    let manifests = built["manifests"].as_array().expect("manifests");
    for m in manifests {
        assert_eq!(m["layers"], manifests[0]["layers"]);
    }
    // Two layers, then a config and a manifest per platform, and the index.
    let blobs = std::fs::read_dir(dir.join("blobs/sha256"))
        .expect("blobs")
        .count();
    assert_eq!(blobs, 2 + 3 * 2 + 1);
    // They are linux/amd64's layers: its image is the single build's, shared or not.
    let single = build(&tmp.path().join("single"), "linux/amd64", &[]);
    assert_eq!(manifests[0]["digest"], single["digest"]);
    // Stored once in the cache too, which keys the set: another list is another entry.
    let store = test_cache().join("v1/blobs/sha256");
    let stored = std::fs::read_dir(&store).expect("store").count();
    build(&tmp.path().join("again"), THREE, &["--shared-layers"]);
    assert_eq!(builds(&test_cache()), 2);
    build(
        &tmp.path().join("two"),
        "linux/amd64,linux/arm64",
        &["--shared-layers"],
    );
    assert_eq!(builds(&test_cache()), 3);
    // Its two images are the first two of the three: only its index is new.
    assert_eq!(
        std::fs::read_dir(&store).expect("store").count(),
        stored + 1
    );
}

#[test]
fn a_cached_index_exports_the_same_bytes() {
    let tmp = tempdir();
    let first = build(&tmp.path().join("first"), THREE, &[]);
    let archive = tmp.path().join("again.tar");
    let again = build(
        &tmp.path().join("again"),
        THREE,
        &[
            "--rehash",
            "-o",
            &format!("oci-archive:{}", path_str(&archive)),
        ],
    );
    assert_eq!(builds(&test_cache()), 1);
    assert_eq!(first, {
        let mut again = again.clone();
        again["outputs"] = first["outputs"].clone();
        again
    });
    for name in ["first", "again"] {
        assert_eq!(
            std::fs::read(tmp.path().join(name).join("index.json")).expect("index.json"),
            std::fs::read(tmp.path().join("first/index.json")).expect("index.json")
        );
    }
}

#[test]
fn an_engine_loads_its_own_platform_or_says_it_is_not_listed() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let image = EngineImage::new(docker, "multi");
    let tmp = tempdir();
    let out = run_ok(image_maker().args([
        "-q",
        "--json",
        "-s",
        SPEC,
        "--platform",
        "linux/arm64,linux/amd64",
        "-o",
        "engine",
        &image.reference,
    ]));
    let built = json(&out);
    assert_engine_picked(&image, &built, "linux/amd64");
    let missing = tmp.path().join("never");
    let out = run(image_maker().args([
        "-s",
        SPEC,
        "--platform",
        "linux/arm64,linux/s390x",
        "-o",
        "engine",
        "-o",
        &format!("oci:{}", path_str(&missing)),
        "mock/multi:none",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("docker runs linux/amd64, which is not one of the image's platforms (linux/arm64,linux/s390x)"),
        "{err}"
    );
    assert!(err.contains("hint: "), "{err}");
    assert!(!missing.exists());
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn bad_platform_lists_are_usage_errors() {
    let tmp = tempdir();
    for (args, says) in [
        (
            vec!["--platform", "linux/amd64,linux/arm64,linux/amd64"],
            "platform `linux/amd64` is listed twice in `linux/amd64,linux/arm64,linux/amd64`",
        ),
        (
            vec!["--platform", "linux/amd64,linux/sparc"],
            "unknown architecture `sparc` in platform `linux/sparc`",
        ),
        (
            vec!["--platform", "linux/amd64,linux/arm64", "-b", "dockerfile"],
            "the dockerfile builder cannot make a multi-platform image: `linux/amd64,linux/arm64`",
        ),
    ] {
        let out = run(image_maker()
            .current_dir(tmp.path())
            .args(["-s", "1KB", "-o", "oci:x"])
            .args(&args)
            .arg("mock/bad:1"));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.contains("hint: "), "{args:?}: {err}");
        assert_eq!(entries(tmp.path()), Vec::<String>::new(), "{args:?}");
    }
}

#[test]
fn a_fixture_exposes_the_index_and_each_platforms_image() {
    let tmp = tempdir();
    let cache = Cache::at(tmp.path());
    let multi = Fixture::new("64KB,1KB")
        .platform("linux/amd64,linux/arm64")
        .cache(cache.clone())
        .get()
        .expect("multi-platform fixture");
    let single = Fixture::new("64KB,1KB")
        .cache(cache)
        .get()
        .expect("fixture");
    assert_eq!(single.index_digest(), None);
    assert_eq!(multi.index_digest(), Some(multi.digest()));
    let platforms: Vec<&str> = multi
        .manifests()
        .iter()
        .map(|m| m.platform.as_str())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let amd64 = multi.manifest("linux/amd64").expect("amd64 image");
    assert_eq!(amd64.digest, single.digest());
    assert_eq!(amd64.layers, single.layers());
    let index = blob_json(multi.oci_dir(), multi.digest());
    assert_eq!(
        entries_of(&index),
        [
            ("linux/amd64".to_owned(), amd64.digest.clone()),
            (
                "linux/arm64".to_owned(),
                multi.manifest("linux/arm64").expect("arm64").digest.clone()
            )
        ]
    );
}
