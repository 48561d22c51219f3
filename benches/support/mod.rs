//! What every benchmark reads from the environment, and how it sums up its rounds.

use std::time::Duration;

use image_maker::testing::human_size;
use image_maker::Spec;
use tempfile::TempDir;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `IMAGE_MAKER_BENCH_SPEC`, or `default`.
pub fn spec_list(default: &str) -> String {
    std::env::var("IMAGE_MAKER_BENCH_SPEC").unwrap_or_else(|_| default.into())
}

/// A benchmark's spec, its number of rounds, and a fresh directory to work in.
pub struct Settings {
    pub list: String,
    pub spec: Spec,
    pub rounds: usize,
    pub work: TempDir,
}

impl Settings {
    /// `IMAGE_MAKER_BENCH_SPEC` and `IMAGE_MAKER_BENCH_ROUNDS` override the defaults; the
    /// directory goes under `IMAGE_MAKER_BENCH_DIR` (the system temp dir).
    pub fn from_env(name: &str, spec: &str, rounds: usize) -> Result<Self> {
        let list = spec_list(spec);
        let rounds = parse_rounds(
            std::env::var("IMAGE_MAKER_BENCH_ROUNDS").ok().as_deref(),
            rounds,
        )?;
        let spec = Spec::parse(&list)?;
        let parent =
            std::env::var_os("IMAGE_MAKER_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
        let work = tempfile::Builder::new()
            .prefix(&format!("image-maker-bench-{name}"))
            .tempdir_in(parent)?;
        println!(
            "spec {list} ({}), {rounds} rounds, in {}",
            human_size(spec.total_size()),
            work.path().display()
        );
        Ok(Self {
            list,
            spec,
            rounds,
            work,
        })
    }
}

/// Settings a benchmark refuses. Its `Debug` is the message alone, as `main` prints it
/// after `Error: `.
pub struct SettingsError(String);

impl std::fmt::Debug for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

/// `IMAGE_MAKER_BENCH_ROUNDS` (`value`), or `default`: a whole number of at least one round,
/// since a median of nothing is no figure.
pub fn parse_rounds(
    value: Option<&str>,
    default: usize,
) -> std::result::Result<usize, SettingsError> {
    let rounds = match value {
        None => default,
        Some(text) => text.trim().parse().map_err(|e| {
            SettingsError(format!(
                "IMAGE_MAKER_BENCH_ROUNDS `{text}` is not a number of rounds: {e}"
            ))
        })?,
    };
    if rounds == 0 {
        return Err(SettingsError(
            "IMAGE_MAKER_BENCH_ROUNDS is 0: a benchmark needs at least one round".into(),
        ));
    }
    Ok(rounds)
}

/// The median of `times`, which holds at least one (as [`parse_rounds`] ensures).
pub fn median(mut times: Vec<Duration>) -> Duration {
    assert!(!times.is_empty(), "a median of no rounds");
    times.sort();
    times[times.len() / 2]
}
