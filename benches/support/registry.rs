//! Debian's `docker-registry` for the benchmarks that compare with it. Included on its own
//! (`#[path]`), only by those benchmarks.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The same as `support::Result`.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Debian's `docker-registry` on a free loopback port, storing in a new directory under
/// `dir`, removed when dropped.
pub struct Registry {
    child: Child,
    pub host: String,
    storage: tempfile::TempDir,
}

impl Registry {
    pub fn start(dir: &Path) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let storage = tempfile::Builder::new()
            .prefix("registry")
            .tempdir_in(dir)?;
        let config = storage.path().join("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.path().join("data").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let registry = Self {
            child,
            host: format!("127.0.0.1:{port}"),
            storage,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("the registry did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Freed before the next timed run, as the build benchmark does after deletions.
        let _ = fs::remove_dir_all(self.storage.path());
        nix::unistd::sync();
    }
}
