//! `--auth basic:USER:PASS` and `--auth bearer:USER:PASS`, the second with docker's token
//! flow: `/v2/` answers 401 with `WWW-Authenticate: Bearer realm=…/token,service=…,scope=…`,
//! the client trades its credentials for a token at `/token` (GET with basic auth, or an
//! OAuth2 password grant POSTed), and sends the token.
//!
//! A token is its expiry and an HMAC of it keyed by the credentials: any server given the
//! same `--auth` accepts it, with nothing shared. Credentials and tokens are never logged
//! nor printed, and `Debug` hides them.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ServeError;

/// The `service` of the bearer challenge and tokens.
pub(crate) const SERVICE: &str = "image-maker";
/// How long a token is good for.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

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
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, user) = match self {
            Self::Basic { user, .. } => ("Basic", user),
            Self::Bearer { user, .. } => ("Bearer", user),
        };
        f.debug_struct(kind)
            .field("user", user)
            .field("password", &"…")
            .finish()
    }
}

impl Auth {
    /// Parses `basic:USER:PASS` or `bearer:USER:PASS` (the password may hold `:`). The error
    /// never repeats the password.
    pub fn parse(text: &str) -> Result<Self, ServeError> {
        let mut parts = text.splitn(3, ':');
        let kind = parts.next().unwrap_or_default();
        let user = parts.next().unwrap_or_default().to_owned();
        let password = parts.next().unwrap_or_default().to_owned();
        if user.is_empty() || password.is_empty() {
            // `--auth S3cret` would be echoed whole: say nothing of what was given.
            return Err(ServeError::AuthShape);
        }
        match kind {
            "basic" => Ok(Self::Basic { user, password }),
            "bearer" => Ok(Self::Bearer { user, password }),
            other => Err(ServeError::AuthKind(other.to_owned())),
        }
    }

    fn credentials(&self) -> (&str, &str) {
        match self {
            Self::Basic { user, password } | Self::Bearer { user, password } => (user, password),
        }
    }

    /// Whether an `Authorization` header carries the credentials (`Basic`).
    pub(crate) fn basic_matches(&self, header: Option<&str>) -> bool {
        let Some(encoded) = header.and_then(|h| strip_scheme(h, "basic")) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let (user, password) = self.credentials();
        let expected = format!("{user}:{password}");
        constant_time_eq(&decoded, expected.as_bytes())
    }

    /// Whether a request may read: `Authorization` as this kind of auth wants it.
    pub(crate) fn allows(&self, header: Option<&str>) -> bool {
        match self {
            Self::Basic { .. } => self.basic_matches(header),
            Self::Bearer { .. } => header
                .and_then(|h| strip_scheme(h, "bearer"))
                .is_some_and(|token| self.token_valid(token.trim(), now())),
        }
    }

    /// The `WWW-Authenticate` of a 401 for a request of `repository` (none for `/v2/`).
    /// `base`: `http://host:port`, as the client reached the server.
    pub(crate) fn challenge(&self, base: &str, repository: Option<&str>) -> String {
        match self {
            Self::Basic { .. } => format!("Basic realm=\"{SERVICE}\""),
            Self::Bearer { .. } => {
                let mut value = format!("Bearer realm=\"{base}/token\",service=\"{SERVICE}\"");
                if let Some(name) = repository {
                    value.push_str(&format!(",scope=\"repository:{name}:pull\""));
                }
                value
            }
        }
    }

    /// Whether this is bearer auth, which has a token endpoint.
    pub(crate) fn has_tokens(&self) -> bool {
        matches!(self, Self::Bearer { .. })
    }

    /// A token good for an hour from `now` (seconds since the epoch).
    pub(crate) fn token(&self, now: u64) -> String {
        let expiry = now + TOKEN_LIFETIME.as_secs();
        format!("{expiry}.{}", crate::digest::hex(&self.mac(expiry)))
    }

    /// Seconds a token lives.
    pub(crate) fn token_lifetime() -> u64 {
        TOKEN_LIFETIME.as_secs()
    }

    fn token_valid(&self, token: &str, now: u64) -> bool {
        let Some((expiry, mac)) = token.split_once('.') else {
            return false;
        };
        let Ok(expiry) = expiry.parse::<u64>() else {
            return false;
        };
        expiry >= now
            && constant_time_eq(
                mac.as_bytes(),
                crate::digest::hex(&self.mac(expiry)).as_bytes(),
            )
    }

    fn mac(&self, expiry: u64) -> Vec<u8> {
        let (user, password) = self.credentials();
        // Keyed by the credentials: servers with the same `--auth` agree without talking.
        let mut key = b"image-maker token v1\0".to_vec();
        key.extend_from_slice(user.as_bytes());
        key.push(0);
        key.extend_from_slice(password.as_bytes());
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
            return Vec::new();
        };
        mac.update(&expiry.to_le_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether a POSTed OAuth2 password grant (`application/x-www-form-urlencoded`) carries
    /// the credentials.
    pub(crate) fn form_matches(&self, form: &[u8]) -> bool {
        let (user, password) = self.credentials();
        let mut grant = false;
        let mut user_ok = false;
        let mut password_ok = false;
        for pair in form.split(|b| *b == b'&') {
            let text = String::from_utf8_lossy(pair);
            let (key, value) = text.split_once('=').unwrap_or((&text, ""));
            let value = percent_decode(value);
            match key {
                "grant_type" => grant = value == b"password",
                "username" => user_ok = constant_time_eq(&value, user.as_bytes()),
                "password" => password_ok = constant_time_eq(&value, password.as_bytes()),
                _ => {}
            }
        }
        grant && user_ok && password_ok
    }
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
        for shapeless in ["basic:alice", "S3cretOnly", "S3cret:"] {
            let e = Auth::parse(shapeless).expect_err("no password").to_string();
            assert!(e.contains("KIND:USER:PASS") && !e.contains("S3cret"), "{e}");
        }
    }

    #[test]
    fn basic_and_bearer_check_what_they_should() {
        let auth = Auth::parse("basic:alice:pw").expect("valid");
        assert!(auth.allows(Some(&basic("alice", "pw"))));
        assert!(!auth.allows(Some(&basic("alice", "px"))));
        assert!(!auth.allows(None));
        let bearer = Auth::parse("bearer:alice:pw").expect("valid");
        let token = bearer.token(now());
        assert!(bearer.allows(Some(&format!("Bearer {token}"))));
        assert!(
            !bearer.allows(Some(&basic("alice", "pw"))),
            "a token, not the password"
        );
        assert!(!bearer.token_valid(&bearer.token(0), now()), "expired");
        let other = Auth::parse("bearer:alice:other").expect("valid");
        assert!(!other.allows(Some(&format!("Bearer {token}"))));
        assert!(bearer.form_matches(b"grant_type=password&username=alice&password=pw&service=x"));
        assert!(!bearer.form_matches(b"grant_type=password&username=alice&password=p%77x"));
        assert!(Auth::parse("bearer:a%b:p w")
            .expect("valid")
            .form_matches(b"grant_type=password&username=a%25b&password=p+w"));
    }
}
