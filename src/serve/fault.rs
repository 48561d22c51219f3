//! Faults chosen by the repository path (`faults/<fault>/<name>`), so that any client can
//! ask for one without a flag of its own.

use std::fmt;
use std::time::Duration;

use crate::spec::{format_size, parse_byte_size};

/// The most requests `ratelimit-N` refuses per blob or manifest.
pub(crate) const MAX_RATELIMIT: u32 = 100;

/// The longest `slow-headers-DUR`: a held request costs a timer, not a thread, but a
/// connection stays open that long.
pub(crate) const MAX_HEADER_DELAY: Duration = Duration::from_secs(120);

/// The `Retry-After` of `ratelimit-long-N`: more than a minute, which a client should not
/// wait out.
pub(crate) const LONG_RETRY: Duration = Duration::from_secs(3600);

/// The slowest `slow-` rate, in bytes a second. A paced stream keeps a generator slot (of
/// the paced streams' share) until its last byte: at 1 B/s a MiB would hold it for twelve
/// days, at 1 KiB/s for seventeen minutes. Paced chunks are at least 1 KiB, so at the
/// floor one leaves every second and a paced stream buffers about 3 KiB.
pub(crate) const SLOW_FLOOR: u64 = 1024;

/// A failure the server plays for the names under `faults/<fault>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// `truncate`: each blob's connection closes halfway through its bytes.
    Truncate,
    /// `corrupt`: one byte in the middle of each blob differs from the digest.
    Corrupt,
    /// `flaky`: the first request for each blob or manifest is answered 503.
    Flaky,
    /// `missing`: every blob is answered 404.
    Missing,
    /// `slow-<RATE>`: blobs are sent at most at RATE bytes a second (`slow-1mb`). The rate
    /// is written in lowercase, since docker and skopeo refuse repository names in any other
    /// case; the grammar reads sizes in any case (`slow-1MB` is the same fault).
    Slow(u64),
    /// `wrong-size`: a blob's `Content-Length` is one more than the bytes that follow.
    WrongSize,
    /// `ratelimit-N`, `ratelimit-date-N`, `ratelimit-long-N`: the first N requests for each
    /// blob and manifest are answered 429 `TOOMANYREQUESTS` with `Retry-After`: 1 second, an
    /// HTTP date 1 second ahead, or an hour.
    RateLimit(u32, RetryAfter),
    /// `no-length`: blobs are sent chunked, without `Content-Length`.
    NoLength,
    /// `slow-headers-DUR`: manifest and blob answers wait DUR before their headers.
    SlowHeaders(Duration),
    /// `bad-digest-header`: `Docker-Content-Digest` names other bytes than those sent.
    BadDigestHeader,
    /// `reset-at-N`: each blob's connection is cut after N bytes of it.
    ResetAt(u64),
    /// `redirect`: blob GETs answer 307 to the server's blob store, under a signed URL
    /// that expires.
    Redirect,
    /// `foreign`: layers are non-distributable, with `urls` at the blob store; the
    /// registry answers 404 for them.
    Foreign,
}

/// How `ratelimit-…` says when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryAfter {
    /// `Retry-After: 1`.
    Second,
    /// `Retry-After: <HTTP date one second ahead>`.
    Date,
    /// `Retry-After: 3600`.
    Long,
}

const KNOWN: &str = "faults are truncate, corrupt, flaky, missing, slow-<RATE>, wrong-size, ratelimit-<N>, ratelimit-date-<N>, ratelimit-long-<N>, no-length, slow-headers-<DUR>, bad-digest-header, reset-at-<N>, redirect and foreign";

impl Fault {
    /// Parses the path segment after `faults/`; the error names what is wrong.
    pub fn parse(segment: &str) -> Result<Self, String> {
        Ok(match segment {
            "truncate" => Self::Truncate,
            "corrupt" => Self::Corrupt,
            "flaky" => Self::Flaky,
            "missing" => Self::Missing,
            "wrong-size" => Self::WrongSize,
            "no-length" => Self::NoLength,
            "bad-digest-header" => Self::BadDigestHeader,
            "redirect" => Self::Redirect,
            "foreign" => Self::Foreign,
            _ => {
                if let Some(fault) = Self::parse_counted(segment)? {
                    return Ok(fault);
                }
                let Some(rate) = segment.strip_prefix("slow-") else {
                    return Err(format!("unknown fault `{segment}`: {KNOWN}"));
                };
                match parse_byte_size(rate) {
                    Ok(0) | Err(_) => {
                        return Err(format!(
                            "fault `{segment}` needs a rate in bytes a second, e.g. `slow-1mb`"
                        ))
                    }
                    Ok(bytes) if bytes < SLOW_FLOOR => {
                        return Err(format!(
                            "fault `{segment}` is slower than the floor of 1kb a second (`slow-1kb`): a paced stream holds a generator slot for as long as its rate says"
                        ))
                    }
                    Ok(bytes) => Self::Slow(bytes),
                }
            }
        })
    }
}

impl Fault {
    /// The faults with a number or a duration in their name, other than `slow-<RATE>`.
    fn parse_counted(segment: &str) -> Result<Option<Self>, String> {
        let ratelimit = [
            ("ratelimit-date-", RetryAfter::Date),
            ("ratelimit-long-", RetryAfter::Long),
            ("ratelimit-", RetryAfter::Second),
        ]
        .into_iter()
        .find_map(|(prefix, retry)| segment.strip_prefix(prefix).map(|n| (n, retry)));
        if let Some((n, retry)) = ratelimit {
            return match n.parse::<u32>() {
                Ok(n) if (1..=MAX_RATELIMIT).contains(&n) => Ok(Some(Self::RateLimit(n, retry))),
                _ => Err(format!(
                    "fault `{segment}` needs a number of requests to refuse, from 1 to {MAX_RATELIMIT}, e.g. `ratelimit-2`"
                )),
            };
        }
        if let Some(text) = segment.strip_prefix("slow-headers-") {
            return match crate::units::parse_duration(text) {
                Some(delay) if !delay.is_zero() && delay <= MAX_HEADER_DELAY => {
                    Ok(Some(Self::SlowHeaders(delay)))
                }
                _ => Err(format!(
                    "fault `{segment}` needs a delay from 1ms to {} s, e.g. `slow-headers-2s` or `slow-headers-500ms`",
                    MAX_HEADER_DELAY.as_secs()
                )),
            };
        }
        if let Some(text) = segment.strip_prefix("reset-at-") {
            // A bare number is bytes here, as the fault counts them (the grammar's bare
            // number is MB).
            let bytes = match text.parse::<u64>() {
                Ok(n) => Ok(n),
                Err(_) => parse_byte_size(text).map_err(|_| ()),
            };
            return match bytes {
                Ok(n) => Ok(Some(Self::ResetAt(n))),
                Err(()) => Err(format!(
                    "fault `{segment}` needs a byte offset, e.g. `reset-at-1024` or `reset-at-1mb`"
                )),
            };
        }
        Ok(None)
    }

    /// How many requests `ratelimit-…` refuses, and how it says when to come back.
    pub fn rate_limit(faults: &[Fault]) -> Option<(u32, RetryAfter)> {
        faults.iter().find_map(|f| match f {
            Self::RateLimit(n, retry) => Some((*n, *retry)),
            _ => None,
        })
    }

    /// How long `slow-headers-…` holds each answer.
    pub fn header_delay(faults: &[Fault]) -> Option<Duration> {
        faults.iter().find_map(|f| match f {
            Self::SlowHeaders(delay) => Some(*delay),
            _ => None,
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncate => f.write_str("truncate"),
            Self::Corrupt => f.write_str("corrupt"),
            Self::Flaky => f.write_str("flaky"),
            Self::Missing => f.write_str("missing"),
            // Lowercase, to stay a repository name clients accept.
            Self::Slow(rate) => write!(f, "slow-{}", format_size(*rate).to_ascii_lowercase()),
            Self::WrongSize => f.write_str("wrong-size"),
            Self::RateLimit(n, RetryAfter::Second) => write!(f, "ratelimit-{n}"),
            Self::RateLimit(n, RetryAfter::Date) => write!(f, "ratelimit-date-{n}"),
            Self::RateLimit(n, RetryAfter::Long) => write!(f, "ratelimit-long-{n}"),
            Self::NoLength => f.write_str("no-length"),
            Self::SlowHeaders(delay) if delay.subsec_millis() == 0 => {
                write!(f, "slow-headers-{}s", delay.as_secs())
            }
            Self::SlowHeaders(delay) => write!(f, "slow-headers-{}ms", delay.as_millis()),
            Self::BadDigestHeader => f.write_str("bad-digest-header"),
            Self::ResetAt(n) => write!(f, "reset-at-{n}"),
            Self::Redirect => f.write_str("redirect"),
            Self::Foreign => f.write_str("foreign"),
        }
    }
}

/// How one blob answer goes wrong: what a byte stream needs to know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Blob offset of the byte to flip.
    pub corrupt_at: Option<u64>,
    /// Blob offset at which the connection breaks.
    pub truncate_at: Option<u64>,
    /// Bytes a second.
    pub rate: Option<u64>,
}

impl Damage {
    /// The damage `faults` do to a blob of `size` bytes.
    pub fn of(faults: &[Fault], size: u64) -> Self {
        let mut damage = Self::default();
        for fault in faults {
            match fault {
                Fault::Corrupt => damage.corrupt_at = Some(size / 2),
                Fault::Truncate => damage.truncate_at = Some(size / 2),
                Fault::Slow(rate) => damage.rate = Some(*rate),
                Fault::ResetAt(n) if *n < size => damage.truncate_at = Some(*n),
                _ => {}
            }
        }
        damage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_ones_say_why() {
        for name in [
            "truncate",
            "corrupt",
            "flaky",
            "missing",
            "slow-1mb",
            "wrong-size",
            "ratelimit-2",
            "ratelimit-date-1",
            "ratelimit-long-3",
            "no-length",
            "slow-headers-2s",
            "slow-headers-250ms",
            "bad-digest-header",
            "reset-at-4096",
            "redirect",
            "foreign",
        ] {
            assert_eq!(Fault::parse(name).expect(name).to_string(), name);
        }
        assert_eq!(Fault::parse("slow-512k"), Ok(Fault::Slow(512 << 10)));
        assert_eq!(Fault::parse("slow-1MB"), Fault::parse("slow-1mb"));
        assert!(Fault::parse("slow-0")
            .expect_err("zero")
            .contains("`slow-0`"));
        let floor = Fault::parse("slow-1b").expect_err("below the floor");
        assert!(
            floor.contains("`slow-1b`") && floor.contains("`slow-1kb`"),
            "{floor}"
        );
        assert_eq!(Fault::parse("slow-1kb"), Ok(Fault::Slow(1024)));
        assert!(Fault::parse("slow")
            .expect_err("no rate")
            .contains("unknown fault `slow`"));
        assert!(Fault::parse("broken")
            .expect_err("unknown")
            .contains("`broken`"));
        assert_eq!(Fault::parse("reset-at-1kb"), Ok(Fault::ResetAt(1024)));
        for (bad, says) in [
            ("ratelimit-0", "from 1 to 100"),
            ("ratelimit-101", "from 1 to 100"),
            ("ratelimit-x", "`ratelimit-x`"),
            ("slow-headers-121s", "to 120 s"),
            ("slow-headers-0s", "from 1ms"),
            ("slow-headers-2", "`slow-headers-2`"),
            ("reset-at-", "byte offset"),
        ] {
            let e = Fault::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(Damage::of(&[Fault::ResetAt(10)], 100).truncate_at, Some(10));
        assert_eq!(Damage::of(&[Fault::ResetAt(100)], 100).truncate_at, None);
    }
}
