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
