//! The server under attack: `image-maker serve` on a loopback port the system picks, with a
//! cache of its own, and what /proc says about it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The server runs under `sh`, which holds our end of a pipe on its stdin and kills the
/// server once that closes: when this process ends in any way, a SIGKILL included, nothing
/// is left listening. The server gets a file limit of its own (`$1`), the one a service
/// would start with, since this process raised its own for the attack's sockets.
const WRAPPER: &str = r#"ulimit -S -n "$1" || exit 1
shift
"$@" >&2 &
echo $!
read _
kill -9 $! 2>/dev/null
wait"#;

pub struct Server {
    wrapper: Child,
    stdin: Option<ChildStdin>,
    pub pid: i32,
    pub addr: SocketAddr,
    /// Its first line: `serving on http://…`.
    pub start_line: String,
}

impl Server {
    pub fn start(bin: &Path, cache: &Path, log: &Path, nofile: u64) -> Result<Self> {
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("sh")
            .arg(nofile.to_string())
            .arg(bin)
            .args(["serve", "-q", "--addr", "127.0.0.1:0"])
            .env("IMAGE_MAKER_CACHE_DIR", cache)
            .env_remove("IMAGE_MAKER_THREADS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            // Not in our process group: Ctrl-C is ours to handle, the server is killed
            // when we are done.
            .process_group(0)
            .spawn()
            .context("starting sh for the server")?;
        let stdin = wrapper.stdin.take();
        let mut line = String::new();
        if let Some(out) = wrapper.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let mut server = Self {
            wrapper,
            stdin,
            pid: 0,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            start_line: String::new(),
        };
        server.pid = match line.trim().parse() {
            Ok(pid) => pid,
            Err(_) => bail!(
                "the server did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default().trim()
            ),
        };
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(first) = text.lines().find(|l| l.contains("://")) {
                server.start_line = first.trim().to_owned();
                let addr = first
                    .split("://")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .with_context(|| format!("no address in `{first}`"))?;
                server.addr = addr
                    .parse()
                    .with_context(|| format!("the address `{addr}` in `{first}`"))?;
                return Ok(server);
            }
            if server.wrapper.try_wait()?.is_some() || !alive(server.pid) {
                bail!("the server exited at start: {}", text.trim());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("no start line from the server in 60 s: {}", text.trim());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (through its wrapper) and waits for both.
    pub fn kill(&mut self) {
        drop(self.stdin.take());
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(5) {
            if matches!(self.wrapper.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The wrapper did not end: kill both ourselves (the server is the wrapper's child,
        // so its pid is not yet reused).
        if self.pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// One look at the server in /proc.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    /// User and system CPU, in clock ticks (100 a second on Linux).
    pub ticks: u64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
}

pub const TICKS: f64 = 100.0;

pub fn sample(pid: i32) -> Option<Sample> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name: the state is the first field, utime and stime the 12th and
    // 13th.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Some(Sample {
        at,
        ticks,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
    })
}
