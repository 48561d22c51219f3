use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::LazyLock;

use image_maker::content::FileContent;
use image_maker::{plan, Spec};

/// The CLI, with a clean environment for determinism and the test run's own cache.
pub fn image_maker() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_image-maker"));
    cmd.env_remove("SOURCE_DATE_EPOCH")
        .env("NO_COLOR", "1")
        .env("IMAGE_MAKER_CACHE_DIR", &*CACHE);
    cmd
}

/// One cache for the whole test run, emptied when the run starts; tests of the cache
/// itself use their own.
static CACHE: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache");
    let _ = fs::remove_dir_all(&dir);
    dir
});

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("command starts")
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

fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var("IMAGE_MAKER_REQUIRE_ENGINES").is_ok_and(|v| v == "1")
}

/// Skips (or, in CI, fails) when `why` is `Some`.
fn available(what: &str, why: Option<String>) -> bool {
    match why {
        None => true,
        Some(why) if required() => {
            panic!("{what} is required here (CI or IMAGE_MAKER_REQUIRE_ENGINES=1) but {why}")
        }
        Some(why) => {
            eprintln!("skipped: {what}: {why}");
            false
        }
    }
}

/// Whether the command-line tool `name` is installed.
pub fn tool(name: &str) -> bool {
    let found = Command::new(name).arg("--version").output().is_ok();
    available(name, (!found).then(|| "it is not installed".to_owned()))
}

/// Whether the named engine answers (`docker info` / `podman info`).
pub fn engine(name: &str) -> bool {
    let out = Command::new(name).arg("info").output();
    let why = match out {
        Err(e) => Some(format!("`{name}` cannot run: {e}")),
        Ok(o) if !o.status.success() => {
            Some(format!("`{name} info` failed: {}", stderr(&o).trim()))
        }
        Ok(_) => None,
    };
    available(name, why)
}

/// A unique image name for this test, removed from the engine when dropped.
pub struct EngineImage {
    pub engine: &'static str,
    pub reference: String,
}

impl EngineImage {
    pub fn new(engine: &'static str, test: &str) -> Self {
        let reference = format!("image-maker-test/{test}:{}", std::process::id());
        let image = Self { engine, reference };
        image.remove();
        image
    }

    pub fn exists(&self) -> bool {
        Command::new(self.engine)
            .args(["image", "inspect", &self.reference])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn inspect(&self, format: &str) -> String {
        let out = run_ok(Command::new(self.engine).args([
            "image",
            "inspect",
            "--format",
            format,
            &self.reference,
        ]));
        stdout(&out).trim().to_owned()
    }

    fn remove(&self) {
        let _ = Command::new(self.engine)
            .args(["rmi", "-f", &self.reference])
            .output();
    }
}

impl Drop for EngineImage {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The bytes the generator makes for each file of `list`, by path.
pub fn expected_files(list: &str) -> Vec<(String, Vec<u8>)> {
    let spec = Spec::parse(list).expect("valid spec");
    plan::layers(&spec)
        .iter()
        .flat_map(|layer| {
            layer
                .files()
                .map(|f| {
                    let mut bytes = Vec::new();
                    FileContent::new(&spec.hash(), layer.number, f.index, f.size)
                        .read_to_end(&mut bytes)
                        .expect("in memory");
                    (f.path, bytes)
                })
                .collect::<Vec<_>>()
        })
        .collect()
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
        .expect("readable")
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

/// Waits for an interrupted build to exit; one that hangs fails the test instead of CI.
pub fn finish(mut child: std::process::Child) -> Output {
    let started = std::time::Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the interrupted build did not exit within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}
