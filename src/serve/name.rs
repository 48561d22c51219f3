//! Repository names: `[faults/<fault>/]…[platform/<os-arch[-variant]>/]<name>`.
//!
//! The name itself is free (any name serves any spec tag); the prefixes choose faults and
//! the platform. In a platform segment `-` stands for `/`, as in a tag `-` stands for `=`:
//! `platform/linux-arm64/mock:1GB`.

use super::fault::Fault;
use crate::platform::Platform;

/// A parsed repository name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Name {
    /// The faults asked for, in order.
    pub faults: Vec<Fault>,
    /// The platform asked for, if any.
    pub platform: Option<Platform>,
    /// What is left: the name an images file knows.
    pub base: String,
}

impl Name {
    /// Parses a repository name; the error says what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, String> {
        let mut rest = name;
        let mut faults = Vec::new();
        let mut platform = None;
        loop {
            if let Some(after) = rest.strip_prefix("faults/") {
                let (fault, after) = after
                    .split_once('/')
                    .ok_or_else(|| format!("`{name}` has no name after its fault"))?;
                faults.push(Fault::parse(fault)?);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("platform/") {
                let (segment, after) = after
                    .split_once('/')
                    .ok_or_else(|| format!("`{name}` has no name after its platform"))?;
                let parsed = Platform::parse(&segment.replace('-', "/"))
                    .map_err(|e| format!("{e} (in `{name}`; write `platform/linux-arm64/NAME`)"))?;
                platform = Some(parsed);
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
            platform,
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
            (plain.faults.len(), plain.platform, plain.base.as_str()),
            (0, None, "mock/app")
        );
        let both =
            Name::parse("faults/slow-1MB/faults/flaky/platform/linux-arm-v7/mock").expect("valid");
        assert_eq!(both.faults, [Fault::Slow(1 << 20), Fault::Flaky]);
        assert_eq!(both.platform.expect("platform").to_string(), "linux/arm/v7");
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
