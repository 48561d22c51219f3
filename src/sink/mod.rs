//! Where a build goes. Every sink receives the layers as they stream past, once, and makes
//! its result visible only in `commit`: until then everything lives under a temporary name
//! that is removed when the sink is dropped.

mod archive;
mod engine_load;
mod oci_dir;
mod place;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::digest::Blob;
use crate::engine::{self, EngineKind};
use crate::image::Metadata;
use crate::layer::TarOptions;
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::Error;

/// An `--output` destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// Load into a container engine (`docker load`).
    Engine,
    /// An OCI image layout directory.
    OciDir(PathBuf),
    /// An OCI archive that `docker load` accepts too.
    OciArchive(PathBuf),
    /// Push to the registry named in the image reference.
    Registry,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("unknown output `{0}`")]
    Unknown(String),
    #[error("output `{0}` has no path")]
    NoPath(String),
    #[error("output `{0}` names no file or directory")]
    NoName(String),
    #[error("output `{0}` has a `:` in its path")]
    Colon(String),
}

impl OutputError {
    pub fn hint(&self) -> &'static str {
        "outputs are `engine`, `registry`, `oci:DIR` and `oci-archive:FILE`"
    }
}

impl Output {
    pub fn parse(input: &str) -> Result<Self, OutputError> {
        let path = |p: &str| {
            let path = PathBuf::from(p);
            if p.is_empty() {
                Err(OutputError::NoPath(input.to_owned()))
            } else if p.contains(':') {
                // skopeo's `oci:DIR:TAG`; a directory named `DIR:TAG` is never what was meant.
                Err(OutputError::Colon(input.to_owned()))
            } else if path.file_name().is_none() {
                Err(OutputError::NoName(input.to_owned()))
            } else {
                Ok(path)
            }
        };
        match input.split_once(':') {
            None if input == "engine" => Ok(Self::Engine),
            None if input == "registry" => Ok(Self::Registry),
            Some(("oci", p)) => path(p).map(Self::OciDir),
            Some(("oci-archive", p)) => path(p).map(Self::OciArchive),
            _ => Err(OutputError::Unknown(input.to_owned())),
        }
    }
}

impl Output {
    /// The absolute, lexically normalised path a file output ends at.
    fn place(&self) -> Option<PathBuf> {
        let path = match self {
            Self::Engine | Self::Registry => return None,
            Self::OciDir(p) | Self::OciArchive(p) => p,
        };
        let absolute = std::env::current_dir().unwrap_or_default().join(path);
        let mut normal = PathBuf::new();
        for part in absolute.components() {
            match part {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    normal.pop();
                }
                other => normal.push(other),
            }
        }
        Some(normal)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Engine => f.write_str("engine"),
            Self::Registry => f.write_str("registry"),
            Self::OciDir(p) => write!(f, "oci:{}", p.display()),
            Self::OciArchive(p) => write!(f, "oci-archive:{}", p.display()),
        }
    }
}

impl std::str::FromStr for Output {
    type Err = OutputError;
    fn from_str(s: &str) -> Result<Self, OutputError> {
        Self::parse(s)
    }
}

/// Everything but the layer bytes, once the layers are done.
#[derive(Debug)]
pub(crate) struct Finished<'a> {
    pub reference: &'a Reference,
    pub platform: &'a Platform,
    pub metadata: &'a Metadata,
}

pub(crate) trait Sink: Send {
    /// A layer tar of exactly `size` bytes follows.
    fn begin_layer(&mut self, number: u32, size: u64) -> Result<(), Error>;
    fn write_layer(&mut self, data: &[u8]) -> Result<(), Error>;
    /// The layer is complete; `blob` is its digest and size.
    fn end_layer(&mut self, blob: &Blob) -> Result<(), Error>;
    /// Writes the metadata; the result stays invisible until `commit`.
    fn finish(&mut self, image: &Finished<'_>) -> Result<(), Error>;
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
) -> Result<Vec<Box<dyn Sink>>, Error> {
    // `oci:out`, `oci:./out/` and `oci-archive:out` all end at the same place.
    let places: Vec<Option<PathBuf>> = outputs.iter().map(Output::place).collect();
    for (i, output) in outputs.iter().enumerate() {
        if outputs[..i].contains(output) || places[i].is_some() && places[..i].contains(&places[i])
        {
            return Err(Error::DuplicateOutput(output.to_string()));
        }
    }
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
                Output::Engine => Box::new(engine_load::EngineLoad::start(
                    engine::detect(engine)?,
                    options,
                )?),
                Output::OciDir(path) => Box::new(oci_dir::OciDir::create(path, output)?),
                Output::OciArchive(path) => {
                    Box::new(archive::OciArchive::create(path, output, options)?)
                }
                // Filtered out above; were it not, two stagings would mean it was given twice.
                Output::Registry => return Err(Error::DuplicateOutput(output.to_string())),
            })
        })
        .collect()
}

/// Where a temporary sibling of `dest` goes; the parent must exist already.
fn parent_dir(dest: &Path, output: &Output) -> Result<PathBuf, Error> {
    let parent = match dest.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => Path::new("/"),
    };
    if !parent.is_dir() {
        return Err(Error::MissingParent {
            path: parent.to_path_buf(),
            output: output.to_string(),
        });
    }
    Ok(parent.to_path_buf())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_outputs() {
        assert_eq!(Output::parse("engine"), Ok(Output::Engine));
        assert_eq!(
            Output::parse("oci:out/x"),
            Ok(Output::OciDir("out/x".into()))
        );
        assert_eq!(
            Output::parse("oci-archive:a.tar"),
            Ok(Output::OciArchive("a.tar".into()))
        );
        assert_eq!(
            Output::parse("oci:"),
            Err(OutputError::NoPath("oci:".into()))
        );
        assert_eq!(
            Output::parse("docker"),
            Err(OutputError::Unknown("docker".into()))
        );
        assert_eq!(
            Output::parse("zip:x"),
            Err(OutputError::Unknown("zip:x".into()))
        );
        assert_eq!(Output::parse("registry"), Ok(Output::Registry));
        assert_eq!(
            Output::parse("oci:dir:tag"),
            Err(OutputError::Colon("oci:dir:tag".into()))
        );
        assert_eq!(
            Output::parse("oci:.."),
            Err(OutputError::NoName("oci:..".into()))
        );
        assert_eq!(
            Output::parse("oci-archive:/"),
            Err(OutputError::NoName("oci-archive:/".into()))
        );
    }

    #[test]
    fn the_same_place_is_caught_across_spellings() {
        let place = |s: &str| Output::parse(s).expect("valid").place();
        assert_eq!(place("oci:out"), place("oci-archive:./out/"));
        assert_eq!(place("oci:a/../out"), place("oci:out"));
        assert_ne!(place("oci:out"), place("oci:out2"));
        assert_eq!(place("engine"), None);
    }
}
