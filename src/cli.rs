//! The command line: one argument struct, shared with `cargo xtask mock-image`.

use std::io::Write;

use clap::{Parser, Subcommand, ValueEnum};

use crate::registry::{self, PushOptions, PushSource, Pushed, RegistryError};
use crate::{
    build, BuildRequest, Built, EngineKind, Error, Output, Platform, Progress, Reference, Spec,
};

const EXAMPLES: &str = "\
Examples:
  # two layers of 1 GiB and 512 MiB, loaded into docker
  image-maker --num-layers 2 --layer-sizes 1GB,512MB mock/big:1

  # no daemon needed: an OCI layout directory and an archive for `docker load -i`
  image-maker -s 5MB,2KB,300B -o oci:out/small -o oci-archive:small.tar mock/small:1

  # a hundred 1 MiB layers; 100,000 small files; a mock filesystem of nested directories
  image-maker -n 100 -s 1MB -o oci:many mock/many:1
  image-maker -s 64MB:files=100000 -o oci:files mock/files:1
  image-maker -s 64MB:tree=5000 -o oci:tree mock/tree:1

Sizes are powers of 1024: B, KB, MB, GB, TB (KiB..TiB also accepted); a bare number
means MB. A size is the layer's file data; tar headers come on top.";

/// Which builder produces the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Builder {
    /// Stream generated data through tar and SHA-256 straight to the outputs; no daemon.
    Native,
}

/// Creates mock OCI container images of exact shapes for tests.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "image-maker",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Building an image: the command line without a subcommand.
    #[command(flatten)]
    pub build: Option<Args>,
}

/// Commands other than building an image.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Push an image that exists already (an OCI layout) to a registry
    Push(PushArgs),
}

/// `image-maker push SOURCE IMAGE`.
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// What to push: `oci:DIR`, or `oci:DIR:TAG` to pick one image of the layout
    #[arg(value_name = "SOURCE")]
    pub source: String,

    /// Where to push it: `[host[:port]/]name[:tag]` (no host: Docker Hub, as docker does)
    #[arg(value_name = "IMAGE")]
    pub image: String,

    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Print a JSON summary (reference, digest, blobs) on stdout
    #[arg(long)]
    pub json: bool,

    /// Print nothing on stderr but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// How images go to a registry: for `--output registry` and `image-maker push`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Upload blobs in PATCH chunks of SIZE, e.g. `8MB` (default: one streaming PUT per blob)
    #[arg(long, value_name = "SIZE")]
    pub chunk_size: Option<String>,

    /// Mount blobs from repository REPO on the same registry instead of uploading them
    #[arg(long, value_name = "REPO")]
    pub mount_from: Option<String>,

    /// Plain HTTP to the registry (automatic for localhost and 127.0.0.0/8)
    #[arg(long)]
    pub insecure: bool,

    /// Retries after a connection error or a 5xx/429 answer, with doubling waits
    #[arg(
        long,
        value_name = "N",
        env = "IMAGE_MAKER_PUSH_RETRIES",
        default_value_t = 4
    )]
    pub retries: u32,

    /// Say how the registry is reached and authenticated (secrets are never shown)
    #[arg(short, long)]
    pub verbose: bool,
}

impl RegistryArgs {
    pub fn options(&self) -> Result<PushOptions, Error> {
        let chunk_size = self
            .chunk_size
            .as_deref()
            .map(|text| {
                crate::spec::parse_size(text, text)
                    .map_err(|e| e.to_string())
                    .and_then(|n| match n {
                        0 => Err("it is zero".to_owned()),
                        n => Ok(n),
                    })
                    .map_err(|reason| RegistryError::BadChunkSize {
                        value: text.to_owned(),
                        reason,
                    })
            })
            .transpose()?;
        let mut options = PushOptions {
            chunk_size,
            mount_from: self.mount_from.clone(),
            insecure: self.insecure,
            retries: self.retries,
            verbose: self.verbose,
            ..PushOptions::default()
        };
        // For tests that stop a registry: the first wait before a retry.
        if let Some(ms) = std::env::var("IMAGE_MAKER_PUSH_BACKOFF_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            options.backoff = std::time::Duration::from_millis(ms);
        }
        Ok(options)
    }
}

/// What to build and where it goes: the arguments of `image-maker` and of
/// `cargo xtask mock-image`.
#[derive(Debug, Clone, Parser)]
#[command(name = "image-maker", version, after_help = EXAMPLES)]
// clap leaves the group of a struct with a nested `flatten` empty, and `Cli` tells whether
// the build arguments were given by that group: name the required arguments as members.
#[group(args = ["image", "layer_sizes"])]
pub struct Args {
    /// Image reference, `name[:tag]` (tag defaults to `latest`)
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Number of layers; must match the size list unless it has a single size to repeat
    #[arg(short = 'n', long, value_name = "N")]
    pub num_layers: Option<usize>,

    /// Comma-separated layer sizes, each optionally `:files=N` or `:tree=N`, e.g. `1GB,512MB:files=1000`
    #[arg(short = 's', long, value_name = "LIST")]
    pub layer_sizes: String,

    /// Where the image goes: `engine`, `registry` (IMAGE names it), `oci:DIR` or `oci-archive:FILE` (repeatable)
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DEST",
        default_value = "engine"
    )]
    pub outputs: Vec<String>,

    /// How the image is built
    #[arg(short = 'b', long, value_enum, default_value_t = Builder::Native)]
    pub builder: Builder,

    /// Container engine for `--output engine`: docker or podman (default: the first that answers)
    #[arg(short = 'e', long, value_name = "E")]
    pub engine: Option<String>,

    /// Target platform, `os/arch[/variant]`
    #[arg(long, value_name = "P", default_value = "linux/amd64")]
    pub platform: String,

    /// Print a JSON summary (reference, digest, layers) on stdout
    #[arg(long)]
    pub json: bool,

    /// Print nothing on stderr but errors
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("SOURCE_DATE_EPOCH `{0}` is not a whole number of seconds from 1970 to 9999")]
    SourceDateEpoch(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::UnknownEngine),
}

impl Args {
    /// Everything the arguments say, validated, before any work starts.
    pub fn request(&self) -> Result<BuildRequest, Error> {
        let spec = Spec::parse_with_count(&self.layer_sizes, self.num_layers)?;
        let reference = Reference::parse(&self.image)?;
        let platform = Platform::parse(&self.platform)?;
        let outputs = self
            .outputs
            .iter()
            .map(|o| Output::parse(o))
            .collect::<Result<Vec<_>, _>>()?;
        let engine = self
            .engine
            .as_deref()
            .map(str::parse::<EngineKind>)
            .transpose()
            .map_err(|e| Error::Usage(e.into()))?;
        let mtime = source_date_epoch()?;
        let mut request = BuildRequest::new(spec, reference)
            .platform(platform)
            .mtime(mtime);
        request.outputs = outputs;
        request.engine = engine;
        request.push = self.registry.options()?;
        Ok(request)
    }
}

/// `SOURCE_DATE_EPOCH`, when set: seconds that RFC 3339 can still write (year 9999).
fn source_date_epoch() -> Result<u64, Error> {
    const LAST: u64 = 253_402_300_799;
    let Some(raw) = std::env::var_os("SOURCE_DATE_EPOCH").filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    let text = raw.to_string_lossy();
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|secs| *secs <= LAST)
        .ok_or_else(|| Error::Usage(UsageError::SourceDateEpoch(text.into_owned())))
}

/// Runs the command line; status goes to stderr, the `--json` summary to stdout.
pub fn run(args: &Args) -> Result<Built, Error> {
    let request = args.request()?;
    let mut progress = if args.quiet {
        Progress::hidden()
    } else {
        Progress::stderr()
    };
    let built = build(&request, &mut progress)?;
    if args.json {
        let json = serde_json::to_string_pretty(&built).map_err(|e| Error::Metadata(e.into()))?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{json}")
            .and_then(|()| stdout.flush())
            .map_err(Error::io("write the summary to", "stdout"))?;
    }
    Ok(built)
}

/// `image-maker push SOURCE IMAGE`.
pub fn push(args: &PushArgs) -> Result<Pushed, Error> {
    let PushSource::OciDir { path, tag } = PushSource::parse(&args.source)?;
    let target = Reference::parse(&args.image)?;
    let options = args.registry.options()?;
    let mut progress = if args.quiet {
        Progress::hidden()
    } else {
        Progress::stderr()
    };
    let pushed = registry::push(&path, tag.as_deref(), &target, &options, &mut progress)
        .map_err(|e| crate::interrupt::check().err().unwrap_or(e))?;
    progress.stage(format!("pushed {}@{}", pushed.reference, pushed.digest));
    if args.json {
        let json = serde_json::to_string_pretty(&pushed).map_err(|e| Error::Metadata(e.into()))?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{json}")
            .and_then(|()| stdout.flush())
            .map_err(Error::io("write the summary to", "stdout"))?;
    }
    Ok(pushed)
}

/// Runs what the command line asks for.
pub fn main(cli: &Cli) -> Result<(), Error> {
    match (&cli.command, &cli.build) {
        (Some(Command::Push(args)), _) => push(args).map(drop),
        (None, Some(args)) => run(args).map(drop),
        // clap requires the build arguments when no subcommand is given.
        (None, None) => Ok(()),
    }
}
