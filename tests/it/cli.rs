//! The command-line contract: exit codes, messages, stdout versus stderr.

use crate::support::*;

/// Runs with bad input: exit 2, one `error:` line naming the value, nothing created.
fn usage_error(args: &[&str], expected: &str) -> String {
    let tmp = tempdir();
    let out = run(image_maker().current_dir(tmp.path()).args(args));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(expected),
        "{args:?}: expected {expected:?} in:\n{err}"
    );
    assert!(stdout(&out).is_empty(), "stdout: {}", stdout(&out));
    assert!(!err.contains("panicked"), "{err}");
    assert!(entries(tmp.path()).is_empty());
    err
}

#[test]
fn bad_specs_are_usage_errors() {
    let err = usage_error(
        &["-s", "1XB", "-o", "oci:o", "x"],
        "error: unknown unit `XB` in layer size `1XB`",
    );
    assert!(err.contains("hint: units are B, KB, MB, GB, TB"), "{err}");
    usage_error(
        &["-s", "", "-o", "oci:o", "x"],
        "error: the layer list is empty",
    );
    usage_error(&["-s", "1MB,,2MB", "-o", "oci:o", "x"], "layer 2 is empty");
    usage_error(&["-s=-5MB", "-o", "oci:o", "x"], "`-5MB` is negative");
    usage_error(
        &["-s", "1.3B", "-o", "oci:o", "x"],
        "not a whole number of bytes",
    );
    usage_error(&["-s", "99999999TB", "-o", "oci:o", "x"], "too large");
    usage_error(&["-s", "1MB:files=0", "-o", "oci:o", "x"], "`files=0`");
    usage_error(
        &["-s", "10B:files=11", "-o", "oci:o", "x"],
        "asks for 11 files but holds only 10 bytes",
    );
    usage_error(&["-n", "0", "-s", "1MB", "-o", "oci:o", "x"], "`0` layers");
    usage_error(
        &["-n", "3", "-s", "1GB,512MB", "-o", "oci:o", "x"],
        "--num-layers is 3 but the layer list `1GB,512MB` has 2 sizes",
    );
}

#[test]
fn bad_references_are_usage_errors() {
    usage_error(
        &["-s", "1KB", "-o", "oci:o", "Mock/Image"],
        "repository `Mock/Image` in `Mock/Image` must be lowercase",
    );
    usage_error(
        &["-s", "1KB", "-o", "oci:o", "my image"],
        "contains whitespace",
    );
    usage_error(
        &["-s", "1KB", "-o", "oci:o", "a..b:1"],
        "invalid path component `a..b`",
    );
    usage_error(&["-s", "1KB", "-o", "oci:o", "mock:"], "has an empty tag");
}

#[test]
fn bad_options_are_usage_errors() {
    usage_error(&["-s", "1KB", "-o", "zip:o", "x"], "unknown output `zip:o`");
    usage_error(
        &["-s", "1KB", "-o", "oci:", "x"],
        "output `oci:` has no path",
    );
    usage_error(
        &["-s", "1KB", "-o", "oci:o", "-o", "oci:o", "x"],
        "output `oci:o` is given twice",
    );
    usage_error(
        &["-s", "1KB", "--platform", "linux/x86", "-o", "oci:o", "x"],
        "unknown architecture `x86`",
    );
    usage_error(&["-s", "1KB", "-e", "rkt", "x"], "unknown engine `rkt`");
    usage_error(&["-s", "1KB", "-n", "two", "x"], "invalid value 'two'");
    usage_error(&["-s", "1KB"], "<IMAGE>");
    usage_error(&["-s", "1KB", "-b", "magic", "x"], "invalid value 'magic'");
}

#[test]
fn status_goes_to_stderr_and_json_to_stdout() {
    let tmp = tempdir();
    let out = run_ok(
        image_maker()
            .current_dir(tmp.path())
            .args(["-s", "1KB", "-o", "oci:a", "mock/s:1"]),
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(
        stderr(&out).matches("wrote ").count(),
        1,
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("building mock/s:1 (1 layer,"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("wrote mock/s:1 sha256:"),
        "{}",
        stderr(&out)
    );

    let out = run_ok(image_maker().current_dir(tmp.path()).args([
        "-q",
        "--json",
        "-n",
        "2",
        "-s",
        "3KB:files=3",
        "-o",
        "oci:b",
        "mock/s:2",
    ]));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let summary = json(&out);
    assert_eq!(summary["reference"], "mock/s:2");
    assert_eq!(summary["outputs"], serde_json::json!(["oci:b"]));
    assert_eq!(summary["platform"], "linux/amd64");
    assert_eq!(summary["spec"], "3KB:files=3,3KB:files=3");
    assert!(summary["digest"]
        .as_str()
        .is_some_and(|d| d.starts_with("sha256:") && d.len() == 71));
    let layers = summary["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2);
    for layer in layers {
        assert_eq!(layer["files"], 3);
        assert_eq!(layer["payload"], 3072);
        assert_eq!(layer["digest"], layer["diff_id"]);
        // Directory header, three file headers with their data, two end blocks.
        assert_eq!(layer["size"], 512 + 3 * (512 + 1024) + 1024);
    }
    assert_ne!(layers[0]["digest"], layers[1]["digest"]);
}

#[test]
fn help_and_version() {
    let out = run_ok(image_maker().arg("--help"));
    let help = stdout(&out);
    for needle in [
        "--layer-sizes",
        "--num-layers",
        "--output",
        "oci-archive:FILE",
        "Examples:",
        "powers of 1024",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    let out = run_ok(image_maker().arg("--version"));
    assert_eq!(
        stdout(&out).trim(),
        format!("image-maker {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn sizes_as_people_type_them_and_nx() {
    let err = usage_error(
        &["-s", "0x1MB", "-o", "oci:o", "x"],
        "error: repetition count `0` in `0x1MB` is zero",
    );
    assert!(err.contains("hint: `Nx` repeats a layer N times"), "{err}");
    usage_error(
        &["-n", "3", "-s", "2x1K", "-o", "oci:o", "x"],
        "--num-layers is 3 but the layer list `2x1K` has 2 sizes",
    );

    let tmp = tempdir();
    let out = run_ok(image_maker().current_dir(tmp.path()).args([
        "-q",
        "-s",
        "2x1K:files=2",
        "--json",
        "-o",
        "oci:out",
        "--no-cache",
        "mock/nx:1",
    ]));
    let summary = json(&out);
    assert_eq!(summary["spec"], "1KB:files=2,1KB:files=2");
    assert_eq!(summary["layers"].as_array().map(Vec::len), Some(2));
}

#[test]
fn size_flags_speak_of_the_flag_not_of_layers() {
    let out = run(image_maker().args(["cache", "gc", "--max-size", "lots"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: --max-size `lots` is not a number\nhint: a size is"),
        "{err}"
    );
    let out = run(image_maker().args([
        "--chunk-size",
        "5XB",
        "-s",
        "1KB",
        "-o",
        "registry",
        "localhost:1/mock/x:1",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: chunk size `5XB` is not a size: unknown unit `XB` in size `5XB`"),
        "{err}"
    );
    assert!(!err.contains("layer"), "{err}");
}
