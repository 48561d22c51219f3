//! The command line: one argument struct, shared with `cargo xtask mock-image`. It sits on
//! top of the library; nothing in the library imports it.

pub mod batch;
mod cache;
mod dry_run;
mod error;
pub mod expect;
pub mod serve;
pub mod verify;
pub mod warm;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::interrupt::install as install_signal_handlers;
pub use error::CliError;

use crate::cache::{build_in_user_cache, Cache};
use crate::error::UsageError;
use crate::registry::{self, PushSource, RegistryError};
use crate::request::{Builder, LinkMode, Pushed, RegistryOptions};
use crate::spec::Compression;
use crate::{
    build, BuildRequest, Built, EngineKind, Error, ImageConfig, Output, Platform, Progress,
    Reference, Spec,
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

  # three 1 GiB layers, then a hundred 4 KiB layers of two files each
  image-maker -s 3x1G,100x4k:files=2 -o oci:mixed mock/mixed:1

Sizes are powers of 1024: B, KB, MB, GB, TB, also written K..T or KiB..TiB, in any
case (512M = 512mb = 512MB); a bare number means MB. `Nx` repeats a layer N times
(3x1GB = 1GB,1GB,1GB). A size is the layer's file data; tar headers come on top.";

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
    /// A command other than building an image.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Building an image: the command line without a subcommand.
    #[command(flatten)]
    pub build: Option<Args>,
}

/// Commands other than building an image.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Look after the cache of built images (`IMAGE_MAKER_CACHE_DIR`, else ~/.cache/image-maker)
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Push an image that exists already (an OCI layout) to a registry
    Push(PushArgs),
    /// Build every image an images file names (families of repositories, tags and shared
    /// bases) into OCI layouts or a registry
    Batch(batch::BatchArgs),
    /// Build every image the `#[mock_image(...)]` tests under DIR use into the cache
    Warm(warm::WarmArgs),
    /// Serve images made on request as they are pulled: the tag names the spec
    Serve(Box<serve::ServeArgs>),
    /// Print the image tag `serve` knows a spec by
    Tag(serve::TagArgs),
    /// Read every blob of an image again and check it against its digests and its spec, or an
    /// unpacked root filesystem against a spec (`--rootfs DIR --spec SPEC`)
    Verify(verify::VerifyArgs),
    /// Print the root filesystem a spec's image unpacks to (mtree or JSON), without building it
    Expect(expect::ExpectArgs),
    /// Show an image's digests, platforms, spec, and each layer's sizes and entry counts
    Inspect(verify::InspectArgs),
    /// Print a completion script for SHELL on stdout, e.g. `image-maker completions bash >
    /// ~/.local/share/bash-completion/completions/image-maker`
    Completions {
        /// bash, zsh, fish, elvish or powershell
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout, e.g. `image-maker man | man -l -`
    Man,
}

/// `image-maker cache …`.
#[derive(Debug, Clone, Subcommand)]
pub enum CacheCommand {
    /// List cached images, least recently used first
    Ls {
        /// One JSON array on stdout instead of the table: each image's `key`, `spec`,
        /// `digest`, `platforms`, `size` (bytes), `last_used` and `created` (RFC 3339)
        #[arg(long)]
        json: bool,
    },
    /// Remove leftovers of killed builds, then evict least recently used images
    Gc {
        /// Evict until the cache holds at most this much, e.g. `10GB`
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Evict images not used for this long: `30d`, `12h`, `90m`, `3600s`, `2w`
        #[arg(long, value_name = "DUR")]
        max_age: Option<String>,
    },
    /// Evict every image not in use by a running process
    Clear,
    /// Hash every cached image's blobs again, and remove the damaged images
    // `cache verify` was its first name; scripts may still say it.
    #[command(alias = "verify")]
    Rehash {
        /// Only the image of this layer list
        #[arg(value_name = "SPEC")]
        spec: Option<String>,
        /// The platform of SPEC's image, `os/arch[/variant]`
        #[arg(
            long,
            value_name = "P",
            default_value = "linux/amd64",
            requires = "spec"
        )]
        platform: String,
    },
    /// Print the cache's directory
    Path,
}

/// `image-maker push SOURCE IMAGE`.
#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// What to push: `oci:DIR`, `oci:DIR:TAG` to pick one image of the layout (`oci:` may be
    /// left out when DIR holds `oci-layout`), or `cache:SPEC` for the cached image of a
    /// layer list (built first if missing)
    #[arg(value_name = "SOURCE")]
    pub source: String,

    /// The platform of a `cache:SPEC` image, `os/arch[/variant]`, or a comma-separated list
    /// for an index
    #[arg(long, value_name = "P", default_value = "linux/amd64")]
    pub platform: String,

    /// Where to push it: `[host[:port]/]name[:tag]` (no host: Docker Hub, as docker does)
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// How the registry is reached.
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Print a JSON summary (reference, digest, blobs) on stdout
    #[arg(long)]
    pub json: bool,

    /// Print nothing on stderr but errors
    #[arg(short, long)]
    pub quiet: bool,

    /// Say how the registry is reached and authenticated (secrets are never shown)
    #[arg(short, long)]
    pub verbose: bool,
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
}

impl RegistryArgs {
    /// `verbose`: say how the registry is reached and authenticated (never the secrets).
    pub fn options(&self, verbose: bool) -> Result<RegistryOptions, Error> {
        let chunk_size = self
            .chunk_size
            .as_deref()
            .map(|text| {
                crate::spec::parse_byte_size(text)
                    .map_err(|e| size_reason(text, &e))
                    .and_then(|n| match n {
                        0 => Err("is zero".to_owned()),
                        n => Ok(n),
                    })
                    .map_err(|reason| RegistryError::BadChunkSize {
                        value: text.to_owned(),
                        reason,
                    })
            })
            .transpose()?;
        let mut options = RegistryOptions {
            chunk_size,
            mount_from: self.mount_from.clone(),
            insecure: self.insecure,
            retries: self.retries,
            verbose,
            ..RegistryOptions::default()
        };
        // Test-only (README, Development): the first wait before a retry, shortened by the
        // tests that stop a registry. Not an option users are meant to set.
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

    /// Comma-separated layer sizes, each optionally `Nx` (N times) and `:files=N` or `:tree=N`, e.g. `1GB,512MB:files=1000,3x64M`
    // A list starting with `-` (`-s -1MB`) is the grammar's to refuse, naming it: clap's
    // "use `-- -1`" would be no help, as no list starting with `-` is valid.
    #[arg(short = 's', long, value_name = "LIST", allow_hyphen_values = true)]
    pub layer_sizes: String,

    /// A host file or directory as a layer of its own above the spec's, at DEST in the image,
    /// with mtime 0, uid/gid 0 and the files' modes, so that its digest follows the bytes
    /// alone (repeatable): `--add target/release/app:/usr/bin/app`
    #[arg(long = "add", value_name = "SRC:DEST")]
    pub add: Vec<String>,

    /// The image to build on: its layers first (the same blobs), its config under this
    /// one's; `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker://REF` or `cache:SPEC`
    #[arg(long, value_name = "SOURCE")]
    pub base: Option<String>,

    /// Make the image run: add the `run` entry, our entrypoint program for linux/amd64 and
    /// linux/arm64, with its options if given (`--runnable ready=up:read=all:order=random`)
    #[arg(long, value_name = "OPTIONS", num_args = 0..=1, default_missing_value = "")]
    pub runnable: Option<String>,

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

    /// Container engine: docker, podman, finch, nerdctl or buildah (default: the first that answers)
    #[arg(short = 'e', long, value_name = "E")]
    pub engine: Option<String>,

    /// Keep the dockerfile builder's build directory and print its path
    #[arg(long)]
    pub keep: bool,

    /// Where the dockerfile builder makes its build directory (default: the system temp dir)
    #[arg(long, value_name = "DIR")]
    pub build_dir: Option<PathBuf>,

    /// Write the Dockerfile build context (layer files and Dockerfile) to DIR and stop
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["outputs", "engine", "keep", "build_dir", "json", "platform"]
    )]
    pub emit_context: Option<PathBuf>,

    /// Show the container engine's own output, and how a registry is reached (never secrets)
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Target platform, `os/arch[/variant]`; a comma-separated list makes an image index
    /// with one image per platform (`linux/amd64,linux/arm64,linux/arm/v7`)
    #[arg(long, value_name = "P", default_value = "linux/amd64")]
    pub platform: String,

    /// How layers without `compression=` are encoded: none (default), gzip or zstd
    #[arg(long, value_name = "C")]
    pub compression: Option<String>,

    /// Level of every compressed layer without `level=`: gzip 1-9 (default 6), zstd 1-19
    /// (default 3)
    #[arg(long, value_name = "N")]
    pub compression_level: Option<u32>,

    /// Attach a signature, an SPDX SBOM and an in-toto attestation to each manifest, as
    /// OCI 1.1 artifacts: listed in `oci:` layouts' index, pushed with the image
    #[arg(long)]
    pub artifacts: bool,

    /// The manifests' media types: oci, or docker (schema 2 manifests and manifest lists,
    /// with other digests; the config and layers are the same)
    #[arg(long, value_enum, value_name = "TYPES", default_value_t = crate::MediaTypes::Oci)]
    pub media_types: crate::MediaTypes,

    /// Give every platform the linux/amd64 layer bytes instead of its own: an index's
    /// images then share their layer blobs, stored once
    #[arg(long)]
    pub shared_layers: bool,

    /// Build even if the cache has the image, and do not store it there; with the dockerfile
    /// builder, build even if the engine has an image labelled with the cache key
    #[arg(long)]
    pub no_cache: bool,

    /// How `oci:` outputs get the cache's blobs: a copy-on-write clone, else a hard link, else a copy
    #[arg(long, value_enum, value_name = "MODE", default_value_t = LinkMode::Clone)]
    pub link_mode: LinkMode,

    /// Hash every cached blob again before using it
    // `--verify` was its first name; scripts may still say it.
    #[arg(long = "rehash", alias = "verify", conflicts_with = "no_cache")]
    pub rehash: bool,

    /// Print a JSON summary (reference, digest, layers) on stdout
    #[arg(long)]
    pub json: bool,

    /// Check everything and print the plan (layers, blob sizes, the space each output needs
    /// and the free space there) without writing anything; exit 1 if it would not fit
    #[arg(long, conflicts_with = "emit_context")]
    pub dry_run: bool,

    /// Print nothing on stderr but errors
    #[arg(short, long)]
    pub quiet: bool,

    /// How `--output registry` pushes.
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// What the image's config says beyond its layers.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// The image's config: `Entrypoint`, `Cmd`, `Env`, … as docker and podman read them.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Image config")]
pub struct ConfigArgs {
    /// The entrypoint: a JSON array of strings (`'["/bin/app","-v"]'`), or a plain string
    /// split on whitespace (`"/bin/app -v"`)
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,

    /// The command (`Cmd`, the entrypoint's default arguments): a JSON array of strings, or a
    /// plain string split on whitespace
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub cmd: Option<String>,

    /// An environment variable, `KEY=VALUE` (repeatable)
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,

    /// The working directory, an absolute path (native builder only: `WORKDIR` adds a layer)
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// The user the container runs as, `USER[:GROUP]` (names or numbers)
    #[arg(long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// A label of the config, `KEY=VALUE` (repeatable)
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,

    /// An annotation of the manifest, `KEY=VALUE` (repeatable; native builder only)
    #[arg(long = "annotation", value_name = "K=V")]
    pub annotations: Vec<String>,

    /// An exposed port, `PORT[/PROTO]`: tcp (the default), udp or sctp (repeatable)
    #[arg(long = "expose", value_name = "PORT[/PROTO]")]
    pub expose: Vec<String>,

    /// The signal that stops the container: `SIGTERM`, `TERM`, or a number from 1 to 64
    #[arg(long, value_name = "SIG")]
    pub stop_signal: Option<String>,
}

impl ConfigArgs {
    /// The config the flags set, each value checked.
    pub fn config(&self) -> Result<ImageConfig, Error> {
        let one = |value: &Option<String>| value.iter().cloned().collect::<Vec<_>>();
        let flags: [(&str, Vec<String>); 9] = [
            ("entrypoint", one(&self.entrypoint)),
            ("cmd", one(&self.cmd)),
            ("env", self.env.clone()),
            ("workdir", one(&self.workdir)),
            ("user", one(&self.user)),
            ("label", self.labels.clone()),
            ("annotation", self.annotations.clone()),
            ("expose", self.expose.clone()),
            ("stop_signal", one(&self.stop_signal)),
        ];
        let mut config = ImageConfig::new();
        for (key, values) in flags {
            for value in values {
                config = config.set(key, &value)?;
            }
        }
        Ok(config)
    }
}

impl Args {
    /// Everything the arguments say, validated, before any work starts.
    pub fn request(&self) -> Result<BuildRequest, Error> {
        let compression = self
            .compression
            .as_deref()
            .map(|c| Compression::parse(c).ok_or_else(|| UsageError::Compression(c.to_owned())))
            .transpose()?;
        let mut spec = Spec::parse_with_count(&self.layer_sizes, self.num_layers)?
            .with_defaults(compression, self.compression_level)?;
        if let Some(options) = &self.runnable {
            spec = spec.with_run(options)?;
        }
        let added = self
            .add
            .iter()
            .map(|a| crate::Added::parse(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(UsageError::from)?;
        let reference = Reference::parse(&self.image)?;
        self.base_source()?;
        let platforms = Platform::parse_list(&self.platform)?;
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
        let config = self.config.config()?;
        let mtime = source_date_epoch()?;
        if self.builder != Builder::Dockerfile {
            let only = [
                (self.keep, "--keep"),
                (self.build_dir.is_some(), "--build-dir"),
            ];
            if let Some((_, flag)) = only.into_iter().find(|(given, _)| *given) {
                return Err(Error::Usage(UsageError::DockerfileOnly(flag)));
            }
        }
        let mut request = BuildRequest::new(spec, reference)
            .platforms(platforms)
            .mtime(mtime)
            .config(config);
        request.outputs = outputs;
        request.added = added;
        request.engine = engine;
        request.builder = self.builder;
        request.keep = self.keep;
        request.build_dir = self.build_dir.clone();
        request.verbose = self.verbose;
        request.no_cache = self.no_cache;
        request.link_mode = self.link_mode;
        request.verify = self.rehash;
        request.shared_layers = self.shared_layers;
        request.media_types = self.media_types;
        request.artifacts = self.artifacts;
        request.push = self.registry.options(self.verbose)?;
        Ok(request)
    }
}

impl Args {
    /// `--base` as a source, checked but not read.
    fn base_source(&self) -> Result<Option<crate::Source>, Error> {
        Ok(self.base.as_deref().map(crate::Source::parse).transpose()?)
    }

    /// `request` (what [`request`](Self::request) made of these arguments) on `--base`,
    /// read now: a `cache:SPEC` base is built first if the cache lacks it.
    pub fn on_base(
        &self,
        request: BuildRequest,
        progress: &mut Progress,
    ) -> Result<BuildRequest, Error> {
        Ok(match self.base_source()? {
            Some(source) => {
                let base = crate::Base::read(&source, &request.all_platforms(), progress)?;
                request.base(base)
            }
            None => request,
        })
    }
}

/// `SOURCE_DATE_EPOCH`, when set: seconds that RFC 3339 can still write (year 9999).
pub(crate) fn source_date_epoch() -> Result<u64, Error> {
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

/// Why `text`, given to a size flag, is not a size: the grammar's error without its talk
/// of layers (`is not a number`, `has an unknown unit `XB``).
pub(crate) fn size_reason(text: &str, error: &crate::spec::SpecError) -> String {
    let message = error.to_string();
    message
        .strip_prefix(&format!("layer size `{text}` "))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("is not a size: {}", message.replace("layer size ", "size ")))
}

/// Status lines on stderr, unless `--quiet`.
fn progress(quiet: bool) -> Progress {
    if quiet {
        // `--quiet` means nothing but errors, the speed hint of a debug build included.
        crate::speed::silence();
        Progress::hidden()
    } else {
        Progress::stderr()
    }
}

/// A `--json` summary on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let json = serde_json::to_string_pretty(value).map_err(|e| Error::Metadata(e.into()))?;
    print_stdout(&format!("{json}\n"))
}

/// Data for pipes goes to stdout; a closed stdout is an error, not a panic.
/// Writes `text` to stderr at once: failures found, as opposed to the report on stdout.
pub(crate) fn print_stderr(text: &str) -> Result<(), Error> {
    let mut stderr = std::io::stderr().lock();
    stderr
        .write_all(text.as_bytes())
        .and_then(|()| stderr.flush())
        .map_err(Error::io("write to", "stderr"))
}

pub(crate) fn print_stdout(text: &str) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(Error::io("write to", "stdout"))
}

/// Runs the command line; status goes to stderr, the `--json` summary to stdout.
pub fn run(args: &Args) -> Result<Built, Error> {
    let mut progress = progress(args.quiet);
    let request = args.request()?;
    if request.outputs.contains(&Output::Registry) {
        // A push that cannot connect fails the build anyway: say so before building.
        registry::check_reachable(&request.reference, &request.push)?;
    }
    let request = args.on_base(request, &mut progress)?;
    let built = if args.no_cache {
        build(&request, &mut progress)?
    } else {
        build_in_user_cache(&request, &mut progress)?
    };
    if args.json {
        print_json(&built)?;
    }
    Ok(built)
}

/// `--emit-context DIR`: the dockerfile builder's build context, for other tools to build.
pub fn emit_context(args: &Args, dir: &std::path::Path) -> Result<(), Error> {
    // The context does not name the image, but a bad IMAGE is still a mistake to report; its
    // Dockerfile carries the key `-b dockerfile` would give the image.
    let mut request = args.request()?;
    request.builder = Builder::Dockerfile;
    let mut progress = progress(args.quiet);
    crate::build::dockerfile::emit_context(&request, dir, &mut progress)
}

/// `image-maker push SOURCE IMAGE`.
pub fn push(args: &PushArgs) -> Result<Pushed, Error> {
    let source = PushSource::parse(&args.source)?;
    let target = Reference::parse(&args.image)?;
    let platforms = Platform::parse_list(&args.platform)?;
    let options = args.registry.options(args.verbose)?;
    let mut progress = progress(args.quiet);
    // Held until the push is done, so that gc leaves the cached image alone meanwhile.
    let cached;
    let (path, tag) = match source {
        PushSource::OciDir { path, tag } => (path, tag),
        PushSource::Cached { spec } => {
            // Before building (`registry::push` checks it too, once a layout is read).
            registry::check_reachable(&target, &options)?;
            let request =
                BuildRequest::new(Spec::parse(&spec)?, target.clone()).platforms(platforms);
            cached = Cache::from_env()?.acquire(&request, &mut progress)?.0;
            (cached.dir.clone(), None)
        }
    };
    let pushed = registry::push(&path, tag.as_deref(), &target, &options, &mut progress)
        .map_err(|e| crate::interrupt::check().err().unwrap_or(e))?;
    progress.stage(format!("pushed {}@{}", pushed.reference, pushed.digest));
    if args.json {
        print_json(&pushed)?;
    }
    Ok(pushed)
}

/// `image-maker completions SHELL`.
fn completions(shell: clap_complete::Shell) -> Result<(), Error> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "image-maker", &mut script);
    print_stdout(&String::from_utf8_lossy(&script))
}

/// `image-maker man`: the page of the command line, which lists the commands; each
/// command's own options are in its `--help`.
fn man() -> Result<(), Error> {
    use clap::CommandFactory;
    let mut roff = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut roff)
        .map_err(Error::io("write", "stdout"))?;
    print_stdout(&String::from_utf8_lossy(&roff))
}

/// The command that `word` is a near miss of (`verfy` → `verify`), for a word in the place
/// of a command or of a build's IMAGE.
///
/// A word with a `:`, `/` or `@` is an image reference (`verfy:1`, `mock/verfy`), and so is
/// one far from every command. Close is one edit from a command of four or five letters
/// (`sevre`, `pussh`), two from a longer one (`verfy`, `inpsect`), Damerau–Levenshtein, so
/// a swap is one edit; the three-letter commands (`tag`, `man`) have too many one-edit
/// neighbours that are plausible image names (`tar`, `map`) to count. A word that is a
/// command is no near miss either, but one in another case is (`Verify`).
pub fn near_command(word: &str) -> Option<&'static str> {
    use clap::CommandFactory;
    if word.contains([':', '/', '@']) || word.starts_with('-') {
        return None;
    }
    let typed = word;
    let word = word.to_ascii_lowercase();
    static NAMES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        Cli::command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name().to_owned())
            .collect()
    });
    NAMES
        .iter()
        .map(|name| (strsim::damerau_levenshtein(&word, name), name.as_str()))
        .filter(|(distance, name)| match name.len() {
            ..=3 => false,
            4 | 5 => *distance <= 1,
            _ => *distance <= 2,
        })
        .min_by_key(|(distance, _)| *distance)
        // `Cache` is a near miss of `cache`, which clap matches by case.
        .filter(|(distance, name)| *distance > 0 || typed != *name)
        .map(|(_, name)| name)
}

/// Runs what the command line asks for.
pub fn main(cli: &Cli) -> Result<(), CliError> {
    crate::compress::threads_from_env()?;
    if let (None, Some(args)) = (&cli.command, &cli.build) {
        if let Some(meant) = near_command(&args.image) {
            return Err(UsageError::NearCommand {
                given: args.image.clone(),
                meant,
            }
            .into());
        }
    }
    let done: Result<(), Error> = match (&cli.command, &cli.build) {
        (Some(Command::Cache(command)), _) => return cache::run(command),
        (Some(Command::Warm(args)), _) => return warm::run(args),
        (None, Some(args)) if args.emit_context.is_none() && args.dry_run => {
            return dry_run::run(args)
        }
        (Some(Command::Push(args)), _) => push(args).map(drop),
        (Some(Command::Batch(args)), _) => return batch::run(args),
        (Some(Command::Serve(args)), _) => serve::run(args),
        (Some(Command::Tag(args)), _) => serve::tag(args),
        (Some(Command::Verify(args)), _) => verify::run_verify(args),
        (Some(Command::Inspect(args)), _) => verify::run_inspect(args),
        (Some(Command::Expect(args)), _) => expect::run(args),
        (Some(Command::Completions { shell }), _) => completions(*shell),
        (Some(Command::Man), _) => man(),
        (None, Some(args)) => match &args.emit_context {
            Some(dir) => emit_context(args, dir),
            None => run(args).map(drop),
        },
        // clap requires the build arguments when no subcommand is given.
        (None, None) => Ok(()),
    };
    Ok(done?)
}

#[cfg(test)]
mod tests {
    use super::near_command;

    #[test]
    fn near_misses_of_commands_and_what_is_clearly_an_image() {
        for (typed, meant) in [
            ("verfy", "verify"),
            ("inpsect", "inspect"),
            ("sevre", "serve"),
            ("pussh", "push"),
            ("Cache", "cache"),
            ("completion", "completions"),
        ] {
            assert_eq!(near_command(typed), Some(meant), "{typed}");
        }
        for image in [
            "verify",
            "verfy:1",
            "mock/verfy",
            "tar",
            "map",
            "mock",
            "app",
            "--json",
        ] {
            assert_eq!(near_command(image), None, "{image}");
        }
    }
}
