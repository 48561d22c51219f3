//! A failed or interrupted build leaves nothing at the destination and no temporary files.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

fn assert_empty(dir: &Path) {
    assert!(
        entries(dir).is_empty(),
        "left behind in {}: {:?}",
        dir.display(),
        entries(dir)
    );
}

#[test]
fn outputs_get_ordinary_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempdir();
    run_ok(image_maker().current_dir(tmp.path()).args([
        "-q",
        "-s",
        "1KB",
        "-o",
        "oci:dir",
        "-o",
        "oci-archive:file.tar",
        "x:1",
    ]));
    let mode = |name: &str| {
        std::fs::metadata(tmp.path().join(name))
            .expect(name)
            .permissions()
            .mode()
            & 0o777
    };
    // What `mkdir` and `touch` would give, not the 0700/0600 of a temporary file.
    assert_eq!(mode("dir"), 0o777 & !umask(), "dir");
    assert_eq!(mode("file.tar"), 0o666 & !umask(), "file");
}

/// The umask of this process, read from /proc.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_owned()))
        })
        .and_then(|v| u32::from_str_radix(&v, 8).ok())
        .unwrap_or(0o022)
}

#[test]
fn parents_made_for_a_failed_build_are_removed_again() {
    // The second output cannot be opened (/proc takes no new entries), after the first has
    // made its parents: they go again, with nothing else left behind.
    let tmp = tempdir();
    let out = run(image_maker().current_dir(tmp.path()).args([
        "-q",
        "-s",
        "1KB",
        "-o",
        "oci:made/for/it",
        "-o",
        "oci-archive:made/too/x.tar",
        "-o",
        "oci:/proc/image-maker-test",
        "x:1",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
}

#[test]
fn a_parent_that_is_a_file_is_an_error_naming_it() {
    let tmp = tempdir();
    std::fs::write(tmp.path().join("file"), "").expect("write");
    let out = run(image_maker().current_dir(tmp.path()).args([
        "-q",
        "-s",
        "1KB",
        "-o",
        "oci:file/sub/out",
        "x:1",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`file`") && err.contains("not a directory"),
        "{err}"
    );
    assert_eq!(entries(tmp.path()), ["file"]);
}

/// Nothing in the test's cache: no entry, no temporary directory, no build in its log.
fn assert_cache_untouched() {
    let cache = test_cache();
    for part in ["v1/entries", "v1/tmp"] {
        let dir = cache.join(part);
        if dir.exists() {
            assert_empty(&dir);
        }
    }
    let log = std::fs::read_to_string(cache.join("v1/log")).unwrap_or_default();
    assert!(!log.contains(" built "), "{log}");
}

#[test]
fn unwritable_parent_fails_cleanly() {
    // /proc refuses new entries even to root, unlike a chmod'ed directory. Nothing can appear
    // there whatever the build does; what a failure can leave behind is elsewhere: another
    // output in a writable directory, and the cache.
    for output in [
        "oci:/proc/image-maker-test",
        "oci-archive:/proc/image-maker-test.tar",
    ] {
        let tmp = tempdir();
        let out = run(image_maker()
            .current_dir(tmp.path())
            .args(["-s", "1KB", "-o", "oci:good", "-o", output, "x:1"]));
        assert_eq!(out.status.code(), Some(1), "{output}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("cannot create a temporary") && err.contains("/proc"),
            "{err}"
        );
        assert_empty(tmp.path());
        assert_cache_untouched();
    }
}

#[test]
fn an_output_that_cannot_be_opened_stops_every_output() {
    let tmp = tempdir();
    let good = tmp.path().join("good");
    std::fs::write(tmp.path().join("file"), "").expect("write");
    let out = run(image_maker().args([
        "-s",
        "1KB",
        "-o",
        &format!("oci:{}", path_str(&good)),
        "-o",
        &format!("oci-archive:{}", path_str(&tmp.path().join("file/x.tar"))),
        "x:1",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(entries(tmp.path()), ["file"]);
}

#[test]
fn an_occupied_destination_is_left_alone() {
    let tmp = tempdir();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("keep.txt"), "mine").expect("write");
    let out =
        run(image_maker().args(["-s", "1KB", "-o", &format!("oci:{}", path_str(&dir)), "x:1"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("exists and is not an OCI image layout"),
        "{}",
        stderr(&out)
    );
    assert_eq!(entries(&dir), ["keep.txt"]);
    let out = run(image_maker().args([
        "-s",
        "1KB",
        "-o",
        &format!("oci-archive:{}", path_str(&dir)),
        "x:1",
    ]));
    assert!(
        stderr(&out).contains("exists and is not a regular file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(entries(tmp.path()), ["data"]);
}

#[test]
fn a_write_failing_mid_layer_leaves_nothing() {
    // The file size limit makes a write fail partway through the first layer; SIGXFSZ is
    // ignored so the failure arrives as an error, as a full disk's would. Through the cache,
    // the cache's copy is written in the same pass and may be the one that fails.
    let Some(sh) = tool("sh") else {
        return;
    };
    let tmp = tempdir();
    for cache in [&["--no-cache"][..], &[]] {
        for output in ["oci:out", "oci-archive:out.tar"] {
            let out = run(with_test_env(&mut sh.cmd())
                .current_dir(tmp.path())
                .args([
                    "-c",
                    "trap '' XFSZ; ulimit -f 1024; exec \"$@\"",
                    "sh",
                    IMAGE_MAKER,
                ])
                .args(cache)
                .args(["-q", "-s", "4MB", "-o", output, "x:1"]));
            assert_eq!(out.status.code(), Some(1), "{output}: {}", stderr(&out));
            assert!(stderr(&out).contains("File too large"), "{}", stderr(&out));
            assert_empty(tmp.path());
            assert_cache_untouched();
        }
    }
}

/// Starts a build big enough to interrupt, waits until it is writing, sends `signal`.
fn interrupt(signal: Signal, output: &str, dir: &Path) -> std::process::Output {
    let child = spawn(
        image_maker()
            .current_dir(dir)
            .args(["-q", "-s", "4GB", "-o", output, "x:1"]),
    );
    wait_for_output(dir);
    child.signal(signal);
    child.finish()
}

/// Waits until a build is writing its data: a file in `dir` holds some, or, since a build
/// through the cache writes the entry and links `oci:` outputs from it blob by blob, a file
/// in the test's cache does.
fn wait_for_output(dir: &Path) {
    let cache = test_cache();
    wait_for(
        "the build to write its output",
        Duration::from_secs(30),
        || writing(dir, 1 << 20) || writing(&cache, 1 << 20),
    );
}

/// `signal` mid-build: exit 128 + the signal, an `interrupted` error, nothing left behind.
fn assert_signal_cleans_up(signal: Signal, output: &str, code: i32) {
    let tmp = tempdir();
    let out = interrupt(signal, output, tmp.path());
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("error: interrupted"),
        "{}",
        stderr(&out)
    );
    assert_empty(tmp.path());
    assert_cache_untouched();
}

#[test]
fn ctrl_c_removes_everything() {
    assert_signal_cleans_up(Signal::SIGINT, "oci:out", 130);
}

#[test]
fn sigterm_removes_everything() {
    assert_signal_cleans_up(Signal::SIGTERM, "oci-archive:out.tar", 143);
}

#[test]
fn a_closed_terminal_removes_everything() {
    assert_signal_cleans_up(Signal::SIGHUP, "oci:out", 129);
}

#[test]
fn ctrl_c_cancels_an_engine_load() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let image = EngineImage::new(docker, "interrupted");
    let child = spawn(image_maker().current_dir(tmp.path()).args([
        "-q",
        "-s",
        "4GB",
        "-o",
        "engine",
        "-o",
        "oci:out",
        "-e",
        "docker",
        &image.reference,
    ]));
    wait_for_output(tmp.path());
    child.signal(Signal::SIGINT);
    let out = child.finish();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_empty(tmp.path());
    assert!(!image.exists(), "an interrupted build was loaded");
}

#[test]
fn an_output_that_cannot_land_takes_the_others_back_out() {
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempdir();
    // A previous image at `a`, which must survive the failed build.
    run_ok(
        image_maker()
            .current_dir(tmp.path())
            .args(["-q", "-s", "1KB", "-o", "oci:a", "old/a:1"]),
    );
    let child = spawn(image_maker().current_dir(tmp.path()).args([
        "-q",
        "-s",
        "64MB",
        "-o",
        "oci:a",
        "-o",
        "oci-archive:b.tar",
        "-o",
        "oci:c",
        "new/x:1",
    ]));
    // Once the build is writing, something else takes `c`; the build is stopped meanwhile so
    // that it cannot finish first, however fast it runs. `c` is checked again at commit.
    wait_for(
        "the build to open its three outputs",
        Duration::from_secs(30),
        || entries(tmp.path()).len() >= 4,
    );
    child.signal(Signal::SIGSTOP);
    std::fs::create_dir(tmp.path().join("c")).expect("mkdir");
    std::fs::write(tmp.path().join("c/keep.txt"), "mine").expect("write");
    child.signal(Signal::SIGCONT);
    let out = child.finish();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exists and is not an OCI image layout"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        entries(tmp.path()),
        ["a", "c"],
        "b.tar landed, or temporary files were left"
    );
    assert_eq!(entries(&tmp.path().join("c")), ["keep.txt"]);
    let old = run_ok(skopeo.cmd().args([
        "inspect",
        &format!("oci:{}:1", path_str(&tmp.path().join("a"))),
    ]));
    assert_eq!(json(&old)["Labels"]["dev.image-maker.spec"], "1KB:files=1");
}
