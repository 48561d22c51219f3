//! The htpasswd file distribution (`auth: htpasswd:`) and nginx (`auth_basic_user_file`)
//! read: `USER:HASH` lines, as `htpasswd -B FILE USER` (Debian's apache2-utils) writes
//! them. Only bcrypt hashes are taken: the others Apache knows (MD5 `$apr1$`, `{SHA}`,
//! crypt) are fast to guess. Blank lines and `#` comments are skipped, as distribution does.
//! No message repeats a line's contents: a line may hold a hash, or a password typed where
//! a hash belongs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::serve::ServeError;

/// Files larger than this are not an htpasswd file (a million users is 70 MB).
const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The users of an htpasswd file and their bcrypt hashes; `Debug` shows the path and how
/// many users, never a hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Htpasswd {
    path: PathBuf,
    users: BTreeMap<String, String>,
    /// The highest cost of its hashes, which a check for an unknown user pays too.
    cost: u32,
}

impl fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Htpasswd")
            .field("path", &self.path)
            .field("users", &self.users.len())
            .finish()
    }
}

impl Htpasswd {
    /// Reads and checks `path`: every line a user and a bcrypt hash, no user twice, at
    /// least one user.
    pub fn read(path: &Path) -> Result<Self, ServeError> {
        let unreadable = |source| ServeError::HtpasswdRead {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        if !meta.is_file() || meta.len() > MAX_BYTES {
            // A FIFO or a device would hang the start.
            return Err(unreadable(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file of at most 64 MiB",
            )));
        }
        let bytes = std::fs::read(path).map_err(unreadable)?;
        Self::parse(path, &bytes)
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ServeError> {
        let fail = |line: usize, detail: String| ServeError::Htpasswd {
            path: path.to_path_buf(),
            line,
            detail,
        };
        let mut users = BTreeMap::new();
        let mut lines_of = BTreeMap::new();
        let mut cost = 0;
        for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let line = index + 1;
            let Ok(text) = std::str::from_utf8(raw) else {
                return Err(fail(line, "is not UTF-8".into()));
            };
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = text.split_once(':') else {
                return Err(fail(line, "has no `:` between a user and a hash".into()));
            };
            if user.is_empty() {
                return Err(fail(line, "has no user before its `:`".into()));
            }
            let hash_cost = bcrypt_cost(hash).map_err(|detail| fail(line, detail))?;
            if let Some(first) = lines_of.insert(user.to_owned(), line) {
                return Err(fail(line, format!("names the user of line {first} again")));
            }
            cost = cost.max(hash_cost);
            users.insert(user.to_owned(), hash.to_owned());
        }
        if users.is_empty() {
            return Err(ServeError::Htpasswd {
                path: path.to_path_buf(),
                line: 0,
                detail: "names no user".into(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            users,
            cost,
        })
    }

    /// The bcrypt hash of `user`.
    pub(crate) fn hash_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    /// The highest cost among the file's hashes.
    pub(crate) fn cost(&self) -> u32 {
        self.cost
    }
}

/// The cost of a well-formed bcrypt hash (`$2y$NN$` and 53 characters of bcrypt's base64),
/// or what the hash is instead, by its prefix alone (which names an algorithm, nothing
/// secret).
fn bcrypt_cost(hash: &str) -> Result<u32, String> {
    const ONLY: &str = "only bcrypt (`$2y$`, `$2a$`, `$2b$`, as `htpasswd -B` writes) is taken";
    let other = [
        ("$apr1$", "an MD5 (`$apr1$`) hash"),
        ("{SHA}", "a SHA-1 (`{SHA}`) hash"),
        ("$1$", "an MD5-crypt (`$1$`) hash"),
        ("$5$", "a SHA-256-crypt (`$5$`) hash"),
        ("$6$", "a SHA-512-crypt (`$6$`) hash"),
    ];
    if let Some((_, name)) = other.iter().find(|(prefix, _)| hash.starts_with(prefix)) {
        return Err(format!("holds {name}; {ONLY}"));
    }
    let Some(rest) = ["$2y$", "$2a$", "$2b$"]
        .iter()
        .find_map(|prefix| hash.strip_prefix(prefix))
    else {
        return Err(format!("holds no bcrypt hash; {ONLY}"));
    };
    let malformed = || "holds a malformed bcrypt hash (`$2y$NN$` and 53 characters)".to_owned();
    let (cost, salted) = rest.split_once('$').ok_or_else(malformed)?;
    let cost: u32 = (cost.len() == 2)
        .then(|| cost.parse().ok())
        .flatten()
        .ok_or_else(malformed)?;
    if !(4..=31).contains(&cost) {
        return Err(format!("holds a bcrypt hash of cost {cost}, not 4 to 31"));
    }
    let alphabet = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'/';
    if salted.len() != 53 || !salted.bytes().all(alphabet) {
        return Err(malformed());
    }
    Ok(cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$05$mK0CtcYtgTGTSmLTINIdNOUhz0NOXy1g.pCZNFu4WZqCNUjM6DNOW";

    fn problem(text: &str) -> String {
        Htpasswd::parse(Path::new("users.htpasswd"), text.as_bytes())
            .expect_err(text)
            .to_string()
    }

    #[test]
    fn bcrypt_entries_are_read_and_others_refused_by_line_without_showing_them() {
        let file = Htpasswd::parse(
            Path::new("users.htpasswd"),
            format!(
                "# team\nalice:{HASH}\r\n\nbob:{}\n",
                HASH.replace("$2y$05", "$2b$07")
            )
            .as_bytes(),
        )
        .expect("valid");
        assert_eq!(file.hash_of("alice"), Some(HASH));
        assert_eq!(file.cost(), 7);
        assert_eq!(
            format!("{file:?}"),
            "Htpasswd { path: \"users.htpasswd\", users: 2 }"
        );
        for (text, line, says) in [
            (
                format!("alice:{HASH}\nbob:$apr1$x8f3$S3cretHashPart\n"),
                2,
                "MD5 (`$apr1$`)",
            ),
            ("bob:{SHA}S3cretHashPart=\n".into(), 1, "SHA-1"),
            ("bob:S3cretPlain\n".into(), 1, "no bcrypt hash"),
            ("S3cretNoColon\n".into(), 1, "no `:`"),
            (":S3cret\n".into(), 1, "no user"),
            (format!("bob:{}S3cret\n", &HASH[..40]), 1, "malformed"),
            (
                format!("bob:{}\n", HASH.replace("$05$", "$99$")),
                1,
                "cost 99",
            ),
            (format!("bob:{HASH}\n\nbob:{HASH}\n"), 3, "user of line 1"),
            ("# nobody\n".into(), 0, "names no user"),
        ] {
            let e = problem(&text);
            assert!(
                e.contains("`users.htpasswd`")
                    && (line == 0 || e.contains(&format!("line {line}:")))
                    && e.contains(says),
                "{text}: {e}"
            );
            assert!(!e.contains("S3cret") && !e.contains(&HASH[7..]), "{e}");
        }
        let mut bytes = format!("alice:{HASH}\n").into_bytes();
        bytes.extend_from_slice(b"bob:\xffS3cret\n");
        let e = Htpasswd::parse(Path::new("f"), &bytes)
            .expect_err("bytes")
            .to_string();
        assert!(e.contains("line 2: is not UTF-8"), "{e}");
    }
}
