//! The dockerfile builder: the layer files and a Dockerfile go into a fresh build directory,
//! `<engine> build` makes the image, and the directory is removed again — after success,
//! failure or a signal alike (`--keep` keeps it).
//!
//! The image lands in the engine; `oci:` and `oci-archive:` outputs are written from
//! `<engine> save`, so they hold the engine's own layer tars and config.
//!
//! The Dockerfile labels the image with its cache key ([`KEY_LABEL`]). Before building, the
//! engine is asked for an image with that label: when it has one (built for the platform),
//! that image is tagged and saved instead, and nothing is built (`no_cache` builds anyway).

mod context;
pub(crate) mod inspect;
mod lookup;
mod run;
mod save;

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::staging;
use crate::engine::{self, Engine, EngineKind};
use crate::error::UsageError;
use crate::image::{self, LayerInfo};
use crate::layer::TarOptions;
use crate::plan;
use crate::progress::{log, LogLevel, Progress};
use crate::request::{BuildRequest, Builder, Built, Output};
use crate::sink::{self, Sink};
use crate::units::human_size;
use crate::Error;

use inspect::Inspected;

/// The label that carries the image's cache key ([`key`]), in every Dockerfile this
/// builder writes, `--emit-context` included.
pub const KEY_LABEL: &str = "dev.image-maker.key";

/// The cache key of the image the dockerfile builder makes for `request`: that of
/// the cache key for the dockerfile builder, never the native image's.
pub fn key(request: &BuildRequest) -> String {
    if request.builder == Builder::Dockerfile {
        return crate::request::key(request);
    }
    let mut dockerfile = request.clone();
    dockerfile.builder = Builder::Dockerfile;
    crate::request::key(&dockerfile)
}

/// What this builder cannot make, found before anything runs: compressed layers, an index,
/// the engine given twice.
pub(crate) fn check(request: &BuildRequest) -> Result<(), Error> {
    if request.spec.is_compressed() {
        return Err(UsageError::NativeOnly {
            what: "compressed layers",
            value: request.spec.canonical(),
        }
        .into());
    }
    if let Some(layer) = request.spec.layers().iter().find(|l| l.extra.whiteouts > 0) {
        // A Dockerfile adds files; nothing in it deletes a lower layer's.
        return Err(UsageError::NativeOnly {
            what: "whiteouts",
            value: layer.canonical(),
        }
        .into());
    }
    check_config(request)?;
    if let Some(added) = request.added.first() {
        return Err(UsageError::NativeOnly {
            what: "`--add` layers",
            value: added.describe(),
        }
        .into());
    }
    if request.media_types == crate::MediaTypes::Docker {
        // The engine's `save` gives its own manifest; the metadata here is OCI's.
        return Err(UsageError::NativeOnly {
            what: "Docker media types",
            value: "--media-types docker".into(),
        }
        .into());
    }
    if request.is_multi_platform() {
        return Err(UsageError::NativeOnly {
            what: "a multi-platform image",
            value: request.platform_list(),
        }
        .into());
    }
    let engines = request
        .outputs
        .iter()
        .filter(|o| **o == Output::Engine)
        .count();
    if engines > 1 {
        return Err(Error::DuplicateOutput(Output::Engine.to_string()));
    }
    Ok(())
}

/// What of the config a Dockerfile cannot say: annotations are the manifest's, and an
/// engine's build keeps no manifest of its own; `WORKDIR` creates its directory, which
/// adds a layer the spec does not have.
fn check_config(request: &BuildRequest) -> Result<(), Error> {
    if let Some(key) = request.config.annotations().keys().next() {
        return Err(UsageError::NativeOnly {
            what: "manifest annotations",
            value: key.clone(),
        }
        .into());
    }
    if let Some(dir) = request.config.working_dir() {
        return Err(UsageError::NativeOnly {
            what: "a working directory without a layer of its own",
            value: dir.to_owned(),
        }
        .into());
    }
    // A Dockerfile line ends at a newline: such a value would end its instruction and
    // start another.
    let config = &request.config;
    let values = config
        .env_entries()
        .into_iter()
        .chain(config.labels().iter().map(|(k, v)| format!("{k}={v}")))
        .chain(config.user_name().map(str::to_owned))
        .chain(config.stop_signal_name().map(str::to_owned))
        .chain(config.entrypoint_args().into_iter().flatten().cloned())
        .chain(config.cmd_args().into_iter().flatten().cloned());
    if let Some(value) = values.into_iter().find(|v| v.chars().any(char::is_control)) {
        return Err(UsageError::NativeOnly {
            what: "config values with control characters (a newline ends a Dockerfile line)",
            value: value.escape_debug().to_string(),
        }
        .into());
    }
    Ok(())
}

/// Builds `request` with a container engine from a generated Dockerfile, or takes the image
/// an earlier build left in the engine (unless `request.no_cache`).
pub fn build(request: &BuildRequest, progress: &mut Progress) -> Result<Built, Error> {
    check(request)?;
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
    let mut sinks = sink::open(
        &files,
        None,
        TarOptions {
            mtime: request.mtime,
        },
        &sink::Platforms::of(request),
    )?;
    let key = key(request);
    let keep_in_engine = request.outputs.contains(&Output::Engine) || files.is_empty();
    let reused = if request.no_cache {
        None
    } else {
        reuse(request, &engine, &key, &mut sinks, keep_in_engine, progress)?
    };
    let mut built = match reused {
        Some(built) => built,
        None => {
            let dir = BuildDir::create(request.build_dir.as_deref(), request.keep)?;
            let built = build_in(
                request,
                &engine,
                &key,
                sinks,
                keep_in_engine,
                dir.path(),
                progress,
            );
            dir.finish(progress);
            built?
        }
    };
    if let Some(staging) = staging {
        let layout = staging::layout(&staging);
        built.pushed = Some(staging::push(&layout, request, progress)?);
    }
    Ok(built)
}

/// The image an earlier build labelled with `key`, tagged as the request's reference when
/// the engine is an output, and saved into `sinks`; `None` when the engine has none (or it
/// went while being taken), with `sinks` untouched for a build.
///
/// It is never removed from the engine, not even when only files are asked for: it was
/// there before this build, so it is not this build's to take away.
fn reuse(
    request: &BuildRequest,
    engine: &Engine,
    key: &str,
    sinks: &mut Vec<Box<dyn Sink>>,
    tag: bool,
    progress: &mut Progress,
) -> Result<Option<Built>, Error> {
    let wanted = request.platform.to_string();
    let found = match lookup::find(engine, key, &wanted) {
        Ok(found) => found,
        Err(e) => {
            // An engine that cannot list by label can still build.
            progress.stage(format!(
                "warning: cannot look for an earlier image in {}: {e}; building",
                engine.kind
            ));
            None
        }
    };
    let Some(image) = found else {
        return Ok(None);
    };
    let reference = request.reference.to_string();
    let gone = |progress: &mut Progress| {
        progress.stage(format!(
            "the image {} went from {} as it was found; building",
            image.id, engine.kind
        ));
        Ok(None)
    };
    if tag && !lookup::tag(engine, &image.id, &reference) {
        return gone(progress);
    }
    progress.stage(format!(
        "found {reference} in {} by its cache key ({}); no build",
        engine.kind, image.id
    ));
    if request.keep {
        // Asked for explicitly, so said even with `-q`.
        log(
            LogLevel::Note,
            &format!(
                "no build directory to keep: the image was found in {}; `--no-cache` builds it",
                engine.kind
            ),
        );
    }
    let mut built = built(request, &image);
    if !sinks.is_empty() {
        // Only somewhere to put the saved archive: nothing to keep.
        let dir = BuildDir::create(request.build_dir.as_deref(), false)?;
        progress.stage(format!("saving {reference} from {}", engine.kind));
        let archive = match save::save(
            engine,
            &image.id,
            &request.reference,
            dir.path(),
            request.verbose,
        ) {
            Ok(archive) => archive,
            Err(_) if crate::interrupt::check().is_ok() && !exists(engine, &image.id) => {
                dir.finish(progress);
                return gone(progress);
            }
            Err(e) => {
                dir.finish(progress);
                return Err(e);
            }
        };
        let written = write_files(
            request,
            &image,
            &archive,
            std::mem::take(sinks),
            &mut built,
            progress,
        );
        dir.finish(progress);
        written?;
    }
    Ok(Some(built))
}

/// Tags the image `id` as `reference` again, unless the tag is there: for a fixture whose
/// tag someone removed. An error when the image itself is gone.
pub(crate) fn retag(engine: &Engine, id: &str, reference: &str) -> Result<(), Error> {
    if inspect::inspect(engine, reference).is_ok_and(|image| image.id == id)
        || lookup::tag(engine, id, reference)
    {
        return Ok(());
    }
    Err(Error::EngineFailed {
        command: format!("{} tag {id} {reference}", engine.kind),
        detail: format!("{} no longer has the image", engine.kind),
    })
}

/// Whether the engine still has the image `id`.
fn exists(engine: &Engine, id: &str) -> bool {
    inspect::inspect(engine, id).is_ok()
}

fn build_in(
    request: &BuildRequest,
    engine: &Engine,
    key: &str,
    sinks: Vec<Box<dyn Sink>>,
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
    context::write(spec, &request.config, &seed(request), key, dir, progress)?;

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
    let mut built = built(request, &inspected);
    if !sinks.is_empty() {
        progress.stage(format!("saving {reference} from {}", engine.kind));
        let archive = save::save(engine, &reference, &request.reference, dir, request.verbose)?;
        write_files(request, &inspected, &archive, sinks, &mut built, progress)?;
    }
    if keep_in_engine {
        progress.stage(format!("wrote {reference} to {}", engine.kind));
    }
    drop(image);
    Ok(built)
}

/// What the engine's image is, as far as the engine tells without a `save`: no manifest
/// digest, and layer sizes of 0.
fn built(request: &BuildRequest, image: &Inspected) -> Built {
    let payloads = payloads(request);
    Built {
        reference: request.reference.to_string(),
        spec: request.spec.canonical(),
        digest: String::new(),
        config_digest: image.id.clone(),
        platform: request.platform.to_string(),
        layers: image
            .diff_ids
            .iter()
            .zip(payloads.iter().chain(std::iter::repeat(&(0, 0))))
            .map(|(diff_id, &(files, payload))| LayerInfo {
                digest: diff_id.clone(),
                size: 0,
                diff_id: diff_id.clone(),
                files,
                payload,
                media_type: image::plain_tar(),
            })
            .collect(),
        manifests: Vec::new(),
        outputs: request.outputs.iter().map(ToString::to_string).collect(),
        pushed: None,
    }
}

/// Each layer's file count and payload, as the spec plans them.
fn payloads(request: &BuildRequest) -> Vec<(u64, u64)> {
    plan::layers(&request.spec)
        .iter()
        .map(|l| (l.spec.files, l.spec.size))
        .collect()
}

/// Streams the saved `archive` into `sinks` and completes `built` with the manifest the
/// file outputs have; the archive goes as soon as it is read.
fn write_files(
    request: &BuildRequest,
    image: &Inspected,
    archive: &Path,
    sinks: Vec<Box<dyn Sink>>,
    built: &mut Built,
    progress: &mut Progress,
) -> Result<(), Error> {
    let exported = save::export(
        archive,
        &image.diff_ids,
        &request.reference,
        &request.platform,
        &payloads(request),
        sinks,
        progress,
    );
    // The archive is as large as the image: gone before anything else happens.
    let _ = std::fs::remove_file(archive);
    let (metadata, infos, committed) = exported?;
    for done in &committed {
        progress.stage(format!(
            "wrote {} {} to {}",
            request.reference, metadata.manifest_blob.digest, done.description
        ));
    }
    built.digest = metadata.manifest_blob.digest;
    built.config_digest = metadata.config_blob.digest;
    built.layers = infos;
    Ok(())
}

/// The seed of the files this request's image holds.
fn seed(request: &BuildRequest) -> [u8; 32] {
    crate::content::seed(&request.spec, &request.platform, request.shared_layers)
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

/// `--emit-context DIR`: the build context of `request`'s image in `dest`, which must not
/// exist or be empty. Written beside it under a temporary name and renamed into place when
/// complete. Its Dockerfile carries the [`KEY_LABEL`] a build would: an image built from it
/// for the request's platform is found and reused by `-b dockerfile`, as one it built.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub fn emit_context(
    request: &BuildRequest,
    dest: &Path,
    progress: &mut Progress,
) -> Result<(), Error> {
    let spec = &request.spec;
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
    check_config(request)?;
    context::write(
        spec,
        &request.config,
        &seed(request),
        &key(request),
        temp.path(),
        progress,
    )?;
    crate::interrupt::check()?;
    // rename(2) replaces an empty directory, and fails on one that filled up meanwhile.
    std::fs::rename(temp.path(), dest).map_err(Error::io("rename into", dest))?;
    // The temporary name is gone; nothing is left for the guard to remove.
    let _ = temp.keep();
    progress.stage(format!(
        "wrote the build context to {}: build it with `docker build --platform {} -t IMAGE {}`",
        dest.display(),
        request.platform,
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
            log(
                LogLevel::Note,
                &format!("kept the build directory {}", path.display()),
            );
            return;
        }
        let path = self.dir.path().to_path_buf();
        match self.dir.close() {
            Ok(()) => progress.stage(format!("removed the build directory {}", path.display())),
            Err(e) => {
                log(
                    LogLevel::Warning,
                    &format!("cannot remove the build directory {}: {e}", path.display()),
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
    use crate::{Reference, Spec};

    #[test]
    fn the_dockerfile_key_is_its_own_and_native_keys_stay() {
        let spec = Spec::parse("1KB").expect("valid");
        let request = BuildRequest::new(spec, Reference::parse("mock/x:1").expect("valid"));
        // What the cache has always called `1KB` for linux/amd64 at mtime 0.
        let native = "fa8ba0c5deab2634a51c1f93e743921a7236fe2dfae6fb766ce44ea98ee84ed9";
        assert_eq!(crate::request::key(&request), native);
        let dockerfile = key(&request);
        assert_ne!(dockerfile, native);
        let mut asked = request.clone();
        asked.builder = Builder::Dockerfile;
        asked.reference = Reference::parse("other/name:2").expect("valid");
        assert_eq!(
            crate::request::key(&asked),
            dockerfile,
            "the name is not part of it"
        );
        assert_ne!(key(&asked.clone().mtime(1)), dockerfile);
    }

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
