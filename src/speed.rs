//! One `hint:` line when this build of the library generates data unoptimised.
//!
//! A crate's tests build in cargo's dev profile, where its dependencies are compiled at
//! opt-level 0: a 256 MiB fixture then takes 24 s of CPU instead of 0.3 s, as ChaCha8 and
//! SHA-256 run some 70 times slower. Nothing at compile time says so from here:
//! `cfg!(debug_assertions)` is about assertions, and the opt-level that matters is the one
//! each dependency was compiled with, which the user's profile sets package by package. So
//! the speed is measured: generating and hashing a small buffer, the build's own inner loop.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::content::FileContent;
use crate::digest::HashingWriter;
use crate::progress::LogLevel;

/// Builds this large are worth a word about speed; smaller ones stay well under a second
/// even unoptimised.
const WORTH_A_HINT: u64 = 16 << 20;

/// Bytes generated and hashed by the probe.
const PROBE: usize = 256 << 10;

/// Measured on 2 cores with SHA-NI, the probe takes 0.3 ms when image-maker, sha2,
/// rand_chacha and rand_core are optimised; 3 ms with image-maker alone at opt-level 0 (a
/// 256 MiB fixture then takes 10 times as long), 8 to 12 ms with sha2 or rand_chacha at
/// opt-level 0, and 25 to 60 ms in a plain dev profile. The threshold sits 5 times above the
/// optimised figure, so that a CPU without SHA instructions (software SHA-256 at ~400 MB/s:
/// about 1 ms, estimated) is not taken for an unoptimised build, and twice below the mildest
/// unoptimised one.
const SLOW: Duration = Duration::from_micros(1500);

/// Before generating `bytes` of layer data: prints the hint once per process when
/// generation is unoptimised. The probe runs at most once per process too: in an optimised
/// build it costs one run, 0.3 ms, before a build that takes 15 ms or more.
pub(crate) fn check(bytes: u64) {
    static ONCE: Once = Once::new();
    if bytes <= WORTH_A_HINT || SILENT.load(Ordering::Relaxed) {
        return;
    }
    ONCE.call_once(|| {
        if let Some(rate) = unoptimised() {
            crate::progress::log(LogLevel::Hint, &hint(rate));
        }
    });
}

static SILENT: AtomicBool = AtomicBool::new(false);

/// No hint in this process: the command line's `--quiet`.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn silence() {
    SILENT.store(true, Ordering::Relaxed);
}

/// The probe's rate in MiB/s when it is slow every time; a fast run ends the probe (a run
/// that a busy machine preempted is not taken for a slow build).
fn unoptimised() -> Option<u64> {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        best = best.min(probe());
        if best < SLOW {
            return None;
        }
    }
    let secs = best.as_secs_f64().max(1e-9);
    Some((PROBE as f64 / secs / f64::from(1 << 20)) as u64)
}

/// Generates and hashes `PROBE` bytes with the build's own code, in 64 KiB pieces.
fn probe() -> Duration {
    let mut buf = vec![0; 64 << 10];
    let start = Instant::now();
    let mut content = FileContent::new(&[0; 32], 1, 0, PROBE as u64);
    let mut hashing = HashingWriter::new(std::io::sink());
    loop {
        let n = content.fill(&mut buf);
        if n == 0 {
            break;
        }
        let _ = hashing.write_all(&buf[..n]);
    }
    std::hint::black_box(hashing.complete());
    start.elapsed()
}

fn hint(rate: u64) -> String {
    format!(
        "image-maker generates test data unoptimised here ({rate} MiB/s, about 800 \
         optimised): set `opt-level = 3` for oci-image-maker, sha2, rand_chacha and rand_core in \
         the dev profile of your Cargo.toml, e.g. `[profile.dev.package.sha2] opt-level = 3` \
         (image-maker's README, \"Test fixtures\")"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_says_what_to_add() {
        let text = hint(20);
        assert!(text.starts_with("image-maker generates"), "{text}");
        for package in ["oci-image-maker", "sha2", "rand_chacha", "rand_core"] {
            assert!(text.contains(package), "{text}");
        }
        assert!(!text.contains('\n'));
    }
}
