//! Where credentials come from: `IMAGE_MAKER_USERNAME`/`IMAGE_MAKER_PASSWORD`, else the
//! docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`): a credential
//! helper for the registry (`credHelpers`), the default store (`credsStore`), or `auths`.
//! Secrets stay inside `Credentials`, whose `Debug` hides them.

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

/// Credentials for `registry` (`host[:port]`, `docker.io` for Docker Hub), if any are set up.
pub(crate) fn lookup(registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let env = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let (Some(username), Some(password)) =
        (env("IMAGE_MAKER_USERNAME"), env("IMAGE_MAKER_PASSWORD"))
    {
        return Ok(Some(Credentials {
            username,
            password,
            source: "IMAGE_MAKER_USERNAME".into(),
        }));
    }
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
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
    from_config(&config, registry, &path)
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
    match (entry["username"].as_str(), entry["password"].as_str()) {
        (Some(username), Some(password)) => Ok(Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
            source,
        })),
        _ => Ok(None),
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
            from_config(&config, r, path)
                .expect("valid")
                .map(|c| (c.username, c.password))
        };
        assert_eq!(get("docker.io"), Some(("hub".into(), "secret".into())));
        assert_eq!(get("127.0.0.1:5000"), Some(("u".into(), "p".into())));
        assert_eq!(get("ghcr.io"), Some(("gh".into(), "token".into())));
        assert_eq!(get("quay.io"), None);
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
