//! Where a build goes. Every sink receives the layers as they stream past, once, and makes
//! its result visible only in `commit`: until then everything lives under a temporary name
//! that is removed when the sink is dropped.

mod archive;
#[cfg(feature = "engine")]
mod engine_load;
mod link;
mod oci_dir;
mod place;

#[cfg(feature = "cli")]
pub(crate) use archive::metadata_files;

use std::path::{Path, PathBuf};

use crate::digest::Blob;
use crate::engine::EngineKind;
use crate::image::ImageSet;
use crate::layer::TarOptions;
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::request::{LinkMode, Output};
use crate::spec::Compression;
use crate::Error;

/// Everything but the layer bytes, once the layers are done.
#[derive(Debug)]
pub(crate) struct Finished<'a> {
    pub reference: &'a Reference,
    /// The image, or each platform's image and their index.
    pub set: &'a ImageSet,
}

/// A layer about to stream past.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerStart {
    /// Which layer set (0-based): each platform of an index has its own, unless they share
    /// the first.
    pub set: usize,
    /// 1-based.
    pub number: u32,
    /// The uncompressed tar's exact size, when it is known before its bytes: a generated
    /// layer's is, a base's compressed layer's is not. Only an engine reads it.
    #[cfg_attr(not(feature = "engine"), allow(dead_code))]
    pub tar_size: Option<u64>,
    /// The blob's size, when it is known before its bytes: a plain tar's, and a base's
    /// layer's.
    pub blob_size: Option<u64>,
    /// How the bytes that follow are encoded.
    pub compression: Compression,
}

/// The platforms a build makes, for a sink that takes one image of them (an engine).
#[derive(Debug, Clone, Default)]
pub(crate) struct Platforms {
    /// Every platform, in the index's order; one for a single image.
    pub list: Vec<Platform>,
    /// Whether they all use the first layer set.
    #[cfg_attr(not(feature = "engine"), allow(dead_code))]
    pub shared: bool,
}

impl Platforms {
    /// The platforms `request` asks for.
    pub fn of(request: &crate::BuildRequest) -> Self {
        Self {
            list: request.all_platforms(),
            shared: request.shared_layers,
        }
    }
}

pub(crate) trait Sink: Send {
    /// A layer blob follows: a plain tar, or one encoded as `layer.compression` says.
    fn begin_layer(&mut self, layer: &LayerStart) -> Result<(), Error>;
    fn write_layer(&mut self, data: &[u8]) -> Result<(), Error>;
    /// The layer is complete; `blob` is its digest and size.
    fn end_layer(&mut self, blob: &Blob) -> Result<(), Error>;
    /// Writes the metadata; the result stays invisible until `commit`.
    fn finish(&mut self, image: &Finished<'_>) -> Result<(), Error>;
    /// Whether `write_layer` needs the bytes; a sink that links its blobs does not.
    fn wants_data(&self) -> bool {
        true
    }
    /// The OCI layout being written, under its temporary name, for others to link from.
    fn staged_layout(&self) -> Option<&Path> {
        None
    }
    /// A status line to show once, e.g. that linking fell back to copying.
    fn take_note(&mut self) -> Option<String> {
        None
    }
    /// Makes the result visible under its real name.
    fn commit(self: Box<Self>) -> Result<Committed, Error>;
}

/// A committed output: where it went, and for files, how to take it back.
#[derive(Debug)]
pub(crate) struct Committed {
    pub description: String,
    pub placed: Option<place::Placed>,
}

impl Committed {
    /// Moves a finished file output from `staged` to `dest`; `guard` owns `staged`.
    fn place(
        staged: &Path,
        dest: &Path,
        output: String,
        guard: Box<dyn Send>,
    ) -> Result<Self, Error> {
        let placed =
            place::Placed::new(staged, dest, guard).map_err(Error::io("rename into", dest))?;
        Ok(Self {
            description: output,
            placed: Some(placed),
        })
    }

    /// Takes a file output back out (restoring what was there); an engine keeps its image.
    pub fn undo(self) -> Result<(), place::UndoError> {
        match self.placed {
            Some(placed) => placed.undo(),
            None => Ok(()),
        }
    }
}

/// Takes `committed` back out, last first; an output that cannot be restored is a
/// `warning:` line saying where the previous one is kept.
pub(crate) fn undo_all(committed: Vec<Committed>, progress: &Progress) {
    for done in committed.into_iter().rev() {
        if let Err(e) = done.undo() {
            progress.stage(format!("warning: {e}"));
        }
    }
}

/// Opens the sinks for `outputs`, engines first: loading is the step most likely to fail,
/// so it commits before any file is renamed into place.
pub(crate) fn open(
    outputs: &[Output],
    engine: Option<EngineKind>,
    options: TarOptions,
    platforms: &Platforms,
) -> Result<Vec<Box<dyn Sink>>, Error> {
    open_linked(outputs, engine, options, None, platforms)
}

/// [`open`]; with `link`, `oci:` outputs link their blobs from that layout, as the mode
/// says, instead of writing them.
pub(crate) fn open_linked(
    outputs: &[Output],
    engine: Option<EngineKind>,
    options: TarOptions,
    link: Option<(&Path, LinkMode)>,
    platforms: &Platforms,
) -> Result<Vec<Box<dyn Sink>>, Error> {
    check_duplicates(outputs)?;
    let mut ordered: Vec<&Output> = outputs.iter().filter(|o| **o == Output::Engine).collect();
    // A registry push reads the layout `build` stages with `staging`, not a sink of its own.
    ordered.extend(
        outputs
            .iter()
            .filter(|o| !matches!(o, Output::Engine | Output::Registry)),
    );
    ordered
        .into_iter()
        .map(|output| -> Result<Box<dyn Sink>, Error> {
            Ok(match output {
                #[cfg(feature = "engine")]
                Output::Engine => Box::new(engine_load::EngineLoad::start(
                    crate::engine::detect(engine)?,
                    options,
                    platforms,
                )?),
                #[cfg(not(feature = "engine"))]
                Output::Engine => {
                    let _ = (engine, platforms);
                    return Err(Error::FeatureDisabled {
                        feature: "engine",
                        what: "`--output engine`",
                    });
                }
                Output::OciDir(path) => match link {
                    Some((from, mode)) => Box::new(oci_dir::OciDir::linked(
                        path,
                        output,
                        link::Linker::new(from, mode, path),
                    )?),
                    None => Box::new(oci_dir::OciDir::create(path, output)?),
                },
                Output::OciArchive(path) => {
                    Box::new(archive::OciArchive::create(path, output, options)?)
                }
                // Filtered out above; were it not, two stagings would mean it was given twice.
                Output::Registry => return Err(Error::DuplicateOutput(output.to_string())),
            })
        })
        .collect()
}

/// No output is given twice, under any spelling.
fn check_duplicates(outputs: &[Output]) -> Result<(), Error> {
    // `oci:out`, `oci:./out/` and `oci-archive:out` all end at the same place.
    let places: Vec<Option<PathBuf>> = outputs.iter().map(Output::place).collect();
    for (i, output) in outputs.iter().enumerate() {
        if outputs[..i].contains(output) || places[i].is_some() && places[..i].contains(&places[i])
        {
            return Err(Error::DuplicateOutput(output.to_string()));
        }
    }
    Ok(())
}

/// What opening the file sinks for `outputs` would check, without creating anything: no
/// output twice, no parent that is not a directory, no destination taken by something else.
/// Engines and registries are not contacted here.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn check(outputs: &[Output]) -> Result<(), Error> {
    check_duplicates(outputs)?;
    for output in outputs {
        match output {
            Output::OciDir(path) => drop(oci_dir::check(path, output)?),
            Output::OciArchive(path) => drop(archive::check(path, output)?),
            Output::Engine | Output::Registry => {}
        }
    }
    Ok(())
}

/// Where a temporary sibling of `dest` goes. Missing parents are fine, as for skopeo: the
/// sink creates them when it opens ([`Parents::create`]); only an ancestor that exists but
/// is not a directory is an error, found here so that `--dry-run` reports it too.
fn parent_dir(dest: &Path, output: &Output) -> Result<PathBuf, Error> {
    let parent = match dest.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => Path::new("/"),
    };
    if let Some(existing) = parent
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| a.exists())
    {
        if !existing.is_dir() {
            return Err(Error::ParentNotDirectory {
                path: existing.to_path_buf(),
                output: output.to_string(),
            });
        }
    }
    Ok(parent.to_path_buf())
}

/// The parent directories a sink created for its destination. Dropped, it removes those
/// that are empty, innermost first: after a failed build (or an output taken back out)
/// nothing is left, while a directory that holds the committed output, or anything another
/// process put there meanwhile, stays.
#[derive(Debug, Default)]
pub(crate) struct Parents {
    created: Vec<PathBuf>,
}

/// The directories the open sinks of this process created, with how many sinks use each:
/// `-o oci:made/a -o oci:made/b` share `made`, which only the last of them may remove, since
/// sinks are dropped in any order.
static CREATED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<PathBuf, usize>>> =
    std::sync::LazyLock::new(Default::default);

impl Parents {
    /// Creates `parent` and every missing ancestor of it.
    fn create(parent: &Path) -> Result<Self, Error> {
        let mut shared = CREATED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let created: Vec<PathBuf> = parent
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .take_while(|a| a.symlink_metadata().is_err() || shared.contains_key(*a))
            .map(Path::to_path_buf)
            .collect();
        if !created.is_empty() {
            std::fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
        }
        for dir in &created {
            *shared.entry(dir.clone()).or_default() += 1;
        }
        Ok(Self { created })
    }
}

impl Drop for Parents {
    fn drop(&mut self) {
        let mut shared = CREATED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for dir in &self.created {
            let Some(users) = shared.get_mut(dir) else {
                continue;
            };
            *users -= 1;
            if *users == 0 {
                shared.remove(dir);
                // Fails, as it should, for a directory that holds anything.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Something other than an earlier output of ours sits at the destination.
fn taken(dest: &Path, expected: &'static str) -> Error {
    Error::DestinationTaken {
        path: dest.to_path_buf(),
        expected,
    }
}

/// `.NAME.` — temporary siblings are hidden and say what they are for.
fn temp_prefix(dest: &Path) -> String {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    format!(".{name}.image-maker-")
}
