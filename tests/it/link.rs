//! Outputs link the cache's blobs instead of copying them, stay independent of the cache, and
//! the cache heals: damaged entries are caught, named and built again; a read-only cache
//! still serves what it has.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

/// The CLI with its own cache in `cache`.
fn cli(cache: &Path) -> Command {
    let mut cmd = image_maker();
    cmd.env("IMAGE_MAKER_CACHE_DIR", cache);
    cmd
}

/// Builds `spec` as `name:tag` into `oci:out` through the cache in `cache`.
fn build(cache: &Path, spec: &str, out: &Path, extra: &[&str]) -> Output {
    run(cli(cache)
        .args(["-s", spec, "-o"])
        .arg(format!("oci:{}", path_str(out)))
        .args(extra)
        .arg("mock/link:v1"))
}

/// The only entry of the cache.
fn entry(cache: &Path) -> PathBuf {
    let dir = cache.join("v1/entries");
    let keys = entries(&dir);
    assert_eq!(keys.len(), 1, "{keys:?}");
    dir.join(&keys[0])
}

fn ino(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

/// The blob names of the layout in `dir`, largest first: the first is the big layer.
fn blobs(dir: &Path) -> Vec<String> {
    let blobs = dir.join("blobs/sha256");
    let mut names = entries(&blobs);
    names.sort_by_key(|n| std::cmp::Reverse(fs::metadata(blobs.join(n)).expect("stat").len()));
    names
}

/// How an output's blob holds the cache's bytes.
#[derive(Debug, PartialEq, Eq)]
enum Holds {
    /// A hard link: the cache's file itself.
    SameFile,
    /// A file of its own on the cache's blocks: a copy-on-write clone.
    SharedBlocks,
    /// A file of its own on blocks of its own: a copy.
    OwnBlocks,
}

/// How `output` holds the bytes of `cached`, from their inodes and, for two files, the
/// physical extents `filefrag -sv` (FIEMAP) reports: a clone differs from a copy only there.
fn holds(filefrag: Tool, output: &Path, cached: &Path) -> Holds {
    if ino(output) == ino(cached) {
        return Holds::SameFile;
    }
    let extents = |path: &Path| {
        // `-s` syncs first: unwritten (delayed) blocks have no location, and two files of
        // such blocks would look alike.
        let out = run_ok(filefrag.cmd().args(["-s", "-v", path_str(path)]));
        assert!(!stdout(&out).contains("unknown_loc"), "{}", stdout(&out));
        // ` 0:  0.. 511:  34816.. 35327:  512:  last,shared,eof`: the physical range.
        let ranges: Vec<String> = stdout(&out)
            .lines()
            .filter_map(|l| {
                let fields: Vec<&str> = l.split(':').map(str::trim).collect();
                (fields.len() > 3 && fields[0].parse::<u32>().is_ok())
                    .then(|| fields[2].replace(' ', ""))
            })
            .collect();
        assert!(
            !ranges.is_empty(),
            "no extents of {}: {}",
            path.display(),
            stdout(&out)
        );
        ranges
    };
    if extents(output) == extents(cached) {
        Holds::SharedBlocks
    } else {
        Holds::OwnBlocks
    }
}

/// Whether copy-on-write clones work in `dir`, as `cp --reflink=always` finds.
fn can_clone(cp: Tool, dir: &Path) -> bool {
    let probe = dir.join(".probe");
    fs::write(&probe, b"probe").expect("write probe");
    let cloned = cp
        .cmd()
        .arg("--reflink=always")
        .arg(&probe)
        .arg(dir.join(".probe.clone"))
        .output()
        .is_ok_and(|o| o.status.success());
    let _ = fs::remove_file(&probe);
    let _ = fs::remove_file(dir.join(".probe.clone"));
    cloned
}

/// The layout at `dir` is a valid image tagged `v1` whose files are the generator's bytes.
/// Without umoci or oci-image-tool the gate logs the test as skipped (and fails it where
/// tools are required); the test's other checks still run.
fn assert_valid(dir: &Path, spec: &str) {
    let (Some(validator), Some(umoci)) = (tool("oci-image-tool"), tool("umoci")) else {
        return;
    };
    run_ok(validator.cmd().args([
        "validate",
        "--type",
        "image",
        "--ref",
        "name=v1",
        path_str(dir),
    ]));
    let bundle = tempdir();
    let bundle = bundle.path().join("bundle");
    run_ok(umoci.cmd().args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:v1", path_str(dir)),
        path_str(&bundle),
    ]));
    assert_rootfs(&bundle.join("rootfs"), spec);
}

/// The `warning:` lines of stderr.
fn warnings(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(str::to_owned)
        .collect()
}

/// Lines of stderr that contain `text`.
fn lines_with(out: &Output, text: &str) -> usize {
    stderr(out).lines().filter(|l| l.contains(text)).count()
}

#[test]
fn a_cache_hit_links_the_blobs_and_a_cold_build_writes_them_once() {
    let (Some(filefrag), Some(cp)) = (tool("filefrag"), tool("cp")) else {
        return;
    };
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let spec = "3MB:files=2,2KB";
    let cold = tmp.path().join("cold");
    let out = build(&cache, spec, &cold, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let entry = entry(&cache);
    let clone = can_clone(cp, tmp.path());
    let hit = tmp.path().join("hit");
    let out = build(&cache, spec, &hit, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exporting cached"),
        "{}",
        stderr(&out)
    );
    assert_eq!(builds(&cache), 1);
    let names = blobs(&hit);
    assert_eq!(names.len(), 4, "two layers, config, manifest: {names:?}");
    for name in &names {
        let cached = entry.join("blobs/sha256").join(name);
        for output in [&cold, &hit] {
            let linked = output.join("blobs/sha256").join(name);
            assert_eq!(fs::read(&linked).ok(), fs::read(&cached).ok(), "{name}");
            if !clone {
                assert_eq!(ino(&linked), ino(&cached), "{name} is not a hard link");
            }
        }
    }
    if clone {
        // The config and manifest may be too small for blocks of their own (inline data):
        // the big layer shows whether the blocks are the cache's.
        let big = &names[0];
        let cached = entry.join("blobs/sha256").join(big);
        for output in [&cold, &hit] {
            assert_eq!(
                holds(filefrag, &output.join("blobs/sha256").join(big), &cached),
                Holds::SharedBlocks,
                "{big} in {} is not a clone of the cache's",
                output.display()
            );
        }
    }
    if clone {
        assert_eq!(lines_with(&out, "linking:"), 0, "{}", stderr(&out));
    } else {
        assert_eq!(
            lines_with(&out, "cannot clone; hard-linking instead"),
            1,
            "said once, not per blob: {}",
            stderr(&out)
        );
    }
    // Written fresh: the output's own tag, not a link to the cache's index.
    assert_ne!(ino(&hit.join("index.json")), ino(&entry.join("index.json")));
    let index = fs::read_to_string(hit.join("index.json")).expect("index");
    assert!(
        index.contains(r#""org.opencontainers.image.ref.name":"v1""#),
        "{index}"
    );
    assert_valid(&hit, spec);
    assert_valid(&cold, spec);
}

#[test]
fn removing_an_output_or_evicting_the_entry_leaves_the_other_whole() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let spec = "2MB,1KB:files=3";
    let first = tmp.path().join("first");
    run_ok(
        cli(&cache)
            .args(["-q", "-s", spec, "-o"])
            .arg(format!("oci:{}", path_str(&first)))
            .arg("mock/link:v1"),
    );
    fs::remove_dir_all(&first).expect("rm -rf the output");
    let out = run_ok(cli(&cache).args(["cache", "rehash"]));
    assert!(stdout(&out).starts_with("ok "), "{}", stdout(&out));

    let second = tmp.path().join("second");
    run_ok(
        cli(&cache)
            .args(["-q", "-s", spec, "-o"])
            .arg(format!("oci:{}", path_str(&second)))
            .arg("mock/link:v1"),
    );
    assert_eq!(builds(&cache), 1);
    let out = run_ok(cli(&cache).args(["cache", "gc", "--max-size", "0"]));
    assert!(stdout(&out).contains("evicted"), "{}", stdout(&out));
    assert!(entries(&cache.join("v1/entries")).is_empty());
    // The cache forgets the blobs although the output still links them.
    assert!(entries(&cache.join("v1/blobs/sha256")).is_empty());
    assert_valid(&second, spec);
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    at: PathBuf,
    umount: Tool,
}

impl Tmpfs {
    fn mount(_: Root, at: &Path, options: &str) -> Option<Self> {
        let (mount, umount) = (tool("mount")?, tool("umount")?);
        fs::create_dir_all(at).expect("mount point");
        run_ok(
            mount
                .cmd()
                .args(["-t", "tmpfs", "-o", options, "tmpfs", path_str(at)]),
        );
        Some(Self {
            at: at.to_path_buf(),
            umount,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = self.umount.cmd().arg(&self.at).output();
    }
}

#[test]
fn copy_mode_and_another_filesystem_copy_and_say_so() {
    let Some(filefrag) = tool("filefrag") else {
        return;
    };
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let spec = "2MB:files=2";
    let warm = tmp.path().join("warm");
    assert!(build(&cache, spec, &warm, &["-q"]).status.success());
    let entry = entry(&cache);
    let big = &blobs(&entry)[0];

    let copied = tmp.path().join("copied");
    let out = build(&cache, spec, &copied, &["--link-mode", "copy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        lines_with(&out, "linking: copying into"),
        1,
        "{}",
        stderr(&out)
    );
    let blob = copied.join("blobs/sha256").join(big);
    // Not OwnBlocks: the kernel's copy (copy_file_range) may share blocks where the
    // filesystem can; what a copy must not be is the cache's file itself.
    assert_ne!(
        holds(filefrag, &blob, &entry.join("blobs/sha256").join(big)),
        Holds::SameFile,
        "copy mode hard-linked {big}"
    );
    assert_valid(&copied, spec);

    let Some(mnt) = root("mounting a tmpfs")
        .and_then(|root| Tmpfs::mount(root, &tmp.path().join("mnt"), "size=64m"))
    else {
        return;
    };
    for mode in ["clone", "hardlink"] {
        let elsewhere = mnt.at.join(mode);
        let out = build(&cache, spec, &elsewhere, &["--link-mode", mode]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            lines_with(
                &out,
                "is on another filesystem than the cache; copying instead"
            ),
            1,
            "{}",
            stderr(&out)
        );
        assert_eq!(lines_with(&out, "linking:"), 1, "{}", stderr(&out));
        assert_valid(&elsewhere, spec);
    }
    assert_eq!(builds(&cache), 1);
}

/// A cache with `spec` in it; returns it and the path of the entry's largest blob.
fn damaged_cache(tmp: &Path, spec: &str) -> (PathBuf, PathBuf, String) {
    let cache = tmp.join("cache");
    assert!(build(&cache, spec, &tmp.join("first"), &["-q"])
        .status
        .success());
    let entry = entry(&cache);
    let name = blobs(&entry)[0].clone();
    (
        cache,
        entry.join("blobs/sha256").join(&name),
        format!("sha256:{name}"),
    )
}

/// The next build of `spec` says once that the entry is damaged, builds it again and
/// exports a good image.
fn assert_heals(cache: &Path, spec: &str, out_dir: &Path) {
    let before = builds(cache);
    let out = build(cache, spec, out_dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings = warnings(&out);
    assert_eq!(warnings.len(), 1, "{}", stderr(&out));
    assert!(
        warnings[0].contains("is damaged")
            && warnings[0].contains(spec.split(',').next().unwrap_or_default()),
        "{}",
        warnings[0]
    );
    assert_eq!(builds(cache), before + 1, "not built again");
    let verified = run_ok(cli(cache).args(["cache", "rehash"]));
    assert!(
        stdout(&verified).starts_with("ok "),
        "{}",
        stdout(&verified)
    );
    assert_valid(out_dir, spec);
}

#[test]
fn a_flipped_byte_fails_verify_naming_the_blob_and_the_next_build_heals() {
    let tmp = tempdir();
    let spec = "2MB:files=2,1KB";
    let (cache, blob, digest) = damaged_cache(tmp.path(), spec);
    flip_byte(&blob, true);
    // The cheap checks cannot see it; hashing does.
    let dest = tmp.path().join("verified");
    let out = build(&cache, spec, &dest, &["--rehash"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("blob {digest} hashes to")),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("the next build"), "{}", stderr(&out));
    assert!(!dest.exists(), "a failed build leaves no output");
    assert_heals(&cache, spec, &tmp.path().join("healed"));
}

#[test]
fn cache_verify_names_and_removes_a_damaged_entry() {
    let tmp = tempdir();
    let spec = "2MB:files=2,1KB";
    let (cache, blob, digest) = damaged_cache(tmp.path(), spec);
    // Another image, sound, which verify must leave alone.
    assert!(build(&cache, "1KB", &tmp.path().join("small"), &["-q"])
        .status
        .success());
    flip_byte(&blob, true);
    let out = run(cli(&cache).args(["cache", "rehash"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // The damage is a failure: on stderr, the sound image's line on stdout.
    let damage = stderr(&out);
    assert!(
        damage.contains(&format!("blob {digest} hashes to")) && damage.contains("removed"),
        "{damage}"
    );
    let report = stdout(&out);
    assert!(!report.contains("damaged"), "{report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok ")).count(),
        1,
        "{report}"
    );
    assert_eq!(entries(&cache.join("v1/entries")).len(), 1);
    // SPEC alone: now not cached; the other is fine.
    let out = run_ok(cli(&cache).args(["cache", "rehash", spec]));
    assert!(stdout(&out).contains("is not cached"), "{}", stdout(&out));
    let out = run_ok(cli(&cache).args(["cache", "rehash", "1KB"]));
    assert!(stdout(&out).starts_with("ok "), "{}", stdout(&out));
}

#[test]
fn a_truncated_blob_is_caught_without_verify_and_rebuilt() {
    let tmp = tempdir();
    let spec = "2MB:files=2,1KB";
    let (cache, blob, _) = damaged_cache(tmp.path(), spec);
    open_read_only_for_writing(&blob)
        .set_len(1000)
        .expect("truncate");
    assert_heals(&cache, spec, &tmp.path().join("healed"));
}

#[test]
fn a_blob_written_to_is_hashed_again_and_rebuilt() {
    let tmp = tempdir();
    let spec = "2MB:files=2,1KB";
    let (cache, blob, _) = damaged_cache(tmp.path(), spec);
    flip_byte(&blob, false);
    assert_heals(&cache, spec, &tmp.path().join("healed"));
}

#[test]
fn gc_removes_damaged_entries_it_can_see_cheaply() {
    let tmp = tempdir();
    let spec = "2MB:files=2,1KB";
    let (cache, blob, _) = damaged_cache(tmp.path(), spec);
    flip_byte(&blob, false);
    let out = run_ok(cli(&cache).args(["cache", "gc"]));
    assert!(stderr(&out).contains("removed damaged"), "{}", stderr(&out));
    assert!(entries(&cache.join("v1/entries")).is_empty());
    assert!(entries(&cache.join("v1/blobs/sha256")).is_empty());
}

#[test]
fn a_damaged_stored_blob_is_not_linked_into_a_new_entry() {
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    assert!(build(&cache, "2MB", &tmp.path().join("amd"), &["-q"])
        .status
        .success());
    let amd_entry = entry(&cache);
    let layer = blobs(&amd_entry)[0].clone();
    let stored = cache.join("v1/blobs/sha256").join(&layer);
    flip_byte(&stored, false);
    let damaged = ino(&stored);
    // With --shared-layers an arm64 image holds the amd64 layer bytes: another entry (its
    // own config and key) whose layer is the very blob the store holds damaged.
    let arm = tmp.path().join("arm");
    let out = run(cli(&cache)
        .args([
            "-q",
            "-s",
            "2MB",
            "--platform",
            "linux/arm64",
            "--shared-layers",
        ])
        .args(["-o", &format!("oci:{}", path_str(&arm))])
        .arg("mock/link:v1"));
    assert!(out.status.success(), "{}", stderr(&out));
    let entries_dir = cache.join("v1/entries");
    let keys = entries(&entries_dir);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let arm_entry = keys
        .iter()
        .map(|k| entries_dir.join(k))
        .find(|dir| *dir != amd_entry)
        .expect("the arm64 entry");
    let linked = arm_entry.join("blobs/sha256").join(&layer);
    assert!(linked.is_file(), "the arm64 entry holds the amd64 layer");
    assert_ne!(ino(&linked), damaged, "the damaged file was linked in");
    // Instead the new entry wrote the layer itself, and the store took its sound copy.
    assert_eq!(ino(&stored), ino(&linked), "the store keeps the fresh copy");
    assert_eq!(
        sha256(&fs::read(&linked).expect("the linked blob"))["sha256:".len()..],
        layer,
        "the new entry's layer bytes"
    );
}

/// A read-only bind mount of a directory, which root cannot write through either.
struct ReadOnly {
    at: PathBuf,
    umount: Tool,
}

impl ReadOnly {
    fn mount(_: Root, dir: &Path, at: &Path) -> Option<Self> {
        let (mount, umount) = (tool("mount")?, tool("umount")?);
        fs::create_dir_all(at).expect("mount point");
        run_ok(mount.cmd().args(["--bind", path_str(dir), path_str(at)]));
        let guard = Self {
            at: at.to_path_buf(),
            umount,
        };
        run_ok(mount.cmd().args(["-o", "remount,bind,ro", path_str(at)]));
        Some(guard)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = self.umount.cmd().arg(&self.at).output();
    }
}

#[test]
fn a_read_only_cache_serves_its_entries_and_builds_a_miss_without_it() {
    let Some(root) = root("a read-only bind mount") else {
        return;
    };
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let spec = "2MB:files=2";
    assert!(build(&cache, spec, &tmp.path().join("warm"), &["-q"])
        .status
        .success());
    let Some(ro) = ReadOnly::mount(root, &cache, &tmp.path().join("ro")) else {
        return;
    };
    assert!(
        fs::write(ro.at.join("probe"), b"").is_err(),
        "root writes through the mount"
    );

    let hit = tmp.path().join("hit");
    let out = build(&ro.at, spec, &hit, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exporting cached"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lines_with(&out, "warning:"), 0, "{}", stderr(&out));
    assert_valid(&hit, spec);

    let miss = tmp.path().join("miss");
    let out = build(&ro.at, "1MB", &miss, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings = warnings(&out);
    assert_eq!(warnings.len(), 1, "{}", stderr(&out));
    assert!(warnings[0].contains("read-only"), "{}", warnings[0]);
    assert_valid(&miss, "1MB");
    assert_eq!(entries(&cache.join("v1/entries")).len(), 1);
}

#[test]
fn eight_exports_at_once_build_once_and_all_link() {
    let (Some(filefrag), Some(cp)) = (tool("filefrag"), tool("cp")) else {
        return;
    };
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let spec = "4MB:files=2,1KB";
    let children: Vec<Running> = (0..8)
        .map(|i| {
            let mut cmd = cli(&cache);
            cmd.args(["-q", "-s", spec, "-o"])
                .arg(format!(
                    "oci:{}",
                    path_str(&tmp.path().join(format!("out{i}")))
                ))
                .arg("mock/link:v1");
            spawn(&mut cmd)
        })
        .collect();
    for child in children {
        let out = child.finish_within(std::time::Duration::from_secs(300));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(
        builds(&cache),
        1,
        "{:?}",
        fs::read_to_string(cache.join("v1/log"))
    );
    let entry = entry(&cache);
    let big = blobs(&entry)[0].clone();
    let clone = can_clone(cp, tmp.path());
    for i in 0..8 {
        let out = tmp.path().join(format!("out{i}"));
        let held = holds(
            filefrag,
            &out.join("blobs/sha256").join(&big),
            &entry.join("blobs/sha256").join(&big),
        );
        let linked = if clone {
            Holds::SharedBlocks
        } else {
            Holds::SameFile
        };
        assert_eq!(held, linked, "out{i}");
        assert_valid(&out, spec);
    }
    assert!(entries(&cache.join("v1/tmp")).is_empty());
}
