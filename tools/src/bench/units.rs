//! Parsing of sizes ("4k", "128KiB", "4g") and durations ("10", "10s", "500ms", "2m") given on
//! the command line.

use std::time::Duration;

/// Parses a byte size: a decimal number with an optional binary suffix (k, m, g, t, with or
/// without "ib"/"b", case-insensitive; fio convention: "4k" = 4096).
///
/// # Errors
/// A one-line message naming the bad input.
pub fn parse_size_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (number, suffix) = lower.split_at(digits_end);
    if number.is_empty() {
        return Err(format!("invalid size '{trimmed}': expected a number like 4k, 128k, 4g"));
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

/// Parses a duration: seconds by default, or with a suffix ms, s, m, h. Fractions allowed.
///
/// # Errors
/// A one-line message naming the bad input.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let number_end = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (number, suffix) = lower.split_at(number_end);
    let value: f64 = number.parse().map_err(|_| {
        format!("invalid duration '{trimmed}': expected a number like 10, 10s, 500ms")
    })?;
    let scale_secs = match suffix {
        "" | "s" | "sec" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("invalid duration '{trimmed}': unknown suffix '{other}'")),
    };
    let secs = value * scale_secs;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("invalid duration '{trimmed}': must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses fio-style booleans: 1/0, true/false, yes/no, on/off.
///
/// # Errors
/// A one-line message naming the bad input.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("invalid boolean '{other}': use 1/0, true/false, on/off")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_size_bytes("4k"), Ok(4096));
        assert_eq!(parse_size_bytes("128K"), Ok(128 * 1024));
        assert_eq!(parse_size_bytes("4g"), Ok(4 << 30));
        assert_eq!(parse_size_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size_bytes("512"), Ok(512));
        assert_eq!(parse_size_bytes("2TB"), Ok(2 << 40));
    }

    #[test]
    fn bad_sizes_are_rejected_with_a_message() {
        assert!(parse_size_bytes("").is_err());
        assert!(parse_size_bytes("k").is_err());
        assert!(parse_size_bytes("4q").expect_err("must fail").contains("unknown suffix"));
        assert!(parse_size_bytes("-4k").is_err());
        assert!(parse_size_bytes("99999999999999999999").is_err());
        assert!(parse_size_bytes("17179869184t").expect_err("must fail").contains("too large"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("ten").is_err());
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("1"), Ok(true));
        assert_eq!(parse_bool("off"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }
}
