//! What a user sets in an image's config (`Entrypoint`, `Cmd`, `Env`, …) and on its
//! manifest (`annotations`): parsed by the grammar crate's one parser, whoever asks (the
//! command line, fixtures, the attribute macro, `serve`'s images file).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use image_maker_spec::config::ConfigError;
use image_maker_spec::config::Setting;

/// The config of an image beyond its layers: empty by default, and an empty one leaves
/// the image byte for byte as it was without it.
///
/// Each method takes a value as the command line does and checks it:
///
/// ```
/// use image_maker::ImageConfig;
///
/// let config = ImageConfig::new()
///     .entrypoint(r#"["/bin/app","-v"]"#)?
///     .cmd("--port 8080")?
///     .env("MODE=test")?
///     .workdir("/srv")?
///     .user("1000:1000")?
///     .label("team=storage")?
///     .annotation("org.opencontainers.image.title=app")?
///     .expose("8080")?
///     .stop_signal("TERM")?;
/// assert_eq!(config.exposed_ports(), ["8080/tcp"]);
/// assert_eq!(config.stop_signal_name(), Some("SIGTERM"));
/// assert!(ImageConfig::new().expose("70000").is_err());
/// # Ok::<(), image_maker::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cmd: Option<Vec<String>>,
    /// In the order given; a key given again replaces its value where it first was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workdir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    /// Sorted, each once: `80/tcp`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exposed_ports: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_signal: Option<String>,
}

impl ImageConfig {
    /// Nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Sets the value `key` names (`entrypoint`, `cmd`, `env`, `workdir`, `user`, `label`,
    /// `annotation`, `expose`, `stop_signal`), parsed from `value`.
    pub fn set(self, key: &str, value: &str) -> Result<Self, ConfigError> {
        Ok(self.apply(Setting::parse(key, value)?))
    }

    fn apply(mut self, setting: Setting) -> Self {
        match setting {
            Setting::Entrypoint(args) => self.entrypoint = Some(args),
            Setting::Cmd(args) => self.cmd = Some(args),
            Setting::Env(k, v) => match self.env.iter_mut().find(|(key, _)| *key == k) {
                Some(entry) => entry.1 = v,
                None => self.env.push((k, v)),
            },
            Setting::Workdir(dir) => self.workdir = Some(dir),
            Setting::User(user) => self.user = Some(user),
            Setting::Label(k, v) => {
                self.labels.insert(k, v);
            }
            Setting::Annotation(k, v) => {
                self.annotations.insert(k, v);
            }
            Setting::Expose(port) => {
                if let Err(at) = self.exposed_ports.binary_search(&port) {
                    self.exposed_ports.insert(at, port);
                }
            }
            Setting::StopSignal(signal) => self.stop_signal = Some(signal),
        }
        self
    }

    /// `Entrypoint`: a JSON array of strings (`["/bin/app","-v"]`), or words split on
    /// whitespace (`/bin/app -v`).
    pub fn entrypoint(self, value: &str) -> Result<Self, ConfigError> {
        self.set("entrypoint", value)
    }

    /// `Cmd`: a JSON array of strings, or words split on whitespace.
    pub fn cmd(self, value: &str) -> Result<Self, ConfigError> {
        self.set("cmd", value)
    }

    /// One `Env` entry, `KEY=VALUE` (the value may be empty).
    pub fn env(self, entry: &str) -> Result<Self, ConfigError> {
        self.set("env", entry)
    }

    /// `WorkingDir`, an absolute path.
    pub fn workdir(self, dir: &str) -> Result<Self, ConfigError> {
        self.set("workdir", dir)
    }

    /// `User`: `USER[:GROUP]`, names or numbers.
    pub fn user(self, user: &str) -> Result<Self, ConfigError> {
        self.set("user", user)
    }

    /// One of `Labels`, `KEY=VALUE`; beside image-maker's own `dev.image-maker.spec`,
    /// which it may not replace.
    pub fn label(self, entry: &str) -> Result<Self, ConfigError> {
        self.set("label", entry)
    }

    /// One of the manifest's `annotations`, `KEY=VALUE`.
    pub fn annotation(self, entry: &str) -> Result<Self, ConfigError> {
        self.set("annotation", entry)
    }

    /// One of `ExposedPorts`, `PORT[/PROTO]`: tcp (the default), udp or sctp.
    pub fn expose(self, port: &str) -> Result<Self, ConfigError> {
        self.set("expose", port)
    }

    /// `StopSignal`: a name (`SIGTERM`, `TERM`) or a number from 1 to 64.
    pub fn stop_signal(self, signal: &str) -> Result<Self, ConfigError> {
        self.set("stop_signal", signal)
    }

    /// The entrypoint's arguments, if set.
    pub fn entrypoint_args(&self) -> Option<&[String]> {
        self.entrypoint.as_deref()
    }

    /// The command's arguments, if set.
    pub fn cmd_args(&self) -> Option<&[String]> {
        self.cmd.as_deref()
    }

    /// `Env` as the config writes it: `KEY=VALUE`, in order.
    pub fn env_entries(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The working directory, if set.
    pub fn working_dir(&self) -> Option<&str> {
        self.workdir.as_deref()
    }

    /// The user, if set.
    pub fn user_name(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The labels set, without image-maker's own.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The manifest's annotations.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// `ExposedPorts`' keys, sorted: `80/tcp`.
    pub fn exposed_ports(&self) -> &[String] {
        &self.exposed_ports
    }

    /// The stop signal, normalised: `SIGTERM`, or a number.
    pub fn stop_signal_name(&self) -> Option<&str> {
        self.stop_signal.as_deref()
    }

    /// This config over `base`'s, as a derived image's over its base image's: what this
    /// one sets wins, `Env` entries and labels merge key by key, ports add up.
    #[cfg(feature = "serve")]
    pub(crate) fn over(&self, base: &ImageConfig) -> ImageConfig {
        let mut merged = base.clone();
        merged.entrypoint = self.entrypoint.clone().or(merged.entrypoint);
        merged.cmd = self.cmd.clone().or(merged.cmd);
        merged.workdir = self.workdir.clone().or(merged.workdir);
        merged.user = self.user.clone().or(merged.user);
        merged.stop_signal = self.stop_signal.clone().or(merged.stop_signal);
        for (k, v) in &self.env {
            merged = merged.apply(Setting::Env(k.clone(), v.clone()));
        }
        merged.labels.extend(self.labels.clone());
        merged.annotations.extend(self.annotations.clone());
        for port in &self.exposed_ports {
            merged = merged.apply(Setting::Expose(port.clone()));
        }
        merged
    }

    /// One line of JSON, keys sorted, that changes with any value: what the cache key
    /// hashes.
    pub(crate) fn canonical(&self) -> String {
        // Fields in a fixed order, maps sorted, ports sorted: the same config, the same text.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_parsed_and_normalised() {
        let config = ImageConfig::new()
            .env("A=1")
            .and_then(|c| c.env("B=2"))
            .and_then(|c| c.env("A=3"))
            .and_then(|c| c.expose("443"))
            .and_then(|c| c.expose("80/udp"))
            .and_then(|c| c.expose("443/tcp"))
            .and_then(|c| c.stop_signal("kill"))
            .expect("valid");
        assert_eq!(config.env_entries(), ["A=3", "B=2"]);
        assert_eq!(config.exposed_ports(), ["443/tcp", "80/udp"]);
        assert_eq!(config.stop_signal_name(), Some("SIGKILL"));
        assert!(!config.is_empty());
        assert!(ImageConfig::new().is_empty());
        assert_eq!(
            ImageConfig::new().env("=x").map_err(|e| e.to_string()),
            Err("env `=x` has an empty key".to_owned())
        );
    }

    #[test]
    fn the_canonical_text_round_trips_and_differs_by_value() {
        let a = ImageConfig::new().cmd("a b").expect("valid");
        let b = ImageConfig::new().cmd(r#"["a b"]"#).expect("valid");
        assert_ne!(a.canonical(), b.canonical());
        let back: ImageConfig = serde_json::from_str(&a.canonical()).expect("json");
        assert_eq!(back, a);
        assert_eq!(ImageConfig::new().canonical(), "{}");
    }
}
