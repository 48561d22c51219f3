//! `image-maker serve` and `image-maker tag`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::serve::{self, Auth, MetricsAccess, ServeError, ServeOptions, Server, TokenSecret};
use crate::{Cache, Error};

pub(crate) const NAMING: &str = "\
Naming:
  The tag is the layer spec with `_` for `,`, `.` for `:` and `-` for `=`
  (`image-maker tag SPEC` prints it):
    1GB,512MB            127.0.0.1:5000/mock:1GB_512MB
    100x1MB              127.0.0.1:5000/mock:100x1MB
    64MB:tree=5000       127.0.0.1:5000/mock:64MB.tree-5000
  The repository name is free (lowercase: docker and skopeo refuse any other case);
  prefixes choose a platform and faults:
    platform/linux-arm64/NAME   another platform (`-` for `/`; default linux/amd64)
    platform/linux-amd64_linux-arm64/NAME
                                an index of one image per platform (`_` for `,`)
    faults/truncate/NAME        each blob's connection closes halfway
    faults/corrupt/NAME         one byte of each blob differs from its digest
    faults/flaky/NAME           503 for the first request of each blob and manifest
    faults/missing/NAME         404 for every blob
    faults/slow-1mb/NAME        blobs at 1 MiB/s (any rate from slow-1kb: slow-512kb)
    faults/wrong-size/NAME      each blob's Content-Length is one byte too many
  A spec without a tag form (a decimal size, more than 128 characters) is named in
  `--images FILE`:
    \"mock/app:v1\" = { layers = \"1.5GB,512MB\", platform = \"linux/arm64\" }
    \"mock/app:v2\" = { layers = \"1GB\", platform = \"linux/amd64,linux/arm64\" }

Examples:
  image-maker serve --addr 127.0.0.1:5000
  docker pull 127.0.0.1:5000/mock:1GB_512MB
  skopeo inspect --tls-verify=false docker://127.0.0.1:5000/faults/flaky/mock:3x1MB";

/// `image-maker serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = NAMING)]
pub struct ServeArgs {
    /// Address and port to listen on
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:5000")]
    pub addr: String,

    /// A TOML file naming images: `"mock/app:v1" = { layers = "1GB,512MB", platform = "linux/amd64" }`
    #[arg(long, value_name = "FILE")]
    pub images: Option<PathBuf>,

    /// A TOML file as `--images` takes, whose images are built into the cache
    /// (`IMAGE_MAKER_CACHE_DIR`) at start, in the background, and served by name: their
    /// blobs are then sent from the cache's files instead of generated
    #[arg(long, value_name = "FILE")]
    pub warm: Option<PathBuf>,

    /// Require credentials: `basic:USER:PASS`, or `bearer:USER:PASS` for docker's token flow
    /// (the token endpoint is `/token`); `htpasswd:FILE` or `bearer-htpasswd:FILE` for the
    /// users of an htpasswd file of bcrypt hashes (`htpasswd -B`)
    #[arg(
        long,
        value_name = "KIND:USER:PASS|KIND:FILE",
        env = "IMAGE_MAKER_SERVE_AUTH",
        hide_env_values = true
    )]
    pub auth: Option<String>,

    /// PEM certificate chain for HTTPS (with `--tls-key`)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for HTTPS (with `--tls-cert`)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// No access log on stderr
    #[arg(short, long)]
    pub quiet: bool,

    // `/metrics`.
    /// Who may read `GET /metrics` (Prometheus text): `open` to anyone, `auth` with the
    /// `--auth` credentials as basic auth, `off` for a 404
    #[arg(
        long,
        value_name = "ACCESS",
        default_value = "open",
        value_parser = ["open", "auth", "off"],
        requires_if("auth", "auth")
    )]
    pub metrics: String,
    // Auth behind a balancer and across replicas.
    /// The URL clients reach the server by, whose `/token` bearer challenges name (default:
    /// `http(s)://` and `--addr`, with the machine's name for 0.0.0.0); e.g.
    /// `https://registry.example.com` behind a TLS-terminating balancer
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// The key of bearer tokens, at least 32 bytes (`openssl rand -hex 32`): replicas given
    /// the same one accept each other's tokens (default: random at each start)
    #[arg(
        long,
        value_name = "SECRET",
        env = "IMAGE_MAKER_SERVE_TOKEN_SECRET",
        hide_env_values = true,
        conflicts_with = "token_secret_file"
    )]
    pub token_secret: Option<String>,

    /// Read the token secret from FILE (e.g. a mounted Kubernetes Secret), whitespace
    /// around it dropped
    #[arg(long, value_name = "FILE")]
    pub token_secret_file: Option<PathBuf>,

    // What one client can hold (durations: 30s, 2m; 0s turns a timeout off).
    /// Blob streams generated at once; a quarter of them at most paced (`faults/slow-…`).
    /// A request that finds none free within 5 s is answered 429 with `Retry-After`
    #[arg(long, value_name = "N", default_value_t = ServeOptions::MAX_STREAMS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_streams: usize,

    /// Close a connection whose writes make no progress for this long (a client that
    /// stopped reading); its stream stops and frees its slot
    #[arg(long, value_name = "DUR", default_value = "30s")]
    pub write_timeout: String,

    /// Close a connection whose request headers take longer than this, from their first
    /// byte or the connection's start
    #[arg(long, value_name = "DUR", default_value = "10s")]
    pub header_timeout: String,

    /// Close a keep-alive connection idle this long between requests
    #[arg(long, value_name = "DUR", default_value = "60s")]
    pub idle_timeout: String,

    /// Close a connection whose TLS handshake takes longer than this
    #[arg(long, value_name = "DUR", default_value = "10s")]
    pub tls_handshake_timeout: String,

    /// Connections at once; more are closed as soon as accepted. The open-file limit,
    /// raised to its hard limit at start, may leave room for fewer: the start line says
    #[arg(long, value_name = "N", default_value_t = ServeOptions::MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,

    // What one request may cost: docs/serve.md gives the measurements behind the defaults.
    /// Refuse (403) an image whose layers' sizes (the spec's, per platform) sum to more;
    /// its digest pass costs about 0.8 CPU s per GiB plain, 3.2 gzip, 1.7 zstd
    #[arg(long, value_name = "SIZE", default_value = "16GB", value_parser = parse_size)]
    pub max_image_size: u64,

    /// Refuse (403) an image of more layers
    #[arg(long, value_name = "N", default_value_t = serve::limits::MAX_LAYERS)]
    pub max_layers: u64,

    /// Refuse (403) an image of more tar entries (files, directories, links, whiteouts);
    /// planning peaks at about 360 bytes an entry
    #[arg(long, value_name = "N", default_value_t = serve::limits::MAX_ENTRIES)]
    pub max_entries: u64,

    /// Digest passes at once (default: a quarter of the cores, at least 2), each on the
    /// cores shared out among them
    #[arg(long, value_name = "N", default_value_t = serve::limits::max_digest_passes() as u64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_digest_passes: u64,

    /// Digest passes waiting for one (default: 4 per pass); beyond, 429 with Retry-After
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=65536))]
    pub digest_queue: Option<u64>,

    /// Bytes of compressed layer blobs kept in memory once a whole GET has made them, so
    /// that the next GETs send them instead of compressing again (0: none kept; as much
    /// again may be held while blobs are collected)
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_size)]
    pub blob_memory: u64,

    /// Bytes of layer plans kept for streams once no stream uses them (a plan dropped is
    /// made again on demand)
    #[arg(long, value_name = "SIZE", default_value = "64MB", value_parser = parse_size)]
    pub plan_cache: u64,
}

/// glibc gives each thread that allocates under contention an arena of its own, up to 8
/// per core, and a 1 MiB chunk freed into one stays resident there: with 24 clients the
/// server peaked at 390 MiB, with two arenas at 219 MiB, at the same throughput (release
/// build, `cargo xtask bench serve-attack`). The server is one process for its whole life,
/// so this is set once, before its threads start.
#[allow(unsafe_code)] // one libc call, which no safe wrapper offers
fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable; called before the server starts any thread.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}

/// A timeout flag's value; `0s` is none.
fn timeout(text: &str) -> Result<Option<Duration>, Error> {
    let duration = super::cache::parse_duration(text)?;
    Ok((!duration.is_zero()).then_some(duration))
}

/// `--max-image-size 64GB`, `--plan-cache 16MB`: the units of a spec.
fn parse_size(text: &str) -> Result<u64, String> {
    crate::spec::parse_byte_size(text)
        .map_err(|e| format!("{e} (hint: a size as a spec writes it, e.g. `64GB` or `512MB`)"))
}

/// `image-maker tag SPEC`.
#[derive(Debug, Clone, clap::Args)]
pub struct TagArgs {
    /// The layer spec, e.g. `1GB,512MB`
    #[arg(value_name = "SPEC")]
    pub spec: String,

    /// Also print the image's digests, in the OCI form and the Docker form (`docker/NAME`
    /// serves that one): the image is built into the cache for them
    #[arg(long)]
    pub digests: bool,

    /// With --digests: the platform, or a list for an index
    #[arg(
        long,
        value_name = "P",
        default_value = "linux/amd64",
        requires = "digests"
    )]
    pub platform: String,
}

/// Prints the tag of a spec on stdout, and with `--digests` its two digests.
pub fn tag(args: &TagArgs) -> Result<(), Error> {
    let tag = crate::spec::tag_of(&args.spec)?;
    if !args.digests {
        return super::print_stdout(&format!("{tag}\n"));
    }
    let platforms = crate::Platform::parse_list(&args.platform)?;
    let request = crate::BuildRequest::new(
        crate::Spec::parse(&args.spec)?,
        crate::Reference::parse("image-maker/tag:latest")?,
    )
    .platforms(platforms)
    .mtime(super::source_date_epoch()?);
    // Its output is data: the two digests, and no status about the build they needed.
    let (cached, _) =
        crate::Cache::from_env()?.acquire(&request, &mut crate::Progress::hidden())?;
    let read = |digest: &str| {
        let path = cached
            .dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        std::fs::read(&path).map_err(Error::io("read", path))
    };
    let top = read(&cached.entry.digest)?;
    let mut failed = None;
    let docker = crate::media_types::to_docker(&top, &mut |child| {
        let converted = read(child).and_then(|bytes| {
            crate::media_types::to_docker(&bytes, &mut |_| None).map_err(Error::from)
        });
        match converted {
            Ok(bytes) => Some((crate::digest::Blob::of(&bytes).digest, bytes.len() as u64)),
            Err(e) => {
                failed = Some(e);
                None
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let docker = crate::digest::Blob::of(&docker?).digest;
    super::print_stdout(&format!(
        "{tag}\noci     {}\ndocker  {docker}\n",
        cached.entry.digest
    ))
}

/// Serves until SIGINT, SIGTERM or SIGHUP, then stops cleanly and exits 0.
pub fn run(args: &ServeArgs) -> Result<(), Error> {
    few_malloc_arenas();
    let addr: SocketAddr = args
        .addr
        .parse()
        .map_err(|_| ServeError::Addr(args.addr.clone()))?;
    let mut options = ServeOptions::new(addr);
    options.auth = args.auth.as_deref().map(Auth::parse).transpose()?;
    options.public_url = args.public_url.clone();
    options.token_secret = match (&args.token_secret, &args.token_secret_file) {
        (Some(secret), _) => Some(TokenSecret::new(secret.as_bytes())?),
        (None, Some(path)) => Some(TokenSecret::read(path)?),
        (None, None) => None,
    };
    let bearer = options.auth.as_ref().is_some_and(Auth::has_tokens);
    if options.token_secret.is_some() && !bearer {
        eprintln!("warning: the token secret is unused: only `--auth bearer…` issues tokens");
    }
    let guessed_url = bearer && options.public_url.is_none() && addr.ip().is_unspecified();
    if let Some(path) = &args.images {
        options.named = serve::read_images(path)?;
    }
    options.tls = args.tls_cert.clone().zip(args.tls_key.clone());
    options.mtime = super::source_date_epoch()?;
    options.access_log = !args.quiet;
    options.metrics = match args.metrics.as_str() {
        "auth" => MetricsAccess::Auth,
        "off" => MetricsAccess::Off,
        _ => MetricsAccess::Open,
    };
    options.max_streams = args.max_streams;
    options.write_timeout = timeout(&args.write_timeout)?;
    options.header_timeout = timeout(&args.header_timeout)?;
    options.idle_timeout = timeout(&args.idle_timeout)?;
    options.tls_handshake_timeout = timeout(&args.tls_handshake_timeout)?;
    options.max_connections = args.max_connections;
    options.max_image_size = args.max_image_size;
    options.max_layers = args.max_layers;
    options.max_entries = args.max_entries;
    options.max_digest_passes = usize::try_from(args.max_digest_passes).unwrap_or(usize::MAX);
    options.digest_queue = match args.digest_queue {
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => serve::limits::digest_queue(options.max_digest_passes),
    };
    options.plan_cache = args.plan_cache;
    options.blob_memory = args.blob_memory;
    options.cache_dir = match Cache::from_env() {
        Ok(cache) => Some(cache.root().to_path_buf()),
        Err(e) if args.warm.is_some() => return Err(e),
        Err(e) => {
            eprintln!("warning: {e}; layer digests are kept in memory only");
            None
        }
    };
    if let Some(path) = &args.warm {
        options.warm = serve::read_images(path)?;
    }
    let named: usize = options.named.values().map(|tags| tags.len()).sum();
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let server = Server::start(options)?;
    eprintln!(
        "serving on {scheme}://{} ({} connections at most; {}Ctrl-C stops)",
        server.addr(),
        server.max_connections(),
        match named {
            0 => String::new(),
            n => format!("{n} named image{}; ", if n == 1 { "" } else { "s" }),
        }
    );
    if guessed_url {
        eprintln!(
            "note: bearer challenges send clients to {}/token (the machine's name); give `--public-url` the URL clients use",
            server.public_url()
        );
    }
    while crate::interrupt::check().is_ok() {
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
    eprintln!("stopped");
    Ok(())
}
