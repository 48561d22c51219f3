//! A real registry for tests: Debian's `docker-registry` (CNCF distribution), one per test
//! on a loopback port of its own; killed when dropped.

use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// How many ports a registry tries before giving up.
pub const PORT_ATTEMPTS: u32 = 20;

/// A registry process with its own config, storage and log; killed when dropped.
pub struct Registry {
    pub program: Tool,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Sent back in a header of every answer: tells this registry from another on the port.
    pub id: String,
    pub child: Option<Child>,
}

impl Registry {
    /// `None` (the test is skipped) when `docker-registry` is not installed.
    pub fn start() -> Option<Self> {
        Self::start_with(None, None)
    }

    /// A registry that wants HTTP basic auth for `user` / `password` (htpasswd, bcrypt).
    pub fn with_basic_auth(user: &str, password: &str) -> Option<Self> {
        Self::start_with(Some((user, password)), None)
    }

    /// `first_port`: the port to try first, instead of a random one.
    pub fn start_with(auth: Option<(&str, &str)>, first_port: Option<u16>) -> Option<Self> {
        let program = tool("docker-registry")?;
        let dir = tempdir();
        let mut auth_config = String::new();
        if let Some((user, password)) = auth {
            let hash = bcrypt::hash_with_result(password, 4)
                .expect("bcrypt")
                .format_for_version(bcrypt::Version::TwoA);
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
            auth_config = format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let mut registry = Self {
            program,
            dir,
            port: 0,
            id: unique(),
            child: None,
        };
        // A port is tried, not reserved beforehand (a port freed for the registry can be taken
        // by anything before it binds): on a conflict, the next one.
        for attempt in 0..PORT_ATTEMPTS {
            registry.port = match first_port {
                Some(port) if attempt == 0 => port,
                _ => candidate_port(),
            };
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{}\n  headers:\n    X-Image-Maker-Test: [{}]\n\
                 {auth_config}",
                registry.dir.path().join("data").display(),
                registry.port,
                registry.id,
            );
            fs::write(registry.dir.path().join("config.yml"), config).expect("write config");
            match registry.run() {
                Started::Answering => return Some(registry),
                Started::PortTaken if attempt + 1 < PORT_ATTEMPTS => {}
                Started::PortTaken => panic!(
                    "{PORT_ATTEMPTS} ports were taken; the last log:\n{}",
                    registry.log()
                ),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Starts the process (again, on the same port), appending to the same log, and waits
    /// until it answers `/v2/` or exits because its port is taken. Any other exit, or no
    /// answer within 20 s, fails the test.
    pub fn run(&mut self) -> Started {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open log");
        let logged = log.metadata().map_or(0, |m| m.len());
        let child = self
            .program
            .cmd()
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"));
            if let Some(status) = exited {
                self.child = None;
                let log = self.log();
                let this_run = log
                    .get(usize::try_from(logged).unwrap_or(0)..)
                    .unwrap_or("");
                if this_run.contains("address already in use") {
                    return Started::PortTaken;
                }
                panic!("the registry exited ({status}); log:\n{log}");
            }
            if self.answers() {
                return Started::Answering;
            }
            assert!(
                Instant::now() < deadline,
                "the registry did not answer within 20 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether this registry (not another process on its port) answers `/v2/`.
    pub fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut reply = String::new();
        stream
            .write_all(b"GET /v2/ HTTP/1.0\r\n\r\n")
            .and_then(|()| stream.read_to_string(&mut reply))
            .is_ok()
            && (reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.0 401"))
            && reply
                .lines()
                .any(|l| l.eq_ignore_ascii_case(&format!("X-Image-Maker-Test: {}", self.id)))
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Access-log lines of requests that send blob data to `repo`: starting, continuing or
    /// finishing an upload (a mount is a POST with `?mount=`, counted by `mounts`).
    pub fn uploads(&self, repo: &str) -> usize {
        let prefix = format!("/v2/{repo}/blobs/uploads/");
        self.log()
            .lines()
            .filter(|l| {
                ["\"POST ", "\"PATCH ", "\"PUT "]
                    .iter()
                    .any(|m| l.contains(&format!("{m}{prefix}")))
                    && !l.contains("mount=")
            })
            .count()
    }

    pub fn mounts(&self, repo: &str) -> usize {
        let prefix = format!("\"POST /v2/{repo}/blobs/uploads/?");
        self.log()
            .lines()
            .filter(|l| l.contains(&prefix) && l.contains("mount=") && l.contains("\" 201 "))
            .count()
    }

    pub fn patches(&self, repo: &str) -> usize {
        let prefix = format!("\"PATCH /v2/{repo}/blobs/uploads/");
        self.log().lines().filter(|l| l.contains(&prefix)).count()
    }

    pub fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            send(child.id(), signal);
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a registry's start ended.
pub enum Started {
    Answering,
    PortTaken,
}

/// A port below the range Linux hands out for outgoing connections (32768–60999), picked at
/// random: concurrent tests and runs rarely pick the same one, and a conflict is retried.
pub fn candidate_port() -> u16 {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    20_000 + u16::try_from(random % 12_000).expect("below 12000")
}
