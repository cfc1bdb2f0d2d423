//! Durations as the command line and the configuration take them ("10", "10s", "500ms", "2m",
//! "12h", "30d").

use std::time::Duration;

/// Parses a duration: seconds by default, or with a suffix ms, s, m, h, d. Fractions allowed.
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
        "d" => 86400.0,
        other => return Err(format!("invalid duration '{trimmed}': unknown suffix '{other}'")),
    };
    let secs = value * scale_secs;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("invalid duration '{trimmed}': must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("ten").is_err());
    }
}
