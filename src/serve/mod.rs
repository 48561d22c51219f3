//! A registry that makes images as they are pulled: the tag names the spec, the manifest
//! is computed, and blob bytes are generated as they are sent. Nothing is stored but a few
//! bytes of digests per layer.
//!
//! ```no_run
//! use image_maker::serve::{ServeOptions, Server};
//!
//! let server = Server::start(ServeOptions::new("127.0.0.1:5000".parse()?))?;
//! // `docker pull 127.0.0.1:5000/mock:1GB_512MB`
//! server.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Names: the tag is the spec with `_` for `,`, `.` for `:` and `-` for `=`
//! (`image-maker tag SPEC` prints it); the repository name is free, but for its prefixes:
//! `faults/<fault>/…` plays a [`Fault`], `platform/<os-arch[-variant]>/…` picks the platform
//! (`platform/linux-amd64_linux-arm64/…` serves the index of both).
//! Any number of servers serve the same bytes for a name: everything is a function of it.

mod auth;
mod body;
mod bounded;
mod cached;
mod catalog;
mod conn;
mod family;
mod fault;
mod generate;
mod http;
mod images_file;
mod kept;
pub(crate) mod limits;
mod listen;
mod listing;
mod memo;
mod metrics;
mod mock;
mod name;
mod passes;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

pub use auth::{Auth, Htpasswd, TokenSecret};
pub use fault::Fault;
pub use images_file::{
    parse as parse_images, read as read_images, ImagesProblem, Named, NamedImage,
};
pub use metrics::MetricsAccess;
pub use mock::MockRegistry;

/// How a server runs.
///
/// ```no_run
/// use image_maker::serve::{Auth, ServeOptions, Server};
///
/// let mut options = ServeOptions::new("127.0.0.1:0".parse()?);
/// options.auth = Some(Auth::parse("bearer:ci:change-me")?);
/// let server = Server::start(options)?;
/// println!("serving on {}", server.addr());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen; port 0 picks a free one ([`Server::addr`] says which).
    pub addr: SocketAddr,
    /// Images named explicitly (`--images FILE`), by repository and tag.
    pub named: Named,
    /// Credentials clients must give, if any.
    pub auth: Option<Auth>,
    /// PEM certificate chain and key for HTTPS; plain HTTP without.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Modification time in every image, as `SOURCE_DATE_EPOCH` gives the CLI's builds.
    pub mtime: u64,
    /// The cache directory whose `serve/v1/` keeps the layer digests, and whose entries'
    /// layer blobs are sent as files when they are there; `None`: memory only, every blob
    /// generated.
    pub cache_dir: Option<PathBuf>,
    /// Bytes of compressed layer blobs kept in memory once a whole GET has made them
    /// (`--blob-memory`), sent from there by the next GETs; 0 keeps none.
    pub blob_memory: u64,
    /// Images to build into the cache at start, in the background (`--warm FILE`), so
    /// that their blobs are sent from it; they are served by name too. Needs `cache_dir`.
    pub warm: Named,
    /// One access-log line per request on stderr.
    pub access_log: bool,
    // `/metrics`.
    /// Who may read `GET /metrics` (the Prometheus text format): anyone by default.
    pub metrics: MetricsAccess,
    // Auth behind a balancer and across replicas.
    /// The URL clients reach the server by, e.g. `https://registry.example` behind a
    /// TLS-terminating balancer: bearer challenges send clients to its `/token`. `None`:
    /// `http(s)://` and the listening address ([`Server::public_url`] says which).
    pub public_url: Option<String>,
    /// The key of bearer tokens: replicas given the same one accept each other's tokens.
    /// `None`: a random one at each start, so tokens die with the process.
    pub token_secret: Option<TokenSecret>,

    // What one client can hold: generator threads, time, connections.
    /// Blob streams generated at once (`--max-streams`); a quarter of them at most paced.
    pub max_streams: usize,
    /// How long a connection's writes may make no progress (`--write-timeout`).
    pub write_timeout: Option<Duration>,
    /// How long a request's headers may take (`--header-timeout`).
    pub header_timeout: Option<Duration>,
    /// How long a connection may wait idle for its next request (`--idle-timeout`).
    pub idle_timeout: Option<Duration>,
    /// How long a TLS handshake may take (`--tls-handshake-timeout`).
    pub tls_handshake_timeout: Option<Duration>,
    /// Connections at once (`--max-connections`), within what the open-file limit allows.
    pub max_connections: usize,

    // What one request may cost (the CLI's `--max-…`, `--digest-queue`, `--plan-cache`).
    /// The largest image a tag may name: its layers' payload bytes (the spec's sizes),
    /// once per platform. Images of the images file are exempt.
    pub max_image_size: u64,
    /// The most layers an image a tag names may have.
    pub max_layers: u64,
    /// The most tar entries (files, directories, links, whiteouts) such an image may have.
    pub max_entries: u64,
    /// Digest passes at once; more wait in a queue of `digest_queue`, beyond which a
    /// request gets `429 TOOMANYREQUESTS`.
    pub max_digest_passes: usize,
    /// Digest passes waiting for one of `max_digest_passes`.
    pub digest_queue: usize,
    /// Bytes of layer plans kept when no stream uses them.
    pub plan_cache: u64,
}

/// The build requests of `warm`'s images, as the server serves them.
fn warm_requests(warm: &Named, mtime: u64) -> Vec<crate::BuildRequest> {
    let mut requests = Vec::new();
    for (repository, tags) in warm {
        for (tag, image) in tags {
            let Ok(reference) = crate::Reference::parse(&format!("{repository}:{tag}")) else {
                continue;
            };
            requests.push(
                crate::BuildRequest::new(image.spec.normalized(), reference)
                    .platforms(image.platforms.clone())
                    .config(image.config.clone())
                    .mtime(mtime),
            );
        }
    }
    requests
}

/// Defaults of the limits; the measurements behind them are in docs/serve.md.
impl ServeOptions {
    /// Streams at once: a stream whose client stopped reading holds about 5 MiB (its
    /// chunks in flight and in the socket) until it is cut, so 32 of them hold about 170
    /// MiB (64 held 340 MiB, release build), which leaves room under 256 MiB for planning
    /// a tree at `--max-entries`.
    pub const MAX_STREAMS: usize = 32;
    /// Writes stuck this long close the connection.
    pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Request headers, from their first byte (or the connection's start).
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// Between requests on a keep-alive connection.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// A TLS handshake.
    pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Connections at once: an idle one costs about 10 KiB (20 KiB over TLS).
    pub const MAX_CONNECTIONS: usize = 4096;
}

impl ServeOptions {
    /// Plain HTTP on `addr`, no auth, no names file, digests in memory, no access log,
    /// `/metrics` open.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            named: Named::new(),
            auth: None,
            tls: None,
            mtime: 0,
            cache_dir: None,
            warm: Named::new(),
            blob_memory: 0,
            access_log: false,
            metrics: MetricsAccess::Open,
            public_url: None,
            token_secret: None,
            max_streams: Self::MAX_STREAMS,
            write_timeout: Some(Self::WRITE_TIMEOUT),
            header_timeout: Some(Self::HEADER_TIMEOUT),
            idle_timeout: Some(Self::IDLE_TIMEOUT),
            tls_handshake_timeout: Some(Self::TLS_HANDSHAKE_TIMEOUT),
            max_connections: Self::MAX_CONNECTIONS,
            max_image_size: limits::MAX_IMAGE_SIZE,
            max_layers: limits::MAX_LAYERS,
            max_entries: limits::MAX_ENTRIES,
            max_digest_passes: limits::max_digest_passes(),
            digest_queue: limits::digest_queue(limits::max_digest_passes()),
            plan_cache: limits::PLAN_CACHE,
        }
    }
}

/// Why a server cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// `--addr` is not `IP:PORT`.
    #[error("`--addr` value `{0}` is not an address and port, e.g. `127.0.0.1:5000`")]
    Addr(String),
    /// The address cannot be listened on.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// `--auth` is not `KIND:USER:PASS` with a user and a password, nor `htpasswd:FILE`.
    /// Nothing given is repeated: any field could be the password.
    #[error("`--auth` is not KIND:USER:PASS with a user and a password, nor htpasswd:FILE")]
    AuthShape,
    /// `--auth` names a kind other than `basic`, `bearer`, `htpasswd` and
    /// `bearer-htpasswd`.
    #[error("`--auth` kind `{0}` is none of `basic`, `bearer`, `htpasswd`, `bearer-htpasswd`")]
    AuthKind(String),
    /// The htpasswd file of `--auth htpasswd:FILE` cannot be read.
    #[error("cannot read the htpasswd file `{}`: {source}", path.display())]
    HtpasswdRead {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A line of the htpasswd file is not a user and a bcrypt hash. The line's contents
    /// are never repeated: it may hold a hash or a password.
    #[error("htpasswd file `{}`{}: {detail}", path.display(), line_of(*line))]
    Htpasswd {
        /// The file.
        path: PathBuf,
        /// The line (from 1), 0 for the file as a whole.
        line: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// `--public-url` is not an `http(s)://HOST[:PORT]` URL.
    #[error("`--public-url` value `{value}` {detail}")]
    PublicUrl {
        /// The value, user information left out.
        value: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The token secret is too short to be one.
    #[error("the token secret is shorter than {min} bytes")]
    TokenSecretShort {
        /// The fewest bytes it may have.
        min: usize,
    },
    /// `--token-secret-file` cannot be read.
    #[error("cannot read the token secret file `{}`: {source}", path.display())]
    TokenSecretRead {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The operating system gave no random bytes for a token secret.
    #[error("cannot get a random token secret from the operating system: {0}")]
    Entropy(std::io::Error),
    /// The images file cannot be read.
    #[error("cannot read the images file `{}`: {source}", path.display())]
    ImagesRead {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The images file is not valid.
    #[error("images file `{}`: {problem}", path.display())]
    Images {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong in it (boxed: the spec's errors are large).
        problem: Box<ImagesProblem>,
    },
    /// A TLS certificate or key file cannot be used.
    #[error("cannot use `{}` for TLS: {detail}", path.display())]
    Tls {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The async runtime cannot start.
    #[error("cannot start the server's runtime: {0}")]
    Runtime(std::io::Error),
}

impl ServeError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Addr(_) => Some("give `--addr IP:PORT`; port 0 picks a free port".into()),
            Self::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => {
                Some("another process listens there: choose another port with `--addr`".into())
            }
            Self::AuthShape | Self::AuthKind(_) => Some(
                "write `--auth basic:USER:PASS`, `--auth bearer:USER:PASS`, or `htpasswd:FILE` / `bearer-htpasswd:FILE` for the users of an htpasswd file"
                    .into(),
            ),
            Self::Htpasswd { .. } | Self::HtpasswdRead { .. } => Some(
                "each line is `USER:HASH` with a bcrypt hash: `htpasswd -B FILE USER` (Debian's apache2-utils) adds one"
                    .into(),
            ),
            Self::PublicUrl { .. } => Some(
                "give the scheme and host clients use, e.g. `--public-url https://registry.example.com`"
                    .into(),
            ),
            Self::TokenSecretShort { .. } | Self::TokenSecretRead { .. } => Some(
                "make one with `openssl rand -hex 32`; give it in IMAGE_MAKER_SERVE_TOKEN_SECRET or with `--token-secret-file FILE`, out of `ps`"
                    .into(),
            ),
            Self::Images { .. } => Some(
                "each line is `\"repo/name:tag\" = { layers = \"1GB,512MB\", platform = \"linux/amd64\" }` (platform optional; a list serves an index)"
                    .into(),
            ),
            Self::Tls { .. } => {
                Some("`--tls-cert` takes a PEM certificate chain, `--tls-key` its PEM private key".into())
            }
            _ => None,
        }
    }

    /// 2 for bad usage, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Addr(_)
            | Self::AuthShape
            | Self::AuthKind(_)
            | Self::HtpasswdRead { .. }
            | Self::Htpasswd { .. }
            | Self::PublicUrl { .. }
            | Self::TokenSecretShort { .. }
            | Self::TokenSecretRead { .. }
            | Self::ImagesRead { .. }
            | Self::Images { .. }
            | Self::Tls { .. } => 2,
            Self::Bind { .. } | Self::Runtime(_) | Self::Entropy(_) => 1,
        }
    }
}

/// `, line N` for a line of a file, nothing for the file as a whole.
fn line_of(line: usize) -> String {
    match line {
        0 => String::new(),
        n => format!(", line {n}"),
    }
}

/// A running server: listening from [`Server::start`] on, on threads of its own, until
/// [`Server::stop`] or drop.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    public_url: String,
    max_connections: usize,
    stop: watch::Sender<bool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Server {
    /// Binds, then serves in the background; errors (a taken port, a bad certificate) come
    /// back here.
    pub fn start(options: ServeOptions) -> Result<Self, ServeError> {
        let tls = options
            .tls
            .as_ref()
            .map(|(cert, key)| listen::tls_acceptor(cert, key))
            .transpose()?;
        // Checked before anything starts: a bad URL is a usage error.
        let public_url = options
            .public_url
            .as_deref()
            .map(auth::public_url)
            .transpose()?;
        let gate = match options.auth {
            Some(auth) => {
                let secret = match options.token_secret {
                    Some(secret) => secret,
                    None => TokenSecret::random()?,
                };
                Some((auth, secret))
            }
            None => None,
        };
        let bind = |addr: SocketAddr| -> Result<(std::net::TcpListener, SocketAddr), ServeError> {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|source| ServeError::Bind { addr, source })?;
            let bound = listener.local_addr().map_err(ServeError::Runtime)?;
            listener
                .set_nonblocking(true)
                .map_err(ServeError::Runtime)?;
            Ok((listener, bound))
        };
        let (listener, addr) = bind(options.addr)?;
        // The blob store `faults/redirect/` sends blob GETs to: the same server on a port of
        // its own, as object storage is to a registry.
        let (store_listener, store_addr) = bind(SocketAddr::new(addr.ip(), 0))?;
        let store = store::Store::new(
            auth::default_public_url(store_addr, tls.is_some()),
            TokenSecret::random()?,
        );
        // From the address bound, which port 0 makes known only now; never from a request's
        // `Host`, which its client chooses.
        let public_url =
            public_url.unwrap_or_else(|| auth::default_public_url(addr, tls.is_some()));
        let max_connections = options.max_connections.min(connection_room()).max(1);
        let max_streams = options.max_streams.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("image-maker-serve")
            // On the blocking pool: the stream generators, bounded by `max_streams`
            // (paced ones within it), and bcrypt checks, at most one per core; AUTH_ROOM
            // leaves those room, so that a full stream pool never queues a login behind
            // it. Digest passes run on threads of their own (`passes`).
            .max_blocking_threads(max_streams + AUTH_ROOM)
            .build()
            .map_err(ServeError::Runtime)?;
        let streams = Arc::new(body::Streams::new(max_streams));
        let limits = listen::Limits {
            timeouts: conn::Timeouts {
                write: options.write_timeout,
                header: options.header_timeout,
                idle: options.idle_timeout,
            },
            tls_handshake: options.tls_handshake_timeout,
            max_connections,
        };
        let metrics = Arc::new(metrics::Metrics::new(options.metrics));
        let mut limited: Vec<&'static str> = limits::Limit::ALL.iter().map(|l| l.name()).collect();
        limited.extend(["digest-queue", "max-streams"]);
        metrics.limits(&limited);
        let from_cache = options
            .cache_dir
            .as_ref()
            .map(|dir| Arc::new(cached::FromCache::new(crate::Cache::at(dir))));
        let mut named = options.named;
        if let Some(from_cache) = &from_cache {
            from_cache.warm(warm_requests(&options.warm, options.mtime));
        }
        for (repository, tags) in options.warm {
            let known = named.entry(repository).or_default();
            for (tag, image) in tags {
                known.entry(tag).or_insert(image);
            }
        }
        let state = Arc::new(http::State {
            catalog: catalog::Catalog::bounded(
                options.mtime,
                options.cache_dir.map(|dir| dir.join("serve").join("v1")),
                catalog::Bounds::with_plans(options.plan_cache),
            ),
            from_cache,
            kept: Arc::new(kept::KeptBlobs::new(options.blob_memory)),
            named,
            auth: gate.map(|(auth, secret)| auth::Gate::new(auth, secret, &public_url)),
            log: options.access_log,
            seen: http::Seen::default(),
            store,
            artifact_room: tokio::sync::Semaphore::new(1),
            metrics: Arc::clone(&metrics),
            limits: limits::Limits {
                image_size: options.max_image_size,
                layers: options.max_layers,
                entries: options.max_entries,
            },
            passes: passes::Passes::new(
                options.max_digest_passes,
                options.digest_queue,
                limits::pass_threads(options.max_digest_passes),
                metrics,
            ),
        });
        let (stop, stopped) = watch::channel(false);
        // The runtime lives on a thread of its own, so that a server started (or dropped)
        // inside another runtime, as in a `#[tokio::test]`, neither nests nor blocks it.
        let thread = std::thread::Builder::new()
            .name("image-maker-serve".into())
            .spawn(move || {
                let store = listen::serve(
                    store_listener,
                    Arc::clone(&state),
                    tls.clone(),
                    Arc::clone(&streams),
                    limits,
                    stopped.clone(),
                );
                let registry = listen::serve(listener, state, tls, streams, limits, stopped);
                runtime.block_on(async move {
                    tokio::join!(registry, store);
                });
                // Generators of streams that were cut stop at their next chunk.
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            })
            .map_err(ServeError::Runtime)?;
        Ok(Self {
            addr,
            public_url,
            max_connections,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients are told to reach it by (the realm of bearer challenges is its
    /// `/token`): [`ServeOptions::public_url`], else `http(s)://` and the address, with the
    /// machine's name for an unspecified one (`0.0.0.0`).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The connections it takes at once: [`ServeOptions::max_connections`], or less if
    /// the open-file limit leaves less room.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Stops accepting, lets responses under way finish for a few seconds, and returns once
    /// everything has stopped.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// Blocking threads kept beside the stream generators for bcrypt checks (one per core at
/// most, see `auth::Gate`).
const AUTH_ROOM: usize = 32;
/// Descriptors kept for everything but connections: the listener, the runtime's, the
/// cache's files and memos, stdio.
const FD_RESERVE: u64 = 64;

/// The connections the open-file limit leaves room for, once raised to its hard limit:
/// each connection is one descriptor.
fn connection_room() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return usize::MAX;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
