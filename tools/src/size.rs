//! Sizes on the command line and in configuration files: `512M`, `1G`, `4096`.

/// Parses a byte count: a decimal number with an optional binary suffix (k, m, g, t, with or
/// without "b" or "ib", any case: `4k`, `128KiB`, `512M`, `1G`, `4096`). Zero is allowed.
///
/// # Errors
/// A one-line message naming the bad input.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (number, suffix) = lower.split_at(digits_end);
    if number.is_empty() {
        return Err(format!("invalid size '{trimmed}': expected a number like 4k, 512M, 1G"));
    }
    let value: u64 = number.parse().map_err(|_| format!("invalid size '{trimmed}': too large"))?;
    let shift = match suffix {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "invalid size '{trimmed}': unknown suffix '{other}' (use k, m, g or t)"
            ))
        }
    };
    value.checked_mul(1u64 << shift).ok_or_else(|| format!("invalid size '{trimmed}': too large"))
}

/// [`parse_bytes`] for the size of something that must hold data: zero is refused.
///
/// # Errors
/// A one-line message naming the bad value.
pub fn parse_size(text: &str) -> Result<u64, String> {
    match parse_bytes(text)? {
        0 => Err(format!("invalid size '{}': must be more than zero", text.trim())),
        n => Ok(n),
    }
}

/// A byte count for people: `1.5G`, `512B`.
#[must_use]
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_parse_with_every_suffix_form() {
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert_eq!(parse_bytes("128K"), Ok(128 * 1024));
        assert_eq!(parse_bytes("4g"), Ok(4 << 30));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("2TB"), Ok(2 << 40));
        assert_eq!(parse_bytes("0"), Ok(0));
    }

    #[test]
    fn bad_bytes_are_rejected_with_a_message() {
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("k").is_err());
        assert!(parse_bytes("4q").expect_err("must fail").contains("unknown suffix"));
        assert!(parse_bytes("-4k").is_err());
        assert!(parse_bytes("99999999999999999999").is_err());
        assert!(parse_bytes("17179869184t").expect_err("must fail").contains("too large"));
        assert!(parse_size("0").expect_err("must fail").contains("more than zero"));
    }

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(1536), "1.5K");
        assert_eq!(human(1 << 30), "1.0G");
    }
}
