//! What the criterion benches share.

use std::time::Duration;

use criterion::Criterion;

/// Short runs: 0.3 s of warm-up, 1 s of measurement, 20 samples.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}
