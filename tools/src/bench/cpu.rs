//! Process CPU time (user + system, every thread) from getrusage(2).

use std::time::Duration;

/// CPU time consumed by the whole process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// User-mode time.
    pub user: Duration,
    /// Kernel time.
    pub system: Duration,
}

fn timeval_duration(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

impl CpuTimes {
    /// Reads RUSAGE_SELF (all threads of the process).
    #[must_use]
    pub fn now() -> CpuTimes {
        // SAFETY: rusage is plain old data; all-zero is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        if rc != 0 {
            return CpuTimes::default();
        }
        CpuTimes {
            user: timeval_duration(usage.ru_utime),
            system: timeval_duration(usage.ru_stime),
        }
    }

    /// Time spent between `earlier` and `self`.
    #[must_use]
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_advances_with_work() {
        let before = CpuTimes::now();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spent = CpuTimes::now().since(&before);
        assert!(spent.user + spent.system >= Duration::from_millis(10), "{spent:?}");
    }
}
