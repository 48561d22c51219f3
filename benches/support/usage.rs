//! Wall time, CPU time and peak RSS of one command, measured in a child of the benchmark
//! that runs that command alone: `RUSAGE_CHILDREN` in the benchmark itself would mix every
//! command run so far. A benchmark that uses it calls [`report_if_asked`] first in `main`.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};

/// The same as `support::Result`: this module is included on its own (`#[path]`), only
/// by the benchmarks that measure usage.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Set in the child that runs one measured command, to the file that gets its usage.
const REPORT: &str = "IMAGE_MAKER_BENCH_RUSAGE";

/// What one command cost.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_rss_kib: u64,
}

/// In the child [`measured`] starts: runs the command and reports its usage, then
/// `Some(result)` for `main` to return; `None` in the benchmark itself.
pub fn report_if_asked() -> Option<Result<()>> {
    std::env::var_os(REPORT).map(|report| report_usage(Path::new(&report)))
}

/// Runs `program` with `args` in a child of this benchmark that reports its usage alone
/// (written to a file in `dir`); `stdout`, when given, receives its output. The child
/// costs a fork and an exec, a few milliseconds on either side of every pair.
pub fn measured(
    dir: &Path,
    program: &OsStr,
    args: &[OsString],
    stdout: Option<&Path>,
) -> Result<Usage> {
    let report = dir.join("rusage");
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg(program).args(args).env(REPORT, &report);
    if let Some(path) = stdout {
        cmd.stdout(File::create(path)?);
    }
    let start = Instant::now();
    let status = cmd.status()?;
    let wall = start.elapsed();
    if !status.success() {
        return Err(format!("{} {args:?} failed: {status}", program.to_string_lossy()).into());
    }
    let text = fs::read_to_string(&report)?;
    fs::remove_file(&report)?;
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let mut next = || -> Result<u64> { Ok(fields.next().ok_or("a short usage report")??) };
    let (peak_rss_kib, cpu_us) = (next()?, next()?);
    Ok(Usage {
        wall,
        cpu: Duration::from_micros(cpu_us),
        peak_rss_kib,
    })
}

/// The child of [`measured`]: runs the command its arguments name and writes the peak RSS
/// (KiB) and CPU time (µs) of that command, its only child, to `report`.
fn report_usage(report: &Path) -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let program = args.next().ok_or("no command to measure")?;
    let status = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("{} failed: {status}", program.to_string_lossy()).into());
    }
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    fs::write(
        report,
        format!(
            "{} {}\n",
            usage.max_rss(),
            micros(usage.user_time()) + micros(usage.system_time())
        ),
    )?;
    Ok(())
}
