//! Byte counts for people to read, in status lines and listings.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(300), "300 B");
        assert_eq!(human_size(1024), "1.00 KiB");
        assert_eq!(human_size(3 << 29), "1.50 GiB");
        assert_eq!(human_size(5 << 40), "5.00 TiB");
    }
}
