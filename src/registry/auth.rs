//! Where credentials come from: `IMAGE_MAKER_USERNAME`/`IMAGE_MAKER_PASSWORD`, else the
//! docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`): a credential
//! helper for the registry (`credHelpers`), the default store (`credsStore`), or `auths`.
//! Secrets stay inside `Credentials`, whose `Debug` hides them. Half a pair (a username
//! without a password, or the reverse) is not used, and the lookup says so in a warning.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::Value;

use super::RegistryError;

/// The key docker stores Docker Hub's credentials under.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

pub(crate) struct Credentials {
    pub username: String,
    pub password: String,
    /// Where they came from, for `-v`.
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What the lookup found: credentials, if any, and warnings about a setup that looks like
/// it meant to give some (printed as `warning:` lines by the push).
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub credentials: Option<Credentials>,
    pub warnings: Vec<String>,
}

/// Credentials for `registry` (`host[:port]`, `docker.io` for Docker Hub), if any are set up.
pub(crate) fn lookup(registry: &str) -> Result<Found, RegistryError> {
    lookup_with(
        registry,
        &|name| std::env::var(name).ok().filter(|v| !v.is_empty()),
        config_path(),
    )
}

/// [`lookup`] with the environment and the config file's path given.
fn lookup_with(
    registry: &str,
    env: &dyn Fn(&str) -> Option<String>,
    config: Option<PathBuf>,
) -> Result<Found, RegistryError> {
    let mut found = Found::default();
    match (env("IMAGE_MAKER_USERNAME"), env("IMAGE_MAKER_PASSWORD")) {
        (Some(username), Some(password)) => {
            found.credentials = Some(Credentials {
                username,
                password,
                source: "IMAGE_MAKER_USERNAME".into(),
            });
            return Ok(found);
        }
        (Some(_), None) => found.warnings.push(
            "`IMAGE_MAKER_USERNAME` is set but `IMAGE_MAKER_PASSWORD` is not: ignoring it".into(),
        ),
        (None, Some(_)) => found.warnings.push(
            "`IMAGE_MAKER_PASSWORD` is set but `IMAGE_MAKER_USERNAME` is not: ignoring it".into(),
        ),
        (None, None) => {}
    }
    let Some(path) = config else {
        return Ok(found);
    };
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => {
            return Err(RegistryError::DockerConfig {
                path,
                detail: e.to_string(),
            })
        }
    };
    let config: Value = serde_json::from_slice(&text).map_err(|e| RegistryError::DockerConfig {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    found.credentials = from_config(&config, registry, &path, &mut found.warnings)?;
    Ok(found)
}

fn config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|home| PathBuf::from(home).join(".docker/config.json")),
    }
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// `https://host:port/v1/` and `host:port` name the same registry in `auths`.
fn key_matches(key: &str, registry: &str) -> bool {
    let bare = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = bare.split('/').next().unwrap_or(bare);
    host == registry || is_docker_hub(registry) && is_docker_hub(host)
}

fn from_config(
    config: &Value,
    registry: &str,
    path: &std::path::Path,
    warnings: &mut Vec<String>,
) -> Result<Option<Credentials>, RegistryError> {
    let server = if is_docker_hub(registry) {
        DOCKER_HUB
    } else {
        registry
    };
    let helper = config["credHelpers"]
        .as_object()
        .and_then(|helpers| {
            helpers
                .iter()
                .find(|(k, _)| key_matches(k, registry))
                .and_then(|(_, v)| v.as_str())
        })
        .or_else(|| config["credsStore"].as_str())
        .filter(|h| !h.is_empty());
    if let Some(helper) = helper {
        if let Some(found) = from_helper(helper, server)? {
            return Ok(Some(found));
        }
    }
    let Some((_, entry)) = config["auths"]
        .as_object()
        .and_then(|auths| auths.iter().find(|(k, _)| key_matches(k, registry)))
    else {
        return Ok(None);
    };
    let source = format!("{} (auths)", path.display());
    if let Some(encoded) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        // The message names the registry, never the value.
        let Some((username, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return Err(RegistryError::DockerConfig {
                path: path.to_path_buf(),
                detail: format!("the `auth` of `{registry}` is not base64 of `user:password`"),
            });
        };
        return Ok(Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
            source,
        }));
    }
    let field = |name: &str| entry[name].as_str().filter(|v| !v.is_empty());
    match (field("username"), field("password")) {
        (Some(username), Some(password)) => Ok(Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
            source,
        })),
        (Some(_), None) => {
            warnings.push(format!(
                "the docker config {} has a username for `{registry}` but no password: ignoring it",
                path.display()
            ));
            Ok(None)
        }
        (None, Some(_)) => {
            warnings.push(format!(
                "the docker config {} has a password for `{registry}` but no username: ignoring it",
                path.display()
            ));
            Ok(None)
        }
        (None, None) => Ok(None),
    }
}

/// `docker-credential-HELPER get`, with the server on stdin, as docker calls it.
fn from_helper(helper: &str, server: &str) -> Result<Option<Credentials>, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let failed = |detail: String| RegistryError::CredentialHelper {
        helper: program.clone(),
        registry: server.to_owned(),
        detail,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| failed(format!("cannot write to it: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        // Helpers print errors on stdout; either way they never echo the secret.
        let text = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        })
        .trim()
        .to_owned();
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(failed(text));
    }
    let reply: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| failed(format!("its answer is not JSON: {e}")))?;
    match (reply["Username"].as_str(), reply["Secret"].as_str()) {
        (Some(username), Some(secret)) if !secret.is_empty() => Ok(Some(Credentials {
            username: username.to_owned(),
            password: secret.to_owned(),
            source: program.clone(),
        })),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_auths_by_host_and_docker_hub_by_its_v1_key() {
        let config = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "127.0.0.1:5000": {"username": "u", "password": "p"},
                "https://ghcr.io": {"auth": "Z2g6dG9rZW4="}
            }
        });
        let path = std::path::Path::new("config.json");
        let get = |r: &str| {
            from_config(&config, r, path, &mut Vec::new())
                .expect("valid")
                .map(|c| (c.username, c.password))
        };
        assert_eq!(get("docker.io"), Some(("hub".into(), "secret".into())));
        assert_eq!(get("127.0.0.1:5000"), Some(("u".into(), "p".into())));
        assert_eq!(get("ghcr.io"), Some(("gh".into(), "token".into())));
        assert_eq!(get("quay.io"), None);
    }

    #[test]
    fn half_a_pair_is_a_warning_not_credentials() {
        let only = |name: &'static str| move |n: &str| (n == name).then(|| "value".to_owned());
        let found = lookup_with("r:5000", &only("IMAGE_MAKER_USERNAME"), None).expect("ok");
        assert!(found.credentials.is_none());
        assert_eq!(
            found.warnings,
            ["`IMAGE_MAKER_USERNAME` is set but `IMAGE_MAKER_PASSWORD` is not: ignoring it"]
        );
        let found = lookup_with("r:5000", &only("IMAGE_MAKER_PASSWORD"), None).expect("ok");
        assert!(found.credentials.is_none());
        assert_eq!(found.warnings.len(), 1, "{:?}", found.warnings);

        let config = serde_json::json!({
            "auths": {"r:5000": {"username": "u"}, "other:1": {"password": "p"}}
        });
        let path = std::path::Path::new("config.json");
        let mut warnings = Vec::new();
        assert!(from_config(&config, "r:5000", path, &mut warnings)
            .expect("valid")
            .is_none());
        assert!(from_config(&config, "other:1", path, &mut warnings)
            .expect("valid")
            .is_none());
        assert_eq!(
            warnings,
            [
                "the docker config config.json has a username for `r:5000` but no password: ignoring it",
                "the docker config config.json has a password for `other:1` but no username: ignoring it",
            ]
        );

        // A whole pair in the environment: no warning, and the config is not read.
        let both = |n: &str| Some(format!("{n}-value"));
        let found =
            lookup_with("r:5000", &both, Some("/nonexistent/config.json".into())).expect("ok");
        assert!(found.warnings.is_empty());
        assert_eq!(
            found.credentials.map(|c| c.username).as_deref(),
            Some("IMAGE_MAKER_USERNAME-value")
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials {
            username: "user".into(),
            password: "hunter2".into(),
            source: "test".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
