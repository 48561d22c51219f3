//! `--builder dockerfile`: layer files and a Dockerfile in a temporary build directory, built
//! by the real engines (docker, podman, buildah); the directory is gone afterwards.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;

const SPEC: &str = "2MB:files=3,1KB";

/// How the status lines of a dockerfile build begin; the engine's own output (`Step 1/3`
/// from the legacy builder, `#1 [internal]` from BuildKit) begins otherwise.
const OWN_LINES: &[&str] = &[
    "writing the build context",
    "wrote ",
    "building ",
    "built ",
    "saving ",
    "saved ",
    "layer ",
    "removed the build directory",
];

fn assert_empty(dir: &Path) {
    assert!(
        entries(dir).is_empty(),
        "left behind in {}: {:?}",
        dir.display(),
        entries(dir)
    );
}

/// `image-maker -b dockerfile --build-dir DIR -e ENGINE …`.
fn dockerfile_build(build_dir: &Path, engine: &str) -> Command {
    let mut cmd = image_maker();
    // A real build every time, whatever images other tests left labelled with the same key.
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

/// The regular files of each of the image's layers as docker stores them (`docker save`),
/// by path, in the order of the image's layers.
fn docker_layers(image: &EngineImage, into: &Path) -> Vec<Vec<(String, Vec<u8>)>> {
    let saved = into.join("saved");
    let tar = into.join("saved.tar");
    run_ok(
        image
            .engine
            .cmd()
            .args(["save", "-o", path_str(&tar), &image.reference]),
    );
    tar::Archive::new(std::fs::File::open(&tar).expect("tar"))
        .unpack(&saved)
        .expect("unpack");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(saved.join("manifest.json")).expect("manifest"))
            .expect("json");
    manifest[0]["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|layer| {
            let layer = saved.join(layer.as_str().expect("path"));
            let mut archive = tar::Archive::new(std::fs::File::open(&layer).expect("layer"));
            let mut files: Vec<(String, Vec<u8>)> = archive
                .entries()
                .expect("tar")
                .map(|entry| entry.expect("entry"))
                .filter(|entry| entry.header().entry_type().is_file())
                .map(|mut entry| {
                    let path = entry.path().expect("path").to_string_lossy().into_owned();
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes).expect("read");
                    (path, bytes)
                })
                .collect();
            files.sort();
            files
        })
        .collect()
}

/// Asserts that each of the image's layers holds exactly the generator's files of the
/// spec's layer, byte for byte.
fn assert_layers_hold_the_generated_files(image: &EngineImage, list: &str, into: &Path) {
    let actual = docker_layers(image, into);
    let expected = expected_layers(list);
    assert_eq!(actual.len(), expected.len(), "number of layers");
    for (n, (actual, mut expected)) in actual.into_iter().zip(expected).enumerate() {
        expected.sort();
        let names = |files: &[(String, Vec<u8>)]| -> Vec<String> {
            files.iter().map(|(p, _)| p.clone()).collect()
        };
        assert_eq!(names(&actual), names(&expected), "files of layer {}", n + 1);
        for ((path, actual), (_, expected)) in actual.iter().zip(&expected) {
            assert!(
                actual == expected,
                "{path}: the engine's bytes differ from the generator's"
            );
        }
    }
}

/// Whether `engine` holds an image named `name`. It looks up that one image: listing the whole
/// store fails when a test running beside this one removes an image halfway through the list.
fn holds(engine: Tool, name: &str) -> bool {
    engine
        .cmd()
        .args(["inspect", "--type", "image", name])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn docker_builds_layers_of_the_generated_files() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let build_dir = tmp.path().join("build");
    std::fs::create_dir(&build_dir).expect("mkdir");
    let image = EngineImage::new(docker, "dockerfile");
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
    assert!(image.exists(), "{} not in docker", image.reference);
    assert_layers_hold_the_generated_files(&image, SPEC, tmp.path());
    let err = stderr(&out);
    for stage in [
        "writing the build context",
        "wrote ",
        "building ",
        "removed the build directory",
    ] {
        assert!(err.contains(stage), "no `{stage}` in {err}");
    }
    // The engine's own output stays out of the way without `-v`: every line is one of ours.
    for line in err.lines() {
        assert!(
            OWN_LINES.iter().any(|own| line.starts_with(own)),
            "`{line}` in {err}"
        );
    }
    assert_empty(&build_dir);
}

#[test]
fn verbose_shows_the_engines_output_on_stderr() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let image = EngineImage::new(docker, "dockerfile-verbose");
    let out = run_ok(dockerfile_build(tmp.path(), "docker").args([
        "-v",
        "--json",
        "-s",
        "1KB",
        &image.reference,
    ]));
    let err = stderr(&out);
    // Every builder (legacy `Step 2/2 : ADD …`, BuildKit `#5 [1/1] ADD …`) echoes the
    // instruction it runs; lines that are not ours are the engine's.
    assert!(err.contains("ADD layer1 /layer1"), "{err}");
    assert!(
        err.lines()
            .any(|line| !OWN_LINES.iter().any(|own| line.starts_with(own))),
        "{err}"
    );
    // stdout holds the summary alone, and it is the image the engine has.
    assert_eq!(image.inspect("{{.Id}}"), json(&out)["config_digest"]);
    assert_empty(tmp.path());
    assert_layers_hold_the_generated_files(&image, "1KB", tmp.path());
}

/// The same build with podman or buildah, which share containers/storage on this machine.
fn builds_with(builder: Tool, podman: Tool) {
    let tmp = tempdir();
    let image = EngineImage::new(podman, &format!("dockerfile-{}", builder.name()));
    let layout = tmp.path().join("layout");
    let build_dir = tmp.path().join("build");
    std::fs::create_dir(&build_dir).expect("mkdir");
    run_ok(dockerfile_build(&build_dir, builder.name()).args([
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
    assert!(holds(builder, &name), "{name} not in {}", builder.name());
    assert_eq!(image.inspect("{{len .RootFS.Layers}}"), "2");
    assert_eq!(image.inspect("{{.Os}}/{{.Architecture}}"), "linux/amd64");
    // The layout from `<engine> save` holds the files the generator makes.
    if let Some(umoci) = tool("umoci") {
        let bundle = tmp.path().join("bundle");
        let tag = image.tag();
        run_ok(umoci.cmd().args([
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
    if let Some(podman) = engine("podman") {
        builds_with(podman, podman);
    }
}

#[test]
fn buildah_builds_it_too() {
    if let (Some(buildah), Some(podman)) = (tool("buildah"), engine("podman")) {
        builds_with(buildah, podman);
    }
}

#[test]
fn file_outputs_come_from_docker_save() {
    let (Some(docker), Some(skopeo)) = (engine("docker"), tool("skopeo")) else {
        return;
    };
    let tmp = tempdir();
    let image = EngineImage::new(docker, "dockerfile-save");
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
    let tag = image.tag();
    for source in [
        format!("oci:{}/layout:{tag}", path_str(tmp.path())),
        format!("oci-archive:{}/image.tar", path_str(tmp.path())),
    ] {
        let inspected = run_ok(skopeo.cmd().args(["inspect", &source]));
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
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let image = EngineImage::new(docker, "dockerfile-fails");
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
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let image = EngineImage::new(docker, "dockerfile-keep");
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
    if tool("docker").is_none() {
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

#[test]
fn ctrl_c_while_writing_the_context_removes_the_build_directory() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let image = EngineImage::new(docker, "dockerfile-ctrl-c");
    let child =
        spawn(dockerfile_build(tmp.path(), "docker").args(["-q", "-s", "4GB", &image.reference]));
    // The layer file holds data: generation is under way.
    wait_for("the layer file to fill", Duration::from_secs(30), || {
        files_under(tmp.path())
            .iter()
            .any(|(path, len)| path.ends_with("layer1/4GB-file") && *len >= 1 << 20)
    });
    child.signal(Signal::SIGINT);
    let out = child.finish();
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
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let image = EngineImage::new(docker, "dockerfile-term");
    let mut child =
        spawn(dockerfile_build(tmp.path(), "docker").args(["-s", "256MB,256MB", &image.reference]));
    // Status lines say when the engine build starts; the signal follows at once.
    let (sender, lines) = mpsc::channel();
    let pipe = child.take_stderr();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let building = line.starts_with("building ");
                seen.push(line);
                if building {
                    break;
                }
            }
            Err(e) => panic!(
                "no `building` line ({e}); stderr so far:\n{}",
                seen.join("\n")
            ),
        }
    }
    child.signal(Signal::SIGTERM);
    let out = child.finish();
    reader.join().expect("reader");
    seen.extend(lines.try_iter());
    let err = seen.join("\n");
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
    image_maker::testing::dockerfile_key(&request)
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
    engine: Tool,
    key: String,
}

impl Labelled {
    pub(crate) fn new(engine: Tool, key: String) -> Self {
        let labelled = Self { engine, key };
        labelled.remove();
        labelled
    }

    /// Their IDs, each once.
    pub(crate) fn ids(&self) -> Vec<String> {
        let out = run_ok(self.engine.cmd().args([
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
            let _ = self.engine.cmd().args(["rmi", "-f", &id]).output();
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
fn a_second_build_finds_the_first(engine: Tool) {
    let engine_name = engine.name();
    let epoch = unique_epoch();
    let labelled = Labelled::new(engine, dockerfile_key(SPEC, epoch));
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
    let first = EngineImage::new(engine, &format!("dfcache-first-{engine_name}"));
    let (built, err) = build(&first.reference, &[]);
    assert!(engine_built(&err), "{err}");
    assert!(!err.contains("by its cache key"), "{err}");
    let id = first.inspect("{{.Id}}");
    let created = first.inspect("{{.Created}}");

    let second = EngineImage::new(engine, &format!("dfcache-second-{engine_name}"));
    let (found, err) = build(&second.reference, &[]);
    assert!(found_by_key(&err, &second.reference, engine_name), "{err}");
    assert!(!engine_built(&err), "{err}");
    assert_eq!(second.inspect("{{.Id}}"), id);
    assert_eq!(found["config_digest"], built["config_digest"]);
    assert_eq!(found["layers"], built["layers"]);
    assert_eq!(entries(tmp.path()), Vec::<String>::new());

    // Only files: saved from the image found, which stays in the engine as it was.
    let files_name = format!("image-maker-test/dfcache-files:{}", unique());
    let (saved, err) = build(&files_name, &["-o", "oci:layout"]);
    assert!(found_by_key(&err, &files_name, engine_name), "{err}");
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
    let rebuilt = EngineImage::new(engine, &format!("dfcache-rebuilt-{engine_name}"));
    let (_, err) = build(&rebuilt.reference, &["--no-cache"]);
    assert!(engine_built(&err), "{err}");
    assert!(!err.contains("by its cache key"), "{err}");
    assert_ne!(rebuilt.inspect("{{.Id}}"), id);
    assert_ne!(rebuilt.inspect("{{.Created}}"), created);
    assert_eq!(labelled.ids().len(), 2);
}

#[test]
fn a_second_docker_build_finds_the_image_by_its_cache_key() {
    if let Some(docker) = engine("docker") {
        a_second_build_finds_the_first(docker);
    }
}

#[test]
fn a_second_podman_build_finds_the_image_by_its_cache_key() {
    if let Some(podman) = engine("podman") {
        a_second_build_finds_the_first(podman);
    }
}

#[test]
fn an_image_built_from_the_emitted_context_is_found() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let epoch = unique_epoch();
    let labelled = Labelled::new(docker, dockerfile_key("1KB", epoch));
    let tmp = tempdir();
    let context = tmp.path().join("context");
    run_ok(
        image_maker()
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .args(["-q", "-s", "1KB", "--emit-context"])
            .arg(&context)
            .arg("mock/x:1"),
    );
    let own = EngineImage::new(docker, "dfcache-own-build");
    run_ok(docker.cmd().args([
        "build",
        "-q",
        "--platform",
        "linux/amd64",
        "-t",
        &own.reference,
        path_str(&context),
    ]));
    let image = EngineImage::new(docker, "dfcache-after-own-build");
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
