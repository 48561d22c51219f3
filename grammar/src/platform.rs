//! `os/arch[/variant]`, as in `--platform linux/arm64`.

use std::fmt;

const OSES: &[&str] = &[
    "linux",
    "windows",
    "darwin",
    "freebsd",
    "netbsd",
    "openbsd",
    "solaris",
    "illumos",
    "aix",
    "plan9",
    "dragonfly",
    "android",
    "ios",
    "js",
    "wasip1",
];
const ARCHES: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le", "mips64",
    "mipsle", "mips", "loong64", "wasm",
];

/// The platform an image is built for, as the image config and index record it;
/// `linux/amd64` by default.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// The OCI `os`, in Go's spelling: `linux`, `windows`, `darwin`, ….
    pub os: String,
    /// The OCI `architecture`, in Go's spelling: `amd64`, `arm64`, `arm`, ….
    pub architecture: String,
    /// The OCI `variant`, e.g. `v7` for `linux/arm/v7`; `None` when not given.
    pub variant: Option<String>,
}

/// What is wrong with a `--platform` value; each variant holds the value as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The value has fewer than two or more than three `/`-separated parts, or an empty
    /// variant.
    #[error("platform `{0}` is not of the form os/arch[/variant]")]
    Form(String),
    /// The operating system is not one of the `GOOS` values OCI platforms use.
    #[error("unknown operating system `{os}` in platform `{platform}`")]
    Os {
        /// The operating system as given.
        os: String,
        /// The whole value.
        platform: String,
    },
    /// The architecture is not one of the `GOARCH` values OCI platforms use.
    #[error("unknown architecture `{arch}` in platform `{platform}`")]
    Arch {
        /// The architecture as given.
        arch: String,
        /// The whole value.
        platform: String,
    },
    /// The variant has characters other than lowercase letters and digits.
    #[error("variant `{variant}` in platform `{platform}` is not lowercase letters and digits")]
    Variant {
        /// The variant as given.
        variant: String,
        /// The whole value.
        platform: String,
    },
    /// A platform list names the same platform twice.
    #[error("platform `{platform}` is listed twice in `{list}`")]
    Duplicate {
        /// The platform, as written the second time.
        platform: String,
        /// The whole list.
        list: String,
    },
}

impl PlatformError {
    /// What the user can do about it: the forms a platform takes.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Duplicate { .. } => {
                "list each platform once: an index holds one image per platform"
            }
            _ => "platforms look like `linux/amd64`, `linux/arm64` or `linux/arm/v7`",
        }
    }
}

impl Default for Platform {
    fn default() -> Self {
        Self {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl Platform {
    /// Parses a comma-separated list, as in `--platform linux/amd64,linux/arm64`: one
    /// platform is a single image, more are an index with one image each, in this order.
    pub fn parse_list(input: &str) -> Result<Vec<Self>, PlatformError> {
        let mut list: Vec<Self> = Vec::new();
        for part in input.split(',') {
            // An empty item names nothing to show: the whole list is what was mistyped.
            if part.trim().is_empty() {
                return Err(PlatformError::Form(input.to_owned()));
            }
            let platform = Self::parse(part.trim())?;
            if list.contains(&platform) {
                return Err(PlatformError::Duplicate {
                    platform: part.trim().to_owned(),
                    list: input.to_owned(),
                });
            }
            list.push(platform);
        }
        Ok(list)
    }

    /// A list as `--platform` takes it: `linux/amd64,linux/arm64`.
    pub fn join(list: &[Self]) -> String {
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parses `os/arch[/variant]`, as in `--platform linux/arm/v7`.
    pub fn parse(input: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = input.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] if !variant.is_empty() => (*os, *arch, Some(*variant)),
            _ => return Err(PlatformError::Form(input.to_owned())),
        };
        if !OSES.contains(&os) {
            return Err(PlatformError::Os {
                os: os.to_owned(),
                platform: input.to_owned(),
            });
        }
        if !ARCHES.contains(&arch) {
            return Err(PlatformError::Arch {
                arch: arch.to_owned(),
                platform: input.to_owned(),
            });
        }
        if let Some(v) = variant {
            if !v
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(PlatformError::Variant {
                    variant: v.to_owned(),
                    platform: input.to_owned(),
                });
            }
        }
        Ok(Self {
            os: os.to_owned(),
            architecture: arch.to_owned(),
            variant: variant.map(str::to_owned),
        })
    }
}

/// `platform == "linux/arm64"` compares the text form.
impl PartialEq<str> for Platform {
    // Through the text form: the one spelling that `parse` and `Display` agree on.
    #[allow(clippy::cmp_owned)]
    fn eq(&self, other: &str) -> bool {
        self.to_string() == other
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, PlatformError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(Platform::parse("linux/amd64"), Ok(Platform::default()));
        assert_eq!(
            Platform::parse("linux/arm/v7").map(|p| p.to_string()),
            Ok("linux/arm/v7".into())
        );
        assert!(matches!(
            Platform::parse("linux"),
            Err(PlatformError::Form(_))
        ));
        assert!(matches!(
            Platform::parse("linux/arm/"),
            Err(PlatformError::Form(_))
        ));
        assert!(matches!(
            Platform::parse("linux/arm/v 7"),
            Err(PlatformError::Variant { .. })
        ));
        assert!(matches!(
            Platform::parse("linux/x86"),
            Err(PlatformError::Arch { .. })
        ));
        assert!(matches!(
            Platform::parse("temple/amd64"),
            Err(PlatformError::Os { .. })
        ));
    }

    #[test]
    fn lists_keep_their_order_and_refuse_repeats() {
        let list = Platform::parse_list("linux/arm64, linux/amd64,linux/arm/v7").expect("valid");
        let names: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["linux/arm64", "linux/amd64", "linux/arm/v7"]);
        assert_eq!(
            Platform::parse_list("linux/amd64,linux/arm64,linux/amd64"),
            Err(PlatformError::Duplicate {
                platform: "linux/amd64".into(),
                list: "linux/amd64,linux/arm64,linux/amd64".into()
            })
        );
        assert_eq!(
            Platform::parse_list("linux/amd64,,linux/arm64"),
            Err(PlatformError::Form("linux/amd64,,linux/arm64".into()))
        );
        // Another variant is another platform.
        assert!(Platform::parse_list("linux/arm/v6,linux/arm/v7").is_ok());
    }
}
