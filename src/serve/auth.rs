//! `--auth`: HTTP basic auth, or docker's token flow (`bearer…`), for one user given on the
//! command line or the users of an htpasswd file (bcrypt, as distribution and nginx take).
//!
//! The token flow: `/v2/` answers 401 with `WWW-Authenticate: Bearer
//! realm=PUBLIC_URL/token,service=…,scope=…`, the client trades its credentials for a token
//! at `/token` (GET with basic auth, or an OAuth2 password grant POSTed), and sends the token.
//! The realm is the server's public URL (`--public-url`, else the listening address), never
//! the request's `Host`, which the client picks.
//!
//! A token is `v1.USER.EXPIRY.MAC`: the MAC is an HMAC-SHA256 of the rest keyed by the
//! server's token secret. Nothing of the password goes into it, so a captured token gives
//! no way to test password guesses offline; replicas given the same secret accept each
//! other's tokens, and a random secret (the default) makes them die with the process.
//!
//! Password checks are slowed per client after a few failures ([`throttle`]), bcrypt runs off
//! the async threads a few at a time, and a verified basic credential is remembered for a
//! minute so that a basic-auth pull costs one bcrypt, not one per blob. Credentials, tokens,
//! hashes and the secret are never logged nor printed, and `Debug` hides them.

mod htpasswd;
mod throttle;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use htpasswd::Htpasswd;

use super::ServeError;
use throttle::Throttle;

/// The `service` of the bearer challenge and tokens.
pub(crate) const SERVICE: &str = "image-maker";
/// How long a token is good for.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a verified basic credential skips bcrypt: long enough for a pull's blobs, short
/// enough that nothing lingers.
const REMEMBERED_FOR: Duration = Duration::from_secs(60);
/// Verified credentials remembered at most; beyond, the expired go, then everything.
const REMEMBERED_MAX: usize = 1024;

/// Which credentials the server wants, and how.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP basic auth on every request.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// Bearer tokens from the server's own `/token` endpoint, which takes the credentials.
    Bearer {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// HTTP basic auth for the users of an htpasswd file (`--auth htpasswd:FILE`).
    Htpasswd(Htpasswd),
    /// Bearer tokens for the users of an htpasswd file (`--auth bearer-htpasswd:FILE`).
    BearerHtpasswd(Htpasswd),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { user, .. } | Self::Bearer { user, .. } => f
                .debug_struct(if self.has_tokens() { "Bearer" } else { "Basic" })
                .field("user", user)
                .field("password", &"…")
                .finish(),
            Self::Htpasswd(file) => f.debug_tuple("Htpasswd").field(file).finish(),
            Self::BearerHtpasswd(file) => f.debug_tuple("BearerHtpasswd").field(file).finish(),
        }
    }
}

impl Auth {
    /// Parses `basic:USER:PASS` or `bearer:USER:PASS` (the password may hold `:`), or
    /// `htpasswd:FILE` / `bearer-htpasswd:FILE`, whose file it reads. No error repeats any
    /// part of a password or of the file.
    pub fn parse(text: &str) -> Result<Self, ServeError> {
        let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
        match kind {
            "htpasswd" | "bearer-htpasswd" if !rest.is_empty() => {
                let file = Htpasswd::read(Path::new(rest))?;
                return Ok(if kind == "htpasswd" {
                    Self::Htpasswd(file)
                } else {
                    Self::BearerHtpasswd(file)
                });
            }
            "htpasswd" | "bearer-htpasswd" => return Err(ServeError::AuthShape),
            _ => {}
        }
        let (user, password) = rest.split_once(':').unwrap_or((rest, ""));
        if user.is_empty() || password.is_empty() {
            // `--auth S3cret` would be echoed whole: say nothing of what was given.
            return Err(ServeError::AuthShape);
        }
        let (user, password) = (user.to_owned(), password.to_owned());
        match kind {
            "basic" => Ok(Self::Basic { user, password }),
            "bearer" => Ok(Self::Bearer { user, password }),
            // A kind is a short lowercase word; anything else may be a password given
            // without its kind (`--auth S3cret:x:y`), so it is not repeated.
            other
                if other.len() <= 20
                    && other.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') =>
            {
                Err(ServeError::AuthKind(other.to_owned()))
            }
            _ => Err(ServeError::AuthShape),
        }
    }

    /// Whether this is bearer auth, which has a token endpoint.
    pub(crate) fn has_tokens(&self) -> bool {
        matches!(self, Self::Bearer { .. } | Self::BearerHtpasswd(_))
    }

    /// Whether `user` is one this server takes (a token of a user since removed is not).
    fn knows(&self, name: &str) -> bool {
        match self {
            Self::Basic { user, .. } | Self::Bearer { user, .. } => {
                constant_time_eq(name.as_bytes(), user.as_bytes())
            }
            Self::Htpasswd(file) | Self::BearerHtpasswd(file) => file.hash_of(name).is_some(),
        }
    }
}

/// The key of bearer tokens. Replicas given the same secret accept each other's tokens;
/// `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(Vec<u8>);

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(…)")
    }
}

impl TokenSecret {
    /// The fewest bytes a secret may have: 256 bits, as many as the HMAC-SHA256 it keys,
    /// for a random secret; a typed passphrase of that length has far fewer.
    pub const MIN_LEN: usize = 32;

    /// A secret given as text or bytes (`--token-secret`, `IMAGE_MAKER_SERVE_TOKEN_SECRET`),
    /// used as it is; shorter than [`TokenSecret::MIN_LEN`] bytes is an error.
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, ServeError> {
        let secret = secret.into();
        if secret.len() < Self::MIN_LEN {
            return Err(ServeError::TokenSecretShort { min: Self::MIN_LEN });
        }
        Ok(Self(secret))
    }

    /// The secret in a file (`--token-secret-file`, e.g. a mounted Kubernetes Secret),
    /// without the whitespace around it: `echo`, editors and `kubectl create secret
    /// --from-file` leave a newline.
    pub fn read(path: &Path) -> Result<Self, ServeError> {
        let fail = |source| ServeError::TokenSecretRead {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(fail)?;
        // A FIFO or a device would hang the start or never end; a secret is a few bytes.
        if !meta.is_file() || meta.len() > 64 * 1024 {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file of at most 64 KiB",
            )));
        }
        let bytes = std::fs::read(path).map_err(fail)?;
        Self::new(bytes.trim_ascii())
    }

    /// 32 bytes from the operating system's random source: tokens are good on this process
    /// only.
    pub fn random() -> Result<Self, ServeError> {
        let mut bytes = vec![0u8; Self::MIN_LEN];
        getrandom::fill(&mut bytes).map_err(|e| ServeError::Entropy(std::io::Error::from(e)))?;
        Ok(Self(bytes))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    /// The MAC of `text` for the purpose `domain` names (each purpose its own, so that no
    /// signature is good for another), as URL-safe base64.
    pub(crate) fn signature(&self, domain: &str, text: &str) -> String {
        let mut mac = self.mac();
        mac.update(domain.as_bytes());
        mac.update(b"\0");
        mac.update(text.as_bytes());
        base64_url(&mac.finalize().into_bytes())
    }

    /// Whether `signature` is [`signature`](Self::signature)'s, compared in constant time.
    pub(crate) fn signed(&self, domain: &str, text: &str, signature: &str) -> bool {
        constant_time_eq(
            self.signature(domain, text).as_bytes(),
            signature.as_bytes(),
        )
    }
}

/// The URL clients reach the server by, checked: `http` or `https`, a host, an optional
/// port, nothing after (a trailing `/` is dropped). The registry API and `/token` sit at the
/// root of that host, so a path has no place there; neither have a query or user
/// information.
pub(crate) fn public_url(text: &str) -> Result<String, ServeError> {
    let fail = |detail: &str| ServeError::PublicUrl {
        // User information may be a password: it is never repeated.
        value: match text.split_once("://") {
            Some((scheme, rest)) if rest.split('/').next().unwrap_or("").contains('@') => {
                let after = rest.split_once('@').map_or("", |(_, after)| after);
                format!("{scheme}://…@{after}")
            }
            _ => text.to_owned(),
        },
        detail: detail.to_owned(),
    };
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(fail("has no `http://` or `https://`"));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(fail("is neither `http://` nor `https://`"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(fail(
            "holds user information, which a realm clients are sent to must not",
        ));
    }
    if tail.contains(['?', '#']) {
        return Err(fail("has a query or a fragment"));
    }
    if !tail.is_empty() && tail != "/" {
        return Err(fail(
            "has a path: registry clients want `/v2/` and `/token` at the root of the host",
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((address, after)) = v6.split_once(']') else {
            return Err(fail("has an IPv6 address without its `]`"));
        };
        let Ok(ip) = address.parse::<std::net::Ipv6Addr>() else {
            return Err(fail("has a bracketed host that is not an IPv6 address"));
        };
        if ip.is_unspecified() {
            return Err(fail(
                "names the unspecified address, which no client can reach",
            ));
        }
        match after {
            "" => (authority, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (&authority[..authority.len() - after.len()], Some(port)),
                None => return Err(fail("has something other than `:PORT` after its host")),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if !authority.starts_with('[') {
        if !is_host_name(host) {
            return Err(fail("has no host name or IP address"));
        }
        if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
            return Err(fail(
                "names the unspecified address, which no client can reach",
            ));
        }
    }
    if let Some(port) = port {
        if port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || !port.parse::<u16>().is_ok_and(|p| p > 0)
        {
            return Err(fail("has a port that is not a number from 1 to 65535"));
        }
    }
    let host = host.to_ascii_lowercase();
    Ok(match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

/// The public URL when none is given: the listening address, or for an unspecified one
/// (`0.0.0.0`, `::`) the machine's name, which is how a client on another machine most
/// likely reaches it (the start line says so, and `--public-url` says better).
pub(crate) fn default_public_url(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if !addr.ip().is_unspecified() {
        return format!("{scheme}://{addr}");
    }
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| is_host_name(name) && name.parse::<IpAddr>().is_err())
        .map_or_else(|| "localhost".to_owned(), |name| name.to_ascii_lowercase());
    format!("{scheme}://{name}:{}", addr.port())
}

/// Letters, digits, `-` and `.`, as DNS names and IPv4 addresses are written.
fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A user and password a request presented.
pub(crate) struct Credentials {
    user: String,
    password: String,
}

/// What a request presents to a password check.
pub(crate) enum Presented {
    /// Nothing: a client asking for the challenge, not a failed attempt.
    Nothing,
    /// Something that is no user and password (a broken header): a failed attempt.
    Garbled,
    /// A user and password, to check.
    Credentials(Credentials),
}

impl Presented {
    /// From an `Authorization: Basic …` header.
    pub(crate) fn basic(header: Option<&str>) -> Self {
        let Some(header) = header else {
            return Self::Nothing;
        };
        let decoded = strip_scheme(header, "basic")
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
            })
            .and_then(|bytes| String::from_utf8(bytes).ok());
        match decoded.as_deref().and_then(|text| text.split_once(':')) {
            Some((user, password)) => Self::Credentials(Credentials {
                user: user.to_owned(),
                password: password.to_owned(),
            }),
            None => Self::Garbled,
        }
    }

    /// From a POSTed OAuth2 password grant (`application/x-www-form-urlencoded`).
    pub(crate) fn form(form: &[u8]) -> Self {
        let mut grant = None;
        let mut user = None;
        let mut password = None;
        for pair in form.split(|b| *b == b'&') {
            let text = String::from_utf8_lossy(pair);
            let (key, value) = text.split_once('=').unwrap_or((&text, ""));
            let value = String::from_utf8(percent_decode(value)).ok();
            match key {
                "grant_type" => grant = value,
                "username" => user = value,
                "password" => password = value,
                _ => {}
            }
        }
        match (grant.as_deref(), user, password) {
            (None, None, None) => Self::Nothing,
            (Some("password"), Some(user), Some(password)) => {
                Self::Credentials(Credentials { user, password })
            }
            _ => Self::Garbled,
        }
    }
}

/// Whether a request gets in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It does.
    Allowed,
    /// No or wrong credentials: a 401 with the challenge.
    Unauthorized,
    /// Too many failed attempts from its client: a 429, to retry after this long.
    Throttled(Duration),
}

/// Auth as a running server applies it: the credentials, the token key and realm, the
/// failure throttle, and the credentials verified lately.
pub(crate) struct Gate {
    auth: Auth,
    secret: TokenSecret,
    /// `PUBLIC_URL/token`.
    realm: String,
    throttle: Throttle,
    /// HMACs of basic credentials verified lately, and when.
    remembered: Mutex<HashMap<[u8; 32], Instant>>,
    /// bcrypt checks at once: as many as there are cores, the rest wait (asynchronously).
    checks: Arc<tokio::sync::Semaphore>,
    /// A hash to check unknown users against, so that their answer takes as long.
    decoy: Arc<OnceLock<String>>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("auth", &self.auth)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// `public_url`: checked, without a trailing `/`.
    pub(crate) fn new(auth: Auth, secret: TokenSecret, public_url: &str) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            auth,
            secret,
            realm: format!("{public_url}/token"),
            throttle: Throttle::default(),
            remembered: Mutex::default(),
            checks: Arc::new(tokio::sync::Semaphore::new(cores)),
            decoy: Arc::default(),
        }
    }

    /// Whether this is bearer auth, which has a token endpoint.
    pub(crate) fn has_tokens(&self) -> bool {
        self.auth.has_tokens()
    }

    /// Whether a request to `/v2/…` from `peer`, with this `Authorization`, gets in.
    pub(crate) async fn admit(&self, header: Option<&str>, peer: IpAddr) -> Verdict {
        if self.auth.has_tokens() {
            // A wrong token is no password guess (its MAC cannot be guessed): not throttled.
            let valid = header
                .and_then(|h| strip_scheme(h, "bearer"))
                .is_some_and(|token| self.token_user(token.trim(), now()).is_some());
            return if valid {
                Verdict::Allowed
            } else {
                Verdict::Unauthorized
            };
        }
        self.check(Presented::basic(header), peer).await.0
    }

    /// Whether a request for `/metrics` gets in: the server's basic credentials, whatever the
    /// auth kind, or one of its bearer tokens.
    pub(crate) async fn admit_either(&self, header: Option<&str>, peer: IpAddr) -> Verdict {
        let token = header.and_then(|h| strip_scheme(h, "bearer"));
        if let Some(token) = token {
            return if self.auth.has_tokens() && self.token_user(token.trim(), now()).is_some() {
                Verdict::Allowed
            } else {
                Verdict::Unauthorized
            };
        }
        self.check(Presented::basic(header), peer).await.0
    }

    /// A `/token` request's credentials from `peer`: the token, or why not.
    pub(crate) async fn grant(
        &self,
        presented: Presented,
        peer: IpAddr,
    ) -> Result<String, Verdict> {
        match self.check(presented, peer).await {
            (Verdict::Allowed, Some(user)) => Ok(self.token(&user, now())),
            (Verdict::Allowed, None) => Err(Verdict::Unauthorized),
            (verdict, _) => Err(verdict),
        }
    }

    /// The `WWW-Authenticate` of a 401 for a request of `repository` (none for `/v2/`).
    pub(crate) fn challenge(&self, repository: Option<&str>) -> String {
        if !self.auth.has_tokens() {
            return format!("Basic realm=\"{SERVICE}\"");
        }
        let mut value = format!("Bearer realm=\"{}\",service=\"{SERVICE}\"", self.realm);
        if let Some(name) = repository {
            value.push_str(&format!(",scope=\"repository:{name}:pull\""));
        }
        value
    }

    /// Seconds a token lives.
    pub(crate) fn token_lifetime() -> u64 {
        TOKEN_LIFETIME.as_secs()
    }

    /// A password check, throttled per client; the user, when it passes.
    async fn check(&self, presented: Presented, peer: IpAddr) -> (Verdict, Option<String>) {
        let credentials = match presented {
            Presented::Nothing => return (Verdict::Unauthorized, None),
            Presented::Garbled => None,
            Presented::Credentials(credentials) => Some(credentials),
        };
        let fingerprint = credentials.as_ref().map(|c| self.fingerprint(c));
        if let (Some(print), Some(c)) = (&fingerprint, &credentials) {
            if self.remembers(print) {
                // Known good credentials: no guess, and its client is forgiven.
                self.throttle.forgive(peer);
                return (Verdict::Allowed, Some(c.user.clone()));
            }
        }
        let start = match self.throttle.reserve(peer, Instant::now()) {
            Ok(start) => start,
            Err(retry) => return (Verdict::Throttled(retry), None),
        };
        // An async sleep: a throttled client holds its connection, never a thread.
        tokio::time::sleep_until(start.into()).await;
        let Some(credentials) = credentials else {
            return (Verdict::Unauthorized, None);
        };
        if !self.verify(&credentials).await {
            return (Verdict::Unauthorized, None);
        }
        self.throttle.forgive(peer);
        if let Some(print) = fingerprint {
            self.remember(print);
        }
        (Verdict::Allowed, Some(credentials.user))
    }

    async fn verify(&self, given: &Credentials) -> bool {
        let file = match &self.auth {
            Auth::Basic { user, password } | Auth::Bearer { user, password } => {
                // Both compared, whatever the first gives: timing tells nothing.
                let user_ok = constant_time_eq(given.user.as_bytes(), user.as_bytes());
                let password_ok = constant_time_eq(given.password.as_bytes(), password.as_bytes());
                return user_ok & password_ok;
            }
            Auth::Htpasswd(file) | Auth::BearerHtpasswd(file) => file,
        };
        let hash = file.hash_of(&given.user).map(str::to_owned);
        let cost = file.cost();
        let decoy = Arc::clone(&self.decoy);
        let password = given.password.clone();
        let Ok(permit) = Arc::clone(&self.checks).acquire_owned().await else {
            return false;
        };
        // bcrypt takes milliseconds to a second of CPU on purpose: not on the async threads.
        // The permit goes with the check, so a client that leaves frees no slot early.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            match hash {
                Some(hash) => bcrypt::verify(password, &hash).unwrap_or(false),
                None => {
                    let decoy = decoy.get_or_init(|| {
                        bcrypt::hash_with_salt("", cost, [0; 16])
                            .map(|parts| parts.to_string())
                            .unwrap_or_default()
                    });
                    let _ = bcrypt::verify(password, decoy);
                    false
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// An HMAC of the credentials under the secret: what is remembered is no password hash
    /// anyone could test guesses against.
    fn fingerprint(&self, credentials: &Credentials) -> [u8; 32] {
        let mut mac = self.secret.mac();
        mac.update(b"image-maker basic v1\0");
        mac.update(credentials.user.as_bytes());
        mac.update(b"\0");
        mac.update(credentials.password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn remembers(&self, print: &[u8; 32]) -> bool {
        let remembered = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        remembered
            .get(print)
            .is_some_and(|at| at.elapsed() < REMEMBERED_FOR)
    }

    fn remember(&self, print: [u8; 32]) {
        let mut remembered = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        if remembered.len() >= REMEMBERED_MAX {
            remembered.retain(|_, at| at.elapsed() < REMEMBERED_FOR);
            if remembered.len() >= REMEMBERED_MAX {
                remembered.clear();
            }
        }
        remembered.insert(print, Instant::now());
    }

    /// `v1.USER.EXPIRY.MAC`, good for an hour from `now` (seconds since the epoch).
    fn token(&self, user: &str, now: u64) -> String {
        let expiry = now + TOKEN_LIFETIME.as_secs();
        let signed = format!("v1.{}.{expiry}", base64_url(user.as_bytes()));
        let mac = self.sign(&signed);
        format!("{signed}.{}", base64_url(&mac))
    }

    fn sign(&self, signed: &str) -> [u8; 32] {
        let mut mac = self.secret.mac();
        mac.update(b"image-maker token\0");
        mac.update(SERVICE.as_bytes());
        mac.update(b"\0");
        mac.update(signed.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The user of a valid token.
    fn token_user(&self, token: &str, now: u64) -> Option<String> {
        let (signed, mac) = token.rsplit_once('.')?;
        if !constant_time_eq(mac.as_bytes(), base64_url(&self.sign(signed)).as_bytes()) {
            return None;
        }
        let mut fields = signed.split('.');
        let (Some("v1"), Some(user), Some(expiry), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        let expiry = expiry.parse::<u64>().ok()?;
        let user = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(user)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())?;
        (expiry >= now && self.auth.knows(&user)).then_some(user)
    }
}

fn base64_url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.trim().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// Compares without stopping at the first difference, so timing tells nothing of a secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', high, low]) => hex(*high).zip(hex(*low)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    fn gate(auth: &str, secret: &[u8]) -> Gate {
        Gate::new(
            Auth::parse(auth).expect("valid"),
            TokenSecret::new(secret).expect("long enough"),
            "http://127.0.0.1:5000",
        )
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn block<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn parsing_never_repeats_the_password() {
        let auth = Auth::parse("basic:alice:s3:cr3t").expect("valid");
        assert_eq!(
            auth,
            Auth::Basic {
                user: "alice".into(),
                password: "s3:cr3t".into()
            }
        );
        assert!(!format!("{auth:?}").contains("s3"));
        let e = Auth::parse("digest:alice:hunter2")
            .expect_err("unknown kind")
            .to_string();
        assert!(e.contains("`digest`") && !e.contains("hunter2"), "{e}");
        for shapeless in [
            "basic:alice",
            "S3cretOnly",
            "S3cret:",
            "S3cret:x:y",
            "htpasswd:",
            "bearer-htpasswd",
        ] {
            let e = Auth::parse(shapeless).expect_err("no password").to_string();
            assert!(e.contains("KIND:USER:PASS") && !e.contains("S3cret"), "{e}");
        }
    }

    #[test]
    fn basic_and_bearer_check_what_they_should() {
        block(async {
            let auth = gate("basic:alice:pw", SECRET);
            assert_eq!(
                auth.admit(Some(&basic("alice", "pw")), PEER).await,
                Verdict::Allowed
            );
            assert_eq!(
                auth.admit(Some(&basic("alice", "px")), PEER).await,
                Verdict::Unauthorized
            );
            assert_eq!(auth.admit(None, PEER).await, Verdict::Unauthorized);
            let bearer = gate("bearer:alice:pw", SECRET);
            let token = bearer.token("alice", now());
            assert_eq!(
                bearer.admit(Some(&format!("Bearer {token}")), PEER).await,
                Verdict::Allowed
            );
            assert_eq!(
                bearer.admit(Some(&basic("alice", "pw")), PEER).await,
                Verdict::Unauthorized,
                "a token, not the password"
            );
            assert!(
                bearer
                    .token_user(&bearer.token("alice", 0), now())
                    .is_none(),
                "expired"
            );
            assert!(
                bearer
                    .token_user(&bearer.token("bob", now()), now())
                    .is_none(),
                "no such user"
            );
            let other = gate("bearer:alice:pw", b"another secret, just as long: 32+");
            assert_eq!(
                other.admit(Some(&format!("Bearer {token}")), PEER).await,
                Verdict::Unauthorized,
                "another secret"
            );
            let form = |body: &[u8]| match Presented::form(body) {
                Presented::Credentials(c) => Some((c.user, c.password)),
                _ => None,
            };
            assert_eq!(
                form(b"grant_type=password&username=alice&password=pw&service=x"),
                Some(("alice".into(), "pw".into()))
            );
            assert_eq!(
                form(b"grant_type=password&username=a%25b&password=p+w"),
                Some(("a%b".into(), "p w".into()))
            );
            assert!(matches!(Presented::form(b"service=x"), Presented::Nothing));
            assert!(matches!(
                Presented::form(b"grant_type=refresh_token&refresh_token=x"),
                Presented::Garbled
            ));
            assert!(bearer
                .grant(
                    Presented::form(b"grant_type=password&username=alice&password=pw"),
                    PEER
                )
                .await
                .is_ok());
        });
    }

    #[test]
    fn a_token_reveals_nothing_of_the_password_and_binds_its_user_and_expiry() {
        let one = gate("bearer:alice:change-me", SECRET);
        let two = gate("bearer:alice:something-else", SECRET);
        let now = now();
        // The password is not in the MAC's input: the same user, secret and expiry give the
        // same token whatever the password, so nothing in it can confirm a guess.
        assert_eq!(one.token("alice", now), two.token("alice", now));
        let token = one.token("alice", now);
        let (signed, mac) = token.rsplit_once('.').expect("MAC");
        let later = signed.replace(&format!(".{}", now + 3600), &format!(".{}", now + 999_999));
        assert!(
            one.token_user(&format!("{later}.{mac}"), now).is_none(),
            "a changed expiry"
        );
        let mallory = signed.replace(&base64_url(b"alice"), &base64_url(b"mallory"));
        assert!(
            one.token_user(&format!("{mallory}.{mac}"), now).is_none(),
            "a changed user"
        );
        assert_eq!(one.token_user(&token, now).as_deref(), Some("alice"));
    }

    #[test]
    fn short_secrets_are_refused_and_never_shown() {
        let e = TokenSecret::new("short-s3cret")
            .expect_err("short")
            .to_string();
        assert!(e.contains("32 bytes") && !e.contains("s3cret"), "{e}");
        let secret = TokenSecret::random().expect("random");
        assert_ne!(secret, TokenSecret::random().expect("random"));
        assert_eq!(format!("{secret:?}"), "TokenSecret(…)");
    }

    #[test]
    fn public_urls_are_an_origin_and_nothing_more() {
        for (given, taken) in [
            (
                "https://registry.example.com",
                "https://registry.example.com",
            ),
            (
                "HTTPS://Registry.Example.com:8443/",
                "https://registry.example.com:8443",
            ),
            ("http://10.0.0.5:5000", "http://10.0.0.5:5000"),
            ("http://[::1]:5000", "http://[::1]:5000"),
        ] {
            assert_eq!(public_url(given).expect(given), taken);
        }
        for (given, says) in [
            ("registry.example.com", "no `http://`"),
            ("ftp://registry.example.com", "neither"),
            ("https://registry.example.com/v2", "a path"),
            ("https://registry.example.com?x=1", "a query"),
            ("https://", "no host"),
            ("https://reg_istry", "no host"),
            ("http://0.0.0.0:5000", "unspecified"),
            ("http://[::]:5000", "unspecified"),
            ("http://host:99999", "port"),
            ("http://host:", "port"),
        ] {
            let e = public_url(given).expect_err(given).to_string();
            assert!(e.contains(says) && e.contains(given), "{given}: {e}");
        }
        let e = public_url("https://alice:hunter2@registry.example").expect_err("userinfo");
        let e = e.to_string();
        assert!(
            e.contains("user information") && !e.contains("hunter2"),
            "{e}"
        );
        assert!(e.contains("https://…@registry.example"), "{e}");
    }

    #[test]
    fn the_default_public_url_is_the_address_or_the_machine_for_any_address() {
        let addr = |text: &str| text.parse::<SocketAddr>().expect("address");
        assert_eq!(
            default_public_url(addr("127.0.0.1:5000"), false),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            default_public_url(addr("[::1]:443"), true),
            "https://[::1]:443"
        );
        let any = default_public_url(addr("0.0.0.0:5000"), false);
        assert!(
            any.starts_with("http://") && any.ends_with(":5000"),
            "{any}"
        );
        public_url(&any).expect("a valid URL");
    }
}
