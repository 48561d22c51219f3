//! Byte counts for people to read, in status lines and listings, and durations as people
//! write them.

/// Formats a byte count for people: `1.50 GiB`, `300 B`.
pub fn human_size(bytes: u64) -> String {
    let (name, unit) = [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ]
    .into_iter()
    .find(|(_, unit)| bytes >= *unit)
    .unwrap_or(("B", 1));
    if unit == 1 {
        format!("{bytes} B")
    } else {
        format!("{:.2} {name}", bytes as f64 / unit as f64)
    }
}

/// `30d`, `12h`, `90m`, `3600s`, `2w`, `500ms`: a whole number and a unit; `None` for
/// anything else, or one too long to hold.
#[cfg_attr(not(any(feature = "cli", feature = "serve")), allow(dead_code))]
pub(crate) fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    if unit == "ms" {
        return Some(std::time::Duration::from_millis(number));
    }
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    number
        .checked_mul(seconds)
        .map(std::time::Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(
            parse_duration("30d"),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(parse_duration("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "d", "5", "5y", "-1d", "1.5h", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(300), "300 B");
        assert_eq!(human_size(1024), "1.00 KiB");
        assert_eq!(human_size(3 << 29), "1.50 GiB");
        assert_eq!(human_size(5 << 40), "5.00 TiB");
    }
}
