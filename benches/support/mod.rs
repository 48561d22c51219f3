//! What every benchmark reads from the environment, and how it sums up its rounds.

use std::time::Duration;

use image_maker::units::human_size;
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
        let rounds = std::env::var("IMAGE_MAKER_BENCH_ROUNDS").map_or(Ok(rounds), |r| r.parse())?;
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

pub fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
