//! Images that run: the `run` entry's program as docker, podman and containerd start it, on
//! linux/amd64 and, under qemu-user, linux/arm64; and what its read mode reads.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

/// A container, removed when dropped.
struct Container {
    engine: Tool,
    name: String,
}

impl Container {
    fn start(engine: Tool, image: &str, extra: &[&str]) -> Self {
        let name = format!("image-maker-test-{}", unique());
        run_ok(
            engine
                .cmd()
                .args(["run", "-d", "--name", &name])
                .args(extra)
                .arg(image),
        );
        Self { engine, name }
    }

    /// Its output once it holds `line`.
    fn wait_for(&self, line: &str) -> String {
        let mut logs = String::new();
        wait_for(
            &format!("`{line}` from {}", self.name),
            Duration::from_secs(60),
            || {
                let out = run(self.engine.cmd().args(["logs", &self.name]));
                logs = stdout(&out);
                logs.lines().any(|l| l == line)
            },
        );
        logs
    }

    /// `ENGINE stop` with the default 10 s grace: how long it took, and the exit code.
    fn stop(&self) -> (Duration, String) {
        let started = Instant::now();
        run_ok(self.engine.cmd().args(["stop", &self.name]));
        let took = started.elapsed();
        let out = run_ok(self.engine.cmd().args([
            "inspect",
            "--format",
            "{{.State.ExitCode}}",
            &self.name,
        ]));
        (took, stdout(&out).trim().to_owned())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self
            .engine
            .cmd()
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Builds `spec` into `engine` as a new image.
fn loaded(engine: Tool, spec: &str, extra: &[&str]) -> EngineImage {
    let image = EngineImage::new(engine, "runnable");
    run_ok(
        image_maker()
            .args(["-q", "-s", spec, "-o", "engine", "--engine", engine.name()])
            .args(extra)
            .arg(&image.reference),
    );
    image
}

fn assert_ready_and_stops_at_once(engine: Tool, image: &str, ready: &str, extra: &[&str]) {
    let container = Container::start(engine, image, extra);
    let logs = container.wait_for(ready);
    let (took, code) = container.stop();
    assert!(
        took < Duration::from_secs(2),
        "{} stop took {took:?}; logs:\n{logs}",
        engine.name()
    );
    assert_eq!(code, "0", "{logs}");
}

#[test]
fn docker_runs_it_prints_the_ready_line_and_stops_at_once() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let image = loaded(docker, "1MB:files=3,run:ready=up-and-running", &[]);
    assert_ready_and_stops_at_once(docker, &image.reference, "up-and-running", &[]);
}

#[test]
fn podman_runs_it_and_stops_it_at_once() {
    let Some(podman) = engine("podman") else {
        return;
    };
    let image = loaded(podman, "64KB,run", &[]);
    // podman raises a container's open-file and process limits past what a host without
    // CAP_SYS_RESOURCE (a CI sandbox) lets runc set; limits below the host's always apply.
    let limits = [
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];
    assert_ready_and_stops_at_once(podman, &image.reference, "ready", &limits);
}

#[test]
fn linux_arm64_runs_under_qemu_user() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let archive = tmp.path().join("arm64.tar");
    let image = EngineImage::new(docker, "runnable-arm64");
    run_ok(image_maker().args([
        "-q",
        "--platform",
        "linux/arm64",
        "-s",
        "64KB:tree=5,run:ready=arm64-up:read=all",
        "-o",
        &format!("oci-archive:{}", path_str(&archive)),
        &image.reference,
    ]));
    run_ok(docker.cmd().args(["load", "-i", path_str(&archive)]));
    assert_eq!(image.inspect("{{.Architecture}}"), "arm64");
    let container = Container::start(docker, &image.reference, &["--platform", "linux/arm64"]);
    let logs = container.wait_for("arm64-up");
    assert!(logs.starts_with("read 5 files, 65536 bytes\n"), "{logs}");
    let (took, code) = container.stop();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(code, "0");
}

#[test]
fn containerd_runs_it_and_a_sigterm_ends_it() {
    let (Some(ctr), Some(_docker)) = (tool("ctr"), engine("docker")) else {
        return;
    };
    let socket = [
        "/var/run/docker/containerd/containerd.sock",
        "/run/containerd/containerd.sock",
    ]
    .into_iter()
    .find(|s| Path::new(s).exists())
    .expect("dockerd's containerd has a socket");
    let ctr_cmd = || {
        let mut cmd = ctr.cmd();
        cmd.args(["-a", socket, "-n", "image-maker-test"]);
        cmd
    };
    let tmp = tempdir();
    let archive = tmp.path().join("image.tar");
    let image = format!("docker.io/image-maker-test/ctr:{}", unique());
    run_ok(image_maker().args([
        "-q",
        "-s",
        "64KB,run:ready=ctr-up",
        "-o",
        &format!("oci-archive:{}", path_str(&archive)),
        &image,
    ]));
    run_ok(ctr_cmd().args(["images", "import", path_str(&archive)]));
    let id = format!("image-maker-test-{}", unique());
    let mut child = ctr_cmd()
        .args(["run", "--rm", &image, &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctr run");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a line");
    assert_eq!(first, "ctr-up\n");
    let started = Instant::now();
    run_ok(ctr_cmd().args(["task", "kill", "-s", "SIGTERM", &id]));
    let status = child.wait().expect("ctr exits");
    let _ = ctr_cmd().args(["images", "rm", &image]).output();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(status.success(), "{status:?}");
}

/// The program in an unpack of its image, under strace: every file of the list is opened
/// and read before the ready line, the count line sums them, and `order=random` is not
/// the tars' order.
#[test]
fn read_mode_reads_every_listed_file_before_the_ready_line() {
    let (Some(umoci), Some(strace), Some(_root)) = (
        tool("umoci"),
        tool("strace"),
        root("chroot into the unpacked image"),
    ) else {
        return;
    };
    let tmp = tempdir();
    let spec =
        "2MB:tree=60:symlinks=3:hardlinks=2,256KB:tree=12:whiteouts=3,run:read=all:order=random";
    let rootfs = build_and_unpack(umoci, spec, tmp.path());
    let list = std::fs::read_to_string(rootfs.join(".image-maker/read-list")).expect("the list");
    let listed: Vec<&str> = list.lines().collect();
    // Every regular file the unpack holds, the program's own and hard links' second names
    // aside, is listed once.
    let mut on_disk: Vec<String> = files_under(&rootfs)
        .into_iter()
        .map(|(p, _)| format!("/{}", p.strip_prefix(&rootfs).expect("under").display()))
        .filter(|p| !p.starts_with("/.image-maker/"))
        .collect();
    on_disk.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    let hard = on_disk.len() - sorted.len();
    assert!(
        hard <= 2,
        "{} on disk, {} listed",
        on_disk.len(),
        sorted.len()
    );
    assert!(sorted
        .iter()
        .all(|p| on_disk.binary_search(&(*p).to_owned()).is_ok()));
    assert_ne!(listed, sorted, "order=random keeps the tars' order");
    let bytes: u64 = listed
        .iter()
        .map(|p| {
            std::fs::metadata(rootfs.join(&p[1..]))
                .expect("listed file")
                .len()
        })
        .sum();

    let trace = tmp.path().join("trace");
    let mut traced = strace
        .cmd()
        .args([
            "-f",
            "-e",
            "trace=execve,openat,write",
            "-o",
            path_str(&trace),
            "--",
        ])
        .args(["chroot", path_str(&rootfs)])
        .args([
            "/.image-maker/ready-amd64",
            "ready",
            "/.image-maker/read-list",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("strace runs");
    let mut said = String::new();
    let mut lines = BufReader::new(traced.stdout.take().expect("stdout"));
    for _ in 0..2 {
        lines.read_line(&mut said).expect("a line");
    }
    assert_eq!(
        said,
        format!("read {} files, {bytes} bytes\nready\n", listed.len())
    );
    // chroot execs the program: strace's one child.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", traced.id()))
        .expect("children");
    let program: u32 = children.trim().parse().expect("one child");
    send(program, Signal::SIGTERM);
    assert!(traced.wait().expect("exits").success());

    let trace = std::fs::read_to_string(&trace).expect("trace");
    let lines: Vec<&str> = trace.lines().collect();
    // What chroot itself opens comes before it execs the program.
    let exec = lines
        .iter()
        .rposition(|l| l.contains("execve(\"/.image-maker/ready-amd64\""))
        .unwrap_or_else(|| panic!("no execve of the program in\n{trace}"));
    let ready_at = lines
        .iter()
        .position(|l| l.contains("write(1, \"ready\\n\""))
        .unwrap_or_else(|| panic!("no ready line in\n{trace}"));
    let opened: Vec<String> = lines[exec..ready_at]
        .iter()
        .filter_map(|l| {
            let path = l.split("openat(AT_FDCWD, \"").nth(1)?;
            Some(unescape(&path[..path.find("\", ")?]))
        })
        .filter(|p| !p.starts_with("/.image-maker/"))
        .collect();
    assert_eq!(
        opened, listed,
        "opened before the ready line, in the list's order"
    );
}

/// A path as strace prints it: non-ASCII bytes as octal escapes.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).expect("ascii");
                out.push(u8::from_str_radix(octal, 8).expect("octal"));
                i += 4;
            }
            b'\\' => {
                out.push(bytes[i + 1]);
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn a_platform_without_a_program_is_refused_and_nothing_is_written() {
    let tmp = tempdir();
    let dest = tmp.path().join("layout");
    let out = run(image_maker().args([
        "--platform",
        "linux/amd64,linux/arm/v7",
        "-s",
        "1MB,run",
        "-o",
        &format!("oci:{}", path_str(&dest)),
        "mock/arm:1",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).lines().next(),
        Some("error: `run` has no entrypoint program for platform `linux/arm/v7`")
    );
    assert!(
        stderr(&out)
            .contains("\nhint: the runnable program is built for linux/amd64 and linux/arm64"),
        "{}",
        stderr(&out)
    );
    assert!(!dest.exists());
}

/// A tag names a runnable image too: serve makes it as it is pulled, the same image the
/// CLI builds, and docker runs it.
#[test]
fn a_served_run_tag_pulls_and_runs_under_docker() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let server = crate::serve::Served::start(&[]);
    let spec = "64KB:tree=5,run:ready=served:read=all";
    let tmp = tempdir();
    let built = json(&run_ok(image_maker().args([
        "-q",
        "--json",
        "-s",
        spec,
        "-o",
        &format!("oci:{}", path_str(&tmp.path().join("oci"))),
        "mock/expected:1",
    ])));
    let image = EngineImage::named(
        docker,
        format!("{}/mock:64KB.tree-5_run.ready-served.read-all", server.host),
    );
    let pulled = run_ok(docker.cmd().args(["pull", &image.reference]));
    let digest = built["digest"].as_str().expect("digest");
    assert!(stdout(&pulled).contains(digest), "{}", stdout(&pulled));
    let container = Container::start(docker, &image.reference, &[]);
    let logs = container.wait_for("served");
    assert_eq!(logs, "read 5 files, 65536 bytes\nserved\n");
    let (took, code) = container.stop();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(code, "0");
}

/// Loads a fixture's image into docker under a reference of this test's, and runs it.
fn load_and_run(img: &image_maker::MockImage, ready: &str) {
    let Some(docker) = engine("docker") else {
        return;
    };
    img.load(image_maker::EngineKind::Docker).expect("loads");
    assert_ready_and_stops_at_once(docker, &img.reference().to_string(), ready, &[]);
}

#[test]
fn a_runnable_fixture_loads_and_runs() {
    let img = image_maker::Fixture::new("64KB")
        .runnable_with("ready=fixture-up")
        .get()
        .expect("a fixture");
    assert_eq!(img.spec().canonical(), "64KB:files=1,run:ready=fixture-up");
    load_and_run(&img, "fixture-up");
}

#[image_maker::mock_image(layers = "32KB:tree=3", runnable = true)]
fn the_attributes_runnable_image_loads_and_runs(img: image_maker::MockImage) {
    assert_eq!(img.spec().canonical(), "32KB:tree=3,run");
    load_and_run(&img, "ready");
}

#[test]
fn the_runnable_flag_adds_the_run_entry_once() {
    let tmp = tempdir();
    let dest = format!("oci:{}", path_str(&tmp.path().join("layout")));
    let built = json(&run_ok(image_maker().args([
        "-q",
        "--json",
        "-s",
        "1MB",
        "--runnable",
        "ready=cli-up",
        "-o",
        &dest,
        "mock/flag:1",
    ])));
    assert_eq!(built["spec"], "1MB:files=1,run:ready=cli-up");
    // Bare, on a list that has the entry: the same image.
    let again = json(&run_ok(image_maker().args([
        "-q",
        "--json",
        "-s",
        "1MB,run:ready=cli-up",
        "--runnable",
        "-o",
        &dest,
        "mock/flag:1",
    ])));
    assert_eq!(again["digest"], built["digest"]);
    let out = run(image_maker().args([
        "-s",
        "1MB,run",
        "--runnable",
        "read=all",
        "-o",
        &dest,
        "m:2",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("more than one `run` entry"),
        "{}",
        stderr(&out)
    );
}

/// The dockerfile builder's image runs the program too: its Dockerfile names it the
/// `ENTRYPOINT`.
#[test]
fn the_dockerfile_builders_image_runs_the_program() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let image = EngineImage::new(docker, "runnable-dockerfile");
    run_ok(image_maker().args([
        "-q",
        "--builder",
        "dockerfile",
        "-e",
        "docker",
        "-s",
        "32KB:tree=3,run:ready=built-by-docker:read=all",
        &image.reference,
    ]));
    let container = Container::start(docker, &image.reference, &[]);
    let logs = container.wait_for("built-by-docker");
    assert_eq!(logs, "read 3 files, 32768 bytes\nbuilt-by-docker\n");
    let (took, code) = container.stop();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(code, "0");
}
