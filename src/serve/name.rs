//! Repository names: `[artifacts/][no-referrers/][docker/][faults/<fault>/]…[platform/<os-arch[-variant]>[_…]/]<name>`.
//!
//! The name itself is free (any name serves any spec tag); the prefixes choose faults and
//! the platform. In a platform segment `-` stands for `/` and `_` for `,`, as in a tag:
//! `platform/linux-arm64/mock:1GB` is one platform's image, and
//! `platform/linux-amd64_linux-arm64/mock:1GB` the index of both.

use super::fault::Fault;
use crate::platform::Platform;

/// A parsed repository name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Name {
    /// The faults asked for, in order.
    pub faults: Vec<Fault>,
    /// The platforms asked for, if any: one is an image, more an index.
    pub platforms: Option<Vec<Platform>>,
    /// `no-referrers/`: the referrers API answers 404, as a registry without it does.
    pub no_referrers: bool,
    /// `docker/`: manifests and manifest lists with Docker's media types.
    pub docker: bool,
    /// `artifacts/`: a signature, an SBOM and an attestation refer to each image manifest.
    pub artifacts: bool,
    /// What is left: the name an images file knows.
    pub base: String,
}

impl Name {
    /// Parses a repository name; the error says what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, String> {
        let mut rest = name;
        let mut faults = Vec::new();
        let mut platforms = None;
        let mut no_referrers = false;
        let mut docker = false;
        let mut artifacts = false;
        loop {
            if let Some(after) = rest.strip_prefix("artifacts/") {
                artifacts = true;
                rest = after;
                continue;
            }
            if let Some(after) = rest.strip_prefix("no-referrers/") {
                no_referrers = true;
                rest = after;
            } else if let Some(after) = rest.strip_prefix("docker/") {
                docker = true;
                rest = after;
            } else if let Some(after) = rest.strip_prefix("faults/") {
                let (fault, after) = after
                    .split_once('/')
                    .ok_or_else(|| format!("`{name}` has no name after its fault"))?;
                faults.push(Fault::parse(fault)?);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("platform/") {
                let (segment, after) = after
                    .split_once('/')
                    .ok_or_else(|| format!("`{name}` has no name after its platform"))?;
                let list = segment.replace('-', "/").replace('_', ",");
                let parsed = Platform::parse_list(&list).map_err(|e| {
                    format!("{e} (in `{name}`; write `platform/linux-arm64/NAME`, or `platform/linux-amd64_linux-arm64/NAME` for an index)")
                })?;
                platforms = Some(parsed);
                rest = after;
            } else {
                break;
            }
        }
        if rest.is_empty() {
            return Err(format!("`{name}` has no name"));
        }
        Ok(Self {
            faults,
            platforms,
            no_referrers,
            docker,
            artifacts,
            base: rest.to_owned(),
        })
    }

    pub fn has(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_choose_faults_and_the_platform() {
        let plain = Name::parse("mock/app").expect("valid");
        assert_eq!(
            (plain.faults.len(), plain.platforms, plain.base.as_str()),
            (0, None, "mock/app")
        );
        let both =
            Name::parse("faults/slow-1mb/faults/flaky/platform/linux-arm-v7/mock").expect("valid");
        assert_eq!(both.faults, [Fault::Slow(1 << 20), Fault::Flaky]);
        assert_eq!(
            both.platforms.expect("platform"),
            [Platform::parse("linux/arm/v7").expect("valid")]
        );
        let index = Name::parse("platform/linux-amd64_linux-arm-v7/mock").expect("valid");
        let listed: Vec<String> = index
            .platforms
            .expect("platforms")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(listed, ["linux/amd64", "linux/arm/v7"]);
        assert!(Name::parse("platform/linux-amd64_linux-amd64/mock")
            .expect_err("twice")
            .contains("listed twice"));
        assert_eq!(both.base, "mock");
        assert!(Name::parse("faults/nope/mock")
            .expect_err("bad fault")
            .contains("`nope`"));
        assert!(Name::parse("faults/truncate").is_err());
        assert!(Name::parse("platform/linux-z80/mock")
            .expect_err("bad arch")
            .contains("z80"));
    }
}
