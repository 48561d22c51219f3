//! `GET /metrics`: what the server did and is doing, in the Prometheus text format
//! (version 0.0.4), for a scraper.
//!
//! Every label has a bounded set of values chosen here (a route, a status code, a limit's
//! flag, an auth kind), never the path or repository name a client sends: a client cannot
//! grow the output nor the memory behind it.
//!
//! Cheap on the hot path: a blob's chunks touch nothing here (its body counts its own bytes
//! and adds them once, when it is done); a request costs a few atomic additions, one shared
//! read lock (the status code's counter) and the lock of its route's own histogram.
//!
//! prometheus-client (the Prometheus project's Rust client) makes the registry and the text.
//! Its `prometheus_text` encoder is used rather than its OpenMetrics one: `promtool check
//! metrics` reads the Prometheus text format only, and reports every OpenMetrics counter as
//! a metric with no help, as OpenMetrics names a counter's family without `_total`.

use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::body::Body;

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MetricsAccess {
    /// Anyone who reaches the port, with or without `--auth`: a scraper seldom has registry
    /// credentials, and what it reads names no image, path nor credential.
    #[default]
    Open,
    /// Only with the server's credentials, as HTTP basic auth (a Prometheus `basic_auth`
    /// scrape), whatever the auth kind; a bearer token of the server is taken too. With no
    /// auth configured, nobody.
    Auth,
    /// `/metrics` answers 404 (the counting goes on: it costs next to nothing).
    Off,
}

/// The route a request took: the `route` label, a fixed set whatever the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v2/`.
    Base,
    /// `/v2/NAME/tags/list`.
    Tags,
    /// `/v2/NAME/manifests/REF`.
    Manifest,
    /// `/v2/NAME/blobs/DIGEST`.
    Blob,
    /// `/v2/NAME/referrers/DIGEST`.
    Referrers,
    /// `/v2/_catalog`.
    Catalog,
    /// `/token`.
    Token,
    /// `/metrics`.
    Metrics,
    /// Anything else: uploads, other paths.
    Other,
}

impl Route {
    const ALL: [Route; 9] = [
        Self::Base,
        Self::Tags,
        Self::Manifest,
        Self::Blob,
        Self::Referrers,
        Self::Catalog,
        Self::Token,
        Self::Metrics,
        Self::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Tags => "tags",
            Self::Manifest => "manifest",
            Self::Blob => "blob",
            Self::Referrers => "referrers",
            Self::Catalog => "catalog",
            Self::Token => "token",
            Self::Metrics => "metrics",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Answered {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ByRoute {
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ByLimit {
    limit: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BySource {
    source: &'static str,
}

/// Where a layer blob's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobSource {
    /// Kept in memory (`--blob-memory`).
    Memory,
    /// A cache entry's file.
    Cache,
    /// Made from the spec.
    Generated,
    /// A cache file whose stamp failed: generated, and its entry checked.
    Stale,
}

impl BlobSource {
    const ALL: [Self; 4] = [Self::Memory, Self::Cache, Self::Generated, Self::Stale];

    fn label(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Cache => "cache",
            Self::Generated => "generated",
            Self::Stale => "stale-cache",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ByKind {
    kind: &'static str,
}

/// One route's byte counter and duration histogram, made at start so that a request finds
/// them by index, without a lock.
#[derive(Debug)]
struct PerRoute {
    sent: Counter,
    duration: Histogram,
}

/// The server's metrics: one per server, shared by every request (`State::metrics`).
///
/// For code that other parts of the server run (each is an atomic operation or two):
/// - the digest-pass pool: [`Metrics::pass_queued`] when a pass joins the queue and
///   [`Metrics::pass_running`] when it starts; each returns a guard that counts it out when
///   dropped, so a pass that is abandoned, fails or panics is counted out too;
/// - the limits: [`Metrics::limits`] once at start with every limit's flag name, then
///   [`Metrics::refused`] with one of them, once per refused request;
/// - auth: [`Metrics::auth_failure`] with `basic`, `bearer` or `token`, once per rejected
///   credential (not for a request that sends none, the first step of every login);
/// - the connection cap: [`Metrics::connection`] for each accepted connection, held as long
///   as it is open, and [`Metrics::connection_refused`] for each one turned away.
#[derive(Debug)]
pub(crate) struct Metrics {
    access: MetricsAccess,
    registry: Registry,
    requests: Family<Answered, Counter>,
    routes: [PerRoute; Route::ALL.len()],
    streams: Gauge,
    passes_running: Gauge,
    passes_queued: Gauge,
    refusals: Family<ByLimit, Counter>,
    auth_failures: Family<ByKind, Counter>,
    connections_open: Gauge,
    connections_refused: Counter,
    blob_sources: Family<BySource, Counter>,
}

/// Counts one in a gauge for as long as it lives.
#[derive(Debug)]
#[must_use = "the gauge counts this one only while the guard lives"]
pub(crate) struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Seconds: a manifest takes milliseconds (or a digest pass of seconds), a blob stream as
/// long as its bytes take; past 5 minutes the count alone says enough.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 100.0, 300.0,
];

impl Metrics {
    pub fn new(access: MetricsAccess) -> Self {
        let mut registry = Registry::with_prefix("image_maker");
        let requests = Family::<Answered, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by route and status code (counted when the response starts)",
            requests.clone(),
        );
        let sent = Family::<ByRoute, Counter>::default();
        let duration =
            Family::<ByRoute, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                Histogram::new(DURATION_BUCKETS)
            });
        // Each route's own counter and histogram, made now: clones of the families' own
        // (the same atomics), so that a request reaches them by index, without the lock.
        let routes = Route::ALL.map(|route| {
            let labels = ByRoute {
                route: route.label(),
            };
            PerRoute {
                sent: sent.get_or_create_owned(&labels),
                duration: duration.get_or_create_owned(&labels),
            }
        });
        registry.register_with_unit(
            "http_response_body",
            "Response body bytes sent, by route (counted when the body ends or is dropped)",
            Unit::Bytes,
            sent,
        );
        registry.register_with_unit(
            "http_request_duration",
            "From the request's headers to the end of its response body, by route",
            Unit::Seconds,
            duration,
        );
        let streams = Gauge::default();
        registry.register(
            "blob_streams_active",
            "Blob bodies being generated and sent",
            streams.clone(),
        );
        let passes_running = Gauge::default();
        registry.register(
            "digest_passes_running",
            "Digest passes (hashing an image's layers) running",
            passes_running.clone(),
        );
        let passes_queued = Gauge::default();
        registry.register(
            "digest_passes_queued",
            "Digest passes waiting for a place in the pool",
            passes_queued.clone(),
        );
        let refusals = Family::<ByLimit, Counter>::default();
        registry.register(
            "limit_refusals",
            "Requests refused by a limit, by the limit's flag",
            refusals.clone(),
        );
        let auth_failures = Family::<ByKind, Counter>::default();
        // Zeros from the start: `rate()` and `increase()` need a series before the first one.
        for kind in ["basic", "bearer", "token"] {
            let _ = auth_failures.get_or_create(&ByKind { kind });
        }
        registry.register(
            "auth_failures",
            "Credentials given and rejected, by kind (basic, bearer, token)",
            auth_failures.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Client connections closed at once, over the connection cap",
            connections_refused.clone(),
        );
        let blob_sources = Family::<BySource, Counter>::default();
        for source in BlobSource::ALL {
            let _ = blob_sources.get_or_create(&BySource {
                source: source.label(),
            });
        }
        registry.register(
            "layer_blob_bodies",
            "Layer blob bodies started, by where their bytes come from: kept in memory (memory), a cache entry's file (cache), made from the spec (generated), or made because a cached file failed its stamp (stale-cache)",
            blob_sources.clone(),
        );
        Self {
            blob_sources,
            access,
            registry,
            requests,
            routes,
            streams,
            passes_running,
            passes_queued,
            refusals,
            auth_failures,
            connections_open,
            connections_refused,
        }
    }

    /// A response starts: counted by route and status.
    pub fn answered(&self, route: Route, status: u16) {
        let labels = Answered {
            route: route.label(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// A blob body starts; it is counted until the guard is dropped.
    pub fn stream(&self) -> GaugeGuard {
        GaugeGuard::new(&self.streams)
    }

    /// A response body is done (sent, broken off or dropped): its bytes and its time.
    pub fn done(&self, route: Route, sent: u64, elapsed: Duration) {
        let per = &self.routes[route as usize];
        per.sent.inc_by(sent);
        per.duration.observe(elapsed.as_secs_f64());
    }

    /// A digest pass waits in the pool's queue until the guard is dropped.
    pub fn pass_queued(&self) -> GaugeGuard {
        GaugeGuard::new(&self.passes_queued)
    }

    /// A layer blob's body starts, its bytes from `source`.
    pub fn blob_source(&self, source: BlobSource) {
        self.blob_sources
            .get_or_create(&BySource {
                source: source.label(),
            })
            .inc();
    }

    /// A digest pass runs until the guard is dropped.
    pub fn pass_running(&self) -> GaugeGuard {
        GaugeGuard::new(&self.passes_running)
    }

    /// A request is refused by the limit `limit`: its flag's name without `--`
    /// (`max-image-size`; `digest-queue` or `max-streams` for a 429 of a full pool). `'static`, so that no
    /// client's text becomes a label.
    pub fn refused(&self, limit: &'static str) {
        self.refusals.get_or_create(&ByLimit { limit }).inc();
    }

    /// Shows a zero for each of these limits (flag names, as [`Metrics::refused`] takes
    /// them) until their first refusal: a series that appears only then is missed by
    /// `rate()`, and a limit nobody hit yet would not be listed at all.
    pub fn limits(&self, limits: &[&'static str]) {
        for &limit in limits {
            let _ = self.refusals.get_or_create(&ByLimit { limit });
        }
    }

    /// Credentials of kind `kind` (`basic`, `bearer` or `token`: a `/token` request) were
    /// given and rejected.
    pub fn auth_failure(&self, kind: &'static str) {
        self.auth_failures.get_or_create(&ByKind { kind }).inc();
    }

    /// A client connection is open until the guard is dropped.
    pub fn connection(&self) -> GaugeGuard {
        GaugeGuard::new(&self.connections_open)
    }

    /// A client connection was closed at once, over the cap.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// The text a scrape reads.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; a metric's encoding here cannot either.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }

    /// `GET /metrics`, or a refusal, as [`MetricsAccess`] says.
    /// Whether `/metrics` asks for the server's credentials (`--metrics auth`).
    pub fn wants_auth(&self) -> bool {
        self.access == MetricsAccess::Auth
    }

    /// `admitted`: whether the request carries the server's credentials, when that matters.
    pub fn respond(&self, request: &Request<Incoming>, admitted: bool) -> Response<Body> {
        let allowed = match self.access {
            MetricsAccess::Open => true,
            MetricsAccess::Off => {
                return plain(
                    StatusCode::NOT_FOUND,
                    "no metrics here: the server runs with `--metrics off`",
                )
            }
            MetricsAccess::Auth => admitted,
        };
        if !allowed {
            let mut response = plain(
                StatusCode::UNAUTHORIZED,
                "`/metrics` wants the server's credentials (`--metrics auth`), as basic auth",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"image-maker\""),
            );
            return response;
        }
        let head = request.method() == Method::HEAD;
        if !head && request.method() != Method::GET {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "`/metrics` is read with GET",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let text = Bytes::from(self.render());
        let mut response = Response::new(if head {
            Body::Empty
        } else {
            Body::full(text.clone())
        });
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
        response
    }
}

fn plain(status: StatusCode, message: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::full(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = status;
    response
}
