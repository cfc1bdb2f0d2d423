//! The `scan:` line of `ferritectl pool status`, from the `scan` entry of `pool_list`.

use serde_json::Value;

use crate::size::human;

/// `YYYY-MM-DD HH:MM UTC` for `secs` since the Unix epoch.
#[must_use]
pub fn utc(secs: u64) -> String {
    format!("{} UTC", engine::owner::utc_minutes(secs))
}

/// `H:MM:SS`.
fn duration(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The scan line (without the `scan: ` prefix), or `None` when no scrub ran since import.
#[must_use]
pub fn scan_line(scan: &Value) -> Option<String> {
    let state = scan["state"].as_str()?;
    let n = |key: &str| scan[key].as_u64().unwrap_or(0);
    let progress =
        format!("{} of {} examined", human(n("examined_bytes")), human(n("to_examine_bytes")));
    let found = format!("{} errors, {} repaired", n("errors"), human(n("repaired_bytes")));
    let start = utc(n("start_unix_s"));
    let end = utc(n("end_unix_s"));
    Some(match state {
        "running" => {
            let eta = scan["eta_s"].as_u64().map_or_else(|| "unknown".to_string(), duration);
            format!(
                "scrub in progress since {start}, {progress} at {}/s, ETA {eta}, {found}",
                human(n("rate_bytes_per_s"))
            )
        }
        "paused" => format!("scrub paused (started {start}), {progress}, {found}"),
        "finished" => format!("scrub finished at {end} with {found}"),
        other => format!("scrub {other} at {end} after {progress}, {found}"),
    })
}

/// One line per bad block listed in `scan`, and one for those past the list.
#[must_use]
pub fn bad_block_lines(scan: &Value) -> Vec<String> {
    let mut lines: Vec<String> = scan["bad_blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            format!(
                "error: {} {}: {}",
                b["dataset"].as_str().unwrap_or("?"),
                b["location"].as_str().unwrap_or("?"),
                b["reason"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let more = scan["bad_blocks_not_listed"].as_u64().unwrap_or(0);
    if more > 0 {
        lines.push(format!("and {more} more bad blocks not listed"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_796_680_245), "2026-12-07 21:50 UTC");
    }

    #[test]
    fn scan_lines_name_progress_and_errors() {
        let running = json!({"state": "running", "start_unix_s": 0, "examined_bytes": 1024,
            "to_examine_bytes": 4096, "rate_bytes_per_s": 1024, "eta_s": 3, "errors": 1,
            "repaired_bytes": 0});
        assert_eq!(
            scan_line(&running).as_deref(),
            Some("scrub in progress since 1970-01-01 00:00 UTC, 1.0K of 4.0K examined at 1.0K/s, ETA 0:00:03, 1 errors, 0B repaired")
        );
        let finished = json!({"state": "finished", "end_unix_s": 60, "errors": 2, "repaired_bytes": 0,
            "bad_blocks": [{"dataset": "tank/v", "location": "partition 0", "reason": "checksum"}],
            "bad_blocks_not_listed": 1});
        assert_eq!(
            scan_line(&finished).as_deref(),
            Some("scrub finished at 1970-01-01 00:01 UTC with 2 errors, 0B repaired")
        );
        assert_eq!(
            bad_block_lines(&finished),
            vec!["error: tank/v partition 0: checksum", "and 1 more bad blocks not listed"]
        );
        assert_eq!(scan_line(&serde_json::Value::Null), None);
    }
}
