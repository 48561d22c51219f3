//! Finding a container engine whose CLI exists and whose daemon or service answers.
//!
//! Engines run through their own CLIs, so `DOCKER_HOST`, `docker context` and podman's
//! configuration apply exactly as they do in the user's shell.

use std::fmt;

/// A container engine image-maker can load images into or build them with, driven through
/// its command of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// Docker Engine (`dockerd`), through `docker`.
    Docker,
    /// Podman, daemonless or through its service.
    Podman,
    /// Finch: containerd in a VM, the usual engine on macOS.
    Finch,
    /// nerdctl, talking to containerd.
    Nerdctl,
    /// buildah, daemonless; it builds but cannot `load`.
    Buildah,
}

impl EngineKind {
    /// Every supported engine.
    pub const ALL: [EngineKind; 5] = [
        EngineKind::Docker,
        EngineKind::Podman,
        EngineKind::Finch,
        EngineKind::Nerdctl,
        EngineKind::Buildah,
    ];

    /// The engine's command, which is also its `--engine` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Podman => "podman",
            Self::Finch => "finch",
            Self::Nerdctl => "nerdctl",
            Self::Buildah => "buildah",
        }
    }

    /// Whether `<engine> load` takes a docker-archive on stdin. buildah has no `load`: it
    /// reads archives only from a path (`buildah pull docker-archive:FILE`).
    pub fn can_load(self) -> bool {
        self != Self::Buildah
    }

    /// Engines tried for `--output engine` when none is named: finch first on macOS, where
    /// it is the usual engine, then docker and podman.
    pub fn load_order() -> Vec<EngineKind> {
        let mut order = Vec::new();
        if cfg!(target_os = "macos") {
            order.push(Self::Finch);
        }
        order.extend([Self::Docker, Self::Podman]);
        order
    }

    /// Engines tried by the dockerfile builder when none is named: as for loading, then
    /// nerdctl and the daemonless buildah.
    pub fn build_order() -> Vec<EngineKind> {
        let mut order = Self::load_order();
        order.extend([Self::Nerdctl, Self::Buildah]);
        order
    }

    /// Arguments of a cheap command that fails unless the engine can take work.
    #[cfg(feature = "engine")]
    fn probe_args(self) -> &'static [&'static str] {
        match self {
            Self::Docker => &["version", "--format", "{{.Server.Version}}"],
            Self::Podman => &["info", "--format", "{{.Host.Arch}}"],
            // Both talk to containerd (finch inside its VM); `info` fails when it is down.
            Self::Finch | Self::Nerdctl => &["info", "--format", "{{.ServerVersion}}"],
            // Daemonless: `info` fails when its storage cannot be opened.
            Self::Buildah => &["info"],
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An `--engine` value that names no supported engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine `{0}`")]
pub struct UnknownEngine(pub String);

impl std::str::FromStr for EngineKind {
    type Err = UnknownEngine;
    fn from_str(s: &str) -> Result<Self, UnknownEngine> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownEngine(s.to_owned()))
    }
}

#[cfg(feature = "engine")]
pub(crate) use running::last_line;
#[cfg(feature = "engine")]
pub use running::{detect, detect_builder, Engine};

/// Finding and running an engine's CLI.
#[cfg(feature = "engine")]
mod running {
    use std::ffi::OsString;
    use std::path::{Path, PathBuf};

    use super::EngineKind;
    use crate::Error;

    /// An engine that answered.
    #[derive(Debug, Clone)]
    pub struct Engine {
        /// Which engine it is.
        pub kind: EngineKind,
        /// The engine's command as found on `PATH`.
        pub program: PathBuf,
    }

    impl Engine {
        /// A `duct` expression running the engine's CLI with `args`.
        pub fn cmd<I, S>(&self, args: I) -> duct::Expression
        where
            I: IntoIterator<Item = S>,
            S: Into<OsString>,
        {
            duct::cmd(&self.program, args)
        }

        /// Runs the engine's CLI with `args` and returns what it printed on stdout; when it
        /// fails, the error names `command` and the engine's own last line of stderr.
        pub(crate) fn stdout<S: AsRef<str>>(
            &self,
            args: &[S],
            command: String,
        ) -> Result<Vec<u8>, Error> {
            let out = self
                .cmd(args.iter().map(|a| a.as_ref().to_owned()))
                .stdin_null()
                .stdout_capture()
                .stderr_capture()
                .unchecked()
                .run()
                .map_err(Error::io("run", &self.program))?;
            if !out.status.success() {
                return Err(Error::EngineFailed {
                    command,
                    detail: last_line(&out.stderr),
                });
            }
            Ok(out.stdout)
        }
    }

    impl Engine {
        /// The platform the engine runs images of: what it would pull from an index.
        pub(crate) fn platform(&self) -> Result<crate::Platform, Error> {
            // docker, nerdctl and finch print the daemon's; podman's client is its engine.
            let format = match self.kind {
                EngineKind::Podman | EngineKind::Buildah => "{{.Client.OsArch}}",
                _ => "{{.Server.Os}}/{{.Server.Arch}}",
            };
            let command = format!("{} version --format {format}", self.kind);
            let out = self.stdout(&["version", "--format", format], command.clone())?;
            let text = String::from_utf8_lossy(&out).trim().to_owned();
            crate::Platform::parse(&text).map_err(|e| Error::EngineFailed {
                command,
                detail: e.to_string(),
            })
        }
    }

    /// The engine to `load` an image into: `preferred`, or the first engine in the platform's
    /// order that answers.
    pub fn detect(preferred: Option<EngineKind>) -> Result<Engine, Error> {
        if let Some(kind) = preferred.filter(|k| !k.can_load()) {
            return Err(Error::CannotLoad {
                engine: kind.name(),
            });
        }
        detect_in(preferred, &EngineKind::load_order())
    }

    /// The engine to run `build` with: `preferred`, or the first in the platform's order that
    /// answers.
    pub fn detect_builder(preferred: Option<EngineKind>) -> Result<Engine, Error> {
        detect_in(preferred, &EngineKind::build_order())
    }

    fn detect_in(preferred: Option<EngineKind>, order: &[EngineKind]) -> Result<Engine, Error> {
        if let Some(kind) = preferred {
            return probe(kind);
        }
        let mut tried = Vec::new();
        for &kind in order {
            match probe(kind) {
                Ok(engine) => return Ok(engine),
                Err(Error::EngineMissing { .. }) => tried.push(format!("{kind}: not installed")),
                Err(Error::EngineUnreachable { detail, .. }) => {
                    tried.push(format!("{kind}: {detail}"))
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::NoEngine {
            tried: tried.join("; "),
        })
    }

    fn probe(kind: EngineKind) -> Result<Engine, Error> {
        let program = find_on_path(kind.name()).ok_or(Error::EngineMissing {
            engine: kind.name(),
        })?;
        let out = duct::cmd(&program, kind.probe_args())
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .map_err(|e| Error::EngineUnreachable {
                engine: kind.name(),
                detail: e.to_string(),
            })?;
        if out.status.success() {
            Ok(Engine { kind, program })
        } else {
            Err(Error::EngineUnreachable {
                engine: kind.name(),
                detail: last_line(&out.stderr),
            })
        }
    }

    /// The last non-empty line of an engine's output: where CLIs put the actual error.
    pub(crate) fn last_line(output: &[u8]) -> String {
        String::from_utf8_lossy(output)
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no output")
            .to_owned()
    }

    fn find_on_path(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    }

    fn is_executable(path: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
}
