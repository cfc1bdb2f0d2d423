//! Bounds on strangers, from the process limits and `[daemon]`: the open-file limit, the caps
//! on connections that have not logged in, the login timeouts and the delay before a failed
//! authentication is answered.

use std::time::Duration;

use target_iscsi::admission::AdmissionLimits;
use target_iscsi::login_failures::AuthDelay;

use crate::config::DaemonSection;

/// The open-file limit before and after start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// Soft limit the process started with.
    pub was: u64,
    /// Soft limit now (the hard limit when it could be raised).
    pub now: u64,
}

fn get_open_files() -> Result<libc::rlimit, String> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(lim)
}

/// The soft open-file limit in force (1024 when it cannot be read).
#[must_use]
pub fn open_files() -> u64 {
    get_open_files().map_or(1024, |l| l.rlim_cur)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit: every connection is a descriptor, and
/// the usual soft limit of 1024 would let about a thousand idle sockets exhaust them.
///
/// # Errors
/// When the limit cannot be read or set, with the reason.
pub fn raise_open_files() -> Result<OpenFiles, String> {
    let mut lim = get_open_files()?;
    let was = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads one rlimit from the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(format!(
                "cannot raise the open-file limit from {was} to {}: {}",
                lim.rlim_max,
                std::io::Error::last_os_error()
            ));
        }
        lim = raised;
    }
    Ok(OpenFiles { was, now: lim.rlim_cur })
}

/// Raises the open-file limit and logs the figure. The caps are then sized from [`open_files`].
pub fn raise_open_files_and_log() {
    let line = match raise_open_files() {
        Ok(OpenFiles { was, now }) if was < now => {
            format!("open-file limit {now} (raised from {was})")
        }
        Ok(OpenFiles { now, .. }) => format!("open-file limit {now}"),
        Err(e) => e,
    };
    log::info!("{line}");
}

/// The caps and timeouts for connections that have not logged in (defaults sized from
/// `open_files` and the portal count) and the failed-authentication delay, from `[daemon]`.
#[must_use]
pub fn login_limits(
    daemon: &DaemonSection,
    open_files: u64,
    portals: usize,
) -> (AdmissionLimits, AuthDelay) {
    let mut admission = AdmissionLimits::for_open_files(open_files, portals);
    if let Some(n) = daemon.max_pending_logins_per_portal {
        admission.max_pending_per_portal = n;
    }
    if let Some(n) = daemon.max_pending_logins_per_source {
        admission.max_pending_per_source = n;
    }
    if let Some(ms) = daemon.first_pdu_timeout_ms {
        admission.first_pdu_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = daemon.login_timeout_ms {
        admission.login_timeout = Duration::from_millis(ms);
    }
    let mut delay = AuthDelay::default();
    if let Some(ms) = daemon.auth_failure_delay_ms {
        delay.initial = Duration::from_millis(ms);
    }
    if let Some(ms) = daemon.auth_failure_delay_max_ms {
        delay.max = Duration::from_millis(ms);
    }
    (admission, delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_the_hard_limit() {
        let got = raise_open_files().expect("rlimit");
        let lim = get_open_files().expect("rlimit");
        assert_eq!(got.now, lim.rlim_max);
        assert_eq!(open_files(), lim.rlim_max);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }

    #[test]
    fn configured_values_override_the_sized_defaults() {
        let daemon = DaemonSection {
            max_pending_logins_per_source: Some(3),
            first_pdu_timeout_ms: Some(1500),
            auth_failure_delay_ms: Some(20),
            ..DaemonSection::default()
        };
        let (admission, delay) = login_limits(&daemon, 1024, 1);
        assert_eq!(admission.max_pending_per_portal, 256, "sized from 1024 open files");
        assert_eq!(admission.max_pending_per_source, 3);
        assert_eq!(admission.first_pdu_timeout, Duration::from_millis(1500));
        assert_eq!(admission.login_timeout, target_iscsi::admission::LOGIN_TIMEOUT);
        assert_eq!(delay.initial, Duration::from_millis(20));
        assert_eq!(delay.max, AuthDelay::default().max);
    }
}
