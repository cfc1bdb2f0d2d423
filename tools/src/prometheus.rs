//! Prometheus text exposition format 0.0.4: a builder that writes metric families.
//!
//! A family is declared once (`# HELP`, `# TYPE`) and its samples follow it contiguously, as
//! the format requires; [`Exposition::family`] refuses to declare a name twice (a programmer
//! error). Label values are escaped; metric and label names are ours and must match
//! `[a-zA-Z_:][a-zA-Z0-9_:]*` (asserted).

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Content-Type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic total.
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Cumulative buckets with `_bucket`, `_sum` and `_count`.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, String)];

/// The text being built.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
    declared: BTreeSet<String>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn escape_label(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

impl Exposition {
    /// An empty exposition.
    #[must_use]
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Declares family `name`; its samples must follow before the next family.
    ///
    /// # Panics
    /// When the name is invalid or declared twice (programmer errors).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        assert!(valid_name(name), "invalid metric name {name:?}");
        assert!(self.declared.insert(name.to_string()), "metric family {name} declared twice");
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.name());
    }

    /// One sample of the family declared last (`name` may carry a `_bucket`, `_sum` or
    /// `_count` suffix for histograms).
    pub fn sample(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        self.sample_with(name, labels, None, value);
    }

    fn sample_with(&mut self, name: &str, labels: Labels<'_>, le: Option<&str>, value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() || le.is_some() {
            self.text.push('{');
            let mut first = true;
            let extra = le.map(|l| ("le", l.to_string()));
            for (key, value) in labels.iter().cloned().chain(extra) {
                assert!(valid_name(key), "invalid label name {key:?}");
                if !first {
                    self.text.push(',');
                }
                first = false;
                self.text.push_str(key);
                self.text.push_str("=\"");
                escape_label(&value, &mut self.text);
                self.text.push('"');
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(&format_value(value));
        self.text.push('\n');
    }

    /// One histogram series of the family `name` declared last: `buckets` are
    /// (upper bound, count in that bucket alone), ascending; they are written cumulatively
    /// with a final `+Inf` bucket equal to the total.
    pub fn histogram(&mut self, name: &str, labels: Labels<'_>, buckets: &[(f64, u64)], sum: f64) {
        let mut cumulative = 0;
        let bucket_name = format!("{name}_bucket");
        for (le, count) in buckets {
            cumulative += count;
            self.sample_with(&bucket_name, labels, Some(&format_value(*le)), cumulative as f64);
        }
        self.sample_with(&bucket_name, labels, Some("+Inf"), cumulative as f64);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }

    /// The finished text.
    #[must_use]
    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_samples_and_escaped_labels() {
        let mut e = Exposition::new();
        e.family("ferrite_x_total", Kind::Counter, "X done.\nTwice");
        e.sample("ferrite_x_total", &[("target", "iqn\"a\\b".to_string())], 3.0);
        e.sample("ferrite_x_total", &[], 0.5);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP ferrite_x_total X done.\\nTwice\n# TYPE ferrite_x_total counter\n\
             ferrite_x_total{target=\"iqn\\\"a\\\\b\"} 3\nferrite_x_total 0.5\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_inf() {
        let mut e = Exposition::new();
        e.family("lat_seconds", Kind::Histogram, "Latency.");
        e.histogram("lat_seconds", &[("lun", "0".to_string())], &[(0.001, 2), (0.01, 3)], 0.02);
        let text = e.finish();
        assert!(text.contains("lat_seconds_bucket{lun=\"0\",le=\"0.001\"} 2\n"), "{text}");
        assert!(text.contains("lat_seconds_bucket{lun=\"0\",le=\"0.01\"} 5\n"), "{text}");
        assert!(text.contains("lat_seconds_bucket{lun=\"0\",le=\"+Inf\"} 5\n"), "{text}");
        assert!(text.contains("lat_seconds_count{lun=\"0\"} 5\n"), "{text}");
        assert!(text.contains("lat_seconds_sum{lun=\"0\"} 0.02\n"), "{text}");
    }

    #[test]
    #[should_panic(expected = "declared twice")]
    fn a_family_is_declared_once() {
        let mut e = Exposition::new();
        e.family("a", Kind::Gauge, "A.");
        e.family("a", Kind::Gauge, "A.");
    }
}
