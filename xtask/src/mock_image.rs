//! `cargo xtask mock-image ARGS…` (the CLI's own arguments) and `cargo xtask mock-image warm`
//! (`image-maker warm` on the workspace: build every image its `#[mock_image]` tests use
//! into the cache).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use image_maker::cli::warm::{self, WarmArgs};
use image_maker::cli::{self, Args};
use xshell::Shell;

use crate::Task;

/// Builds an image with exactly the CLI's arguments.
pub struct MockImage {
    pub args: Vec<String>,
}

impl Task for MockImage {
    fn run(&self, _sh: &Shell) -> Result<()> {
        let args = Args::try_parse_from(
            std::iter::once("cargo xtask mock-image".to_owned()).chain(self.args.iter().cloned()),
        )
        .unwrap_or_else(|e| e.exit());
        image_maker::cli::install_signal_handlers()?;
        cli::run(&args).map_err(|e| with_hint(e.into()))?;
        Ok(())
    }
}

/// Fills the cache with every image `#[mock_image]` asks for under `root`: `image-maker warm`.
pub struct Warm {
    pub root: PathBuf,
}

impl Task for Warm {
    fn run(&self, _sh: &Shell) -> Result<()> {
        image_maker::cli::install_signal_handlers()?;
        let args = WarmArgs {
            dir: self.root.clone(),
            json: false,
            quiet: false,
        };
        warm::run(&args).map_err(with_hint)
    }
}

fn with_hint(e: cli::CliError) -> anyhow::Error {
    match e.hint() {
        Some(hint) => anyhow::anyhow!("{e}\nhint: {hint}"),
        None => anyhow::anyhow!("{e}"),
    }
}

/// `warm`, or the CLI's arguments.
pub fn task(args: Vec<String>, root: PathBuf) -> Result<Box<dyn Task>> {
    match args.first().map(String::as_str) {
        Some("warm") if args.len() == 1 => Ok(Box::new(Warm { root })),
        Some("warm") => bail!("`cargo xtask mock-image warm` takes no arguments"),
        _ => Ok(Box::new(MockImage { args })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_takes_no_arguments() {
        let root = PathBuf::from(".");
        assert!(task(vec!["warm".into()], root.clone()).is_ok());
        let extra = task(vec!["warm".into(), "tests".into()], root).err();
        assert!(extra.is_some_and(|e| e.to_string().contains("takes no arguments")));
    }
}
