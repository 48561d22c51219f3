//! Images that share layers: a `seed=NAME` layer is one blob in every image that names it,
//! whatever else the image holds, and pushes and pulls move it once.

use std::fs;
use std::path::Path;

use crate::support::registry::*;
use crate::support::*;

/// Builds `spec` into `oci:DIR` as `mock/family:TAG`; returns its layers' digests.
fn build(dir: &Path, tag: &str, spec: &str) -> Vec<String> {
    let out = run_ok(image_maker().args([
        "-q",
        "--json",
        "-s",
        spec,
        "-o",
        &format!("oci:{}", path_str(dir)),
        &format!("mock/family:{tag}"),
    ]));
    layer_digests(&json(&out))
}

fn layer_digests(built: &serde_json::Value) -> Vec<String> {
    built["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_owned())
        .collect()
}

fn blob(dir: &Path, digest: &str) -> Vec<u8> {
    fs::read(
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .expect("blob")
}

#[test]
fn a_seed_layer_is_one_blob_in_every_image_and_place() {
    let tmp = tempdir();
    let shared = "3MB:tree=40:symlinks=3:seed=base:compression=gzip";
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let first = build(&a, "1", &format!("{shared},64KB"));
    let second = build(&b, "2", &format!("{shared},128KB:tree=20"));
    // Below another layer, and in an image of two platforms: still the same bytes.
    let out = run_ok(image_maker().args([
        "-q",
        "--json",
        "--platform",
        "linux/amd64,linux/arm64",
        "-s",
        &format!("1KB,{shared}"),
        "-o",
        &format!("oci:{}", path_str(&c)),
        "mock/family:3",
    ]));
    let manifests = json(&out)["manifests"]
        .as_array()
        .expect("manifests")
        .clone();
    assert_eq!(manifests.len(), 2);
    let third: Vec<Vec<String>> = manifests.iter().map(layer_digests).collect();

    assert_eq!(first[0], second[0]);
    assert_ne!(first[1], second[1]);
    for platform in &third {
        assert_eq!(platform[1], first[0], "{third:?}");
    }
    // The platforms' own layers differ; the seed layer does not.
    assert_ne!(third[0][0], third[1][0]);
    let bytes = blob(&a, &first[0]);
    assert_eq!(sha256(&bytes), first[0]);
    assert!(bytes == blob(&b, &first[0]) && bytes == blob(&c, &first[0]));
    // verify re-derives every byte from the label's spec, `seed=` included.
    for (dir, tag) in [(&a, "1"), (&c, "3")] {
        run_ok(image_maker().args(["verify", "-q", &format!("oci:{}:{tag}", path_str(dir))]));
    }
    // Its paths follow the name, not the place: the tar lists `seed-base/`, never `layerN/`.
    let listed = run_ok(
        tool_or_gzip().args(["-dc"]).arg(
            a.join("blobs/sha256")
                .join(first[0].trim_start_matches("sha256:")),
        ),
    );
    let tar = listed.stdout;
    assert!(
        contains(&tar, b"seed-base/") && !contains(&tar, b"layer1/"),
        "paths"
    );
}

fn tool_or_gzip() -> std::process::Command {
    std::process::Command::new("gzip")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn seed_names_are_checked_and_refused_beside_whiteouts() {
    for (spec, says) in [
        (
            "1MB:seed=",
            "layer option `seed` in `1MB:seed=` has no value",
        ),
        ("1MB:seed=a/b", "`seed=a/b` in `1MB:seed=a/b` is not a name"),
        (
            "1MB:tree=9,1MB:seed=x:whiteouts=1",
            "`seed=` and `whiteouts=` cannot both be given in `1MB:seed=x:whiteouts=1`",
        ),
    ] {
        let out = run(image_maker().args(["-s", spec, "-o", "oci:/nonexistent/x", "m:1"]));
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{spec}: {}", stderr(&out));
        assert!(stderr(&out).contains("hint: "), "{spec}: {}", stderr(&out));
    }
}

/// v1 and v2 share their first layer: pushed to one repository the second image uploads
/// only its own blobs, to another it mounts the shared one, and docker pulls only the new
/// layer after v1.
#[test]
fn pushes_and_pulls_move_a_shared_layer_once() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let (v1, v2) = (
        "2MB:seed=base,256KB:seed=v1",
        "2MB:seed=base,256KB:seed=v2,64KB",
    );
    let repo = format!("image-maker-test/family-{}", unique());
    let push = |spec: &str, target: &str, extra: &[&str]| {
        let mut cmd = image_maker();
        cmd.env("DOCKER_CONFIG", tmp.path())
            .args(["-q", "--json", "-s", spec, "-o", "registry"])
            .args(extra)
            .arg(target);
        json(&run_ok(&mut cmd))
    };
    let first = push(v1, &format!("{}/{repo}:v1", registry.host()), &[]);
    assert_eq!(first["pushed"]["uploaded"], 3, "{first}");
    let before = registry.uploads(&repo);
    let second = push(v2, &format!("{}/{repo}:v2", registry.host()), &[]);
    // Its config and two new layers go up; the shared layer is there already.
    assert_eq!(
        (&second["pushed"]["uploaded"], &second["pushed"]["skipped"]),
        (&3.into(), &1.into()),
        "{second}"
    );
    // POST + PUT for each new blob.
    assert_eq!(registry.uploads(&repo) - before, 6, "{}", registry.log());
    let shared = layer_digests(&first)[0].clone();
    assert_eq!(layer_digests(&second)[0], shared);

    let other = format!("{repo}-other");
    let third = push(
        v2,
        &format!("{}/{other}:v2", registry.host()),
        &["--mount-from", &repo],
    );
    assert_eq!(third["pushed"]["mounted"], 4, "{third}");
    assert_eq!(registry.uploads(&other), 0, "{}", registry.log());

    let pull = |tag: &str| {
        let image = EngineImage::named(docker, format!("{}/{repo}:{tag}", registry.host()));
        let out = run(docker.cmd().args(["pull", &image.reference]));
        assert!(out.status.success(), "docker pull: {}", stderr(&out));
        (image, stdout(&out))
    };
    let (_v1, _) = pull("v1");
    let (_v2, said) = pull("v2");
    let short = &shared.trim_start_matches("sha256:")[..12];
    assert!(said.contains(&format!("{short}: Already exists")), "{said}");
    assert_eq!(said.matches("Pull complete").count(), 2, "{said}");
}

/// 127 and 128 layers load into podman; docker's overlay driver stops at 125, and one over
/// gets a hint naming the limit; 500 layers push to a registry and serve, digest for digest.
#[test]
fn many_layers_build_load_push_and_serve() {
    let (Some(podman), Some(docker), Some(skopeo)) =
        (engine("podman"), engine("docker"), tool("skopeo"))
    else {
        return;
    };
    let Some(registry) = Registry::start() else {
        return;
    };
    for n in [127, 128] {
        let image = EngineImage::new(podman, "many");
        let list = format!("{n}x1KB");
        run_ok(image_maker().args([
            "-q",
            "-s",
            &list,
            "-o",
            "engine",
            "-e",
            "podman",
            &image.reference,
        ]));
        assert_eq!(
            image.inspect("{{len .RootFS.Layers}}"),
            n.to_string(),
            "{list}"
        );
    }
    let image = EngineImage::new(docker, "many");
    let out = run(image_maker().args(["-q", "-s", "126x1KB", "-e", "docker", &image.reference]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hint: docker stores at most 125 layers"),
        "{}",
        stderr(&out)
    );

    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let target = format!("{}/image-maker-test/many:500", registry.host());
    let built = json(&run_ok(image_maker().args([
        "-q",
        "--json",
        "-s",
        "500x1KB",
        "-o",
        &format!("oci:{}", path_str(&layout)),
        "-o",
        "registry",
        &target,
    ])));
    let digest = built["digest"].as_str().expect("digest");
    assert_eq!(built["pushed"]["uploaded"], 501, "{}", built["pushed"]);
    let server = crate::serve::Served::start(&[]);
    for source in [target.clone(), format!("{}/mock:500x1KB", server.host)] {
        let seen = json(&run_ok(skopeo.cmd().args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{source}"),
        ])));
        assert_eq!(seen["Digest"], digest, "{source}");
        assert_eq!(
            seen["Layers"].as_array().map(Vec::len),
            Some(500),
            "{source}"
        );
    }
}
