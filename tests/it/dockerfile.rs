//! `--builder dockerfile`: layer files and a Dockerfile in a temporary build directory, built
//! by the real engines (docker, podman, buildah); the directory is gone afterwards.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const SPEC: &str = "2MB:files=3,1KB";

fn assert_empty(dir: &Path) {
    assert!(
        entries(dir).is_empty(),
        "left behind in {}: {:?}",
        dir.display(),
        entries(dir)
    );
}

/// `image-maker -b dockerfile --no-cache --build-dir DIR -e ENGINE …`: a real build every
/// time, whatever images earlier tests left labelled with the same key.
fn dockerfile_build(build_dir: &Path, engine: &str) -> Command {
    let mut cmd = image_maker();
    cmd.args([
        "-b",
        "dockerfile",
        "--no-cache",
        "--build-dir",
        path_str(build_dir),
        "-e",
        engine,
    ]);
    cmd
}

/// The image's layers as docker stores them, from `docker save`, unpacked in order.
fn docker_rootfs(reference: &str, into: &Path) -> PathBuf {
    let saved = into.join("saved");
    let tar = into.join("saved.tar");
    run_ok(Command::new("docker").args(["save", "-o", path_str(&tar), reference]));
    tar::Archive::new(std::fs::File::open(&tar).expect("tar"))
        .unpack(&saved)
        .expect("unpack");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(saved.join("manifest.json")).expect("manifest"))
            .expect("json");
    let root = into.join("root");
    for layer in manifest[0]["Layers"].as_array().expect("layers") {
        let layer = saved.join(layer.as_str().expect("path"));
        tar::Archive::new(std::fs::File::open(&layer).expect("layer"))
            .unpack(&root)
            .expect("unpack layer");
    }
    root
}

/// `name:tag` lines of `<engine> images`.
fn listed(engine: &str) -> Vec<String> {
    // buildah calls the repository `Name`.
    let format = match engine {
        "buildah" => "{{.Name}}:{{.Tag}}",
        _ => "{{.Repository}}:{{.Tag}}",
    };
    let out = run_ok(Command::new(engine).args(["images", "--format", format]));
    stdout(&out).lines().map(str::to_owned).collect()
}

#[test]
fn docker_builds_layers_of_the_generated_files() {
    if !engine("docker") {
        return;
    }
    let tmp = tempdir();
    let build_dir = tmp.path().join("build");
    std::fs::create_dir(&build_dir).expect("mkdir");
    let image = EngineImage::new("docker", "dockerfile");
    let out = run_ok(dockerfile_build(&build_dir, "docker").args([
        "--json",
        "-s",
        SPEC,
        &image.reference,
    ]));
    let built = json(&out);
    assert_eq!(image.inspect("{{len .RootFS.Layers}}"), "2");
    assert_eq!(image.inspect("{{.Os}}/{{.Architecture}}"), "linux/amd64");
    assert_eq!(image.inspect("{{.Id}}"), built["config_digest"]);
    assert_eq!(
        image.inspect("{{json .RootFS.Layers}}"),
        serde_json::to_string(
            &built["layers"]
                .as_array()
                .expect("layers")
                .iter()
                .map(|l| l["diff_id"].clone())
                .collect::<Vec<_>>()
        )
        .expect("json")
    );
    assert!(
        listed("docker").contains(&image.reference),
        "{:?}",
        listed("docker")
    );
    assert_rootfs(&docker_rootfs(&image.reference, tmp.path()), SPEC);
    let err = stderr(&out);
    for stage in [
        "writing the build context",
        "wrote ",
        "building ",
        "removed the build directory",
    ] {
        assert!(err.contains(stage), "no `{stage}` in {err}");
    }
    // The engine's own output stays out of the way without `-v`.
    assert!(!err.contains("Step 1/"), "{err}");
    assert_empty(&build_dir);
}

#[test]
fn verbose_shows_the_engines_output_on_stderr() {
    if !engine("docker") {
        return;
    }
    let tmp = tempdir();
    let image = EngineImage::new("docker", "dockerfile-verbose");
    let out = run_ok(dockerfile_build(tmp.path(), "docker").args([
        "-v",
        "--json",
        "-s",
        "1KB",
        &image.reference,
    ]));
    assert!(
        stderr(&out).contains("Step 2/3 : ADD layer1 /layer1"),
        "{}",
        stderr(&out)
    );
    // stdout holds the summary alone.
    json(&out);
    assert_empty(tmp.path());
}

/// The same build with podman or buildah, which share containers/storage on this machine.
fn builds_with(engine_name: &'static str) {
    let tmp = tempdir();
    let image = EngineImage::new("podman", &format!("dockerfile-{engine_name}"));
    let layout = tmp.path().join("layout");
    let build_dir = tmp.path().join("build");
    std::fs::create_dir(&build_dir).expect("mkdir");
    run_ok(dockerfile_build(&build_dir, engine_name).args([
        "-q",
        "-s",
        SPEC,
        "-o",
        "engine",
        "-o",
        &format!("oci:{}", path_str(&layout)),
        &image.reference,
    ]));
    let name = format!("localhost/{}", image.reference);
    assert!(
        listed(engine_name).contains(&name),
        "{name} not in {engine_name} images: {:?}",
        listed(engine_name)
    );
    assert_eq!(image.inspect("{{len .RootFS.Layers}}"), "2");
    assert_eq!(image.inspect("{{.Os}}/{{.Architecture}}"), "linux/amd64");
    // The layout from `<engine> save` holds the files the generator makes.
    if tool("umoci") {
        let bundle = tmp.path().join("bundle");
        let tag = image.reference.rsplit(':').next().expect("tag");
        run_ok(Command::new("umoci").args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:{tag}", path_str(&layout)),
            path_str(&bundle),
        ]));
        assert_rootfs(&bundle.join("rootfs"), SPEC);
    }
    assert_empty(&build_dir);
}

#[test]
fn podman_builds_it_too() {
    if engine("podman") {
        builds_with("podman");
    }
}

#[test]
fn buildah_builds_it_too() {
    if tool("buildah") && engine("podman") {
        builds_with("buildah");
    }
}

#[test]
fn file_outputs_come_from_docker_save() {
    if !engine("docker") || !tool("skopeo") {
        return;
    }
    let tmp = tempdir();
    let image = EngineImage::new("docker", "dockerfile-save");
    let out = run_ok(
        dockerfile_build(tmp.path(), "docker")
            .current_dir(tmp.path())
            .args([
                "--json",
                "-s",
                SPEC,
                "-o",
                "oci:layout",
                "-o",
                "oci-archive:image.tar",
                &image.reference,
            ]),
    );
    let built = json(&out);
    assert_eq!(entries(tmp.path()), ["image.tar", "layout"]);
    let tag = image.reference.rsplit(':').next().expect("tag");
    for source in [
        format!("oci:{}/layout:{tag}", path_str(tmp.path())),
        format!("oci-archive:{}/image.tar", path_str(tmp.path())),
    ] {
        let inspected = run_ok(Command::new("skopeo").args(["inspect", &source]));
        let inspected: serde_json::Value =
            serde_json::from_slice(&inspected.stdout).expect("skopeo json");
        assert_eq!(inspected["Digest"], built["digest"], "{source}");
        assert_eq!(inspected["Architecture"], "amd64");
        assert_eq!(inspected["Layers"].as_array().map(Vec::len), Some(2));
    }
    // Only file outputs were asked for: the image does not stay in docker.
    assert!(!image.exists(), "{} left in docker", image.reference);
}

#[test]
fn a_failing_build_shows_the_engines_error_and_leaves_nothing() {
    if !engine("docker") {
        return;
    }
    let tmp = tempdir();
    let image = EngineImage::new("docker", "dockerfile-fails");
    // The daemon rejects the platform: a real engine failure after the context is written.
    let out = run(dockerfile_build(tmp.path(), "docker").args([
        "--platform",
        "windows/amd64",
        "-s",
        "1KB",
        &image.reference,
    ]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("error: `docker build` failed"), "{err}");
    assert!(err.contains("operating system is not supported"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_empty(tmp.path());
    assert!(!image.exists());
}

#[test]
fn keep_keeps_the_build_directory() {
    if !engine("docker") {
        return;
    }
    let tmp = tempdir();
    let image = EngineImage::new("docker", "dockerfile-keep");
    let out = run_ok(dockerfile_build(tmp.path(), "docker").args([
        "-q",
        "--keep",
        "-s",
        SPEC,
        &image.reference,
    ]));
    let err = stderr(&out);
    let kept = err
        .lines()
        .find_map(|l| l.strip_prefix("kept the build directory "))
        .unwrap_or_else(|| panic!("no path in {err}"));
    assert!(Path::new(kept).starts_with(tmp.path()), "{kept}");
    let files = ["Dockerfile", "layer1", "layer2"];
    assert_eq!(entries(Path::new(kept)), files);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(kept).expect("kept").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn emit_context_writes_the_files_and_a_dockerfile() {
    let tmp = tempdir();
    let context = tmp.path().join("context");
    run_ok(image_maker().args([
        "-q",
        "-s",
        SPEC,
        "--emit-context",
        path_str(&context),
        "mock/x:1",
    ]));
    let dockerfile = std::fs::read_to_string(context.join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.starts_with("FROM scratch\n"), "{dockerfile}");
    let adds: Vec<&str> = dockerfile.lines().skip(1).collect();
    // The label a `-b dockerfile` build of the same spec would carry: that build finds
    // an image made from this context.
    let label = format!("LABEL dev.image-maker.key={}", dockerfile_key(SPEC, 0));
    assert_eq!(adds, ["ADD layer1 /layer1", "ADD layer2 /layer2", &label]);
    for (path, bytes) in expected_files(SPEC) {
        let actual = std::fs::read(context.join(&path)).expect(&path);
        assert!(actual == bytes, "{path} differs from the generator's bytes");
    }
    assert_eq!(entries(&context), ["Dockerfile", "layer1", "layer2"]);
    assert_eq!(entries(tmp.path()), ["context"]);
    // A directory with something in it is left alone.
    let out = run(image_maker().args([
        "-s",
        "1KB",
        "--emit-context",
        path_str(&context),
        "mock/x:1",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("exists and is not an empty directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn flags_that_do_not_fit_together_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--keep"],
            "error: `--keep` is an option of the dockerfile builder",
        ),
        (
            &["--build-dir", "/tmp"],
            "error: `--build-dir` is an option of the dockerfile builder",
        ),
        (
            &["--emit-context", "ctx", "-o", "oci:x"],
            "cannot be used with",
        ),
        (&["-b", "dockerfile", "-q", "-v"], "cannot be used with"),
        (
            &["-e", "buildah"],
            "error: buildah cannot load an image stream",
        ),
    ];
    for (args, expected) in cases {
        let tmp = tempdir();
        let out = run(image_maker()
            .current_dir(tmp.path())
            .args(["-s", "1KB"])
            .args(*args)
            .arg("mock/x:1"));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_empty(tmp.path());
    }
}

#[test]
fn missing_engine_is_a_clear_error() {
    let tmp = tempdir();
    let out = run(image_maker().env("PATH", tmp.path()).args([
        "-b",
        "dockerfile",
        "--build-dir",
        path_str(tmp.path()),
        "-s",
        "1KB",
        "mock/x:1",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("error: no container engine is reachable (tried docker: not installed; podman: not installed; nerdctl: not installed; buildah: not installed)"),
        "{err}"
    );
    let out = run(image_maker().env("PATH", tmp.path()).args([
        "-b",
        "dockerfile",
        "-e",
        "docker",
        "-s",
        "1KB",
        "mock/x:1",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("error: docker is not installed"), "{err}");
    assert!(
        err.contains("hint: install it, choose another with `--engine`"),
        "{err}"
    );
    assert_empty(tmp.path());
}

#[test]
fn unreachable_daemon_is_a_clear_error() {
    if !tool("docker") {
        return;
    }
    let tmp = tempdir();
    let out = run(dockerfile_build(tmp.path(), "docker")
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .args(["-s", "1KB", "mock/x:1"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("error: docker does not answer"), "{err}");
    assert!(
        err.contains("hint:") && err.contains("DOCKER_HOST"),
        "{err}"
    );
    assert_empty(tmp.path());
}

fn kill(signal: &str, child: &std::process::Child) {
    run_ok(Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]));
}

#[test]
fn ctrl_c_while_writing_the_context_removes_the_build_directory() {
    if !engine("docker") {
        return;
    }
    let tmp = tempdir();
    let image = EngineImage::new("docker", "dockerfile-ctrl-c");
    let child = dockerfile_build(tmp.path(), "docker")
        .args(["-q", "-s", "4GB", &image.reference])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The layer file exists: data generation is under way.
    let started = Instant::now();
    while !entries(tmp.path())
        .first()
        .is_some_and(|d| tmp.path().join(d).join("layer1/4GB-file").exists())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no layer file appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    kill("INT", &child);
    let out = finish(child);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("error: interrupted"),
        "{}",
        stderr(&out)
    );
    assert_empty(tmp.path());
    assert!(!image.exists());
}

#[test]
fn sigterm_during_the_engine_build_removes_the_build_directory() {
    if !engine("docker") {
        return;
    }
    let tmp = tempdir();
    let image = EngineImage::new("docker", "dockerfile-term");
    let mut child = dockerfile_build(tmp.path(), "docker")
        .args(["-s", "256MB,256MB", &image.reference])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Status lines say when the engine build starts; the signal follows at once.
    let stderr_pipe = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr_pipe).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("utf-8 line");
        let building = line.starts_with("building ");
        seen.push(line);
        if building {
            break;
        }
    }
    kill("TERM", &child);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = finish(child);
    let err = format!("{}\n{}", seen.join("\n"), rest.join("\n"));
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("error: interrupted"), "{err}");
    assert_empty(tmp.path());
    assert!(!image.exists(), "an interrupted build was tagged");
}

/// The dockerfile builder's cache key for `list` on linux/amd64 with mtime `epoch`.
pub(crate) fn dockerfile_key(list: &str, epoch: u64) -> String {
    let request = image_maker::BuildRequest::new(
        image_maker::Spec::parse(list).expect("valid spec"),
        image_maker::Reference::parse("mock/x:1").expect("valid reference"),
    )
    .mtime(epoch);
    image_maker::build::dockerfile::key(&request)
}

/// A `SOURCE_DATE_EPOCH` no other test or run uses: the mtime is part of the cache key, so
/// the images of this test are the only ones its lookups can find.
fn unique_epoch() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    u64::from(std::process::id()) * 1000 + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The images an engine holds with the cache key `key` in their label: those an earlier run
/// left are removed at the start, and all of them when dropped.
pub(crate) struct Labelled {
    engine: &'static str,
    key: String,
}

impl Labelled {
    pub(crate) fn new(engine: &'static str, key: String) -> Self {
        let labelled = Self { engine, key };
        labelled.remove();
        labelled
    }

    /// Their IDs, each once.
    pub(crate) fn ids(&self) -> Vec<String> {
        let out = run_ok(Command::new(self.engine).args([
            "images",
            "--filter",
            &format!("label=dev.image-maker.key={}", self.key),
            "--format",
            "{{.ID}}",
            "--no-trunc",
        ]));
        let mut ids: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    fn remove(&self) {
        for id in self.ids() {
            let _ = Command::new(self.engine).args(["rmi", "-f", &id]).output();
        }
    }
}

impl Drop for Labelled {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Whether the status lines say the engine was asked to build.
fn engine_built(err: &str) -> bool {
    err.contains("writing the build context") || err.contains("\nbuilding ")
}

/// Whether the status lines say the image was found by its label instead.
fn found_by_key(err: &str, reference: &str, engine: &str) -> bool {
    err.contains(&format!("found {reference} in {engine} by its cache key ("))
        && err.contains("; no build")
}

/// Three builds of one spec under three names: the first builds, the second takes the
/// first's image by its label, `--no-cache` builds again; file outputs of a found image come
/// from the engine without removing the image from it.
fn a_second_build_finds_the_first(engine_name: &'static str) {
    let epoch = unique_epoch();
    let labelled = Labelled::new(engine_name, dockerfile_key(SPEC, epoch));
    let tmp = tempdir();
    let build = |reference: &str, extra: &[&str]| {
        let out = run_ok(
            image_maker()
                .env("SOURCE_DATE_EPOCH", epoch.to_string())
                .current_dir(tmp.path())
                .args(["-b", "dockerfile", "-e", engine_name, "--build-dir"])
                .arg(tmp.path())
                .args(extra)
                .args(["--json", "-s", SPEC, reference]),
        );
        (json(&out), stderr(&out))
    };
    let first = EngineImage::new(engine_name, &format!("dfcache-first-{engine_name}"));
    let (built, err) = build(&first.reference, &[]);
    assert!(engine_built(&err), "{err}");
    assert!(!err.contains("by its cache key"), "{err}");
    let id = first.inspect("{{.Id}}");
    let created = first.inspect("{{.Created}}");

    let second = EngineImage::new(engine_name, &format!("dfcache-second-{engine_name}"));
    let (found, err) = build(&second.reference, &[]);
    assert!(found_by_key(&err, &second.reference, engine_name), "{err}");
    assert!(!engine_built(&err), "{err}");
    assert_eq!(second.inspect("{{.Id}}"), id);
    assert_eq!(found["config_digest"], built["config_digest"]);
    assert_eq!(found["layers"], built["layers"]);
    assert_eq!(entries(tmp.path()), Vec::<String>::new());

    // Only files: saved from the image found, which stays in the engine as it was.
    let (saved, err) = build("image-maker-test/dfcache-files:1", &["-o", "oci:layout"]);
    assert!(
        found_by_key(&err, "image-maker-test/dfcache-files:1", engine_name),
        "{err}"
    );
    assert!(!engine_built(&err), "{err}");
    let index = std::fs::read_to_string(tmp.path().join("layout/index.json")).expect("index");
    let digest = saved["digest"].as_str().expect("digest");
    assert!(index.contains(digest), "{index}");
    assert!(
        first.exists() && second.exists(),
        "the found image was removed"
    );
    assert_eq!(labelled.ids().len(), 1);

    // `--no-cache` builds: a new image, made now.
    let rebuilt = EngineImage::new(engine_name, &format!("dfcache-rebuilt-{engine_name}"));
    let (_, err) = build(&rebuilt.reference, &["--no-cache"]);
    assert!(engine_built(&err), "{err}");
    assert!(!err.contains("by its cache key"), "{err}");
    assert_ne!(rebuilt.inspect("{{.Id}}"), id);
    assert_ne!(rebuilt.inspect("{{.Created}}"), created);
    assert_eq!(labelled.ids().len(), 2);
}

#[test]
fn a_second_docker_build_finds_the_image_by_its_cache_key() {
    if engine("docker") {
        a_second_build_finds_the_first("docker");
    }
}

#[test]
fn a_second_podman_build_finds_the_image_by_its_cache_key() {
    if engine("podman") {
        a_second_build_finds_the_first("podman");
    }
}

#[test]
fn an_image_built_from_the_emitted_context_is_found() {
    if !engine("docker") {
        return;
    }
    let epoch = unique_epoch();
    let labelled = Labelled::new("docker", dockerfile_key("1KB", epoch));
    let tmp = tempdir();
    let context = tmp.path().join("context");
    run_ok(
        image_maker()
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .args(["-q", "-s", "1KB", "--emit-context"])
            .arg(&context)
            .arg("mock/x:1"),
    );
    let own = EngineImage::new("docker", "dfcache-own-build");
    run_ok(Command::new("docker").args([
        "build",
        "-q",
        "--platform",
        "linux/amd64",
        "-t",
        &own.reference,
        path_str(&context),
    ]));
    let image = EngineImage::new("docker", "dfcache-after-own-build");
    let out = run_ok(
        image_maker()
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .args([
                "-b",
                "dockerfile",
                "-e",
                "docker",
                "-s",
                "1KB",
                &image.reference,
            ]),
    );
    assert!(
        found_by_key(&stderr(&out), &image.reference, "docker"),
        "{}",
        stderr(&out)
    );
    assert_eq!(image.inspect("{{.Id}}"), own.inspect("{{.Id}}"));
    assert_eq!(labelled.ids().len(), 1);
}
