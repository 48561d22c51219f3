//! Image references, `[host[:port]/]path[:tag]`, checked by the rules registries and
//! engines apply, so a bad name fails here rather than after the data is written.

use std::fmt;

/// A validated `name[:tag]`; the tag defaults to `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: Option<String>,
    path: String,
    tag: String,
}

/// What is wrong with an image name; each variant holds the name as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The name is the empty string.
    #[error("the image name is empty")]
    Empty,
    /// The name contains a space, tab or newline anywhere.
    #[error("image name `{0}` contains whitespace")]
    Whitespace(String),
    /// The repository path (not the host or tag) has an uppercase letter.
    #[error("repository `{path}` in `{reference}` must be lowercase")]
    Uppercase {
        /// The repository path.
        path: String,
        /// The whole name.
        reference: String,
    },
    /// Two slashes in a row, or a slash at the start or end of the path.
    #[error("image name `{0}` has an empty path component")]
    EmptyComponent(String),
    /// A path component has characters other than lowercase letters, digits and the
    /// separators `.`, `_`, `__` and `-`, or starts or ends with a separator.
    #[error("image name `{reference}` has an invalid path component `{component}`")]
    BadComponent {
        /// The offending component.
        component: String,
        /// The whole name.
        reference: String,
    },
    /// The first component looks like a host (it has a `.` or `:`, or is `localhost`) but
    /// is not a valid `host[:port]` or `[IPv6][:port]`.
    #[error("image name `{reference}` has an invalid registry host `{domain}`")]
    BadDomain {
        /// The host part as given.
        domain: String,
        /// The whole name.
        reference: String,
    },
    /// The name ends in `:`.
    #[error("image name `{0}` has an empty tag")]
    EmptyTag(String),
    /// The tag is longer than 128 characters, starts with `.` or `-`, or has characters
    /// other than letters, digits, `_`, `.` and `-`.
    #[error("tag `{tag}` in `{reference}` is invalid")]
    BadTag {
        /// The tag as given.
        tag: String,
        /// The whole name.
        reference: String,
    },
    /// The name has an `@`: a digest cannot be chosen for an image not yet built.
    #[error("image name `{0}` is a digest reference")]
    Digest(String),
    /// The name without its tag is longer than 255 characters.
    #[error("image name `{0}` is longer than 255 characters")]
    TooLong(String),
}

impl ReferenceError {
    /// What the user can do about it, when there is something useful to say.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Self::Uppercase { .. } => "repository names are lowercase; tags may use uppercase",
            Self::BadComponent { .. }
            | Self::EmptyComponent(_)
            | Self::Empty
            | Self::Whitespace(_) => {
                "path components are lowercase letters and digits joined by `.`, `_`, `__` or `-`, e.g. `mock/big:1`"
            }
            Self::EmptyTag(_) | Self::BadTag { .. } => {
                "a tag is up to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
            }
            Self::Digest(_) => "the digest is known only once the image is built: give a tag instead",
            Self::BadDomain { .. } | Self::TooLong(_) => return None,
        })
    }
}

impl Reference {
    /// Parses `[host[:port]/]path[:tag]`; a missing tag becomes `latest`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.chars().any(char::is_whitespace) {
            return Err(ReferenceError::Whitespace(input.to_owned()));
        }
        if input.contains('@') {
            return Err(ReferenceError::Digest(input.to_owned()));
        }
        // A colon after the last slash separates the tag; one before it is a port.
        let last_slash = input.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match input[last_slash..].rfind(':') {
            Some(i) => (&input[..last_slash + i], Some(&input[last_slash + i + 1..])),
            None => (input, None),
        };
        let tag = match tag {
            Some("") => return Err(ReferenceError::EmptyTag(input.to_owned())),
            Some(tag) if !valid_tag(tag) => {
                return Err(ReferenceError::BadTag {
                    tag: tag.to_owned(),
                    reference: input.to_owned(),
                })
            }
            Some(tag) => tag.to_owned(),
            None => "latest".to_owned(),
        };
        if name.len() > 255 {
            return Err(ReferenceError::TooLong(input.to_owned()));
        }
        // The first component is a registry host if it looks like one. Docker also takes any
        // first component with uppercase letters for a host; here `Mock/Image` is reported as
        // the uppercase repository it most likely is.
        let (domain, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (Some(first), rest)
            }
            _ => (None, name),
        };
        if let Some(domain) = domain {
            if !valid_domain(domain) {
                return Err(ReferenceError::BadDomain {
                    domain: domain.to_owned(),
                    reference: input.to_owned(),
                });
            }
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                path: path.to_owned(),
                reference: input.to_owned(),
            });
        }
        if let Some(bad) = path.split('/').find(|c| !valid_component(c)) {
            if bad.is_empty() {
                return Err(ReferenceError::EmptyComponent(input.to_owned()));
            }
            return Err(ReferenceError::BadComponent {
                component: bad.to_owned(),
                reference: input.to_owned(),
            });
        }
        Ok(Self {
            domain: domain.map(str::to_owned),
            path: path.to_owned(),
            tag,
        })
    }

    /// The registry host, when the name has one.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The repository path, e.g. `mock/big`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, `latest` when the name had none.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The fully qualified form containerd and Docker 25+ store names in:
    /// `mock/big:1` is `docker.io/mock/big:1`, `busybox` is `docker.io/library/busybox:latest`.
    pub fn normalized(&self) -> String {
        match &self.domain {
            Some(_) => self.to_string(),
            None if self.path.contains('/') => format!("docker.io/{self}"),
            None => format!("docker.io/library/{self}"),
        }
    }

    /// `[host/]path` without the tag.
    pub fn name(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.clone(),
        }
    }
}

/// `reference == "mock/big:1"` compares the text form (`mock/big` is `mock/big:latest`).
impl PartialEq<str> for Reference {
    // Through the text form: the one spelling that `parse` and `Display` agree on.
    #[allow(clippy::cmp_owned)]
    fn eq(&self, other: &str) -> bool {
        self.to_string() == other
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name(), self.tag)
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        Self::parse(s)
    }
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(tag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    tag.len() <= 128
        && tag.starts_with(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-')
}

fn valid_domain(domain: &str) -> bool {
    // `[v6]` or `[v6]:port` — the brackets hide the address's own colons.
    let (host, port) = match domain.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) => {
                let v6_ok =
                    !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
                match after.strip_prefix(':') {
                    _ if !v6_ok => return false,
                    Some(port) => (None, Some(port)),
                    None if after.is_empty() => (None, None),
                    None => return false,
                }
            }
            None => return false,
        },
        None => match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = host.is_none_or(|h| {
        !h.is_empty()
            && h.split('.').all(|part| {
                let b = part.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            })
    });
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Reference {
        Reference::parse(s).expect("valid reference")
    }

    #[test]
    fn accepts_common_names() {
        assert_eq!(ok("repo").to_string(), "repo:latest");
        assert_eq!(ok("mock/big:1").to_string(), "mock/big:1");
        let r = ok("localhost:5000/mock/big:v1.0");
        assert_eq!(
            (r.domain(), r.path(), r.tag()),
            (Some("localhost:5000"), "mock/big", "v1.0")
        );
        let r = ok("127.0.0.1:5000/a__b/c-d--e.f:TAG_1");
        assert_eq!(
            (r.domain(), r.path()),
            (Some("127.0.0.1:5000"), "a__b/c-d--e.f")
        );
        assert_eq!(ok("ghcr.io/org/mock").tag(), "latest");
        assert_eq!(ok("[::1]:5000/x:y").domain(), Some("[::1]:5000"));
        assert_eq!(ok("[::1]/x").domain(), Some("[::1]"));
        assert_eq!(
            ok("busybox").normalized(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(ok("mock/big:1").normalized(), "docker.io/mock/big:1");
        assert_eq!(ok("localhost:5000/x:2").normalized(), "localhost:5000/x:2");
    }

    #[test]
    fn rejects_what_engines_reject() {
        let err = |s: &str| Reference::parse(s).expect_err(s);
        assert_eq!(err(""), ReferenceError::Empty);
        assert!(matches!(err("Repo:tag"), ReferenceError::Uppercase { .. }));
        assert!(matches!(err("mock/Big"), ReferenceError::Uppercase { .. }));
        assert!(matches!(err("my repo"), ReferenceError::Whitespace(_)));
        assert!(matches!(err("a..b"), ReferenceError::BadComponent { .. }));
        assert!(matches!(err("../x"), ReferenceError::BadDomain { .. }));
        assert!(matches!(err("a//b"), ReferenceError::EmptyComponent(_)));
        assert!(matches!(
            err("example.com/"),
            ReferenceError::EmptyComponent(_)
        ));
        assert!(matches!(err("[::1/x"), ReferenceError::BadDomain { .. }));
        assert!(matches!(err("[::1]x/y"), ReferenceError::BadDomain { .. }));
        assert!(matches!(err("-a"), ReferenceError::BadComponent { .. }));
        assert!(matches!(err("a___b"), ReferenceError::BadComponent { .. }));
        assert_eq!(err("repo:"), ReferenceError::EmptyTag("repo:".into()));
        assert!(matches!(err("repo:.x"), ReferenceError::BadTag { .. }));
        assert!(matches!(
            err(&format!("repo:{}", "t".repeat(129))),
            ReferenceError::BadTag { .. }
        ));
        assert!(matches!(err("repo@sha256:abc"), ReferenceError::Digest(_)));
        assert!(matches!(
            err("host:x/repo"),
            ReferenceError::BadDomain { .. }
        ));
        assert!(matches!(err(&"a".repeat(256)), ReferenceError::TooLong(_)));
    }
}
