//! The registry client: a current-thread tokio runtime (the library's API stays
//! synchronous), `oci-client` for authentication and the standard requests, and a plain
//! `reqwest` client on the same connection settings for what `oci-client` lacks.

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;

use super::auth::{self, Credentials};
use super::{RegistryError, RegistryOptions};
use crate::Reference;

pub(crate) struct Session {
    pub runtime: tokio::runtime::Runtime,
    pub client: oci_client::Client,
    pub http: reqwest::Client,
    /// The target in `oci-client`'s terms (Docker Hub resolved as docker does).
    pub image: oci_client::Reference,
    /// `http://host:port` or `https://host`.
    pub base: reqwest::Url,
    /// `host[:port]` as the user wrote it, for messages.
    pub registry: String,
    pub auth: RegistryAuth,
    /// The `Authorization` our own requests send, once `authenticate` has run.
    pub authorization: Option<String>,
    pub credentials: Option<Credentials>,
    /// Said once as `warning:` lines: credentials that were half set up.
    pub auth_warnings: Vec<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Loopback registries speak plain HTTP, as docker assumes for 127.0.0.0/8.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Connects once to `target`'s registry before anything is built for it. A registry that
/// refuses the connection (nothing listens there) does not start listening during the
/// retries' few seconds, and the build before the push would be wasted; any other outcome
/// (connected, timed out, a name that does not resolve) is left to the push and its
/// retries. Through a proxy the registry's own address says nothing, so none is tried.
pub fn check_reachable(target: &Reference, options: &RegistryOptions) -> Result<(), RegistryError> {
    use std::net::{TcpStream, ToSocketAddrs};
    let proxied = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    if proxied {
        return Ok(());
    }
    let registry = target.domain().unwrap_or("docker.io").to_owned();
    let Ok(image) = target.normalized().parse::<oci_client::Reference>() else {
        return Ok(());
    };
    let host = image.resolve_registry().to_owned();
    let has_port = match host.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => host.contains(':'),
    };
    let address = match (has_port, options.insecure || is_loopback(&registry)) {
        (true, _) => host,
        (false, true) => format!("{host}:80"),
        (false, false) => format!("{host}:443"),
    };
    let Ok(addrs) = address.to_socket_addrs() else {
        return Ok(());
    };
    let mut refused = Vec::new();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused.push(addr),
            _ => return Ok(()),
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(RegistryError::Refused {
        registry,
        address: refused
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

impl Session {
    pub fn new(target: &Reference, options: &RegistryOptions) -> Result<Self, RegistryError> {
        let client_error = |step: &'static str| {
            move |e: &dyn std::fmt::Display| RegistryError::Client {
                step,
                detail: e.to_string(),
            }
        };
        // reqwest is built without a bundled provider; the process-wide default may already
        // be installed (by an earlier push, or by the embedding program), which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = target.domain().unwrap_or("docker.io").to_owned();
        let image: oci_client::Reference = target
            .normalized()
            .parse()
            .map_err(|e| client_error("the image's name")(&e))?;
        let resolved = image.resolve_registry().to_owned();
        let plain = options.insecure || is_loopback(&registry);
        let scheme = if plain { "http" } else { "https" };
        let base = reqwest::Url::parse(&format!("{scheme}://{resolved}"))
            .map_err(|e| client_error("the registry's URL")(&e))?;
        let connect_timeout = Duration::from_secs(10);
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::HttpsExcept(vec![resolved])
            } else {
                ClientProtocol::Https
            },
            use_monolithic_push: true,
            connect_timeout: Some(connect_timeout),
            read_timeout: Some(options.timeout),
            user_agent: concat!("image-maker/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = oci_client::Client::new(config);
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .read_timeout(options.timeout)
            .user_agent(concat!("image-maker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| client_error("the HTTP client")(&e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| client_error("the async runtime")(&e))?;
        let auth::Found {
            credentials,
            warnings: auth_warnings,
        } = auth::lookup(&registry)?;
        let auth = match &credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Ok(Self {
            runtime,
            client,
            http,
            image,
            base,
            registry,
            auth,
            authorization: None,
            credentials,
            auth_warnings,
        })
    }

    /// Asks the registry how to authenticate (anonymous, basic, or a bearer token for
    /// push and pull on the repository) and remembers the answer for every request.
    pub async fn authenticate(
        &self,
    ) -> Result<Option<String>, oci_client::errors::OciDistributionError> {
        self.authenticate_for(RegistryOperation::Push).await
    }

    /// The same for `operation`: `verify` and `inspect` only pull.
    pub async fn authenticate_for(
        &self,
        operation: RegistryOperation,
    ) -> Result<Option<String>, oci_client::errors::OciDistributionError> {
        let token = self.client.auth(&self.image, &self.auth, operation).await?;
        Ok(match (token, &self.credentials) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some(c)) => {
                use base64::Engine as _;
                let pair = format!("{}:{}", c.username, c.password);
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            (None, None) => None,
        })
    }

    /// Adds the `Authorization` header, but only to the registry itself: an upload location
    /// on another host (object storage) must not see the credentials.
    pub fn authorize(
        &self,
        url: &reqwest::Url,
        request: reqwest::RequestBuilder,
    ) -> reqwest::RequestBuilder {
        match &self.authorization {
            Some(value) if url.origin() == self.base.origin() => {
                request.header(reqwest::header::AUTHORIZATION, value)
            }
            _ => request,
        }
    }

    /// `/v2/<repository>/blobs/uploads/` on this registry.
    pub fn uploads_url(&self) -> Result<reqwest::Url, RegistryError> {
        self.base
            .join(&format!("/v2/{}/blobs/uploads/", self.image.repository()))
            .map_err(|e| RegistryError::Client {
                step: "the upload URL",
                detail: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.1.2.3"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("ghcr.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("localhost.example.com"));
    }
}
