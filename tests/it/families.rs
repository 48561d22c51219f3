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

const FAMILY: &str = r#"
[base]
repository = "acme/base"
tags = ["1.0.0"]
layers = "1MB,64KB:seed=common"

[app]
repository = "acme/app-{1..3}"
tags = "1..5"
base = "base"
layers = "32KB:tree=4"
env = ["MODE=test"]
runnable = true
"#;

/// `(reference, digest)` pairs as `batch --json` prints them, sorted.
fn written(out: &std::process::Output) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = json(out)
        .as_array()
        .expect("an array")
        .iter()
        .map(|w| {
            (
                w["reference"].as_str().expect("reference").to_owned(),
                w["digest"].as_str().expect("digest").to_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

/// 3 repositories × 5 tags on a shared base, pushed 3 at a time: skopeo lists the tags,
/// the base's blobs are uploaded once and mounted into the others, each stored once; two
/// shards make the whole; serve reads the same file and serves the same digests.
#[test]
fn a_family_pushes_shares_its_base_shards_and_serves_the_same_digests() {
    let (Some(skopeo), Some(registry)) = (tool("skopeo"), Registry::start()) else {
        return;
    };
    let tmp = tempdir();
    let file = tmp.path().join("family.toml");
    fs::write(&file, FAMILY).expect("write");
    let out = run_ok(image_maker().args([
        "batch",
        "-q",
        "--json",
        "-j",
        "3",
        path_str(&file),
        "--to",
        &registry.host(),
    ]));
    let pushed = written(&out);
    assert_eq!(pushed.len(), 16, "{pushed:?}");
    let tags = json(&run_ok(skopeo.cmd().args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/acme/app-2", registry.host()),
    ])));
    let mut listed: Vec<&str> = tags["Tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t.as_str().expect("tag"))
        .collect();
    listed.sort();
    assert_eq!(listed, ["1", "2", "3", "4", "5"]);
    // The base's two layers went up once, to acme/base; each app repository mounted them.
    for app in ["acme/app-1", "acme/app-2", "acme/app-3"] {
        assert!(registry.mounts(app) >= 2, "{app}: {}", registry.log());
    }
    let base_layers = json(&run_ok(skopeo.cmd().args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/acme/base:1.0.0", registry.host()),
    ])))["Layers"]
        .clone();
    let app_layers = json(&run_ok(skopeo.cmd().args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/acme/app-3:4", registry.host()),
    ])))["Layers"]
        .clone();
    assert_eq!(app_layers[0], base_layers[0]);
    assert_eq!(app_layers[1], base_layers[1]);
    let blobs = files_under(&registry.dir.path().join("data/docker/registry/v2/blobs"));
    let stored: Vec<String> = blobs
        .iter()
        .filter_map(|(p, _)| Some(p.parent()?.file_name()?.to_str()?.to_owned()))
        .collect();
    for layer in [&base_layers[0], &base_layers[1]] {
        let hex = layer
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:");
        assert_eq!(stored.iter().filter(|s| *s == hex).count(), 1, "{hex}");
    }

    // Two shards, each to a directory of layouts: together, the whole.
    let mut halves = Vec::new();
    for part in ["1/2", "2/2"] {
        let out = run_ok(image_maker().args([
            "batch",
            "-q",
            "--json",
            path_str(&file),
            "--shard",
            part,
            "--out",
            path_str(&tmp.path().join("layouts")),
        ]));
        halves.extend(written(&out));
    }
    halves.sort();
    let host = format!("{}/", registry.host());
    let unhosted: Vec<(String, String)> = pushed
        .iter()
        .map(|(r, d)| (r.trim_start_matches(&host).to_owned(), d.clone()))
        .collect();
    assert_eq!(halves, unhosted);
    let Some(oci_image_tool) = tool("oci-image-tool") else {
        return;
    };
    // oci-image-tool 1.0 calls any ref of an index of four manifests or more "not unique":
    // it validates the base's layout; skopeo reads the apps' by tag.
    assert_valid_layout(
        oci_image_tool,
        &tmp.path().join("layouts/acme/base"),
        "1.0.0",
    );
    let layout = tmp.path().join("layouts/acme/app-1");
    let seen = run_ok(skopeo.cmd().args([
        "inspect",
        "--format",
        "{{.Digest}}",
        &format!("oci:{}:5", path_str(&layout)),
    ]));
    let expected = &unhosted
        .iter()
        .find(|(r, _)| r == "acme/app-1:5")
        .expect("app-1:5")
        .1;
    assert_eq!(stdout(&seen).trim(), expected);

    let server = crate::serve::Served::start(&["--images", path_str(&file)]);
    for (reference, digest) in unhosted.iter().step_by(5) {
        let out = run_ok(skopeo.cmd().args([
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{}/{reference}", server.host),
        ]));
        assert_eq!(stdout(&out).trim(), digest, "{reference}");
    }
}

#[test]
fn a_bad_shard_or_family_is_refused_naming_it() {
    let tmp = tempdir();
    let file = tmp.path().join("family.toml");
    fs::write(&file, FAMILY).expect("write");
    for shard in ["0/2", "3/2", "x"] {
        let out = run(image_maker().args([
            "batch",
            path_str(&file),
            "--shard",
            shard,
            "--out",
            path_str(&tmp.path().join("o")),
        ]));
        assert_eq!(out.status.code(), Some(2), "{shard}");
        assert!(
            stderr(&out).contains(&format!("--shard `{shard}`")),
            "{}",
            stderr(&out)
        );
    }
    for (index, says) in [
        ("2", "--shard-index `2` is not a part of --shards 2: 0 to 1"),
        ("x", "--shard-index `x` is not a part of --shards 2"),
    ] {
        let out = run(image_maker()
            .args(["batch", path_str(&file), "--shards", "2", "--out"])
            .arg(tmp.path().join("o"))
            .env("JOB_COMPLETION_INDEX", index));
        assert_eq!(out.status.code(), Some(2), "{index}");
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    fs::write(&file, FAMILY.replace("base = \"base\"", "base = \"nope\"")).expect("write");
    let out = run(image_maker().args(["batch", path_str(&file), "--out", "x"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("its base `nope` is no entry"),
        "{}",
        stderr(&out)
    );
    assert!(!tmp.path().join("o").exists());
}
