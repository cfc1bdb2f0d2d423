//! The daemon-wide table of sessions: TSIH allocation and session reinstatement.
//!
//! Touched only at login and logout (control path), so a mutex is fine here. A session is
//! closed from another shard by shutting its socket down: the owning connection sees the
//! error, finishes, and removes itself — under the same mutex, before it closes its fd, so the
//! descriptor is never reused while the table still names it.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::Mutex;

/// Identity that makes a login a reinstatement of an existing session (RFC 7143 §6.3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// InitiatorName, lower-cased.
    pub initiator_name: String,
    /// ISID.
    pub isid: [u8; 6],
    /// TargetName, lower-cased ("" for discovery).
    pub target_name: String,
}

struct Entry {
    key: SessionKey,
    fd: RawFd,
    shard: usize,
}

#[derive(Default)]
struct Inner {
    next_tsih: u16,
    by_tsih: HashMap<u16, Entry>,
}

/// All live sessions of the daemon.
#[derive(Default)]
pub struct SessionTable {
    inner: Mutex<Inner>,
}

/// Summary of a live session (statistics, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// TSIH.
    pub tsih: u16,
    /// Initiator name.
    pub initiator_name: String,
    /// Target name ("" for discovery).
    pub target_name: String,
    /// Shard serving the session's connection.
    pub shard: usize,
}

impl SessionTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new session served by the connection on `fd`; closes any session with the
    /// same key (reinstatement). Returns the new TSIH and whether a session was reinstated.
    pub fn register(&self, key: SessionKey, fd: RawFd, shard: usize) -> (u16, bool) {
        let mut inner = self.lock();
        let old: Vec<u16> =
            inner.by_tsih.iter().filter(|(_, e)| e.key == key).map(|(t, _)| *t).collect();
        let reinstated = !old.is_empty();
        for tsih in old {
            if let Some(entry) = inner.by_tsih.remove(&tsih) {
                // SAFETY: the fd is still open: its owner removes the entry (under this lock)
                // before closing it. shutdown(2) only makes the owner's I/O fail.
                unsafe { libc::shutdown(entry.fd, libc::SHUT_RDWR) };
            }
        }
        loop {
            inner.next_tsih = inner.next_tsih.wrapping_add(1);
            let tsih = inner.next_tsih;
            if tsih != 0 && !inner.by_tsih.contains_key(&tsih) {
                inner.by_tsih.insert(tsih, Entry { key, fd, shard });
                return (tsih, reinstated);
            }
        }
    }

    /// Removes a session; called by its connection before closing the socket.
    pub fn remove(&self, tsih: u16, fd: RawFd) {
        let mut inner = self.lock();
        if inner.by_tsih.get(&tsih).is_some_and(|e| e.fd == fd) {
            inner.by_tsih.remove(&tsih);
        }
    }

    /// Closes every session of the target `target_name` (case-insensitive) except the one
    /// served on `except_fd`, by shutting their sockets down (TARGET COLD RESET, RFC 7143
    /// §11.5.1). Returns how many were closed.
    pub fn close_target(&self, target_name: &str, except_fd: RawFd) -> usize {
        let target = target_name.to_ascii_lowercase();
        let mut inner = self.lock();
        let victims: Vec<u16> = inner
            .by_tsih
            .iter()
            .filter(|(_, e)| e.key.target_name == target && e.fd != except_fd)
            .map(|(t, _)| *t)
            .collect();
        for tsih in &victims {
            if let Some(entry) = inner.by_tsih.remove(tsih) {
                // SAFETY: as in `register`: the owner removes the entry (under this lock)
                // before closing its fd, so the fd is still open here.
                unsafe { libc::shutdown(entry.fd, libc::SHUT_RDWR) };
            }
        }
        victims.len()
    }

    /// True when a session with this TSIH exists.
    #[must_use]
    pub fn exists(&self, tsih: u16) -> bool {
        self.lock().by_tsih.contains_key(&tsih)
    }

    /// Live sessions.
    #[must_use]
    pub fn list(&self) -> Vec<SessionInfo> {
        let inner = self.lock();
        let mut out: Vec<SessionInfo> = inner
            .by_tsih
            .iter()
            .map(|(tsih, e)| SessionInfo {
                tsih: *tsih,
                initiator_name: e.key.initiator_name.clone(),
                target_name: e.key.target_name.clone(),
                shard: e.shard,
            })
            .collect();
        out.sort_by_key(|s| s.tsih);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(isid: u8) -> SessionKey {
        SessionKey {
            initiator_name: "iqn.i".into(),
            isid: [0, 0, 0, 0, 0, isid],
            target_name: "iqn.t".into(),
        }
    }

    #[test]
    fn same_key_reinstates_and_different_keys_coexist() {
        let table = SessionTable::default();
        let (a, r1) = table.register(key(1), -1, 0);
        let (b, r2) = table.register(key(2), -1, 1);
        assert!(!r1 && !r2);
        assert_ne!(a, b);
        let (c, r3) = table.register(key(1), -1, 0);
        assert!(r3);
        assert!(!table.exists(a));
        assert!(table.exists(b) && table.exists(c));
        table.remove(c, -1);
        assert!(!table.exists(c));
        assert_eq!(table.list().len(), 1);
    }

    #[test]
    fn close_target_spares_the_caller_and_other_targets() {
        let table = SessionTable::default();
        let (mine, _) = table.register(key(1), -2, 0);
        let (other, _) = table.register(key(2), -3, 0);
        let elsewhere = SessionKey { target_name: "iqn.u".into(), ..key(3) };
        let (foreign, _) = table.register(elsewhere, -4, 0);
        assert_eq!(table.close_target("IQN.T", -2), 1);
        assert!(table.exists(mine) && table.exists(foreign));
        assert!(!table.exists(other));
    }
}
