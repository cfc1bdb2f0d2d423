//! Parsing of durations ("10", "10s", "500ms", "2m") and switches given on the command line
//! (sizes: [`crate::size::parse_bytes`]).

use std::time::Duration;

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
