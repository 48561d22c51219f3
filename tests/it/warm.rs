//! `image-maker warm [DIR]`: every image a crate's `#[mock_image]` tests use, built into the
//! cache once, so that the tests themselves (unoptimised) only read it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{image_maker, json, run, run_ok, stderr, stdout, tempdir};

fn downstream() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/downstream")
}

/// `image-maker warm ARGS…` with its own cache.
fn warm(cache: &Path, args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = image_maker();
    cmd.env("IMAGE_MAKER_CACHE_DIR", cache)
        .arg("warm")
        .args(args);
    cmd
}

#[test]
fn builds_the_downstream_images_then_finds_them_cached() {
    let cache = tempdir();
    let dir = downstream();
    let first = stdout(&run_ok(&mut warm(cache.path(), &[dir.as_os_str()])));
    let lines: Vec<&str> = first.lines().collect();
    // Two images: the first spec is asked for twice (once with a tag), the same image.
    assert_eq!(
        lines[..2],
        [
            "built   2MB,512KB:files=10  tests/layout.rs:6",
            "built   1KB (linux/arm64)  tests/layout.rs:28",
        ],
        "{first}"
    );
    assert!(
        lines[2].starts_with("2 images under ")
            && lines[2]
                .ends_with(": 2 built, 0 already cached, 0 in an engine, 0 skipped, 0 failed"),
        "{first}"
    );
    assert_eq!(lines.len(), 3, "{first}");

    let again = run_ok(&mut warm(
        cache.path(),
        &[dir.as_os_str(), "--json".as_ref()],
    ));
    let report = json(&again);
    let images = report.as_array().expect("a JSON array");
    assert_eq!(images.len(), 2, "{report}");
    for image in images {
        assert_eq!(image["status"], "cached", "{report}");
        assert!(image["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")));
    }
    assert_eq!(images[1]["platform"], "linux/arm64");
    assert_eq!(images[0]["location"], "tests/layout.rs:6");

    // What the downstream tests then find: the entries `warm` made, nothing rebuilt.
    let log = std::fs::read_to_string(cache.path().join("v1/log")).expect("the cache's log");
    assert_eq!(
        log.lines().filter(|l| l.contains(" built ")).count(),
        2,
        "{log}"
    );
}

#[test]
fn lists_invalid_attributes_as_skipped_and_fails_on_a_failed_build() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    std::fs::write(
        dir.path().join("tests/t.rs"),
        r#"
        #[mock_image(layers = "3KB")]
        fn ok(img: MockImage) {}
        #[mock_image(layers = "3 apples")]
        fn bad(img: MockImage) {}
        "#,
    )
    .expect("write");
    let cache = tempdir();
    let out = run_ok(&mut warm(cache.path(), &[dir.path().as_os_str()]));
    let text = stdout(&out);
    assert!(text.contains("built   3KB  tests/t.rs:2\n"), "{text}");
    assert!(text.contains("skipped 3 apples  tests/t.rs:4: "), "{text}");
    assert!(
        text.contains(": 1 built, 0 already cached, 0 in an engine, 1 skipped, 0 failed"),
        "{text}"
    );

    // A cache that cannot be created fails every build: each is listed, and the exit says so.
    let blocked = cache.path().join("file");
    std::fs::write(&blocked, "not a directory").expect("write");
    let out = run(&mut warm(&blocked.join("cache"), &[dir.path().as_os_str()]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("failed  3KB  tests/t.rs:2: "),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("error: 1 of the 2 mock images failed to build"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_directory_is_an_error() {
    let cache = tempdir();
    let missing = cache.path().join("nowhere");
    let out = run(&mut warm(cache.path(), &[missing.as_os_str()]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
}
