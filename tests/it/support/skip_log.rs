//! The one way a test says it skipped, shared by the integration tests and the docs test.

use std::fs;
use std::io::Write;

fn flag(name: &str) -> bool {
    is_on(std::env::var_os(name).as_deref())
}

/// Whether an environment variable's value is anything but unset, empty, `0` or `false`.
pub fn is_on(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Under `CI` or `IMAGE_MAKER_REQUIRE_ENGINES`, a missing tool fails the test.
pub fn required() -> bool {
    flag("CI") || flag("IMAGE_MAKER_REQUIRE_ENGINES")
}

/// Skips (or, when tools are required, fails) `test` for want of `what`. The line goes to
/// the process's stderr itself, since libtest hides what a passing test prints with
/// `eprintln!`, and is appended to `IMAGE_MAKER_SKIP_LOG` when set: `.ci/run` lists and
/// counts those lines, whatever runner captured the output.
pub fn skip(test: &str, what: &str, why: &str) {
    assert!(
        !required(),
        "{test}: {what} is required here (CI or IMAGE_MAKER_REQUIRE_ENGINES is set) but {why}"
    );
    let line = format!("skipped: {test}: {what}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os("IMAGE_MAKER_SKIP_LOG").filter(|v| !v.is_empty()) {
        // One write to a file opened for appending: lines from concurrent tests stay whole.
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot append to the skip log {log:?}: {e}"));
    }
}
