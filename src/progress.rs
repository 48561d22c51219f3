//! Status on stderr: stage lines, and a byte progress bar when stderr is a terminal.

use std::io::{IsTerminal, Write};

#[cfg(feature = "cli")]
use indicatif::ProgressBar;

/// Without the `cli` feature there are no bars: a library user sees stage lines only.
#[cfg(not(feature = "cli"))]
#[derive(Debug, Clone)]
enum ProgressBar {}

#[cfg(not(feature = "cli"))]
impl ProgressBar {
    fn println(&self, _: &str) {
        match *self {}
    }
    fn inc(&self, _: u64) {
        match *self {}
    }
    fn finish_and_clear(&self) {
        match *self {}
    }
}

/// How much to tell the user. Library calls default to silence.
#[derive(Debug, Default)]
pub struct Progress {
    verbose: bool,
    bar: Option<ProgressBar>,
    bars_enabled: bool,
}

impl Progress {
    /// Prints nothing.
    pub fn hidden() -> Self {
        Self::default()
    }

    /// Stage lines on stderr, and a progress bar when stderr is a terminal.
    pub fn stderr() -> Self {
        Self {
            verbose: true,
            bar: None,
            bars_enabled: std::io::stderr().is_terminal(),
        }
    }

    /// A stage line, printed above the bar when one is showing.
    pub fn stage(&self, message: impl AsRef<str>) {
        if !self.verbose {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(message.as_ref()),
            // A closed terminal must not turn a status line into a panic.
            None => {
                let _ = writeln!(std::io::stderr(), "{}", message.as_ref());
            }
        }
    }

    /// Starts counting `total` bytes.
    pub fn start(&mut self, total: u64) {
        if !self.bars_enabled {
            return;
        }
        #[cfg(feature = "cli")]
        {
            use indicatif::{ProgressDrawTarget, ProgressStyle};
            let style = ProgressStyle::with_template(
                "{bar:40} {bytes:>10}/{total_bytes} {bytes_per_sec:>12} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("█▉▊▋▌▍▎▏ ");
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(style);
            self.bar = Some(bar);
        }
        #[cfg(not(feature = "cli"))]
        let _ = total;
    }

    /// Counts `bytes` more on the bar, if one is showing.
    pub fn inc(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// A handle that counts bytes on the current bar from code that cannot hold `&Progress`
    /// (a request body streaming inside the HTTP client).
    pub fn counter(&self) -> Counter {
        Counter(self.bar.clone())
    }

    /// Whether stage lines are printed.
    pub fn is_verbose(&self) -> bool {
        self.verbose
    }

    /// Clears the bar, if one is showing; stage lines then go straight to stderr again.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Counts bytes on a progress bar, or nothing when there is none.
#[derive(Debug, Clone, Default)]
pub struct Counter(Option<ProgressBar>);

impl Counter {
    /// Counts `bytes` more on the bar, if there is one.
    pub fn inc(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }
}

/// What kind of line the library reports outside any [`Progress`]: serve's access log and
/// stream checks, a cache warning, the hint that data generation runs unoptimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogLevel {
    /// Something failed: printed as `error: …`.
    Error,
    /// Something was worked around: `warning: …`.
    Warning,
    /// Advice: `hint: …`.
    Hint,
    /// A plain line: an access log line, a path kept as asked.
    Note,
}

type Hook = std::sync::Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

static HOOK: std::sync::RwLock<Option<Hook>> = std::sync::RwLock::new(None);

/// Sends the library's log lines to `hook` instead of stderr, for the rest of the process
/// (or until it is set again): a test harness or service can put them in its own log.
///
/// ```
/// image_maker::set_log_hook(|level, line| println!("image-maker {level:?}: {line}"));
/// ```
pub fn set_log_hook(hook: impl Fn(LogLevel, &str) + Send + Sync + 'static) {
    *HOOK.write().unwrap_or_else(|e| e.into_inner()) = Some(std::sync::Arc::new(hook));
}

/// The one way the library tells something outside a [`Progress`]: through the hook, or
/// by default as one line on the process's stderr. Not `eprintln!`: a test harness
/// captures that for a passing test, and these lines are meant to be seen; one write per
/// line keeps concurrent lines whole.
pub(crate) fn log(level: LogLevel, line: &str) {
    let hook = HOOK.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(hook) = hook {
        return hook(level, line);
    }
    let prefix = match level {
        LogLevel::Error => "error: ",
        LogLevel::Warning => "warning: ",
        LogLevel::Hint => "hint: ",
        LogLevel::Note => "",
    };
    let _ = std::io::stderr().write_all(format!("{prefix}{line}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_reach_the_hook_once_one_is_set() {
        static SEEN: std::sync::Mutex<Vec<(LogLevel, String)>> = std::sync::Mutex::new(Vec::new());
        set_log_hook(|level, line| {
            if line.starts_with("hook test") {
                SEEN.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((level, line.to_owned()));
            }
        });
        log(LogLevel::Warning, "hook test: a warning");
        log(LogLevel::Note, "hook test: a note");
        assert_eq!(
            *SEEN.lock().unwrap_or_else(|e| e.into_inner()),
            [
                (LogLevel::Warning, "hook test: a warning".to_owned()),
                (LogLevel::Note, "hook test: a note".to_owned())
            ]
        );
    }
}
