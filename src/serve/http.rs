//! The read side of the OCI distribution API, answered from specs: routes, content
//! negotiation, ranges, faults, auth and the access log.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::auth::{Gate, Presented, Verdict};
use super::body::{Body, Check, Logged, Recording, Streams, Ticket, QUEUE_WAIT};
use super::bounded::Bounded;
use super::cached::Lookup;
use super::catalog::{Catalog, Stored, Work};
use super::conn::{Activity, Flushes};
use super::fault::{self, Damage, Fault, RetryAfter};
use super::images_file::Named;
use super::limits::{self, Limits, Over};
use super::listing;
use super::metrics::{BlobSource, Metrics, Route};
use super::name::Name;
use super::passes::{Busy, Failed, Passes};
use crate::platform::Platform;
use crate::spec::{spec_of_tag, Spec};

/// What every request shares.
#[derive(Debug)]
pub(crate) struct State {
    pub catalog: Catalog,
    /// The cache whose layer files are sent instead of generated, when it has them.
    pub from_cache: Option<Arc<super::cached::FromCache>>,
    /// Compressed blobs kept in memory (`--blob-memory`).
    pub kept: Arc<super::kept::KeptBlobs>,
    pub named: Named,
    pub auth: Option<Gate>,
    pub log: bool,
    /// `faults/flaky/…` and `faults/ratelimit-…/…`: how often each manifest and blob was
    /// asked for.
    pub seen: Seen,
    /// Where `faults/redirect/` sends blob GETs.
    pub store: super::store::Store,
    /// `artifacts/`: one image's SBOM is made at a time.
    pub artifact_room: tokio::sync::Semaphore,
    /// What `/metrics` says.
    pub metrics: Arc<Metrics>,
    // What one request may cost: the limits on the image a tag names, and the pool its
    // digest pass runs on.
    pub limits: Limits,
    pub passes: Passes,
}

/// The `faults/flaky/…` and `faults/ratelimit-…/…` requests seen, as SHA-256 of name and
/// reference and a count: 52 bytes or so each, the least recently seen forgotten beyond
/// 64 Ki of them (about 8 MiB with the map's own), when a request fails once more.
#[derive(Debug)]
pub(crate) struct Seen(Bounded<[u8; 32], u32>);

/// How many requests are remembered.
const SEEN_KEPT: u64 = 64 * 1024;

impl Default for Seen {
    fn default() -> Self {
        Self(Bounded::new(SEEN_KEPT, |_, _| 1))
    }
}

impl Seen {
    /// How many times `repository` and `reference` have been asked for, this one included.
    fn count(&self, repository: &str, reference: &str) -> u32 {
        use sha2::{Digest as _, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(repository.as_bytes());
        hasher.update(b"\0");
        hasher.update(reference.as_bytes());
        let key: [u8; 32] = hasher.finalize().into();
        let count = self.0.get(&key).unwrap_or(0).saturating_add(1);
        self.0.put(key, count);
        count
    }
}

/// Whether `reference` can name anything: a sha256 digest, or a tag as the distribution
/// spec spells them (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
fn well_formed(reference: &str) -> bool {
    if reference.starts_with("sha256:") {
        return crate::digest::is_sha256(reference);
    }
    let mut bytes = reference.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && reference.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The OCI endpoints this server has.
enum Endpoint<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Referrers(&'a str, &'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Upload(&'a str),
}

fn endpoint(rest: &str) -> Option<Endpoint<'_>> {
    if rest.is_empty() {
        return Some(Endpoint::Base);
    }
    if rest == "_catalog" {
        return Some(Endpoint::Catalog);
    }
    // The digest is one segment: `a/referrers/b/manifests/1KB` is a manifest of the
    // repository `a/referrers/b`.
    if let Some((name, digest)) = rest
        .rsplit_once("/referrers/")
        .filter(|(_, digest)| !digest.contains('/'))
    {
        return Some(Endpoint::Referrers(name, digest));
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Endpoint::Tags(name));
    }
    if let Some((name, _)) = rest.split_once("/blobs/uploads") {
        return Some(Endpoint::Upload(name));
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        return Some(Endpoint::Manifest(name, reference));
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        return Some(Endpoint::Blob(name, digest));
    }
    None
}

/// Answers one request, and logs it once its body is done.
pub(crate) async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Logged> {
    let started = Instant::now();
    // The path alone: a query (the token endpoint's) is nobody's business in a log.
    let line = format!(
        "{peer} \"{} {} {:?}\"",
        request.method(),
        request.uri().path(),
        request.version()
    );
    let log = state.log;
    let flushes = request.extensions().get::<Arc<Flushes>>().cloned();
    let took = route_of(request.uri().path());
    let mut response = route(&state, request, peer).await;
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    let status = response.status().as_u16();
    state.metrics.answered(took, status);
    let stream = matches!(response.body(), Body::Stream(..)).then(|| state.metrics.stream());
    let recording = Recording {
        metrics: Arc::clone(&state.metrics),
        route: took,
        stream,
    };
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    response.map(|inner| Logged {
        inner,
        line: log.then(|| format!("{line} {status}")),
        started,
        sent: 0,
        failed: false,
        declared,
        flushes,
        held: None,
        recording: Some(recording),
    })
}

/// The `route` label of a path: one of a few, whatever the path.
fn route_of(path: &str) -> Route {
    match path {
        "/token" => return Route::Token,
        "/metrics" => return Route::Metrics,
        _ => {}
    }
    let rest = path.strip_prefix("/v2/").or((path == "/v2").then_some(""));
    match rest.and_then(endpoint) {
        Some(Endpoint::Base) => Route::Base,
        Some(Endpoint::Tags(_)) => Route::Tags,
        Some(Endpoint::Manifest(..)) => Route::Manifest,
        Some(Endpoint::Blob(..)) => Route::Blob,
        Some(Endpoint::Referrers(..)) => Route::Referrers,
        Some(Endpoint::Catalog) => Route::Catalog,
        Some(Endpoint::Upload(_)) | None => Route::Other,
    }
}

async fn route(state: &Arc<State>, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = request.uri().path().to_owned();
    if path == "/metrics" {
        let admitted = match &state.auth {
            Some(gate) if state.metrics.wants_auth() => {
                let header = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                gate.admit_either(header, peer.ip()).await == Verdict::Allowed
            }
            _ => false,
        };
        return state.metrics.respond(&request, admitted);
    }
    if path == "/token" {
        return match &state.auth {
            Some(gate) if gate.has_tokens() => token(gate, &state.metrics, request, peer).await,
            _ => plain(
                StatusCode::NOT_FOUND,
                "no token endpoint: the server runs without `--auth bearer…`",
            ),
        };
    }
    // The blob store admits by its URLs' signatures, not by the registry's auth; foreign
    // layers are public, as on a vendor's server.
    if let Some(rest) = path.strip_prefix("/store/") {
        return from_store(state, rest, &request).await;
    }
    if let Some(digest) = path.strip_prefix("/foreign/") {
        if let Err(refused) = state.store.admit_foreign(digest, request.uri().query()) {
            return store_refusal(&refused);
        }
        let head = request.method() == Method::HEAD;
        let plain_name = Name::parse("mock").expect("a valid name");
        return blob(state, &plain_name, digest, &request, head).await;
    }
    let Some(rest) = path.strip_prefix("/v2/").or((path == "/v2").then_some("")) else {
        return plain(
            StatusCode::NOT_FOUND,
            "not a registry endpoint: they are under /v2/",
        );
    };
    let found = endpoint(rest);
    if let Some(gate) = &state.auth {
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let verdict = gate.admit(header, peer.ip()).await;
        if verdict != Verdict::Allowed {
            if header.is_some() {
                let kind = if gate.has_tokens() { "bearer" } else { "basic" };
                state.metrics.auth_failure(kind);
            }
            let repository = match &found {
                Some(
                    Endpoint::Tags(name)
                    | Endpoint::Manifest(name, _)
                    | Endpoint::Blob(name, _)
                    | Endpoint::Referrers(name, _)
                    | Endpoint::Upload(name),
                ) => Some(*name),
                _ => None,
            };
            return refused(&verdict, &gate.challenge(repository));
        }
    }
    let head = request.method() == Method::HEAD;
    if !head && request.method() != Method::GET {
        return read_only();
    }
    let Some(found) = endpoint(rest) else {
        return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such endpoint");
    };
    let query = request.uri().query();
    let (repository, item) = match found {
        Endpoint::Base => return json(head, Bytes::from_static(b"{}")),
        Endpoint::Upload(_) => return read_only(),
        Endpoint::Catalog => return catalog(state, query, head),
        Endpoint::Referrers(name, digest) => return referrers(state, name, digest, query, head),
        Endpoint::Tags(name) => (name, None),
        Endpoint::Manifest(name, reference) => (name, Some((true, reference))),
        Endpoint::Blob(name, digest) => (name, Some((false, digest))),
    };
    let name = match Name::parse(repository) {
        Ok(name) => name,
        Err(message) => return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", &message),
    };
    let Some((is_manifest, reference)) = item else {
        let (n, last) = match listing::query(query) {
            Ok(asked) => asked,
            Err(bad) => return error(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID", &bad.0),
        };
        // Synthesized names have no tags to list: every spec is one.
        let empty = std::collections::BTreeMap::new();
        let tags = state.named.get(&name.base).unwrap_or(&empty);
        let page = listing::page(tags, n, last.as_deref(), None);
        let body = serde_json::json!({ "name": repository, "tags": page.names });
        let path = format!("/v2/{repository}/tags/list");
        return paged(json(head, Bytes::from(body.to_string())), &path, page.next);
    };
    // Counted only for a reference that can name something: anything else fails on its
    // own, and would only fill the map.
    let rate_limit = Fault::rate_limit(&name.faults);
    let counted = well_formed(reference) && (name.has(Fault::Flaky) || rate_limit.is_some());
    let seen = if counted {
        state.seen.count(repository, reference)
    } else {
        0
    };
    if let Some(delay) = Fault::header_delay(&name.faults) {
        tokio::time::sleep(delay).await;
    }
    if name.has(Fault::Flaky) && seen == 1 {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the first request for this fails on purpose (faults/flaky); try again",
        );
    }
    if let Some((limit, retry)) = rate_limit.filter(|(limit, _)| seen <= *limit) {
        return rate_limited(seen, limit, retry);
    }
    let redirect = !is_manifest && !head && name.has(Fault::Redirect);
    let mut response = if is_manifest {
        manifest(state, &name, reference, &request, head).await
    } else if redirect && state.catalog.blob(reference).is_some() {
        Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, state.store.url(repository, reference))
            .header(header::CONTENT_LENGTH, 0)
            .body(Body::Empty)
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad header"))
    } else {
        blob(state, &name, reference, &request, head).await
    };
    if name.has(Fault::BadDigestHeader) {
        let digest = response.headers().get("docker-content-digest").cloned();
        if let Some(wrong) = digest.and_then(|d| other_digest(d.to_str().ok()?)) {
            response
                .headers_mut()
                .insert("docker-content-digest", wrong);
        }
    }
    response
}

/// `/store/REPOSITORY/blobs/DIGEST?expires=…&signature=…`: a blob `faults/redirect/`
/// sent here, if its URL is good and the request carries no `Authorization`.
async fn from_store(state: &State, rest: &str, request: &Request<Incoming>) -> Response<Body> {
    let Some((repository, digest)) = rest.rsplit_once("/blobs/") else {
        return plain(StatusCode::NOT_FOUND, "no such object\n");
    };
    let authorization = request.headers().contains_key(header::AUTHORIZATION);
    if let Err(refused) =
        state
            .store
            .admit(repository, digest, request.uri().query(), authorization)
    {
        return store_refusal(&refused);
    }
    let name = match Name::parse(repository) {
        Ok(name) => name,
        Err(message) => return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", &message),
    };
    let head = request.method() == Method::HEAD;
    if !head && request.method() != Method::GET {
        return read_only();
    }
    blob(state, &name, digest, request, head).await
}

/// The blob store's refusal, as S3 words it.
fn store_refusal(refused: &super::store::Refusal) -> Response<Body> {
    let mut response = Response::new(Body::full(Bytes::from_static(refused.body().as_bytes())));
    *response.status_mut() =
        StatusCode::from_u16(refused.status()).unwrap_or(StatusCode::FORBIDDEN);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

/// A 500 saying that making `what` failed, and why.
fn internal_error(what: &str, e: &dyn std::fmt::Display) -> Response<Body> {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        limits::internal(what, &e.to_string()),
    )
}

/// `faults/ratelimit-…`: the `seen`-th of the `limit` requests refused.
fn rate_limited(seen: u32, limit: u32, retry: RetryAfter) -> Response<Body> {
    let after = match retry {
        RetryAfter::Second => "1".to_owned(),
        RetryAfter::Long => fault::LONG_RETRY.as_secs().to_string(),
        RetryAfter::Date => httpdate::fmt_http_date(
            std::time::SystemTime::now() + std::time::Duration::from_secs(1),
        ),
    };
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "TOOMANYREQUESTS",
        &format!("request {seen} of the first {limit} for this is refused on purpose (faults/ratelimit); retry after {after}"),
    );
    if let Ok(value) = HeaderValue::from_str(&after) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A digest that is not `digest`: its last hex digit changed.
fn other_digest(digest: &str) -> Option<HeaderValue> {
    let (head, last) = digest.split_at(digest.len().checked_sub(1)?);
    let other = if last == "0" { "1" } else { "0" };
    HeaderValue::from_str(&format!("{head}{other}")).ok()
}

async fn manifest(
    state: &Arc<State>,
    name: &Name,
    reference: &str,
    request: &Request<Incoming>,
    head: bool,
) -> Response<Body> {
    let found = if reference.starts_with("sha256:") {
        match state.catalog.manifest_by_digest(reference) {
            Some(manifest) => manifest,
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    &format!("manifest `{reference}` is unknown here: ask for its tag first"),
                )
            }
        }
    } else {
        let (spec, config, platforms, named) = match image_of(state, name, reference) {
            Ok(image) => image,
            Err(message) => return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", &message),
        };
        // The operator's own images are exempt: the limits are on what anyone can type.
        if !named {
            if let Err(over) = limits::check(&state.limits, &spec, platforms.len()) {
                state.metrics.refused(over.limit.name());
                return over_limit(&over);
            }
        }
        if name.artifacts {
            // Before the digest pass: an image refused costs nothing.
            if let Some(refused) = artifacts_refused(&spec, platforms.len()) {
                return refused;
            }
        }
        let what = || format!("the manifest of `{}`", spec.canonical());
        // Digests in memory: the manifest costs no pass, whatever the pool is doing.
        let found = match state.catalog.image(&spec, &config, &platforms, None) {
            Ok(Some(manifest)) => manifest,
            Ok(None) => match pass(state, spec.clone(), config.clone(), platforms.clone()).await {
                Ok(manifest) => manifest,
                Err(Pass::Busy(busy)) => {
                    state.metrics.refused("digest-queue");
                    return too_many(busy);
                }
                Err(Pass::Failed(detail)) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "UNKNOWN",
                        limits::internal(&what(), &detail),
                    )
                }
            },
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UNKNOWN",
                    limits::internal(&what(), &e.to_string()),
                )
            }
        };
        if name.artifacts {
            if let Err(refused) = attach_artifacts(state, name, &spec, &config, &platforms).await {
                return refused;
            }
        }
        found
    };
    // `docker/`, or a client that takes Docker's manifests and not the OCI form (as old
    // clients do): the Docker form, as a registry that stored it would answer.
    let docker_type = match found.media_type {
        super::catalog::MANIFEST_TYPE => Some(crate::media_types::DOCKER_MANIFEST),
        super::catalog::INDEX_TYPE => Some(crate::media_types::DOCKER_LIST),
        _ => None,
    };
    let wants_docker = docker_type.is_some_and(|docker| {
        name.docker || (!accepts(request, found.media_type) && accepts(request, docker))
    });
    let found = if name.has(Fault::Foreign) && found.media_type == super::catalog::MANIFEST_TYPE {
        let url = |digest: &str| state.store.foreign_url(digest);
        match state.catalog.foreign_form(&found, &url) {
            Ok(foreign) => foreign,
            Err(e) => return internal_error("the foreign form of a manifest", &e),
        }
    } else {
        found
    };
    let found = if wants_docker {
        match state.catalog.docker_form(&found) {
            Ok(docker) => docker,
            Err(e) => return internal_error("the Docker form of a manifest", &e),
        }
    } else {
        found
    };
    if !accepts(request, found.media_type) {
        return error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            &format!(
                "the manifest is {}, which the request's Accept header leaves out",
                found.media_type
            ),
        );
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, found.media_type)
        .header(header::CONTENT_LENGTH, found.bytes.len())
        .header("docker-content-digest", &found.digest)
        .header(header::ETAG, format!("\"{}\"", found.digest))
        .body(if head {
            Body::Empty
        } else {
            Body::full(found.bytes.clone())
        })
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad header"))
}

/// The most bytes of layers an image under `artifacts/` may have: its SBOM hashes every
/// file, on one blocking thread, one image at a time.
const ARTIFACTS_MAX: u64 = 1 << 30;

/// The refusal of `spec`'s image on `platforms` platforms under `artifacts/`, when it is
/// too large for an SBOM.
fn artifacts_refused(spec: &Spec, platforms: usize) -> Option<Response<Body>> {
    let bytes = spec.total_size().saturating_mul(platforms as u64);
    if bytes > ARTIFACTS_MAX {
        return Some(error(
            StatusCode::FORBIDDEN,
            "DENIED",
            &format!(
                "artifacts/ makes an SBOM that hashes every file: images of at most {} of layers get one, and `{}` has {}",
                crate::spec::format_size(ARTIFACTS_MAX),
                spec.canonical(),
                crate::spec::format_size(bytes)
            ),
        ));
    }
    None
}

/// `artifacts/`: each platform's manifest of `spec` gets its artifacts, made once.
async fn attach_artifacts(
    state: &Arc<State>,
    name: &Name,
    spec: &Spec,
    config: &crate::ImageConfig,
    platforms: &[Platform],
) -> Result<(), Response<Body>> {
    for platform in platforms {
        let subject = match state
            .catalog
            .image(spec, config, std::slice::from_ref(platform), None)
        {
            Ok(Some(subject)) => subject,
            _ => continue,
        };
        if state
            .catalog
            .referrers(&name.base, &subject.digest)
            .is_some()
        {
            continue;
        }
        let Ok(_permit) = state.artifact_room.acquire().await else {
            continue;
        };
        let (owned, spec, platform, repository) = (
            Arc::clone(state),
            spec.clone(),
            platform.clone(),
            name.base.clone(),
        );
        let made = tokio::task::spawn_blocking(move || {
            owned
                .catalog
                .attach_artifacts(&subject, &repository, &spec, &platform)
                .map(drop)
        })
        .await;
        match made {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(internal_error("an image's artifacts", &e)),
            Err(e) => return Err(internal_error("an image's artifacts", &e)),
        }
    }
    Ok(())
}

/// Why a pass gave no manifest.
enum Pass {
    Busy(Busy),
    Failed(String),
}

/// The manifest of `spec` for `platforms` from a digest pass on the pool, shared with
/// whoever asks for the same image meanwhile. Dropped (the client left), this request no
/// longer waits for it, and a pass nobody waits for stops.
async fn pass(
    state: &Arc<State>,
    spec: Spec,
    config: crate::ImageConfig,
    platforms: Vec<Platform>,
) -> Result<Arc<super::catalog::Manifest>, Pass> {
    let mut key = spec.canonical();
    for platform in &platforms {
        key.push_str(&format!("\0{platform}"));
    }
    if !config.is_empty() {
        key.push_str(&format!("\0{}", config.canonical()));
    }
    let seconds = limits::pass_seconds(&spec, platforms.len());
    let shared = Arc::clone(state);
    let threads = state.passes.threads();
    let ticket = state
        .passes
        .join(key, seconds, move |cancel| {
            let work = Work {
                threads,
                cancel: Arc::clone(cancel),
            };
            match shared
                .catalog
                .image(&spec, &config, &platforms, Some(&work))
            {
                Ok(Some(manifest)) => Ok(manifest),
                Ok(None) => Err(Failed::Error("no manifest after a pass".into())),
                Err(_) if cancel.load(std::sync::atomic::Ordering::Relaxed) => {
                    Err(Failed::Cancelled)
                }
                Err(e) => Err(Failed::Error(e.to_string())),
            }
        })
        .map_err(Pass::Busy)?;
    ticket.wait().await.map_err(|failed| {
        Pass::Failed(match failed {
            // Only at a stop: a pass is cancelled once nobody waits for it.
            Failed::Cancelled => "the digest pass was cancelled".into(),
            Failed::Error(detail) => detail,
        })
    })
}

/// 403 `DENIED`, at once, for an image over a limit: a policy of this server, which no
/// retry changes (docker and skopeo print the message, and retry neither 403 nor 4xx
/// but 429). The one place a limit refuses a request.
fn over_limit(over: &Over) -> Response<Body> {
    error(StatusCode::FORBIDDEN, "DENIED", &over.message)
}

/// 429 `TOOMANYREQUESTS` with `Retry-After`: every digest pass is busy and the queue full.
/// The one place the pool refuses a request.
fn too_many(busy: Busy) -> Response<Body> {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "TOOMANYREQUESTS",
        &format!(
            "every digest pass is busy and the queue is full (--max-digest-passes, --digest-queue); retry in {} s",
            busy.retry_after
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(busy.retry_after));
    response
}

/// 405 `UNSUPPORTED` for a write or an upload: nothing here is stored.
fn read_only() -> Response<Body> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        "this registry is read-only: its images are made from their tags",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

type Image = (Spec, crate::ImageConfig, Vec<Platform>, bool);

/// The spec, config and platforms a tag names, and whether the images file names it (else
/// the tag itself is the spec, and the config is empty).
fn image_of(state: &State, name: &Name, tag: &str) -> Result<Image, String> {
    if let Some(image) = state.named.get(&name.base).and_then(|tags| tags.get(tag)) {
        let platforms = name
            .platforms
            .clone()
            .unwrap_or_else(|| image.platforms.clone());
        return Ok((image.spec.clone(), image.config.clone(), platforms, true));
    }
    let spec = spec_of_tag(tag).map_err(|e| {
        format!(
            "tag `{tag}` is not in the images file and names no spec ({e}); a tag is a spec with `_` for `,`, `.` for `:` and `-` for `=`, e.g. `1GB_512MB`"
        )
    })?;
    Ok((
        spec,
        crate::ImageConfig::new(),
        name.platforms
            .clone()
            .unwrap_or_else(|| vec![Platform::default()]),
        false,
    ))
}

/// Whether the request's `Accept` headers take `media_type` (no header takes anything).
fn accepts(request: &Request<Incoming>, media_type: &str) -> bool {
    let mut any = false;
    for value in request.headers().get_all(header::ACCEPT) {
        any = true;
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let range = item.split(';').next().unwrap_or_default().trim();
            if range == media_type || range == "*/*" || range == "application/*" {
                return true;
            }
        }
    }
    !any
}

async fn blob(
    state: &State,
    name: &Name,
    digest: &str,
    request: &Request<Incoming>,
    head: bool,
) -> Response<Body> {
    if !crate::digest::is_sha256(digest) {
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            &format!("`{digest}` is not a sha256 digest"),
        );
    }
    if name.has(Fault::Missing) {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "every blob is missing here on purpose (faults/missing)",
        );
    }
    let stored = state.catalog.blob(digest);
    if name.has(Fault::Foreign) && matches!(stored, Some(Stored::Layer(..))) {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "this layer is non-distributable (faults/foreign): fetch it from its manifest's `urls`",
        );
    }
    let Some(stored) = stored else {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            &format!("blob `{digest}` is unknown here: ask for a manifest that has it first"),
        );
    };
    let size = stored.size();
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Ranged::Whole, |text| parse_range(text, size));
    let (status, range) = match range {
        Ranged::Whole => (StatusCode::OK, 0..size),
        Ranged::Part(range) => (StatusCode::PARTIAL_CONTENT, range),
        Ranged::Unsatisfiable => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::Empty)
                .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad header"))
        }
    };
    let length = range.end - range.start;
    // `wrong-size`: one byte promised that never comes.
    let declared = length + u64::from(name.has(Fault::WrongSize));
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream");
    // `no-length`: a GET's bytes go chunked; a HEAD still says the size, for clients that
    // size a blob before they fetch it.
    if head || !name.has(Fault::NoLength) {
        response = response.header(header::CONTENT_LENGTH, declared);
    }
    let mut response = response
        .header(header::ACCEPT_RANGES, "bytes")
        .header("docker-content-digest", digest)
        .header(header::ETAG, format!("\"{digest}\""));
    if status == StatusCode::PARTIAL_CONTENT {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", range.start, range.end - 1),
        );
    }
    let body = if head || length == 0 {
        Body::Empty
    } else {
        let damage = Damage::of(&name.faults, size);
        let ticket = match stream_slot(state, request, damage.rate.is_some()).await {
            Ok(ticket) => ticket,
            Err(refused) => return refused,
        };
        let start = range.start;
        let kept = match &stored {
            Stored::Layer(..) => state.kept.get(digest),
            Stored::Config(_) => None,
        };
        let cached = match (&stored, &state.from_cache) {
            (Stored::Layer(..), _) if kept.is_some() => None,
            (Stored::Layer(..), Some(from_cache)) => {
                // Opening and checking a file (now and then scanning the entries) blocks.
                let (from_cache, wanted) = (Arc::clone(from_cache), digest.to_owned());
                let found = tokio::task::spawn_blocking(move || {
                    let found = from_cache.lookup(&wanted, size);
                    if let Lookup::Stale(layer) = &found {
                        from_cache.heal(layer.clone());
                    }
                    found
                })
                .await;
                match found {
                    Ok(Lookup::File(file)) => Some(file),
                    Ok(Lookup::Stale(_)) => {
                        state.metrics.blob_source(BlobSource::Stale);
                        None
                    }
                    Ok(Lookup::Missing) | Err(_) => None,
                }
            }
            _ => None,
        };
        if matches!(stored, Stored::Layer(..)) {
            state.metrics.blob_source(match (&kept, &cached) {
                (Some(_), _) => BlobSource::Memory,
                (_, Some(_)) => BlobSource::Cache,
                _ => BlobSource::Generated,
            });
        }
        // Kept from a whole, undamaged stream only: what is kept is what was checked.
        let undamaged = damage.corrupt_at.is_none() && damage.truncate_at.is_none();
        match stored {
            Stored::Layer(..) if kept.is_some() => {
                let kept = kept.expect("looked up");
                Body::generated(ticket, start, damage, move |out| kept.send(range, out))
            }
            Stored::Layer(..) if cached.is_some() => {
                let file = cached.expect("looked up");
                Body::generated(ticket, start, damage, move |out| file.send(range, out))
            }
            Stored::Config(bytes) => Body::generated(ticket, start, damage, move |out| {
                let (a, b) = (usize::try_from(range.start), usize::try_from(range.end));
                match (a, b) {
                    (Ok(a), Ok(b)) => out.write_all(&bytes[a..b]),
                    _ => Ok(()),
                }
            }),
            // A compressed blob made from its first byte to its end (whole, or a range that
            // starts in its first piece or of one whose pieces are not known) is checked
            // against what its digest pass found (its pieces' sums, or its digest) before
            // its last byte goes out: its bytes come from an encoder on several threads. A
            // plain tar is exempt: one thread writes it as a closed form of the plan, the
            // digest pass through the same code, and hashing it again doubled the CPU a
            // plain GiB costs (0.71 s against 1.28 s). So is a range made from a later
            // piece: the exactness tests hold those to the digest pass's bytes.
            Stored::Layer(layer, _)
                if layer.compressed() && range.end == size && !layer.resumes_at(range.start) =>
            {
                let threads = ticket.encoders();
                let check = Check {
                    digest: digest.to_owned(),
                    size,
                    spec: layer.spec.canonical(),
                    pieces: layer.pieces(),
                    keep: (start == 0 && undamaged)
                        .then(|| state.kept.claim(digest, size))
                        .flatten(),
                };
                Body::checked(ticket, start, damage, check, move |out| {
                    layer.write(out, threads)
                })
            }
            // Any other compressed range: from its piece, or made from the first byte with
            // the stream's own window dropping the prefix, so that it sees a client that
            // left meanwhile.
            Stored::Layer(layer, _) if layer.compressed() && !layer.seeks() => {
                let threads = ticket.encoders();
                Body::windowed(ticket, range, damage, move |out| layer.write(out, threads))
            }
            Stored::Layer(layer, _) if range == (0..size) => {
                Body::generated(ticket, start, damage, move |out| layer.hand(out, 1))
            }
            Stored::Layer(layer, _) => {
                let threads = ticket.encoders();
                Body::generated(ticket, start, damage, move |out| {
                    layer.write_range(range, out, threads)
                })
            }
        }
    };
    response
        .body(body)
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad header"))
}

/// A generator slot for a blob stream, or the 429 that says to come back: the stream
/// pool and the connection come with the request, from the listener.
async fn stream_slot(
    state: &State,
    request: &Request<Incoming>,
    paced: bool,
) -> Result<Ticket, Response<Body>> {
    let Some(streams) = request.extensions().get::<Arc<Streams>>() else {
        // Every connection the listener serves has one; a request without is a bug.
        return Err(plain(StatusCode::INTERNAL_SERVER_ERROR, "no stream pool"));
    };
    let activity = request.extensions().get::<Arc<Activity>>();
    streams.acquire(activity, paced).await.map_err(|full| {
        state.metrics.refused("max-streams");
        let (what, flag) = if full.paced {
            (
                "paced (faults/slow-…) streams",
                "a quarter of `--max-streams`",
            )
        } else {
            ("streams", "`--max-streams`")
        };
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            &format!(
                "all {} {what} are busy ({flag}) and none came free in {} s; try again",
                full.max,
                QUEUE_WAIT.as_secs()
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Ranged {
    Whole,
    Part(Range<u64>),
    Unsatisfiable,
}

/// One `Range: bytes=…` range; anything else (several ranges, another unit, nonsense) is
/// answered with the whole blob, as RFC 9110 allows.
fn parse_range(text: &str, size: u64) -> Ranged {
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ranged::Whole;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), number(first), number(last)) {
        // `-N`: the last N bytes.
        (true, _, Some(n)) if n > 0 && size > 0 => Ranged::Part(size - n.min(size)..size),
        (true, _, _) => Ranged::Unsatisfiable,
        (false, Some(a), _) if a >= size => Ranged::Unsatisfiable,
        (false, Some(a), None) if last.trim().is_empty() => Ranged::Part(a..size),
        (false, Some(a), Some(b)) if b >= a => Ranged::Part(a..b.saturating_add(1).min(size)),
        _ => Ranged::Whole,
    }
}

/// `/token`: a bearer token for the credentials, by GET with basic auth or by a POSTed
/// OAuth2 password grant, as docker, containerd and skopeo ask.
async fn token(
    gate: &Gate,
    metrics: &Metrics,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let presented = match *request.method() {
        Method::GET => Presented::basic(
            request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        ),
        Method::POST => {
            // A form of a few fields; more is not a token request.
            let limited = http_body_util::Limited::new(request.into_body(), 64 * 1024);
            match limited.collect().await {
                Ok(body) => Presented::form(&body.to_bytes()),
                Err(_) => Presented::Garbled,
            }
        }
        _ => Presented::Nothing,
    };
    let sent = !matches!(presented, Presented::Nothing);
    let token = match gate.grant(presented, peer.ip()).await {
        Ok(token) => token,
        Err(verdict) => {
            if sent {
                metrics.auth_failure("token");
            }
            return refused(&verdict, "Basic realm=\"image-maker\"");
        }
    };
    let now = super::auth::now();
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": Gate::token_lifetime(),
        "issued_at": crate::image::rfc3339(now),
    });
    json(false, Bytes::from(body.to_string()))
}

/// A 401 with `challenge`, or a 429 for a client throttled after failed attempts. Neither
/// says anything of what the request presented.
fn refused(verdict: &Verdict, challenge: &str) -> Response<Body> {
    if let Verdict::Throttled(after) = verdict {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            &format!("too many failed attempts from this address: retry in {seconds} s"),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required",
    );
    if let Ok(value) = HeaderValue::from_str(challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// `/v2/_catalog`: the images file's repositories, paged (synthesized names are endless).
fn catalog(state: &State, query: Option<&str>, head: bool) -> Response<Body> {
    let (n, last) = match listing::query(query) {
        Ok(asked) => asked,
        Err(bad) => return error(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID", &bad.0),
    };
    let page = listing::page(
        &state.named,
        n,
        last.as_deref(),
        Some(listing::CATALOG_PAGE),
    );
    let body = serde_json::json!({ "repositories": page.names });
    paged(
        json(head, Bytes::from(body.to_string())),
        "/v2/_catalog",
        page.next,
    )
}

/// `response` with a `Link` to the next page, when there is one.
fn paged(mut response: Response<Body>, path: &str, next: Option<String>) -> Response<Body> {
    if let Some(value) =
        next.and_then(|next| HeaderValue::from_str(&listing::link(path, &next)).ok())
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

/// `/v2/NAME/referrers/DIGEST`: an OCI image index of the manifests whose `subject` is
/// DIGEST (none, for these images), filtered by `artifactType` when asked; 404 under
/// `no-referrers/`, as a registry without the API answers.
fn referrers(
    state: &State,
    repository: &str,
    digest: &str,
    query: Option<&str>,
    head: bool,
) -> Response<Body> {
    let name = match Name::parse(repository) {
        Ok(name) => name,
        Err(message) => return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", &message),
    };
    if name.no_referrers {
        return plain(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if !crate::digest::is_sha256(digest) {
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            &format!("`{digest}` is not a sha256 digest"),
        );
    }
    let filter = query.unwrap_or_default().split('&').find_map(|pair| {
        pair.strip_prefix("artifactType=")
            .map(listing::percent_decode)
    });
    let artifacts = state.catalog.referrers(&name.base, digest);
    let index = crate::artifacts::referrers_index(
        artifacts.as_deref().map_or(&[][..], Vec::as_slice),
        filter.as_deref(),
    );
    let Ok(index) = index else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "the referrers index");
    };
    let mut response = typed(head, Bytes::from(index), INDEX_TYPE);
    if filter.is_some() {
        response.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    response
}

const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// A 200 of `bytes` as `media_type`.
fn typed(head: bool, bytes: Bytes, media_type: &'static str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, media_type)
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(if head { Body::Empty } else { Body::full(bytes) })
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad header"))
}

fn json(head: bool, bytes: Bytes) -> Response<Body> {
    typed(head, bytes, "application/json")
}

/// An OCI error body: `{"errors":[{"code":…,"message":…}]}`.
fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] });
    let bytes = Bytes::from(body.to_string());
    let mut response = Response::new(Body::full(bytes.clone()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    response
}

fn plain(status: StatusCode, message: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::full(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_may_hold_a_referrers_segment() {
        assert!(matches!(
            endpoint("a/referrers/b/manifests/1KB"),
            Some(Endpoint::Manifest("a/referrers/b", "1KB"))
        ));
        assert!(matches!(
            endpoint("a/referrers/sha256:00"),
            Some(Endpoint::Referrers("a", "sha256:00"))
        ));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Ranged::Part(0..100));
        assert_eq!(parse_range("bytes=900-", 1000), Ranged::Part(900..1000));
        assert_eq!(parse_range("bytes=-10", 1000), Ranged::Part(990..1000));
        assert_eq!(parse_range("bytes=-5000", 1000), Ranged::Part(0..1000));
        assert_eq!(parse_range("bytes=990-5000", 1000), Ranged::Part(990..1000));
        assert_eq!(parse_range("bytes=1000-", 1000), Ranged::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Ranged::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), Ranged::Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Ranged::Whole);
        assert_eq!(parse_range("items=0-1", 1000), Ranged::Whole);
    }
}
