//! The values of an image's config that a user sets: `--entrypoint`, `--cmd`, `--env K=V`,
//! `--workdir`, `--user`, `--label K=V`, `--annotation K=V`, `--expose PORT[/PROTO]` and
//! `--stop-signal`, each parsed into the form docker and podman read.
//!
//! ```
//! use image_maker_spec::config::Setting;
//!
//! assert_eq!(
//!     Setting::parse("entrypoint", r#"["/bin/app","-v"]"#)?,
//!     Setting::Entrypoint(vec!["/bin/app".into(), "-v".into()])
//! );
//! assert_eq!(Setting::parse("cmd", "sleep  10")?, Setting::Cmd(vec!["sleep".into(), "10".into()]));
//! assert_eq!(Setting::parse("expose", "53/UDP")?, Setting::Expose("53/udp".into()));
//! assert_eq!(Setting::parse("stop_signal", "term")?, Setting::StopSignal("SIGTERM".into()));
//! # Ok::<(), image_maker_spec::config::ConfigError>(())
//! ```

/// The keys [`Setting::parse`] takes, as the attribute macro and `serve`'s images file
/// spell them.
pub const KEYS: &[&str] = &[
    "entrypoint",
    "cmd",
    "env",
    "workdir",
    "user",
    "label",
    "annotation",
    "expose",
    "stop_signal",
];

/// The label image-maker puts on every image; a user's label may not replace it.
pub const RESERVED_LABEL: &str = "dev.image-maker.spec";

/// One value of an image's config, parsed and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// `Entrypoint`: the arguments, exactly.
    Entrypoint(Vec<String>),
    /// `Cmd`: the arguments, exactly.
    Cmd(Vec<String>),
    /// One `Env` entry: key and value.
    Env(String, String),
    /// `WorkingDir`, an absolute path.
    Workdir(String),
    /// `User`: `user`, `uid`, `user:group` or `uid:gid`.
    User(String),
    /// One of `Labels`: key and value.
    Label(String, String),
    /// One of the manifest's `annotations`: key and value.
    Annotation(String, String),
    /// One of `ExposedPorts`: `80/tcp`.
    Expose(String),
    /// `StopSignal`: `SIGTERM`, or a number from 1 to 64.
    StopSignal(String),
}

/// What is wrong with a config value; each variant holds the value as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `entrypoint` or `cmd` starts as JSON (`[` or `{`) but is not an array of strings.
    #[error("{what} `{value}` is not a JSON array of strings")]
    NotAnArray {
        /// `entrypoint` or `cmd`.
        what: &'static str,
        /// The value as given.
        value: String,
    },
    /// An `env`, `label` or `annotation` without `=`.
    #[error("{what} `{value}` has no `=`")]
    NoEquals {
        /// `env`, `label` or `annotation`.
        what: &'static str,
        /// The value as given.
        value: String,
    },
    /// An `env`, `label` or `annotation` with nothing before its `=`.
    #[error("{what} `{value}` has an empty key")]
    EmptyKey {
        /// `env`, `label` or `annotation`.
        what: &'static str,
        /// The value as given.
        value: String,
    },
    /// A label of the name image-maker gives the spec of every image.
    #[error("label `{0}` is image-maker's own: it names the image's spec")]
    ReservedLabel(String),
    /// `expose` names no port from 1 to 65535.
    #[error("port `{0}` is not a port number from 1 to 65535")]
    Port(String),
    /// `expose` names a protocol other than tcp, udp or sctp.
    #[error("port `{value}` has an unknown protocol `{proto}`")]
    Protocol {
        /// The value as given.
        value: String,
        /// The protocol part.
        proto: String,
    },
    /// `stop_signal` names no signal image-maker knows.
    #[error("unknown stop signal `{0}`")]
    Signal(String),
    /// `workdir` is not an absolute path.
    #[error("workdir `{0}` is not an absolute path")]
    Workdir(String),
    /// `user` is not `USER[:GROUP]`.
    #[error("user `{0}` is not of the form USER[:GROUP]")]
    User(String),
    /// A key other than those in [`KEYS`].
    #[error("unknown config key `{0}`")]
    UnknownKey(String),
}

impl ConfigError {
    /// What a valid value looks like.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Self::NotAnArray { .. } => {
                r#"give a JSON array of strings, `["/bin/app","-v"]`, or plain words split on whitespace"#
            }
            Self::NoEquals { .. } | Self::EmptyKey { .. } => "write it as `KEY=VALUE`",
            Self::ReservedLabel(_) => "choose another label name",
            Self::Port(_) | Self::Protocol { .. } => {
                "a port is `PORT[/PROTO]`: a number from 1 to 65535 and tcp (the default), udp or sctp, e.g. `8080/tcp`"
            }
            Self::Signal(_) => {
                "a stop signal is a name such as `SIGTERM` or `TERM`, or a number from 1 to 64 (real-time signals by number)"
            }
            Self::Workdir(_) => "engines refuse a relative working directory: start it with `/`",
            Self::User(_) => "e.g. `app`, `1000` or `1000:1000`",
            Self::UnknownKey(_) => {
                "the keys are `entrypoint`, `cmd`, `env`, `workdir`, `user`, `label`, `annotation`, `expose` and `stop_signal`"
            }
        })
    }
}

impl Setting {
    /// Parses `value` as the config value `key` (one of [`KEYS`]) says.
    pub fn parse(key: &str, value: &str) -> Result<Self, ConfigError> {
        Ok(match key {
            "entrypoint" => Self::Entrypoint(parse_command("entrypoint", value)?),
            "cmd" => Self::Cmd(parse_command("cmd", value)?),
            "env" => {
                let (k, v) = parse_pair("env", value)?;
                Self::Env(k, v)
            }
            "workdir" => Self::Workdir(parse_workdir(value)?),
            "user" => Self::User(parse_user(value)?),
            "label" => {
                let (k, v) = parse_pair("label", value)?;
                if k == RESERVED_LABEL {
                    return Err(ConfigError::ReservedLabel(k));
                }
                Self::Label(k, v)
            }
            "annotation" => {
                let (k, v) = parse_pair("annotation", value)?;
                Self::Annotation(k, v)
            }
            "expose" => Self::Expose(parse_port(value)?),
            "stop_signal" => Self::StopSignal(parse_signal(value)?),
            other => return Err(ConfigError::UnknownKey(other.to_owned())),
        })
    }
}

/// An entrypoint or command: a JSON array of strings when the text starts with `[` or `{`
/// (after spaces), else the text split on whitespace.
pub fn parse_command(what: &'static str, value: &str) -> Result<Vec<String>, ConfigError> {
    let trimmed = value.trim_start();
    if trimmed.starts_with(['[', '{']) {
        json_strings(trimmed).ok_or_else(|| ConfigError::NotAnArray {
            what,
            value: value.to_owned(),
        })
    } else {
        Ok(value.split_whitespace().map(str::to_owned).collect())
    }
}

/// `KEY=VALUE`, split at the first `=`; the key may not be empty, the value may.
pub fn parse_pair(what: &'static str, value: &str) -> Result<(String, String), ConfigError> {
    let (k, v) = value.split_once('=').ok_or_else(|| ConfigError::NoEquals {
        what,
        value: value.to_owned(),
    })?;
    if k.is_empty() {
        return Err(ConfigError::EmptyKey {
            what,
            value: value.to_owned(),
        });
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// `PORT[/PROTO]` as `ExposedPorts` keys it: `80/tcp`.
pub fn parse_port(value: &str) -> Result<String, ConfigError> {
    let (port, proto) = value.split_once('/').unwrap_or((value, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(ConfigError::Protocol {
            value: value.to_owned(),
            proto,
        });
    }
    let number = Some(port)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|n| *n != 0)
        .ok_or_else(|| ConfigError::Port(value.to_owned()))?;
    Ok(format!("{number}/{proto}"))
}

/// The signals of Linux by name (`SIGRTMIN+N` and friends are given by number).
const SIGNALS: &[&str] = &[
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
    "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
    "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR", "SYS",
];

/// `SIGTERM`, `TERM` or `term` as `SIGTERM`; a number from 1 to 64 as itself.
pub fn parse_signal(value: &str) -> Result<String, ConfigError> {
    let unknown = || ConfigError::Signal(value.to_owned());
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return match value.parse::<u8>() {
            Ok(n @ 1..=64) => Ok(n.to_string()),
            _ => Err(unknown()),
        };
    }
    let upper = value.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&name) {
        Ok(format!("SIG{name}"))
    } else {
        Err(unknown())
    }
}

/// An absolute path, as given.
pub fn parse_workdir(value: &str) -> Result<String, ConfigError> {
    if value.starts_with('/') {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::Workdir(value.to_owned()))
    }
}

/// `USER[:GROUP]`: neither part empty, no whitespace.
pub fn parse_user(value: &str) -> Result<String, ConfigError> {
    let ok = |part: &str| !part.is_empty() && !part.contains([':', ' ', '\t', '\n']);
    let valid = match value.split_once(':') {
        Some((user, group)) => ok(user) && ok(group),
        None => ok(value),
    };
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::User(value.to_owned()))
    }
}

/// A JSON array of strings and nothing else (spaces around it aside); `None` for any other
/// text. A small reader of its own: this crate depends on std and thiserror only.
fn json_strings(text: &str) -> Option<Vec<String>> {
    let mut chars = text.trim().chars().peekable();
    let skip_spaces = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars
            .next_if(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
            .is_some()
        {}
    };
    if chars.next()? != '[' {
        return None;
    }
    let mut items = Vec::new();
    skip_spaces(&mut chars);
    if chars.next_if_eq(&']').is_some() {
        return chars.next().is_none().then_some(items);
    }
    loop {
        skip_spaces(&mut chars);
        if chars.next()? != '"' {
            return None;
        }
        items.push(json_string_rest(&mut chars)?);
        skip_spaces(&mut chars);
        match chars.next()? {
            ',' => continue,
            ']' => return chars.next().is_none().then_some(items),
            _ => return None,
        }
    }
}

/// The rest of a JSON string after its opening quote, up to and with its closing one.
fn json_string_rest(chars: &mut impl Iterator<Item = char>) -> Option<String> {
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let high = hex4(chars)?;
                    let code = if (0xD800..0xDC00).contains(&high) {
                        if chars.next()? != '\\' || chars.next()? != 'u' {
                            return None;
                        }
                        let low = hex4(chars)?;
                        if !(0xDC00..0xE000).contains(&low) {
                            return None;
                        }
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        high
                    };
                    out.push(char::from_u32(code)?);
                }
                _ => return None,
            },
            c if u32::from(c) < 0x20 => return None,
            c => out.push(c),
        }
    }
}

fn hex4(chars: &mut impl Iterator<Item = char>) -> Option<u32> {
    (0..4).try_fold(0, |n, _| Some(n * 16 + chars.next()?.to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn commands_are_json_arrays_or_words() {
        let parse = |v: &str| parse_command("entrypoint", v);
        assert_eq!(
            parse(r#"["/bin/app","-v"]"#),
            Ok(words(&["/bin/app", "-v"]))
        );
        assert_eq!(
            parse(r#" [ "a b" , "\"q\"\\\u00e9\ud83d\ude00" ] "#),
            Ok(words(&["a b", "\"q\"\\é😀"]))
        );
        assert_eq!(parse("[]"), Ok(vec![]));
        assert_eq!(
            parse("  /bin/sh   -c  true "),
            Ok(words(&["/bin/sh", "-c", "true"]))
        );
        assert_eq!(parse(""), Ok(vec![]));
        for bad in [
            r#"{"a":1}"#,
            "[1]",
            r#"["a",]"#,
            r#"["a"] x"#,
            r#"["a""#,
            r#"["\x"]"#,
            "[",
            r#"["a" "b"]"#,
            r#"[["a"]]"#,
            r#"["\ud800"]"#,
        ] {
            assert_eq!(
                parse(bad),
                Err(ConfigError::NotAnArray {
                    what: "entrypoint",
                    value: bad.to_owned()
                }),
                "{bad}"
            );
        }
        let e = parse(r#"{"a":1}"#).expect_err("object");
        assert_eq!(
            e.to_string(),
            r#"entrypoint `{"a":1}` is not a JSON array of strings"#
        );
    }

    #[test]
    fn pairs_need_an_equals_and_a_key() {
        assert_eq!(parse_pair("env", "A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_pair("env", "A="), Ok(("A".into(), String::new())));
        assert_eq!(
            parse_pair("env", "=x").map_err(|e| e.to_string()),
            Err("env `=x` has an empty key".into())
        );
        assert_eq!(
            parse_pair("label", "foo").map_err(|e| e.to_string()),
            Err("label `foo` has no `=`".into())
        );
        assert_eq!(
            Setting::parse("label", "dev.image-maker.spec=x"),
            Err(ConfigError::ReservedLabel("dev.image-maker.spec".into()))
        );
    }

    #[test]
    fn ports_from_1_to_65535_with_a_known_protocol() {
        assert_eq!(parse_port("80"), Ok("80/tcp".into()));
        assert_eq!(parse_port("65535/udp"), Ok("65535/udp".into()));
        assert_eq!(parse_port("1/SCTP"), Ok("1/sctp".into()));
        for bad in ["0", "65536", "70000", "", "-1", "+80", "80a", "/tcp"] {
            assert_eq!(parse_port(bad), Err(ConfigError::Port(bad.into())), "{bad}");
        }
        assert_eq!(
            parse_port("80/foo").map_err(|e| e.to_string()),
            Err("port `80/foo` has an unknown protocol `foo`".into())
        );
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("SIGTERM"), Ok("SIGTERM".into()));
        assert_eq!(parse_signal("TERM"), Ok("SIGTERM".into()));
        assert_eq!(parse_signal("sigkill"), Ok("SIGKILL".into()));
        assert_eq!(parse_signal("1"), Ok("1".into()));
        assert_eq!(parse_signal("64"), Ok("64".into()));
        assert_eq!(parse_signal("09"), Ok("9".into()));
        for bad in [
            "0",
            "65",
            "300",
            "SIGRTMIN",
            "SIGRTMIN+3",
            "RTMAX-1",
            "",
            "SIG",
            "TERMS",
        ] {
            assert_eq!(
                parse_signal(bad),
                Err(ConfigError::Signal(bad.into())),
                "{bad}"
            );
        }
        let e = parse_signal("SIGRTMIN").expect_err("unsupported");
        assert!(e.hint().is_some_and(|h| h.contains("by number")));
    }

    #[test]
    fn workdirs_and_users() {
        assert_eq!(parse_workdir("/app"), Ok("/app".into()));
        assert_eq!(
            parse_workdir("app"),
            Err(ConfigError::Workdir("app".into()))
        );
        assert_eq!(parse_workdir(""), Err(ConfigError::Workdir(String::new())));
        for good in ["app", "1000", "1000:1000", "app:staff"] {
            assert_eq!(parse_user(good), Ok(good.into()));
        }
        for bad in ["", ":g", "u:", "a:b:c", "a b"] {
            assert_eq!(parse_user(bad), Err(ConfigError::User(bad.into())), "{bad}");
        }
        assert_eq!(
            Setting::parse("volume", "/x"),
            Err(ConfigError::UnknownKey("volume".into()))
        );
    }
}
