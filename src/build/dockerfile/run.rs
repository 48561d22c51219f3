//! Running an engine command (`build`, `save`) that may take minutes: its output on stderr
//! with `-v`, otherwise kept and its end shown on failure; a signal stops it.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::{interrupt, Error};

/// How many of the engine's last lines a failure shows.
const TAIL_LINES: usize = 20;
/// How often the wait checks for a signal.
const POLL: Duration = Duration::from_millis(50);
/// How long a signalled engine gets to clean up (podman and buildah remove their working
/// containers) before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// Runs `engine args…`; `what` names the command in errors, e.g. `docker build`.
pub(crate) fn run(
    engine: &Engine,
    what: &str,
    args: Vec<OsString>,
    verbose: bool,
) -> Result<(), Error> {
    let expression = engine.cmd(args).stdin_null().unchecked();
    // stdout is for `--json` alone: the engine's chatter goes to stderr or into the tail.
    let expression = if verbose {
        expression.stdout_to_stderr()
    } else {
        expression.stderr_to_stdout().stdout_capture()
    };
    let handle = expression
        .start()
        .map_err(Error::io("run", &engine.program))?;
    let output = loop {
        if let Some(output) = handle
            .try_wait()
            .map_err(Error::io("wait for", &engine.program))?
        {
            break output;
        }
        if let Err(interrupted) = interrupt::check() {
            stop(&handle);
            return Err(interrupted);
        }
        std::thread::sleep(POLL);
    };
    if output.status.success() {
        return Ok(());
    }
    Err(Error::EngineBuildFailed {
        command: what.to_owned(),
        status: output.status.to_string(),
        tail: if verbose {
            "  (its output is above)".to_owned()
        } else {
            tail(&output.stdout)
        },
    })
}

/// Passes the signal on as SIGTERM, so the engine can cancel its build and clean up; kills
/// it when it does not end in time. (A terminal's Ctrl-C has reached it already.)
fn stop(handle: &duct::Handle) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for pid in handle.pids() {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        if matches!(handle.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        std::thread::sleep(POLL);
    }
    let _ = handle.kill();
}

/// The last non-empty lines of `output`, indented under the error line.
fn tail(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return "  (no output)".to_owned();
    }
    lines[lines.len().saturating_sub(TAIL_LINES)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let many: String = (1..=30).map(|i| format!("line {i}\n\n")).collect();
        let tail = tail(many.as_bytes());
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(tail.starts_with("  line 11\n"), "{tail}");
        assert!(tail.ends_with("  line 30"), "{tail}");
        assert_eq!(super::tail(b""), "  (no output)");
    }
}
