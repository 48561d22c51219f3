//! What every test shares: the CLI with a cache of the test's own, the gate every external
//! tool and every root-only step goes through (and its skip log), bounded waits, and guards that clean up after a
//! test, also when it panics.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use image_maker::testing::plan_layers;
use image_maker::Spec;

pub use nix::sys::signal::Signal;

pub mod registry;
#[path = "support/skip_log.rs"]
mod skip_log;

/// The CLI, with a clean environment for determinism and the calling test's own cache.
pub fn image_maker() -> Command {
    let mut cmd = Command::new(IMAGE_MAKER);
    with_test_env(&mut cmd);
    cmd
}

/// Runs `cmd` with `input` on its stdin, its output captured.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} starts: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A command that exits without reading all of it is its own failure, seen in its status.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("output")
}

/// `sha256:HEX` of `bytes`, as a descriptor names them.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// The binary under test, for commands that run it in another way (through `sh`).
pub const IMAGE_MAKER: &str = env!("CARGO_BIN_EXE_image-maker");

/// The environment `image_maker()` runs in, for a command that starts the CLI itself.
pub fn with_test_env(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("SOURCE_DATE_EPOCH")
        .env("NO_COLOR", "1")
        .env("IMAGE_MAKER_CACHE_DIR", test_cache())
}

thread_local! {
    /// The cache of the test running on this thread, made on first use and removed when the
    /// test ends. libtest runs every test on a thread of its own (also with
    /// `--test-threads=1`) and nextest every test in a process of its own, so no test sees
    /// what another cached, and none removes a cache another still uses.
    static CACHE: tempfile::TempDir = tempfile::Builder::new()
        .prefix(&format!("image-maker-test-cache-{}-", file_name_part(&test_name())))
        .tempdir()
        .expect("a temporary cache directory");
}

/// The cache directory `image_maker()` gives the calling test.
pub fn test_cache() -> PathBuf {
    CACHE.with(|dir| dir.path().to_path_buf())
}

/// The running test's name, as libtest and nextest name its thread.
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed-test")
        .to_owned()
}

/// `cli::help` → `cli-help`: a name usable in a file name or an image tag.
fn file_name_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// A suffix that no other run, concurrent or earlier, uses: this process, when it started,
/// and a count within it.
pub fn unique() -> String {
    static RUN: LazyLock<String> = LazyLock::new(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{:x}", std::process::id(), nanos % (1 << 40))
    });
    static COUNT: AtomicU32 = AtomicU32::new(0);
    format!("{}-{}", *RUN, COUNT.fetch_add(1, Ordering::Relaxed))
}

/// Runs `cmd` to its end; one that has not ended after ten minutes (a hung engine, say)
/// fails the test instead of holding up the run.
pub fn run(cmd: &mut Command) -> Output {
    spawn(cmd).finish_within(Duration::from_secs(600))
}

/// Runs and asserts success, showing stderr otherwise.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Skips (or, when tools are required, fails) for want of `what`.
fn skip(what: &str, why: &str) {
    skip_log::skip(&test_name(), what, why);
}

/// An external program that answered the gate. Only [`tool`] and [`engine`] make one, so
/// every test that runs docker, skopeo, umoci, … has been through the gate first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    name: &'static str,
}

impl Tool {
    pub fn name(self) -> &'static str {
        self.name
    }

    pub fn cmd(self) -> Command {
        Command::new(self.name)
    }
}

/// The command-line tool `name`, when it is installed; otherwise the test skips (or fails).
pub fn tool(name: &'static str) -> Option<Tool> {
    match Command::new(name)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(_) => Some(Tool { name }),
        Err(e) => {
            skip(name, &format!("it cannot run: {e}"));
            None
        }
    }
}

/// The engine `name`, when it answers (`docker info` / `podman info`); otherwise the test
/// skips (or fails).
pub fn engine(name: &'static str) -> Option<Tool> {
    let why = match Command::new(name).arg("info").stdin(Stdio::null()).output() {
        Err(e) => format!("`{name}` cannot run: {e}"),
        Ok(o) if !o.status.success() => format!("`{name} info` failed: {}", stderr(&o).trim()),
        Ok(_) => return Some(Tool { name }),
    };
    skip(name, &why);
    None
}

/// Proof that the tests run as root, for a step only root can take (a mount, an unpack that
/// keeps owners). Only [`root`] makes one, so such a step has been through the gate first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root(());

/// Root, when the tests run as root; otherwise the test skips (or fails, as for a missing
/// tool), saying which step needs it.
pub fn root(step: &str) -> Option<Root> {
    use std::os::unix::fs::MetadataExt;
    // A new file is owned by the effective uid: asked without unsafe code.
    let uid = tempfile::tempfile()
        .and_then(|f| f.metadata())
        .expect("a temporary file")
        .uid();
    if uid == 0 {
        return Some(Root(()));
    }
    skip("root", &format!("{step} needs root, and this is uid {uid}"));
    None
}

/// An image in an engine, removed when dropped: at the end of the test, also one that
/// panics.
#[derive(Debug)]
pub struct EngineImage {
    pub engine: Tool,
    pub reference: String,
}

impl EngineImage {
    /// `image-maker-test/NAME:TAG`, with a tag no other run uses.
    pub fn new(engine: Tool, name: &str) -> Self {
        Self::named(engine, format!("image-maker-test/{name}:{}", unique()))
    }

    /// An image whose reference is given (a registry's, a fixture's); it should be unique
    /// to this run too.
    pub fn named(engine: Tool, reference: impl Into<String>) -> Self {
        let image = Self {
            engine,
            reference: reference.into(),
        };
        image.remove();
        image
    }

    /// The tag of the reference.
    pub fn tag(&self) -> &str {
        self.reference.rsplit(':').next().expect("a tag")
    }

    pub fn exists(&self) -> bool {
        self.engine
            .cmd()
            .args(["image", "inspect", &self.reference])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn inspect(&self, format: &str) -> String {
        let out = run_ok(self.engine.cmd().args([
            "image",
            "inspect",
            "--format",
            format,
            &self.reference,
        ]));
        stdout(&out).trim().to_owned()
    }

    fn remove(&self) {
        let _ = self
            .engine
            .cmd()
            .args(["rmi", "-f", &self.reference])
            .output();
    }
}

impl Drop for EngineImage {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Waits until `done` holds, checking every few milliseconds; after `timeout` the test fails
/// saying what it waited for.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "gave up after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A child process, killed when dropped unless it was waited for: a test that fails while
/// a build runs does not leave the build running.
#[derive(Debug)]
pub struct Running {
    child: Option<Child>,
    /// The command, for messages.
    what: String,
}

/// Starts `cmd` with stdout and stderr piped (stdin closed).
pub fn spawn(cmd: &mut Command) -> Running {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    Running {
        child: Some(child),
        what: format!("{cmd:?}"),
    }
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The child's stderr, to read while it runs (`finish` then reports none).
    pub fn take_stderr(&mut self) -> std::process::ChildStderr {
        self.child
            .as_mut()
            .and_then(|c| c.stderr.take())
            .expect("stderr is piped")
    }

    /// Whether the child has exited; its status stays for `finish`.
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .expect("running")
            .try_wait()
            .expect("try_wait")
            .is_some()
    }

    pub fn signal(&self, signal: Signal) {
        send(self.id(), signal);
    }

    /// Waits for the exit, reading its output meanwhile; one that does not exit within a
    /// minute fails the test instead of hanging it.
    pub fn finish(self) -> Output {
        self.finish_within(Duration::from_secs(60))
    }

    pub fn finish_within(mut self, timeout: Duration) -> Output {
        let mut child = self.child.take().expect("running");
        let readers = [
            child.stdout.take().map(|s| reader(Box::new(s))),
            child.stderr.take().map(|s| reader(Box::new(s))),
        ];
        let started = Instant::now();
        let status: Option<ExitStatus> = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let [out, err] = readers.map(|r| {
            r.map(|r| r.join().expect("reader thread"))
                .unwrap_or_default()
        });
        let Some(status) = status else {
            panic!(
                "{} did not exit within {timeout:?}; its stderr:\n{}",
                self.what,
                String::from_utf8_lossy(&err)
            );
        };
        Output {
            status,
            stdout: out,
            stderr: err,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn reader(mut pipe: Box<dyn Read + Send>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Sends `signal` to the process `pid`.
pub fn send(pid: u32, signal: Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
    nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
}

/// The regular files under `dir`, recursively, with their sizes; what is not there (yet, or
/// any more) is left out.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(list) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in list.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                todo.push(entry.path());
            } else if meta.is_file() {
                found.push((entry.path(), meta.len()));
            }
        }
    }
    found
}

/// Whether some file under `dir` holds at least `bytes` bytes: a build is writing its data.
pub fn writing(dir: &Path, bytes: u64) -> bool {
    files_under(dir).iter().any(|(_, len)| *len >= bytes)
}

/// The bytes the generator makes for each file of `list`, by path.
pub fn expected_files(list: &str) -> Vec<(String, Vec<u8>)> {
    expected_layers(list).into_iter().flatten().collect()
}

/// The generator's files of each layer of `list`, by path, in the plan's order.
pub fn expected_layers(list: &str) -> Vec<Vec<(String, Vec<u8>)>> {
    let spec = Spec::parse(list).expect("valid spec");
    let seed = image_maker::testing::seed(&spec, &image_maker::Platform::default(), false);
    plan_layers(&spec)
        .iter()
        .map(|layer| {
            layer
                .files()
                .map(|f| {
                    let mut bytes = Vec::new();
                    image_maker::testing::FileContent::of(layer, &seed, &f)
                        .read_to_end(&mut bytes)
                        .expect("in memory");
                    (f.path, bytes)
                })
                .collect()
        })
        .collect()
}

/// Asserts that the engine's `image` is the image of `platform` (`linux/amd64`) in the
/// multi-platform build `built` (its `--json` summary): the engine picked its own platform.
pub fn assert_engine_picked(image: &EngineImage, built: &serde_json::Value, platform: &str) {
    let chosen = built["manifests"]
        .as_array()
        .expect("an index's manifests")
        .iter()
        .find(|m| m["platform"] == platform)
        .expect("the platform is in the index");
    let arch = platform.split('/').nth(1).expect("os/arch");
    assert_eq!(
        image.inspect("{{.Id}} {{.Architecture}}"),
        format!(
            "{} {arch}",
            chosen["config_digest"].as_str().expect("config digest")
        )
    );
}

/// Asserts that `oci-image-tool validate` passes on the OCI layout at `dir`, image `tag`.
/// The filesystem of the image `reference` as docker stores it, as a tar in `into`: a
/// container is created, never started, exported and removed.
pub fn docker_export(docker: Tool, reference: &str, into: &Path) -> PathBuf {
    let id = stdout(&run_ok(docker.cmd().args(["create", reference, "/none"])))
        .trim()
        .to_owned();
    let tar = into.join("fs.tar");
    let exported = run(docker.cmd().args(["export", "-o", path_str(&tar), &id]));
    let _ = docker.cmd().args(["rm", "-f", &id]).output();
    assert!(exported.status.success(), "{}", stderr(&exported));
    tar
}

/// Builds `spec` to `oci:DIR/img` (tagged `1`) and unpacks it with umoci: the bundle's
/// `rootfs/`.
pub fn build_and_unpack(umoci: Tool, spec: &str, dir: &Path) -> PathBuf {
    let layout = dir.join("img");
    run_ok(image_maker().args([
        "-q",
        "--no-cache",
        "-s",
        spec,
        "-o",
        &format!("oci:{}", path_str(&layout)),
        "mock/unpacked:1",
    ]));
    let bundle = dir.join("bundle");
    run_ok(umoci.cmd().args([
        "unpack",
        "--image",
        &format!("{}:1", path_str(&layout)),
        path_str(&bundle),
    ]));
    bundle.join("rootfs")
}

pub fn assert_valid_layout(oci_image_tool: Tool, dir: &Path, tag: &str) {
    let out = run_ok(oci_image_tool.cmd().args([
        "validate",
        "--type",
        "image",
        "--ref",
        &format!("name={tag}"),
        path_str(dir),
    ]));
    assert!(
        stdout(&out).contains("Validation succeeded"),
        "{}",
        stdout(&out)
    );
}

/// Asserts that `root` holds exactly the files of `list`, byte for byte.
pub fn assert_rootfs(root: &Path, list: &str) {
    let expected = expected_files(list);
    for (path, bytes) in &expected {
        let actual = fs::read(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(actual.len(), bytes.len(), "size of {path}");
        assert!(
            actual == *bytes,
            "bytes of {path} differ from the generator's"
        );
    }
    let mut found = Vec::new();
    collect_files(root, root, &mut found);
    found.sort();
    let mut want: Vec<String> = expected.into_iter().map(|(p, _)| p).collect();
    want.sort();
    assert_eq!(found, want, "files under {}", root.display());
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            out.push(
                path.strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

/// Names in `dir`, sorted: shows leftover temporary files.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(out)))
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn each_test_has_a_cache_of_its_own() {
    let mine = test_cache();
    assert_eq!(test_cache(), mine, "one cache for the whole test");
    let other = std::thread::Builder::new()
        .name("support::another_test".into())
        .spawn(|| {
            let dir = test_cache();
            assert!(dir.is_dir());
            dir
        })
        .expect("thread")
        .join()
        .expect("joined");
    assert_ne!(other, mine);
    assert!(!other.exists(), "a finished test's cache is removed");
    assert!(mine.is_dir());
    assert!(
        path_str(&mine).contains("support-each-test-has-a-cache-of-its-own"),
        "{}",
        mine.display()
    );
}

#[test]
fn the_gate_reads_its_variables_as_flags() {
    // The parsing alone: the variables themselves belong to the whole run.
    let on = |v: &str| skip_log::is_on(Some(std::ffi::OsStr::new(v)));
    assert!(on("1") && on("true") && on("yes"));
    assert!(!on("") && !on("0") && !on("false") && !skip_log::is_on(None));
}

/// How many images the cache at `cache` has built, from its log.
pub fn builds(cache: &Path) -> usize {
    fs::read_to_string(cache.join("v1/log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(2) == Some("built"))
        .count()
}

/// Flips one byte in the middle of `path`; `keep_mtime` puts its modification time back,
/// as damage that no write explains (a bad disk) would leave it.
/// `path` opened to read and write, though the cache made it read-only: as root the mode
/// is no obstacle, and as anyone else the write bit is given back for the damage and taken
/// away again at once (a mode change moves neither size, inode nor mtime).
pub fn open_read_only_for_writing(path: &Path) -> fs::File {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).expect("stat").permissions();
    fs::set_permissions(path, fs::Permissions::from_mode(mode.mode() | 0o200)).expect("chmod u+w");
    let file = fs::File::options()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    fs::set_permissions(path, mode).expect("chmod back");
    file
}

pub fn flip_byte(path: &Path, keep_mtime: bool) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mtime = fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut file = open_read_only_for_writing(path);
    let middle = file.metadata().expect("stat").len() / 2;
    let mut byte = [0];
    file.seek(SeekFrom::Start(middle)).expect("seek");
    file.read_exact(&mut byte).expect("read");
    file.seek(SeekFrom::Start(middle)).expect("seek");
    file.write_all(&[byte[0] ^ 0x20]).expect("write");
    if keep_mtime {
        file.set_modified(mtime).expect("set mtime");
    } else {
        // Later than the build, even on a filesystem with coarse timestamps.
        file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .expect("set mtime");
    }
}
