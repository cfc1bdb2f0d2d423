//! Strangers kept within bounds: how many connections may be waiting for their login to
//! complete, per portal and per source address, and how long a connection may take to send
//! its first PDU and to finish its login.
//!
//! The acceptor asks [`Admission::admit`] for every connection. A refused connection is closed
//! at once and counted; an admitted one carries a [`PendingLogin`] until its login reaches the
//! full feature phase (or the connection ends), so a logged-in session never counts toward the
//! caps. Idle sockets from one address can therefore take at most
//! `max_pending_per_source` slots, and cannot keep a legitimate initiator elsewhere from
//! logging in.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Limits on connections that have not logged in yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Connections waiting for their login to complete on one portal.
    pub max_pending_per_portal: usize,
    /// Connections waiting for their login to complete from one source address (all portals).
    pub max_pending_per_source: usize,
    /// Time from accept to the first complete PDU (header and data segment).
    pub first_pdu_timeout: Duration,
    /// Time from accept to the end of the login.
    pub login_timeout: Duration,
}

/// Default time allowed for the first PDU.
pub const FIRST_PDU_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for the whole login.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

impl AdmissionLimits {
    /// Caps sized from the process's open-file limit: a quarter of the descriptors for
    /// connections that have not logged in, shared by the portals (16 to 4096 per portal), and
    /// an eighth of a portal's share per source address (8 to 128: a host logging in to many
    /// targets at once must fit).
    #[must_use]
    pub fn for_open_files(open_files: u64, portals: usize) -> AdmissionLimits {
        let portals = u64::try_from(portals.max(1)).unwrap_or(u64::MAX);
        let per_portal = (open_files / 4 / portals).clamp(16, 4096);
        let per_source = (per_portal / 8).clamp(8, 128);
        AdmissionLimits {
            max_pending_per_portal: usize::try_from(per_portal).unwrap_or(4096),
            max_pending_per_source: usize::try_from(per_source).unwrap_or(128),
            first_pdu_timeout: FIRST_PDU_TIMEOUT,
            login_timeout: LOGIN_TIMEOUT,
        }
    }
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self::for_open_files(1024, 1)
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The portal has `max_pending_per_portal` connections waiting for their login.
    PortalCap,
    /// The source address has `max_pending_per_source` connections waiting for their login.
    SourceCap,
}

impl Refusal {
    /// Label used in metrics.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Refusal::PortalCap => "portal_cap",
            Refusal::SourceCap => "source_cap",
        }
    }
}

/// What one portal's admission looks like now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortalAdmission {
    /// The portal's address.
    pub portal: SocketAddr,
    /// Connections waiting for their login to complete.
    pub pending: usize,
    /// Connections refused because the portal was full, since start.
    pub refused_portal_cap: u64,
    /// Connections refused because their source address was full, since start.
    pub refused_source_cap: u64,
}

#[derive(Default)]
struct Counts {
    /// Per portal: pending, refused for the portal cap, refused for the source cap.
    portals: HashMap<SocketAddr, (usize, u64, u64)>,
    /// Per source address with at least one pending connection.
    sources: HashMap<IpAddr, usize>,
}

/// Counts of connections that have not logged in, shared by the acceptor and every shard.
/// Touched once at accept and once at the end of a login; never on the I/O path.
pub struct Admission {
    limits: AdmissionLimits,
    counts: Mutex<Counts>,
}

impl Admission {
    /// Admission with `limits`.
    #[must_use]
    pub fn new(limits: AdmissionLimits) -> Arc<Admission> {
        Arc::new(Admission { limits, counts: Mutex::default() })
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &AdmissionLimits {
        &self.limits
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `source` (None when the kernel gave no address) on `portal`,
    /// or says which cap it would exceed (the refusal is counted).
    ///
    /// # Errors
    /// The cap that is full.
    pub fn admit(
        self: &Arc<Self>,
        portal: SocketAddr,
        source: Option<SocketAddr>,
    ) -> Result<PendingLogin, Refusal> {
        let source = source.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let mut counts = self.counts();
        let from_source = counts.sources.get(&source).copied().unwrap_or(0);
        let at_portal = counts.portals.entry(portal).or_default();
        let refusal = if at_portal.0 >= self.limits.max_pending_per_portal {
            at_portal.1 += 1;
            Some(Refusal::PortalCap)
        } else if from_source >= self.limits.max_pending_per_source {
            at_portal.2 += 1;
            Some(Refusal::SourceCap)
        } else {
            at_portal.0 += 1;
            None
        };
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        *counts.sources.entry(source).or_default() += 1;
        Ok(PendingLogin { admission: Arc::clone(self), portal, source })
    }

    /// Every portal that has seen a connection, sorted by address.
    #[must_use]
    pub fn snapshot(&self) -> Vec<PortalAdmission> {
        let counts = self.counts();
        let mut out: Vec<PortalAdmission> = counts
            .portals
            .iter()
            .map(|(portal, (pending, portal_cap, source_cap))| PortalAdmission {
                portal: *portal,
                pending: *pending,
                refused_portal_cap: *portal_cap,
                refused_source_cap: *source_cap,
            })
            .collect();
        out.sort_by_key(|p| p.portal);
        out
    }

    fn release(&self, portal: SocketAddr, source: IpAddr) {
        let mut counts = self.counts();
        if let Some(at_portal) = counts.portals.get_mut(&portal) {
            at_portal.0 = at_portal.0.saturating_sub(1);
        }
        if let Some(n) = counts.sources.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.sources.remove(&source);
            }
        }
    }
}

/// A connection's place among those waiting for their login; given back when dropped (login
/// complete, or the connection ended).
pub struct PendingLogin {
    admission: Arc<Admission>,
    portal: SocketAddr,
    source: IpAddr,
}

impl PendingLogin {
    /// The connection's source address (unspecified when the kernel gave none).
    #[must_use]
    pub fn source(&self) -> IpAddr {
        self.source
    }
}

impl Drop for PendingLogin {
    fn drop(&mut self) {
        self.admission.release(self.portal, self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_portal: usize, per_source: usize) -> AdmissionLimits {
        AdmissionLimits {
            max_pending_per_portal: per_portal,
            max_pending_per_source: per_source,
            ..AdmissionLimits::default()
        }
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().expect("address"))
    }

    #[test]
    fn a_source_gets_its_cap_and_others_still_get_in() {
        let a = Admission::new(limits(4, 2));
        let portal: SocketAddr = "127.0.0.1:3260".parse().expect("portal");
        let first = a.admit(portal, addr("10.0.0.1:1000")).expect("first");
        let _second = a.admit(portal, addr("10.0.0.1:1001")).expect("second");
        assert_eq!(a.admit(portal, addr("10.0.0.1:1002")).err(), Some(Refusal::SourceCap));
        let _other = a.admit(portal, addr("10.0.0.2:1000")).expect("another source");
        // A slot given back is usable again.
        drop(first);
        let _again = a.admit(portal, addr("10.0.0.1:1003")).expect("slot given back");
        let snap = a.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!((snap[0].pending, snap[0].refused_source_cap), (3, 1));
    }

    #[test]
    fn the_portal_cap_counts_every_source() {
        let a = Admission::new(limits(2, 2));
        let portal: SocketAddr = "127.0.0.1:3260".parse().expect("portal");
        let other_portal: SocketAddr = "127.0.0.1:3261".parse().expect("portal");
        let _a = a.admit(portal, addr("10.0.0.1:1")).expect("a");
        let _b = a.admit(portal, addr("10.0.0.2:1")).expect("b");
        assert_eq!(a.admit(portal, addr("10.0.0.3:1")).err(), Some(Refusal::PortalCap));
        let _c = a.admit(other_portal, addr("10.0.0.3:1")).expect("another portal");
        let snap = a.snapshot();
        assert_eq!(snap[0].refused_portal_cap, 1);
        assert_eq!(snap[1].pending, 1);
    }

    #[test]
    fn defaults_follow_the_open_file_limit() {
        let small = AdmissionLimits::for_open_files(1024, 1);
        assert_eq!((small.max_pending_per_portal, small.max_pending_per_source), (256, 32));
        let two_portals = AdmissionLimits::for_open_files(1024, 2);
        assert_eq!(two_portals.max_pending_per_portal, 128);
        let large = AdmissionLimits::for_open_files(1 << 20, 1);
        assert_eq!((large.max_pending_per_portal, large.max_pending_per_source), (4096, 128));
        let tiny = AdmissionLimits::for_open_files(32, 1);
        assert_eq!((tiny.max_pending_per_portal, tiny.max_pending_per_source), (16, 8));
    }
}
