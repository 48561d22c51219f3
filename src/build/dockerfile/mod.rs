//! The dockerfile builder: the layer files and a Dockerfile go into a fresh build directory,
//! `<engine> build` makes the image, and the directory is removed again — after success,
//! failure or a signal alike (`--keep` keeps it).
//!
//! The image lands in the engine; `oci:` and `oci-archive:` outputs are written from
//! `<engine> save`, so they hold the engine's own layer tars and config.

mod context;
pub(crate) mod inspect;
mod run;
mod save;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::staging;
use crate::engine::{self, Engine, EngineKind};
use crate::image::LayerInfo;
use crate::layer::TarOptions;
use crate::plan;
use crate::progress::Progress;
use crate::request::{BuildRequest, Built, Output};
use crate::sink;
use crate::spec::Spec;
use crate::units::human_size;
use crate::Error;

pub use context::text as dockerfile_text;

/// Builds `request` with a container engine from a generated Dockerfile.
pub fn build(request: &BuildRequest, progress: &mut Progress) -> Result<Built, Error> {
    let engines = request
        .outputs
        .iter()
        .filter(|o| **o == Output::Engine)
        .count();
    if engines > 1 {
        return Err(Error::DuplicateOutput(Output::Engine.to_string()));
    }
    let mut files: Vec<Output> = request
        .outputs
        .iter()
        .filter(|o| **o != Output::Engine && **o != Output::Registry)
        .cloned()
        .collect();
    // A push reads an OCI layout: the saved image is staged as one, then pushed.
    let staging = staging::staging(&request.outputs)?;
    if let Some(dir) = &staging {
        files.push(Output::OciDir(staging::layout(dir)));
    }
    // Checked before any data is written: the engine answers, the outputs can be placed.
    let engine = engine::detect_builder(request.engine)?;
    let sinks = sink::open(
        &files,
        None,
        TarOptions {
            mtime: request.mtime,
        },
    )?;
    let dir = BuildDir::create(request.build_dir.as_deref(), request.keep)?;
    let keep_in_engine = engines == 1 || files.is_empty();
    let built = build_in(
        request,
        &engine,
        sinks,
        keep_in_engine,
        dir.path(),
        progress,
    );
    dir.finish(progress);
    let mut built = built?;
    if let Some(staging) = staging {
        let layout = staging::layout(&staging);
        built.pushed = Some(staging::push(&layout, request, progress)?);
    }
    Ok(built)
}

fn build_in(
    request: &BuildRequest,
    engine: &Engine,
    sinks: Vec<Box<dyn sink::Sink>>,
    keep_in_engine: bool,
    dir: &Path,
    progress: &mut Progress,
) -> Result<Built, Error> {
    let spec = &request.spec;
    let layers = plan::layers(spec);
    progress.stage(format!(
        "writing the build context of {} ({} layer{}, {}) to {}",
        request.reference,
        layers.len(),
        if layers.len() == 1 { "" } else { "s" },
        human_size(spec.total_size()),
        dir.display()
    ));
    context::write(spec, dir, progress)?;

    let reference = request.reference.to_string();
    let args: Vec<OsString> =
        build_args(engine.kind, &request.platform.to_string(), &reference, dir);
    let command = format!("{} {}", engine.kind, args[0].to_string_lossy());
    progress.stage(format!(
        "building {reference} for {} with `{}`",
        request.platform,
        shown(engine, &args)
    ));
    run::run(engine, &command, args, request.verbose)?;
    // From here on the image exists: unless the engine is an output, it goes again.
    let mut image = EngineImage {
        engine,
        reference: &reference,
        remove: !keep_in_engine,
    };
    let inspected = inspect::inspect(engine, &reference)?;
    let wanted = request.platform.to_string();
    if inspected.platform != wanted {
        // A tag on an image for the wrong platform is worse than none.
        image.remove = true;
        drop(image);
        return Err(Error::WrongPlatform {
            engine: engine.kind.name(),
            built: inspected.platform,
            wanted,
        });
    }
    progress.stage(format!(
        "built {reference} in {}: {}",
        engine.kind, inspected.id
    ));
    let payloads: Vec<(u64, u64)> = layers.iter().map(|l| (l.spec.files, l.spec.size)).collect();
    let mut built = Built {
        reference: reference.clone(),
        spec: spec.canonical(),
        digest: String::new(),
        config_digest: inspected.id.clone(),
        platform: request.platform.to_string(),
        layers: inspected
            .diff_ids
            .iter()
            .zip(payloads.iter().chain(std::iter::repeat(&(0, 0))))
            .map(|(diff_id, &(files, payload))| LayerInfo {
                digest: diff_id.clone(),
                size: 0,
                diff_id: diff_id.clone(),
                files,
                payload,
            })
            .collect(),
        outputs: request.outputs.iter().map(ToString::to_string).collect(),
        pushed: None,
    };
    if !sinks.is_empty() {
        progress.stage(format!("saving {reference} from {}", engine.kind));
        let archive = save::save(engine, &request.reference, dir, request.verbose)?;
        let (metadata, infos, committed) = save::export(
            &archive,
            &inspected.diff_ids,
            &request.reference,
            &request.platform,
            &payloads,
            sinks,
            progress,
        )?;
        // The archive is as large as the image: gone before anything else happens.
        let _ = std::fs::remove_file(&archive);
        for done in &committed {
            progress.stage(format!(
                "wrote {reference} {} to {}",
                metadata.manifest_blob.digest, done.description
            ));
        }
        built.digest = metadata.manifest_blob.digest;
        built.config_digest = metadata.config_blob.digest;
        built.layers = infos;
    }
    if keep_in_engine {
        progress.stage(format!("wrote {reference} to {}", engine.kind));
    }
    drop(image);
    Ok(built)
}

/// `<engine> build --platform P -t IMAGE -f DIR/Dockerfile DIR`.
fn build_args(kind: EngineKind, platform: &str, reference: &str, dir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = match kind {
        // buildah squashes a Dockerfile into one layer unless asked for one per instruction.
        EngineKind::Buildah => vec!["bud".into(), "--layers".into()],
        _ => vec!["build".into()],
    };
    // Every run is a real build: podman 4.3 and buildah 1.28 key their layer cache without
    // the platform and hand back a layer built earlier for another one.
    args.push("--no-cache".into());
    args.extend([
        "--platform".into(),
        platform.into(),
        "-t".into(),
        reference.into(),
        "-f".into(),
        dir.join("Dockerfile").into_os_string(),
        dir.as_os_str().to_owned(),
    ]);
    args
}

/// The command as a user could type it (paths here have no spaces to quote).
fn shown(engine: &Engine, args: &[OsString]) -> String {
    std::iter::once(engine.kind.name().to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--emit-context DIR`: the build context in `dir`, which must not exist or be empty.
/// Written beside it under a temporary name and renamed into place when complete.
pub fn emit_context(spec: &Spec, dest: &Path, progress: &mut Progress) -> Result<(), Error> {
    let output = format!("--emit-context {}", dest.display());
    let taken = || Error::DestinationTaken {
        path: dest.to_path_buf(),
        expected: "an empty directory",
    };
    if dest.exists()
        && !std::fs::read_dir(dest)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
    {
        return Err(taken());
    }
    let parent = match dest.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Err(taken()),
    };
    if !parent.is_dir() {
        return Err(Error::MissingParent {
            path: parent.to_path_buf(),
            output,
        });
    }
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}.image-maker-"))
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir_in(parent)
        .map_err(Error::io("create a directory in", parent))?;
    progress.stage(format!(
        "writing the build context ({}) to {}",
        human_size(spec.total_size()),
        dest.display()
    ));
    context::write(spec, temp.path(), progress)?;
    crate::interrupt::check()?;
    // rename(2) replaces an empty directory, and fails on one that filled up meanwhile.
    std::fs::rename(temp.path(), dest).map_err(Error::io("rename into", dest))?;
    // The temporary name is gone; nothing is left for the guard to remove.
    let _ = temp.keep();
    progress.stage(format!(
        "wrote the build context to {}: build it with `docker build --platform linux/amd64 -t IMAGE {}`",
        dest.display(),
        dest.display()
    ));
    Ok(())
}

/// The build directory: removed when done, unless kept.
struct BuildDir {
    dir: TempDir,
    keep: bool,
}

impl BuildDir {
    /// A fresh directory under `parent` (the system temp dir if `None`), readable by its
    /// owner only.
    fn create(parent: Option<&Path>, keep: bool) -> Result<Self, Error> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let dir = tempfile::Builder::new()
            .prefix("image-maker-build-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .map_err(Error::io("create a build directory in", parent))?;
        Ok(Self { dir, keep })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn finish(self, progress: &Progress) {
        if self.keep {
            let path: PathBuf = self.dir.keep();
            // Asked for explicitly, so printed even with `-q`.
            let _ = writeln!(
                std::io::stderr(),
                "kept the build directory {}",
                path.display()
            );
            return;
        }
        let path = self.dir.path().to_path_buf();
        match self.dir.close() {
            Ok(()) => progress.stage(format!("removed the build directory {}", path.display())),
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: cannot remove the build directory {}: {e}",
                    path.display()
                );
            }
        }
    }
}

/// An image the build made but was not asked to keep in the engine (only file outputs):
/// removed when dropped, also when a later step fails.
struct EngineImage<'a> {
    engine: &'a Engine,
    reference: &'a str,
    remove: bool,
}

impl Drop for EngineImage<'_> {
    fn drop(&mut self) {
        if !self.remove {
            return;
        }
        let args: &[&str] = match self.engine.kind {
            EngineKind::Buildah => &["rmi", self.reference],
            _ => &["image", "rm", self.reference],
        };
        let _ = self
            .engine
            .cmd(args)
            .stdin_null()
            .stdout_null()
            .stderr_null()
            .unchecked()
            .run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_commands() {
        let dir = Path::new("/tmp/b");
        let args = |kind| {
            build_args(kind, "linux/amd64", "mock/x:1", dir)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            args(EngineKind::Docker),
            "build --no-cache --platform linux/amd64 -t mock/x:1 -f /tmp/b/Dockerfile /tmp/b"
        );
        assert_eq!(
            args(EngineKind::Buildah),
            "bud --layers --no-cache --platform linux/amd64 -t mock/x:1 -f /tmp/b/Dockerfile /tmp/b"
        );
    }
}
