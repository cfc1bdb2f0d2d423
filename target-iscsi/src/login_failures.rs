//! Failed logins: answered late, counted and logged within bounds.
//!
//! A failed authentication is answered only after a delay that doubles with each failure in a
//! row of the same (initiator name, source address), from [`AuthDelay::initial`] up to
//! [`AuthDelay::max`]. The failures of the source address as a whole count too (the larger row
//! wins), so changing the initiator name does not start a row again; only ten minutes without
//! a failure do. A successful login is never delayed, and does not clear the row either: a
//! guesser holding credentials for some other target must not be able to reset its delay.
//!
//! The delay is a timer on the connection's shard: other connections go on. While it runs the
//! connection keeps its pending-login slot (`admission.rs`), even if the initiator has gone, so
//! one address can have at most `max_pending_per_source` guesses outstanding: it cannot learn
//! "wrong" from a missing answer and move on faster than the delay allows.
//!
//! Every failure is counted per target and reason (`ferrite_login_failures_total`) and logged,
//! at most [`LOG_LINES_PER_WINDOW`] lines per [`LOG_WINDOW`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::pdu::LoginStatus;

/// Delay before a failed authentication is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthDelay {
    /// Delay after the first failure in a row.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for AuthDelay {
    fn default() -> Self {
        AuthDelay { initial: Duration::from_secs(1), max: Duration::from_secs(8) }
    }
}

impl AuthDelay {
    /// The delay after the `failures`-th failure in a row (1 for the first).
    #[must_use]
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

/// Why a login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    /// CHAP failed or was not offered where required (status 0x0201).
    Authentication,
    /// The initiator is not in the target's ACL (status 0x0202).
    Authorization,
    /// No such target (status 0x0203, 0x0204).
    NotFound,
    /// The first PDU or the whole login did not arrive in time.
    Timeout,
    /// Anything else: malformed requests, unsupported values, session errors.
    Protocol,
}

impl FailureReason {
    /// The reason of a login failure status.
    #[must_use]
    pub fn of(status: LoginStatus) -> FailureReason {
        match status {
            LoginStatus::AuthenticationFailure => FailureReason::Authentication,
            LoginStatus::AuthorizationFailure => FailureReason::Authorization,
            LoginStatus::NotFound | LoginStatus::TargetRemoved => FailureReason::NotFound,
            _ => FailureReason::Protocol,
        }
    }

    /// Label used in metrics and logs.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            FailureReason::Authentication => "authentication",
            FailureReason::Authorization => "authorization",
            FailureReason::NotFound => "not_found",
            FailureReason::Timeout => "timeout",
            FailureReason::Protocol => "protocol",
        }
    }
}

/// One failed login.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// Configured target the initiator asked for; `discovery` for a discovery session, empty
    /// when unknown (so that the metric's labels stay within the configuration).
    pub target: &'a str,
    /// InitiatorName, when the login got that far.
    pub initiator: Option<&'a str>,
    /// Source address of the connection.
    pub source: IpAddr,
    /// Why it failed.
    pub reason: FailureReason,
}

/// Most rows remembered; past it, a failure without a row gets the largest delay.
pub const MAX_ROWS: usize = 16_384;
/// A row is forgotten this long after its last failure.
pub const ROW_FORGOTTEN_AFTER: Duration = Duration::from_secs(600);
/// Log lines about failed logins per window.
pub const LOG_LINES_PER_WINDOW: u32 = 10;
/// The logging window.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);
/// Longest initiator name kept or logged (RFC 7143 §4.2.7.1: 223 bytes).
const MAX_NAME_BYTES: usize = 223;

/// Whose failures in a row a row counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RowKey {
    /// One initiator name (lower-cased, cut to 223 bytes) from one address.
    Pair(String, IpAddr),
    /// Every initiator name from one address.
    Source(IpAddr),
}

struct Row {
    failures: u32,
    last: Instant,
}

struct LogBudget {
    window_start: Instant,
    lines: u32,
    suppressed: u64,
}

struct Inner {
    rows: HashMap<RowKey, Row>,
    counts: HashMap<(String, FailureReason), u64>,
    log: LogBudget,
}

/// Failed-login bookkeeping shared by every shard (one short mutex per failed or
/// authenticated login; never on the I/O path).
pub struct LoginFailures {
    delay: AuthDelay,
    inner: Mutex<Inner>,
}

/// `name` cut to [`MAX_NAME_BYTES`].
fn bounded(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

fn name_key(name: &str) -> String {
    bounded(name).to_ascii_lowercase()
}

impl LoginFailures {
    /// Bookkeeping with `delay` for failed authentications.
    #[must_use]
    pub fn new(delay: AuthDelay) -> LoginFailures {
        LoginFailures {
            delay,
            inner: Mutex::new(Inner {
                rows: HashMap::new(),
                counts: HashMap::new(),
                log: LogBudget { window_start: Instant::now(), lines: 0, suppressed: 0 },
            }),
        }
    }

    /// The delay settings.
    #[must_use]
    pub fn delay(&self) -> AuthDelay {
        self.delay
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a failed login, logs it (within the budget) and returns how long to wait
    /// before answering it: zero unless authentication failed.
    pub fn record(&self, failure: &Failure<'_>, now: Instant) -> Duration {
        let mut inner = self.inner();
        *inner.counts.entry((failure.target.to_string(), failure.reason)).or_default() += 1;
        let (delay, in_a_row) = if failure.reason == FailureReason::Authentication {
            let pair = RowKey::Pair(name_key(failure.initiator.unwrap_or("")), failure.source);
            let by_pair = Self::count_row(&mut inner.rows, pair, now);
            let by_source = Self::count_row(&mut inner.rows, RowKey::Source(failure.source), now);
            let in_a_row = by_pair.zip(by_source).map(|(p, s)| p.max(s));
            (in_a_row.map_or(self.delay.max, |n| self.delay.after(n)), in_a_row)
        } else {
            (Duration::ZERO, None)
        };
        if let Some(suppressed) = Self::take_log_slot(&mut inner.log, now) {
            drop(inner);
            log_failure(failure, delay, in_a_row, suppressed);
        }
        delay
    }

    /// Adds one failure to the row `key`: the failures in a row, or None when the table is
    /// full and `key` has no row.
    fn count_row(rows: &mut HashMap<RowKey, Row>, key: RowKey, now: Instant) -> Option<u32> {
        if !rows.contains_key(&key) && rows.len() >= MAX_ROWS {
            rows.retain(|_, r| now.duration_since(r.last) < ROW_FORGOTTEN_AFTER);
            if rows.len() >= MAX_ROWS {
                return None;
            }
        }
        let row = rows.entry(key).or_insert(Row { failures: 0, last: now });
        if now.duration_since(row.last) >= ROW_FORGOTTEN_AFTER {
            row.failures = 0;
        }
        row.failures = row.failures.saturating_add(1);
        row.last = now;
        Some(row.failures)
    }

    /// Some(lines suppressed since the last logged one) when a line may be logged now.
    fn take_log_slot(log: &mut LogBudget, now: Instant) -> Option<u64> {
        if now.duration_since(log.window_start) >= LOG_WINDOW {
            log.window_start = now;
            log.lines = 0;
        }
        if log.lines >= LOG_LINES_PER_WINDOW {
            log.suppressed += 1;
            return None;
        }
        log.lines += 1;
        Some(std::mem::take(&mut log.suppressed))
    }

    /// Failures since start per (target, reason), sorted.
    #[must_use]
    pub fn counts(&self) -> Vec<(String, FailureReason, u64)> {
        let inner = self.inner();
        let mut out: Vec<_> = inner.counts.iter().map(|((t, r), n)| (t.clone(), *r, *n)).collect();
        out.sort();
        out
    }
}

/// One log line; write errors are ignored (logging never fails a login, nor panics).
fn log_failure(failure: &Failure<'_>, delay: Duration, in_a_row: Option<u32>, suppressed: u64) {
    let initiator = failure
        .initiator
        .map_or_else(|| "unknown initiator".to_string(), |n| format!("initiator {:?}", bounded(n)));
    let target = if failure.target.is_empty() { "no known target" } else { failure.target };
    let mut line = format!(
        "login failed ({}): {initiator} from {} to {target}",
        failure.reason.label(),
        failure.source
    );
    if let Some(n) = in_a_row {
        line.push_str(&format!("; failure {n} in a row, answered after {} ms", delay.as_millis()));
    }
    if suppressed > 0 {
        line.push_str(&format!("; {suppressed} earlier failures not logged"));
    }
    log::warn!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: AuthDelay =
        AuthDelay { initial: Duration::from_millis(100), max: Duration::from_millis(1000) };

    fn auth(initiator: &str, source: &str) -> (String, IpAddr) {
        (initiator.to_string(), source.parse().expect("address"))
    }

    fn fail(
        f: &LoginFailures,
        who: &(String, IpAddr),
        reason: FailureReason,
        now: Instant,
    ) -> u128 {
        let failure = Failure { target: "iqn.t", initiator: Some(&who.0), source: who.1, reason };
        f.record(&failure, now).as_millis()
    }

    #[test]
    fn the_delay_doubles_to_its_cap() {
        let got: Vec<u128> = (1..=6).map(|n| DELAY.after(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(DELAY.after(u32::MAX), DELAY.max);
    }

    #[test]
    fn failures_in_a_row_grow_per_initiator_and_source() {
        let f = LoginFailures::new(DELAY);
        let now = Instant::now();
        let a = auth("iqn.a", "10.0.0.1");
        let a_elsewhere = auth("iqn.a", "10.0.0.2");
        let a_upper = auth("IQN.A", "10.0.0.1");
        let auth_failure = FailureReason::Authentication;
        assert_eq!(fail(&f, &a, auth_failure, now), 100);
        assert_eq!(fail(&f, &a, auth_failure, now), 200);
        assert_eq!(fail(&f, &a_upper, auth_failure, now), 400, "names are case-insensitive");
        assert_eq!(fail(&f, &a_elsewhere, auth_failure, now), 100, "another source");
        // Other reasons are counted but answered at once.
        assert_eq!(fail(&f, &a, FailureReason::Authorization, now), 0);
        // Ten quiet minutes start the row again.
        assert_eq!(fail(&f, &a_elsewhere, auth_failure, now + ROW_FORGOTTEN_AFTER), 100);
        let counts = f.counts();
        assert_eq!(
            counts,
            vec![
                ("iqn.t".to_string(), FailureReason::Authentication, 5),
                ("iqn.t".to_string(), FailureReason::Authorization, 1),
            ]
        );
    }

    #[test]
    fn a_new_initiator_name_does_not_start_the_row_again() {
        let f = LoginFailures::new(DELAY);
        let now = Instant::now();
        let auth_failure = FailureReason::Authentication;
        let got: Vec<u128> = (0..5)
            .map(|i| fail(&f, &auth(&format!("iqn.name{i}"), "10.0.0.1"), auth_failure, now))
            .collect();
        assert_eq!(got, [100, 200, 400, 800, 1000]);
    }

    #[test]
    fn a_full_table_gives_the_largest_delay() {
        let f = LoginFailures::new(DELAY);
        let now = Instant::now();
        let auth_failure = FailureReason::Authentication;
        // Each failure from a new address takes two rows (pair and source).
        for i in 0..MAX_ROWS / 2 {
            let source = IpAddr::from(u32::try_from(i).expect("small").to_be_bytes());
            let failure =
                Failure { target: "", initiator: Some("iqn.x"), source, reason: auth_failure };
            assert_eq!(f.record(&failure, now), DELAY.initial);
        }
        let newcomer = auth("iqn.new", "10.200.0.1");
        assert_eq!(fail(&f, &newcomer, auth_failure, now), 1000);
        // Once the old rows are forgotten, there is room again.
        let later = now + ROW_FORGOTTEN_AFTER;
        assert_eq!(fail(&f, &newcomer, auth_failure, later), 100);
    }

    #[test]
    fn the_log_budget_suppresses_and_reports() {
        let now = Instant::now();
        let mut log = LogBudget { window_start: now, lines: 0, suppressed: 0 };
        for _ in 0..LOG_LINES_PER_WINDOW {
            assert_eq!(LoginFailures::take_log_slot(&mut log, now), Some(0));
        }
        assert_eq!(LoginFailures::take_log_slot(&mut log, now), None);
        assert_eq!(LoginFailures::take_log_slot(&mut log, now), None);
        assert_eq!(LoginFailures::take_log_slot(&mut log, now + LOG_WINDOW), Some(2));
    }
}
