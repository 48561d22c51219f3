//! The default `engine` output: the image streams into `docker load` / `podman load`.

use crate::support::*;

#[test]
fn default_output_puts_the_image_in_docker() {
    // No `--engine`: docker is the first engine tried on Linux.
    let Some(docker) = engine("docker") else {
        return;
    };
    let image = EngineImage::new(docker, "default-output");
    let out = run_ok(image_maker().args(["--json", "-s", "2MB,1KB:files=3", &image.reference]));
    let built = json(&out);
    assert!(image.exists(), "{} not in docker", image.reference);
    let listed = run_ok(
        docker
            .cmd()
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"]),
    );
    assert!(
        stdout(&listed).lines().any(|l| l == image.reference),
        "{}",
        stdout(&listed)
    );
    assert_eq!(
        image.inspect("{{.Id}}"),
        built["config_digest"].as_str().expect("config digest")
    );
    assert_eq!(image.inspect("{{len .RootFS.Layers}}"), "2");
}

#[test]
fn the_loaded_image_holds_the_generated_files() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let spec = "1MB,3KB:files=3,5KB:tree=70";
    let image = EngineImage::new(docker, "export");
    run_ok(image_maker().args(["-q", "-s", spec, "-o", "engine", &image.reference]));
    let tmp = tempdir();
    let tar = docker_export(docker, &image.reference, tmp.path());
    let root = tmp.path().join("root");
    tar::Archive::new(std::fs::File::open(&tar).expect("tar"))
        .unpack(&root)
        .expect("unpack");
    for (path, bytes) in expected_files(spec) {
        assert!(
            std::fs::read(root.join(&path)).expect(&path) == bytes,
            "{path} differs"
        );
    }
}

#[test]
fn too_many_layers_for_docker_get_a_hint() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let image = EngineImage::new(docker, "deep");
    let out = run(image_maker().args([
        "-q",
        "-n",
        "130",
        "-s",
        "1B",
        "-e",
        "docker",
        &image.reference,
    ]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("`docker load` failed: max depth exceeded"),
        "{err}"
    );
    assert!(
        err.contains("hint: docker stores at most 125 layers"),
        "{err}"
    );
    assert!(!image.exists());
}

#[test]
fn podman_loads_the_image_too() {
    let Some(podman) = engine("podman") else {
        return;
    };
    let image = EngineImage::new(podman, "podman");
    run_ok(image_maker().args(["-q", "-s", "1MB,2KB", "-e", "podman", &image.reference]));
    assert!(image.exists(), "{} not in podman", image.reference);
    assert_eq!(image.inspect("{{len .RootFS.Layers}}"), "2");
}

#[test]
fn unreachable_daemon_is_a_clear_error() {
    if tool("docker").is_none() {
        return;
    }
    let tmp = tempdir();
    let out = run(image_maker()
        .current_dir(tmp.path())
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .args([
            "-s", "1MB", "-e", "docker", "-o", "oci:out", "-o", "engine", "mock/x:1",
        ]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("error: docker does not answer"), "{err}");
    assert!(
        err.contains("hint:") && err.contains("DOCKER_HOST"),
        "{err}"
    );
    assert!(
        entries(tmp.path()).is_empty(),
        "left behind: {:?}",
        entries(tmp.path())
    );
}

#[test]
fn missing_engine_is_a_clear_error() {
    let tmp = tempdir();
    let out = run(image_maker()
        .current_dir(tmp.path())
        .env("PATH", tmp.path())
        .args(["-s", "1MB", "mock/x:1"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("error: no container engine is reachable (tried docker: not installed; podman: not installed)"), "{err}");
    assert!(
        err.contains("hint:") && err.contains("--output oci:DIR"),
        "{err}"
    );
    let out = run(image_maker()
        .env("PATH", tmp.path())
        .args(["-s", "1MB", "-e", "podman", "mock/x:1"]));
    assert!(
        stderr(&out).contains("error: podman is not installed"),
        "{}",
        stderr(&out)
    );
}
