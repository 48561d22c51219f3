//! The spec-hash cache: one build per spec across processes, exports without regenerating,
//! recovery from killed builders, and eviction.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use image_maker::testing::GcOptions;
use image_maker::Cache;
use image_maker::Fixture;

use crate::support::*;

/// The CLI with its cache in `cache`.
fn cli(cache: &Path) -> Command {
    let mut cmd = image_maker();
    cmd.env("IMAGE_MAKER_CACHE_DIR", cache);
    cmd
}

/// Waits until a build is writing layer data into the cache's temporary directory.
fn wait_for_build(cache: &Path) {
    wait_for(
        "a build writing into the cache",
        Duration::from_secs(30),
        || writing(&cache.join("v1/tmp"), 1 << 20),
    );
}

/// What builders of `key` have left in the cache's temporary directory.
fn leftovers_of(cache: &Path, key: &str) -> Vec<String> {
    entries(&cache.join("v1/tmp"))
        .into_iter()
        .filter(|name| name.starts_with(&format!("{key}.")))
        .collect()
}

/// Starts a build of `spec` through `cache`, waits until it is writing, and kills it
/// (SIGKILL: no cleanup runs). Returns the cache key of `spec`, read from what it left.
fn kill_a_build(cache: &Path, spec: &str, out: &Path) -> String {
    let child = spawn(cli(cache).args([
        "-q",
        "-s",
        spec,
        "-o",
        &format!("oci:{}", path_str(out)),
        "mock/killed:1",
    ]));
    wait_for_build(cache);
    child.signal(Signal::SIGKILL);
    let killed = child.finish();
    assert_eq!(killed.status.code(), None, "{}", stderr(&killed));
    let left = entries(&cache.join("v1/tmp"));
    assert_eq!(
        left.len(),
        1,
        "a killed build leaves its temporary files: {left:?}"
    );
    assert!(entry_dirs(cache).is_empty());
    left[0].split('.').next().expect("KEY.XXXXXX").to_owned()
}

fn entry_dirs(cache: &Path) -> Vec<PathBuf> {
    let dir = cache.join("v1/entries");
    entries(&dir).into_iter().map(|e| dir.join(e)).collect()
}

#[test]
fn eight_processes_at_once_build_once() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let children: Vec<Running> = (0..8)
        .map(|i| {
            spawn(
                cli(&cache)
                    .args(["--json", "-q", "-s", "3MB:files=2,1KB", "-o"])
                    .arg(format!(
                        "oci:{}",
                        path_str(&tmp.path().join(format!("out{i}")))
                    ))
                    .arg("mock/parallel:1"),
            )
        })
        .collect();
    let digests: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.finish();
            assert!(out.status.success(), "{}", stderr(&out));
            json(&out)["digest"].as_str().expect("digest").to_owned()
        })
        .collect();
    assert_eq!(
        builds(&cache),
        1,
        "log: {:?}",
        fs::read_to_string(cache.join("v1/log"))
    );
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    for i in 0..8 {
        let index =
            fs::read_to_string(tmp.path().join(format!("out{i}/index.json"))).expect("index");
        assert!(index.contains(&digests[0]), "out{i}: {index}");
    }
    assert_eq!(entry_dirs(&cache).len(), 1);
    assert!(entries(&cache.join("v1/tmp")).is_empty());
}

/// The largest file in `dir`: a layer, never the config or manifest.
fn largest_blob(dir: &Path) -> PathBuf {
    files_under(dir)
        .into_iter()
        .max_by_key(|(_, len)| *len)
        .expect("a blob")
        .0
}

/// The bytes of the member `name` of the tar at `archive`.
fn archived(archive: &Path, name: &str) -> Vec<u8> {
    use std::io::Read;
    let mut tar = tar::Archive::new(fs::File::open(archive).expect("archive"));
    for member in tar.entries().expect("a tar") {
        let mut member = member.expect("a member");
        if member.path().expect("a path").to_string_lossy() == name {
            let mut bytes = Vec::new();
            member.read_to_end(&mut bytes).expect("read");
            return bytes;
        }
    }
    panic!("{name} is not in {}", archive.display());
}

#[test]
fn a_cached_image_is_exported_without_regenerating() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let spec = "2MB,1KB:files=3";
    let first = json(&run_ok(
        cli(&cache)
            .args(["--json", "-q", "-s", spec, "-o"])
            .arg(format!("oci:{}", path_str(&tmp.path().join("a"))))
            .arg("mock/a:1"),
    ));
    let blob = largest_blob(&cache.join("v1/blobs/sha256"));
    let stored_at = fs::metadata(&blob)
        .and_then(|m| m.modified())
        .expect("mtime");
    // A byte of the stored layer changed where the cheap checks cannot see it (same size,
    // inode and mtime): an export that reads the cache copies the change, one that
    // regenerates writes the generator's bytes instead.
    flip_byte(&blob, true);
    let marked = fs::read(&blob).expect("stored layer");
    // Every kind of file output, from the cache.
    let archive = tmp.path().join("b.tar");
    let second = json(&run_ok(
        cli(&cache)
            .args(["--json", "-s", spec, "-o"])
            .arg(format!("oci-archive:{}", path_str(&archive)))
            .arg("mock/b:2"),
    ));
    let name = blob.file_name().expect("name").to_string_lossy();
    assert!(
        archived(&archive, &format!("blobs/sha256/{name}")) == marked,
        "the archive's layer is not the cache's bytes: the export regenerated it"
    );
    flip_byte(&blob, true);
    assert_eq!(builds(&cache), 1, "the second build regenerated the data");
    assert_eq!(first["digest"], second["digest"]);
    assert_eq!(
        fs::metadata(&blob)
            .and_then(|m| m.modified())
            .expect("mtime"),
        stored_at
    );
    if let Some(skopeo) = tool("skopeo") {
        let inspected = run_ok(
            skopeo
                .cmd()
                .args(["inspect", &format!("oci-archive:{}", path_str(&archive))]),
        );
        assert!(stdout(&inspected).contains(second["digest"].as_str().expect("digest")));
    }
    // The library's fixture takes the same entry, with no build either.
    let image = Fixture::new(spec)
        .cache(Cache::at(&cache))
        .get()
        .expect("fixture");
    assert_eq!(image.digest(), first["digest"].as_str().expect("digest"));
    assert_eq!(builds(&cache), 1);
    // --no-cache builds, and leaves the cache as it was.
    run_ok(
        cli(&cache)
            .args(["-q", "--no-cache", "-s", spec, "-o"])
            .arg(format!("oci:{}", path_str(&tmp.path().join("c"))))
            .arg("mock/c:1"),
    );
    assert_eq!(builds(&cache), 1);
}

#[test]
fn the_cached_layout_is_a_valid_image() {
    let (Some(oci_image_tool), Some(umoci)) = (tool("oci-image-tool"), tool("umoci")) else {
        return;
    };
    let tmp = tempdir();
    let spec = "1MB:files=3,2KB:tree=40";
    let image = Fixture::new(spec)
        .cache(Cache::at(tmp.path().join("cache")))
        .get()
        .expect("fixture");
    let tag = image.reference().tag().to_owned();
    run_ok(oci_image_tool.cmd().args([
        "validate",
        "--type",
        "image",
        "--ref",
        &format!("name={tag}"),
        path_str(image.oci_dir()),
    ]));
    let bundle = tmp.path().join("bundle");
    run_ok(umoci.cmd().args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:{tag}", path_str(image.oci_dir())),
        path_str(&bundle),
    ]));
    assert_rootfs(&bundle.join("rootfs"), spec);
    assert_eq!(image.layers().len(), 2);
    assert_eq!(image.layers()[0].files, 3);
}

#[test]
fn identical_layers_of_two_images_are_stored_once() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempdir();
    let cache = Cache::at(tmp.path());
    let amd = Fixture::new("1MB")
        .cache(cache.clone())
        .get()
        .expect("amd64");
    // Another platform has bytes of its own, unless it shares linux/amd64's.
    let arm = Fixture::new("1MB")
        .platform("linux/arm64")
        .cache(cache.clone())
        .get()
        .expect("arm64");
    assert_ne!(amd.layers(), arm.layers());
    let shared = Fixture::new("1MB")
        .platform("linux/arm64")
        .request()
        .expect("request")
        .shared_layers(true);
    let shared = cache
        .build(&shared, &mut image_maker::Progress::hidden())
        .expect("shared arm64");
    assert_ne!(amd.digest(), shared.digest);
    assert_eq!(amd.layers(), shared.layers);
    // Two layers, three configs, three manifests.
    assert_eq!(entries(&tmp.path().join("v1/blobs/sha256")).len(), 8);
    let layer = tmp
        .path()
        .join("v1/blobs/sha256")
        .join(amd.layers()[0].digest.trim_start_matches("sha256:"));
    assert_eq!(
        fs::metadata(&layer).expect("stored").nlink(),
        3,
        "store + two entries"
    );
}

#[test]
fn the_next_build_of_a_spec_removes_what_its_killed_builder_left() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let spec = "512MB";
    let key = kill_a_build(&cache, spec, &tmp.path().join("killed"));
    assert_eq!(leftovers_of(&cache, &key).len(), 1);

    // The same spec again, and nothing else: no `cache gc`.
    run_ok(cli(&cache).args([
        "-q",
        "-s",
        spec,
        "-o",
        &format!("oci:{}", path_str(&tmp.path().join("out"))),
        "mock/killed:1",
    ]));
    assert_eq!(
        entries(&cache.join("v1/entries")),
        std::slice::from_ref(&key)
    );
    assert_eq!(leftovers_of(&cache, &key), Vec::<String>::new());
    assert_eq!(builds(&cache), 1);
}

#[test]
fn cache_gc_removes_what_a_killed_builder_of_another_spec_left() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let key = kill_a_build(&cache, "512MB", &tmp.path().join("killed"));

    // Another spec's build leaves them: it cannot know whether their builder still runs.
    let small = "3KB:files=2";
    run_ok(
        cli(&cache)
            .args(["-q", "-s", small, "-o", "oci:small", "mock/small:1"])
            .current_dir(tmp.path()),
    );
    assert_eq!(leftovers_of(&cache, &key).len(), 1);
    let out = run_ok(cli(&cache).args(["cache", "gc"]));
    assert!(
        entries(&cache.join("v1/tmp")).is_empty(),
        "{}",
        stdout(&out)
    );
    assert_eq!(entry_dirs(&cache).len(), 1);
}

#[test]
fn an_entry_with_a_missing_blob_is_built_again() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let small = "3KB:files=2";
    run_ok(
        cli(&cache)
            .args(["-q", "-s", small, "-o", "oci:small", "mock/small:1"])
            .current_dir(tmp.path()),
    );
    let entry = &entry_dirs(&cache)[0];
    let blob_dir = entry.join("blobs/sha256");
    let victim = blob_dir.join(&entries(&blob_dir)[0]);
    fs::remove_file(&victim).expect("remove a blob");
    let before = builds(&cache);
    run_ok(
        cli(&cache)
            .args(["-q", "-s", small, "-o", "oci:small2", "mock/small:1"])
            .current_dir(tmp.path()),
    );
    assert_eq!(builds(&cache), before + 1);
    assert!(victim.is_file());
}

#[test]
fn an_interrupted_cache_build_leaves_nothing() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let child = spawn(
        cli(&cache)
            .args(["-q", "-s", "2GB", "-o", "oci:out", "mock/int:1"])
            .current_dir(tmp.path()),
    );
    wait_for_build(&cache);
    child.signal(Signal::SIGINT);
    let out = child.finish();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(entries(&cache.join("v1/tmp")).is_empty());
    assert!(entry_dirs(&cache).is_empty());
    assert_eq!(entries(tmp.path()), ["cache"]);
}

/// Builds `spec` into the cache in another process and marks it used `age` ago. (In this
/// process, a fixture stays in use until the process ends.)
fn cached(cache: &Path, spec: &str, age: Duration) -> String {
    let dir = cache.join("v1/entries");
    let before = if dir.exists() {
        entries(&dir)
    } else {
        Vec::new()
    };
    let out = tempdir();
    run_ok(
        cli(cache)
            .args(["-q", "-s", spec, "-o"])
            .arg(format!("oci:{}", path_str(&out.path().join("o"))))
            .arg("mock/gc:1"),
    );
    let key = entries(&cache.join("v1/entries"))
        .into_iter()
        .find(|k| !before.contains(k))
        .expect("a new entry");
    used(cache, &key, age);
    key
}

/// Marks the entry `key` used `age` ago.
fn used(cache: &Path, key: &str, age: Duration) {
    fs::File::options()
        .write(true)
        .open(cache.join("v1/entries").join(key).join("entry.json"))
        .and_then(|f| f.set_modified(std::time::SystemTime::now() - age))
        .expect("set last use");
}

#[test]
fn gc_evicts_least_recently_used_first_and_never_an_image_in_use() {
    let tmp = tempdir();
    let cache = tmp.path();
    let hour = Duration::from_secs(3600);
    let oldest = cached(cache, "2MB", 3 * hour);
    let in_use = cached(cache, "3MB", 2 * hour);
    let newest = cached(cache, "1MB", hour);
    // This process holds the 3MB image, as a running test would.
    let held = Fixture::new("3MB")
        .cache(Cache::at(cache))
        .get()
        .expect("fixture");
    used(cache, &in_use, 2 * hour);

    let listed = stdout(&run_ok(cli(cache).args(["cache", "ls"])));
    let order: Vec<&str> = listed.lines().skip(1).take(3).map(|l| &l[..12]).collect();
    assert_eq!(
        order,
        [&oldest[..12], &in_use[..12], &newest[..12]],
        "{listed}"
    );

    // 6 MiB and a little metadata cached: evicting the oldest (2 MiB) is enough.
    let out = stdout(&run_ok(cli(cache).args([
        "cache",
        "gc",
        "--max-size",
        "4.5MB",
    ])));
    let kept: Vec<String> = entries(&cache.join("v1/entries"));
    assert_eq!(kept, sorted([&in_use, &newest]), "{out}");
    assert!(out.contains(&format!("evicted {}", &oldest[..12])), "{out}");

    // Under 1.5 MiB: the image in use stays, so the newest goes.
    let out = stdout(&run_ok(cli(cache).args([
        "cache",
        "gc",
        "--max-size",
        "1.5MB",
    ])));
    assert_eq!(
        entries(&cache.join("v1/entries")),
        std::slice::from_ref(&in_use),
        "{out}"
    );
    assert!(
        out.contains(&format!("in use, kept {}", &in_use[..12])),
        "{out}"
    );

    // `clear` keeps it too, with all of its blobs, and the fixture still reads.
    let out = stdout(&run_ok(cli(cache).args(["cache", "clear"])));
    assert!(out.contains("in use, kept"), "{out}");
    assert_eq!(entries(&cache.join("v1/blobs/sha256")).len(), 3);
    assert!(held.oci_dir().join("index.json").is_file());
}

#[test]
fn gc_by_age() {
    let tmp = tempdir();
    let day = Duration::from_secs(86_400);
    let old = cached(tmp.path(), "1KB", 10 * day);
    let recent = cached(tmp.path(), "2KB", day);
    let report = Cache::at(tmp.path())
        .gc(GcOptions {
            max_size: None,
            max_age: Some(7 * day),
        })
        .expect("gc");
    assert_eq!(
        report
            .evicted
            .iter()
            .map(|l| l.key.clone())
            .collect::<Vec<_>>(),
        [old]
    );
    assert_eq!(entries(&tmp.path().join("v1/entries")), [recent]);
}

#[test]
fn cache_commands_report_their_arguments() {
    let tmp = tempdir();
    let out = run_ok(cli(tmp.path()).args(["cache", "path"]));
    assert_eq!(stdout(&out).trim(), path_str(tmp.path()));
    for (args, message) in [
        (["cache", "gc", "--max-age", "5y"], "`5y` is not a duration"),
        (
            ["cache", "gc", "--max-size", "lots"],
            "--max-size `lots` is not a number",
        ),
    ] {
        let out = run(cli(tmp.path()).args(args));
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
        assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));
    }
}

fn sorted(keys: [&String; 2]) -> Vec<String> {
    let mut keys: Vec<String> = keys.into_iter().cloned().collect();
    keys.sort();
    keys
}

#[test]
fn an_unusable_cache_falls_back_to_a_plain_build() {
    let tmp = tempdir();
    // /proc refuses new entries even to root.
    let out = run_ok(
        cli(Path::new("/proc/image-maker-cache"))
            .args(["-s", "1KB", "-o", "oci:out", "mock/nocache:1"])
            .current_dir(tmp.path()),
    );
    assert!(
        stderr(&out)
            .contains("warning: building without the cache: cannot create the cache directory"),
        "{}",
        stderr(&out)
    );
    assert!(tmp.path().join("out/index.json").is_file());
}
