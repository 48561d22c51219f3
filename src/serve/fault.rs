//! Faults chosen by the repository path (`faults/<fault>/<name>`), so that any client can
//! ask for one without a flag of its own.

use std::fmt;

use crate::spec::{format_size, parse_byte_size};

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
}

impl Fault {
    /// Parses the path segment after `faults/`; the error names what is wrong.
    pub fn parse(segment: &str) -> Result<Self, String> {
        Ok(match segment {
            "truncate" => Self::Truncate,
            "corrupt" => Self::Corrupt,
            "flaky" => Self::Flaky,
            "missing" => Self::Missing,
            "wrong-size" => Self::WrongSize,
            _ => {
                let Some(rate) = segment.strip_prefix("slow-") else {
                    return Err(format!(
                        "unknown fault `{segment}`: faults are truncate, corrupt, flaky, missing, slow-<RATE> and wrong-size"
                    ));
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
                Fault::Flaky | Fault::Missing | Fault::WrongSize => {}
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
    }
}
