//! Parsing of switches given on the command line (durations:
//! [`ferrite_tools::duration::parse_duration`]; sizes: [`crate::size::parse_bytes`]).

pub use ferrite_tools::duration::parse_duration;

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
    fn booleans() {
        assert_eq!(parse_bool("1"), Ok(true));
        assert_eq!(parse_bool("off"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }
}
